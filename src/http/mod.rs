//! The service's own HTTP endpoints on `--http-addr` (client traffic Envoy routes here).

pub mod admin;
pub mod whoami;

use axum::Router;
use axum::routing::get;
use std::sync::Arc;
use whoami::WhoamiState;

pub fn router(state: Arc<WhoamiState>) -> Router {
    Router::new()
        .route(
            "/agents/v1/auth/whoami",
            get(whoami::whoami).fallback(whoami::whoami),
        )
        .with_state(state)
}
