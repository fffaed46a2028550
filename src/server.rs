//! Starting the listeners, the reload watchers, and stopping on a signal.

use crate::cli::{ServeArgs, WatchKind};
use crate::grpc::service::CheckService;
use crate::http::admin::AdminState;
use crate::http::whoami::{TrustedProxies, WhoamiState};
use crate::reload::{DEFAULT_DEBOUNCE, WatchHandle, WatchMode};
use crate::state::AppState;
use axum::serve::ListenerExt;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot watch the configuration files: {0}")]
    Watch(#[from] crate::reload::ReloadError),
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
}

/// Serves until SIGTERM or SIGINT, then drains within the grace period.
pub async fn run(
    args: &ServeArgs,
    state: Arc<AppState>,
    watched: Vec<PathBuf>,
) -> Result<(), ServeError> {
    let shutdown = crate::telemetry::shutdown_signal().map_err(ServeError::Signal)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let grpc = bind(args.grpc_addr, "gRPC").await?;
    let http = bind(args.http_addr, "HTTP").await?;
    let admin = bind(args.admin_addr, "admin").await?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AuthorizationServer<CheckService>>()
        .await;
    let admin_state = Arc::new(AdminState {
        app: state.clone(),
        draining: false.into(),
    });

    let grpc_task = {
        let service = AuthorizationServer::new(CheckService::new(state.clone()));
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(service)
                .serve_with_incoming_shutdown(
                    // Without TCP_NODELAY a Check's small response frames wait for the
                    // peer's delayed ACK (about 40 ms per sequential Check).
                    tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
                    stop,
                )
                .await
                .map_err(|e| e.to_string())
        })
    };
    let http_task = serve_http(
        http,
        crate::http::router(Arc::new(WhoamiState {
            app: state.clone(),
            trusted_proxies: TrustedProxies(args.trusted_proxies.clone()),
        })),
        stop_rx.clone(),
    );
    // One admin listener answers both the HTTP/1.1 endpoints and the admin gRPC API (h2c).
    let admin_router = crate::http::admin::router(admin_state.clone())
        .merge(crate::admin::grpc_routes(state.clone()));
    let admin_task = serve_http(admin, admin_router, stop_rx.clone());
    let watcher = start_reload(args, &state, watched)?;

    tracing::info!(
        grpc.addr = %args.grpc_addr,
        http.addr = %args.http_addr,
        admin.addr = %args.admin_addr,
        snapshot.version = state.snapshot.load().version,
        "agents-authz serving"
    );

    let signal = shutdown.await;
    tracing::info!(
        signal = signal.as_str(),
        grace_seconds = args.shutdown_grace_seconds,
        delay_ms = args.shutdown_delay_ms,
        "shutting down: health NOT_SERVING, draining in-flight requests"
    );
    admin_state.draining.store(true, Ordering::Relaxed);
    // Only the named service (readiness, Envoy's health check) stops serving; the overall
    // status "" stays SERVING, since liveness probes use it and the process is alive.
    health
        .set_not_serving::<AuthorizationServer<CheckService>>()
        .await;
    if args.shutdown_delay_ms > 0 {
        // Still serving: Checks that arrive while Envoy notices NOT_SERVING are answered.
        tokio::time::sleep(Duration::from_millis(args.shutdown_delay_ms)).await;
    }
    if let Some(w) = watcher {
        w.shutdown().await;
    }
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    let drained = tokio::time::timeout(grace, async {
        let results = [grpc_task.await, http_task.await, admin_task.await];
        for r in results {
            if let Ok(Err(e)) = r {
                tracing::error!(error = %e, "listener ended with an error");
            }
        }
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!("grace period ended with requests still in flight"),
    }
    Ok(())
}

fn start_reload(
    args: &ServeArgs,
    state: &AppState,
    watched: Vec<PathBuf>,
) -> Result<Option<WatchHandle>, ServeError> {
    let Some(reloader) = state.reloader.clone() else {
        return Ok(None);
    };
    crate::reload::spawn_sighup(reloader.clone())?;
    let mode = match args.watch {
        WatchKind::Off => return Ok(None),
        WatchKind::Notify => WatchMode::Notify {
            debounce: DEFAULT_DEBOUNCE,
        },
        WatchKind::Poll => WatchMode::Poll {
            interval: Duration::from_millis(args.poll_interval_ms),
        },
    };
    if watched.is_empty() {
        return Ok(None);
    }
    Ok(Some(reloader.spawn_watcher(watched, mode)?))
}

fn serve_http(
    listener: TcpListener,
    router: axum::Router,
    stop_rx: watch::Receiver<bool>,
) -> JoinHandle<Result<(), String>> {
    // As on the gRPC listener: small responses must not wait for delayed ACKs.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stopped(stop_rx))
        .await
        .map_err(|e| e.to_string())
    })
}

async fn stopped(mut stop_rx: watch::Receiver<bool>) {
    let _ = stop_rx.wait_for(|s| *s).await;
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { what, addr, source })
}
