//! `agents-authz check`: load the configuration exactly as `serve` does, and report it.
//!
//! An *error* is anything that makes `serve` refuse to start: a managed-keys, routes or
//! env file that cannot be read or parsed as a whole, an unusable `--rate-limit-store`,
//! or a `RUST_LOG` filter that does not parse. A *warning* is a problem `serve` starts
//! with: the posture's warnings (invalid profile or boolean, token enforcement off, query
//! tokens on, no credential while one is required) and entries skipped in a file. Exit
//! codes: 0 clean, 1 warnings under `--strict`, 2 errors.

use crate::cli::CheckArgs;
use crate::config::load_snapshot;
use crate::core::routes::Access;
use crate::core::snapshot::Snapshot;
use crate::core::warning::ConfigWarning;
use crate::error_chain::error_chain;
use crate::ratelimit::RateLimiter;
use crate::report::{PostureReport, posture};
use crate::telemetry::LogConfig;
use crate::telemetry::logging::parse_filter;
use serde::Serialize;
use std::fmt::Write as _;
use std::process::ExitCode;

pub const EXIT_WARNINGS: u8 = 1;
pub const EXIT_ERRORS: u8 = 2;

/// What `check` found; its JSON form is what `--json` prints.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport<'s> {
    /// `ok`, `warnings` or `errors`.
    pub result: &'static str,
    pub errors: Vec<String>,
    pub warnings: &'s [ConfigWarning],
    /// Absent when the configuration could not be loaded.
    pub posture: Option<PostureReport<'s>>,
    pub routes: Option<RouteSummary>,
}

/// The route table in numbers.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteSummary {
    pub total: usize,
    pub public: usize,
    /// Routes that need one of a list of scopes.
    pub scoped: usize,
    /// Plugin read routes (`plugins:<plugin>:<resource>:read`).
    pub plugin: usize,
    /// Switched off in the routes file (404).
    pub disabled: usize,
    /// Behind a feature flag that is off (404 until the flag is on).
    pub gated_off: usize,
}

pub fn route_summary(s: &Snapshot) -> RouteSummary {
    let mut sum = RouteSummary::default();
    for route in s.routes.routes() {
        sum.total += 1;
        match route.access {
            Access::Public => sum.public += 1,
            Access::AnyOf(_) => sum.scoped += 1,
            Access::PluginRead => sum.plugin += 1,
        }
        sum.disabled += usize::from(route.disabled);
        sum.gated_off += usize::from(route.gate.is_some_and(|g| !s.posture.flags.allows(g)));
    }
    sum
}

/// The report for a load result plus any other errors found (the rate-limit store).
pub fn report<'s>(
    loaded: Result<&'s Snapshot, String>,
    mut errors: Vec<String>,
) -> CheckReport<'s> {
    let snapshot = match loaded {
        Ok(s) => Some(s),
        Err(e) => {
            errors.insert(0, e);
            None
        }
    };
    let warnings = snapshot.map_or(&[][..], |s| &s.warnings);
    let result = if !errors.is_empty() {
        "errors"
    } else if !warnings.is_empty() {
        "warnings"
    } else {
        "ok"
    };
    CheckReport {
        result,
        errors,
        warnings,
        posture: snapshot.map(posture),
        routes: snapshot.map(route_summary),
    }
}

pub fn exit_code(report: &CheckReport<'_>, strict: bool) -> u8 {
    match report.result {
        "errors" => EXIT_ERRORS,
        "warnings" if strict => EXIT_WARNINGS,
        _ => 0,
    }
}

pub fn run(args: &CheckArgs) -> ExitCode {
    let sources = args.serve.config_sources(false);
    let loaded = load_snapshot(&sources, 1).map_err(|e| error_chain(&e));
    let mut errors = Vec::new();
    if let Err(e) = RateLimiter::from_spec(&args.serve.rate_limit_store) {
        errors.push(format!("--rate-limit-store: {e}"));
    }
    if let Err(e) = parse_filter(LogConfig::from_env().filter.as_deref()) {
        errors.push(format!("RUST_LOG: {e}"));
    }
    let report = report(loaded.as_ref().map_err(Clone::clone), errors);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serialises")
        );
    } else {
        print!("{}", render(&report));
    }
    ExitCode::from(exit_code(&report, args.strict))
}

/// The report for people: posture first, then problems, then the verdict.
pub fn render(r: &CheckReport<'_>) -> String {
    let mut out = String::new();
    if let Some(p) = &r.posture {
        render_posture(&mut out, p);
    }
    if let Some(routes) = &r.routes {
        let _ = writeln!(
            out,
            "routes: {} ({} public, {} scoped, {} plugin; {} disabled, {} behind a flag that is \
             off)",
            routes.total,
            routes.public,
            routes.scoped,
            routes.plugin,
            routes.disabled,
            routes.gated_off
        );
    }
    for e in &r.errors {
        let _ = writeln!(out, "error: {e}");
    }
    for w in r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let _ = writeln!(
        out,
        "result: {} ({}, {})",
        r.result,
        count(r.errors.len(), "error"),
        count(r.warnings.len(), "warning")
    );
    out
}

fn count(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

fn render_posture(out: &mut String, p: &PostureReport<'_>) {
    let applied = if p.profile_defaults_applied_fields.is_empty() {
        "none".to_string()
    } else {
        p.profile_defaults_applied_fields.join(", ")
    };
    let ids = |list: &[&str]| {
        if list.is_empty() {
            String::new()
        } else {
            format!(": {}", list.join(", "))
        }
    };
    let c = &p.credential_counts;
    let lines = [
        format!("environment: {}", p.environment),
        format!(
            "profile: {} (source: {}); profile defaults applied: {applied}",
            p.environment_profile, p.environment_profile_source
        ),
        format!("policy version: {}", p.effective_policy_version),
        format!(
            "enabled: {}; require token: {}{}; query tokens: {}; fail on missing token: {}; \
             redact email: {}",
            p.enabled,
            p.require_token,
            if p.require_token_forced_in_prod {
                " (forced in production)"
            } else {
                ""
            },
            p.allow_query_token,
            p.fail_on_missing_token,
            p.redact_email
        ),
        format!(
            "rate limit: {} per {} s",
            p.rate_limit_per_minute, p.rate_limit_window_seconds
        ),
        format!(
            "flags: addresses api {}, users api {}, writes experimental {}",
            p.flags.addresses_api, p.flags.users_api, p.flags.writes_experimental
        ),
        format!("default scopes: {}", p.default_scopes.join(" ")),
        format!("credentials: {}", c.total),
        format!("  managed {}{}", c.managed, ids(&p.credential_ids.managed)),
        format!("  json {}{}", c.json, ids(&p.credential_ids.json)),
        format!("  legacy {}{}", c.legacy, ids(&p.credential_ids.legacy)),
    ];
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::build_snapshot;
    use std::collections::BTreeMap;

    fn snapshot(env: &[(&str, &str)]) -> Snapshot {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        build_snapshot(&env, None, None, 1).unwrap()
    }

    #[test]
    fn clean_configuration_passes_even_strict() {
        let s = snapshot(&[("PLUGIN_AGENTS_API_TOKEN", "legacy-secret-value")]);
        let r = report(Ok(&s), Vec::new());
        assert_eq!(r.result, "ok");
        assert_eq!(exit_code(&r, true), 0);
        let text = render(&r);
        assert!(text.contains("legacy 1: default"), "{text}");
        assert!(
            text.contains("profile: production (source: inferred)"),
            "{text}"
        );
        assert!(!text.contains("legacy-secret-value"));
        assert!(
            text.ends_with("result: ok (0 errors, 0 warnings)\n"),
            "{text}"
        );
    }

    #[test]
    fn warnings_fail_only_under_strict() {
        let s = snapshot(&[("ENVIRONMENT", "staging")]);
        let r = report(Ok(&s), Vec::new());
        assert_eq!(r.result, "warnings");
        assert_eq!((exit_code(&r, false), exit_code(&r, true)), (0, 1));
        assert!(render(&r).contains("warning: credentials: a token is required"));
    }

    #[test]
    fn errors_fail_and_omit_the_posture() {
        let r = report(
            Err("managed-keys file k.json: not valid JSON".into()),
            vec!["--rate-limit-store: bad".into()],
        );
        assert_eq!(exit_code(&r, false), EXIT_ERRORS);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["result"], "errors");
        assert_eq!(v["errors"][0], "managed-keys file k.json: not valid JSON");
        assert_eq!(v["posture"], serde_json::Value::Null);
    }

    #[test]
    fn route_summary_counts_gated_routes_by_the_flags() {
        let off = route_summary(&snapshot(&[]));
        let on = route_summary(&snapshot(&[
            ("PLUGIN_AGENTS_ENABLE_ADDRESSES_API", "true"),
            ("PLUGIN_AGENTS_ENABLE_USERS_API", "true"),
            ("PLUGIN_AGENTS_WRITES_EXPERIMENTAL", "true"),
        ]));
        assert_eq!(off.total, on.total);
        assert_eq!(off.public + off.scoped + off.plugin, off.total);
        assert!(off.gated_off > 0);
        assert_eq!(on.gated_off, 0);
    }
}
