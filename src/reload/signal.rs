//! `SIGHUP` as a manual reload trigger, the Unix convention operators expect.

use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tracing::info;

use super::error::ReloadError;
use super::reloader::Reloader;

/// Installs the `SIGHUP` handler now (so a signal sent after this returns is
/// never fatal) and forces a reload on each signal. Abort the returned task to
/// stop listening. Must be called inside a tokio runtime.
pub fn spawn_sighup<T: Send + Sync + 'static>(
    reloader: Arc<Reloader<T>>,
) -> Result<JoinHandle<()>, ReloadError> {
    let runtime = Handle::try_current().map_err(|_| ReloadError::NoRuntime)?;
    let mut hangups =
        signal(SignalKind::hangup()).map_err(|source| ReloadError::Signal { source })?;
    Ok(runtime.spawn(async move {
        while hangups.recv().await.is_some() {
            info!(reload.trigger = "sighup", "SIGHUP received; reloading");
            Arc::clone(&reloader).reload_in_background("sighup").await;
        }
    }))
}
