//! Runs the core's phases for one request, with the rate-limit stages between them
//! (spec section 6a, steps 4 and 7). Transport-neutral: gRPC Check and whoami use it.

use crate::core::decision::{self, Decision, DenyReason};
use crate::core::posture::Posture;
use crate::core::request::RequestFacts;
use crate::core::routes::Route;
use crate::core::snapshot::Snapshot;
use crate::ratelimit::{Quota, RateLimitKey, RateLimitVerdict, Stage};
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

/// A decision plus what the client's response must carry besides it.
pub struct Evaluation<'s> {
    pub decision: Decision<'s>,
    /// Headers for the client's response (rate-limit counters).
    pub client_headers: Vec<(&'static str, String)>,
    /// Seconds until the window resets, on a 429.
    pub retry_after: Option<u64>,
    /// The caller's numbers after this request, when a limiter ran.
    pub rate_limit: Option<RateLimitVerdict>,
}

impl Evaluation<'_> {
    /// whoami's `rateLimit` block: the live numbers when a limiter ran, else the
    /// configured quota with nothing used.
    pub fn rate_limit_json(&self, posture: &Posture) -> Value {
        let window = posture.rate_limit_window_seconds.max(1);
        let (limit, remaining, reset) = match self.rate_limit {
            Some(v) => (v.limit, v.remaining, v.reset_epoch),
            None => {
                let now = now_epoch_seconds().max(0) as u64;
                let w = u64::from(window);
                let limit = posture.rate_limit_per_minute;
                (limit, limit, now - now % w + w)
            }
        };
        json!({
            "limit": limit,
            "remaining": remaining,
            "resetAtEpoch": reset,
            "windowSeconds": window,
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

/// Steps 1-9 of spec section 6a; the limiter runs at steps 4 and 7.
pub async fn evaluate_with<'s>(
    state: &AppState,
    snapshot: &'s Snapshot,
    facts: &RequestFacts<'_>,
    mode: RateLimitMode,
) -> Evaluation<'s> {
    let guarded = match decision::route_request(snapshot, facts) {
        ControlFlow::Break(d) => return Evaluation::plain(d, None),
        ControlFlow::Continue(g) => g,
    };
    let route = guarded.route;
    let limits = Limits {
        state,
        mode,
        route: &route.path,
        client_ip: facts.client_ip,
        quota: quota(&snapshot.posture),
        now: facts.now_epoch_seconds.max(0) as u64,
    };
    let pre = match limits.apply(Stage::PreAuth, None).await {
        Ok(verdict) => verdict,
        Err(reason) => return Evaluation::limited(route, reason, None),
    };
    let authenticated = match guarded.authenticate() {
        ControlFlow::Break(d) => return Evaluation::plain(d, pre),
        ControlFlow::Continue(a) => a,
    };
    let fingerprint = authenticated.principal.fingerprint();
    let post = match limits.apply(Stage::PostAuth, Some(fingerprint)).await {
        Ok(verdict) => verdict.or(pre),
        Err(reason) => return Evaluation::limited(route, reason, pre),
    };
    Evaluation::plain(authenticated.authorize(), post)
}

struct Limits<'a> {
    state: &'a AppState,
    mode: RateLimitMode,
    route: &'a str,
    client_ip: Option<std::net::IpAddr>,
    quota: Quota,
    now: u64,
}

/// Why a limiter stage refused, with the numbers to report.
enum Refusal {
    Exceeded(RateLimitVerdict),
    /// The store could not decide: fail closed (spec section 6).
    StoreDown,
}

impl Limits<'_> {
    async fn apply(
        &self,
        stage: Stage,
        principal: Option<&str>,
    ) -> Result<Option<RateLimitVerdict>, Refusal> {
        let key = RateLimitKey {
            stage,
            route: self.route,
            client_ip: self.client_ip,
            principal,
        };
        let limiter = &self.state.limiter;
        let result = match self.mode {
            RateLimitMode::Consume => limiter.check(&key, self.quota, self.now).await,
            RateLimitMode::Peek => limiter.peek(&key, self.quota, self.now).await,
        };
        match result {
            Ok(Some(v)) if !v.allowed && self.mode == RateLimitMode::Consume => {
                Err(Refusal::Exceeded(v))
            }
            Ok(v) => Ok(v),
            Err(e) => {
                self.state.metrics.record_rate_limit_store_error();
                tracing::warn!(
                    target: "agents_authz::ratelimit",
                    stage = stage.as_str(),
                    store = limiter.kind(),
                    error = %e,
                    "rate limiter could not decide; request refused"
                );
                Err(Refusal::StoreDown)
            }
        }
    }
}

/// The posture's quota; the posture only holds positive numbers.
fn quota(posture: &Posture) -> Quota {
    Quota {
        limit: posture.rate_limit_per_minute,
        window_seconds: posture.rate_limit_window_seconds.max(1),
    }
}

impl<'s> Evaluation<'s> {
    fn plain(decision: Decision<'s>, verdict: Option<RateLimitVerdict>) -> Self {
        Evaluation {
            decision,
            client_headers: verdict.map(rate_limit_headers).unwrap_or_default(),
            retry_after: None,
            rate_limit: verdict,
        }
    }

    fn limited(route: &'s Route, refusal: Refusal, last: Option<RateLimitVerdict>) -> Self {
        match refusal {
            Refusal::Exceeded(v) => Evaluation {
                decision: Decision::rate_limited(route, DenyReason::RateLimited),
                client_headers: rate_limit_headers(v),
                retry_after: Some(v.retry_after_seconds.max(1)),
                rate_limit: Some(v),
            },
            Refusal::StoreDown => Evaluation {
                decision: Decision::rate_limited(route, DenyReason::RateLimiterUnavailable),
                client_headers: Vec::new(),
                retry_after: None,
                rate_limit: last,
            },
        }
    }
}

fn rate_limit_headers(v: RateLimitVerdict) -> Vec<(&'static str, String)> {
    vec![
        ("x-ratelimit-limit", v.limit.to_string()),
        ("x-ratelimit-remaining", v.remaining.to_string()),
        ("x-ratelimit-reset", v.reset_epoch.to_string()),
    ]
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
    use crate::telemetry::{DecisionRecord, ScopeList, Verdict};
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
    let required_scopes = match (required, route_scopes) {
        (Some(r), _) => Some(ScopeList::One(r)),
        (None, []) => None,
        (None, many) => Some(ScopeList::AnyOf(many)),
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
