//! The set of directories handed to `notify`. Watching directories rather than
//! files is what makes renames over a file and Kubernetes `..data` swaps
//! visible: a watch on the file itself would stay on the old inode.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tracing::debug;

use super::error::ReloadError;

pub(crate) struct WatchedDirs {
    watcher: RecommendedWatcher,
    /// Parents of the configured paths: watched for the watcher's lifetime.
    fixed: BTreeSet<PathBuf>,
    /// Directories the configured paths currently resolve into, when that is
    /// elsewhere (a symlink to a file edited in place in another directory).
    followed: BTreeSet<PathBuf>,
}

impl WatchedDirs {
    pub(crate) fn start(
        mut watcher: RecommendedWatcher,
        paths: &[PathBuf],
    ) -> Result<Self, ReloadError> {
        let fixed = parent_dirs(paths)?;
        for dir in &fixed {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|source| ReloadError::Watch {
                    dir: dir.clone(),
                    source,
                })?;
        }
        Ok(Self {
            watcher,
            fixed,
            followed: BTreeSet::new(),
        })
    }

    /// Watches the directories `targets` names, and drops those no longer named.
    /// Failures are expected (a Kubernetes timestamped directory is deleted right
    /// after a swap) and only logged.
    pub(crate) fn follow(&mut self, targets: Vec<PathBuf>) {
        let wanted: BTreeSet<PathBuf> = targets
            .into_iter()
            .filter(|dir| !self.fixed.contains(dir))
            .collect();
        for stale in self.followed.difference(&wanted) {
            if let Err(err) = self.watcher.unwatch(stale) {
                debug!(reload.dir = %stale.display(), error = %err, "unwatch failed");
            }
        }
        for fresh in wanted.difference(&self.followed) {
            if let Err(err) = self.watcher.watch(fresh, RecursiveMode::NonRecursive) {
                debug!(reload.dir = %fresh.display(), error = %err, "watch failed");
            }
        }
        self.followed = wanted;
    }
}

/// Canonical parent directory of each path, so one directory reached by two
/// spellings is watched once and unwatching one spelling cannot drop the other.
fn parent_dirs(paths: &[PathBuf]) -> Result<BTreeSet<PathBuf>, ReloadError> {
    paths
        .iter()
        .map(|path| {
            let dir = path.parent().unwrap_or(Path::new("/"));
            fs::canonicalize(dir).map_err(|source| ReloadError::Directory {
                path: path.clone(),
                dir: dir.to_path_buf(),
                source,
            })
        })
        .collect()
}
