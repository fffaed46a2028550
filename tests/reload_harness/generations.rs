//! Two configuration generations that give one token different answers, and Check loops
//! that count which generation each answer came from. The credential id comes from the
//! managed-keys file and the scopes from the env file (the key names none, so it gets
//! `PLUGIN_AGENTS_TOKEN_SCOPES`): an answer pairing one generation's id with the other's
//! scopes saw parts of two snapshots, or a snapshot built from two generations of files.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::json;
use tonic::transport::Channel;

use super::{Answer, Service, Volume, health_with, keys_json};

/// The token both generations accept.
pub const TOKEN: &str = "tok-generations-7e21c4a9";

/// One configuration: what the volume holds and what an answer under it looks like.
pub struct Generation {
    pub id: &'static str,
    pub scopes: &'static str,
}

pub const GENERATIONS: [Generation; 2] = [
    Generation {
        id: "generation-a",
        scopes: "health:read products:read",
    },
    Generation {
        id: "generation-b",
        scopes: "health:read orders:read",
    },
];

impl Generation {
    /// Generation b for odd `n`, a for even `n`: what the `n`th swap publishes.
    pub fn alternate(n: u64) -> &'static Generation {
        &GENERATIONS[(n % 2) as usize]
    }

    /// `keys.json` and `agents.env` for this generation; the rate limit is out of the way.
    pub fn files(&self) -> [(&'static str, String); 2] {
        let keys = keys_json(&[json!({
            "id": self.id,
            "tokenHash": hex::encode(agents_authz::core::credentials::digest(TOKEN)),
        })]);
        let env = format!(
            "PLUGIN_AGENTS_TOKEN_SCOPES=\"{}\"\nPLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE=1000000000\n",
            self.scopes
        );
        [("keys.json", keys), ("agents.env", env)]
    }

    /// A volume holding this generation.
    pub fn volume(&self) -> Volume {
        let files = self.files();
        Volume::new(&borrow(&files))
    }

    /// Swaps `volume` to this generation, as the kubelet would.
    pub fn publish(&self, volume: &mut Volume) {
        let files = self.files();
        volume.publish(&borrow(&files));
    }

    /// Publishes this generation, signals the service, and waits until it serves
    /// `version` (or later), for at most `limit`.
    pub async fn reload_to(
        &self,
        service: &Service,
        volume: &mut Volume,
        version: u64,
        limit: Duration,
    ) {
        self.publish(volume);
        service.sighup().await;
        let since = Instant::now();
        while service.version().await < version {
            assert!(
                since.elapsed() < limit,
                "reload to version {version} did not happen\n{}",
                service.log_text()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub fn matches(&self, answer: &Answer) -> bool {
        answer.upstream("x-agents-credential-id") == Some(self.id)
            && answer.upstream("x-agents-scopes") == Some(self.scopes)
    }
}

fn borrow<'f>(files: &'f [(&'static str, String)]) -> Vec<(&'static str, &'f str)> {
    files.iter().map(|(n, c)| (*n, c.as_str())).collect()
}

/// Answers counted by the generation they came from.
#[derive(Default)]
pub struct Tally {
    per_generation: [AtomicU64; 2],
    /// Allowed, but with one generation's id and the other's scopes (or anything else).
    mixed: AtomicU64,
    /// Refused: both generations accept the token, so a refusal means a broken snapshot.
    refused: AtomicU64,
    /// The RPC itself failed.
    failed: AtomicU64,
}

/// What a [`Tally`] counted.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub per_generation: [u64; 2],
    pub mixed: u64,
    pub refused: u64,
    pub failed: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.per_generation.iter().sum::<u64>() + self.mixed + self.refused + self.failed
    }

    /// Prints the counts and asserts that every answer came from one whole generation,
    /// and that both were seen.
    pub fn assert_clean(&self, what: &str) {
        let [a, b] = self.per_generation;
        println!(
            "{what}: {} Checks: generation a {a}, b {b}, mixed {}, refused {}, failed {}",
            self.total(),
            self.mixed,
            self.refused,
            self.failed
        );
        assert_eq!(
            (self.mixed, self.refused, self.failed),
            (0, 0, 0),
            "{what}: every Check answered from one generation"
        );
        assert!(a > 0 && b > 0, "{what}: both generations were seen");
    }
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

    fn counts(&self) -> Counts {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            per_generation: [load(&self.per_generation[0]), load(&self.per_generation[1])],
            mixed: load(&self.mixed),
            refused: load(&self.refused),
            failed: load(&self.failed),
        }
    }
}

/// Tasks sending Checks for [`TOKEN`] back to back until stopped.
pub struct Checkers {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Checkers {
    /// `loops` tasks on each of `clients` (one HTTP/2 connection each, as Envoy keeps).
    pub fn start(clients: &[AuthorizationClient<Channel>], loops: usize) -> Self {
        let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
        let tasks = clients
            .iter()
            .flat_map(|client| std::iter::repeat_n(client, loops))
            .map(|client| tokio::spawn(keep_checking(client.clone(), tally.clone(), stop.clone())))
            .collect();
        Self { tally, stop, tasks }
    }

    pub async fn stop(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("checker task");
        }
        self.tally.counts()
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
