//! How the decision and the snapshot build scale with the number of credentials.
//!
//! - Criterion: the pure decision (`core::decision::decide`: route lookup in the full
//!   built-in route table, token digest, credential lookup, scope check) against snapshots
//!   of 10, 10 000 and 1 000 000 managed keys, over a fixed mix of [`MIX`] requests whose
//!   tokens spread over all keys, so that large sets are read from memory, not cache.
//! - A summary printed at the end: the same decisions timed round by round, the sizes
//!   alternated, with the 1M/10 ratio; and `config::load_snapshot` from a managed-keys
//!   file (read, parse, build) for 100 000 and 1 000 000 keys.
//!
//! The keys files are the load benchmark's (`benches/load/keys.rs`). Under
//! `cargo test --benches` the sizes shrink to a smoke run.

#[path = "load/keys.rs"]
mod keys;
#[path = "load/mix.rs"]
#[allow(dead_code, reason = "the scale bench uses only the key scopes")]
mod mix;

use agents_authz::config::{ConfigSources, load_snapshot};
use agents_authz::core::decision::decide;
use agents_authz::core::request::{HeaderField, RequestFacts};
use agents_authz::core::snapshot::Snapshot;
use criterion::{BenchmarkId, Criterion};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

/// Request targets of the mix; key `i` may read the first four, not the last.
const TARGETS: [&str; 5] = [
    "/agents/v1/products",
    "/agents/v1/health",
    "/agents/v1/entries",
    "/agents/v1/orders/show",
    "/agents/v1/transfers",
];

/// Requests in the mix: their tokens and paths take about 1 MB, more than the L2 cache.
const MIX: u64 = 16_384;

struct Plan {
    decide_sizes: [u32; 3],
    build_sizes: [u32; 2],
    build_runs: usize,
    rounds: usize,
    per_round: u32,
}

const MEASURE: Plan = Plan {
    decide_sizes: [10, 10_000, 1_000_000],
    build_sizes: [100_000, 1_000_000],
    build_runs: 3,
    rounds: 5,
    per_round: 200_000,
};
const SMOKE: Plan = Plan {
    decide_sizes: [10, 100, 1_000],
    build_sizes: [100, 1_000],
    build_runs: 1,
    rounds: 1,
    per_round: 100,
};

/// A key count, its snapshot, and the request mix over its keys (bearer value, path).
type SizedSet = (u32, Snapshot, Vec<(String, &'static str)>);

fn sources(keys_file: &Path) -> ConfigSources {
    ConfigSources {
        managed_keys: Some(keys_file.to_path_buf()),
        process_env: [("ENVIRONMENT".to_string(), "production".to_string())].into(),
        ..Default::default()
    }
}

fn snapshot(dir: &Path, count: u32) -> Snapshot {
    let path = dir.join(format!("keys-{count}.json"));
    keys::write(&path, count).expect("keys file");
    let snapshot = load_snapshot(&sources(&path), 1).expect("keys load");
    std::fs::remove_file(&path).expect("keys file removed");
    snapshot
}

/// [`MIX`] requests: 18 in 20 allowed, one unknown token, one missing scope, over all keys.
fn mix(keys: u32) -> Vec<(String, &'static str)> {
    (0..MIX)
        .map(|n| {
            let key = (n.wrapping_mul(2_654_435_761) % u64::from(keys)) as u32;
            match mix::Kind::of(n) {
                mix::Kind::Allowed => (keys::token(key), TARGETS[(n % 4) as usize]),
                mix::Kind::UnknownToken => (format!("bench-unknown-{n}"), TARGETS[0]),
                mix::Kind::MissingScope => (keys::token(key), TARGETS[4]),
            }
        })
        .map(|(token, path)| (format!("Bearer {token}"), path))
        .collect()
}

fn facts<'a>(authorization: &'a str, path: &'a str) -> RequestFacts<'a> {
    RequestFacts {
        method: "GET",
        path,
        query: Some("page=2"),
        authorization: HeaderField::Present(authorization),
        client_ip: Some([127, 0, 0, 1].into()),
        now_epoch_seconds: 1_800_000_000,
        ..Default::default()
    }
}

/// Decisions over the mix, `count` of them; returns the allowed count so nothing is elided.
fn run_mix(snapshot: &Snapshot, requests: &[(String, &str)], count: u32) -> u32 {
    let mut allowed = 0;
    for i in 0..count as usize {
        let (auth, path) = &requests[i % requests.len()];
        allowed += u32::from(decide(snapshot, &facts(auth, path)).is_allow());
    }
    allowed
}

fn criterion_decide(c: &mut Criterion, sets: &[SizedSet]) {
    let mut group = c.benchmark_group("scale/decide");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for (count, snapshot, requests) in sets {
        let id = BenchmarkId::from_parameter(format!("{count}_keys"));
        group.bench_function(id, |b| {
            let mut i = 0usize;
            b.iter(|| {
                let (auth, path) = &requests[i % requests.len()];
                i += 1;
                black_box(decide(snapshot, &facts(auth, path)).is_allow())
            })
        });
    }
    group.finish();
}

/// ns per decision for each size, sizes alternated round by round; median per size.
fn alternated(plan: &Plan, sets: &[SizedSet]) -> Vec<f64> {
    let mut samples = vec![Vec::new(); sets.len()];
    for round in 0..plan.rounds {
        for k in 0..sets.len() {
            let k = if round % 2 == 0 {
                k
            } else {
                sets.len() - 1 - k
            };
            let (_, snapshot, requests) = &sets[k];
            let started = Instant::now();
            black_box(run_mix(snapshot, requests, plan.per_round));
            samples[k].push(started.elapsed().as_nanos() as f64 / f64::from(plan.per_round));
        }
    }
    samples.into_iter().map(median).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn build_times(plan: &Plan, dir: &Path) -> Vec<(u32, f64, usize)> {
    plan.build_sizes
        .iter()
        .map(|&count| {
            let path = dir.join(format!("build-{count}.json"));
            keys::write(&path, count).expect("keys file");
            let mut secs = Vec::new();
            let mut loaded = 0;
            for _ in 0..plan.build_runs {
                let started = Instant::now();
                let snapshot = load_snapshot(&sources(&path), 1).expect("keys load");
                secs.push(started.elapsed().as_secs_f64());
                loaded = snapshot.credentials.len();
            }
            std::fs::remove_file(&path).expect("keys file removed");
            (count, median(secs), loaded)
        })
        .collect()
}

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let plan = if smoke { SMOKE } else { MEASURE };
    let dir = tempfile::tempdir().expect("temp dir");
    let sets: Vec<_> = plan
        .decide_sizes
        .iter()
        .map(|&n| (n, snapshot(dir.path(), n), mix(n)))
        .collect();
    let expected = (0..MIX).filter(|&n| mix::Kind::of(n) == mix::Kind::Allowed);
    let expected = expected.count() as u32;
    for (n, snapshot, requests) in &sets {
        let allowed = run_mix(snapshot, requests, MIX as u32);
        assert_eq!(allowed, expected, "{n} keys: allowed requests of the mix");
    }
    if !smoke {
        let mut c = Criterion::default().configure_from_args();
        criterion_decide(&mut c, &sets);
    }
    let per_decision = alternated(&plan, &sets);
    println!("scale summary ({} rounds, sizes alternated)", plan.rounds);
    for ((n, _, _), ns) in sets.iter().zip(&per_decision) {
        let ratio = ns / per_decision[0];
        println!(
            "  decide, {n:>9} keys: {ns:>8.0} ns  ratio to {} keys {ratio:.3}",
            sets[0].0
        );
    }
    drop(sets);
    for (n, secs, loaded) in build_times(&plan, dir.path()) {
        println!("  load_snapshot, {n:>9} keys: {secs:>7.2} s ({loaded} credentials)");
    }
}
