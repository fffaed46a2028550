//! The reloader: builds a complete new value off the request path and swaps it in
//! only when the build succeeds, so readers always see one whole snapshot.

use crate::error_chain::error_chain;
use std::error::Error;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use tracing::{error, info, warn};

use super::inputs::InputStamp;
use super::status::{ReloadOutcome, ReloadStatus};

/// Builds in a row whose input files changed under them before a reload gives up
/// and keeps the last good snapshot (the change that interrupted it triggers the
/// watcher again).
const MAX_BUILD_ATTEMPTS: u32 = 3;

type BuildFn<T> = dyn Fn(u64) -> Result<T, String> + Send + Sync;

/// Owns the reload of one swappable value `T` (the lead's snapshot type).
///
/// Readers on the Check path hold only the shared `ArcSwap<T>` and call `load`;
/// nothing here ever makes them wait.
pub struct Reloader<T> {
    current: Arc<ArcSwap<T>>,
    status: ArcSwap<ReloadStatus>,
    build: Box<BuildFn<T>>,
    /// Serialises attempts so versions are handed out and swapped in order. Held
    /// only on blocking threads, never across an await.
    attempts: Mutex<()>,
    /// The files the build reads, once known: a build they changed under is redone.
    inputs: OnceLock<Arc<[PathBuf]>>,
}

impl<T: Send + Sync + 'static> Reloader<T> {
    /// `current` holds the snapshot already in force, whose version is
    /// `initial_version`. `build(v)` must produce a complete snapshot carrying
    /// version `v` (always the last successful version plus one), or fail.
    pub fn new<F, E>(current: Arc<ArcSwap<T>>, initial_version: u64, build: F) -> Self
    where
        F: Fn(u64) -> Result<T, E> + Send + Sync + 'static,
        E: Error + 'static,
    {
        Self {
            current,
            status: ArcSwap::from_pointee(ReloadStatus::initial(initial_version)),
            build: Box::new(move |version| build(version).map_err(|err| error_chain(&err))),
            attempts: Mutex::new(()),
            inputs: OnceLock::new(),
        }
    }

    /// Names the files `build` reads. Without this, only [`Reloader::spawn_watcher`]
    /// tells the reloader (its paths), so reloads by SIGHUP with the watcher off
    /// could swap in a snapshot built from two generations of a ConfigMap volume.
    pub fn with_inputs(self, paths: Vec<PathBuf>) -> Self {
        self.note_inputs(paths.into());
        self
    }

    /// Records the build's input files unless they are already known.
    pub(crate) fn note_inputs(&self, paths: Arc<[PathBuf]>) {
        if !paths.is_empty() {
            // Both callers name the same files (the sources' paths); the first wins.
            let _ = self.inputs.set(paths);
        }
    }

    /// The shared value readers load from.
    pub fn current(&self) -> &Arc<ArcSwap<T>> {
        &self.current
    }

    /// A copy of the reload status; never blocks.
    pub fn status(&self) -> ReloadStatus {
        ReloadStatus::clone(&self.status.load())
    }

    /// Builds a new snapshot now and swaps it in if the build succeeds; on failure
    /// the last good snapshot stays. Blocking: from async code use
    /// [`Reloader::reload_in_background`].
    pub fn reload_now(&self, trigger: &str) -> ReloadOutcome {
        let turn = self.take_turn();
        let version = self.status.load().next_version();
        let started = Instant::now();
        let built = self.build_from_still_inputs(version);
        let duration_ms = started.elapsed().as_millis() as u64;
        match built {
            Ok(value) => {
                self.current.store(Arc::new(value));
                self.update_status(&turn, |s| s.succeeded(version, SystemTime::now()));
                info!(
                    reload.trigger = trigger,
                    reload.version = version,
                    reload.duration_ms = duration_ms,
                    "snapshot reloaded"
                );
                ReloadOutcome::Reloaded { version }
            }
            Err(reason) => self.fail(&turn, trigger, reason, duration_ms),
        }
    }

    /// Runs [`Reloader::reload_now`] on the blocking pool, so an async caller (a
    /// signal handler, an admin endpoint) does not stall its runtime thread.
    pub async fn reload_in_background(self: Arc<Self>, trigger: &'static str) -> ReloadOutcome {
        let reloader = Arc::clone(&self);
        match tokio::task::spawn_blocking(move || reloader.reload_now(trigger)).await {
            Ok(outcome) => outcome,
            Err(join) => {
                let reason = format!("reload task did not complete: {join}");
                self.fail(&self.take_turn(), trigger, reason, 0)
            }
        }
    }

    /// Records that watched files are missing: nothing is built, the last good
    /// snapshot stays, and operators are told loudly which paths are gone.
    pub(crate) fn record_missing(&self, trigger: &str, missing: &[PathBuf]) {
        let turn = self.take_turn();
        let kept = self.status.load().version;
        for path in missing {
            error!(
                reload.trigger = trigger,
                reload.path = %path.display(),
                reload.version = kept,
                "watched file is missing; keeping the last good snapshot \
                 (a deleted mount or file is usually an accident)"
            );
        }
        let reason = format!(
            "watched file missing: {}; keeping snapshot version {kept}",
            display_paths(missing)
        );
        self.update_status(&turn, |s| {
            s.with_missing(missing.to_vec())
                .failed(reason, SystemTime::now())
        });
    }

    /// Clears the missing-file report once every watched file exists again.
    pub(crate) fn clear_missing(&self) {
        if self.status.load().missing_files.is_empty() {
            return;
        }
        let turn = self.take_turn();
        self.update_status(&turn, |s| s.with_missing(Vec::new()));
    }

    fn fail(
        &self,
        turn: &MutexGuard<'_, ()>,
        trigger: &str,
        reason: String,
        duration_ms: u64,
    ) -> ReloadOutcome {
        let kept_version = self.status.load().version;
        error!(
            reload.trigger = trigger,
            reload.version = kept_version,
            reload.duration_ms = duration_ms,
            error = %reason,
            "reload failed; keeping the last good snapshot"
        );
        self.update_status(turn, |s| s.failed(reason.clone(), SystemTime::now()));
        ReloadOutcome::Failed {
            kept_version,
            error: reason,
        }
    }

    /// Builds from input files that held still for the whole build. A change during
    /// it (a `..data` swap between reading the keys and the env file, a rename
    /// mid-read) could yield a snapshot mixing two generations, so that one is
    /// thrown away and built again.
    fn build_from_still_inputs(&self, version: u64) -> Result<T, String> {
        let Some(inputs) = self.inputs.get() else {
            return self.run_build(version);
        };
        for attempt in 1..=MAX_BUILD_ATTEMPTS {
            let before = InputStamp::take(inputs);
            let built = self.run_build(version);
            if InputStamp::take(inputs) == before {
                return built;
            }
            warn!(
                reload.version = version,
                reload.attempt = attempt,
                "input files changed while the snapshot was built; discarding it"
            );
        }
        Err(format!(
            "input files kept changing while being read ({MAX_BUILD_ATTEMPTS} attempts): {}",
            display_paths(inputs)
        ))
    }

    /// A panicking builder must not take the service down nor leave a half
    /// state: it counts as a failed build.
    fn run_build(&self, version: u64) -> Result<T, String> {
        panic::catch_unwind(AssertUnwindSafe(|| (self.build)(version)))
            .unwrap_or_else(|_| Err("the snapshot builder panicked".to_owned()))
    }

    /// Status is only written with the attempt lock held (the guard argument is
    /// the proof), so this plain load-modify-store cannot lose an update.
    fn update_status(
        &self,
        _turn: &MutexGuard<'_, ()>,
        change: impl FnOnce(&ReloadStatus) -> ReloadStatus,
    ) {
        let next = change(&self.status.load());
        self.status.store(Arc::new(next));
    }

    fn take_turn(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`, so a poisoned lock carries no broken state.
        self.attempts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum BuildError {
        #[error("routes.json entry 3 is invalid")]
        Invalid(#[source] std::io::Error),
    }

    /// A reloader over the version number itself; builds fail while `fail` holds.
    fn reloader(fail: Arc<std::sync::atomic::AtomicBool>) -> Reloader<u64> {
        let current = Arc::new(ArcSwap::from_pointee(1));
        Reloader::new(current, 1, move |version| {
            if fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(BuildError::Invalid(std::io::Error::other("bad scope")));
            }
            Ok(version)
        })
    }

    #[test]
    fn versions_increase_by_one_per_success() {
        let reloader = reloader(Arc::default());
        assert_eq!(
            reloader.reload_now("test"),
            ReloadOutcome::Reloaded { version: 2 }
        );
        assert_eq!(
            reloader.reload_now("test"),
            ReloadOutcome::Reloaded { version: 3 }
        );
        assert_eq!(**reloader.current().load(), 3);
        assert_eq!(reloader.status().version, 3);
    }

    #[test]
    fn failure_keeps_value_and_version_then_next_success_uses_the_next_number() {
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let reloader = reloader(Arc::clone(&fail));
        let outcome = reloader.reload_now("test");
        let error = "routes.json entry 3 is invalid: bad scope".to_owned();
        assert_eq!(
            outcome,
            ReloadOutcome::Failed {
                kept_version: 1,
                error: error.clone()
            }
        );
        assert_eq!(**reloader.current().load(), 1);
        let status = reloader.status();
        assert_eq!((status.version, status.last_error), (1, Some(error)));

        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            reloader.reload_now("test"),
            ReloadOutcome::Reloaded { version: 2 }
        );
        assert_eq!(reloader.status().last_error, None);
    }

    #[test]
    fn a_panicking_builder_counts_as_a_failure() {
        let current = Arc::new(ArcSwap::from_pointee(7_u8));
        let reloader = Reloader::new(current, 1, |_| -> Result<u8, std::io::Error> {
            panic!("builder bug")
        });
        let outcome = reloader.reload_now("test");
        assert!(matches!(
            outcome,
            ReloadOutcome::Failed {
                kept_version: 1,
                ..
            }
        ));
        assert_eq!(**reloader.current().load(), 7);
        assert_eq!(reloader.status().reloads_failed, 1);
        assert_eq!(
            reloader.reload_now("test"),
            outcome,
            "the lock is still usable"
        );
    }

    #[test]
    fn missing_files_are_recorded_and_cleared() {
        let reloader = reloader(Arc::default());
        let gone = vec![PathBuf::from("/etc/authz/keys.json")];
        reloader.record_missing("test", &gone);
        let status = reloader.status();
        assert_eq!(status.missing_files, gone);
        assert!(status.last_error.unwrap().contains("/etc/authz/keys.json"));
        assert_eq!(status.version, 1);
        reloader.clear_missing();
        assert!(reloader.status().missing_files.is_empty());
    }

    #[test]
    fn concurrent_reloads_hand_out_distinct_increasing_versions() {
        let reloader = Arc::new(reloader(Arc::default()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let reloader = Arc::clone(&reloader);
                std::thread::spawn(move || {
                    (0..25).for_each(|_| {
                        reloader.reload_now("test");
                    })
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(reloader.status().version, 101);
        assert_eq!(**reloader.current().load(), 101);
        assert_eq!(reloader.status().reloads_ok, 100);
    }

    /// A reloader whose builder replaces `input` (a rename over it) during each
    /// of its first `disturbed` builds, and returns how many builds ran.
    fn disturbed_reloader(input: &std::path::Path, disturbed: u32) -> Reloader<u32> {
        use std::sync::atomic::{AtomicU32, Ordering};
        let builds = AtomicU32::new(0);
        let path = input.to_path_buf();
        let current = Arc::new(ArcSwap::from_pointee(0));
        Reloader::new(current, 1, move |_| -> Result<u32, std::io::Error> {
            let n = builds.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= disturbed {
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, n.to_string())?;
                std::fs::rename(&tmp, &path)?;
            }
            Ok(n)
        })
        .with_inputs(vec![input.to_path_buf()])
    }

    #[test]
    fn a_build_whose_inputs_change_under_it_is_redone() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("keys.json");
        std::fs::write(&input, "0").unwrap();
        let reloader = disturbed_reloader(&input, 1);
        assert_eq!(
            reloader.reload_now("test"),
            ReloadOutcome::Reloaded { version: 2 }
        );
        assert_eq!(
            **reloader.current().load(),
            2,
            "the undisturbed build is kept"
        );
    }

    #[test]
    fn inputs_that_never_hold_still_fail_the_reload() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("keys.json");
        std::fs::write(&input, "0").unwrap();
        let reloader = disturbed_reloader(&input, u32::MAX);
        let ReloadOutcome::Failed {
            kept_version: 1,
            error,
        } = reloader.reload_now("test")
        else {
            panic!("expected a failed reload");
        };
        assert!(
            error.contains("keys.json") && error.contains("kept changing"),
            "{error}"
        );
        assert_eq!(**reloader.current().load(), 0, "nothing was swapped in");
    }

    #[tokio::test]
    async fn background_reload_runs_off_the_runtime_thread() {
        let reloader = Arc::new(reloader(Arc::default()));
        let outcome = Arc::clone(&reloader).reload_in_background("test").await;
        assert_eq!(outcome, ReloadOutcome::Reloaded { version: 2 });
    }
}
