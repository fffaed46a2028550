//! A stand-in ext_authz server that allows everything, sets one identity header and strips
//! nothing. Behind it, whatever reaches the upstream shows what Envoy's own config does to
//! headers, independently of the service: what it removes before ext_authz, and that it keeps
//! what ext_authz sets.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse, OkHttpResponse};
use envoy_types::pb::google::rpc;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// The header the stub sets on every allowed request, and its value.
pub const STUB_HEADER: (&str, &str) = ("x-agents-credential-id", "stub-credential");

/// Header names of every CheckRequest received, in order (both Envoy encodings merged).
type Seen = Arc<Mutex<Vec<Vec<String>>>>;

#[derive(Clone, Default)]
struct AllowAll {
    seen: Seen,
}

#[tonic::async_trait]
impl Authorization for AllowAll {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let names = header_names(&request.into_inner());
        self.seen.lock().expect("stub log lock").push(names);
        let (key, value) = STUB_HEADER;
        let header = HeaderValue {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        };
        let set = HeaderValueOption {
            header: Some(header),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
            ..Default::default()
        };
        let ok = OkHttpResponse {
            headers: vec![set],
            ..Default::default()
        };
        Ok(Response::new(CheckResponse {
            status: Some(rpc::Status::default()),
            http_response: Some(HttpResponse::OkResponse(ok)),
            dynamic_metadata: None,
        }))
    }
}

fn header_names(request: &CheckRequest) -> Vec<String> {
    let attributes = request.attributes.as_ref();
    let http = attributes
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let Some(http) = http else { return Vec::new() };
    let mut names: Vec<String> = http.headers.keys().cloned().collect();
    if let Some(map) = &http.header_map {
        names.extend(map.headers.iter().map(|h| h.key.clone()));
    }
    names
}

pub struct StubAuthz {
    pub addr: SocketAddr,
    seen: Seen,
    task: JoinHandle<()>,
}

impl StubAuthz {
    /// Serves ext_authz Check on 127.0.0.1:0 on the current tokio runtime.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind stub");
        let addr = listener.local_addr().expect("stub local addr");
        let stub = AllowAll::default();
        let seen = stub.seen.clone();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(AuthorizationServer::new(stub))
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
                .expect("stub authz serve");
        });
        Self { addr, seen, task }
    }

    /// Header names of the most recent CheckRequest; panics if none arrived.
    pub fn last_check_headers(&self) -> Vec<String> {
        let seen = self.seen.lock().expect("stub log lock");
        seen.last()
            .cloned()
            .expect("the stub received no CheckRequest")
    }
}

impl Drop for StubAuthz {
    fn drop(&mut self) {
        self.task.abort();
    }
}
