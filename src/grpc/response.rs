//! The one mapping from a decision to Envoy's `CheckResponse`.
//!
//! What Envoy does with each answer:
//! - OK status + `OkHttpResponse`: the request continues upstream with our header and
//!   query mutations applied.
//! - non-OK status + `DeniedHttpResponse`: Envoy answers the client with our status,
//!   headers and body; the upstream never sees the request.
//! - a gRPC error (`tonic::Status`, returned by the service, not here): Envoy treats the
//!   call as failed and answers with the filter's `status_on_error` (403 unless set), or
//!   lets the request through if `failure_mode_allow` is on, which our shipped config
//!   never sets.

use crate::answer::{self, CACHE_CONTROL, JSON};
use crate::core::decision::{Decision, Principal, Verdict};
use crate::core::query;
use crate::core::token::AuthMethod;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::protobuf::{BoolValue, Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;

use super::headers::HeaderView;

/// The upstream headers the service owns. Client copies are overwritten or removed.
pub const IDENTITY_HEADERS: [&str; 6] = [
    "x-agents-credential-id",
    "x-agents-credential-source",
    "x-agents-auth-method",
    "x-agents-principal",
    "x-agents-scopes",
    "x-agents-redact-email",
];
const AGENTS_HEADER_PREFIX: &str = "x-agents-";
const TOKEN_HEADER: &str = "x-agents-token";
/// The client address, set for upstreams that authenticate again; see `upstream_reauthenticates`.
pub const CLIENT_IP_HEADER: &str = "x-agents-client-ip";

/// Extra headers for the client, such as rate-limit counters.
pub type ExtraHeaders<'e> = &'e [(&'static str, String)];

/// What the response needs from the request besides the decision.
pub struct RequestContext<'a> {
    pub headers: HeaderView<'a>,
    /// The path without the query, as Envoy sent it.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub request_id: &'a str,
    /// `PLUGIN_AGENTS_REDACT_EMAIL`, passed on to the upstream (spec section 5).
    pub redact_email: bool,
    /// The client address this Check was decided for.
    pub client_ip: Option<std::net::IpAddr>,
}

pub fn check_response(
    decision: &Decision<'_>,
    ctx: &RequestContext<'_>,
    extra: ExtraHeaders<'_>,
    retry_after: Option<u64>,
) -> CheckResponse {
    match &decision.verdict {
        Verdict::Allow { principal, .. } => {
            // Envoy sends only the exact path to the endpoint that authenticates again; a
            // variant the route table also accepts (a trailing '/') goes to the Agents API
            // like any other route, and must lose the token like any other route.
            let forward_token = decision
                .route
                .is_some_and(|r| r.upstream_reauthenticates && *r.path == *ctx.path);
            allowed(principal.as_ref(), ctx, extra, forward_token)
        }
        Verdict::Deny { reason, .. } => {
            let mut headers = vec![
                set("content-type", JSON),
                set("cache-control", CACHE_CONTROL),
                set("x-request-id", ctx.request_id),
            ];
            match reason.status() {
                401 => headers.push(set("www-authenticate", "Bearer")),
                405 => {
                    if let Some(route) = decision.route {
                        headers.push(set("allow", &route.allow_header));
                    }
                }
                429 => {
                    if let Some(secs) = retry_after {
                        headers.push(set("retry-after", &secs.to_string()));
                    }
                }
                _ => {}
            }
            headers.extend(extra.iter().map(|(k, v)| set(k, v)));
            let body =
                answer::error_body(decision, ctx.request_id, retry_after).unwrap_or_default();
            CheckResponse {
                status: Some(rpc::Status {
                    code: grpc_code(reason.status()),
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus {
                        code: i32::from(reason.status()),
                    }),
                    headers,
                    body,
                })),
                dynamic_metadata: None,
            }
        }
    }
}

fn allowed(
    principal: Option<&Principal<'_>>,
    ctx: &RequestContext<'_>,
    extra: ExtraHeaders<'_>,
    forward_token: bool,
) -> CheckResponse {
    let mut headers = Vec::with_capacity(IDENTITY_HEADERS.len() + 1);
    let method = principal.map_or(AuthMethod::None, |p| p.method);
    if let Some(p) = principal {
        headers.push(set(IDENTITY_HEADERS[0], p.credential_id()));
        headers.push(set(IDENTITY_HEADERS[1], p.source_header()));
        headers.push(set(IDENTITY_HEADERS[3], p.fingerprint()));
        headers.push(set(IDENTITY_HEADERS[4], p.grant.header_value()));
        let redact = if ctx.redact_email { "true" } else { "false" };
        headers.push(set(IDENTITY_HEADERS[5], redact));
    }
    headers.push(set(IDENTITY_HEADERS[2], method.as_str()));
    headers.push(set("x-request-id", ctx.request_id));
    // An upstream that authenticates again (whoami) must see the same client address as
    // this Check; Envoy's X-Forwarded-For can differ (it writes its own host address for
    // loopback clients).
    if forward_token && let Some(ip) = ctx.client_ip {
        headers.push(set(CLIENT_IP_HEADER, &ip.to_string()));
    }

    let kept = |name: &str| {
        (forward_token && name == TOKEN_HEADER)
            || headers
                .iter()
                .any(|h| h.header.as_ref().is_some_and(|v| v.key == name))
    };
    let mut headers_to_remove: Vec<String> = ctx
        .headers
        .names()
        .filter(|n| starts_with_ignore_case(n, AGENTS_HEADER_PREFIX))
        .map(str::to_ascii_lowercase)
        .filter(|n| !kept(n))
        .collect();
    // The bearer token was ours; the upstream gets the identity headers instead, unless
    // it authenticates the caller itself.
    if method == AuthMethod::Authorization && !forward_token {
        headers_to_remove.push("authorization".into());
    }
    let query_parameters_to_remove = if forward_token {
        Vec::new()
    } else {
        api_token_params(ctx.query)
    };

    let mut response_headers_to_add = vec![set("x-request-id", ctx.request_id)];
    response_headers_to_add.extend(extra.iter().map(|(k, v)| set(k, v)));

    CheckResponse {
        status: Some(rpc::Status::default()),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            headers,
            headers_to_remove,
            response_headers_to_add,
            query_parameters_to_remove,
            ..Default::default()
        })),
        dynamic_metadata: principal.map(|p| credential_metadata(p.credential_id())),
    }
}

/// Every spelling of `apiToken` in the query, raw and decoded, so Envoy removes it
/// whichever form it compares.
fn api_token_params(query: Option<&str>) -> Vec<String> {
    let Some(q) = query else {
        return Vec::new();
    };
    let mut names: Vec<String> = Vec::new();
    for p in query::pairs(q).filter(|p| query::is_api_token_name(p.raw_name)) {
        for name in [
            p.raw_name.to_string(),
            query::decode(p.raw_name).into_owned(),
        ] {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// Exposed to Envoy's access log as `%DYNAMIC_METADATA(envoy.filters.http.ext_authz:credential_id)%`.
fn credential_metadata(id: &str) -> Struct {
    Struct {
        fields: [(
            "credential_id".to_string(),
            Value {
                kind: Some(Kind::StringValue(id.to_string())),
            },
        )]
        .into(),
    }
}

/// Overwrite semantics on every Envoy version: `append` explicitly false (an unset field
/// means different things across releases).
#[allow(deprecated)]
fn set(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value: value.to_string(),
            raw_value: Vec::new(),
        }),
        append: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// The gRPC status code inside a denied CheckResponse; Envoy only checks it is not OK.
fn grpc_code(http_status: u16) -> i32 {
    match http_status {
        401 => 16, // UNAUTHENTICATED
        429 => 8,  // RESOURCE_EXHAUSTED
        503 => 14, // UNAVAILABLE
        _ => 7,    // PERMISSION_DENIED
    }
}
