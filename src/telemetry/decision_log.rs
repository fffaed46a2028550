//! The decision log: one structured event per Check on its own target.
//!
//! Operators route these lines by `target` (`agents_authz::decision`). The record is
//! built from already-derived facts: it has no field that could hold a token, a header
//! or a body, and the one free-form input, the path, loses its `apiToken` values here.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::Level;

use super::decision_line::DecisionLines;
use super::redact::redact_api_token;

/// The `tracing` target of every decision line.
pub const DECISION_TARGET: &str = "agents_authz::decision";

/// The message of every decision line (kept in step with the literal in [`emit_event`]).
pub const DECISION_MESSAGE: &str = "check decision";

/// Paths longer than this are cut (after redaction) so one request cannot blow up a line.
pub const MAX_LOGGED_PATH_BYTES: usize = 2048;

/// Whether the request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    /// `allow` or `deny`, as logged and as the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// The facts of one answered Check. Optional fields are left out of the line when
/// `None` (an unauthenticated request has no credential, an unknown path no route).
pub struct DecisionRecord<'a> {
    /// The `X-Request-Id` sent back to the client.
    pub request_id: &'a str,
    pub decision: Verdict,
    /// The HTTP status the client sees (200 for an allow).
    pub status: u16,
    /// Reason code, e.g. `missing_scope`; `ok` or `public_route` for allows.
    pub reason: &'static str,
    pub credential_id: Option<&'a str>,
    /// `cp` or `env`.
    pub credential_source: Option<&'a str>,
    /// `authorization`, `x-agents-token`, `query` or `none`.
    pub auth_method: Option<&'a str>,
    /// The principal fingerprint, never the token.
    pub principal: Option<&'a str>,
    pub http_method: &'a str,
    /// Path and query as received; `apiToken` values are redacted when logged.
    pub path: &'a str,
    /// The matched route pattern.
    pub route: Option<&'a str>,
    /// The route's requirement, logged as one string, e.g. `entries:read` or
    /// `syncstate:read|consumers:read` for alternatives.
    pub required_scopes: Option<ScopeList<'a>>,
    pub client_ip: Option<IpAddr>,
    pub snapshot_version: u64,
    pub duration_us: u64,
}

/// Scopes a route requires, joined with `|` only when a subscriber formats the line, so
/// a Check whose line is filtered out or sampled away builds no string.
#[derive(Debug, Clone, Copy)]
pub enum ScopeList<'a> {
    One(&'a str),
    AnyOf(&'a [Box<str>]),
}

impl fmt::Display for ScopeList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScopeList::One(scope) => f.write_str(scope),
            ScopeList::AnyOf(scopes) => {
                for (i, scope) in scopes.iter().enumerate() {
                    if i > 0 {
                        f.write_str("|")?;
                    }
                    f.write_str(scope)?;
                }
                Ok(())
            }
        }
    }
}

/// What happens to allow lines. Deny lines are always written at info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AllowLogMode {
    /// Every allow at info.
    #[default]
    Info,
    /// One allow in every `n` at info (the first, then every n-th).
    Sampled(NonZeroU32),
    /// No allow lines.
    Off,
}

/// The text form of [`AllowLogMode`] was not `info`, `off` or `sample:N` (N >= 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid allow-log mode '{0}': expected info, off or sample:N with N >= 1")]
pub struct AllowLogModeError(String);

impl FromStr for AllowLogMode {
    type Err = AllowLogModeError;

    /// Parses `info`, `off`, or `sample:N` (also `sampled:N`), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        let rate = lower
            .strip_prefix("sample:")
            .or_else(|| lower.strip_prefix("sampled:"));
        match (lower.as_str(), rate) {
            ("info", _) => Ok(AllowLogMode::Info),
            ("off", _) => Ok(AllowLogMode::Off),
            (_, Some(n)) => n
                .parse()
                .map(AllowLogMode::Sampled)
                .map_err(|_| AllowLogModeError(s.to_owned())),
            _ => Err(AllowLogModeError(s.to_owned())),
        }
    }
}

impl fmt::Display for AllowLogMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowLogMode::Info => f.write_str("info"),
            AllowLogMode::Sampled(n) => write!(f, "sample:{n}"),
            AllowLogMode::Off => f.write_str("off"),
        }
    }
}

/// Writes decision lines, applying the allow-log mode.
#[derive(Debug, Default)]
pub struct DecisionLog {
    allow_mode: AllowLogMode,
    allows_seen: AtomicU64,
}

impl DecisionLog {
    pub fn new(allow_mode: AllowLogMode) -> Self {
        Self {
            allow_mode,
            allows_seen: AtomicU64::new(0),
        }
    }

    pub fn allow_mode(&self) -> AllowLogMode {
        self.allow_mode
    }

    /// Emits the record as one event, unless the allow-log mode drops it.
    pub fn emit(&self, record: &DecisionRecord<'_>) {
        if record.decision == Verdict::Allow && !self.keep_allow() {
            return;
        }
        emit(record);
    }

    fn keep_allow(&self) -> bool {
        match self.allow_mode {
            AllowLogMode::Info => true,
            AllowLogMode::Off => false,
            AllowLogMode::Sampled(n) => {
                let seen = self.allows_seen.fetch_add(1, Ordering::Relaxed);
                seen.is_multiple_of(u64::from(n.get()))
            }
        }
    }
}

/// Emits the record as one info line on [`DECISION_TARGET`], with no sampling.
///
/// Under the subscriber of [`json_subscriber`](super::logging::json_subscriber) the line is
/// written by its [`DecisionLines`] layer; under any other subscriber it is a tracing event
/// with the same fields, formatted by that subscriber.
pub fn emit(record: &DecisionRecord<'_>) {
    // Skip the redaction work when nobody listens to this target. This also applies the
    // filter directives (`RUST_LOG`), so `agents_authz::decision=off` stops the lines.
    if !tracing::enabled!(target: DECISION_TARGET, Level::INFO) {
        return;
    }
    let redacted = redact_api_token(record.path);
    let path = truncate(&redacted, MAX_LOGGED_PATH_BYTES);
    tracing::dispatcher::get_default(|dispatch| match dispatch.downcast_ref::<DecisionLines>() {
        Some(lines) => lines.write(record, path),
        None => emit_event(record, path),
    });
}

/// The record as a tracing event, for subscribers without a [`DecisionLines`] layer.
pub(crate) fn emit_event(record: &DecisionRecord<'_>, path: &str) {
    tracing::info!(
        target: DECISION_TARGET,
        decision = record.decision.as_str(),
        request.id = record.request_id,
        http.status = record.status,
        reason = record.reason,
        credential.id = record.credential_id,
        credential.source = record.credential_source,
        auth.method = record.auth_method,
        principal = record.principal,
        http.method = record.http_method,
        http.path = path,
        route = record.route,
        scopes.required = record.required_scopes.map(tracing::field::display),
        client.ip = record.client_ip.map(tracing::field::display),
        snapshot.version = record.snapshot_version,
        duration_us = record.duration_us,
        "check decision"
    );
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_allow_modes() {
        assert_eq!("info".parse(), Ok(AllowLogMode::Info));
        assert_eq!(" OFF ".parse(), Ok(AllowLogMode::Off));
        let hundred = NonZeroU32::new(100).unwrap();
        assert_eq!("sample:100".parse(), Ok(AllowLogMode::Sampled(hundred)));
        assert_eq!("Sampled:100".parse(), Ok(AllowLogMode::Sampled(hundred)));
        for bad in ["", "debug", "sample:0", "sample:", "sample:-1", "sample:x"] {
            assert!(bad.parse::<AllowLogMode>().is_err(), "{bad}");
        }
        assert_eq!(AllowLogMode::Sampled(hundred).to_string(), "sample:100");
    }

    #[test]
    fn sampling_keeps_the_first_of_every_n() {
        let log = DecisionLog::new(AllowLogMode::Sampled(NonZeroU32::new(3).unwrap()));
        let kept: Vec<bool> = (0..7).map(|_| log.keep_allow()).collect();
        assert_eq!(kept, [true, false, false, true, false, false, true]);
    }

    #[test]
    fn truncates_on_a_char_boundary() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("aé", 2), "a");
    }
}
