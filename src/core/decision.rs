//! request facts + snapshot -> decision, in the order of spec section 6a, with one
//! exception taken from the spec's worked examples: a write carrying `apiToken` in its
//! query is refused (400) right after the route is found, before the method check.
//!
//! The decision runs in three phases so that an adapter can consult a rate limiter (I/O)
//! between them without the core doing any I/O itself:
//! [`route_request`] (steps 1-3), [`Guarded::authenticate`] (steps 5-6) and
//! [`Authenticated::authorize`] (steps 8-9). Steps 4 and 7 are the rate limits.

use super::credentials::{AuthFailure, Credential};
use super::path::{self, PathProblem};
use super::query;
use super::request::{HeaderField, RequestFacts};
use super::routes::{Access, ENTRIES_ALL_STATUSES, Elevation, Route, RouteMatch};
use super::scopes::Grant;
use super::snapshot::Snapshot;
use super::token::{self, AuthMethod, TokenError};
use std::borrow::Cow;
use std::ops::ControlFlow;

/// Why a request was refused. Each maps to one status and error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The target is not in the canonical form the route table is matched against.
    InvalidPath(PathProblem),
    RouteDisabled,
    UnknownRoute,
    MethodNotAllowed,
    ServiceDisabled,
    RateLimited,
    RateLimiterUnavailable,
    QueryTokenOnWrite,
    NotJson,
    MalformedHeader(&'static str),
    /// A method-override header: the upstream might act on another method than the one
    /// this decision was made for.
    MethodOverride,
    Misconfigured,
    MissingToken,
    Auth(AuthFailure),
    MissingScope,
}

impl DenyReason {
    pub fn status(self) -> u16 {
        match self {
            DenyReason::RouteDisabled | DenyReason::UnknownRoute => 404,
            DenyReason::MethodNotAllowed => 405,
            DenyReason::ServiceDisabled
            | DenyReason::Misconfigured
            | DenyReason::RateLimiterUnavailable => 503,
            DenyReason::RateLimited => 429,
            DenyReason::InvalidPath(_)
            | DenyReason::QueryTokenOnWrite
            | DenyReason::NotJson
            | DenyReason::MalformedHeader(_)
            | DenyReason::MethodOverride => 400,
            DenyReason::MissingToken | DenyReason::Auth(_) => 401,
            DenyReason::MissingScope => 403,
        }
    }

    /// The `error` field of the JSON body.
    pub fn code(self) -> &'static str {
        match self.status() {
            400 => "INVALID_REQUEST",
            401 => "UNAUTHORIZED",
            403 => "FORBIDDEN",
            404 => "NOT_FOUND",
            405 => "METHOD_NOT_ALLOWED",
            429 => "RATE_LIMIT_EXCEEDED",
            _ => match self {
                DenyReason::ServiceDisabled => "SERVICE_DISABLED",
                DenyReason::Misconfigured => "SERVER_MISCONFIGURED",
                _ => "SERVICE_UNAVAILABLE",
            },
        }
    }

    /// The reason code of decision logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::InvalidPath(_) => "invalid_path",
            DenyReason::RouteDisabled => "route_disabled",
            DenyReason::UnknownRoute => "unknown_route",
            DenyReason::MethodNotAllowed => "method_not_allowed",
            DenyReason::ServiceDisabled => "service_disabled",
            DenyReason::RateLimited => "rate_limited",
            DenyReason::RateLimiterUnavailable => "rate_limiter_unavailable",
            DenyReason::QueryTokenOnWrite => "query_token_on_write",
            DenyReason::NotJson => "not_json",
            DenyReason::MalformedHeader(_) => "malformed_header",
            DenyReason::MethodOverride => "method_override",
            DenyReason::Misconfigured => "misconfigured",
            DenyReason::MissingToken => "missing_token",
            DenyReason::Auth(AuthFailure::UnknownToken) => "invalid_token",
            DenyReason::Auth(AuthFailure::Expired) => "credential_expired",
            DenyReason::Auth(AuthFailure::Paused) => "credential_paused",
            DenyReason::Auth(AuthFailure::Revoked) => "credential_revoked",
            DenyReason::Auth(AuthFailure::IpNotAllowed) => "ip_not_allowed",
            DenyReason::MissingScope => "missing_scope",
        }
    }

    /// The client-facing message. Authentication failures share one message so a
    /// client cannot tell a revoked key from an unknown one.
    pub fn message(self) -> &'static str {
        match self {
            DenyReason::InvalidPath(_) => {
                "The request path is not in canonical form (dot segments, empty segments, \
                 encoded delimiters, path parameters or raw control bytes)."
            }
            DenyReason::RouteDisabled | DenyReason::UnknownRoute => "Route not found.",
            DenyReason::MethodNotAllowed => "Method not allowed for this route.",
            DenyReason::ServiceDisabled => "The Agents API is disabled.",
            DenyReason::RateLimited => "Rate limit exceeded. Retry after the window resets.",
            DenyReason::RateLimiterUnavailable => {
                "Rate limiting is unavailable; the request was refused."
            }
            DenyReason::QueryTokenOnWrite => "Write requests must authenticate via headers.",
            DenyReason::NotJson => "Write requests must send Content-Type: application/json.",
            DenyReason::MalformedHeader(_) => "A request header is malformed or repeated.",
            DenyReason::MethodOverride => {
                "Method-override headers are not accepted; send the request with its real method."
            }
            DenyReason::Misconfigured => "The Agents API has no credentials configured.",
            DenyReason::MissingToken | DenyReason::Auth(_) => "A valid API token is required.",
            DenyReason::MissingScope => "The token lacks a scope this route requires.",
        }
    }
}

/// Why a request was let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowReason {
    Authenticated,
    PublicRoute,
    TokenNotRequired,
}

impl AllowReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AllowReason::Authenticated => "authenticated",
            AllowReason::PublicRoute => "public_route",
            AllowReason::TokenNotRequired => "token_not_required",
        }
    }
}

/// Who the caller is, once known.
#[derive(Debug, Clone, Copy)]
pub struct Principal<'s> {
    /// `None` when no token was needed.
    pub credential: Option<&'s Credential>,
    pub method: AuthMethod,
    pub grant: &'s Grant,
}

impl Principal<'_> {
    pub fn credential_id(&self) -> &str {
        self.credential.map_or(ANONYMOUS, |c| &c.id)
    }

    pub fn source_header(&self) -> &'static str {
        self.credential.map_or("env", |c| c.source.header_value())
    }

    pub fn fingerprint(&self) -> &str {
        self.credential.map_or(ANONYMOUS, |c| &c.fingerprint)
    }
}

/// The principal id reported when token enforcement is off.
pub const ANONYMOUS: &str = "anonymous";
static GRANT_ALL: Grant = Grant::All;

/// The scope a 403 names: borrowed from the table, or built for plugin routes.
pub type RequiredScope<'s> = Cow<'s, str>;

#[derive(Debug, Clone)]
pub enum Verdict<'s> {
    Allow {
        reason: AllowReason,
        principal: Option<Principal<'s>>,
    },
    Deny {
        reason: DenyReason,
        /// Known when the token authenticated (or was recognised) before the refusal.
        credential: Option<&'s Credential>,
        auth_method: Option<AuthMethod>,
        required_scope: Option<RequiredScope<'s>>,
    },
}

/// The outcome of one Check.
#[derive(Debug, Clone)]
pub struct Decision<'s> {
    pub verdict: Verdict<'s>,
    /// The matched route, when one matched.
    pub route: Option<&'s Route>,
}

impl<'s> Decision<'s> {
    fn deny(route: Option<&'s Route>, reason: DenyReason) -> Self {
        Decision {
            verdict: Verdict::Deny {
                reason,
                credential: None,
                auth_method: None,
                required_scope: None,
            },
            route,
        }
    }

    pub fn is_allow(&self) -> bool {
        matches!(self.verdict, Verdict::Allow { .. })
    }

    pub fn status(&self) -> u16 {
        match &self.verdict {
            Verdict::Allow { .. } => 200,
            Verdict::Deny { reason, .. } => reason.status(),
        }
    }

    pub fn reason_str(&self) -> &'static str {
        match &self.verdict {
            Verdict::Allow { reason, .. } => reason.as_str(),
            Verdict::Deny { reason, .. } => reason.as_str(),
        }
    }

    /// A decision refused by a rate-limit stage (steps 4 and 7).
    pub fn rate_limited(route: &'s Route, reason: DenyReason) -> Self {
        Decision::deny(Some(route), reason)
    }
}

/// A request on a guarded route that passed steps 1-3.
#[derive(Debug, Clone, Copy)]
pub struct Guarded<'s, 'a> {
    snapshot: &'s Snapshot,
    facts: &'a RequestFacts<'a>,
    pub route: &'s Route,
    plugin: Option<(&'a str, &'a str)>,
}

/// A request whose caller is known (steps 5-6 passed).
#[derive(Debug, Clone)]
pub struct Authenticated<'s, 'a> {
    guarded: Guarded<'s, 'a>,
    pub principal: Principal<'s>,
}

/// Runs every step with no rate limiting.
pub fn decide<'s>(snapshot: &'s Snapshot, facts: &RequestFacts<'_>) -> Decision<'s> {
    let run = || -> ControlFlow<Decision<'s>, Decision<'s>> {
        let guarded = route_request(snapshot, facts)?;
        let authenticated = guarded.authenticate()?;
        ControlFlow::Continue(authenticated.authorize())
    };
    match run() {
        ControlFlow::Break(d) | ControlFlow::Continue(d) => d,
    }
}

/// Steps 1-3: route, method, service switch. Public routes are decided here.
pub fn route_request<'s, 'a>(
    snapshot: &'s Snapshot,
    facts: &'a RequestFacts<'a>,
) -> ControlFlow<Decision<'s>, Guarded<'s, 'a>> {
    // Before any lookup: a target the upstream could read as another route than the table
    // does must not be decided at all (see core::path).
    if let Err(problem) = path::check_target(facts.path, facts.query) {
        return ControlFlow::Break(Decision::deny(None, DenyReason::InvalidPath(problem)));
    }
    let (route, plugin) = match snapshot.routes.lookup(facts.path) {
        RouteMatch::Route(r) => (r, None),
        RouteMatch::Plugin {
            route,
            plugin,
            resource,
        } => (route, Some((plugin, resource))),
        RouteMatch::Unknown => {
            return ControlFlow::Break(Decision::deny(None, DenyReason::UnknownRoute));
        }
    };
    let gated_off = route
        .gate
        .is_some_and(|g| !snapshot.posture.flags.allows(g));
    if route.disabled || gated_off {
        return ControlFlow::Break(Decision::deny(Some(route), DenyReason::RouteDisabled));
    }
    // Spec section 1 and its worked example: a write carrying `apiToken` is refused with
    // 400 whatever else is wrong with it, so this precedes the method check.
    if !facts.is_read_method() && query::has_api_token(facts.query) {
        return ControlFlow::Break(Decision::deny(Some(route), DenyReason::QueryTokenOnWrite));
    }
    if !route.methods.allows(facts.method) {
        return ControlFlow::Break(Decision::deny(Some(route), DenyReason::MethodNotAllowed));
    }
    // Frameworks such as Yii, Symfony and Laravel let these headers replace the method;
    // the method allowed here would then not be the one the upstream runs.
    if facts.method_override != HeaderField::Absent {
        return ControlFlow::Break(Decision::deny(Some(route), DenyReason::MethodOverride));
    }
    if route.access == Access::Public {
        return ControlFlow::Break(Decision {
            verdict: Verdict::Allow {
                reason: AllowReason::PublicRoute,
                principal: None,
            },
            route: Some(route),
        });
    }
    if !snapshot.posture.enabled {
        return ControlFlow::Break(Decision::deny(Some(route), DenyReason::ServiceDisabled));
    }
    ControlFlow::Continue(Guarded {
        snapshot,
        facts,
        route,
        plugin,
    })
}

impl<'s, 'a> Guarded<'s, 'a> {
    pub fn facts(&self) -> &RequestFacts<'a> {
        self.facts
    }

    /// Steps 5-6: the write contract, then authentication.
    pub fn authenticate(self) -> ControlFlow<Decision<'s>, Authenticated<'s, 'a>> {
        let facts = self.facts;
        let deny = |reason| ControlFlow::Break(Decision::deny(Some(self.route), reason));
        if !facts.is_read_method() && !is_json_media_type(facts.content_type.value()) {
            return deny(DenyReason::NotJson);
        }
        let posture = &self.snapshot.posture;
        if !posture.require_token {
            let principal = Principal {
                credential: None,
                method: AuthMethod::None,
                grant: &GRANT_ALL,
            };
            return ControlFlow::Continue(Authenticated {
                guarded: self,
                principal,
            });
        }
        if self.snapshot.credentials.is_empty() && posture.fail_on_missing_token {
            return deny(DenyReason::Misconfigured);
        }
        let presented = match token::presented_token(facts, posture.allow_query_token) {
            Ok(Some(t)) => t,
            Ok(None) => return deny(DenyReason::MissingToken),
            Err(TokenError::MalformedHeader(name)) => {
                return deny(DenyReason::MalformedHeader(name));
            }
        };
        let result = self.snapshot.credentials.authenticate(
            &presented.secret,
            facts.client_ip,
            facts.now_epoch_seconds,
        );
        match result {
            Ok(credential) => ControlFlow::Continue(Authenticated {
                guarded: self,
                principal: Principal {
                    credential: Some(credential),
                    method: presented.method,
                    grant: &credential.grant,
                },
            }),
            Err(failure) => ControlFlow::Break(Decision {
                verdict: Verdict::Deny {
                    reason: DenyReason::Auth(failure),
                    credential: None,
                    auth_method: Some(presented.method),
                    required_scope: None,
                },
                route: Some(self.route),
            }),
        }
    }
}

impl<'s> Authenticated<'s, '_> {
    pub fn route(&self) -> &'s Route {
        self.guarded.route
    }

    /// Steps 8-9: the route's scopes, then route-specific elevation.
    pub fn authorize(self) -> Decision<'s> {
        let route = self.guarded.route;
        let grant = self.principal.grant;
        let missing: Option<RequiredScope<'s>> = match (&route.access, self.guarded.plugin) {
            (Access::AnyOf(scopes), _) => (!scopes.iter().any(|s| grant.allows(s)))
                .then(|| Cow::Borrowed(scopes.first().map_or("", |s| &**s))),
            (Access::PluginRead, Some((plugin, resource))) => (!grant
                .allows_plugin_read(plugin, resource))
            .then(|| Cow::Owned(format!("plugins:{plugin}:{resource}:read"))),
            // A plugin route always matches with its names; anything else is refused.
            (Access::PluginRead, None) => Some(Cow::Borrowed("")),
            (Access::Public, _) => None,
        };
        let missing = missing.or_else(|| self.elevation_missing());
        match missing {
            Some(required) => Decision {
                verdict: Verdict::Deny {
                    reason: DenyReason::MissingScope,
                    credential: self.principal.credential,
                    auth_method: Some(self.principal.method),
                    required_scope: Some(required),
                },
                route: Some(route),
            },
            None => Decision {
                verdict: Verdict::Allow {
                    reason: if self.principal.credential.is_some() {
                        AllowReason::Authenticated
                    } else {
                        AllowReason::TokenNotRequired
                    },
                    principal: Some(self.principal),
                },
                route: Some(route),
            },
        }
    }

    fn elevation_missing(&self) -> Option<RequiredScope<'s>> {
        match self.guarded.route.elevation? {
            Elevation::EntriesStatus => (asks_non_live_status(self.guarded.facts.query)
                && !self.principal.grant.allows(ENTRIES_ALL_STATUSES))
            .then_some(Cow::Borrowed(ENTRIES_ALL_STATUSES)),
        }
    }
}

/// Any `status` parameter (or PHP-style `status[...]`) whose value is not exactly
/// `live` asks for more than live entries. Unknown values count as non-live: fail closed.
fn asks_non_live_status(query: Option<&str>) -> bool {
    let Some(query) = query else {
        return false;
    };
    query::pairs(query).any(|p| {
        let name = query::decode(p.raw_name);
        let is_status = name == "status" || name.starts_with("status[");
        is_status && query::decode(p.raw_value) != "live"
    })
}

/// `application/json` or any `+json` type, parameters allowed.
fn is_json_media_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype
                .get(subtype.len().saturating_sub(5)..)
                .is_some_and(|s| s.eq_ignore_ascii_case("+json"))
                && subtype.len() > 5)
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
