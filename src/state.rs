//! What the adapters share: the current snapshot and the services around it.

use crate::core::snapshot::Snapshot;
use crate::ratelimit::RateLimiter;
use crate::reload::Reloader;
use crate::telemetry::{DecisionLog, Metrics};
use arc_swap::ArcSwap;
use std::sync::Arc;

pub struct AppState {
    /// Swapped whole by reloads; a Check loads it once and uses only that one.
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub metrics: Arc<Metrics>,
    pub decision_log: DecisionLog,
    /// Steps 4 and 7 of the decision; `Disabled` counts nothing.
    pub limiter: RateLimiter,
    /// Absent in tests that build a state by hand.
    pub reloader: Option<Arc<Reloader<Snapshot>>>,
}

impl AppState {
    /// A state with default telemetry and no reloader.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            metrics: Arc::new(Metrics::default()),
            decision_log: DecisionLog::default(),
            limiter: RateLimiter::Disabled,
            reloader: None,
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_epoch_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
