//! The real binary at saturation while it reloads every second (issue 8, faults):
//! zero failed Checks, zero answers mixing two configuration generations, and a
//! resident set that stays flat.
//!
//! The two generations give one token a different credential id (managed-keys file) and
//! different scopes (env file), so every answer names exactly one generation or is mixed.
//! `short_soak` runs in the normal suite with a loose memory bound; `scripts/soak.sh`
//! runs `full_soak` (60 s by default, `AGENTS_AUTHZ_SOAK_SECONDS` to change) with the
//! 10% bound.

mod reload_harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use reload_harness::{Answer, Service, Volume, health_with, keys_json};
use serde_json::json;
use tonic::transport::Channel;

const TOKEN: &str = "tok-soak-5b9e27d1";
/// Concurrent Check loops, spread over a few HTTP/2 connections as Envoy would.
const CONNECTIONS: usize = 2;
const LOOPS_PER_CONNECTION: usize = 8;
const RELOAD_EVERY: Duration = Duration::from_secs(1);
const ONE_RELOAD_LIMIT: Duration = Duration::from_secs(5);

struct Generation {
    id: &'static str,
    scopes: &'static str,
}

const GENERATIONS: [Generation; 2] = [
    Generation {
        id: "soak-a",
        scopes: "health:read products:read",
    },
    Generation {
        id: "soak-b",
        scopes: "health:read orders:read",
    },
];

impl Generation {
    fn files(&self) -> [(&'static str, String); 2] {
        let keys = keys_json(&[json!({
            "id": self.id,
            "tokenHash": hex::encode(agents_authz::core::credentials::digest(TOKEN)),
        })]);
        // The rate limit is out of the way: the soak is about reloads and memory.
        let env = format!(
            "PLUGIN_AGENTS_TOKEN_SCOPES=\"{}\"\nPLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE=1000000000\n",
            self.scopes
        );
        [("keys.json", keys), ("agents.env", env)]
    }

    fn matches(&self, answer: &Answer) -> bool {
        answer.upstream("x-agents-credential-id") == Some(self.id)
            && answer.upstream("x-agents-scopes") == Some(self.scopes)
    }
}

fn publish(volume: &mut Volume, generation: &Generation) {
    let files = generation.files();
    let borrowed: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    volume.publish(&borrowed);
}

#[derive(Default)]
struct Tally {
    per_generation: [AtomicU64; 2],
    mixed: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn count(&self, result: Result<Answer, tonic::Status>) {
        let counter = match result {
            Err(_) => &self.failed,
            Ok(a) if GENERATIONS[0].matches(&a) => &self.per_generation[0],
            Ok(a) if GENERATIONS[1].matches(&a) => &self.per_generation[1],
            Ok(a) if a.allowed() => &self.mixed,
            Ok(_) => &self.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn load(&self) -> [u64; 5] {
        [
            &self.per_generation[0],
            &self.per_generation[1],
            &self.mixed,
            &self.refused,
            &self.failed,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

async fn keep_checking(
    mut client: AuthorizationClient<Channel>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let result = client.check(health_with(TOKEN)).await;
        tally.count(result.map(|r| Answer::from(r.into_inner())));
    }
}

/// Resident set size of `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

async fn reload_to(service: &Service, volume: &mut Volume, generation: &Generation, version: u64) {
    publish(volume, generation);
    service.sighup().await;
    let since = Instant::now();
    while service.version().await < version {
        assert!(
            since.elapsed() < ONE_RELOAD_LIMIT,
            "reload to version {version} did not happen\n{}",
            service.log_text()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs the soak for `length`; RSS after the warm-up (a sixth of the run) and at the end
/// may differ by at most `rss_tolerance` (a fraction).
async fn soak(length: Duration, rss_tolerance: f64) {
    let first = GENERATIONS[0].files();
    let borrowed: Vec<(&str, &str)> = first.iter().map(|(n, c)| (*n, c.as_str())).collect();
    let mut volume = Volume::new(&borrowed);
    let (keys, env) = (volume.path("keys.json"), volume.path("agents.env"));
    // Every reload is exactly one SIGHUP; allow lines off so the log does not grow.
    let flags = ["--watch", "off", "--allow-log", "off"];
    let service = Service::start(&keys, &env, &flags).await;

    let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
    let mut loops = Vec::new();
    for _ in 0..CONNECTIONS {
        let client = service.client().await;
        for _ in 0..LOOPS_PER_CONNECTION {
            let task = keep_checking(client.clone(), tally.clone(), stop.clone());
            loops.push(tokio::spawn(task));
        }
    }

    let started = Instant::now();
    let warm_up = length / 6;
    let (mut rss_warm, mut samples) = (None, Vec::new());
    let mut reloads = 0_u64;
    while started.elapsed() < length {
        let tick = Instant::now();
        reloads += 1;
        let next = &GENERATIONS[(reloads % 2) as usize];
        reload_to(&service, &mut volume, next, 1 + reloads).await;
        let rss = rss_kib(service.pid());
        samples.push(rss);
        if rss_warm.is_none() && started.elapsed() >= warm_up {
            rss_warm = Some(rss);
        }
        tokio::time::sleep(RELOAD_EVERY.saturating_sub(tick.elapsed())).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in loops {
        task.await.expect("check loop");
    }
    let elapsed = started.elapsed();
    let rss_end = rss_kib(service.pid());
    let rss_warm = rss_warm.expect("a sample after the warm-up");
    let [a, b, mixed, refused, failed] = tally.load();
    let checks = a + b + mixed + refused + failed;
    let drift = (rss_end as f64 - rss_warm as f64) / rss_warm as f64;
    println!(
        "soak {elapsed:.1?}: {checks} Checks ({:.0}/s), {reloads} reloads; generation a {a}, \
         b {b}, mixed {mixed}, refused {refused}, failed {failed}; RSS KiB after warm-up \
         {rss_warm}, end {rss_end} ({:+.1}%), max {}",
        checks as f64 / elapsed.as_secs_f64(),
        drift * 100.0,
        samples.iter().max().copied().unwrap_or_default(),
    );
    let report = service.readyz().await["reload"].clone();
    assert_eq!(
        (mixed, refused, failed),
        (0, 0, 0),
        "every Check answered from one generation"
    );
    assert!(a > 0 && b > 0, "both generations were seen");
    assert_eq!(report["reloadsFailed"], 0, "{report}");
    assert_eq!(report["snapshotVersion"], 1 + reloads, "{report}");
    assert!(
        drift.abs() <= rss_tolerance,
        "RSS moved {:+.1}% (limit {:.0}%)",
        drift * 100.0,
        rss_tolerance * 100.0
    );
}

/// The normal suite's version: ten seconds, and a loose bound because a short run's
/// allocator settles late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_soak() {
    soak(Duration::from_secs(10), 0.5).await;
}

/// `scripts/soak.sh`: the 60-second soak with RSS flat within 10%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute long; run by scripts/soak.sh"]
async fn full_soak() {
    let seconds = std::env::var("AGENTS_AUTHZ_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    soak(Duration::from_secs(seconds), 0.10).await;
}
