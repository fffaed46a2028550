//! The real `agents-authz` binary for integration tests: ports picked free on
//! 127.0.0.1, a clean environment, stdout and stderr captured in full, the process
//! killed on drop, and every wait bounded.

#![allow(dead_code)] // Each test file uses a different part of this module.

#[path = "../support/free_port.rs"]
mod free_port;

use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_agents-authz");

/// Upper bound for the service to come up, answer, or stop.
pub const WAIT: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_millis(20);
const START_ATTEMPTS: usize = 3;

#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

impl Ports {
    /// Three distinct free ports. Another process may take one before the service
    /// binds it; [`Launch::start`] then retries with new ones.
    pub fn free() -> Self {
        let addr = || SocketAddr::from(([127, 0, 0, 1], free_port::pick()));
        Self {
            grpc: addr(),
            http: addr(),
            admin: addr(),
        }
    }
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port::pick()))
}

/// How to start the service: `serve` plus flags, in an environment holding only `env`.
#[derive(Debug, Clone)]
pub struct Launch {
    subcommand: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Launch {
    pub fn serve() -> Self {
        Self {
            subcommand: "serve".into(),
            args: vec!["--watch".into(), "off".into()],
            env: vec![("ENVIRONMENT".into(), "test".into())],
        }
    }

    pub fn arg(mut self, arg: impl AsRef<str>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn file_arg(self, flag: &str, path: &Path) -> Self {
        self.arg(flag).arg(path.to_str().expect("utf-8 temp path"))
    }

    pub fn env(mut self, name: &str, value: impl AsRef<str>) -> Self {
        self.env.push((name.to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Starts the service and waits until its admin `/healthz` answers.
    pub fn start(&self) -> Service {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut service = self.spawn(Ports::free());
            match service.wait_healthy() {
                Ok(()) => return service,
                Err(why) => last = why,
            }
            if !last.contains("cannot listen") {
                break;
            }
        }
        panic!("agents-authz did not start: {last}");
    }

    fn spawn(&self, ports: Ports) -> Service {
        let mut command = Command::new(BIN);
        command
            .arg(&self.subcommand)
            .args(["--grpc-addr", &ports.grpc.to_string()])
            .args(["--http-addr", &ports.http.to_string()])
            .args(["--admin-addr", &ports.admin.to_string()])
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn agents-authz");
        let stdout = Captured::drain(child.stdout.take().unwrap());
        let stderr = Captured::drain(child.stderr.take().unwrap());
        Service {
            child,
            ports,
            stdout,
            stderr,
        }
    }
}

/// Everything a pipe delivered, read by its own thread so the child never blocks on a
/// full pipe (its lossy log writer would otherwise drop lines).
pub struct Captured {
    bytes: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Captured {
    fn drain(mut pipe: impl Read + Send + 'static) -> Self {
        let bytes = Arc::new(Mutex::new(Vec::new()));
        let sink = bytes.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Self {
            bytes,
            reader: Some(reader),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    /// Waits for end of file (the process has exited and closed the pipe).
    fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

pub struct Service {
    child: Child,
    pub ports: Ports,
    pub stdout: Captured,
    pub stderr: Captured,
}

impl Service {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ports.admin)
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.ports.grpc)
    }

    /// SIGTERM, as Kubernetes sends it.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits at most `limit` for the process to exit, then collects all its output.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.stdout.finish();
                self.stderr.finish();
                return Some(status);
            }
            std::thread::sleep(STEP);
        }
        None
    }

    /// Stops the service with SIGTERM and returns its exit status and whole output.
    pub fn stop(mut self) -> (ExitStatus, String, String) {
        self.sigterm();
        let status = self
            .wait_exit(WAIT)
            .expect("agents-authz exits after SIGTERM");
        (status, self.stdout.text(), self.stderr.text())
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.stderr.finish();
                self.stdout.finish();
                return Err(format!(
                    "exited with {status}: {}{}",
                    self.stderr.text(),
                    self.stdout.text()
                ));
            }
            if http_get(self.ports.admin, "/healthz").is_some_and(|r| r.status == 200) {
                return Ok(());
            }
            std::thread::sleep(STEP);
        }
        Err("admin /healthz did not answer in time".into())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

/// A one-shot HTTP/1.1 GET without a client library, for polling from plain threads.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<HttpReply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let status = raw.split_whitespace().nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some(HttpReply { status, body })
}

/// Runs `agents-authz admin ...` against `admin`, with `env` only and `stdin` fed in.
pub fn admin_command(
    admin: SocketAddr,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Output {
    let mut child = Command::new(BIN)
        .arg("admin")
        .args(args)
        .args(["--admin-addr", &admin.to_string(), "--timeout-seconds", "5"])
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agents-authz admin");
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().expect("agents-authz admin runs")
}

/// A Check as Envoy's HTTP filter sends it, from `ip`.
pub fn check_request(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    ip: &str,
) -> CheckRequest {
    let http = HttpRequest {
        method: method.into(),
        path: target.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let socket = SocketAddress {
        address: ip.into(),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(socket)),
                }),
                ..Default::default()
            }),
            request: Some(AttrRequest {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// A managed keys file entry for `token`.
pub fn managed_key(id: &str, token: &str, scopes: &[&str]) -> serde_json::Value {
    use sha2::Digest;
    serde_json::json!({
        "id": id,
        "tokenHash": hex::encode(sha2::Sha256::digest(token.as_bytes())),
        "scopes": scopes,
    })
}

/// Polls `ready` every few milliseconds until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(STEP);
    }
    false
}

/// Runs a command that is expected to exit on its own, killing it after [`WAIT`].
pub fn run_bounded(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = Captured::drain(child.stdout.take().unwrap());
    let mut stderr = Captured::drain(child.stderr.take().unwrap());
    let exited = wait_until(WAIT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().expect("wait");
    stdout.finish();
    stderr.finish();
    assert!(exited, "{command:?} did not exit within {WAIT:?}");
    Output {
        status,
        stdout: stdout.bytes.lock().unwrap().clone(),
        stderr: stderr.bytes.lock().unwrap().clone(),
    }
}
