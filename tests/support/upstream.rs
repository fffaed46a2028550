//! An in-process echo upstream that records every request it receives, so a test can assert
//! exactly what Envoy forwarded (and that a refused request forwarded nothing).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query, exactly as received.
    pub path_and_query: String,
    /// Every header line in arrival order, names lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    /// Every value of a header.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of a header that must appear at most once; panics if it appears twice.
    pub fn header(&self, name: &str) -> Option<&str> {
        let values = self.header_values(name);
        assert!(
            values.len() <= 1,
            "upstream got {name} {} times: {values:?}",
            values.len()
        );
        values.first().copied()
    }

    /// All `x-agents-*` headers the upstream received.
    pub fn agents_headers(&self) -> Vec<(&str, &str)> {
        let headers = self.headers.iter();
        let agents = headers.filter(|(n, _)| n.starts_with("x-agents-"));
        agents.map(|(n, v)| (n.as_str(), v.as_str())).collect()
    }

    pub fn query(&self) -> &str {
        self.path_and_query.split_once('?').map_or("", |(_, q)| q)
    }
}

type Log = Arc<Mutex<Vec<Recorded>>>;

pub struct EchoUpstream {
    pub addr: SocketAddr,
    log: Log,
    task: JoinHandle<()>,
}

impl EchoUpstream {
    /// Serves on 127.0.0.1:0 on the current tokio runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind echo");
        let addr = listener.local_addr().expect("echo local addr");
        let log = Log::default();
        let app = axum::Router::new().fallback(record).with_state(log.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("echo upstream serve");
        });
        Self { addr, log, task }
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("echo log lock").clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().expect("echo log lock").len()
    }

    /// The most recent request; panics if none arrived.
    pub fn last(&self) -> Recorded {
        let log = self.log.lock().expect("echo log lock");
        log.last()
            .cloned()
            .expect("the upstream received no request")
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(log): State<Log>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.to_string());
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let reply = json!({ "upstream": "echo", "method": method.as_str(), "path": path_and_query });
    let recorded = Recorded {
        method: method.to_string(),
        path_and_query,
        headers,
        body: body.to_vec(),
    };
    log.lock().expect("echo log lock").push(recorded);
    Json(reply)
}
