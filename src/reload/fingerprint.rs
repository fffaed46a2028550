//! Change detection for watched files. A file's state is where its path
//! currently resolves to plus its size, mtime and content digest, so a symlink
//! swap, a rename over the file and an in-place rewrite all count as changes,
//! while activity on unrelated files in the same directory does not.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// What one watched path looked like when it was inspected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FileState {
    Present {
        /// Where the path resolved to: changes on a Kubernetes `..data` swap.
        canonical: PathBuf,
        len: u64,
        modified: Option<SystemTime>,
        digest: [u8; 32],
    },
    Missing,
    /// Exists but could not be read; the build will report the precise reason.
    Unreadable {
        reason: String,
    },
}

/// The states of all watched paths, in the order the paths were given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint(Vec<FileState>);

impl Fingerprint {
    /// Inspects every path. Blocking: reads each file in full.
    pub(crate) fn take(paths: &[PathBuf]) -> Self {
        Self(paths.iter().map(|path| inspect(path)).collect())
    }

    pub(crate) fn states(&self) -> &[FileState] {
        &self.0
    }

    /// The paths (from `paths`, same order as `take`) that are missing.
    pub(crate) fn missing(&self, paths: &[PathBuf]) -> Vec<PathBuf> {
        paths
            .iter()
            .zip(&self.0)
            .filter(|(_, state)| matches!(state, FileState::Missing))
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// Directories the watched paths currently resolve into.
    pub(crate) fn resolved_dirs(&self) -> BTreeSet<PathBuf> {
        self.0
            .iter()
            .filter_map(|state| match state {
                FileState::Present { canonical, .. } => canonical.parent().map(Path::to_path_buf),
                _ => None,
            })
            .collect()
    }
}

/// Reads through `path` as the builder will (following symlinks at read time),
/// then notes where it resolves. A swap between the two steps only makes the
/// next comparison differ, which costs an extra check, never a missed change.
fn inspect(path: &Path) -> FileState {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => return failed(err),
    };
    let canonical = match fs::canonicalize(path) {
        Ok(canonical) => canonical,
        Err(err) => return failed(err),
    };
    let modified = fs::metadata(path).and_then(|m| m.modified()).ok();
    FileState::Present {
        canonical,
        len: bytes.len() as u64,
        modified,
        digest: Sha256::digest(&bytes).into(),
    }
}

fn failed(err: io::Error) -> FileState {
    if err.kind() == io::ErrorKind::NotFound {
        FileState::Missing
    } else {
        FileState::Unreadable {
            reason: err.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn take(path: &Path) -> Fingerprint {
        Fingerprint::take(&[path.to_path_buf()])
    }

    #[test]
    fn unchanged_file_gives_equal_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.json");
        fs::write(&file, "{}").unwrap();
        assert_eq!(take(&file), take(&file));
    }

    #[test]
    fn unrelated_file_in_the_directory_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.json");
        fs::write(&file, "{}").unwrap();
        let before = take(&file);
        fs::write(dir.path().join("notes.txt"), "hello").unwrap();
        assert_eq!(before, take(&file));
    }

    #[test]
    fn rewrite_with_new_content_is_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.json");
        fs::write(&file, r#"{"keys":["a"]}"#).unwrap();
        let before = take(&file);
        fs::write(&file, r#"{"keys":["b"]}"#).unwrap();
        assert_ne!(before, take(&file), "same length, different bytes");
    }

    #[test]
    fn symlink_retarget_is_a_change_even_with_equal_content() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a", "b"] {
            fs::create_dir(dir.path().join(name)).unwrap();
            fs::write(dir.path().join(name).join("keys.json"), "{}").unwrap();
        }
        let link = dir.path().join("keys.json");
        symlink("a/keys.json", &link).unwrap();
        let before = take(&link);
        fs::remove_file(&link).unwrap();
        symlink("b/keys.json", &link).unwrap();
        let after = take(&link);
        assert_ne!(before, after);
        assert_eq!(
            after.resolved_dirs().into_iter().collect::<Vec<_>>(),
            [fs::canonicalize(dir.path().join("b")).unwrap()]
        );
    }

    #[test]
    fn missing_and_dangling_paths_are_reported_missing() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent.json");
        let dangling = dir.path().join("dangling.json");
        symlink("..data/keys.json", &dangling).unwrap();
        let paths = vec![absent.clone(), dangling.clone()];
        let fingerprint = Fingerprint::take(&paths);
        assert_eq!(fingerprint.missing(&paths), paths);
        assert!(fingerprint.resolved_dirs().is_empty());
    }

    #[test]
    fn unreadable_path_is_not_missing() {
        let dir = tempfile::tempdir().unwrap();
        let paths = vec![dir.path().to_path_buf()];
        let fingerprint = Fingerprint::take(&paths);
        assert!(fingerprint.missing(&paths).is_empty());
        assert!(matches!(
            fingerprint.states()[0],
            FileState::Unreadable { .. }
        ));
    }
}
