//! What operators see: Prometheus metrics, the decision log, logging setup and the
//! shutdown signal. Nothing here depends on the decision core; the Check handler hands
//! over plain facts.

pub mod decision_line;
pub mod decision_log;
pub mod logging;
pub mod metrics;
pub mod redact;
pub mod shutdown;

#[cfg(test)]
mod tests;

pub use decision_log::{
    AllowLogMode, AllowLogModeError, DECISION_TARGET, DecisionLog, DecisionRecord, ScopeList,
    Verdict,
};
pub use logging::{LogConfig, LogGuard, LogInitError, init_logging};
pub use metrics::{Metrics, MetricsConfig, OPENMETRICS_CONTENT_TYPE};
pub use redact::redact_api_token;
pub use shutdown::{
    DrainOutcome, ShutdownListener, ShutdownSignal, ShutdownTrigger, drain_with_grace,
    shutdown_channel, shutdown_signal,
};
