//! Hot reload against the file layouts operators really produce: the kubelet's
//! ConfigMap volume (`..data` symlink swapped to a new `..<timestamp>` directory),
//! editors that write a temp file and rename it, and truncate-then-write.
//!
//! The reloaded value is a small key-id set parsed from JSON; it fails closed on
//! anything but `{"keys": [...]}`.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agents_authz::reload::{
    ReloadOutcome, ReloadResult, ReloadStatus, Reloader, WatchHandle, WatchMode, spawn_sighup,
};
use arc_swap::ArcSwap;
use serde::Deserialize;

const WAIT_LIMIT: Duration = Duration::from_secs(3);
const WAIT_STEP: Duration = Duration::from_millis(20);
const FAST_POLL: WatchMode = WatchMode::Poll {
    interval: Duration::from_millis(50),
};

#[derive(Debug)]
struct KeySet {
    version: u64,
    keys: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn load(path: &Path, version: u64) -> Result<KeySet, LoadError> {
    let text = fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file: KeysFile = serde_json::from_slice(&text).map_err(|source| LoadError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let keys = file.keys.into_iter().collect();
    Ok(KeySet { version, keys })
}

fn keys_json(keys: &[&str]) -> String {
    serde_json::json!({ "keys": keys }).to_string()
}

/// A ConfigMap volume laid out exactly as the kubelet's atomic writer does it.
struct KubeletVolume {
    dir: tempfile::TempDir,
    generation: u32,
    current: Option<String>,
}

impl KubeletVolume {
    fn new(contents: &str) -> Self {
        let mut volume = Self {
            dir: tempfile::tempdir().unwrap(),
            generation: 0,
            current: None,
        };
        volume.publish(contents);
        symlink("..data/keys.json", volume.file()).unwrap();
        volume
    }

    /// The path the service is configured with: `keys.json -> ..data/keys.json`.
    fn file(&self) -> PathBuf {
        self.dir.path().join("keys.json")
    }

    /// One update: new timestamped directory, `..data_tmp` link, rename over
    /// `..data`, remove the old directory. Returns the instant of the swap.
    fn publish(&mut self, contents: &str) -> Instant {
        self.generation += 1;
        let stamp = format!(
            "..2026_12_03_10_00_{:02}.{:06}",
            self.generation % 60,
            self.generation
        );
        let root = self.dir.path();
        fs::create_dir(root.join(&stamp)).unwrap();
        fs::write(root.join(&stamp).join("keys.json"), contents).unwrap();
        symlink(&stamp, root.join("..data_tmp")).unwrap();
        fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        let swapped_at = Instant::now();
        if let Some(old) = self.current.replace(stamp) {
            fs::remove_dir_all(root.join(old)).unwrap();
        }
        swapped_at
    }
}

struct Service {
    reloader: Arc<Reloader<KeySet>>,
    watch: Option<WatchHandle>,
}

impl Service {
    /// Loads `file` as version 1, like the service at start, then watches it.
    fn start(file: &Path, mode: Option<WatchMode>) -> Self {
        // Reload logs are shown for failing tests; another test may have set it up.
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
        let initial = load(file, 1).expect("initial keys load");
        let current = Arc::new(ArcSwap::from_pointee(initial));
        let source = file.to_path_buf();
        let reloader = Arc::new(Reloader::new(current, 1, move |v| load(&source, v)));
        let watch = mode.map(|mode| {
            Arc::clone(&reloader)
                .spawn_watcher(vec![file.to_path_buf()], mode)
                .expect("watcher starts")
        });
        Self { reloader, watch }
    }

    fn has_key(&self, key: &str) -> bool {
        self.reloader.current().load().keys.contains(key)
    }

    fn keys(&self) -> Vec<String> {
        self.reloader
            .current()
            .load()
            .keys
            .iter()
            .cloned()
            .collect()
    }

    fn status(&self) -> ReloadStatus {
        self.reloader.status()
    }

    /// Bounded wait: checks every 20 ms for up to 3 s.
    async fn wait_for(&self, what: &str, ready: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + WAIT_LIMIT;
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; keys {:?}, status {:?}",
                self.keys(),
                self.status()
            );
            tokio::time::sleep(WAIT_STEP).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_swap_adding_a_key_takes_effect() {
    let mut volume = KubeletVolume::new(&keys_json(&["alpha"]));
    let service = Service::start(&volume.file(), Some(WatchMode::default()));

    volume.publish(&keys_json(&["alpha", "beta"]));
    service
        .wait_for("beta to be added", |s| s.has_key("beta"))
        .await;
    assert_eq!(service.reloader.current().load().version, 2);
    assert_eq!(service.status().last_result, ReloadResult::Ok);

    // A burst of swaps settles on the last one.
    for keys in [["gamma"], ["delta"], ["epsilon"]] {
        volume.publish(&keys_json(&keys));
    }
    service
        .wait_for("the last swap", |s| s.keys() == ["epsilon"])
        .await;
    let current = service.reloader.current().load();
    assert_eq!(current.version, service.status().version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_swap_removing_a_key_stops_it_within_two_seconds() {
    let mut volume = KubeletVolume::new(&keys_json(&["alpha", "revoked"]));
    let service = Service::start(&volume.file(), Some(WatchMode::default()));

    let swapped_at = volume.publish(&keys_json(&["alpha"]));
    service
        .wait_for("revoked to be removed", |s| !s.has_key("revoked"))
        .await;
    let took = swapped_at.elapsed();
    assert!(took < Duration::from_secs(2), "revocation took {took:?}");
    assert!(service.has_key("alpha"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_swap_to_invalid_json_keeps_the_previous_keys() {
    let mut volume = KubeletVolume::new(&keys_json(&["alpha"]));
    let service = Service::start(&volume.file(), Some(WatchMode::default()));

    volume.publish(r#"{"keys": ["alpha", "beta"#);
    service
        .wait_for("the failed reload", |s| s.status().reloads_failed >= 1)
        .await;
    assert_eq!(service.keys(), ["alpha"]);
    let status = service.status();
    assert_eq!(status.last_result, ReloadResult::Failed);
    assert_eq!(status.version, 1);
    let error = status.last_error.expect("error recorded");
    assert!(
        error.contains("parsing") && error.contains("keys.json"),
        "{error}"
    );

    // The fix is picked up, and the failed attempt did not burn a version.
    volume.publish(&keys_json(&["gamma"]));
    service
        .wait_for("the fixed keys", |s| s.has_key("gamma"))
        .await;
    assert_eq!(service.status().version, 2);
    assert_eq!(service.status().last_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_file_keeps_the_previous_keys_and_is_reported() {
    let volume = KubeletVolume::new(&keys_json(&["alpha"]));
    let service = Service::start(&volume.file(), Some(WatchMode::default()));

    fs::remove_file(volume.file()).unwrap();
    let gone = vec![volume.file()];
    service
        .wait_for("the missing file report", |s| {
            s.status().missing_files == gone
        })
        .await;
    assert_eq!(service.keys(), ["alpha"]);
    let status = service.status();
    assert_eq!(status.last_result, ReloadResult::Failed);
    let error = status.last_error.expect("error recorded");
    assert!(
        error.contains(&volume.file().display().to_string()),
        "{error}"
    );

    symlink("..data/keys.json", volume.file()).unwrap();
    service
        .wait_for("the file to return", |s| {
            s.status().missing_files.is_empty()
        })
        .await;
    service
        .wait_for("the reload", |s| s.status().version == 2)
        .await;
    assert_eq!(service.keys(), ["alpha"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_data_link_is_reported_and_recovers_on_the_next_swap() {
    let mut volume = KubeletVolume::new(&keys_json(&["alpha"]));
    let service = Service::start(&volume.file(), Some(WatchMode::default()));

    fs::remove_file(volume.dir.path().join("..data")).unwrap();
    let gone = vec![volume.file()];
    service
        .wait_for("the missing file report", |s| {
            s.status().missing_files == gone
        })
        .await;
    assert_eq!(service.keys(), ["alpha"]);

    volume.publish(&keys_json(&["beta"]));
    service
        .wait_for("the new keys", |s| s.keys() == ["beta"])
        .await;
    assert!(service.status().missing_files.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_temp_file_and_rename_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");
    fs::write(&file, keys_json(&["alpha"])).unwrap();
    let service = Service::start(&file, Some(WatchMode::default()));

    let temp = dir.path().join(".keys.json.swp");
    fs::write(&temp, keys_json(&["alpha", "beta"])).unwrap();
    fs::rename(&temp, &file).unwrap();
    service
        .wait_for("beta to be added", |s| s.has_key("beta"))
        .await;
    assert_eq!(service.status().reloads_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_to_a_file_edited_in_place_elsewhere_is_followed() {
    let config = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("keys.json");
    fs::write(&target, keys_json(&["alpha"])).unwrap();
    let file = config.path().join("keys.json");
    symlink(&target, &file).unwrap();
    let service = Service::start(&file, Some(WatchMode::default()));

    fs::write(&target, keys_json(&["beta"])).unwrap();
    service
        .wait_for("the in-place edit", |s| s.keys() == ["beta"])
        .await;
}

/// A writer that pauses mid-file: the half file is read, rejected, and the
/// final write still triggers the rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_then_write_with_a_pause_is_retried_and_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");
    fs::write(&file, keys_json(&["alpha"])).unwrap();
    let service = Service::start(&file, Some(WatchMode::default()));

    let full = keys_json(&["alpha", "beta"]);
    let (head, tail) = full.split_at(full.len() / 2);
    let mut writer = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&file)
        .unwrap();
    writer.write_all(head.as_bytes()).unwrap();
    writer.flush().unwrap();
    service
        .wait_for("the half file to be rejected", |s| {
            s.status().reloads_failed >= 1
        })
        .await;
    assert_eq!(service.keys(), ["alpha"]);

    writer.write_all(tail.as_bytes()).unwrap();
    drop(writer);
    service
        .wait_for("beta to be added", |s| s.has_key("beta"))
        .await;
    assert_eq!(service.status().last_result, ReloadResult::Ok);
}

/// A writer that finishes within the debounce window: the half file is never
/// parsed, so there is one clean reload and no failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_then_write_in_one_burst_is_debounced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");
    fs::write(&file, keys_json(&["alpha"])).unwrap();
    let debounce = Duration::from_millis(500);
    let service = Service::start(&file, Some(WatchMode::Notify { debounce }));

    let full = keys_json(&["alpha", "beta"]);
    let (head, tail) = full.split_at(full.len() / 2);
    let mut writer = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&file)
        .unwrap();
    writer.write_all(head.as_bytes()).unwrap();
    writer.flush().unwrap();
    std::thread::sleep(Duration::from_millis(10));
    writer.write_all(tail.as_bytes()).unwrap();
    drop(writer);

    service
        .wait_for("beta to be added", |s| s.has_key("beta"))
        .await;
    let status = service.status();
    assert_eq!((status.reloads_ok, status.reloads_failed), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_mode_follows_kubelet_swaps() {
    let mut volume = KubeletVolume::new(&keys_json(&["alpha", "revoked"]));
    let service = Service::start(&volume.file(), Some(FAST_POLL));

    let swapped_at = volume.publish(&keys_json(&["alpha", "beta"]));
    service
        .wait_for("the swap", |s| s.keys() == ["alpha", "beta"])
        .await;
    assert!(swapped_at.elapsed() < Duration::from_secs(2));

    volume.publish("not json");
    service
        .wait_for("the failed reload", |s| s.status().reloads_failed >= 1)
        .await;
    assert_eq!(service.keys(), ["alpha", "beta"]);

    fs::remove_file(volume.file()).unwrap();
    let gone = vec![volume.file()];
    service
        .wait_for("the missing file report", |s| {
            s.status().missing_files == gone
        })
        .await;
    assert_eq!(service.keys(), ["alpha", "beta"]);

    volume.publish(&keys_json(&["gamma"]));
    symlink("..data/keys.json", volume.file()).unwrap();
    service
        .wait_for("the return", |s| s.keys() == ["gamma"])
        .await;
    assert_eq!(service.status().version, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_reload_now_force_a_reload() {
    let mut volume = KubeletVolume::new(&keys_json(&["alpha"]));
    let service = Service::start(&volume.file(), None);

    volume.publish(&keys_json(&["beta"]));
    let outcome = service.reloader.reload_now("sighup");
    assert_eq!(outcome, ReloadOutcome::Reloaded { version: 2 });
    assert_eq!(service.keys(), ["beta"]);

    // The real signal, once the handler is installed.
    let _listener = spawn_sighup(Arc::clone(&service.reloader)).unwrap();
    volume.publish(&keys_json(&["gamma"]));
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    service
        .wait_for("the SIGHUP reload", |s| s.has_key("gamma"))
        .await;
    assert_eq!(service.status().version, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_the_watcher_down_stops_reloads() {
    let mut volume = KubeletVolume::new(&keys_json(&["alpha"]));
    let mut service = Service::start(&volume.file(), Some(WatchMode::default()));
    volume.publish(&keys_json(&["beta"]));
    service
        .wait_for("the first swap", |s| s.has_key("beta"))
        .await;

    service.watch.take().expect("watching").shutdown().await;
    volume.publish(&keys_json(&["gamma"]));
    // Proving that nothing happens needs a wait: several debounce periods.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(service.keys(), ["beta"]);
    assert_eq!(service.status().version, 2);
}

/// Readers load while 1000 reloads alternate two disjoint key sets: every load
/// must be exactly one set, and versions seen by a reader never go back.
#[test]
fn a_thousand_reloads_never_show_a_mixed_set() {
    use std::sync::atomic::{AtomicBool, Ordering};

    let set_a: Vec<String> = (0..50).map(|i| format!("a{i}")).collect();
    let set_b: Vec<String> = (0..50).map(|i| format!("b{i}")).collect();
    let as_json = |set: &[String]| serde_json::json!({ "keys": set }).to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.json");
    fs::write(&file, as_json(&set_a)).unwrap();
    let service = Service::start(&file, None);
    let done = Arc::new(AtomicBool::new(false));
    let (a, b): (BTreeSet<String>, BTreeSet<String>) = (
        set_a.iter().cloned().collect(),
        set_b.iter().cloned().collect(),
    );

    let readers: Vec<_> = (0..2)
        .map(|_| {
            let current = Arc::clone(service.reloader.current());
            let (done, a, b) = (Arc::clone(&done), a.clone(), b.clone());
            std::thread::spawn(move || {
                let (mut loads, mut last_version) = (0_u64, 0);
                while !done.load(Ordering::Relaxed) {
                    let snapshot = current.load();
                    assert!(snapshot.keys == a || snapshot.keys == b, "mixed key set");
                    assert!(snapshot.version >= last_version, "version went back");
                    last_version = snapshot.version;
                    loads += 1;
                }
                loads
            })
        })
        .collect();

    for round in 0..1000 {
        let next = if round % 2 == 0 { &set_b } else { &set_a };
        fs::write(&file, as_json(next)).unwrap();
        let outcome = service.reloader.reload_now("stress");
        assert_eq!(outcome, ReloadOutcome::Reloaded { version: round + 2 });
    }
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.join().expect("reader saw only whole sets") > 0);
    }
    assert_eq!(service.status().version, 1001);
}
