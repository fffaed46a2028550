//! Concurrent Checks against the real binary while it reloads at least 1000 times,
//! alternating two configurations that give the same token different answers.
//!
//! The credential id comes from the managed-keys file and the scopes from the env
//! file (the key names none, so it gets `PLUGIN_AGENTS_TOKEN_SCOPES`): both files sit
//! in one ConfigMap volume and change together with each `..data` swap. An answer
//! pairing one set's id with the other set's scopes would be a Check that saw parts
//! of two snapshots, or a snapshot built from two generations of the volume.
//!
//! The two tests take turns (both load the 2 cores fully).

mod reload_harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use reload_harness::{Answer, Service, Volume, health_with, keys_json};
use serde_json::json;
use tonic::transport::Channel;

const RELOADS: u64 = 1000;
/// How long the volume is swapped under reloads in the racing test.
const RACE_TIME: Duration = Duration::from_secs(8);
const CHECKERS: usize = 8;
/// Bounds the whole run; on a quiet 2-core machine it takes a fraction of this.
const RUN_LIMIT: Duration = Duration::from_secs(90);
const ONE_RELOAD_LIMIT: Duration = Duration::from_secs(5);
const TOKEN: &str = "tok-stress-7e21c4a9";

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// One configuration: what the volume holds and what an answer under it looks like.
struct Set {
    id: &'static str,
    scopes: &'static str,
}

const SET_A: Set = Set {
    id: "set-a",
    scopes: "health:read products:read",
};
const SET_B: Set = Set {
    id: "set-b",
    scopes: "health:read orders:read",
};

impl Set {
    fn files(&self) -> [(&'static str, String); 2] {
        let keys = keys_json(&[json!({
            "id": self.id,
            "tokenHash": hex::encode(agents_authz::core::credentials::digest(TOKEN)),
        })]);
        let env = format!(
            "PLUGIN_AGENTS_TOKEN_SCOPES=\"{}\"\nPLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE=100000000\n",
            self.scopes
        );
        [("keys.json", keys), ("agents.env", env)]
    }

    fn matches(&self, answer: &Answer) -> bool {
        answer.upstream("x-agents-credential-id") == Some(self.id)
            && answer.upstream("x-agents-scopes") == Some(self.scopes)
    }
}

fn publish(volume: &mut Volume, set: &Set) {
    let files = set.files();
    let borrowed: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
    volume.publish(&borrowed);
}

#[derive(Default)]
struct Tally {
    set_a: AtomicU64,
    set_b: AtomicU64,
    /// Allowed, but with one set's id and the other's scopes (or anything else).
    mixed: AtomicU64,
    /// Refused: both sets accept the token, so a refusal means a broken snapshot.
    refused: AtomicU64,
    /// The RPC itself failed.
    failed: AtomicU64,
}

impl Tally {
    fn count(&self, result: Result<Answer, tonic::Status>) {
        let counter = match result {
            Err(_) => &self.failed,
            Ok(a) if SET_A.matches(&a) => &self.set_a,
            Ok(a) if SET_B.matches(&a) => &self.set_b,
            Ok(a) if a.allowed() => &self.mixed,
            Ok(_) => &self.refused,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Prints the counts and asserts that every answer came from one whole set.
    fn assert_clean(&self, what: &str) {
        let [a, b, mixed, refused, failed] = [
            &self.set_a,
            &self.set_b,
            &self.mixed,
            &self.refused,
            &self.failed,
        ]
        .map(|c| c.load(Ordering::Relaxed));
        println!(
            "{what}: {} Checks: set-a {a}, set-b {b}, mixed {mixed}, refused {refused}, \
             failed {failed}",
            a + b + mixed + refused + failed
        );
        assert_eq!((mixed, refused, failed), (0, 0, 0), "{what}");
        assert!(a > 0 && b > 0, "both sets were seen");
    }
}

/// Tasks sending Checks back to back until stopped.
struct Checkers {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Checkers {
    fn start(client: &AuthorizationClient<Channel>) -> Self {
        let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
        let tasks = (0..CHECKERS)
            .map(|_| tokio::spawn(keep_checking(client.clone(), tally.clone(), stop.clone())))
            .collect();
        Self { tally, stop, tasks }
    }

    async fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("checker task");
        }
        self.tally
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

/// A volume holding set A, and the service reading both its files.
async fn start(flags: &[&str]) -> (Volume, Service) {
    let initial = SET_A.files();
    let borrowed: Vec<(&str, &str)> = initial.iter().map(|(n, c)| (*n, c.as_str())).collect();
    let volume = Volume::new(&borrowed);
    let (keys, env) = (volume.path("keys.json"), volume.path("agents.env"));
    let service = Service::start(&keys, &env, flags).await;
    (volume, service)
}

/// Swaps the volume to the other set, signals, and waits for the new version.
async fn reload_to(service: &Service, volume: &mut Volume, set: &Set, version: u64) {
    publish(volume, set);
    service.sighup().await;
    let since = Instant::now();
    while service.version().await < version {
        assert!(
            since.elapsed() < ONE_RELOAD_LIMIT,
            "reload to version {version} did not happen\n{}",
            service.log_text()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_reloads_under_concurrent_checks_never_mix_snapshots() {
    let _turn = ONE_AT_A_TIME.lock().await;
    // The watcher is off so that every reload is exactly one SIGHUP; --allow-log off
    // keeps the log small.
    let (mut volume, service) = start(&["--watch", "off", "--allow-log", "off"]).await;
    let checkers = Checkers::start(&service.client().await);

    let started = Instant::now();
    for n in 1..=RELOADS {
        let set = if n % 2 == 1 { &SET_B } else { &SET_A };
        reload_to(&service, &mut volume, set, 1 + n).await;
        assert!(
            started.elapsed() < RUN_LIMIT,
            "{n} reloads took over {RUN_LIMIT:?}"
        );
    }
    let reload_time = started.elapsed();
    let tally = checkers.stop().await;

    let report = service.readyz().await["reload"].clone();
    println!("{RELOADS} reloads in {reload_time:?}; readyz reload: {report}");
    tally.assert_clean("1000 reloads");
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
    let checkers = Checkers::start(&service.client().await);
    let done = Arc::new(AtomicBool::new(false));
    let swapper = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut swaps = 0_u64;
            while !done.load(Ordering::Relaxed) {
                swaps += 1;
                publish(&mut volume, if swaps % 2 == 1 { &SET_B } else { &SET_A });
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
    let tally = checkers.stop().await;

    let report = service.readyz().await["reload"].clone();
    let discarded = service.log_text().matches("discarding it").count();
    println!(
        "{swaps} swaps, {signals} SIGHUPs, {discarded} builds discarded (volume swapped mid-build); \
         readyz reload: {report}"
    );
    tally.assert_clean("racing swaps");
    let reloaded = report["reloadsOk"].as_u64().unwrap_or_default();
    assert!(reloaded >= 100, "only {reloaded} reloads succeeded");
}
