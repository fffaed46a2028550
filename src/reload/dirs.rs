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
    /// Directories the configured paths currently resolve into when those lie
    /// outside every fixed directory (a symlink to a file edited in place
    /// elsewhere).
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

    /// Watches the directories in `targets` that need their own watch, and
    /// drops those no longer named. Failures are only logged: a followed
    /// directory may vanish at any time.
    pub(crate) fn follow(&mut self, targets: Vec<PathBuf>) {
        let wanted: BTreeSet<PathBuf> = targets
            .into_iter()
            .filter(|dir| needs_own_watch(dir, &self.fixed))
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

/// Targets under a fixed directory are left alone. That covers the Kubernetes
/// layout, whose `..<timestamp>` directories are never edited in place (every
/// update swaps `..data` in the fixed directory) and are deleted after each
/// swap; watching them would only add churn and notify warnings.
fn needs_own_watch(dir: &Path, fixed: &BTreeSet<PathBuf>) -> bool {
    !fixed.iter().any(|root| dir.starts_with(root))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_outside_the_fixed_ones_get_their_own_watch() {
        let fixed = BTreeSet::from([PathBuf::from("/etc/authz")]);
        assert!(!needs_own_watch(Path::new("/etc/authz"), &fixed));
        let kubelet = Path::new("/etc/authz/..2026_12_03_10_00_00.000000");
        assert!(!needs_own_watch(kubelet, &fixed));
        assert!(needs_own_watch(Path::new("/srv/keys"), &fixed));
        assert!(needs_own_watch(Path::new("/etc/authz-other"), &fixed));
    }
}
