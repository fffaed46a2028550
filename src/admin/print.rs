//! The admin API's answers as JSON for the subcommands' stdout. Field names follow the
//! proto's, in lowerCamelCase; enums are short lower-case words.

use crate::admin_proto as pb;
use serde_json::{Value, json};

pub fn posture(p: &pb::GetPostureResponse) -> Value {
    let flags = p.flags.unwrap_or_default();
    json!({
        "environment": p.environment,
        "environmentProfile": p.environment_profile,
        "environmentProfileSource": match p.environment_profile_source() {
            pb::ProfileSource::Env => "env",
            pb::ProfileSource::Inferred => "inferred",
            pb::ProfileSource::Unspecified => "unspecified",
        },
        "profileDefaultsApplied": p.profile_defaults_applied,
        "profileDefaultsAppliedFields": p.profile_defaults_applied_fields,
        "effectivePolicyVersion": p.effective_policy_version,
        "flags": {
            "enabled": flags.enabled,
            "requireToken": flags.require_token,
            "requireTokenForcedInProd": flags.require_token_forced_in_prod,
            "allowInsecureNoTokenInProd": flags.allow_insecure_no_token_in_prod,
            "allowQueryToken": flags.allow_query_token,
            "failOnMissingTokenInProd": flags.fail_on_missing_token_in_prod,
            "redactEmail": flags.redact_email,
            "rateLimitPerMinute": flags.rate_limit_per_minute,
            "rateLimitWindowSeconds": flags.rate_limit_window_seconds,
            "addressesApiEnabled": flags.addresses_api_enabled,
            "usersApiEnabled": flags.users_api_enabled,
            "writesExperimental": flags.writes_experimental,
        },
        "credentialCounts": p.credential_counts.iter()
            .map(|c| (c.source.clone(), Value::from(c.count)))
            .collect::<serde_json::Map<_, _>>(),
        "credentials": p.credentials.iter()
            .map(|c| json!({"id": c.id, "source": c.source, "scopes": c.scopes}))
            .collect::<Vec<_>>(),
        "warnings": warnings(&p.warnings),
        "snapshotVersion": p.snapshot_version,
    })
}

pub fn status(s: &pb::GetStatusResponse) -> Value {
    json!({
        "snapshotVersion": s.snapshot_version,
        "snapshotLoadedAtUnixMs": s.snapshot_loaded_at_unix_ms,
        "lastReload": s.last_reload.as_ref().map(|a| json!({
            "atUnixMs": a.at_unix_ms,
            "result": result(a.result()),
            "error": a.error,
            "trigger": a.trigger,
        })),
        "reloadsSucceeded": s.reloads_succeeded,
        "reloadsFailed": s.reloads_failed,
    })
}

pub fn reload(r: &pb::ReloadResponse) -> Value {
    json!({
        "result": result(r.result()),
        "previousSnapshotVersion": r.previous_snapshot_version,
        "snapshotVersion": r.snapshot_version,
        "error": r.error,
        "warnings": warnings(&r.warnings),
    })
}

pub fn whoami(w: &pb::WhoAmIResponse) -> Value {
    json!({
        "authenticated": w.authenticated,
        "reason": w.reason,
        "credentialId": w.credential_id,
        "credentialSource": w.credential_source,
        "principalFingerprint": w.principal_fingerprint,
        "grantedScopes": w.granted_scopes,
        "expiresAt": w.expires_at,
    })
}

pub fn result(r: pb::ReloadResult) -> &'static str {
    match r {
        pb::ReloadResult::Success => "success",
        pb::ReloadResult::Unchanged => "unchanged",
        pb::ReloadResult::Failure => "failure",
        pb::ReloadResult::Unspecified => "unspecified",
    }
}

fn warnings(list: &[pb::ConfigWarning]) -> Vec<Value> {
    list.iter()
        .map(|w| json!({"code": w.code, "message": w.message}))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_print_as_words() {
        let r = pb::ReloadResponse {
            result: pb::ReloadResult::Failure.into(),
            error: "env file x: cannot parse".into(),
            ..Default::default()
        };
        let v = reload(&r);
        assert_eq!(v["result"], "failure");
        assert_eq!(v["error"], "env file x: cannot parse");
        let p = posture(&pb::GetPostureResponse {
            environment_profile_source: pb::ProfileSource::Env.into(),
            ..Default::default()
        });
        assert_eq!(p["environmentProfileSource"], "env");
        assert_eq!(
            status(&pb::GetStatusResponse::default())["lastReload"],
            Value::Null
        );
    }
}
