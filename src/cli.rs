//! Command-line interface. Every flag can also be set through `AGENTS_AUTHZ_*`.

use clap::{Args, Parser, Subcommand};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::config::ConfigSources;

#[derive(Debug, Parser)]
#[command(
    name = "agents-authz",
    version,
    about = "Envoy ext_authz service for the Agents API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve Envoy's Check and the HTTP endpoints.
    Serve(ServeArgs),
    /// Serve with embedded demo credentials (never for production).
    Demo(ServeArgs),
    /// Load the configuration exactly as `serve` would; print its posture and every problem.
    ///
    /// Exits 2 on errors (files `serve` would refuse to start with), 1 on warnings with
    /// --strict, 0 otherwise.
    #[command(alias = "check-config")]
    Check(CheckArgs),
    /// Create, list, update, rotate, pause, resume, revoke or delete managed keys.
    Keys(KeysArgs),
    /// Read a token on stdin and print its SHA-256 hex digest (a managed key's tokenHash).
    HashToken,
    /// Ask a running service through its admin gRPC API; prints JSON.
    Admin(AdminArgs),
}

#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The running service's admin address (host:port), as given to `serve --admin-addr`.
    #[arg(
        long,
        global = true,
        env = "AGENTS_AUTHZ_ADMIN_ADDR",
        default_value = "127.0.0.1:9193"
    )]
    pub admin_addr: String,
    /// Give up connecting, and waiting for the answer, after this many seconds.
    #[arg(
        long,
        global = true,
        env = "AGENTS_AUTHZ_ADMIN_TIMEOUT_SECONDS",
        default_value_t = 5
    )]
    pub timeout_seconds: u64,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Which snapshot serves and how the last reload went.
    Status,
    /// The runtime posture (spec section 5): profile, flags, credentials by id.
    Posture,
    /// Rebuild the configuration now; a failure keeps the serving snapshot (exit 1).
    Reload,
    /// Who a token authenticates as. The token comes from AGENTS_AUTHZ_TOKEN, else from
    /// the first line of stdin; never from the command line, where `ps` would show it.
    Whoami {
        /// Evaluate the key's IP allowlist as for a request from this address. Without
        /// it, keys restricted to some addresses are refused (ip_not_allowed).
        #[arg(long)]
        client_ip: Option<IpAddr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchKind {
    Notify,
    Poll,
    Off,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Where envoy.service.auth.v3.Authorization/Check is served.
    #[arg(long, env = "AGENTS_AUTHZ_GRPC_ADDR", default_value = "127.0.0.1:9191")]
    pub grpc_addr: SocketAddr,
    /// The service's own HTTP endpoints (whoami), routed to by Envoy.
    #[arg(long, env = "AGENTS_AUTHZ_HTTP_ADDR", default_value = "127.0.0.1:9192")]
    pub http_addr: SocketAddr,
    /// Managed keys JSON file (a mounted ConfigMap in Kubernetes).
    #[arg(long, env = "AGENTS_AUTHZ_MANAGED_KEYS")]
    pub managed_keys: Option<PathBuf>,
    /// dotenv file whose PLUGIN_AGENTS_* values override the process environment.
    #[arg(long, env = "AGENTS_AUTHZ_ENV_FILE")]
    pub env_file: Option<PathBuf>,
    /// Routes JSON file merged over the built-in /agents/v1 table.
    #[arg(long, env = "AGENTS_AUTHZ_ROUTES")]
    pub routes: Option<PathBuf>,
    /// Peers whose X-Forwarded-For is trusted by whoami (comma-separated CIDRs).
    #[arg(
        long,
        env = "AGENTS_AUTHZ_TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.0/8,::1/128"
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Metrics, health, readiness, posture and the admin gRPC API. Keep it off the
    /// address Envoy routes client traffic to.
    #[arg(
        long,
        env = "AGENTS_AUTHZ_ADMIN_ADDR",
        default_value = "127.0.0.1:9193"
    )]
    pub admin_addr: SocketAddr,
    /// How file changes are noticed: notify (inotify), poll, or off.
    #[arg(long, env = "AGENTS_AUTHZ_WATCH", default_value = "notify")]
    pub watch: WatchKind,
    /// Interval between looks at the files in poll mode, in milliseconds.
    #[arg(long, env = "AGENTS_AUTHZ_POLL_INTERVAL_MS", default_value_t = 1000)]
    pub poll_interval_ms: u64,
    /// Allow lines in the decision log: info, off, or sample:N (one in N).
    #[arg(long, env = "AGENTS_AUTHZ_ALLOW_LOG", default_value = "info")]
    pub allow_log: crate::telemetry::AllowLogMode,
    /// Count Checks per credential id in metrics (one series per key).
    #[arg(
        long,
        env = "AGENTS_AUTHZ_METRICS_PER_CREDENTIAL",
        default_value_t = false
    )]
    pub metrics_per_credential: bool,
    /// Where rate-limit counters live: memory (this process), off, or
    /// redis://HOST:PORT/DB (shared by every replica).
    #[arg(long, env = "AGENTS_AUTHZ_RATE_LIMIT_STORE", default_value = "memory")]
    pub rate_limit_store: String,
    /// How long in-flight requests may take to finish after SIGTERM, in seconds.
    #[arg(
        long,
        env = "AGENTS_AUTHZ_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 10
    )]
    pub shutdown_grace_seconds: u64,
    /// After SIGTERM, keep serving this long with health NOT_SERVING and /readyz 503
    /// before closing the listeners, so Envoy's health checks and load balancers move
    /// traffic away first. Runs before the grace period.
    #[arg(long, env = "AGENTS_AUTHZ_SHUTDOWN_DELAY_MS", default_value_t = 0)]
    pub shutdown_delay_ms: u64,
}

impl ServeArgs {
    /// The configuration sources `serve` (and `check`) load from: the process
    /// environment captured now, and the files named by the flags.
    pub fn config_sources(&self, demo: bool) -> ConfigSources {
        let mut process_env: std::collections::BTreeMap<String, String> =
            std::env::vars().collect();
        if demo {
            process_env
                .entry("ENVIRONMENT".into())
                .or_insert_with(|| "local".into());
        }
        ConfigSources {
            managed_keys: self.managed_keys.clone(),
            env_file: self.env_file.clone(),
            routes: self.routes.clone(),
            process_env,
            inline_managed_keys: demo.then(crate::demo::managed_keys),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Also exit non-zero (1) when there are warnings.
    #[arg(long)]
    pub strict: bool,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    /// The managed-keys JSON file, as given to `serve --managed-keys`.
    #[arg(
        long,
        global = true,
        alias = "managed-keys",
        env = "AGENTS_AUTHZ_MANAGED_KEYS"
    )]
    pub file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Ids, scopes, status, expiry and IP allowlists; never a token or its hash.
    List {
        /// One JSON object per key, in a list.
        #[arg(long)]
        json: bool,
    },
    /// Add a key; its token is printed once on stdout and only its hash is stored.
    Create {
        /// The key's handle: lowercase a-z 0-9 : _ - (also the token's prefix).
        #[arg(long)]
        id: String,
        #[command(flatten)]
        scopes: ScopeArgs,
        /// Expire the key this many days from now (default: never).
        #[arg(long, value_name = "DAYS")]
        expires_in: Option<u32>,
        /// Accept the key only from these addresses or CIDRs (repeat or comma-separate).
        #[arg(long = "ip", value_name = "CIDR", num_args = 1..)]
        ips: Vec<String>,
    },
    /// Change a key's scopes, expiry or IP allowlist; the token stays the same.
    Update {
        id: String,
        #[arg(long, num_args = 1.., value_name = "SCOPE")]
        scopes: Option<Vec<String>>,
        /// Accept scopes this service does not know (for example a newer API's).
        #[arg(long)]
        allow_unknown_scopes: bool,
        /// Expire the key this many days from now.
        #[arg(long, value_name = "DAYS", conflicts_with = "no_expiry")]
        expires_in: Option<u32>,
        /// Remove the key's expiry.
        #[arg(long)]
        no_expiry: bool,
        /// Replace the IP allowlist with these addresses or CIDRs.
        #[arg(long = "ip", value_name = "CIDR", num_args = 1.., conflicts_with = "clear_ip")]
        ips: Option<Vec<String>>,
        /// Remove the IP allowlist (the key works from any address).
        #[arg(long)]
        clear_ip: bool,
    },
    /// Give a key a new token (printed once on stdout); the old one stops working.
    Rotate { id: String },
    /// Revoke a key for good: it stops working and cannot be resumed.
    Revoke { id: String },
    /// Stop a key working until `keys resume`.
    Pause { id: String },
    /// Undo `keys pause`.
    Resume { id: String },
    /// Remove a key's entry from the file.
    Delete { id: String },
}

#[derive(Debug, Clone, Args)]
pub struct ScopeArgs {
    /// Scopes the key grants (repeat, or separate with spaces or commas).
    #[arg(long, num_args = 1.., value_name = "SCOPE", required = true)]
    pub scopes: Vec<String>,
    /// Accept scopes this service does not know (for example a newer API's).
    #[arg(long)]
    pub allow_unknown_scopes: bool,
}
