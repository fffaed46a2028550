//! In-process tests of the tonic handler: the exact answers Envoy receives.

use super::*;
use crate::config::build_snapshot;
use crate::core::credentials::digest;
use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderMap, HeaderValue, HeaderValueOption, SocketAddress, address, socket_address,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, DeniedHttpResponse, OkHttpResponse,
};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};

fn service(env: &[(&str, &str)]) -> CheckService {
    let keys = json!([
        {"id": "reader", "tokenHash": hex::encode(digest("tok-reader")), "scopes": ["products:read", "health:read"]},
        {"id": "pinned", "tokenHash": hex::encode(digest("tok-pinned")), "scopes": ["health:read"], "ipAllowlist": ["127.0.0.2"]}
    ]);
    let env: BTreeMap<String, String> = [("ENVIRONMENT", "test")]
        .iter()
        .chain(env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let snapshot = build_snapshot(&env, Some(("keys.json", &keys)), None, 3).unwrap();
    CheckService::new(Arc::new(AppState::new(snapshot)))
}

#[derive(Clone, Copy, PartialEq)]
enum Encoding {
    Map,
    Raw,
}

fn check_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    enc: Encoding,
    ip: &str,
) -> CheckRequest {
    let mut http = HttpRequest {
        method: method.into(),
        path: path.into(),
        ..Default::default()
    };
    match enc {
        Encoding::Map => {
            http.headers = headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>();
        }
        Encoding::Raw => {
            http.header_map = Some(HeaderMap {
                headers: headers
                    .iter()
                    .map(|(k, v)| HeaderValue {
                        key: k.to_string(),
                        value: String::new(),
                        raw_value: v.as_bytes().to_vec(),
                    })
                    .collect(),
            });
        }
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: ip.into(),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(40000)),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(AttrRequest {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

async fn check(svc: &CheckService, req: CheckRequest) -> CheckResponse {
    svc.check(Request::new(req)).await.unwrap().into_inner()
}

fn ok(resp: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(resp.status.as_ref().unwrap().code, 0);
    match resp.http_response.as_ref().unwrap() {
        HttpResponse::OkResponse(ok) => ok,
        other => panic!("expected ok, got {other:?}"),
    }
}

fn denied(resp: &CheckResponse) -> &DeniedHttpResponse {
    assert_ne!(resp.status.as_ref().unwrap().code, 0);
    match resp.http_response.as_ref().unwrap() {
        HttpResponse::DeniedResponse(d) => d,
        other => panic!("expected denied, got {other:?}"),
    }
}

fn header_map(options: &[HeaderValueOption]) -> BTreeMap<String, String> {
    options
        .iter()
        .map(|o| {
            let h = o.header.as_ref().unwrap();
            (h.key.clone(), h.value.clone())
        })
        .collect()
}

#[allow(deprecated)]
fn all_overwrite(options: &[HeaderValueOption]) -> bool {
    options
        .iter()
        .all(|o| o.append.as_ref().is_some_and(|a| !a.value))
}

#[tokio::test]
async fn allow_sets_identity_headers_and_strips_client_ones_in_both_encodings() {
    let svc = service(&[("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", "true")]);
    for enc in [Encoding::Map, Encoding::Raw] {
        let resp = check(
            &svc,
            check_request(
                "GET",
                "/agents/v1/products?a=1&apiToken=junk",
                &[
                    ("authorization", "Bearer tok-reader"),
                    ("x-agents-credential-id", "forged"),
                    ("x-agents-extra", "forged"),
                    ("X-Agents-Token", "tok-other"),
                    ("x-request-id", "req-abcdef12"),
                ],
                enc,
                "127.0.0.1",
            ),
        )
        .await;
        let ok = ok(&resp);
        let set = header_map(&ok.headers);
        let principal = set["x-agents-principal"].clone();
        assert!(principal.starts_with("fp_"));
        assert_eq!(
            set,
            BTreeMap::from([
                ("x-agents-auth-method".into(), "authorization".into()),
                ("x-agents-credential-id".into(), "reader".into()),
                ("x-agents-credential-source".into(), "cp".into()),
                ("x-agents-principal".into(), principal),
                ("x-agents-redact-email".into(), "true".into()),
                ("x-agents-scopes".into(), "health:read products:read".into()),
                ("x-request-id".into(), "req-abcdef12".into()),
            ])
        );
        assert!(all_overwrite(&ok.headers));
        let mut removed = ok.headers_to_remove.clone();
        removed.sort();
        assert_eq!(
            removed,
            ["authorization", "x-agents-extra", "x-agents-token"]
        );
        assert_eq!(ok.query_parameters_to_remove, ["apiToken"]);
        assert_eq!(
            header_map(&ok.response_headers_to_add),
            BTreeMap::from([("x-request-id".into(), "req-abcdef12".into())])
        );
        let meta = resp.dynamic_metadata.as_ref().unwrap();
        assert!(meta.fields.contains_key("credential_id"));
    }
}

#[tokio::test]
async fn public_route_strips_client_identity_headers() {
    let svc = service(&[]);
    let resp = check(
        &svc,
        check_request(
            "GET",
            "/llms.txt",
            &[("x-agents-scopes", "*")],
            Encoding::Map,
            "127.0.0.1",
        ),
    )
    .await;
    let ok = ok(&resp);
    assert_eq!(ok.headers_to_remove, ["x-agents-scopes"]);
    assert_eq!(header_map(&ok.headers)["x-agents-auth-method"], "none");
    assert!(!header_map(&ok.headers).contains_key("x-agents-credential-id"));
}

#[tokio::test]
async fn denials_carry_status_json_and_headers() {
    let svc = service(&[]);
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: &[Case<'_>] = &[
        ("GET", "/agents/v1/products", &[], 401, "UNAUTHORIZED"),
        (
            "GET",
            "/agents/v1/orders",
            &[("authorization", "Bearer tok-reader")],
            403,
            "FORBIDDEN",
        ),
        (
            "POST",
            "/agents/v1/products",
            &[],
            405,
            "METHOD_NOT_ALLOWED",
        ),
        ("GET", "/agents/v1/users", &[], 404, "NOT_FOUND"),
        (
            "POST",
            "/agents/v1/workflows/run-report",
            &[("content-type", "text/plain")],
            400,
            "INVALID_REQUEST",
        ),
    ];
    for (method, path, headers, status, code) in cases {
        for enc in [Encoding::Map, Encoding::Raw] {
            let resp = check(&svc, check_request(method, path, headers, enc, "127.0.0.1")).await;
            let d = denied(&resp);
            assert_eq!(
                d.status.as_ref().unwrap().code,
                i32::from(*status),
                "{path}"
            );
            let h = header_map(&d.headers);
            assert_eq!(h["content-type"], "application/json");
            assert_eq!(h["cache-control"], "no-store, private");
            let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
            assert_eq!(body["error"], *code);
            assert_eq!(body["status"], *status);
            assert_eq!(body["requestId"], h["x-request-id"].as_str());
            match status {
                401 => assert_eq!(h["www-authenticate"], "Bearer"),
                403 => assert_eq!(body["requiredScope"], "orders:read"),
                405 => assert_eq!(h["allow"], "GET, HEAD"),
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn ip_allowlist_uses_the_check_source_address() {
    let svc = service(&[]);
    let h = [("authorization", "Bearer tok-pinned")];
    let allowed = check(
        &svc,
        check_request("GET", "/agents/v1/health", &h, Encoding::Map, "127.0.0.2"),
    )
    .await;
    ok(&allowed);
    let refused = check(
        &svc,
        check_request("GET", "/agents/v1/health", &h, Encoding::Map, "127.0.0.1"),
    )
    .await;
    assert_eq!(denied(&refused).status.as_ref().unwrap().code, 401);
}

#[tokio::test]
async fn repeated_raw_authorization_is_a_400() {
    let svc = service(&[]);
    let resp = check(
        &svc,
        check_request(
            "GET",
            "/agents/v1/health",
            &[
                ("authorization", "Bearer tok-reader"),
                ("authorization", "Bearer x"),
            ],
            Encoding::Raw,
            "127.0.0.1",
        ),
    )
    .await;
    assert_eq!(denied(&resp).status.as_ref().unwrap().code, 400);
}

#[tokio::test]
async fn service_disabled_and_misconfigured_are_503() {
    let svc = service(&[("PLUGIN_AGENTS_ENABLED", "false")]);
    let resp = check(
        &svc,
        check_request("GET", "/agents/v1/health", &[], Encoding::Map, "127.0.0.1"),
    )
    .await;
    let body: serde_json::Value = serde_json::from_str(&denied(&resp).body).unwrap();
    assert_eq!(body["error"], "SERVICE_DISABLED");
}

#[tokio::test]
async fn requests_envoy_could_not_send_are_grpc_errors() {
    let svc = service(&[]);
    let err = svc
        .check(Request::new(CheckRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = svc
        .check(Request::new(check_request(
            "",
            "/x",
            &[],
            Encoding::Map,
            "127.0.0.1",
        )))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

fn limited_service(store: &str, per_minute: &str) -> CheckService {
    let mut svc = service(&[("PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE", per_minute)]);
    let state = Arc::get_mut(&mut svc.state).unwrap();
    state.limiter = crate::ratelimit::RateLimiter::from_spec(store).unwrap();
    svc
}

#[tokio::test]
async fn rate_limit_headers_on_allows_and_429_with_retry_after_when_exhausted() {
    let svc = limited_service("memory", "2");
    let h = [("authorization", "Bearer tok-reader")];
    for remaining in ["1", "0"] {
        let resp = check(
            &svc,
            check_request("GET", "/agents/v1/health", &h, Encoding::Map, "127.0.0.1"),
        )
        .await;
        let added = header_map(&ok(&resp).response_headers_to_add);
        assert_eq!(added["x-ratelimit-limit"], "2");
        assert_eq!(added["x-ratelimit-remaining"], remaining);
        assert!(added["x-ratelimit-reset"].parse::<u64>().unwrap() > 1_700_000_000);
    }
    let resp = check(
        &svc,
        check_request("GET", "/agents/v1/health", &h, Encoding::Map, "127.0.0.1"),
    )
    .await;
    let d = denied(&resp);
    assert_eq!(d.status.as_ref().unwrap().code, 429);
    let headers = header_map(&d.headers);
    let retry: u64 = headers["retry-after"].parse().unwrap();
    assert!((1..=60).contains(&retry));
    let body: serde_json::Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(body["error"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(body["retryAfter"], retry);
    assert_eq!(headers["x-ratelimit-remaining"], "0");
}

#[tokio::test]
async fn pre_auth_stage_limits_by_ip_before_token_lookup() {
    let svc = limited_service("memory", "1");
    let bad = [("authorization", "Bearer wrong")];
    let first = check(
        &svc,
        check_request("GET", "/agents/v1/health", &bad, Encoding::Map, "127.0.0.9"),
    )
    .await;
    assert_eq!(denied(&first).status.as_ref().unwrap().code, 401);
    let second = check(
        &svc,
        check_request("GET", "/agents/v1/health", &bad, Encoding::Map, "127.0.0.9"),
    )
    .await;
    assert_eq!(denied(&second).status.as_ref().unwrap().code, 429);
    // Another address has its own pre-auth bucket.
    let other = check(
        &svc,
        check_request("GET", "/agents/v1/health", &bad, Encoding::Map, "127.0.0.8"),
    )
    .await;
    assert_eq!(denied(&other).status.as_ref().unwrap().code, 401);
}

#[tokio::test]
async fn an_unreachable_store_fails_closed() {
    // Nothing listens on port 1; every limiter call fails quickly.
    let svc = limited_service("redis://127.0.0.1:1/0", "100");
    let h = [("authorization", "Bearer tok-reader")];
    let resp = check(
        &svc,
        check_request("GET", "/agents/v1/health", &h, Encoding::Map, "127.0.0.1"),
    )
    .await;
    assert_eq!(denied(&resp).status.as_ref().unwrap().code, 503);
}

#[tokio::test]
async fn whoami_route_keeps_the_token_for_the_endpoint_that_reauthenticates() {
    let keys =
        json!([{"id": "me", "tokenHash": hex::encode(digest("tok-me")), "scopes": ["auth:read"]}]);
    let env: BTreeMap<String, String> = [("ENVIRONMENT".to_string(), "test".to_string())].into();
    let svc = CheckService::new(Arc::new(AppState::new(
        build_snapshot(&env, Some(("k", &keys)), None, 1).unwrap(),
    )));
    for (name, value) in [
        ("authorization", "Bearer tok-me"),
        ("x-agents-token", "tok-me"),
    ] {
        let resp = check(
            &svc,
            check_request(
                "GET",
                "/agents/v1/auth/whoami",
                &[(name, value), ("x-agents-extra", "forged")],
                Encoding::Map,
                "127.0.0.1",
            ),
        )
        .await;
        let ok = ok(&resp);
        assert_eq!(ok.headers_to_remove, ["x-agents-extra"], "{name}");
        assert_eq!(header_map(&ok.headers)["x-agents-client-ip"], "127.0.0.1");
        assert!(ok.query_parameters_to_remove.is_empty());
    }
}
