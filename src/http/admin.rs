//! Admin HTTP endpoints on `--admin-addr`: liveness, readiness, metrics and posture.
//! Never routed to API clients by the shipped Envoy config.

use crate::core::credentials::CredentialSource;
use crate::report;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct AdminState {
    pub app: Arc<AppState>,
    /// Set when shutdown starts: readiness fails so load balancers stop sending.
    pub draining: AtomicBool,
}

pub async fn healthz() -> Response {
    Json(json!({"status": "alive"})).into_response()
}

pub async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    let snapshot = state.app.snapshot.load();
    let status = state.app.reloader.as_ref().map(|r| r.status());
    let reload = report::reload(snapshot.version, status);
    let draining = state.draining.load(Ordering::Relaxed);
    let body = json!({
        "ready": !draining,
        "draining": draining,
        "snapshotVersion": snapshot.version,
        "reload": reload,
    });
    let code = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

pub async fn posture(State(state): State<Arc<AdminState>>) -> Response {
    let snapshot = state.app.snapshot.load();
    let mut body = serde_json::to_value(report::posture(&snapshot)).expect("posture serialises");
    let status = state.app.reloader.as_ref().map(|r| r.status());
    body["reload"] = serde_json::to_value(report::reload(snapshot.version, status))
        .expect("reload report serialises");
    Json(body).into_response()
}

pub async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    let m = &state.app.metrics;
    let snapshot = state.app.snapshot.load();
    // Gauges that describe the snapshot in force are read at scrape time.
    m.set_snapshot_version(snapshot.version);
    for source in [
        CredentialSource::Managed,
        CredentialSource::EnvJson,
        CredentialSource::EnvLegacy,
    ] {
        m.set_credentials_loaded(source.as_str(), snapshot.credential_count(source));
    }
    (
        [(
            header::CONTENT_TYPE,
            crate::telemetry::OPENMETRICS_CONTENT_TYPE,
        )],
        m.encode(),
    )
        .into_response()
}

pub fn router(state: Arc<AdminState>) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/posture", get(posture))
        .with_state(state)
}
