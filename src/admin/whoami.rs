//! The admin `WhoAmI`: who a presented token authenticates as, evaluated exactly as
//! `GET /agents/v1/auth/whoami` would be (so it needs `auth:read`), without consuming
//! rate limit and without writing a decision line (it is not a Check).

use super::convert;
use crate::admin_proto::{WhoAmIRequest, WhoAmIResponse};
use crate::authz::{self, RateLimitMode};
use crate::core::decision::{DenyReason, Principal, Verdict};
use crate::core::request::{HeaderField, RequestFacts};
use crate::state::{AppState, now_epoch_seconds};
use std::net::IpAddr;
use tonic::Status;

/// The route the token is evaluated against.
pub const WHOAMI_PATH: &str = "/agents/v1/auth/whoami";

/// Evaluates the request's token. Answers a response when the decision allows (the
/// token authenticated, or token enforcement is off), else a status naming the reason.
///
/// Fail closed on IP allowlists: with `client_ip` empty the request has no client
/// address, and a key restricted to some addresses is refused (`ip_not_allowed`), as
/// Envoy's Check would refuse a request whose source it cannot read. Pass the address
/// the key is used from to evaluate its allowlist.
pub async fn who_am_i(state: &AppState, request: &WhoAmIRequest) -> Result<WhoAmIResponse, Status> {
    let client_ip = client_ip(&request.client_ip)?;
    // The token travels only inside this header value; it is hashed by the core and
    // dropped with this frame.
    let bearer = format!("Bearer {}", request.token);
    let facts = RequestFacts {
        method: "GET",
        path: WHOAMI_PATH,
        query: None,
        authorization: HeaderField::Present(&bearer),
        agents_token: HeaderField::Absent,
        content_type: HeaderField::Absent,
        request_id: HeaderField::Absent,
        method_override: HeaderField::Absent,
        client_ip,
        now_epoch_seconds: now_epoch_seconds(),
    };
    let snapshot = state.snapshot.load_full();
    let evaluation = authz::evaluate_with(state, &snapshot, &facts, RateLimitMode::Peek).await;
    let decision = &evaluation.decision;
    let credential_id = match &decision.verdict {
        Verdict::Allow { principal, .. } => principal.and_then(|p| p.credential),
        Verdict::Deny { credential, .. } => *credential,
    }
    .map(|c| &*c.id);
    let outcome = match &decision.verdict {
        Verdict::Allow { principal, .. } => Ok(response(*principal, decision.reason_str())),
        Verdict::Deny {
            reason,
            credential,
            required_scope,
            ..
        } => Err(deny_status(
            *reason,
            credential.map(|c| &*c.id),
            required_scope.as_deref(),
        )),
    };
    tracing::info!(
        admin.rpc = "WhoAmI",
        reason = decision.reason_str(),
        credential.id = credential_id,
        snapshot.version = snapshot.version,
        "admin whoami answered"
    );
    outcome
}

fn client_ip(raw: &str) -> Result<Option<IpAddr>, Status> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| {
        Status::invalid_argument(format!("client_ip '{raw}' is not an IPv4 or IPv6 address"))
    })
}

fn response(principal: Option<Principal<'_>>, reason: &str) -> WhoAmIResponse {
    let Some(p) = principal else {
        // A routes file made whoami public: nobody is identified.
        return WhoAmIResponse {
            reason: reason.to_owned(),
            ..Default::default()
        };
    };
    let authenticated = p.credential.is_some();
    WhoAmIResponse {
        authenticated,
        // Token enforcement off: the token was not looked at (`token_not_required`).
        reason: if authenticated {
            String::new()
        } else {
            reason.to_owned()
        },
        credential_id: p.credential_id().to_owned(),
        credential_source: p.source_header().to_owned(),
        principal_fingerprint: p.fingerprint().to_owned(),
        granted_scopes: convert::granted_scopes(p.grant),
        expires_at: convert::rfc3339(p.credential.and_then(|c| c.expires_at)),
    }
}

/// One status per refusal; the message starts with the reason code of decision logs
/// and never holds the token.
fn deny_status(reason: DenyReason, credential: Option<&str>, scope: Option<&str>) -> Status {
    let code = reason.as_str();
    match reason {
        // The token is missing, unknown, expired, paused, revoked or used from outside
        // its allowlist: the caller is not authenticated.
        DenyReason::MissingToken | DenyReason::Auth(_) => {
            Status::unauthenticated(format!("{code}: the token does not authenticate"))
        }
        DenyReason::MissingScope => Status::permission_denied(format!(
            "{code}: credential '{}' authenticates but lacks {} (whoami requires it)",
            credential.unwrap_or("?"),
            scope.unwrap_or("auth:read"),
        )),
        // The configuration, not the token, decides these: fix the service.
        DenyReason::ServiceDisabled
        | DenyReason::Misconfigured
        | DenyReason::RouteDisabled
        | DenyReason::UnknownRoute
        | DenyReason::MethodNotAllowed => Status::failed_precondition(format!(
            "{code}: the service's configuration refuses whoami ({})",
            reason.message()
        )),
        DenyReason::RateLimited => Status::resource_exhausted(format!("{code}: try again later")),
        DenyReason::RateLimiterUnavailable => {
            Status::unavailable(format!("{code}: the rate-limit store is unreachable"))
        }
        DenyReason::InvalidPath(_)
        | DenyReason::QueryTokenOnWrite
        | DenyReason::NotJson
        | DenyReason::MalformedHeader(_)
        | DenyReason::MethodOverride => {
            Status::invalid_argument(format!("{code}: {}", reason.message()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::build_snapshot;
    use crate::core::credentials::digest;
    use serde_json::json;
    use std::collections::BTreeMap;
    use tonic::Code;

    const READER: &str = "tok-reader-5c1f0e9a";
    const NO_AUTH_READ: &str = "tok-health-8d2b7c4e";
    const PINNED: &str = "tok-pinned-3a9e1d6b";

    fn state(extra: &[(&str, &str)]) -> AppState {
        let keys = json!([
            {"id": "reader", "tokenHash": hex::encode(digest(READER)),
             "scopes": ["auth:read", "products:read"], "expiresAt": "2999-01-01T00:00:00Z"},
            {"id": "health-only", "tokenHash": hex::encode(digest(NO_AUTH_READ)),
             "scopes": ["health:read"]},
            {"id": "pinned", "tokenHash": hex::encode(digest(PINNED)),
             "scopes": ["auth:read"], "ipAllowlist": ["10.1.0.0/16"]}
        ]);
        let env: BTreeMap<String, String> = [("ENVIRONMENT", "test")]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AppState::new(build_snapshot(&env, Some(("keys.json", &keys)), None, 2).unwrap())
    }

    fn ask(token: &str, ip: &str) -> WhoAmIRequest {
        WhoAmIRequest {
            token: token.into(),
            client_ip: ip.into(),
        }
    }

    async fn refused(state: &AppState, token: &str, ip: &str) -> Status {
        who_am_i(state, &ask(token, ip)).await.unwrap_err()
    }

    #[tokio::test]
    async fn a_valid_token_names_its_principal_and_scopes() {
        let who = who_am_i(&state(&[]), &ask(READER, "")).await.unwrap();
        assert!(who.authenticated);
        assert_eq!(who.credential_id, "reader");
        assert_eq!(who.credential_source, "cp");
        assert!(who.principal_fingerprint.starts_with("fp_"));
        assert_eq!(who.granted_scopes, ["auth:read", "products:read"]);
        assert_eq!(who.expires_at, "2999-01-01T00:00:00Z");
        assert!(!format!("{who:?}").contains(READER));
    }

    #[tokio::test]
    async fn refusals_name_the_reason_and_never_the_token() {
        let s = state(&[]);
        for (token, code, reason) in [
            (
                "tok-unknown-0000000000",
                Code::Unauthenticated,
                "invalid_token",
            ),
            ("", Code::Unauthenticated, "missing_token"),
            ("bad!chars@here", Code::Unauthenticated, "missing_token"),
            (NO_AUTH_READ, Code::PermissionDenied, "missing_scope"),
        ] {
            let status = refused(&s, token, "").await;
            assert_eq!(status.code(), code, "{token}");
            assert!(status.message().starts_with(reason), "{}", status.message());
            if !token.is_empty() {
                assert!(!status.message().contains(token));
            }
        }
        let scope = refused(&s, NO_AUTH_READ, "").await;
        assert!(scope.message().contains("'health-only'"));
        assert!(scope.message().contains("auth:read"));
    }

    #[tokio::test]
    async fn allowlisted_keys_fail_closed_without_a_client_address() {
        let s = state(&[]);
        let status = refused(&s, PINNED, "").await;
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().starts_with("ip_not_allowed"));
        assert_eq!(
            refused(&s, PINNED, "10.2.0.1").await.code(),
            Code::Unauthenticated
        );
        let inside = who_am_i(&s, &ask(PINNED, "10.1.2.3")).await.unwrap();
        assert_eq!(inside.credential_id, "pinned");
        let bad = refused(&s, PINNED, "not-an-ip").await;
        assert_eq!(bad.code(), Code::InvalidArgument);
    }

    #[tokio::test]
    async fn disabled_service_is_a_failed_precondition() {
        let s = state(&[("PLUGIN_AGENTS_ENABLED", "false")]);
        let status = refused(&s, READER, "").await;
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().starts_with("service_disabled"));
    }

    #[tokio::test]
    async fn without_token_enforcement_the_caller_is_anonymous() {
        let s = state(&[("PLUGIN_AGENTS_REQUIRE_TOKEN", "false")]);
        let who = who_am_i(&s, &ask("anything-at-all", "")).await.unwrap();
        assert!(!who.authenticated);
        assert_eq!(who.reason, "token_not_required");
        assert_eq!(who.credential_id, "anonymous");
        assert_eq!(who.granted_scopes, ["*"]);
    }
}
