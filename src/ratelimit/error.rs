//! The one error type of the rate-limit layer.

use std::sync::Arc;

/// Why a rate-limit store could not decide, or why it could not be built.
///
/// Messages name the store by its redacted address and give the reason; they never carry
/// the bucket key, so neither the principal fingerprint nor the client address reaches a
/// log through an error. The caller fails the request closed on any check error
/// (spec section 6).
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// The `--rate-limit-store` value is not one we understand.
    #[error("rate-limit store spec is invalid: {reason}")]
    InvalidSpec { reason: String },

    /// A quota that cannot describe a window (for example zero seconds).
    #[error("rate-limit quota is invalid: {reason}")]
    InvalidQuota { reason: &'static str },

    /// The store could not be reached, or the connection broke.
    #[error("rate-limit store {store} is unreachable: {reason}")]
    Unreachable { store: Arc<str>, reason: String },

    /// The store did not answer within the per-call budget.
    #[error("rate-limit store {store} did not answer within {timeout_ms} ms")]
    Timeout { store: Arc<str>, timeout_ms: u64 },

    /// The store answered with an error reply or a value we cannot use.
    #[error("rate-limit store {store} sent an unusable reply: {reason}")]
    BadReply { store: Arc<str>, reason: String },
}
