//! Filesystem reload triggers: change events through `notify`, or polling for
//! filesystems that deliver no events (NFS, some FUSE mounts).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tracing::{error, warn};

use super::dirs::WatchedDirs;
use super::error::ReloadError;
use super::fingerprint::Fingerprint;
use super::reloader::Reloader;
use super::tracker::Tracker;

/// Quiet period after the last event before files are read: long enough for a
/// writer to finish a burst, short enough to keep revocation well under 2 s.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(150);

/// A directory that never goes quiet still gets checked after this many quiet
/// periods, so a busy neighbour file cannot postpone a reload forever.
const MAX_SETTLE_PERIODS: u32 = 10;

const TRIGGER_WATCH: &str = "watch";
const TRIGGER_POLL: &str = "poll";

/// How [`Reloader::spawn_watcher`] notices that files changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchMode {
    /// Filesystem events on the files' directories; files are read once no
    /// event has arrived for `debounce`.
    Notify { debounce: Duration },
    /// Re-inspect the files every `interval` (must be non-zero), then wait for
    /// them to hold still before reading them.
    Poll { interval: Duration },
}

impl Default for WatchMode {
    fn default() -> Self {
        Self::Notify {
            debounce: DEFAULT_DEBOUNCE,
        }
    }
}

/// Keeps a watcher running. Dropping it stops the watcher; so does
/// [`WatchHandle::shutdown`], which also waits for the task to end.
#[derive(Debug)]
pub struct WatchHandle {
    task: JoinHandle<()>,
}

impl WatchHandle {
    pub async fn shutdown(mut self) {
        self.task.abort();
        // The task can only end by being aborted, so its result says nothing.
        let _ = (&mut self.task).await;
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T: Send + Sync + 'static> Reloader<T> {
    /// Watches `paths` and reloads when any of them changes. The files as they
    /// are now are taken to match the snapshot in force, so call this right
    /// after the initial load. Must be called inside a tokio runtime.
    pub fn spawn_watcher(
        self: Arc<Self>,
        paths: Vec<PathBuf>,
        mode: WatchMode,
    ) -> Result<WatchHandle, ReloadError> {
        let runtime = Handle::try_current().map_err(|_| ReloadError::NoRuntime)?;
        let paths = absolute(paths)?;
        let task = match mode {
            WatchMode::Notify { debounce } => spawn_notify(&runtime, self, paths, debounce)?,
            WatchMode::Poll { interval } => spawn_poll(&runtime, self, paths, interval)?,
        };
        Ok(WatchHandle { task })
    }
}

/// Relative paths are fixed against the current directory once, at start.
fn absolute(paths: Vec<PathBuf>) -> Result<Arc<[PathBuf]>, ReloadError> {
    if paths.is_empty() {
        return Err(ReloadError::NothingToWatch);
    }
    paths
        .into_iter()
        .map(|path| {
            std::path::absolute(&path).map_err(|source| ReloadError::Directory {
                dir: PathBuf::from("."),
                path,
                source,
            })
        })
        .collect()
}

fn spawn_notify<T: Send + Sync + 'static>(
    runtime: &Handle,
    reloader: Arc<Reloader<T>>,
    paths: Arc<[PathBuf]>,
    debounce: Duration,
) -> Result<JoinHandle<()>, ReloadError> {
    let nudge = Arc::new(Notify::new());
    let watcher = notify::recommended_watcher(nudge_on_change(Arc::clone(&nudge)))
        .map_err(|source| ReloadError::Watcher { source })?;
    let mut dirs = WatchedDirs::start(watcher, &paths)?;
    // Inspect the files only once the watches exist, so no change can slip
    // between the two.
    let tracker = Tracker::start(paths, &reloader, TRIGGER_WATCH);
    dirs.follow(tracker.resolved_dirs());
    Ok(runtime.spawn(notify_loop(reloader, tracker, dirs, nudge, debounce)))
}

/// Runs on notify's own thread: it only wakes the async loop, which stores at
/// most one pending wake-up, so a flood of events costs nothing here.
fn nudge_on_change(nudge: Arc<Notify>) -> impl FnMut(notify::Result<Event>) + Send + 'static {
    move |event| match event {
        Ok(event) if is_relevant(&event.kind) => nudge.notify_one(),
        Ok(_) => {}
        Err(err) => {
            warn!(error = %err, "file watcher reported an error; rechecking watched files");
            nudge.notify_one();
        }
    }
}

/// Opens and read-only closes are ignored: our own reads of the files would
/// otherwise wake the loop again after every check.
fn is_relevant(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

async fn notify_loop<T: Send + Sync + 'static>(
    reloader: Arc<Reloader<T>>,
    mut tracker: Tracker,
    mut dirs: WatchedDirs,
    nudge: Arc<Notify>,
    debounce: Duration,
) {
    loop {
        nudge.notified().await;
        settle(&nudge, debounce).await;
        tracker = check_off_thread(&reloader, tracker, TRIGGER_WATCH).await;
        dirs.follow(tracker.resolved_dirs());
    }
}

/// Returns once no event has arrived for `quiet`, or after the settle cap.
async fn settle(nudge: &Notify, quiet: Duration) {
    let deadline = Instant::now() + quiet * MAX_SETTLE_PERIODS;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || timeout(quiet.min(left), nudge.notified()).await.is_err() {
            return;
        }
    }
}

fn spawn_poll<T: Send + Sync + 'static>(
    runtime: &Handle,
    reloader: Arc<Reloader<T>>,
    paths: Arc<[PathBuf]>,
    interval: Duration,
) -> Result<JoinHandle<()>, ReloadError> {
    if interval.is_zero() {
        return Err(ReloadError::ZeroPollInterval);
    }
    let tracker = Tracker::start(paths, &reloader, TRIGGER_POLL);
    Ok(runtime.spawn(poll_loop(reloader, tracker, interval)))
}

async fn poll_loop<T: Send + Sync + 'static>(
    reloader: Arc<Reloader<T>>,
    mut tracker: Tracker,
    interval: Duration,
) {
    let quiet = interval.min(DEFAULT_DEBOUNCE);
    loop {
        sleep(interval).await;
        let Some(first) = probe(tracker.paths()).await else {
            continue;
        };
        if tracker.differs(&first) {
            wait_until_still(tracker.paths(), first, quiet).await;
            tracker = check_off_thread(&reloader, tracker, TRIGGER_POLL).await;
        }
    }
}

/// The polling counterpart of `settle`: re-inspect until two looks agree.
async fn wait_until_still(paths: &Arc<[PathBuf]>, mut last: Fingerprint, quiet: Duration) {
    for _ in 0..MAX_SETTLE_PERIODS {
        sleep(quiet).await;
        match probe(paths).await {
            Some(now) if now != last => last = now,
            _ => return,
        }
    }
}

async fn probe(paths: &Arc<[PathBuf]>) -> Option<Fingerprint> {
    let paths = Arc::clone(paths);
    tokio::task::spawn_blocking(move || Fingerprint::take(&paths))
        .await
        .ok()
}

/// Runs a check on the blocking pool: it reads files and may run a long build.
async fn check_off_thread<T: Send + Sync + 'static>(
    reloader: &Arc<Reloader<T>>,
    mut tracker: Tracker,
    trigger: &'static str,
) -> Tracker {
    let paths = Arc::clone(tracker.paths());
    let reloader = Arc::clone(reloader);
    let checked = tokio::task::spawn_blocking(move || {
        tracker.check(&reloader, trigger);
        tracker
    });
    match checked.await {
        Ok(tracker) => tracker,
        Err(err) => {
            error!(
                reload.trigger = trigger,
                error = %err,
                "file check did not complete; the next change rebuilds"
            );
            Tracker::unseen(paths)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, ModifyKind, RenameMode};

    #[test]
    fn reads_do_not_count_as_changes() {
        assert!(!is_relevant(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_relevant(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
    }

    #[test]
    fn writes_renames_and_creates_count_as_changes() {
        assert!(is_relevant(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_relevant(&EventKind::Modify(ModifyKind::Name(
            RenameMode::Both
        ))));
        assert!(is_relevant(&EventKind::Create(CreateKind::Any)));
        assert!(is_relevant(&EventKind::Other));
    }

    #[test]
    fn spawning_outside_a_runtime_is_an_error() {
        let current = Arc::new(arc_swap::ArcSwap::from_pointee(0_u8));
        let reloader = Arc::new(Reloader::new(current, 1, |_| Ok::<u8, std::io::Error>(0)));
        let err = reloader
            .spawn_watcher(vec![PathBuf::from("keys.json")], WatchMode::default())
            .unwrap_err();
        assert!(matches!(err, ReloadError::NoRuntime));
    }

    #[tokio::test]
    async fn bad_arguments_are_rejected() {
        let current = Arc::new(arc_swap::ArcSwap::from_pointee(0_u8));
        let reloader = Arc::new(Reloader::new(current, 1, |_| Ok::<u8, std::io::Error>(0)));
        let err = Arc::clone(&reloader).spawn_watcher(Vec::new(), WatchMode::default());
        assert!(matches!(err, Err(ReloadError::NothingToWatch)));
        let zero = WatchMode::Poll {
            interval: Duration::ZERO,
        };
        let err = Arc::clone(&reloader).spawn_watcher(vec![PathBuf::from("k")], zero);
        assert!(matches!(err, Err(ReloadError::ZeroPollInterval)));
        let gone = PathBuf::from("/nonexistent-agents-authz-dir/keys.json");
        let err = reloader.spawn_watcher(vec![gone], WatchMode::default());
        assert!(matches!(err, Err(ReloadError::Directory { .. })));
    }
}
