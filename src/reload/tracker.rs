//! One check of the watched files: decide from their fingerprints whether a
//! rebuild is due, run it, and remember what the files looked like. Blocking;
//! the watch loops run it on the blocking pool.

use std::path::PathBuf;
use std::sync::Arc;

use tracing::info;

use super::fingerprint::{FileState, Fingerprint};
use super::reloader::Reloader;
use super::status::ReloadOutcome;

/// What a check did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// The watched files look as they did after the last check.
    Unchanged,
    /// Some watched files are gone; nothing was built.
    Missing(Vec<PathBuf>),
    /// The files changed and a rebuild was attempted.
    Attempted(ReloadOutcome),
}

pub(crate) struct Tracker {
    paths: Arc<[PathBuf]>,
    /// The files as the current snapshot was built from them; `None` forces the
    /// next check to rebuild.
    seen: Option<Fingerprint>,
}

impl Tracker {
    /// Starts from the files as they are now, taken to match the snapshot in
    /// force. Missing files are reported at once.
    pub(crate) fn start<T: Send + Sync + 'static>(
        paths: Arc<[PathBuf]>,
        reloader: &Reloader<T>,
        trigger: &str,
    ) -> Self {
        let now = Fingerprint::take(&paths);
        let missing = now.missing(&paths);
        if !missing.is_empty() {
            reloader.record_missing(trigger, &missing);
        }
        Self {
            paths,
            seen: Some(now),
        }
    }

    /// A tracker that has seen nothing, so its first check rebuilds. Used when a
    /// check was lost and what the files looked like is unknown.
    pub(crate) fn unseen(paths: Arc<[PathBuf]>) -> Self {
        Self { paths, seen: None }
    }

    pub(crate) fn paths(&self) -> &Arc<[PathBuf]> {
        &self.paths
    }

    /// Whether `probe` differs from the files as last seen.
    pub(crate) fn differs(&self, probe: &Fingerprint) -> bool {
        self.seen.as_ref() != Some(probe)
    }

    /// Directories the files resolve into right now (symlink targets).
    pub(crate) fn resolved_dirs(&self) -> Vec<PathBuf> {
        self.seen
            .as_ref()
            .map(|seen| seen.resolved_dirs().into_iter().collect())
            .unwrap_or_default()
    }

    pub(crate) fn check<T: Send + Sync + 'static>(
        &mut self,
        reloader: &Reloader<T>,
        trigger: &str,
    ) -> Check {
        let before = Fingerprint::take(&self.paths);
        if !self.differs(&before) {
            return Check::Unchanged;
        }
        self.log_changes(&before);
        let missing = before.missing(&self.paths);
        if !missing.is_empty() {
            reloader.record_missing(trigger, &missing);
            self.seen = Some(before);
            return Check::Missing(missing);
        }
        reloader.clear_missing();
        let outcome = reloader.reload_now(trigger);
        // If the files moved while the builder read them, it may have seen a mix
        // or a half-written file: forget them so the next event rebuilds.
        let after = Fingerprint::take(&self.paths);
        self.seen = (after == before).then_some(before);
        Check::Attempted(outcome)
    }

    fn log_changes(&self, now: &Fingerprint) {
        let old = self.seen.as_ref().map(Fingerprint::states);
        for (index, (path, state)) in self.paths.iter().zip(now.states()).enumerate() {
            let previous = old.map(|states| &states[index]);
            if previous == Some(state) {
                continue;
            }
            info!(
                reload.path = %path.display(),
                reload.change = change_label(previous, state),
                "watched file changed"
            );
        }
    }
}

fn change_label(previous: Option<&FileState>, now: &FileState) -> &'static str {
    match (previous, now) {
        (_, FileState::Missing) => "removed",
        (_, FileState::Unreadable { .. }) => "unreadable",
        (Some(FileState::Missing), FileState::Present { .. }) => "appeared",
        (
            Some(FileState::Present { canonical: old, .. }),
            FileState::Present { canonical: new, .. },
        ) if old != new => "retargeted",
        _ => "modified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arc_swap::ArcSwap;
    use std::fs;
    use std::path::Path;

    #[derive(Debug, thiserror::Error)]
    #[error("reading {path}: {source}")]
    struct ReadError {
        path: PathBuf,
        source: std::io::Error,
    }

    /// A reloader whose value is the file's text, rejected when it is "bad".
    fn reloader_for(file: &Path) -> Arc<Reloader<String>> {
        let initial = fs::read_to_string(file).unwrap();
        let current = Arc::new(ArcSwap::from_pointee(initial));
        let file = file.to_path_buf();
        Arc::new(Reloader::new(current, 1, move |_version| {
            let text = fs::read_to_string(&file).map_err(|source| ReadError {
                path: file.clone(),
                source,
            })?;
            if text == "bad" {
                let source = std::io::Error::other("rejected content");
                return Err(ReadError {
                    path: file.clone(),
                    source,
                });
            }
            Ok(text)
        }))
    }

    fn setup() -> (tempfile::TempDir, PathBuf, Arc<Reloader<String>>, Tracker) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.json");
        fs::write(&file, "one").unwrap();
        let reloader = reloader_for(&file);
        let tracker = Tracker::start(Arc::from(vec![file.clone()]), &reloader, "test");
        (dir, file, reloader, tracker)
    }

    #[test]
    fn nothing_changed_means_no_rebuild() {
        let (_dir, _file, reloader, mut tracker) = setup();
        assert_eq!(tracker.check(&reloader, "test"), Check::Unchanged);
        assert_eq!(reloader.status().reloads_ok, 0);
    }

    #[test]
    fn a_change_rebuilds_with_the_next_version() {
        let (_dir, file, reloader, mut tracker) = setup();
        fs::write(&file, "two").unwrap();
        let check = tracker.check(&reloader, "test");
        assert_eq!(
            check,
            Check::Attempted(ReloadOutcome::Reloaded { version: 2 })
        );
        assert_eq!(**reloader.current().load(), "two");
        assert_eq!(tracker.check(&reloader, "test"), Check::Unchanged);
    }

    #[test]
    fn bad_content_keeps_the_value_and_the_fix_is_picked_up() {
        let (_dir, file, reloader, mut tracker) = setup();
        fs::write(&file, "bad").unwrap();
        let check = tracker.check(&reloader, "test");
        assert!(matches!(
            check,
            Check::Attempted(ReloadOutcome::Failed {
                kept_version: 1,
                ..
            })
        ));
        assert_eq!(**reloader.current().load(), "one");
        assert!(
            reloader
                .status()
                .last_error
                .unwrap()
                .contains("rejected content")
        );

        fs::write(&file, "three").unwrap();
        let check = tracker.check(&reloader, "test");
        assert_eq!(
            check,
            Check::Attempted(ReloadOutcome::Reloaded { version: 2 })
        );
    }

    #[test]
    fn missing_file_is_reported_once_then_reappearance_reloads() {
        let (_dir, file, reloader, mut tracker) = setup();
        fs::remove_file(&file).unwrap();
        assert_eq!(
            tracker.check(&reloader, "test"),
            Check::Missing(vec![file.clone()])
        );
        assert_eq!(tracker.check(&reloader, "test"), Check::Unchanged);
        let status = reloader.status();
        assert_eq!(status.missing_files, vec![file.clone()]);
        assert_eq!(status.reloads_failed, 1);
        assert_eq!(**reloader.current().load(), "one");

        fs::write(&file, "back").unwrap();
        let check = tracker.check(&reloader, "test");
        assert_eq!(
            check,
            Check::Attempted(ReloadOutcome::Reloaded { version: 2 })
        );
        assert!(reloader.status().missing_files.is_empty());
    }

    #[test]
    fn an_unseen_tracker_rebuilds_on_its_first_check() {
        let (_dir, file, reloader, _tracker) = setup();
        let mut tracker = Tracker::unseen(Arc::from(vec![file]));
        let check = tracker.check(&reloader, "test");
        assert_eq!(
            check,
            Check::Attempted(ReloadOutcome::Reloaded { version: 2 })
        );
    }
}
