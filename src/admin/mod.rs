//! The admin API (`agents.authz.v1.Admin`, `proto/agents/authz/v1/admin.proto`): the
//! gRPC service served on `--admin-addr` beside the admin HTTP endpoints, and the
//! `agents-authz admin ...` subcommands that call it.

pub mod client;
pub mod convert;
mod print;
pub mod service;
pub mod whoami;

use crate::admin_proto::admin_server::AdminServer;
use crate::state::AppState;
use service::AdminService;
use std::sync::Arc;
use tonic::server::NamedService;

/// The admin gRPC service as axum routes, to merge into the admin HTTP router so one
/// listener answers both HTTP/1.1 JSON and gRPC over h2c.
///
/// Only the service's own path prefix is routed (rather than tonic's `Routes`, whose
/// fallback answers every unknown path with a gRPC status): an unknown HTTP path on the
/// admin address stays a plain 404.
pub fn grpc_routes(app: Arc<AppState>) -> axum::Router {
    let path = format!("/{}/{{*rpc}}", AdminServer::<AdminService>::NAME);
    axum::Router::new().route_service(&path, AdminServer::new(AdminService::new(app)))
}
