//! The upstream behind Envoy in the load benchmarks: answers every request 200 with a small
//! JSON body and does nothing else, so the Envoy variants differ only in their auth filter.
//!
//! Usage: `bench_upstream ADDR`. Runs until killed.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use std::net::SocketAddr;
use std::process::ExitCode;

async fn answer() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        "{\"ok\":true}",
    )
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(addr) = std::env::args().nth(1) else {
        eprintln!("usage: bench_upstream ADDR");
        return ExitCode::from(2);
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench_upstream: bad address '{addr}': {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bench_upstream: cannot bind {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = Router::new().fallback(answer);
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_upstream: serving on {addr} failed: {e}");
            ExitCode::FAILURE
        }
    }
}
