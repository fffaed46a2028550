//! A cheap look at the files a build reads, taken before and after the build to
//! tell whether they held still. Unlike [`super::fingerprint`] it reads no
//! content: where each path resolves, the file's identity, size and mtime.
//!
//! That catches every kubelet `..data` swap (each generation lives in a new
//! directory) and every rename over a file (a new inode); an in-place rewrite is
//! caught when it changes the size or the mtime.

use std::fs;
use std::path::PathBuf;
use std::time::SystemTime;

#[derive(Clone, Debug, PartialEq, Eq)]
enum InputState {
    Present {
        canonical: PathBuf,
        /// Device and inode: a file renamed over the path is a different file.
        identity: (u64, u64),
        len: u64,
        modified: Option<SystemTime>,
    },
    /// Missing or unusable; the build reports why.
    Absent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct InputStamp(Vec<InputState>);

impl InputStamp {
    pub(crate) fn take(paths: &[PathBuf]) -> Self {
        Self(paths.iter().map(|path| inspect(path)).collect())
    }
}

fn inspect(path: &std::path::Path) -> InputState {
    let Ok(canonical) = fs::canonicalize(path) else {
        return InputState::Absent;
    };
    let Ok(meta) = fs::metadata(&canonical) else {
        return InputState::Absent;
    };
    InputState::Present {
        canonical,
        identity: identity(&meta),
        len: meta.len(),
        modified: meta.modified().ok(),
    }
}

#[cfg(unix)]
fn identity(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn identity(_: &fs::Metadata) -> (u64, u64) {
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[cfg(unix)]
    #[test]
    fn a_data_swap_and_a_rename_are_changes_and_reading_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for generation in ["..gen1", "..gen2"] {
            fs::create_dir(root.join(generation)).unwrap();
            fs::write(root.join(generation).join("keys.json"), "{}").unwrap();
        }
        symlink("..gen1", root.join("..data")).unwrap();
        symlink("..data/keys.json", root.join("keys.json")).unwrap();
        fs::write(root.join("agents.env"), "A=1\n").unwrap();
        let paths = vec![root.join("keys.json"), root.join("agents.env")];

        let before = InputStamp::take(&paths);
        fs::read(&paths[0]).unwrap();
        assert_eq!(before, InputStamp::take(&paths), "reading changes nothing");

        symlink("..gen2", root.join("..data_tmp")).unwrap();
        fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        let swapped = InputStamp::take(&paths);
        assert_ne!(before, swapped, "same content, new generation");

        fs::write(root.join("agents.env.tmp"), "A=2\n").unwrap();
        fs::rename(root.join("agents.env.tmp"), &paths[1]).unwrap();
        assert_ne!(swapped, InputStamp::take(&paths), "same size, new file");
    }

    #[test]
    fn missing_files_compare_equal_until_they_appear() {
        let dir = tempfile::tempdir().unwrap();
        let paths = vec![dir.path().join("keys.json")];
        let before = InputStamp::take(&paths);
        assert_eq!(before, InputStamp::take(&paths));
        fs::write(&paths[0], "{}").unwrap();
        assert_ne!(before, InputStamp::take(&paths));
    }
}
