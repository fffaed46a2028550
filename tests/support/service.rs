//! The `agents-authz` binary under test, started with `serve` on free loopback ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::ports::{accepts, free_addr, wait_until};
use super::process::ChildProcess;

/// Path of the binary cargo built for this test run (release under `cargo test --release`).
pub const SERVICE_BIN: &str = env!("CARGO_BIN_EXE_agents-authz");

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// What to start the service with, beyond the listen addresses the harness picks.
#[derive(Default, Clone)]
pub struct ServiceConfig {
    /// `--managed-keys FILE`.
    pub managed_keys: Option<PathBuf>,
    /// `--env-file FILE`.
    pub env_file: Option<PathBuf>,
    /// `--routes FILE`.
    pub routes: Option<PathBuf>,
    /// Further arguments after the `serve` flags.
    pub extra_args: Vec<String>,
    /// Environment variables (PLUGIN_AGENTS_*, ENVIRONMENT, ...). The harness removes every
    /// inherited PLUGIN_AGENTS_* / AGENTS_AUTHZ_* / ENVIRONMENT variable first, so a test sees
    /// only what it sets.
    pub env: Vec<(String, String)>,
}

impl ServiceConfig {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn managed_keys(mut self, path: &Path) -> Self {
        self.managed_keys = Some(path.to_owned());
        self
    }
}

pub struct Service {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    process: ChildProcess,
    /// Kept for `restart`, which starts the same service on the same ports.
    config: ServiceConfig,
    dir: PathBuf,
    starts: u32,
}

impl Service {
    /// Starts `agents-authz serve` and waits until its gRPC and HTTP ports accept connections.
    pub async fn start(config: &ServiceConfig, dir: &Path) -> Self {
        let (grpc_addr, http_addr, admin_addr) = (free_addr(), free_addr(), free_addr());
        let addrs = [
            ("--grpc-addr", grpc_addr),
            ("--http-addr", http_addr),
            ("--admin-addr", admin_addr),
        ];
        let command = serve_command(config, &addrs);
        let mut service = Self {
            grpc_addr,
            http_addr,
            admin_addr,
            process: ChildProcess::spawn("agents-authz", command, dir),
            config: config.clone(),
            dir: dir.to_owned(),
            starts: 1,
        };
        service.wait_listening().await;
        service
    }

    /// Starts the service again, same config and same ports, after `stop` (or a crash); the
    /// new process logs to `agents-authz-<n>.out|.err` so the first run's logs are kept.
    pub async fn restart(&mut self) {
        self.process.stop();
        self.starts += 1;
        let addrs = [
            ("--grpc-addr", self.grpc_addr),
            ("--http-addr", self.http_addr),
            ("--admin-addr", self.admin_addr),
        ];
        let command = serve_command(&self.config, &addrs);
        let name = format!("agents-authz-{}", self.starts);
        self.process = ChildProcess::spawn(&name, command, &self.dir);
        self.wait_listening().await;
    }

    async fn wait_listening(&mut self) {
        for addr in [self.grpc_addr, self.http_addr] {
            let process = &mut self.process;
            let what = format!("agents-authz on {addr}");
            wait_until(
                &what,
                START_TIMEOUT,
                || process.assert_running(),
                || accepts(addr),
            )
            .await;
        }
    }

    /// Kills the service (for the fail-closed tests); its ports refuse connections afterwards.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// The service's stdout and stderr so far (decision logs, start-up warnings).
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    pub fn stdout_text(&self) -> String {
        self.process.stdout_text()
    }
}

/// `serve` with every listen address given explicitly: the defaults are fixed ports, which
/// tests running in parallel would fight over.
fn serve_command(config: &ServiceConfig, addrs: &[(&str, SocketAddr)]) -> Command {
    let mut command = Command::new(SERVICE_BIN);
    command.arg("serve");
    for (flag, addr) in addrs {
        command.arg(flag).arg(addr.to_string());
    }
    let files = [
        ("--managed-keys", &config.managed_keys),
        ("--env-file", &config.env_file),
        ("--routes", &config.routes),
    ];
    for (flag, path) in files {
        if let Some(path) = path {
            command.arg(flag).arg(path);
        }
    }
    command.args(&config.extra_args);
    for (key, _) in std::env::vars() {
        if is_service_setting(&key) {
            command.env_remove(&key);
        }
    }
    command.envs(config.env.iter().map(|(k, v)| (k, v)));
    command
}

/// Variables the service reads, which a developer's shell or CI must not leak into a test.
fn is_service_setting(key: &str) -> bool {
    key.starts_with("PLUGIN_AGENTS_")
        || key.starts_with("AGENTS_AUTHZ_")
        || key == "ENVIRONMENT"
        || key == "CRAFT_ENVIRONMENT"
}
