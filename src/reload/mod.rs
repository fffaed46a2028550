//! Hot reload: rebuild a value (the service's snapshot) when its source files
//! change, on `SIGHUP`, or on demand, and swap it in atomically with
//! `arc-swap`. A failed build or a missing file keeps the last good value and is
//! reported through [`ReloadStatus`] and the logs.
//!
//! Generic over the value type so it depends on nothing in the core: the
//! caller supplies the build function.

mod dirs;
mod error;
mod fingerprint;
mod reloader;
#[cfg(unix)]
mod signal;
mod status;
mod tracker;
mod watch;

pub use error::ReloadError;
pub use reloader::Reloader;
#[cfg(unix)]
pub use signal::spawn_sighup;
pub use status::{ReloadOutcome, ReloadResult, ReloadStatus};
pub use watch::{DEFAULT_DEBOUNCE, WatchHandle, WatchMode};
