//! Free loopback ports and readiness polling.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// A port that was free on 127.0.0.1 a moment ago, outside the ephemeral range.
pub fn free_port() -> u16 {
    super::free_port::pick()
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

/// Polls `ready` every 25 ms until it returns true or `timeout` passes; between polls it calls
/// `alive`, which panics when the process being waited for has died (no point waiting then).
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut alive: impl FnMut(), ready: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if ready().await {
            return;
        }
        alive();
        assert!(
            Instant::now() < deadline,
            "{what} not ready after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// True when something accepts TCP connections on `addr`.
pub async fn accepts(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
}
