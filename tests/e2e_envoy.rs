//! End to end through Envoy: every answer path (200, 400, 401, 403, 404, 405, 429, 503), the
//! identity headers on allowed requests, the per-key IP allowlist and whoami.
//!
//! Each test starts its own stack on its own ports: a real Envoy running the shipped gateway
//! config (deploy/envoy/envoy.yaml rendered for loopback), the release `agents-authz` binary as
//! its ext_authz service, and an echo upstream that records what reached it. A failing
//! assertion prints the response and, through the harness, the service's and Envoy's logs.

// The harness is shared by several test binaries; each uses only part of it.
#[allow(dead_code)]
mod support;

use std::net::{IpAddr, Ipv4Addr};

use reqwest::Method;
use support::http::{Reply, client_from};
use support::service::ServiceConfig;
use support::stack::{Stack, test_dir};

use support::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_request_reaches_upstream_with_exactly_the_identity_headers() {
    let stack = standard_stack(&[]).await;
    let authorization = bearer(READER);
    let mut headers = vec![("authorization", authorization.as_str())];
    headers.extend(FORGED);
    let reply = get(&stack, "/agents/v1/products?page=2", &headers).await;
    reply.expect_status(200);

    let seen = stack.upstream.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path_and_query, "/agents/v1/products?page=2");
    assert_identity(&seen, "reader", "cp", "authorization", READER_SCOPES);
    assert!(
        seen.header("x_agents_credential_id").is_none(),
        "underscore header forwarded"
    );
    let request_id = reply
        .header("x-request-id")
        .expect("X-Request-Id on an allowed reply");
    assert_eq!(
        seen.header("x-request-id"),
        Some(request_id),
        "upstream and client request ids"
    );
    assert_eq!(stack.upstream.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unknown_and_query_tokens_get_401() {
    let stack = standard_stack(&[]).await;
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        ("/agents/v1/products", vec![]),
        (
            "/agents/v1/products",
            vec![("authorization", "Bearer e2e-not-a-known-token")],
        ),
        (
            "/agents/v1/products",
            vec![("authorization", "Basic cmVhZGVyOnNlY3JldA==")],
        ),
        // Query tokens are off by default: a valid token in the query does not count.
        (
            "/agents/v1/health?apiToken=e2e-limited-8c4e2a6f0d1b",
            vec![],
        ),
    ];
    for (path, headers) in cases {
        let reply = get(&stack, path, &headers).await;
        reply.expect_error(401, "UNAUTHORIZED");
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer"),
            "WWW-Authenticate on 401\n{reply}"
        );
        let leaked = reply.body.contains(LIMITED);
        assert!(!leaked, "the 401 body echoes the token\n{reply}");
    }
    assert_nothing_forwarded(&stack, "401 answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_scopes_get_403_naming_the_required_scope() {
    let stack = standard_stack(&[]).await;
    let limited = bearer(LIMITED);
    let reply = get(
        &stack,
        "/agents/v1/products",
        &[("authorization", &limited)],
    )
    .await;
    let body = reply.expect_error(403, "FORBIDDEN");
    assert_eq!(body["requiredScope"], "products:read", "\n{reply}");

    // The entries status elevation: a non-live status needs a second scope.
    let reader = bearer(READER);
    let reply = get(
        &stack,
        "/agents/v1/entries?status=all",
        &[("authorization", &reader)],
    )
    .await;
    let body = reply.expect_error(403, "FORBIDDEN");
    assert_eq!(
        body["requiredScope"], "entries:read_all_statuses",
        "\n{reply}"
    );
    assert_nothing_forwarded(&stack, "403 answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_contract_violations_get_400() {
    let stack = standard_stack(&[("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", "true")]).await;
    let auth = bearer(REPORTER);
    let path = "/agents/v1/workflows/run-report";
    let with_query = format!("{path}?apiToken={REPORTER}");
    let json = ("content-type", "application/json");
    let cases: [(&str, Vec<(&str, &str)>); 4] = [
        (
            path,
            vec![("authorization", &auth), ("content-type", "text/plain")],
        ),
        (
            path,
            vec![("authorization", &auth), ("content-type", "text/json")],
        ),
        (path, vec![("authorization", &auth)]),
        // Even with query tokens enabled, and with a valid header token as well.
        (&with_query, vec![("authorization", &auth), json]),
    ];
    for (path, headers) in cases {
        let reply = send(&stack, Method::POST, path, &headers, Some("{}")).await;
        reply.expect_error(400, "INVALID_REQUEST");
    }
    // The write contract comes before authentication: no token needed to be told.
    let unauthenticated = "/agents/v1/sync-state/checkpoint?apiToken=xyz";
    let reply = send(&stack, Method::POST, unauthenticated, &[json], Some("{}")).await;
    reply.expect_error(400, "INVALID_REQUEST");
    assert_nothing_forwarded(&stack, "400 answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_bodies_pass_through_unchanged() {
    let stack = standard_stack(&[]).await;
    let auth = bearer(REPORTER);
    let body = r#"{"report":"weekly","items":[1,2,3],"note":"ünïcode"}"#;
    for content_type in [
        "application/json; charset=utf-8",
        "application/problem+json",
    ] {
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", content_type),
        ];
        let path = "/agents/v1/workflows/run-report";
        send(&stack, Method::POST, path, &headers, Some(body))
            .await
            .expect_status(200);
        let seen = stack.upstream.last();
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.path_and_query, path);
        assert_eq!(
            seen.body,
            body.as_bytes(),
            "request body changed on the way"
        );
        assert_eq!(seen.header("content-type"), Some(content_type));
        assert_identity(&seen, "reporter", "cp", "authorization", "jobs:report");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_gated_and_unknown_routes_get_404() {
    let stack = standard_stack(&[]).await;
    let reader = bearer(READER);
    let gated = [
        "/agents/v1/addresses",
        "/agents/v1/users/show",
        "/agents/v1/control/policies",
    ];
    for path in gated {
        // Gated routes are hidden before authentication: no token needed to get the 404.
        get(&stack, path, &[]).await.expect_error(404, "NOT_FOUND");
        get(&stack, path, &[("authorization", &reader)])
            .await
            .expect_error(404, "NOT_FOUND");
    }
    let unknown = get(
        &stack,
        "/agents/v1/no-such-route",
        &[("authorization", &reader)],
    )
    .await;
    unknown.expect_error(404, "NOT_FOUND");
    // Outside the Agents API the gateway answers 404 itself.
    get(&stack, "/admin", &[("authorization", &reader)])
        .await
        .expect_status(404);
    assert_nothing_forwarded(&stack, "404 answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_get_405_with_allow() {
    let stack = standard_stack(&[]).await;
    let json = ("content-type", "application/json");
    let reply = send(&stack, Method::DELETE, "/agents/v1/products", &[], None).await;
    reply.expect_error(405, "METHOD_NOT_ALLOWED");
    let allow = reply
        .header("allow")
        .unwrap_or_default()
        .to_ascii_uppercase();
    assert!(
        allow.contains("GET") && allow.contains("HEAD"),
        "Allow on a read route\n{reply}"
    );

    let reader = bearer(READER);
    let headers = [("authorization", reader.as_str()), json];
    let reply = send(
        &stack,
        Method::POST,
        "/agents/v1/products",
        &headers,
        Some("{}"),
    )
    .await;
    reply.expect_error(405, "METHOD_NOT_ALLOWED");

    let reply = get(&stack, "/agents/v1/workflows/run-report", &[]).await;
    reply.expect_error(405, "METHOD_NOT_ALLOWED");
    let allow = reply
        .header("allow")
        .unwrap_or_default()
        .to_ascii_uppercase();
    assert!(allow.contains("POST"), "Allow on a write route\n{reply}");
    assert_nothing_forwarded(&stack, "405 answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_service_answers_503_service_disabled() {
    let stack = standard_stack(&[("PLUGIN_AGENTS_ENABLED", "false")]).await;
    let reader = bearer(READER);
    let reply = get(&stack, "/agents/v1/products", &[("authorization", &reader)]).await;
    reply.expect_error(503, "SERVICE_DISABLED");
    assert_nothing_forwarded(&stack, "SERVICE_DISABLED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_at_all_answers_503_server_misconfigured() {
    let config = ServiceConfig::default().env("ENVIRONMENT", "production");
    let stack = Stack::start(test_dir(), config).await;
    let reply = get(
        &stack,
        "/agents/v1/products",
        &[("authorization", "Bearer anything")],
    )
    .await;
    reply.expect_error(503, "SERVER_MISCONFIGURED");
    assert_nothing_forwarded(&stack, "SERVER_MISCONFIGURED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_headers_reach_the_client_and_the_limit_answers_429() {
    let stack = standard_stack(&[("PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE", "2")]).await;
    let reader = bearer(READER);
    for remaining in ["1", "0"] {
        let reply = get(&stack, "/agents/v1/products", &[("authorization", &reader)]).await;
        reply.expect_status(200);
        assert_eq!(reply.header("x-ratelimit-limit"), Some("2"), "\n{reply}");
        assert_eq!(
            reply.header("x-ratelimit-remaining"),
            Some(remaining),
            "\n{reply}"
        );
        assert!(reply.header("x-ratelimit-reset").is_some(), "\n{reply}");
    }
    let reply = get(&stack, "/agents/v1/products", &[("authorization", &reader)]).await;
    let body = reply.expect_error(429, "RATE_LIMIT_EXCEEDED");
    assert!(body["retryAfter"].as_u64().is_some(), "retryAfter\n{reply}");
    assert_eq!(
        stack.upstream.count(),
        2,
        "the limited request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_allowlist_binds_a_key_to_its_client_address() {
    let stack = standard_stack(&[]).await;
    let pinned = bearer(PINNED);
    let url = stack.url("/agents/v1/products");
    let from_allowed = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let request = from_allowed.get(&url).header("authorization", &pinned);
    Reply::read(request).await.expect_status(200);
    assert_identity(
        &stack.upstream.last(),
        "pinned",
        "cp",
        "authorization",
        "products:read",
    );

    let from_other = client_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let reply = Reply::read(from_other.get(&url).header("authorization", &pinned)).await;
    reply.expect_error(401, "UNAUTHORIZED");
    assert_eq!(
        stack.upstream.count(),
        1,
        "the refused request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_through_envoy_is_answered_by_the_service() {
    let stack = standard_stack(&[]).await;
    let reader = bearer(READER);
    let reply = get(
        &stack,
        "/agents/v1/auth/whoami",
        &[("authorization", &reader)],
    )
    .await;
    let body = reply.expect_status(200).json();
    let principal = &body["principal"];
    let id = principal["credentialId"]
        .as_str()
        .or(body["credentialId"].as_str());
    assert_eq!(id, Some("reader"), "whoami credentialId\n{reply}");
    let granted = body["grantedScopes"]
        .as_array()
        .expect("grantedScopes list");
    let granted: Vec<&str> = granted.iter().filter_map(|s| s.as_str()).collect();
    assert_eq!(granted.join(" "), READER_SCOPES, "\n{reply}");
    assert!(
        !reply.body.contains(READER),
        "whoami echoes the token\n{reply}"
    );
    // The live numbers are the ones this request's Check counted, in the same bucket,
    // even though Envoy writes its own host address into X-Forwarded-For for loopback.
    let remaining = reply.header("x-ratelimit-remaining").map(str::to_owned);
    assert_eq!(
        body["rateLimit"]["remaining"].to_string(),
        remaining.unwrap_or_default(),
        "whoami rateLimit vs X-RateLimit-Remaining\n{reply}"
    );

    let limited = bearer(LIMITED);
    let reply = get(
        &stack,
        "/agents/v1/auth/whoami",
        &[("authorization", &limited)],
    )
    .await;
    assert_eq!(
        reply.expect_error(403, "FORBIDDEN")["requiredScope"],
        "auth:read"
    );
    assert_nothing_forwarded(&stack, "whoami goes to the service, not the upstream");
}
