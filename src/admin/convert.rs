//! Snapshot, posture and reload status -> the admin API's messages. Pure functions, so
//! the mapping is tested without a server.

use crate::admin_proto as pb;
use crate::core::credentials::Credential;
use crate::core::posture::ProfileSource;
use crate::core::scopes::{Grant, WILDCARD};
use crate::core::snapshot::Snapshot;
use crate::core::warning::ConfigWarning;
use crate::reload::{ReloadOutcome, ReloadResult, ReloadStatus};
use crate::report;
use std::time::{SystemTime, UNIX_EPOCH};

/// Spec section 5's posture report. Credentials appear by id, source and scopes only.
pub fn posture(s: &Snapshot) -> pb::GetPostureResponse {
    let r = report::posture(s);
    let counts = &r.credential_counts;
    let p = &s.posture;
    pb::GetPostureResponse {
        environment: r.environment.to_owned(),
        environment_profile: r.environment_profile.to_owned(),
        environment_profile_source: profile_source(p.profile_source).into(),
        profile_defaults_applied: r.profile_defaults_applied,
        profile_defaults_applied_fields: strings(r.profile_defaults_applied_fields),
        effective_policy_version: r.effective_policy_version.to_owned(),
        flags: Some(pb::RuntimeFlags {
            enabled: r.enabled,
            require_token: r.require_token,
            require_token_forced_in_prod: r.require_token_forced_in_prod,
            // The posture keeps only the outcome: in production, tokens can be off
            // only through the insecure exception, so that is when it is in force.
            allow_insecure_no_token_in_prod: p.is_production && !p.require_token,
            allow_query_token: r.allow_query_token,
            fail_on_missing_token_in_prod: r.fail_on_missing_token,
            redact_email: r.redact_email,
            rate_limit_per_minute: r.rate_limit_per_minute,
            rate_limit_window_seconds: r.rate_limit_window_seconds,
            addresses_api_enabled: r.flags.addresses_api,
            users_api_enabled: r.flags.users_api,
            writes_experimental: r.flags.writes_experimental,
        }),
        credential_counts: [
            ("managed", counts.managed),
            ("json", counts.json),
            ("legacy", counts.legacy),
        ]
        .map(|(source, count)| pb::CredentialSourceCount {
            source: source.to_owned(),
            count: count as u32,
        })
        .to_vec(),
        credentials: s.credentials.iter().map(summary).collect(),
        warnings: warnings(r.warnings),
        snapshot_version: r.snapshot_version,
    }
}

fn summary(c: &Credential) -> pb::CredentialSummary {
    pb::CredentialSummary {
        id: c.id.to_string(),
        source: c.source.as_str().to_owned(),
        scopes: granted_scopes(&c.grant),
    }
}

/// Sorted scope names; `*` when everything is granted.
pub fn granted_scopes(grant: &Grant) -> Vec<String> {
    match grant {
        Grant::All => vec![WILDCARD.to_owned()],
        Grant::Scopes(g) => g.iter().map(str::to_owned).collect(),
    }
}

fn profile_source(source: ProfileSource) -> pb::ProfileSource {
    match source {
        ProfileSource::Env => pb::ProfileSource::Env,
        ProfileSource::Inferred => pb::ProfileSource::Inferred,
    }
}

/// The core's warnings have no machine code yet, so `code` stays empty and `message`
/// carries where (variable or file, entry) and why in one line.
pub fn warnings(list: &[ConfigWarning]) -> Vec<pb::ConfigWarning> {
    list.iter()
        .map(|w| pb::ConfigWarning {
            code: String::new(),
            message: w.to_string(),
        })
        .collect()
}

/// The serving snapshot's version and how reloads went. `started_at` stands in for the
/// load time of the initial snapshot, which is built just before the service starts.
pub fn status(
    snapshot_version: u64,
    status: Option<ReloadStatus>,
    started_at: SystemTime,
) -> pb::GetStatusResponse {
    let status = status.unwrap_or_else(|| ReloadStatus::initial(snapshot_version));
    let loaded_at = match status.last_result {
        ReloadResult::NotYet => Some(started_at),
        ReloadResult::Ok => status.last_reload_at,
        // A failed attempt since: the status no longer says when the serving one loaded.
        ReloadResult::Failed if status.reloads_ok == 0 => Some(started_at),
        ReloadResult::Failed => None,
    };
    let last_reload = status.last_reload_at.map(|at| pb::ReloadAttempt {
        at_unix_ms: unix_ms(at),
        result: reload_result(status.last_result).into(),
        error: status.last_error.clone().unwrap_or_default(),
        // The reloader does not record what asked for an attempt.
        trigger: String::new(),
    });
    pb::GetStatusResponse {
        snapshot_version,
        snapshot_loaded_at_unix_ms: loaded_at.map_or(0, unix_ms),
        last_reload,
        reloads_succeeded: status.reloads_ok,
        reloads_failed: status.reloads_failed,
    }
}

fn reload_result(r: ReloadResult) -> pb::ReloadResult {
    match r {
        ReloadResult::NotYet => pb::ReloadResult::Unspecified,
        ReloadResult::Ok => pb::ReloadResult::Success,
        ReloadResult::Failed => pb::ReloadResult::Failure,
    }
}

/// One reload attempt's outcome, with the warnings of the snapshot serving after it.
pub fn reload(outcome: ReloadOutcome, serving: &Snapshot) -> pb::ReloadResponse {
    let (result, previous, version, error) = match outcome {
        // Versions rise by exactly one per successful reload.
        ReloadOutcome::Reloaded { version } => {
            (pb::ReloadResult::Success, version - 1, version, None)
        }
        ReloadOutcome::Failed {
            kept_version,
            error,
        } => (
            pb::ReloadResult::Failure,
            kept_version,
            kept_version,
            Some(error),
        ),
    };
    pb::ReloadResponse {
        result: result.into(),
        previous_snapshot_version: previous,
        snapshot_version: version,
        error: error.unwrap_or_default(),
        warnings: warnings(&serving.warnings),
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// RFC 3339 in UTC; empty when the key does not expire or the time cannot be shown.
pub fn rfc3339(epoch_seconds: Option<i64>) -> String {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    epoch_seconds
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::build_snapshot;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn snapshot(pairs: &[(&str, &str)]) -> Snapshot {
        let env: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        build_snapshot(&env, None, None, 5).unwrap()
    }

    #[test]
    fn posture_names_credentials_by_id_and_never_by_token() {
        let s = snapshot(&[
            ("ENVIRONMENT", "staging"),
            ("PLUGIN_AGENTS_API_TOKEN", "legacy-secret-value"),
            (
                "PLUGIN_AGENTS_API_CREDENTIALS",
                r#"[{"id": "Bot", "token": "json-secret-value", "scopes": "products:read"}]"#,
            ),
        ]);
        let p = posture(&s);
        assert!(!format!("{p:?}").contains("secret-value"));
        assert_eq!(p.environment_profile, "staging");
        assert_eq!(p.environment_profile_source(), pb::ProfileSource::Inferred);
        assert_eq!(p.profile_defaults_applied_fields, ["rateLimitPerMinute"]);
        assert_eq!(p.flags.as_ref().unwrap().rate_limit_per_minute, 120);
        let counts: Vec<(&str, u32)> = p
            .credential_counts
            .iter()
            .map(|c| (c.source.as_str(), c.count))
            .collect();
        assert_eq!(counts, [("managed", 0), ("json", 1), ("legacy", 1)]);
        assert_eq!(p.credentials[0].id, "bot");
        assert_eq!(p.credentials[0].scopes, ["products:read"]);
        assert_eq!(p.credentials[1].source, "legacy");
        assert_eq!(p.snapshot_version, 5);
    }

    #[test]
    fn insecure_exception_shows_only_when_in_force_in_production() {
        let forced = snapshot(&[("PLUGIN_AGENTS_REQUIRE_TOKEN", "false")]);
        let flags = posture(&forced).flags.unwrap();
        assert!(flags.require_token_forced_in_prod);
        assert!(!flags.allow_insecure_no_token_in_prod);
        let insecure = snapshot(&[
            ("PLUGIN_AGENTS_REQUIRE_TOKEN", "false"),
            ("PLUGIN_AGENTS_ALLOW_INSECURE_NO_TOKEN_IN_PROD", "true"),
        ]);
        assert!(
            posture(&insecure)
                .flags
                .unwrap()
                .allow_insecure_no_token_in_prod
        );
        assert!(!posture(&insecure).warnings.is_empty());
    }

    #[test]
    fn status_before_any_reload_reports_the_start() {
        let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let s = status(1, None, start);
        assert_eq!(s.snapshot_version, 1);
        assert_eq!(s.snapshot_loaded_at_unix_ms, 1_700_000_000_123);
        assert!(s.last_reload.is_none());
    }

    #[test]
    fn failed_reload_is_reported_with_its_error() {
        let start = UNIX_EPOCH + Duration::from_secs(10);
        let failed = ReloadStatus {
            last_reload_at: Some(UNIX_EPOCH + Duration::from_secs(20)),
            last_result: ReloadResult::Failed,
            last_error: Some("env file /x: cannot parse".into()),
            reloads_failed: 1,
            ..ReloadStatus::initial(1)
        };
        let s = status(1, Some(failed), start);
        let last = s.last_reload.unwrap();
        assert_eq!(last.result(), pb::ReloadResult::Failure);
        assert_eq!(last.at_unix_ms, 20_000);
        assert_eq!(last.error, "env file /x: cannot parse");
        assert_eq!(s.snapshot_loaded_at_unix_ms, 10_000);
        assert_eq!(s.reloads_failed, 1);
    }

    #[test]
    fn reload_outcomes_map_to_results() {
        let s = snapshot(&[]);
        let ok = reload(ReloadOutcome::Reloaded { version: 4 }, &s);
        assert_eq!(ok.result(), pb::ReloadResult::Success);
        assert_eq!((ok.previous_snapshot_version, ok.snapshot_version), (3, 4));
        let failed = reload(
            ReloadOutcome::Failed {
                kept_version: 3,
                error: "bad".into(),
            },
            &s,
        );
        assert_eq!(failed.result(), pb::ReloadResult::Failure);
        assert_eq!(failed.snapshot_version, 3);
        assert_eq!(failed.error, "bad");
    }

    #[test]
    fn expiry_is_rfc3339_or_empty() {
        assert_eq!(rfc3339(Some(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(None), "");
    }
}
