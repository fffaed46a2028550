//! Reload under faults, with the real `agents-authz serve`: a keys file caught half
//! written, a writer that takes seconds to finish, a flood of file events, and a very
//! large keys file. The service must keep answering from the last good snapshot, end on
//! the final content, and keep its memory bounded.
//!
//! The full one-million-key run takes about 20 seconds and under 1 GB; it is ignored
//! in CI and run with
//! `cargo test --release --test reload_faults -- --ignored --nocapture million`.

mod reload_harness;

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use reload_harness::{Service, check, health_with, key, keys_json, replace_file, time_until};
use serde_json::Value;

const ALPHA: &str = "tok-alpha-0f3e9a";
const GAMMA: &str = "tok-gamma-6c1d2b";
/// How long to wait for a change or a failure to show.
const SETTLE: Duration = Duration::from_secs(5);

fn alpha_keys() -> String {
    keys_json(&[key("alpha", ALPHA, &["health:read"])])
}

fn gamma_keys() -> String {
    keys_json(&[key("gamma", GAMMA, &["health:read"])])
}

/// A plain directory (no kubelet symlinks): the keys file is edited in place, the way a
/// naive tool or a slow network filesystem would present it.
struct Setup {
    _dir: tempfile::TempDir,
    keys: PathBuf,
    service: Service,
}

async fn setup(keys_text: &str) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys.json");
    fs::write(&keys, keys_text).expect("write keys");
    let env_file = dir.path().join("agents.env");
    fs::write(&env_file, "PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE=100000000\n").expect("env");
    let service = Service::start(&keys, &env_file, &[]).await;
    Setup {
        _dir: dir,
        keys,
        service,
    }
}

/// Writes `bytes` in place (no rename) and makes them durable, so a watcher sees them.
fn write_in_place(path: &Path, bytes: &[u8], truncate: bool) {
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(truncate)
        .append(!truncate)
        .open(path)
        .expect("open keys file");
    file.write_all(bytes).expect("write keys");
    file.sync_all().expect("sync keys");
}

async fn allowed(service: &Service, token: &str) -> bool {
    let mut client = service.client().await;
    check(&mut client, health_with(token)).await.allowed()
}

async fn reload_block(service: &Service) -> Value {
    service.readyz().await["reload"].clone()
}

async fn wait_reload(service: &Service, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let since = Instant::now();
    loop {
        let block = reload_block(service).await;
        if done(&block) {
            return block;
        }
        assert!(
            since.elapsed() < SETTLE,
            "{what}: reload state {block}\n{}",
            service.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_half_written_keys_file_keeps_the_old_keys_until_it_is_complete() {
    let Setup {
        _dir: _kept,
        keys,
        service,
    } = setup(&alpha_keys()).await;
    let full = gamma_keys();
    let (head, tail) = full.split_at(full.len() / 2);

    write_in_place(&keys, head.as_bytes(), true);
    let block = wait_reload(&service, "half file", |b| b["lastReloadResult"] == "failed").await;
    let error = block["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains("keys.json"),
        "the error names the file: {error}"
    );
    assert_eq!(
        block["snapshotVersion"], 1,
        "the old snapshot stays in force"
    );
    assert!(allowed(&service, ALPHA).await, "old key still works");
    assert!(!allowed(&service, GAMMA).await, "no half-loaded new key");

    write_in_place(&keys, tail.as_bytes(), false);
    let took = time_until(Instant::now(), SETTLE, async || {
        allowed(&service, GAMMA).await
    })
    .await
    .unwrap_or_else(|| panic!("the completed file never loaded\n{}", service.log_text()));
    println!("completed file in force {took:?} after the last write");
    assert!(!allowed(&service, ALPHA).await);
    let block = reload_block(&service).await;
    assert_eq!(block["lastReloadResult"], "ok");
    assert_eq!(block["lastError"], Value::Null);
}

/// Checks `ALPHA` over and over until told to stop; returns (answers, refusals).
fn spawn_checker(service: &Service, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, u64)> {
    let grpc = service.grpc;
    tokio::spawn(async move {
        let mut client = AuthorizationClient::connect(format!("http://{grpc}"))
            .await
            .expect("gRPC connects");
        let (mut answered, mut refused) = (0, 0);
        while !stop.load(Ordering::SeqCst) {
            let answer = check(&mut client, health_with(ALPHA)).await;
            answered += 1;
            refused += u64::from(!answer.allowed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (answered, refused)
    })
}

#[tokio::test]
async fn a_slow_writer_never_leaves_the_service_without_its_keys() {
    let Setup {
        _dir: _kept,
        keys,
        service,
    } = setup(&alpha_keys()).await;
    // Still alpha, plus gamma: alpha must authenticate at every moment of the write.
    let next = keys_json(&[
        key("alpha", ALPHA, &["health:read"]),
        key("gamma", GAMMA, &["health:read"]),
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let checker = spawn_checker(&service, stop.clone());
    let chunks: Vec<&[u8]> = next.as_bytes().chunks(next.len() / 6 + 1).collect();
    let started = Instant::now();
    for (i, chunk) in chunks.iter().enumerate() {
        write_in_place(&keys, chunk, i == 0);
        // Longer than the debounce: the watcher reads the file between chunks.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let took = time_until(Instant::now(), SETTLE, async || {
        allowed(&service, GAMMA).await
    })
    .await
    .unwrap_or_else(|| panic!("the final file never loaded\n{}", service.log_text()));
    stop.store(true, Ordering::SeqCst);
    let (answered, wrong) = checker.await.expect("checker");
    let block = reload_block(&service).await;
    println!(
        "write took {:?}, final keys in force {took:?} after it; {answered} checks, \
         reload state {block}",
        started.elapsed()
    );
    assert_eq!(wrong, 0, "alpha was refused during the slow write");
    assert!(answered > 50, "the checker ran ({answered})");
    assert!(
        block["reloadsFailed"].as_u64().unwrap_or(0) >= 1,
        "partial reads were tried"
    );
    assert_eq!(block["lastReloadResult"], "ok");
}

#[tokio::test]
async fn a_flood_of_file_events_ends_on_the_final_content_with_few_reloads() {
    let Setup {
        _dir: _kept,
        keys,
        service,
    } = setup(&alpha_keys()).await;
    let rss_before = service.memory_kib("VmRSS");
    let (a, g) = (alpha_keys(), gamma_keys());
    let neighbour = keys.with_file_name("neighbour.txt");
    let started = Instant::now();
    // 2000 renames over the keys file, alternating contents, and 2000 writes to a file
    // beside it, as fast as the filesystem takes them. The last rename leaves gamma.
    for i in 0..2000 {
        replace_file(&keys, if i % 2 == 0 { &a } else { &g });
        fs::write(&neighbour, i.to_string()).expect("touch neighbour");
    }
    let burst = started.elapsed();
    let took = time_until(Instant::now(), SETTLE, async || {
        allowed(&service, GAMMA).await && !allowed(&service, ALPHA).await
    })
    .await
    .unwrap_or_else(|| panic!("the final content never took over\n{}", service.log_text()));
    // Let any reload still queued finish before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let block = reload_block(&service).await;
    let reloads =
        block["reloadsOk"].as_u64().unwrap_or(0) + block["reloadsFailed"].as_u64().unwrap_or(0);
    let rss_after = service.memory_kib("VmRSS");
    println!(
        "burst of 4000 events took {burst:?}; final content {took:?} later; {reloads} reloads; \
         RSS {rss_before} -> {rss_after} KiB"
    );
    assert!(allowed(&service, GAMMA).await && !allowed(&service, ALPHA).await);
    // The watcher reads the files at most once per quiet period (150 ms) and at the
    // latest every 10 periods under a stream of events: a bound on reloads per second.
    let bound = burst.as_millis() as u64 / 150 + 3;
    assert!(
        reloads <= bound,
        "{reloads} reloads for a {burst:?} burst (bound {bound})"
    );
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
}

/// A managed-keys file of `n` keys `key-<i>` with tokens `tok-<i>`, written directly.
fn write_many_keys(path: &Path, n: usize) {
    let mut text = String::with_capacity(n * 110 + 32);
    text.push_str("{\"credentials\":[");
    for i in 0..n {
        let sep = if i == 0 { "" } else { "," };
        let hash = hex::encode(agents_authz::core::credentials::digest(&format!("tok-{i}")));
        let _ = write!(
            text,
            "{sep}{{\"id\":\"key-{i}\",\"tokenHash\":\"{hash}\",\"scopes\":[\"health:read\"]}}"
        );
    }
    text.push_str("]}");
    fs::write(path, text).expect("write many keys");
}

/// Memory of one run of [`many_keys`], in KiB.
struct Memory {
    startup: Duration,
    loaded: u64,
    /// After the first half of the reloads, and after all of them.
    half: u64,
    after: u64,
    peak: u64,
}

/// Loads `n` keys, checks the first and last, then reloads the same file `reloads` times.
async fn many_keys(n: usize, reloads: u64, limit: Duration) -> Memory {
    let dir = tempfile::tempdir().expect("temp dir");
    let keys = dir.path().join("keys.json");
    write_many_keys(&keys, n);
    let env_file = dir.path().join("agents.env");
    fs::write(&env_file, "PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE=100000000\n").expect("env");
    let started = Instant::now();
    let mut service = Service::start_within(&keys, &env_file, &["--watch", "off"], limit).await;
    let startup = started.elapsed();
    let loaded = service.memory_kib("VmRSS");
    for token in ["tok-0".to_string(), format!("tok-{}", n - 1)] {
        assert!(allowed(&service, &token).await, "{token} authenticates");
    }
    assert!(!allowed(&service, "tok-unknown").await);
    let mut half = 0;
    for version in 2..=reloads + 1 {
        service.sighup().await;
        let since = Instant::now();
        while service.version().await != version {
            assert!(service.running(), "died reloading\n{}", service.log_text());
            assert!(since.elapsed() < limit, "reload {version} took too long");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if version == reloads / 2 + 1 {
            half = service.memory_kib("VmRSS");
        }
    }
    assert!(allowed(&service, &format!("tok-{}", n / 2)).await);
    Memory {
        startup,
        loaded,
        half,
        after: service.memory_kib("VmRSS"),
        peak: service.memory_kib("VmHWM"),
    }
}

/// A reload holds the old snapshot, the parsed file and the new snapshot at once, and the
/// allocator keeps that peak: resident memory settles at a few times one snapshot, then
/// stays there however many reloads follow.
fn assert_bounded(n: usize, m: &Memory, per_key_kib: f64) {
    println!(
        "{n} keys: serving after {:?}; RSS {} KiB loaded, {} KiB after half the reloads, {} KiB \
         after all, peak {} KiB",
        m.startup, m.loaded, m.half, m.after, m.peak
    );
    let loaded_bound = (n as f64 * per_key_kib) as u64 + 64 * 1024;
    assert!(m.loaded < loaded_bound, "RSS after load {} KiB", m.loaded);
    // Allocator arenas and thread stacks add a fixed amount on top of the multiples of
    // the snapshot; with small snapshots that fixed part dominates.
    let slack = ARENA_SLACK_KIB;
    assert!(
        m.after < m.loaded * 4 + slack,
        "RSS after reloads {} KiB",
        m.after
    );
    assert!(m.peak < m.loaded * 5 + slack, "peak RSS {} KiB", m.peak);
    // A reload that leaked its old snapshot would add a loaded size per reload; the
    // allocator settling into more arenas adds less than one over the second half.
    assert!(
        m.after < m.half + m.loaded + slack,
        "RSS still growing across reloads: {} -> {} KiB",
        m.half,
        m.after
    );
}

/// What glibc's per-thread arenas may hold beyond the snapshots themselves (64 MiB).
const ARENA_SLACK_KIB: u64 = 64 * 1024;

#[tokio::test]
async fn a_hundred_thousand_keys_load_and_reload_in_bounded_memory() {
    let n = 100_000;
    let memory = many_keys(n, 8, Duration::from_secs(30)).await;
    // Measured about 0.3 KiB per key resident after the initial load (1.5 KiB before the
    // entry-by-entry loader); a bound of 1 KiB catches a return to the old cost.
    assert_bounded(n, &memory, 1.0);
}

#[tokio::test]
#[ignore = "one million keys: ~20 s and about 1 GB; run by hand (see the module doc)"]
async fn a_million_keys_load_and_reload_in_bounded_memory() {
    let n = 1_000_000;
    let memory = many_keys(n, 6, Duration::from_secs(180)).await;
    assert_bounded(n, &memory, 1.0);
}
