//! Check throughput through the whole gRPC handler (facts, decision, response, decision
//! log, metrics) with the rate limiter off, in memory and on a real local Redis.
//!
//! Machines here are shared and noisy, so the result that matters is the ratio of each
//! mode to "off", measured in the same run. Needs `redis-server` (or `REDIS_SERVER_BIN`).

#[path = "../tests/ratelimit_redis/server.rs"]
#[allow(dead_code, reason = "the bench only starts the server")]
mod server;

use agents_authz::config::build_snapshot;
use agents_authz::core::credentials::digest;
use agents_authz::grpc::service::CheckService;
use agents_authz::ratelimit::RateLimiter;
use agents_authz::state::AppState;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TASKS: usize = 32;
const RUN: Duration = Duration::from_secs(3);

fn service(limiter: RateLimiter) -> Arc<CheckService> {
    let keys = serde_json::json!([{
        "id": "bench", "tokenHash": hex::encode(digest("bench-token")), "scopes": ["products:read"]
    }]);
    let env: BTreeMap<String, String> = [
        ("ENVIRONMENT", "test"),
        ("PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE", "4000000000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let snapshot = build_snapshot(&env, Some(("bench", &keys)), None, 1).expect("snapshot");
    let mut state = AppState::new(snapshot);
    state.limiter = limiter;
    Arc::new(CheckService::new(Arc::new(state)))
}

fn request(client: u32) -> CheckRequest {
    let ip = std::net::Ipv4Addr::from(0x0a00_0000 + client % 1024).to_string();
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: ip,
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/agents/v1/products?page=2".into(),
                    headers: [(
                        "authorization".to_string(),
                        "Bearer bench-token".to_string(),
                    )]
                    .into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Checks per second with TASKS concurrent callers for RUN.
fn throughput(rt: &tokio::runtime::Runtime, svc: Arc<CheckService>) -> f64 {
    rt.block_on(async {
        let deadline = Instant::now() + RUN;
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let resp = svc
                        .check(tonic::Request::new(request(t as u32 * 7919 + n as u32)))
                        .await
                        .expect("check answers");
                    assert_eq!(resp.get_ref().status.as_ref().map(|s| s.code), Some(0));
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("task");
        }
        total as f64 / RUN.as_secs_f64()
    })
}

fn main() {
    // The decision log is not installed: this measures the decision, not stdout.
    let redis = server::RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let modes = [
        ("off", RateLimiter::Disabled),
        ("memory", RateLimiter::from_spec("memory").expect("memory")),
        (
            "redis",
            RateLimiter::from_spec(&redis.url()).expect("redis"),
        ),
    ];
    let mut baseline = None;
    println!(
        "check throughput, {TASKS} concurrent callers, {}s per mode",
        RUN.as_secs()
    );
    for (name, limiter) in modes {
        let rate = throughput(&rt, service(limiter));
        let base = *baseline.get_or_insert(rate);
        println!(
            "  limiter {name:>6}: {rate:>12.0} checks/s  ratio to off {:.3}",
            rate / base
        );
    }
}
