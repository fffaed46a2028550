//! End to end through Envoy: the header and path contract. Token sources, request ids, public
//! routes, query tokens, path normalisation, Envoy's own stripping of client identity (against a
//! stub ext_authz), and the access log.
//!
//! Each test starts its own stack on its own ports: a real Envoy running the shipped gateway
//! config (deploy/envoy/envoy.yaml rendered for loopback), the release `agents-authz` binary as
//! its ext_authz service, and an echo upstream that records what reached it. A failing
//! assertion prints the response and, through the harness, the service's and Envoy's logs.

// The harness is shared by several test binaries; each uses only part of it.
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use support::stack::{Stack, test_dir};

use support::fixtures::*;

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
