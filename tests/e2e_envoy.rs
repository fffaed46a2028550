//! End to end: a client talks to a real Envoy running the shipped gateway config
//! (deploy/envoy/envoy.yaml rendered for loopback), which asks the release `agents-authz` binary
//! over ext_authz gRPC and forwards allowed requests to an echo upstream that records them.
//!
//! Each test starts its own stack on its own ports. A failing assertion prints the response
//! (status, headers, body) and, through the harness, the service's and Envoy's logs.

// The harness is shared by several test binaries; each uses only part of it.
#[allow(dead_code)]
mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use reqwest::Method;
use support::http::{Reply, client, client_from};
use support::keys::{ManagedKey, write_managed_keys};
use support::service::ServiceConfig;
use support::stack::{Stack, test_dir};
use support::upstream::Recorded;

const READER: &str = "e2e-reader-3f9a1c7d5b2e";
const LIMITED: &str = "e2e-limited-8c4e2a6f0d1b";
const PINNED: &str = "e2e-pinned-1a2b3c4d5e6f";
const REPORTER: &str = "e2e-reporter-9d8c7b6a5f4e";
const ENV_TOKEN: &str = "e2e-env-token-77aa88bb99cc";

const READER_SCOPES: &str = "auth:read entries:read health:read products:read";

/// The identity headers the contract sets on every allowed guarded request.
const IDENTITY_HEADERS: [&str; 5] = [
    "x-agents-auth-method",
    "x-agents-credential-id",
    "x-agents-credential-source",
    "x-agents-principal",
    "x-agents-scopes",
];

/// Client-supplied identity that must never reach the upstream.
const FORGED: [(&str, &str); 7] = [
    ("x-agents-credential-id", "forged-admin"),
    ("x-agents-credential-source", "forged"),
    ("x-agents-auth-method", "forged"),
    ("x-agents-principal", "forged"),
    ("x-agents-scopes", "*"),
    ("x-agents-debug", "forged"),
    ("x_agents_credential_id", "forged-underscore"),
];

fn managed_keys() -> Vec<ManagedKey> {
    vec![
        ManagedKey::new(
            "reader",
            READER,
            &["products:read", "auth:read", "health:read", "entries:read"],
        ),
        ManagedKey::new("limited", LIMITED, &["health:read"]),
        ManagedKey::new("pinned", PINNED, &["products:read"]).allow_ips(&["127.0.0.2"]),
        ManagedKey::new("reporter", REPORTER, &["jobs:report"]),
    ]
}

/// Managed keys plus one JSON-set credential; production profile (the strict defaults).
async fn standard_stack(extra_env: &[(&str, &str)]) -> Stack {
    let dir = test_dir();
    let keys = write_managed_keys(dir.path(), &managed_keys());
    let env_credential =
        format!(r#"{{"id": "Env Bot", "token": "{ENV_TOKEN}", "scopes": "products:read"}}"#);
    let mut config = ServiceConfig::default()
        .managed_keys(&keys)
        .env("ENVIRONMENT", "production")
        .env("PLUGIN_AGENTS_API_CREDENTIALS", &env_credential);
    for (key, value) in extra_env {
        config = config.env(key, value);
    }
    Stack::start(dir, config).await
}

async fn get(stack: &Stack, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(stack, Method::GET, path, headers, None).await
}

async fn send(
    stack: &Stack,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut request = client().request(method, stack.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    Reply::read(request).await
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Panics unless the upstream received nothing: a refused request must stop at Envoy.
fn assert_nothing_forwarded(stack: &Stack, context: &str) {
    let requests = stack.upstream.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path_and_query.as_str()).collect();
    assert!(
        requests.is_empty(),
        "{context}: the upstream received {paths:?}"
    );
}

/// Panics unless the upstream saw exactly the contract's identity headers with these values
/// and no other x-agents-* header.
fn assert_identity(seen: &Recorded, id: &str, source: &str, method: &str, scopes: &str) {
    let mut names: Vec<&str> = seen.agents_headers().iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        IDENTITY_HEADERS,
        "x-agents-* headers upstream: {:?}",
        seen.agents_headers()
    );
    assert_eq!(seen.header("x-agents-credential-id"), Some(id));
    assert_eq!(seen.header("x-agents-credential-source"), Some(source));
    assert_eq!(seen.header("x-agents-auth-method"), Some(method));
    assert_eq!(seen.header("x-agents-scopes"), Some(scopes));
    let principal = seen.header("x-agents-principal").unwrap_or_default();
    assert!(!principal.is_empty(), "empty x-agents-principal");
    for token in [READER, LIMITED, PINNED, REPORTER, ENV_TOKEN] {
        assert!(
            !principal.contains(token),
            "x-agents-principal carries a token"
        );
    }
}

/// Panics if any token appears anywhere in what the upstream received, or in its query.
fn assert_no_token_forwarded(seen: &Recorded) {
    assert!(
        !seen.query().contains("apiToken"),
        "apiToken forwarded: {}",
        seen.path_and_query
    );
    assert!(
        seen.header("x-agents-token").is_none(),
        "x-agents-token forwarded"
    );
}

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
async fn token_header_and_env_credentials_authenticate_without_forwarding_the_token() {
    let stack = standard_stack(&[]).await;
    get(&stack, "/agents/v1/products", &[("x-agents-token", READER)])
        .await
        .expect_status(200);
    let seen = stack.upstream.last();
    assert_identity(&seen, "reader", "cp", "x-agents-token", READER_SCOPES);
    assert_no_token_forwarded(&seen);

    let authorization = bearer(ENV_TOKEN);
    get(
        &stack,
        "/agents/v1/products",
        &[("authorization", &authorization)],
    )
    .await
    .expect_status(200);
    assert_identity(
        &stack.upstream.last(),
        "env-bot",
        "env",
        "authorization",
        "products:read",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_kept_when_well_formed_and_replaced_otherwise() {
    let stack = standard_stack(&[]).await;
    let authorization = bearer(READER);
    let kept = "e2e-request:0001.a_b";
    let headers = [
        ("authorization", authorization.as_str()),
        ("x-request-id", kept),
    ];
    let reply = get(&stack, "/agents/v1/products", &headers).await;
    assert_eq!(
        reply.expect_status(200).header("x-request-id"),
        Some(kept),
        "\n{reply}"
    );
    assert_eq!(stack.upstream.last().header("x-request-id"), Some(kept));

    let headers = [
        ("authorization", authorization.as_str()),
        ("x-request-id", "abc"),
    ];
    let reply = get(&stack, "/agents/v1/products", &headers).await;
    let fresh = reply
        .expect_status(200)
        .header("x-request-id")
        .expect("X-Request-Id");
    assert_ne!(
        fresh, "abc",
        "a too-short request id must be replaced\n{reply}"
    );
    assert_eq!(stack.upstream.last().header("x-request-id"), Some(fresh));

    let reply = get(&stack, "/agents/v1/products", &[("x-request-id", kept)]).await;
    assert_eq!(
        reply.expect_error(401, "UNAUTHORIZED")["requestId"],
        kept,
        "\n{reply}"
    );
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
async fn public_routes_pass_without_a_token_and_without_client_identity() {
    let stack = standard_stack(&[]).await;
    for path in ["/llms.txt", "/commerce.txt"] {
        get(&stack, path, &FORGED).await.expect_status(200);
        let seen = stack.upstream.last();
        assert_eq!(seen.path_and_query, path);
        for (name, value) in seen.agents_headers() {
            let forged = FORGED.iter().any(|(n, v)| *n == name && *v == value);
            assert!(
                !forged,
                "client-supplied {name}: {value} reached the upstream on {path}"
            );
            assert!(
                name != "x-agents-debug",
                "client-only header {name} reached the upstream"
            );
        }
        assert!(
            seen.header("x_agents_credential_id").is_none(),
            "underscore header forwarded"
        );
    }
    assert_eq!(stack.upstream.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_token_when_enabled_is_stripped_before_the_upstream() {
    let stack = standard_stack(&[("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", "true")]).await;
    let path = format!("/agents/v1/products?page=2&apiToken={READER}&sort=name");
    get(&stack, &path, &[]).await.expect_status(200);
    let seen = stack.upstream.last();
    assert_identity(&seen, "reader", "cp", "query", READER_SCOPES);
    assert_no_token_forwarded(&seen);
    assert!(
        seen.query().contains("page=2"),
        "other query parameters kept: {}",
        seen.path_and_query
    );
    assert!(
        seen.query().contains("sort=name"),
        "other query parameters kept: {}",
        seen.path_and_query
    );

    let head = format!("/agents/v1/health?apiToken={LIMITED}");
    send(&stack, Method::HEAD, &head, &[], None)
        .await
        .expect_status(200);
    let seen = stack.upstream.last();
    assert_eq!(seen.method, "HEAD");
    assert_identity(&seen, "limited", "cp", "query", "health:read");
    assert_no_token_forwarded(&seen);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_before_authorisation() {
    let stack = standard_stack(&[]).await;
    let reader = bearer(READER);
    for path in [
        "/agents/v1//products",
        "/agents/v1/users/../products",
        "/agents/v1/./products",
    ] {
        get(&stack, path, &[("authorization", &reader)])
            .await
            .expect_status(200);
        assert_eq!(
            stack.upstream.last().path_and_query,
            "/agents/v1/products",
            "from {path}"
        );
    }
    // Normalised first, so a limited key cannot reach products by a detour either.
    let limited = bearer(LIMITED);
    let reply = get(
        &stack,
        "/agents/v1/health/../products",
        &[("authorization", &limited)],
    )
    .await;
    reply.expect_error(403, "FORBIDDEN");
    let count = stack.upstream.count();
    let reply = get(
        &stack,
        "/agents/v1/products%2F..%2Fusers",
        &[("authorization", &reader)],
    )
    .await;
    reply.expect_status(400);
    assert_eq!(
        stack.upstream.count(),
        count,
        "an escaped-slash path reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_health_checks_the_authz_service_over_grpc() {
    let stack = standard_stack(&[]).await;
    let grpc = stack.service.as_ref().expect("service").grpc_addr;
    let healthy = format!("agents_authz_grpc::{grpc}::health_flags::healthy");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let clusters = stack.envoy.admin("/clusters").await;
        if clusters.lines().any(|line| line == healthy) {
            break;
        }
        let flags: Vec<&str> = clusters
            .lines()
            .filter(|l| l.contains("health_flags"))
            .collect();
        assert!(
            Instant::now() < deadline,
            "authz host never healthy: {flags:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_records_request_id_and_credential_without_secrets() {
    let stack = standard_stack(&[("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", "true")]).await;
    let kept = "e2e-access-log-0001";
    let path = format!("/agents/v1/products?apiToken={READER}");
    let reply = get(&stack, &path, &[("x-request-id", kept)]).await;
    reply.expect_status(200);
    let line = wait_for_access_log(&stack, kept).await;
    let entry: serde_json::Value = serde_json::from_str(&line).expect("access log line is JSON");
    assert_eq!(entry["credential_id"], "reader", "access log: {line}");
    assert_eq!(entry["path"], "/agents/v1/products", "access log: {line}");
    assert!(
        !line.contains(READER),
        "the access log holds a token: {line}"
    );
}

async fn wait_for_access_log(stack: &Stack, request_id: &str) -> String {
    // Envoy flushes its stdout access log shortly after the response; poll briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = stack.envoy.access_log();
        if let Some(line) = log.lines().find(|l| l.contains(request_id)) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no access log line for {request_id}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_closed_when_the_service_is_stopped() {
    let mut stack = standard_stack(&[]).await;
    let reader = bearer(READER);
    get(&stack, "/agents/v1/products", &[("authorization", &reader)])
        .await
        .expect_status(200);
    assert_eq!(stack.upstream.count(), 1);

    stack.service().stop();
    for _ in 0..3 {
        let reply = get(&stack, "/agents/v1/products", &[("authorization", &reader)]).await;
        reply.expect_error(503, "AUTHORIZATION_UNAVAILABLE");
    }
    assert_eq!(
        stack.upstream.count(),
        1,
        "a request reached the upstream with authz down"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_closed_when_the_service_is_too_slow() {
    let stack = Stack::start_with_blackhole(test_dir()).await;
    let started = Instant::now();
    let kept = "e2e-too-slow-0001";
    let auth = bearer(READER);
    let headers = [("authorization", auth.as_str()), ("x-request-id", kept)];
    let reply = get(&stack, "/agents/v1/products", &headers).await;
    let body = reply.expect_error(503, "AUTHORIZATION_UNAVAILABLE");
    assert_eq!(
        body["requestId"], kept,
        "Envoy's own answer keeps the request id\n{reply}"
    );
    // Refused by Envoy's ext_authz timeout (0.5 s in the deploy config), not by the client's.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_nothing_forwarded(&stack, "authz too slow");
}

/// Envoy's own share of the header contract, seen through a stub authz that strips nothing:
/// forged x-agents-* headers never reach ext_authz or the upstream, the token header does reach
/// ext_authz, and what ext_authz sets survives to the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_strips_client_identity_before_ext_authz_and_keeps_what_it_sets() {
    let stack = Stack::start_with_stub(test_dir()).await;
    let mut headers = vec![("x-agents-token", "e2e-some-token")];
    headers.extend(FORGED);
    get(&stack, "/agents/v1/products", &headers)
        .await
        .expect_status(200);

    let stub = stack.stub.as_ref().expect("stub authz");
    let checked = stub.last_check_headers();
    assert!(
        checked.iter().any(|n| n == "x-agents-token"),
        "token header kept: {checked:?}"
    );
    for name in checked
        .iter()
        .filter(|n| n.starts_with("x-agents-") || n.starts_with("x_agents"))
    {
        assert_eq!(
            name, "x-agents-token",
            "ext_authz was sent the client's {name}"
        );
    }
    let seen = stack.upstream.last();
    let (stub_name, stub_value) = support::stub_authz::STUB_HEADER;
    assert_eq!(
        seen.header(stub_name),
        Some(stub_value),
        "the ext_authz header was removed"
    );
    let mut agents: Vec<&str> = seen.agents_headers().iter().map(|(n, _)| *n).collect();
    agents.sort_unstable();
    assert_eq!(
        agents,
        [stub_name, "x-agents-token"],
        "x-agents-* reaching the upstream"
    );
    assert!(
        seen.header("x_agents_credential_id").is_none(),
        "underscore header forwarded"
    );
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
