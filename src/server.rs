//! Starting the listeners and stopping them on a signal.

use crate::cli::ServeArgs;
use crate::grpc::service::CheckService;
use crate::http::whoami::{TrustedProxies, WhoamiState};
use crate::state::AppState;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    #[error("HTTP server failed: {0}")]
    Http(std::io::Error),
}

/// Serves until SIGTERM or SIGINT, then drains within the grace period.
pub async fn run(args: &ServeArgs, state: Arc<AppState>) -> Result<(), ServeError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let grpc = bind(args.grpc_addr, "gRPC").await?;
    let http = bind(args.http_addr, "HTTP").await?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<AuthorizationServer<CheckService>>()
        .await;

    let grpc_task = {
        let mut stop = stop_rx.clone();
        let service = AuthorizationServer::new(CheckService::new(state.clone()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health_service)
                .add_service(service)
                .serve_with_incoming_shutdown(tokio_stream_from(grpc), async move {
                    let _ = stop.wait_for(|s| *s).await;
                }),
        )
    };
    let http_task = {
        let mut stop = stop_rx.clone();
        let router = crate::http::router(Arc::new(WhoamiState {
            app: state.clone(),
            trusted_proxies: TrustedProxies(args.trusted_proxies.clone()),
        }));
        tokio::spawn(async move {
            axum::serve(
                http,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
        })
    };
    tracing::info!(
        grpc.addr = %args.grpc_addr,
        http.addr = %args.http_addr,
        snapshot.version = state.snapshot.load().version,
        "agents-authz serving"
    );

    shutdown_signal().await;
    tracing::info!(grace_seconds = args.shutdown_grace_seconds, "shutting down");
    health
        .set_not_serving::<AuthorizationServer<CheckService>>()
        .await;
    let _ = stop_tx.send(true);
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    let drained = tokio::time::timeout(grace, async {
        let g = grpc_task.await;
        let h = http_task.await;
        (g, h)
    })
    .await;
    match drained {
        Ok((Ok(Err(e)), _)) => Err(ServeError::Grpc(e)),
        Ok((_, Ok(Err(e)))) => Err(ServeError::Http(e)),
        Ok(_) => Ok(()),
        Err(_) => {
            tracing::warn!("grace period ended with requests still in flight");
            Ok(())
        }
    }
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { what, addr, source })
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> tokio_stream::wrappers::TcpListenerStream {
    tokio_stream::wrappers::TcpListenerStream::new(listener)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
