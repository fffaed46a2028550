//! How the decision and the snapshot build scale with the number of credentials.
//!
//! - Criterion: the pure decision (`core::decision::decide`: route lookup in the full
//!   built-in route table, token digest, credential lookup, scope check) against snapshots
//!   of 10, 10 000 and 1 000 000 managed keys, over a fixed mix of [`MIX`] requests whose
//!   tokens spread over all keys, so that large sets are read from memory, not cache.
//! - The same against the 1M snapshot with requests from only 64 of its keys (busy agents
//!   among many idle keys): the lookup is O(1), and what separates the 1M case from the
//!   10 case is memory latency, not work.
//! - A summary printed at the end: the same decisions timed round by round, the cases
//!   alternated, with the ratios to 10 keys; and `config::load_snapshot` from a managed-keys
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
use std::sync::Arc;
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

/// A snapshot and a request mix over some of its keys (bearer value, path).
struct Case {
    label: String,
    snapshot: Arc<Snapshot>,
    requests: Vec<(String, &'static str)>,
}

/// Keys the "hot" case draws from: a few busy agents among a million keys.
const HOT_KEYS: u32 = 64;

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

/// [`MIX`] requests: 18 in 20 allowed, one unknown token, one missing scope, with the
/// tokens of keys 0..`keys`.
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

fn criterion_decide(c: &mut Criterion, cases: &[Case]) {
    let mut group = c.benchmark_group("scale/decide");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    for Case {
        label,
        snapshot,
        requests,
    } in cases
    {
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
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

/// ns per decision for each case, cases alternated round by round; median per case.
fn alternated(plan: &Plan, cases: &[Case]) -> Vec<f64> {
    let mut samples = vec![Vec::new(); cases.len()];
    for round in 0..plan.rounds {
        for k in 0..cases.len() {
            let k = if round % 2 == 0 {
                k
            } else {
                cases.len() - 1 - k
            };
            let case = &cases[k];
            let started = Instant::now();
            black_box(run_mix(&case.snapshot, &case.requests, plan.per_round));
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

fn cases(plan: &Plan, dir: &Path) -> Vec<Case> {
    let mut cases: Vec<Case> = plan
        .decide_sizes
        .iter()
        .map(|&n| Case {
            label: format!("{n}_keys"),
            snapshot: Arc::new(snapshot(dir, n)),
            requests: mix(n),
        })
        .collect();
    let largest = cases.last().expect("sizes").snapshot.clone();
    let n = plan.decide_sizes[plan.decide_sizes.len() - 1];
    cases.push(Case {
        label: format!("{n}_keys_{HOT_KEYS}_active"),
        snapshot: largest,
        requests: mix(HOT_KEYS),
    });
    cases
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing (or --test),
    // and `--list` must not take minutes.
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let smoke = !has("--bench") || has("--test") || has("--list");
    let plan = if smoke { SMOKE } else { MEASURE };
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = cases(&plan, dir.path());
    let expected = (0..MIX).filter(|&n| mix::Kind::of(n) == mix::Kind::Allowed);
    let expected = expected.count() as u32;
    for case in &cases {
        let allowed = run_mix(&case.snapshot, &case.requests, MIX as u32);
        assert_eq!(
            allowed, expected,
            "{}: allowed requests of the mix",
            case.label
        );
    }
    if !smoke {
        let mut c = Criterion::default().configure_from_args();
        criterion_decide(&mut c, &cases);
    }
    let per_decision = alternated(&plan, &cases);
    println!("scale summary ({} rounds, cases alternated)", plan.rounds);
    for (case, ns) in cases.iter().zip(&per_decision) {
        let ratio = ns / per_decision[0];
        let (label, base) = (&case.label, &cases[0].label);
        println!("  decide, {label:>24}: {ns:>8.0} ns  ratio to {base} {ratio:.3}");
    }
    drop(cases);
    for (n, secs, loaded) in build_times(&plan, dir.path()) {
        println!("  load_snapshot, {n:>9} keys: {secs:>7.2} s ({loaded} credentials)");
    }
}
