//! The floor for the load benchmarks: an ext_authz server that does no work at all.
//!
//! It answers every Check with an empty OK, so whatever it costs is the cost of tonic, HTTP/2
//! and the protobuf codec alone. `scripts/bench.sh` measures it with the same generator and
//! settings as agents-authz and reports every figure as a ratio to it.
//!
//! Usage: `floor_server ADDR` (for example 127.0.0.1:24001). Runs until killed.

use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::{CheckRequest, CheckResponse};
use envoy_types::pb::google::rpc::Status;
use std::net::SocketAddr;
use std::process::ExitCode;
use tonic::transport::server::TcpIncoming;

struct Floor;

#[tonic::async_trait]
impl Authorization for Floor {
    async fn check(
        &self,
        _request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        // Code 0 with nothing else: Envoy lets the request through unchanged.
        Ok(tonic::Response::new(CheckResponse {
            status: Some(Status::default()),
            ..Default::default()
        }))
    }
}

// The same runtime as agents-authz (`#[tokio::main]`, one worker per core), so the two
// servers differ only in the work done per Check.
#[tokio::main]
async fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: floor_server ADDR");
        return ExitCode::from(2);
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("floor_server: bad address '{addr}': {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("floor_server: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // TCP_NODELAY as in agents-authz's gRPC listener, so both pay the same socket costs.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let served = tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(Floor))
        .serve_with_incoming(incoming)
        .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor_server: serving on {addr} failed: {e}");
            ExitCode::FAILURE
        }
    }
}
