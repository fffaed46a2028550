//! The managed-keys file on disk. An edit takes an advisory lock on a `.lock` file beside
//! it (so two commands cannot interleave their read-modify-write), reads and parses the
//! file (refusing one it cannot parse, which it then leaves untouched), applies the edit,
//! and replaces the file atomically: a temporary file in the same directory, fsync,
//! rename over the original, fsync of the directory. A running service sees one rename,
//! never a half-written file.

use super::document::{KeyDocument, ParseError};
use super::edit::EditError;
use crate::core::warning::ConfigWarning;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long an edit waits for another `keys` command to finish before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);
/// Mode of a file `keys create` makes: the service may run as another user in the group.
const NEW_FILE_MODE: u32 = 0o640;

/// Why a `keys` command could not do its work. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("managed-keys file {path}: cannot be read: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("managed-keys file {path}: {source}; the file was left untouched")]
    Parse { path: PathBuf, source: ParseError },
    #[error("managed-keys file {path}: {source}; the file was left untouched")]
    Edit { path: PathBuf, source: EditError },
    #[error("managed-keys file {path}: cannot take the lock {lock}: {source}")]
    Lock {
        path: PathBuf,
        lock: PathBuf,
        source: io::Error,
    },
    #[error(
        "managed-keys file {path}: another command still holds {lock} after {}s; \
         nothing was changed",
        LOCK_WAIT.as_secs()
    )]
    LockBusy { path: PathBuf, lock: PathBuf },
    #[error("managed-keys file {path}: cannot be replaced: {source}; the file was left untouched")]
    Write { path: PathBuf, source: io::Error },
    #[error("the OS's cryptographic random source failed ({0}); no token was made")]
    Random(getrandom::Error),
}

/// A managed-keys file, by the path of the real file (symbolic links followed, so an
/// edit replaces the file the link points to and keeps the link).
#[derive(Debug, Clone)]
pub struct KeyFile {
    path: PathBuf,
}

/// What an edit did.
#[derive(Debug)]
pub struct Edited<T> {
    pub value: T,
    /// False when the edit left the document as it was (nothing was written).
    pub written: bool,
    /// Problems with other entries, which the edit kept as they were.
    pub warnings: Vec<ConfigWarning>,
}

impl KeyFile {
    pub fn new(path: &Path) -> Self {
        let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file without a lock: writers replace it in one rename, so a reader sees
    /// either the old file or the new one.
    pub fn read(&self) -> Result<(KeyDocument, Vec<ConfigWarning>), KeysError> {
        let text = fs::read_to_string(&self.path).map_err(|source| KeysError::Read {
            path: self.path.clone(),
            source,
        })?;
        self.parse(&text)
    }

    fn parse(&self, text: &str) -> Result<(KeyDocument, Vec<ConfigWarning>), KeysError> {
        KeyDocument::parse(text).map_err(|source| KeysError::Parse {
            path: self.path.clone(),
            source,
        })
    }

    /// Runs `edit` on the file under the lock and writes the result if it changed.
    /// With `create`, a missing file is an empty document (and is written if the edit
    /// adds something); without it, a missing file is an error.
    pub fn edit<T>(
        &self,
        create: bool,
        edit: impl FnOnce(&mut KeyDocument) -> Result<T, EditError>,
    ) -> Result<Edited<T>, KeysError> {
        let _lock = self.lock()?;
        let (before, warnings, mode) = match fs::read_to_string(&self.path) {
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                (KeyDocument::empty(), Vec::new(), NEW_FILE_MODE)
            }
            Err(source) => {
                return Err(KeysError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
            Ok(text) => {
                let (doc, warnings) = self.parse(&text)?;
                (doc, warnings, self.mode()?)
            }
        };
        let mut doc = before.clone();
        let value = edit(&mut doc).map_err(|source| KeysError::Edit {
            path: self.path.clone(),
            source,
        })?;
        let written = doc != before;
        if written {
            self.replace(&doc.to_text(), mode)
                .map_err(|source| KeysError::Write {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(Edited {
            value,
            written,
            warnings,
        })
    }

    fn lock_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".lock");
        self.path.with_file_name(name)
    }

    /// An exclusive advisory lock on the `.lock` file beside the data file. The data file
    /// itself cannot carry the lock: each edit replaces it with a new inode. The lock file
    /// is never removed, since removing it would let two commands lock different inodes.
    fn lock(&self) -> Result<File, KeysError> {
        let lock = self.lock_path();
        let fail = |source| KeysError::Lock {
            path: self.path.clone(),
            lock: lock.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(NEW_FILE_MODE)
            .open(&lock)
            .map_err(fail)?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(TryLockError::Error(e)) => return Err(fail(e)),
                Err(TryLockError::WouldBlock) if Instant::now() >= deadline => {
                    return Err(KeysError::LockBusy {
                        path: self.path.clone(),
                        lock,
                    });
                }
                Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    fn mode(&self) -> Result<u32, KeysError> {
        let meta = fs::metadata(&self.path).map_err(|source| KeysError::Read {
            path: self.path.clone(),
            source,
        })?;
        Ok(meta.permissions().mode() & 0o7777)
    }

    /// Writes `text` to a new file in the same directory (so the rename cannot cross
    /// filesystems), makes it durable, then renames it over the original.
    fn replace(&self, text: &str, mode: u32) -> io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut name = std::ffi::OsString::from(".");
        name.push(self.path.file_name().unwrap_or_default());
        name.push(format!(".{}.tmp", std::process::id()));
        let tmp = dir.join(name);
        // Under the lock, a file by this name can only be left over from a crashed run.
        let _ = fs::remove_file(&tmp);
        let result = write_durably(&tmp, text, mode).and_then(|()| fs::rename(&tmp, &self.path));
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
            return result;
        }
        // The rename is only durable once the directory entry is.
        File::open(dir)?.sync_all()
    }
}

fn write_durably(path: &Path, text: &str, mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // The umask may have narrowed `mode`; the file keeps the original's permissions.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(text: &str) -> (tempfile::TempDir, KeyFile) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        fs::write(&path, text).unwrap();
        let file = KeyFile::new(&path);
        (dir, file)
    }

    #[test]
    fn an_unparseable_file_is_left_byte_for_byte() {
        let (_dir, file) = file_with("{\"credentials\": [ oops");
        let err = file.edit(true, |_| Ok(())).unwrap_err().to_string();
        assert!(err.contains("keys.json") && err.contains("line 1"), "{err}");
        assert_eq!(
            fs::read_to_string(file.path()).unwrap(),
            "{\"credentials\": [ oops"
        );
    }

    #[test]
    fn a_refused_or_empty_edit_writes_nothing() {
        let (_dir, file) = file_with("[]");
        let err = file
            .edit(false, |_| Err::<(), _>(EditError::NoScopes))
            .unwrap_err();
        assert!(matches!(err, KeysError::Edit { .. }));
        let same = file.edit(false, |_| Ok(())).unwrap();
        assert!(!same.written);
        assert_eq!(fs::read_to_string(file.path()).unwrap(), "[]");
    }

    #[test]
    fn edits_replace_the_file_keep_its_mode_and_leave_no_temporary_file() {
        let (dir, file) = file_with("[]");
        fs::set_permissions(file.path(), fs::Permissions::from_mode(0o604)).unwrap();
        let done = file
            .edit(false, |doc| {
                doc.entries_mut().push(serde_json::json!({"id": "a"}));
                Ok(())
            })
            .unwrap();
        assert!(done.written);
        assert_eq!(
            fs::read_to_string(file.path()).unwrap(),
            "[\n  {\n    \"id\": \"a\"\n  }\n]\n"
        );
        let mode = fs::metadata(file.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o604);
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["keys.json", "keys.json.lock"]);
    }

    #[test]
    fn a_missing_file_is_created_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let file = KeyFile::new(&dir.path().join("new.json"));
        assert!(matches!(
            file.edit(false, |_| Ok(())),
            Err(KeysError::Read { .. })
        ));
        file.edit(true, |doc| {
            doc.entries_mut().push(serde_json::json!({"id": "a"}));
            Ok(())
        })
        .unwrap();
        let (doc, _) = file.read().unwrap();
        assert_eq!(doc.position("a"), Some(0));
    }

    #[test]
    fn a_held_lock_makes_the_next_edit_wait() {
        let (_dir, file) = file_with("[]");
        let held = file.lock().unwrap();
        let other = file.clone();
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            other.edit(false, |_| Ok(())).unwrap();
            started.elapsed()
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(held);
        assert!(waiter.join().unwrap() >= Duration::from_millis(150));
    }
}
