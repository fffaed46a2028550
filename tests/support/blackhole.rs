//! A TCP listener that accepts connections and never answers: the "authz too slow" stand-in.

use std::net::SocketAddr;

use tokio::task::JoinHandle;

pub struct Blackhole {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Blackhole {
    /// Listens on 127.0.0.1:0 on the current tokio runtime. Accepted sockets are kept open and
    /// never read, so the peer sees a connected server that does not respond (not a refusal).
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind blackhole");
        let addr = listener.local_addr().expect("blackhole local addr");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        Self { addr, task }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}
