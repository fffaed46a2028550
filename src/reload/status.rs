//! What operators can see about reloads: which snapshot version is in force and
//! how the most recent attempt went. Pure data; the transitions are unit-tested.

use std::path::PathBuf;
use std::time::SystemTime;

/// Result of the most recent reload attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadResult {
    /// No reload has been attempted since start; the initial snapshot is in force.
    NotYet,
    /// The last attempt built and swapped in a new snapshot.
    Ok,
    /// The last attempt failed; the previous snapshot is still in force.
    Failed,
}

impl ReloadResult {
    /// Stable lower-case label for metrics and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotYet => "not_yet",
            Self::Ok => "ok",
            Self::Failed => "failed",
        }
    }
}

/// Reload state exposed to metrics, readiness and the admin API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Version of the snapshot in force. Only a successful reload raises it, by one.
    pub version: u64,
    /// When the most recent attempt (successful or not) finished.
    pub last_reload_at: Option<SystemTime>,
    pub last_result: ReloadResult,
    /// Why the most recent attempt failed; cleared by the next success.
    pub last_error: Option<String>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Watched files found missing at the last check; empty when all exist.
    pub missing_files: Vec<PathBuf>,
}

impl ReloadStatus {
    /// Status for a freshly started service whose first snapshot has `version`.
    pub fn initial(version: u64) -> Self {
        Self {
            version,
            last_reload_at: None,
            last_result: ReloadResult::NotYet,
            last_error: None,
            reloads_ok: 0,
            reloads_failed: 0,
            missing_files: Vec::new(),
        }
    }

    /// The version the next successful build will carry.
    pub fn next_version(&self) -> u64 {
        self.version.saturating_add(1)
    }

    pub(crate) fn succeeded(&self, version: u64, at: SystemTime) -> Self {
        debug_assert!(
            version > self.version,
            "snapshot versions only move forward"
        );
        Self {
            version,
            last_reload_at: Some(at),
            last_result: ReloadResult::Ok,
            last_error: None,
            reloads_ok: self.reloads_ok.saturating_add(1),
            ..self.clone()
        }
    }

    pub(crate) fn failed(&self, error: String, at: SystemTime) -> Self {
        Self {
            last_reload_at: Some(at),
            last_result: ReloadResult::Failed,
            last_error: Some(error),
            reloads_failed: self.reloads_failed.saturating_add(1),
            ..self.clone()
        }
    }

    pub(crate) fn with_missing(&self, missing_files: Vec<PathBuf>) -> Self {
        Self {
            missing_files,
            ..self.clone()
        }
    }
}

/// What one reload attempt did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new snapshot with this version is now in force.
    Reloaded { version: u64 },
    /// Nothing was swapped; `kept_version` is still in force.
    Failed { kept_version: u64, error: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn initial_status_has_not_reloaded() {
        let status = ReloadStatus::initial(1);
        assert_eq!(status.version, 1);
        assert_eq!(status.next_version(), 2);
        assert_eq!(status.last_result, ReloadResult::NotYet);
        assert_eq!(status.last_reload_at, None);
        assert_eq!((status.reloads_ok, status.reloads_failed), (0, 0));
    }

    #[test]
    fn success_moves_the_version_and_counts() {
        let status = ReloadStatus::initial(1).succeeded(2, at(10));
        assert_eq!(status.version, 2);
        assert_eq!(status.next_version(), 3);
        assert_eq!(status.last_result, ReloadResult::Ok);
        assert_eq!(status.last_reload_at, Some(at(10)));
        assert_eq!(status.reloads_ok, 1);
    }

    #[test]
    fn failure_keeps_the_version_and_records_the_reason() {
        let status = ReloadStatus::initial(4).failed("keys.json: bad JSON".into(), at(20));
        assert_eq!(status.version, 4);
        assert_eq!(
            status.next_version(),
            5,
            "a failed attempt does not burn a version"
        );
        assert_eq!(status.last_result, ReloadResult::Failed);
        assert_eq!(status.last_error.as_deref(), Some("keys.json: bad JSON"));
        assert_eq!(status.reloads_failed, 1);
    }

    #[test]
    fn success_after_failure_clears_the_error_but_keeps_counts() {
        let status = ReloadStatus::initial(1)
            .failed("broken".into(), at(1))
            .succeeded(2, at(2))
            .failed("broken again".into(), at(3))
            .succeeded(3, at(4));
        assert_eq!(status.version, 3);
        assert_eq!(status.last_error, None);
        assert_eq!(status.last_reload_at, Some(at(4)));
        assert_eq!((status.reloads_ok, status.reloads_failed), (2, 2));
    }

    #[test]
    fn missing_files_survive_other_transitions() {
        let gone = vec![PathBuf::from("/etc/authz/keys.json")];
        let status = ReloadStatus::initial(1)
            .with_missing(gone.clone())
            .failed("missing".into(), at(1));
        assert_eq!(status.missing_files, gone);
        assert!(status.with_missing(Vec::new()).missing_files.is_empty());
    }

    #[test]
    fn version_does_not_wrap() {
        assert_eq!(ReloadStatus::initial(u64::MAX).next_version(), u64::MAX);
    }

    #[test]
    fn result_labels_are_stable() {
        let labels =
            [ReloadResult::NotYet, ReloadResult::Ok, ReloadResult::Failed].map(|r| r.as_str());
        assert_eq!(labels, ["not_yet", "ok", "failed"]);
    }
}
