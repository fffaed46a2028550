//! Shared by the tests that drive the real `agents-authz serve` through reloads: a
//! ConfigMap volume laid out exactly as the kubelet writes it, the running service,
//! and Check requests shaped like the ones Envoy's ext_authz filter sends.

// Each test crate that includes this module uses only part of it.
#![allow(dead_code)]

#[path = "../support/free_port.rs"]
mod free_port;
pub mod generations;

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agents_authz::core::credentials::digest;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use serde_json::{Value, json};
use tonic::transport::Channel;

/// How long the service may take to start listening and install its watchers.
const START_LIMIT: Duration = Duration::from_secs(15);
/// Printed once the listeners, the SIGHUP handler and the file watcher are all set up.
const SERVING_LINE: &str = "agents-authz serving";

/// A managed key entry: `tokenHash` is the SHA-256 hex of `token`.
pub fn key(id: &str, token: &str, scopes: &[&str]) -> Value {
    json!({"id": id, "tokenHash": hex::encode(digest(token)), "scopes": scopes})
}

/// The managed-keys document for `entries`.
pub fn keys_json(entries: &[Value]) -> String {
    json!({ "credentials": entries }).to_string()
}

/// A ConfigMap volume as the kubelet's atomic writer lays it out: the data in a
/// `..<timestamp>` directory, `..data` a symlink to it, each visible file a symlink
/// through `..data`.
pub struct Volume {
    dir: tempfile::TempDir,
    generation: u32,
    current: String,
}

impl Volume {
    /// A volume holding `files` (name, contents) in its first data directory.
    pub fn new(files: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = stamp(0);
        write_data_dir(&dir.path().join(&first), files);
        symlink(&first, dir.path().join("..data")).expect("..data link");
        for (name, _) in files {
            symlink(format!("..data/{name}"), dir.path().join(name)).expect("visible link");
        }
        Self {
            dir,
            generation: 0,
            current: first,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The path the service is configured with, e.g. `DIR/keys.json`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// One kubelet update: a new timestamped directory, a `..data_tmp` link to it
    /// renamed over `..data`, then the old directory removed. Returns the instant of
    /// the rename, when the new contents became visible.
    pub fn publish(&mut self, files: &[(&str, &str)]) -> Instant {
        self.generation += 1;
        let next = stamp(self.generation);
        let root = self.dir.path();
        write_data_dir(&root.join(&next), files);
        symlink(&next, root.join("..data_tmp")).expect("..data_tmp link");
        fs::rename(root.join("..data_tmp"), root.join("..data")).expect("swap ..data");
        let swapped = Instant::now();
        let old = std::mem::replace(&mut self.current, next);
        fs::remove_dir_all(root.join(old)).expect("remove old data dir");
        swapped
    }

    /// Removes a visible file (its symlink), as when a key is dropped from the map.
    pub fn delete(&self, name: &str) -> Instant {
        fs::remove_file(self.path(name)).expect("remove visible link");
        Instant::now()
    }
}

/// `..2026_12_03_10_00_00.000000` for generation 0, one second later per generation.
fn stamp(generation: u32) -> String {
    let (h, m, s) = (
        10 + generation / 3600,
        generation / 60 % 60,
        generation % 60,
    );
    format!("..2026_12_03_{h:02}_{m:02}_{s:02}.{generation:06}")
}

fn write_data_dir(dir: &Path, files: &[(&str, &str)]) {
    fs::create_dir(dir).expect("data dir");
    for (name, contents) in files {
        fs::write(dir.join(name), contents).expect("data file");
    }
}

/// Replaces a plain file the way editors and config tools do: write a temp file
/// beside it, then rename it over the original.
pub fn replace_file(path: &Path, contents: &str) -> Instant {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, contents).expect("temp file");
    fs::rename(&tmp, path).expect("rename over");
    Instant::now()
}

/// The running binary; killed when dropped.
pub struct Service {
    child: Child,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    log: PathBuf,
    _logs: tempfile::TempDir,
    http: reqwest::Client,
}

impl Service {
    /// Starts `agents-authz serve` on free loopback ports with `extra` flags, and
    /// returns once it is serving with its watchers installed. A port taken between
    /// choosing and binding makes the process exit; then it is retried on new ports.
    pub async fn start(keys: &Path, env_file: &Path, extra: &[&str]) -> Self {
        Self::start_within(keys, env_file, extra, START_LIMIT).await
    }

    /// Like `start`, allowing `limit` for the initial load (a very large keys file).
    pub async fn start_within(
        keys: &Path,
        env_file: &Path,
        extra: &[&str],
        limit: Duration,
    ) -> Self {
        for attempt in 1..=3 {
            let logs = tempfile::tempdir().expect("log dir");
            let log = logs.path().join("authz.log");
            let [grpc, http, admin] = free_ports();
            let child = spawn(keys, env_file, extra, [grpc, http, admin], &log);
            let mut service = Service {
                child,
                grpc,
                admin,
                log,
                _logs: logs,
                http: reqwest::Client::new(),
            };
            if service.wait_serving(limit).await {
                return service;
            }
            eprintln!("start attempt {attempt} failed:\n{}", service.log_text());
        }
        panic!("agents-authz did not start in three attempts");
    }

    async fn wait_serving(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.child.try_wait().expect("child status").is_some() {
                return false;
            }
            if self.log_text().contains(SERVING_LINE) && self.readyz_ok().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    async fn readyz_ok(&self) -> bool {
        let url = format!("http://{}/readyz", self.admin);
        matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success())
    }

    /// `GET /readyz` on the admin listener, as JSON.
    pub async fn readyz(&self) -> Value {
        let url = format!("http://{}/readyz", self.admin);
        let response = self.http.get(url).send().await.expect("readyz answers");
        response.json().await.expect("readyz is JSON")
    }

    /// The version of the snapshot in force, from readiness.
    pub async fn version(&self) -> u64 {
        self.readyz()
            .await
            .get("snapshotVersion")
            .and_then(Value::as_u64)
            .expect("readyz has snapshotVersion")
    }

    /// Sends `SIGHUP` the way an operator would.
    pub async fn sighup(&self) {
        let status = tokio::process::Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "kill -HUP failed");
    }

    /// The process id, for reading its memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn client(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::connect(format!("http://{}", self.grpc))
            .await
            .expect("gRPC connects")
    }

    /// A `/proc/<pid>/status` field in KiB: `VmRSS` (resident now) or `VmHWM` (peak).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    /// True while the process has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the service logged so far, for failure messages.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(
    keys: &Path,
    env_file: &Path,
    extra: &[&str],
    addrs: [SocketAddr; 3],
    log: &Path,
) -> Child {
    let out = fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file handle");
    let [grpc, http, admin] = addrs.map(|a| a.to_string());
    Command::new(env!("CARGO_BIN_EXE_agents-authz"))
        .arg("serve")
        .args([
            "--grpc-addr",
            &grpc,
            "--http-addr",
            &http,
            "--admin-addr",
            &admin,
        ])
        .arg("--managed-keys")
        .arg(keys)
        .arg("--env-file")
        .arg(env_file)
        .args(extra)
        // A clean environment: no PLUGIN_AGENTS_* or AGENTS_AUTHZ_* from the caller.
        .env_clear()
        .env("ENVIRONMENT", "test")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("agents-authz starts")
}

/// Three distinct loopback ports that were free a moment ago.
fn free_ports() -> [SocketAddr; 3] {
    [(); 3].map(|()| SocketAddr::from(([127, 0, 0, 1], free_port::pick())))
}

/// A CheckRequest as Envoy's HTTP ext_authz filter builds it, from client 127.0.0.1.
pub fn check_request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let http = HttpRequest {
        method: method.into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let peer = Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(41000)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer),
            request: Some(AttrRequest {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// `GET /agents/v1/health` with a bearer token.
pub fn health_with(token: &str) -> CheckRequest {
    let bearer = format!("Bearer {token}");
    check_request("GET", "/agents/v1/health", &[("authorization", &bearer)])
}

/// What Envoy would act on in a CheckResponse.
#[derive(Debug)]
pub struct Answer {
    /// The `status.code` Envoy looks at: 0 lets the request through.
    pub code: i32,
    /// The HTTP status a denial answers the client with.
    pub denied_status: Option<i32>,
    /// Headers set on the upstream request of an allowed answer.
    pub upstream: HashMap<String, String>,
}

impl Answer {
    pub fn allowed(&self) -> bool {
        self.code == 0
    }

    pub fn upstream(&self, name: &str) -> Option<&str> {
        self.upstream.get(name).map(String::as_str)
    }
}

impl From<CheckResponse> for Answer {
    fn from(response: CheckResponse) -> Self {
        let code = response.status.map_or(0, |s| s.code);
        let mut answer = Answer {
            code,
            denied_status: None,
            upstream: HashMap::new(),
        };
        match response.http_response {
            Some(HttpResponse::OkResponse(ok)) => {
                let headers = ok.headers.into_iter().filter_map(|h| h.header);
                answer.upstream = headers.map(|h| (h.key, h.value)).collect();
            }
            Some(HttpResponse::DeniedResponse(denied)) => {
                answer.denied_status = denied.status.map(|s| s.code);
            }
            _ => {}
        }
        answer
    }
}

/// Sends one Check; a transport or gRPC error fails the test.
pub async fn check(client: &mut AuthorizationClient<Channel>, request: CheckRequest) -> Answer {
    let response = client.check(request).await.expect("Check succeeds");
    response.into_inner().into()
}

/// Polls `probe` every 10 ms until it returns true or `limit` passes; returns how
/// long that took since `since`, or `None` on timeout.
pub async fn time_until(
    since: Instant,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> bool,
) -> Option<Duration> {
    while since.elapsed() < limit {
        if probe().await {
            return Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}
