//! `GET /agents/v1/auth/whoami`: the caller's principal, scopes and posture. Envoy routes
//! the path here after its own Check; this endpoint authenticates the caller again
//! against the same snapshot rather than trusting forwarded identity headers.

use crate::answer::{self, CACHE_CONTROL};
use crate::authz::{self, Evaluation, RateLimitMode};
use crate::core::decision::{Principal, Verdict};
use crate::core::request::{HeaderField, METHOD_OVERRIDE_HEADERS, RequestFacts};
use crate::core::scopes::{self, Grant};
use crate::core::snapshot::Snapshot;
use crate::grpc::response::CLIENT_IP_HEADER;
use crate::state::{AppState, now_epoch_seconds};
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use serde_json::{Map, Value, json};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Which peers may tell us the client address in `X-Forwarded-For` (the Envoy in front).
#[derive(Debug, Clone)]
pub struct TrustedProxies(pub Vec<IpNet>);

pub struct WhoamiState {
    pub app: Arc<AppState>,
    pub trusted_proxies: TrustedProxies,
}

pub async fn whoami(
    State(state): State<Arc<WhoamiState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response {
    let headers = request.headers();
    let method = request.method().as_str();
    let (path, query) = (request.uri().path(), request.uri().query());
    let facts = RequestFacts {
        method,
        path,
        query,
        authorization: field(headers, "authorization"),
        agents_token: field(headers, "x-agents-token"),
        content_type: field(headers, "content-type"),
        request_id: field(headers, "x-request-id"),
        method_override: METHOD_OVERRIDE_HEADERS
            .iter()
            .map(|name| field(headers, name))
            .find(|f| *f != HeaderField::Absent)
            .unwrap_or_default(),
        client_ip: Some(client_ip(peer.ip(), headers, &state.trusted_proxies)),
        now_epoch_seconds: now_epoch_seconds(),
    };
    let snapshot = state.app.snapshot.load_full();
    let evaluation = authz::evaluate_with(&state.app, &snapshot, &facts, RateLimitMode::Peek).await;
    let request_id = answer::request_id(facts.request_id);
    let (status, body) = match &evaluation.decision.verdict {
        Verdict::Allow {
            principal: Some(p), ..
        } => {
            let body = principal_body(p, &snapshot, &evaluation, &request_id);
            (StatusCode::OK, body.to_string())
        }
        _ => {
            let body =
                answer::error_body(&evaluation.decision, &request_id, evaluation.retry_after)
                    .unwrap_or_default();
            let status =
                StatusCode::from_u16(evaluation.decision.status()).unwrap_or(StatusCode::FORBIDDEN);
            (status, body)
        }
    };
    let mut response = (status, body).into_response();
    set_headers(response.headers_mut(), status, &evaluation, &request_id);
    if *request.method() == Method::HEAD {
        *response.body_mut() = Body::empty();
    }
    response
}

/// The payload for an authenticated caller.
fn principal_body(
    p: &Principal<'_>,
    snapshot: &Snapshot,
    evaluation: &Evaluation<'_>,
    request_id: &str,
) -> Value {
    let posture = &snapshot.posture;
    let granted: Vec<&str> = match p.grant {
        Grant::All => vec![scopes::WILDCARD],
        Grant::Scopes(s) => s.iter().collect(),
    };
    let available: Map<String, Value> = scopes::available(posture.flags)
        .map(|(name, desc)| (name.to_string(), Value::from(desc)))
        .collect();
    json!({
        "principal": {
            "credentialId": p.credential_id(),
            "credentialSource": p.source_header(),
            "authMethod": p.method.as_str(),
            "principalFingerprint": p.fingerprint(),
        },
        "grantedScopes": granted,
        "availableScopes": available,
        "runtimeSecurity": {
            "requireToken": posture.require_token,
            "allowQueryToken": posture.allow_query_token,
            "redactEmail": posture.redact_email,
        },
        "rateLimit": evaluation.rate_limit_json(posture),
        "requestId": request_id,
    })
}

/// The headers every answer carries, as the gRPC adapter sets them for Envoy.
fn set_headers(
    h: &mut HeaderMap,
    status: StatusCode,
    evaluation: &Evaluation<'_>,
    request_id: &str,
) {
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(answer::JSON));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    if status == StatusCode::UNAUTHORIZED {
        h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED
        && let Some(route) = evaluation.decision.route
        && let Ok(v) = HeaderValue::from_str(&route.allow_header)
    {
        h.insert(header::ALLOW, v);
    }
    for (name, value) in &evaluation.client_headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(*name, v);
        }
    }
}

/// One header; repeated or non-UTF-8 values are `Malformed`.
fn field<'a>(headers: &'a HeaderMap, name: &str) -> HeaderField<'a> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => HeaderField::Absent,
        (Some(v), None) => v
            .to_str()
            .map_or(HeaderField::Malformed, HeaderField::Present),
        _ => HeaderField::Malformed,
    }
}

/// The peer, unless the peer is a trusted proxy: then the address the Check was decided
/// for (`x-agents-client-ip`, set by this service through Envoy and never taken from a
/// client, whose copy Envoy strips), else the last `X-Forwarded-For` hop.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    if !trusted.0.iter().any(|n| n.contains(&peer)) {
        return peer;
    }
    let from_check = field(headers, CLIENT_IP_HEADER)
        .value()
        .and_then(|v| v.trim().parse().ok());
    if let Some(ip) = from_check {
        return ip;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|hop| hop.trim().parse().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> TrustedProxies {
        TrustedProxies(vec!["127.0.0.1/32".parse().unwrap()])
    }

    #[test]
    fn forwarded_address_is_used_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("10.9.9.9, 127.0.0.2"),
        );
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            client_ip(local, &h, &trusted()),
            "127.0.0.2".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(other, &h, &trusted()), other);
        assert_eq!(client_ip(local, &HeaderMap::new(), &trusted()), local);
    }

    #[test]
    fn the_checks_client_address_wins_over_forwarded_hops_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.2"));
        h.insert(CLIENT_IP_HEADER, HeaderValue::from_static("127.0.0.1"));
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(client_ip(local, &h, &trusted()), local);
        assert_eq!(client_ip(other, &h, &trusted()), other);
    }

    #[test]
    fn repeated_headers_are_malformed() {
        let mut h = HeaderMap::new();
        h.append("authorization", HeaderValue::from_static("Bearer a"));
        assert_eq!(field(&h, "authorization"), HeaderField::Present("Bearer a"));
        h.append("authorization", HeaderValue::from_static("Bearer b"));
        assert_eq!(field(&h, "authorization"), HeaderField::Malformed);
    }
}
