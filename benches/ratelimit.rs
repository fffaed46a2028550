//! Check throughput of the rate limiter: off, in memory and on a real local Redis.
//!
//! Criterion measures one check at a time (latency); a second pass then runs many checks
//! concurrently, the way the gRPC server does, and prints each store's throughput as a
//! ratio of the disabled limiter's. Needs `redis-server` (or `REDIS_SERVER_BIN`).

#[path = "../tests/ratelimit_redis/server.rs"]
#[allow(
    dead_code,
    reason = "the bench only starts the server; the tests also stop it"
)]
mod server;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agents_authz::ratelimit::{Quota, RateLimitKey, RateLimiter, Stage};
use criterion::Criterion;
use tokio::runtime::Runtime;

const NOW: u64 = 1_700_000_040;
const CLIENTS: u32 = 1024;
const TASKS: u32 = 64;
const QUOTA: Quota = Quota {
    limit: u32::MAX,
    window_seconds: 60,
};

fn key(client: u32) -> RateLimitKey<'static> {
    RateLimitKey {
        stage: Stage::PostAuth,
        route: "/agents/v1/products",
        client_ip: Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + client))),
        principal: Some("3f9c2a71d4e8b605"),
    }
}

async fn run_checks(limiter: &RateLimiter, first: u64, count: u64) {
    for i in first..first + count {
        let client = (i % u64::from(CLIENTS)) as u32;
        let verdict = limiter.check(&key(client), QUOTA, NOW).await;
        black_box(verdict.expect("store answers"));
    }
}

fn latency(c: &mut Criterion, rt: &Runtime, stores: &[(&str, Arc<RateLimiter>)]) {
    let mut group = c.benchmark_group("ratelimit_check");
    for (name, limiter) in stores {
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = Instant::now();
                    run_checks(limiter, 0, iters).await;
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
}

/// Checks per second with `TASKS` concurrent callers, `total` checks in all.
fn throughput(rt: &Runtime, limiter: &Arc<RateLimiter>, total: u64) -> f64 {
    let per_task = total / u64::from(TASKS);
    rt.block_on(async {
        let started = Instant::now();
        let tasks: Vec<_> = (0..u64::from(TASKS))
            .map(|t| {
                let limiter = limiter.clone();
                tokio::spawn(async move { run_checks(&limiter, t * per_task, per_task).await })
            })
            .collect();
        for task in tasks {
            task.await.expect("bench task");
        }
        (per_task * u64::from(TASKS)) as f64 / started.elapsed().as_secs_f64()
    })
}

fn compare(rt: &Runtime, stores: &[(&str, Arc<RateLimiter>)]) {
    println!("\nconcurrent check throughput ({TASKS} tasks, {CLIENTS} clients):");
    let mut baseline = None;
    for (name, limiter) in stores {
        let total = if *name == "redis" { 100_000 } else { 1_000_000 };
        throughput(rt, limiter, total / 10);
        let rate = throughput(rt, limiter, total);
        let base = *baseline.get_or_insert(rate);
        println!(
            "  {name:<8} {:>12.0} checks/s   {:>8.4} x disabled",
            rate,
            rate / base
        );
    }
}

fn main() {
    let redis = server::RedisServer::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let stores = [
        ("disabled", Arc::new(RateLimiter::Disabled)),
        (
            "memory",
            Arc::new(RateLimiter::from_spec("memory").unwrap()),
        ),
        (
            "redis",
            Arc::new(RateLimiter::from_spec(&redis.url()).unwrap()),
        ),
    ];
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    latency(&mut criterion, &rt, &stores);
    criterion.final_summary();
    compare(&rt, &stores);
}
