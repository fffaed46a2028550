//! End to end through Envoy: when agents-authz is down or too slow, Envoy refuses the request
//! itself (503, in the service's JSON error shape) and nothing reaches the upstream; while it is
//! up, Envoy's gRPC health check sees it healthy.
//!
//! Each test starts its own stack on its own ports: a real Envoy running the shipped gateway
//! config (deploy/envoy/envoy.yaml rendered for loopback), the release `agents-authz` binary as
//! its ext_authz service, and an echo upstream that records what reached it. A failing
//! assertion prints the response and, through the harness, the service's and Envoy's logs.

// The harness is shared by several test binaries; each uses only part of it.
#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use support::stack::{Stack, test_dir};

use support::fixtures::*;

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
