//! What the adapters share: the current snapshot and the services around it.

use crate::core::snapshot::Snapshot;
use arc_swap::ArcSwap;
use std::sync::Arc;

pub struct AppState {
    /// Swapped whole by reloads; a Check loads it once and uses only that one.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
}

impl AppState {
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_epoch_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
