//! Stopping cleanly: wait for SIGTERM/SIGINT, tell every server, bound the drain.
//!
//! Kubernetes sends SIGTERM and then, after its grace period, SIGKILL. The service
//! reports NOT_SERVING first (so Envoy's health checks move traffic away), stops
//! accepting, lets in-flight Checks finish within a grace period shorter than the
//! orchestrator's, and exits.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// The signal that asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownSignal {
    Terminate,
    Interrupt,
}

impl ShutdownSignal {
    /// `SIGTERM` or `SIGINT`, for the shutdown log line.
    pub fn as_str(self) -> &'static str {
        match self {
            ShutdownSignal::Terminate => "SIGTERM",
            ShutdownSignal::Interrupt => "SIGINT",
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now and returns a future that resolves on
/// the first of them. Installing eagerly means a signal that arrives while the servers
/// start is not lost. Must be called inside a Tokio runtime.
pub fn shutdown_signal() -> io::Result<impl Future<Output = ShutdownSignal> + Send + 'static> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => ShutdownSignal::Terminate,
            _ = interrupt.recv() => ShutdownSignal::Interrupt,
        }
    })
}

/// Creates a trigger and a listener; clone the listener once per server.
pub fn shutdown_channel() -> (ShutdownTrigger, ShutdownListener) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), ShutdownListener(rx))
}

/// Tells every [`ShutdownListener`] to stop. Dropping it does the same, so a panic in
/// the owner cannot leave servers running.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    pub fn listener(&self) -> ShutdownListener {
        ShutdownListener(self.0.subscribe())
    }
}

/// The receiving side of [`shutdown_channel`]; pass [`ShutdownListener::triggered`] to
/// `serve_with_shutdown` (tonic) or `with_graceful_shutdown` (axum).
#[derive(Debug, Clone)]
pub struct ShutdownListener(watch::Receiver<bool>);

impl ShutdownListener {
    /// Resolves once the trigger fires or is dropped.
    pub async fn triggered(mut self) {
        // An error means the trigger is gone, which is a request to stop as well.
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }
}

/// How a bounded drain ended.
#[derive(Debug, PartialEq, Eq)]
pub enum DrainOutcome<T> {
    /// Everything finished within the grace period, with this result.
    Completed(T),
    /// The grace period ran out; whatever was still running is abandoned.
    TimedOut,
}

/// Waits for `drain` (for example the servers' join handles) at most `grace`.
pub async fn drain_with_grace<F: Future>(drain: F, grace: Duration) -> DrainOutcome<F::Output> {
    match tokio::time::timeout(grace, drain).await {
        Ok(output) => DrainOutcome::Completed(output),
        Err(_) => DrainOutcome::TimedOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn trigger_reaches_every_listener() {
        let (trigger, listener) = shutdown_channel();
        let second = trigger.listener();
        assert!(!listener.is_triggered());
        let waiters = [
            tokio::spawn(listener.clone().triggered()),
            tokio::spawn(second.triggered()),
        ];
        trigger.trigger();
        for waiter in waiters {
            tokio::time::timeout(BOUND, waiter).await.unwrap().unwrap();
        }
        assert!(listener.is_triggered());
    }

    #[tokio::test]
    async fn dropping_the_trigger_also_stops() {
        let (trigger, listener) = shutdown_channel();
        drop(trigger);
        assert!(listener.is_triggered());
        tokio::time::timeout(BOUND, listener.triggered())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn drain_completes_or_times_out() {
        let done = drain_with_grace(async { 7 }, BOUND).await;
        assert_eq!(done, DrainOutcome::Completed(7));
        let stuck = drain_with_grace(std::future::pending::<()>(), Duration::from_millis(20));
        assert_eq!(stuck.await, DrainOutcome::TimedOut);
    }

    #[tokio::test]
    async fn sigterm_resolves_the_signal_future() {
        let stop = shutdown_signal().unwrap();
        // The handler is installed above, so this SIGTERM is caught, not fatal.
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let got = tokio::time::timeout(BOUND, stop).await.unwrap();
        assert_eq!(got, ShutdownSignal::Terminate);
    }
}
