//! What hot reload costs: the time to build a snapshot from 10k and 100k managed keys,
//! and how much continuous reloads stretch the Check tail latency.
//!
//! `cargo bench --bench reload` prints criterion's estimates and then one summary with
//! the ratios (100k/10k reload time; Check p99 during reloads / steady p99). Under
//! `cargo test --benches` everything runs once on small inputs, as a smoke test.

use agents_authz::config::{ConfigSources, load_snapshot};
use agents_authz::core::credentials::digest;
use agents_authz::grpc::service::CheckService;
use agents_authz::reload::Reloader;
use agents_authz::state::AppState;
use criterion::{BenchmarkId, Criterion, SamplingMode};
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request as AttrRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use serde_json::{Value, json};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Sizes and durations for a real run, and the one-shot smoke run under `cargo test`.
struct Plan {
    key_counts: [usize; 2],
    check_phase: Duration,
}

const MEASURE: Plan = Plan {
    key_counts: [10_000, 100_000],
    check_phase: Duration::from_secs(4),
};
const SMOKE: Plan = Plan {
    key_counts: [100, 1_000],
    check_phase: Duration::from_millis(100),
};

/// Every tenth key is IP-restricted and every seventh expires, so the loader's
/// optional paths are exercised; all of them can read health and products.
fn managed_key(i: usize) -> Value {
    let mut entry = json!({
        "id": format!("bench-key-{i}"),
        "tokenHash": hex::encode(digest(&token(i))),
        "scopes": ["health:read", "products:read"],
    });
    if i.is_multiple_of(10) {
        entry["ipAllowlist"] = json!(["127.0.0.0/8", "10.0.0.0/8"]);
    }
    if i.is_multiple_of(7) {
        entry["expiresAt"] = json!("2999-01-01T00:00:00Z");
    }
    entry
}

fn token(i: usize) -> String {
    format!("bench-token-{i:08}")
}

/// A managed-keys file with `count` keys and an env file, in their own temp dir.
struct Fixture {
    _dir: tempfile::TempDir,
    sources: ConfigSources,
    count: usize,
}

impl Fixture {
    fn new(count: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let keys = json!({ "credentials": (0..count).map(managed_key).collect::<Vec<_>>() });
        let keys_path = dir.path().join("keys.json");
        std::fs::write(&keys_path, keys.to_string()).expect("keys file");
        let env_path = dir.path().join("agents.env");
        std::fs::write(
            &env_path,
            "PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE=1000000000\n",
        )
        .expect("env file");
        let sources = ConfigSources {
            managed_keys: Some(keys_path),
            env_file: Some(env_path),
            process_env: [("ENVIRONMENT".to_string(), "test".to_string())].into(),
            ..Default::default()
        };
        Self {
            _dir: dir,
            sources,
            count,
        }
    }
}

/// Reload cost: read, parse and build one snapshot, and drop it again (the reloader
/// pays for dropping the snapshot it replaces). Returns the median per size.
fn reload_time(c: &mut Criterion, fixtures: &[Fixture]) -> Vec<Duration> {
    let mut group = c.benchmark_group("reload/load_snapshot");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    let mut medians = Vec::new();
    for fixture in fixtures {
        let seen = Mutex::new(Vec::new());
        let id = BenchmarkId::from_parameter(format!("{}_keys", fixture.count));
        group.bench_with_input(id, &fixture.sources, |b, sources| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                for _ in 0..iters {
                    black_box(load_snapshot(sources, 2).expect("fixture loads"));
                }
                let took = started.elapsed();
                seen.lock().unwrap().push(took / iters as u32);
                took
            })
        });
        medians.push(median(seen.into_inner().unwrap()));
    }
    group.finish();
    medians
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// A Check as Envoy sends it: `GET /agents/v1/health` with key `i`'s bearer token, or
/// an unknown token for one request in eight (the 401 path).
fn check_request(i: usize) -> CheckRequest {
    let token = if i % 8 == 7 {
        format!("unknown-token-{i}")
    } else {
        token(i)
    };
    let http = HttpRequest {
        method: "GET".into(),
        path: "/agents/v1/health".into(),
        headers: [("authorization".to_string(), format!("Bearer {token}"))].into(),
        ..Default::default()
    };
    let peer = Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "127.0.0.1".into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer),
            request: Some(AttrRequest {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Steady-state Check cost through the tonic handler, as criterion measures it.
fn check_mean(c: &mut Criterion, service: &CheckService, requests: &[CheckRequest]) {
    let runtime = current_thread();
    let mut group = c.benchmark_group("reload/check");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut next = 0;
    group.bench_function("steady", |b| {
        b.iter(|| {
            next = (next + 1) % requests.len();
            let request = tonic::Request::new(requests[next].clone());
            runtime
                .block_on(service.check(request))
                .expect("Check answers")
        })
    });
    group.finish();
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Latencies of back-to-back Checks for `phase`, in nanoseconds, sorted.
fn check_latencies(service: &CheckService, requests: &[CheckRequest], phase: Duration) -> Vec<u64> {
    let runtime = current_thread();
    runtime.block_on(async {
        let mut latencies = Vec::with_capacity(1 << 20);
        let started = Instant::now();
        let mut i = 0;
        while started.elapsed() < phase {
            let request = tonic::Request::new(requests[i % requests.len()].clone());
            let sent = Instant::now();
            black_box(service.check(request).await.expect("Check answers"));
            latencies.push(sent.elapsed().as_nanos() as u64);
            i += 1;
        }
        latencies.sort_unstable();
        latencies
    })
}

/// Runs `work` while another thread reloads the snapshot back to back through the
/// real [`Reloader`]; returns its result and the number of reloads that happened.
fn under_reloads<R>(
    reloader: Arc<Reloader<agents_authz::core::snapshot::Snapshot>>,
    work: impl FnOnce() -> R,
) -> (R, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let reloads = Arc::new(AtomicU64::new(0));
    let background = {
        let (stop, reloads) = (stop.clone(), reloads.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                reloader.reload_now("bench");
                reloads.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let result = work();
    stop.store(true, Ordering::Relaxed);
    background.join().expect("reload thread");
    (result, reloads.load(Ordering::Relaxed))
}

/// The value at quantile `q` of sorted `values`.
fn quantile(values: &[u64], q: f64) -> Duration {
    let index = ((values.len() as f64 - 1.0) * q).round() as usize;
    Duration::from_nanos(values.get(index).copied().unwrap_or_default())
}

struct Tail {
    checks: usize,
    p50: Duration,
    p99: Duration,
    p999: Duration,
}

impl Tail {
    fn of(latencies: &[u64]) -> Self {
        Self {
            checks: latencies.len(),
            p50: quantile(latencies, 0.5),
            p99: quantile(latencies, 0.99),
            p999: quantile(latencies, 0.999),
        }
    }
}

/// Check tails without reloads and during back-to-back reloads of `fixture`.
fn check_tails(fixture: &Fixture, plan: &Plan) -> (Tail, Tail, u64) {
    let first = load_snapshot(&fixture.sources, 1).expect("fixture loads");
    let state = AppState::new(first);
    let current = state.snapshot.clone();
    let sources = fixture.sources.clone();
    let reloader = Arc::new(Reloader::new(current, 1, move |v| {
        load_snapshot(&sources, v)
    }));
    let service = CheckService::new(Arc::new(state));
    let requests: Vec<CheckRequest> = (0..fixture.count.min(4096)).map(check_request).collect();
    let steady = Tail::of(&check_latencies(&service, &requests, plan.check_phase));
    let (loaded, reloads) = under_reloads(reloader, || {
        check_latencies(&service, &requests, plan.check_phase)
    });
    (steady, Tail::of(&loaded), reloads)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let measuring = has("--bench") && !has("--test") && !has("--list");
    let plan = if measuring { &MEASURE } else { &SMOKE };
    let mut c = Criterion::default().configure_from_args();

    let fixtures: Vec<Fixture> = plan.key_counts.iter().map(|&n| Fixture::new(n)).collect();
    let reload = reload_time(&mut c, &fixtures);
    let smaller = &fixtures[0];
    let state = Arc::new(AppState::new(
        load_snapshot(&smaller.sources, 1).expect("loads"),
    ));
    let requests: Vec<CheckRequest> = (0..smaller.count.min(4096)).map(check_request).collect();
    check_mean(&mut c, &CheckService::new(state), &requests);
    c.final_summary();
    if has("--list") {
        return;
    }
    let (steady, loaded, reloads) = check_tails(smaller, plan);
    report(&fixtures, &reload, &steady, &loaded, reloads);
}

fn report(fixtures: &[Fixture], reload: &[Duration], steady: &Tail, loaded: &Tail, reloads: u64) {
    println!("\n== reload summary ==");
    for (fixture, median) in fixtures.iter().zip(reload) {
        println!(
            "reload ({} managed keys): median {median:.2?}",
            fixture.count
        );
    }
    let ratio = reload[1].as_secs_f64() / reload[0].as_secs_f64();
    println!(
        "reload time ratio {} keys / {} keys: {ratio:.2}",
        fixtures[1].count, fixtures[0].count
    );
    for (name, tail) in [("steady", steady), ("during reloads", loaded)] {
        println!(
            "Check {name} ({} keys): {} checks, p50 {:.2?}, p99 {:.2?}, p99.9 {:.2?}",
            fixtures[0].count, tail.checks, tail.p50, tail.p99, tail.p999
        );
    }
    let p99_ratio = loaded.p99.as_secs_f64() / steady.p99.as_secs_f64();
    println!("reloads during the loaded phase: {reloads}");
    println!("Check p99 ratio (during reloads / steady): {p99_ratio:.2}");
}
