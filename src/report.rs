//! Operator-facing reports built from a snapshot and the reload status: the posture of
//! spec section 5 and readiness. Shared by the admin HTTP endpoints and the admin gRPC API.

use crate::core::credentials::CredentialSource;
use crate::core::posture::EFFECTIVE_POLICY_VERSION;
use crate::core::snapshot::Snapshot;
use crate::core::warning::ConfigWarning;
use crate::reload::{ReloadResult, ReloadStatus};
use serde::Serialize;
use std::time::UNIX_EPOCH;

const SOURCES: [CredentialSource; 3] = [
    CredentialSource::Managed,
    CredentialSource::EnvJson,
    CredentialSource::EnvLegacy,
];

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostureReport<'s> {
    pub environment: &'s str,
    pub environment_profile: &'static str,
    pub environment_profile_source: &'static str,
    pub profile_defaults_applied: bool,
    pub profile_defaults_applied_fields: &'s [&'static str],
    pub effective_policy_version: &'static str,
    pub enabled: bool,
    pub require_token: bool,
    pub require_token_forced_in_prod: bool,
    pub allow_query_token: bool,
    pub fail_on_missing_token: bool,
    pub redact_email: bool,
    pub rate_limit_per_minute: u32,
    pub rate_limit_window_seconds: u32,
    pub flags: Flags,
    pub default_scopes: &'s [String],
    pub credential_counts: CredentialCounts,
    pub credential_ids: CredentialIds<'s>,
    pub warnings: &'s [ConfigWarning],
    pub snapshot_version: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Flags {
    pub addresses_api: bool,
    pub users_api: bool,
    pub writes_experimental: bool,
}

#[derive(Debug, Serialize)]
pub struct CredentialCounts {
    pub managed: usize,
    pub json: usize,
    pub legacy: usize,
    pub total: usize,
}

#[derive(Debug, Serialize)]
pub struct CredentialIds<'s> {
    pub managed: Vec<&'s str>,
    pub json: Vec<&'s str>,
    pub legacy: Vec<&'s str>,
}

pub fn posture(s: &Snapshot) -> PostureReport<'_> {
    let p = &s.posture;
    let [managed, json, legacy] = SOURCES.map(|src| s.credential_count(src));
    let [managed_ids, json_ids, legacy_ids] = SOURCES.map(|src| s.credential_ids(src));
    PostureReport {
        environment: &p.environment,
        environment_profile: p.profile.as_str(),
        environment_profile_source: match p.profile_source {
            crate::core::posture::ProfileSource::Env => "env",
            crate::core::posture::ProfileSource::Inferred => "inferred",
        },
        profile_defaults_applied: p.profile_defaults_applied(),
        profile_defaults_applied_fields: &p.profile_defaults_applied_fields,
        effective_policy_version: EFFECTIVE_POLICY_VERSION,
        enabled: p.enabled,
        require_token: p.require_token,
        require_token_forced_in_prod: p.require_token_forced_in_prod,
        allow_query_token: p.allow_query_token,
        fail_on_missing_token: p.fail_on_missing_token,
        redact_email: p.redact_email,
        rate_limit_per_minute: p.rate_limit_per_minute,
        rate_limit_window_seconds: p.rate_limit_window_seconds,
        flags: Flags {
            addresses_api: p.flags.addresses_api,
            users_api: p.flags.users_api,
            writes_experimental: p.flags.writes_experimental,
        },
        default_scopes: &s.default_scopes,
        credential_counts: CredentialCounts {
            managed,
            json,
            legacy,
            total: s.credentials.len(),
        },
        credential_ids: CredentialIds {
            managed: managed_ids,
            json: json_ids,
            legacy: legacy_ids,
        },
        warnings: &s.warnings,
        snapshot_version: s.version,
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReloadReport {
    pub snapshot_version: u64,
    pub last_reload_result: &'static str,
    /// Seconds since the Unix epoch; absent before the first reload.
    pub last_reload_at_epoch: Option<u64>,
    pub last_error: Option<String>,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    pub missing_files: Vec<String>,
}

/// The reload status, or the initial load's when no reloader runs.
pub fn reload(snapshot_version: u64, status: Option<ReloadStatus>) -> ReloadReport {
    let status = status.unwrap_or_else(|| ReloadStatus::initial(snapshot_version));
    ReloadReport {
        snapshot_version,
        last_reload_result: match status.last_result {
            ReloadResult::NotYet => "initial",
            other => other.as_str(),
        },
        last_reload_at_epoch: status
            .last_reload_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        last_error: status.last_error,
        reloads_ok: status.reloads_ok,
        reloads_failed: status.reloads_failed,
        missing_files: status
            .missing_files
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::build_snapshot;
    use std::collections::BTreeMap;

    #[test]
    fn posture_reports_profile_counts_and_ids_never_tokens() {
        let env: BTreeMap<String, String> = [
            ("ENVIRONMENT", "staging"),
            ("PLUGIN_AGENTS_API_TOKEN", "legacy-secret-value"),
            (
                "PLUGIN_AGENTS_API_CREDENTIALS",
                r#"[{"id": "Bot", "token": "json-secret-value"}]"#,
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = build_snapshot(&env, None, None, 4).unwrap();
        let text = serde_json::to_string(&posture(&s)).unwrap();
        assert!(!text.contains("secret-value"));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["environmentProfile"], "staging");
        assert_eq!(v["environmentProfileSource"], "inferred");
        assert_eq!(v["profileDefaultsApplied"], true);
        assert_eq!(
            v["profileDefaultsAppliedFields"],
            serde_json::json!(["rateLimitPerMinute"])
        );
        assert_eq!(v["effectivePolicyVersion"], "env-profile-v1");
        assert_eq!(v["rateLimitPerMinute"], 120);
        assert_eq!(v["credentialCounts"]["json"], 1);
        assert_eq!(v["credentialCounts"]["legacy"], 1);
        assert_eq!(v["credentialIds"]["json"], serde_json::json!(["bot"]));
        assert_eq!(v["snapshotVersion"], 4);
    }
}
