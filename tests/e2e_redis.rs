//! End to end with the Redis store (issue 6): two `agents-authz serve` replicas share one
//! `redis-server` and sit behind ONE real Envoy whose ext_authz cluster lists both (round robin,
//! as shipped). One token's burst through Envoy sees the limit exactly once across both
//! replicas; stopping Redis makes every replica refuse (fail closed, nothing reaches the
//! upstream); restarting Redis on the same port brings requests back without restarting
//! anything else.
//!
//! Loopback only, ports chosen at run time. Needs ENVOY_BIN and REDIS_SERVER_BIN, as
//! scripts/test.sh exports them; without them the tests panic rather than skip.

// The harness is shared by several test binaries; each uses only part of it.
#[allow(dead_code)]
mod support;

// Shared with tests/ratelimit_redis.rs, which also uses the parts this file does not.
#[allow(dead_code)]
#[path = "ratelimit_redis/server.rs"]
#[allow(
    clippy::duplicate_mod,
    reason = "both harnesses include the port picker"
)]
mod redis_server;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis_server::RedisServer;
use serde_json::Value;
use support::envoy::Envoy;
use support::fixtures::{READER, bearer, managed_keys};
use support::http::{Reply, client};
use support::keys::write_managed_keys;
use support::replicas::start_envoy;
use support::service::{Service, ServiceConfig};
use support::stack::test_dir;
use support::upstream::EchoUpstream;
use tempfile::TempDir;

/// Requests per window per bucket (PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE).
const LIMIT: usize = 20;
/// The burst: three times the limit, so each replica alone sees more than the limit.
const REQUESTS: usize = 3 * LIMIT;
/// Requests in flight at once during the burst.
const IN_FLIGHT: usize = 8;
/// A long window, so the burst almost never straddles a window boundary (see `fresh_window`).
const WINDOW_SECONDS: u64 = 3600;
/// Time left in the window below which the burst waits for the next one.
const WINDOW_MARGIN: u64 = 20;
/// How long requests may keep failing after Redis is back.
const RECOVERY_BUDGET: Duration = Duration::from_secs(5);
/// Consecutive 200s that count as recovered: with round robin over two replicas, each of
/// them answered at least twice.
const RECOVERED_STREAK: usize = 4;
/// Requests sent while Redis is down.
const OUTAGE_REQUESTS: usize = 4;

const PRODUCTS: &str = "/agents/v1/products";
const HEALTH: &str = "/agents/v1/health";

/// Field order is drop order: Envoy first, then the replicas, then Redis; the directory
/// holding their logs goes last so a failing test can still print them.
struct Replicated {
    envoy: Envoy,
    replicas: Vec<Service>,
    redis: RedisServer,
    upstream: EchoUpstream,
    _dir: TempDir,
}

impl Replicated {
    /// Redis, two replicas on it with the same managed keys and limit, an echo upstream and
    /// Envoy in front with both replicas in its ext_authz cluster.
    async fn start() -> Self {
        require_redis_server_bin();
        let dir = test_dir();
        let redis = tokio::task::block_in_place(RedisServer::start);
        let keys = write_managed_keys(dir.path(), &managed_keys());
        let config = ServiceConfig {
            extra_args: vec!["--rate-limit-store".to_owned(), redis.url()],
            ..ServiceConfig::default()
        }
        .managed_keys(&keys)
        .env("ENVIRONMENT", "test")
        .env("PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE", &LIMIT.to_string())
        .env(
            "PLUGIN_AGENTS_RATE_LIMIT_WINDOW_SECONDS",
            &WINDOW_SECONDS.to_string(),
        )
        // The outage test reads the limiter's warning; a developer's RUST_LOG must not hide it.
        .env("RUST_LOG", "info");
        let mut replicas = Vec::new();
        for name in ["replica-a", "replica-b"] {
            let replica_dir = dir.path().join(name);
            std::fs::create_dir(&replica_dir).expect("create replica dir");
            replicas.push(Service::start(&config, &replica_dir).await);
        }
        let upstream = EchoUpstream::start().await;
        let grpc: Vec<_> = replicas.iter().map(|r| r.grpc_addr).collect();
        let envoy = start_envoy(&grpc, replicas[0].http_addr, upstream.addr, dir.path()).await;
        Self {
            envoy,
            replicas,
            redis,
            upstream,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> Reply {
        let request = client()
            .get(self.envoy.url(path))
            .header("authorization", bearer(READER));
        Reply::read(request).await
    }
}

/// Panics unless REDIS_SERVER_BIN names a file: a suite that quietly skipped Redis, or ran
/// whatever `redis-server` happens to be on PATH, would prove less than it claims.
fn require_redis_server_bin() {
    let Some(bin) = std::env::var_os("REDIS_SERVER_BIN") else {
        panic!(
            "REDIS_SERVER_BIN is not set. Run the suite with `bash scripts/test.sh`, which \
             installs Debian's redis-server, or export REDIS_SERVER_BIN=$(command -v redis-server)"
        );
    };
    let bin = std::path::PathBuf::from(bin);
    assert!(
        bin.is_file(),
        "REDIS_SERVER_BIN={} does not exist",
        bin.display()
    );
}

fn now_epoch() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.expect("clock after 1970").as_secs()
}

/// Waits, if needed, until at least `WINDOW_MARGIN` seconds of the current fixed window are
/// left, and returns that window's end (the `X-RateLimit-Reset` every reply must carry).
async fn fresh_window() -> u64 {
    let now = now_epoch();
    let left = WINDOW_SECONDS - now % WINDOW_SECONDS;
    if left >= WINDOW_MARGIN {
        return now + left;
    }
    tokio::time::sleep(Duration::from_secs(left + 1)).await;
    let now = now_epoch();
    now - now % WINDOW_SECONDS + WINDOW_SECONDS
}

/// `REQUESTS` GETs of `path` with the reader's token, at most `IN_FLIGHT` at a time.
async fn burst(stack: &Arc<Replicated>, path: &'static str) -> Vec<Reply> {
    let gate = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..REQUESTS {
        let (stack, gate) = (stack.clone(), gate.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore open");
            stack.get(path).await
        });
    }
    tasks.join_all().await
}

/// The sum of a metric's samples on a replica's admin `/metrics` whose labels contain
/// `label` (empty: every sample).
async fn metric(replica: &Service, name: &str, label: &str) -> u64 {
    let url = format!("http://{}/metrics", replica.admin_addr);
    let response = client().get(&url).send().await.expect("admin /metrics");
    let text = response.text().await.expect("admin /metrics body");
    let samples = text.lines().filter(|line| {
        let rest = line.strip_prefix(name).unwrap_or("#");
        (rest.starts_with('{') || rest.starts_with(' ')) && rest.contains(label)
    });
    let values = samples.map(|line| {
        let value = line.rsplit(' ').next().unwrap_or_default();
        value
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    });
    values.sum::<f64>() as u64
}

fn header_u64(reply: &Reply, name: &str) -> u64 {
    let value = reply.header(name);
    let value = value.unwrap_or_else(|| panic!("no {name} header\n{reply}"));
    value
        .parse()
        .unwrap_or_else(|e| panic!("{name}: {e}\n{reply}"))
}

/// Panics unless an allowed reply carries this window's numbers; returns its remaining count.
fn allowed_remaining(reply: &Reply, reset: u64) -> u64 {
    assert_eq!(
        header_u64(reply, "x-ratelimit-limit"),
        LIMIT as u64,
        "{reply}"
    );
    assert_eq!(header_u64(reply, "x-ratelimit-reset"), reset, "{reply}");
    header_u64(reply, "x-ratelimit-remaining")
}

/// Panics unless a refused reply is the spec's 429 with matching Retry-After and counters.
fn assert_rate_limited(reply: &Reply, reset: u64) {
    let body = reply.expect_error(429, "RATE_LIMIT_EXCEEDED");
    let retry_after = body["retryAfter"].as_u64();
    let retry_after = retry_after.unwrap_or_else(|| panic!("retryAfter in the body\n{reply}"));
    assert_eq!(header_u64(reply, "retry-after"), retry_after, "{reply}");
    // Whole seconds until the window ends, give or take the test's own clock reads.
    let until_reset = reset.saturating_sub(now_epoch());
    assert!(
        retry_after >= 1 && retry_after.abs_diff(until_reset) <= 2,
        "retryAfter {retry_after}, window ends in {until_reset} s\n{reply}"
    );
    assert_eq!(
        header_u64(reply, "x-ratelimit-limit"),
        LIMIT as u64,
        "{reply}"
    );
    assert_eq!(header_u64(reply, "x-ratelimit-remaining"), 0, "{reply}");
    assert_eq!(header_u64(reply, "x-ratelimit-reset"), reset, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_one_envoy_share_one_limit_exactly() {
    let started = Instant::now();
    let stack = Arc::new(Replicated::start().await);
    let reset = fresh_window().await;

    let replies = burst(&stack, PRODUCTS).await;

    let (allowed, refused): (Vec<_>, Vec<_>) = replies.iter().partition(|r| r.status == 200);
    let statuses: Vec<u16> = refused.iter().map(|r| r.status).collect();
    println!(
        "{REQUESTS} requests, limit {LIMIT}: {} allowed, refused {statuses:?}",
        allowed.len()
    );
    assert_eq!(allowed.len(), LIMIT, "allowed through Envoy");
    assert_eq!(refused.len(), REQUESTS - LIMIT, "refused");
    for reply in &refused {
        assert_rate_limited(reply, reset);
    }
    let mut remaining: Vec<u64> = allowed
        .iter()
        .map(|r| allowed_remaining(r, reset))
        .collect();
    remaining.sort_unstable();
    // One shared counter hands out each count once, whichever replica asked.
    let expected: Vec<u64> = (0..LIMIT as u64).collect();
    assert_eq!(remaining, expected, "X-RateLimit-Remaining of the 200s");
    assert_eq!(stack.upstream.count(), LIMIT, "requests at the upstream");

    let mut checks = Vec::new();
    for replica in &stack.replicas {
        let all = metric(replica, "agents_authz_checks_total", "").await;
        let allows = metric(replica, "agents_authz_checks_total", "decision=\"allow\"").await;
        checks.push((all, allows));
    }
    println!("checks (total, allowed) per replica: {checks:?}");
    let total: u64 = checks.iter().map(|(all, _)| all).sum();
    let allowed_total: u64 = checks.iter().map(|(_, allows)| allows).sum();
    assert_eq!(
        total, REQUESTS as u64,
        "Checks answered by the two replicas"
    );
    assert_eq!(
        allowed_total, LIMIT as u64,
        "allows across the two replicas"
    );
    // Each replica alone answered more Checks than the limit: with a counter per replica,
    // each would have allowed up to the limit, so more than the limit in total.
    for (i, (all, _)) in checks.iter().enumerate() {
        assert!(
            *all > LIMIT as u64,
            "replica {i} answered {all} Checks, not more than the limit {LIMIT}: {checks:?}"
        );
    }
    println!("took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_redis_fails_closed_and_restarting_recovers() {
    let started = Instant::now();
    let mut stack = Replicated::start().await;
    stack.get(HEALTH).await.expect_status(200);
    assert_eq!(stack.upstream.count(), 1);

    tokio::task::block_in_place(|| stack.redis.stop());
    for _ in 0..OUTAGE_REQUESTS {
        let reply = stack.get(HEALTH).await;
        // The service's own answer (not Envoy's AUTHORIZATION_UNAVAILABLE): it was asked,
        // and refused because its limiter could not decide.
        reply.expect_error(503, "SERVICE_UNAVAILABLE");
    }
    assert_eq!(stack.upstream.count(), 1, "a request reached the upstream");
    let mut errors = Vec::new();
    for replica in &stack.replicas {
        errors.push(metric(replica, "agents_authz_rate_limit_store_errors_total", "").await);
    }
    println!("rate_limit_store_errors_total per replica: {errors:?}");
    assert_eq!(errors.iter().sum::<u64>(), OUTAGE_REQUESTS as u64);
    for (replica, count) in stack.replicas.iter().zip(&errors) {
        assert!(*count > 0, "a replica saw no store error: {errors:?}");
        let warning = limiter_warning(replica).await;
        println!("warning: {warning}");
    }

    let restarting = Instant::now();
    tokio::task::block_in_place(|| stack.redis.restart());
    let answering = restarting.elapsed();
    let recovery = recover(&stack).await;
    println!(
        "Redis answered PING {answering:?} after the restart began; {RECOVERED_STREAK} \
         requests in a row allowed {:?} later ({} allowed, {} refused meanwhile)",
        recovery.took, recovery.allowed, recovery.refused
    );
    // Only allowed requests reached the upstream: the first one and the recovered ones.
    assert_eq!(stack.upstream.count(), 1 + recovery.allowed);
    println!("took {:?}", started.elapsed());
}

/// What it took for requests to be allowed again after Redis restarted.
struct Recovery {
    took: Duration,
    allowed: usize,
    refused: usize,
}

/// Sends requests until `RECOVERED_STREAK` in a row are allowed; every other reply must be
/// the fail-closed 503. Panics after `RECOVERY_BUDGET`.
async fn recover(stack: &Replicated) -> Recovery {
    let since = Instant::now();
    let (mut streak, mut allowed, mut refused) = (0, 0, 0);
    while streak < RECOVERED_STREAK {
        assert!(
            since.elapsed() < RECOVERY_BUDGET,
            "requests not allowed again within {RECOVERY_BUDGET:?} of restarting Redis"
        );
        let reply = stack.get(HEALTH).await;
        if reply.status == 200 {
            (streak, allowed) = (streak + 1, allowed + 1);
            continue;
        }
        // Each replica reconnects on its own schedule, so one may still refuse after the
        // other allowed: start the streak again.
        reply.expect_error(503, "SERVICE_UNAVAILABLE");
        (streak, refused) = (0, refused + 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Recovery {
        took: since.elapsed(),
        allowed,
        refused,
    }
}

/// The replica's WARN line from the rate limiter; polls briefly because the log writer is
/// asynchronous.
async fn limiter_warning(replica: &Service) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let stdout = replica.stdout_text();
        let found = stdout.lines().find(|line| {
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                return false;
            };
            let message = event["message"].as_str().unwrap_or_default();
            event["level"] == "WARN" && message.contains("rate limiter")
        });
        if let Some(line) = found {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no WARN line naming the rate limiter on the replica's stdout\n{}",
            replica.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
