//! Concurrent Checks against the real binary while it reloads at least 1000 times,
//! alternating two configurations that give the same token different answers.
//!
//! Both files of a generation (see `reload_harness::generations`) sit in one ConfigMap
//! volume and change together with each `..data` swap.
//!
//! The two tests take turns (both load the 2 cores fully).

mod reload_harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use reload_harness::generations::{Checkers, GENERATIONS, Generation};
use reload_harness::{Service, Volume};

const RELOADS: u64 = 1000;
/// How long the volume is swapped under reloads in the racing test.
const RACE_TIME: Duration = Duration::from_secs(8);
const CHECKERS: usize = 8;
/// Bounds the whole run; on a quiet 2-core machine it takes a fraction of this.
const RUN_LIMIT: Duration = Duration::from_secs(90);
const ONE_RELOAD_LIMIT: Duration = Duration::from_secs(5);

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// A volume holding generation a, and the service reading both its files.
async fn start(flags: &[&str]) -> (Volume, Service) {
    let volume = GENERATIONS[0].volume();
    let (keys, env) = (volume.path("keys.json"), volume.path("agents.env"));
    let service = Service::start(&keys, &env, flags).await;
    (volume, service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_reloads_under_concurrent_checks_never_mix_snapshots() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // The watcher is off so that every reload is exactly one SIGHUP; --allow-log off
    // keeps the log small.
    let (mut volume, service) = start(&["--watch", "off", "--allow-log", "off"]).await;
    let checkers = Checkers::start(&[service.client().await], CHECKERS);

    let started = Instant::now();
    for n in 1..=RELOADS {
        Generation::alternate(n)
            .reload_to(&service, &mut volume, 1 + n, ONE_RELOAD_LIMIT)
            .await;
        assert!(
            started.elapsed() < RUN_LIMIT,
            "{n} reloads took over {RUN_LIMIT:?}"
        );
    }
    let reload_time = started.elapsed();
    let counts = checkers.stop().await;

    let report = service.readyz().await["reload"].clone();
    println!("{RELOADS} reloads in {reload_time:?}; readyz reload: {report}");
    counts.assert_clean("1000 reloads");
    assert_eq!(report["snapshotVersion"], 1 + RELOADS);
    assert_eq!(report["reloadsOk"], RELOADS);
    assert_eq!(report["reloadsFailed"], 0);
}

/// Here the volume is swapped on its own clock, so swaps land in the middle of
/// reloads (SIGHUPs and the watcher's): a build that read the env file of one
/// generation and the keys of the next must never be swapped in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_swaps_racing_reloads_never_mix_generations() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (mut volume, service) = start(&["--allow-log", "off"]).await;
    let checkers = Checkers::start(&[service.client().await], CHECKERS);
    let done = Arc::new(AtomicBool::new(false));
    let swapper = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut swaps = 0_u64;
            while !done.load(Ordering::Relaxed) {
                swaps += 1;
                Generation::alternate(swaps).publish(&mut volume);
                std::thread::sleep(Duration::from_millis(2));
            }
            swaps
        })
    };
    let started = Instant::now();
    let mut signals = 0;
    while started.elapsed() < RACE_TIME {
        service.sighup().await;
        signals += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    done.store(true, Ordering::Relaxed);
    let swaps = swapper.join().expect("swapper thread");
    let counts = checkers.stop().await;

    let report = service.readyz().await["reload"].clone();
    let discarded = service.log_text().matches("discarding it").count();
    println!(
        "{swaps} swaps, {signals} SIGHUPs, {discarded} builds discarded (volume swapped mid-build); \
         readyz reload: {report}"
    );
    counts.assert_clean("racing swaps");
    let reloaded = report["reloadsOk"].as_u64().unwrap_or_default();
    assert!(reloaded >= 100, "only {reloaded} reloads succeeded");
}
