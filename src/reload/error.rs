//! Errors raised while setting up reload triggers. Failed reloads themselves are
//! not errors here: they are recorded in [`super::ReloadStatus`] and logged.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("reload triggers need a running tokio runtime; start them from inside one")]
    NoRuntime,

    #[error("no files were given to watch for reloads")]
    NothingToWatch,

    #[error("the reload poll interval must be greater than zero")]
    ZeroPollInterval,

    #[error("cannot watch {path}: its directory {dir} is not usable: {source}")]
    Directory {
        path: PathBuf,
        dir: PathBuf,
        source: io::Error,
    },

    #[error("cannot start the file watcher: {source}")]
    Watcher { source: notify::Error },

    #[error("cannot watch directory {dir}: {source}")]
    Watch { dir: PathBuf, source: notify::Error },

    #[error("cannot install the SIGHUP handler: {source}")]
    Signal { source: io::Error },
}
