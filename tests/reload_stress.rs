//! Concurrent Checks against the real binary while it reloads at least 1000 times,
//! alternating two configurations that give the same token different answers.
//!
//! The credential id comes from the managed-keys file and the scopes from the env
//! file (the key names none, so it gets `PLUGIN_AGENTS_TOKEN_SCOPES`): both files sit
//! in one ConfigMap volume and change together with each `..data` swap. An answer
//! pairing one set's id with the other set's scopes would be a Check that saw parts
//! of two snapshots, or a snapshot built from two generations of the volume.

mod reload_harness;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use reload_harness::{Answer, Service, Volume, health_with, keys_json};
use serde_json::json;
use tonic::transport::Channel;

const RELOADS: u64 = 1000;
const CHECKERS: usize = 8;
/// Bounds the whole run; on a quiet 2-core machine it takes a fraction of this.
const RUN_LIMIT: Duration = Duration::from_secs(90);
const ONE_RELOAD_LIMIT: Duration = Duration::from_secs(5);
const TOKEN: &str = "tok-stress-7e21c4a9";

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

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
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
    let initial = SET_A.files();
    let borrowed: Vec<(&str, &str)> = initial.iter().map(|(n, c)| (*n, c.as_str())).collect();
    let mut volume = Volume::new(&borrowed);
    // The watcher is off so that every reload is one SIGHUP and none reads a volume
    // in the middle of a swap; --allow-log off keeps the log small.
    let flags = ["--watch", "off", "--allow-log", "off"];
    let service = Service::start(
        &volume.path("keys.json"),
        &volume.path("agents.env"),
        &flags,
    )
    .await;
    let client = service.client().await;
    let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
    let checkers: Vec<_> = (0..CHECKERS)
        .map(|_| tokio::spawn(keep_checking(client.clone(), tally.clone(), stop.clone())))
        .collect();

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
    stop.store(true, Ordering::Relaxed);
    for checker in checkers {
        checker.await.expect("checker task");
    }

    let report = service.readyz().await["reload"].clone();
    let [a, b, mixed, refused, failed] = [
        &tally.set_a,
        &tally.set_b,
        &tally.mixed,
        &tally.refused,
        &tally.failed,
    ]
    .map(Tally::get);
    println!(
        "{RELOADS} reloads in {reload_time:?}; {} Checks: set-a {a}, set-b {b}, \
         mixed {mixed}, refused {refused}, failed {failed}; readyz reload: {report}",
        a + b + mixed + refused + failed
    );
    assert_eq!((mixed, refused, failed), (0, 0, 0));
    assert!(a > 0 && b > 0, "both sets were seen");
    assert_eq!(report["snapshotVersion"], 1 + RELOADS);
    assert_eq!(report["reloadsOk"], RELOADS);
    assert_eq!(report["reloadsFailed"], 0);
}
