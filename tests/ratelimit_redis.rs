//! The Redis store against a real `redis-server`: shared limits across replicas, failing
//! closed when Redis stops or hangs, and recovering when it returns.

#[path = "ratelimit_redis/server.rs"]
mod server;

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agents_authz::ratelimit::{
    Quota, REDIS_KEY_PREFIX, RateLimitError, RateLimitKey, RateLimiter, Stage,
};
use server::RedisServer;

const T0: u64 = 1_700_000_040; // a window start for 60-second windows
const FAIL_FAST: Duration = Duration::from_millis(1_000);

fn key(route: &str) -> RateLimitKey<'_> {
    RateLimitKey {
        stage: Stage::PostAuth,
        route,
        client_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7))),
        principal: Some("fp-demo-agent"),
    }
}

fn quota(limit: u32) -> Quota {
    Quota::new(limit, 60).unwrap()
}

fn limiter(server: &RedisServer) -> Arc<RateLimiter> {
    Arc::new(RateLimiter::from_spec(&server.url()).unwrap())
}

async fn allowed_once(limiter: &RateLimiter, route: &str, now: u64) -> bool {
    let verdict = limiter.check(&key(route), quota(100), now).await;
    verdict
        .unwrap()
        .expect("redis store gives a verdict")
        .allowed
}

/// Keeps checking until Redis answers again; panics after `limit`.
async fn wait_for_recovery(limiter: &RateLimiter, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if limiter
            .check(&key("/recover"), quota(100), T0)
            .await
            .is_ok()
        {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "no recovery within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_share_one_limit_exactly() {
    const LIMIT: u32 = 120;
    const CHECKS: usize = 500;
    let server = RedisServer::start();
    let replicas = [limiter(&server), limiter(&server)];
    for replica in &replicas {
        replica.ping().await.expect("replica reaches redis");
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(CHECKS));
    let tasks: Vec<_> = (0..CHECKS)
        .map(|i| {
            let replica = replicas[i % 2].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let verdict = replica.check(&key("/shared"), quota(LIMIT), T0 + 5).await;
                (i % 2, verdict.unwrap().unwrap())
            })
        })
        .collect();
    let mut remaining_seen = Vec::new();
    let mut allowed_per_replica = [0u32; 2];
    for task in tasks {
        let (replica, verdict) = task.await.unwrap();
        if verdict.allowed {
            allowed_per_replica[replica] += 1;
            remaining_seen.push(verdict.remaining);
        }
    }
    remaining_seen.sort_unstable();
    println!("allowed per replica: {allowed_per_replica:?} of {CHECKS} checks, limit {LIMIT}");
    // Each replica alone made more checks than the limit, so separate counters would have
    // allowed up to twice the limit; exactly the limit in total means one shared counter.
    const { assert!(CHECKS / 2 > LIMIT as usize) };
    assert_eq!(allowed_per_replica.iter().sum::<u32>(), LIMIT);
    assert_eq!(
        remaining_seen,
        (0..LIMIT).collect::<Vec<_>>(),
        "each count seen once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_roll_over_and_carry_the_prefix_and_an_expiry() {
    let server = RedisServer::start();
    let replica = limiter(&server);
    let tight = quota(2);
    for _ in 0..2 {
        assert!(
            replica
                .check(&key("/roll"), tight, T0 + 58)
                .await
                .unwrap()
                .unwrap()
                .allowed
        );
    }
    let denied = replica
        .check(&key("/roll"), tight, T0 + 59)
        .await
        .unwrap()
        .unwrap();
    assert!(!denied.allowed);
    assert_eq!(
        (denied.reset_epoch, denied.retry_after_seconds),
        (T0 + 60, 1)
    );
    let next = replica
        .check(&key("/roll"), tight, T0 + 60)
        .await
        .unwrap()
        .unwrap();
    assert!(next.allowed);
    assert_eq!((next.remaining, next.reset_epoch), (1, T0 + 120));

    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{REDIS_KEY_PREFIX}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    println!("keys: {keys:?}");
    assert_eq!(keys.len(), 2, "one counter per window");
    for k in &keys {
        let ttl: i64 = redis::cmd("TTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=120).contains(&ttl), "{k} has ttl {ttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_redis_fails_closed_fast_and_restarting_recovers() {
    let mut server = RedisServer::start();
    let replica = limiter(&server);
    assert!(allowed_once(&replica, "/outage", T0).await);

    server.stop();
    for attempt in 0..6 {
        let started = Instant::now();
        let outcome = replica.check(&key("/outage"), quota(100), T0).await;
        let took = started.elapsed();
        let err = outcome.expect_err("a stopped Redis must not allow");
        println!("attempt {attempt}: {err} after {took:?}");
        assert!(took < FAIL_FAST, "took {took:?}");
        assert!(
            matches!(
                err,
                RateLimitError::Unreachable { .. } | RateLimitError::Timeout { .. }
            ),
            "{err}"
        );
        let shown = err.to_string();
        assert!(shown.contains(&server.url()["redis://".len()..]), "{shown}");
        assert!(!shown.contains("fp-demo-agent"), "{shown}");
    }
    assert!(replica.ping().await.is_err());

    server.restart();
    let recovered_after = wait_for_recovery(&replica, Duration::from_secs(10)).await;
    println!("recovered {recovered_after:?} after restart");
    assert!(replica.ping().await.is_ok());
    assert!(
        allowed_once(&replica, "/outage", T0).await,
        "fresh Redis, fresh count"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_fails_closed_within_the_call_budget() {
    let server = RedisServer::start();
    let replica = limiter(&server);
    assert!(allowed_once(&replica, "/hung", T0).await);

    signal(server.pid(), "-STOP");
    let started = Instant::now();
    let err = replica
        .check(&key("/hung"), quota(100), T0)
        .await
        .unwrap_err();
    let took = started.elapsed();
    println!("hung: {err} after {took:?}");
    assert!(
        matches!(
            err,
            RateLimitError::Timeout {
                timeout_ms: 250,
                ..
            }
        ),
        "{err}"
    );
    assert!(took < FAIL_FAST, "took {took:?}");

    signal(server.pid(), "-CONT");
    let recovered_after = wait_for_recovery(&replica, Duration::from_secs(10)).await;
    println!("recovered {recovered_after:?} after SIGCONT");
}

fn signal(pid: u32, which: &str) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {pid}: {status}");
}
