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

/// What the decision line needs from the request besides the facts.
pub struct RecordContext<'a> {
    /// The request target as received (path and query); its `apiToken` values are
    /// redacted before logging.
    pub target: &'a str,
    pub request_id: &'a str,
    pub snapshot_version: u64,
    pub elapsed: std::time::Duration,
}

/// Writes the decision line and counts the decision in metrics.
pub fn record(
    state: &AppState,
    evaluation: &Evaluation<'_>,
    facts: &RequestFacts<'_>,
    ctx: &RecordContext<'_>,
) {
    use crate::core::decision::Verdict as CoreVerdict;
    use crate::telemetry::{DecisionRecord, Verdict};
    let d = &evaluation.decision;
    let (credential, method, required) = match &d.verdict {
        CoreVerdict::Allow { principal, .. } => (
            principal.and_then(|p| p.credential),
            principal.map(|p| p.method),
            None,
        ),
        CoreVerdict::Deny {
            credential,
            auth_method,
            required_scope,
            ..
        } => (*credential, *auth_method, required_scope.as_deref()),
    };
    let route_scopes = d.route.map(|r| r.required_scopes()).unwrap_or_default();
    let joined;
    let required_scopes = match (required, route_scopes) {
        (Some(r), _) => Some(r),
        (None, []) => None,
        (None, [one]) => Some(&**one),
        (None, many) => {
            joined = many.join("|");
            Some(joined.as_str())
        }
    };
    let verdict = if d.is_allow() {
        Verdict::Allow
    } else {
        Verdict::Deny
    };
    state.decision_log.emit(&DecisionRecord {
        request_id: ctx.request_id,
        decision: verdict,
        status: d.status(),
        reason: d.reason_str(),
        credential_id: credential.map(|c| &*c.id),
        credential_source: credential.map(|c| c.source.header_value()),
        auth_method: method.map(|m| m.as_str()),
        principal: credential.map(|c| &*c.fingerprint),
        http_method: facts.method,
        path: ctx.target,
        route: d.route.map(|r| &*r.path),
        required_scopes,
        client_ip: facts.client_ip,
        snapshot_version: ctx.snapshot_version,
        duration_us: ctx.elapsed.as_micros() as u64,
    });
    state.metrics.record_check(
        verdict.as_str(),
        d.reason_str(),
        credential.map(|c| &*c.id),
        ctx.elapsed,
    );
}
