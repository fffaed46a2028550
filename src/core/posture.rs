//! The runtime posture derived from `PLUGIN_AGENTS_*` variables (spec section 5).

use super::scopes::FeatureFlags;
use super::warning::ConfigWarning;

/// The policy revision this service enforces, reported as `effectivePolicyVersion`.
pub const EFFECTIVE_POLICY_VERSION: &str = "env-profile-v1";

/// A read-only view of environment variables, so tests pass a map instead of mutating
/// the process environment.
pub trait EnvSource {
    fn get(&self, name: &str) -> Option<&str>;
}

impl EnvSource for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::HashMap::get(self, name).map(String::as_str)
    }
}

impl EnvSource for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::BTreeMap::get(self, name).map(String::as_str)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Local,
    Test,
    Staging,
    Production,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Local => "local",
            Profile::Test => "test",
            Profile::Staging => "staging",
            Profile::Production => "production",
        }
    }

    /// Resolves a profile name or alias; `None` for anything unknown.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "local" | "dev" | "development" => Some(Profile::Local),
            "test" | "testing" | "ci" => Some(Profile::Test),
            "staging" | "stage" => Some(Profile::Staging),
            "production" | "prod" => Some(Profile::Production),
            _ => None,
        }
    }

    pub fn default_rate_limit_per_minute(self) -> u32 {
        match self {
            Profile::Local | Profile::Test => 300,
            Profile::Staging => 120,
            Profile::Production => 60,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileSource {
    Env,
    Inferred,
}

/// The effective security posture of one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posture {
    pub environment: String,
    pub is_production: bool,
    pub profile: Profile,
    pub profile_source: ProfileSource,
    pub enabled: bool,
    pub require_token: bool,
    /// `REQUIRE_TOKEN=false` was overridden because this is production.
    pub require_token_forced_in_prod: bool,
    pub allow_query_token: bool,
    pub fail_on_missing_token: bool,
    pub redact_email: bool,
    pub rate_limit_per_minute: u32,
    pub rate_limit_window_seconds: u32,
    pub flags: FeatureFlags,
    /// Field names whose value came from the profile defaults, sorted.
    pub profile_defaults_applied_fields: Vec<&'static str>,
    pub warnings: Vec<ConfigWarning>,
}

/// Parses a boolean as the spec allows: `true/false/1/0/yes/no/on/off`, any case.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

struct Reader<'e, E: EnvSource> {
    env: &'e E,
    warnings: Vec<ConfigWarning>,
}

impl<E: EnvSource> Reader<'_, E> {
    /// A set, non-blank value.
    fn value(&self, name: &str) -> Option<&str> {
        self.env.get(name).filter(|v| !v.trim().is_empty())
    }

    fn flag(&mut self, name: &str, default: bool) -> bool {
        let Some(raw) = self.value(name) else {
            return default;
        };
        match parse_bool(raw) {
            Some(b) => b,
            None => {
                self.warnings.push(ConfigWarning::new(
                    name,
                    format!("not a boolean (use true/false/1/0/yes/no/on/off); using the default {default}"),
                ));
                default
            }
        }
    }

    /// A positive integer, or `None` (reported) when set but invalid.
    fn positive(&mut self, name: &str) -> Option<u32> {
        let raw = self.value(name)?;
        match raw.trim().parse::<u32>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.warnings.push(ConfigWarning::new(
                    name,
                    "not a positive whole number; using the default",
                ));
                None
            }
        }
    }
}

impl Posture {
    pub fn from_env(env: &impl EnvSource) -> Self {
        let mut r = Reader {
            env,
            warnings: Vec::new(),
        };
        let environment = r
            .value("ENVIRONMENT")
            .or_else(|| r.value("CRAFT_ENVIRONMENT"))
            .unwrap_or("production")
            .trim()
            .to_string();
        let is_production = matches!(
            environment.to_ascii_lowercase().as_str(),
            "prod" | "production"
        );
        let (profile, profile_source) = match r.value("PLUGIN_AGENTS_ENV_PROFILE") {
            Some(raw) => {
                let profile = Profile::from_name(raw).unwrap_or_else(|| {
                    r.warnings.push(ConfigWarning::new(
                        "PLUGIN_AGENTS_ENV_PROFILE",
                        "unknown profile (use local, test, staging or production); using local",
                    ));
                    Profile::Local
                });
                (profile, ProfileSource::Env)
            }
            None => (
                Profile::from_name(&environment).unwrap_or(Profile::Local),
                ProfileSource::Inferred,
            ),
        };

        let enabled = r.flag("PLUGIN_AGENTS_ENABLED", true);
        let requested_require_token = r.flag("PLUGIN_AGENTS_REQUIRE_TOKEN", true);
        let allow_insecure = r.flag("PLUGIN_AGENTS_ALLOW_INSECURE_NO_TOKEN_IN_PROD", false);
        let require_token_forced_in_prod =
            !requested_require_token && is_production && !allow_insecure;
        let require_token = requested_require_token || require_token_forced_in_prod;
        let allow_query_token = r.flag("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", false);
        let fail_on_missing_token = r.flag("PLUGIN_AGENTS_FAIL_ON_MISSING_TOKEN_IN_PROD", true);
        let redact_email = r.flag("PLUGIN_AGENTS_REDACT_EMAIL", true);
        let flags = FeatureFlags {
            addresses_api: r.flag("PLUGIN_AGENTS_ENABLE_ADDRESSES_API", false),
            users_api: r.flag("PLUGIN_AGENTS_ENABLE_USERS_API", false),
            writes_experimental: r.flag("PLUGIN_AGENTS_WRITES_EXPERIMENTAL", false),
        };

        let mut profile_defaults_applied_fields = Vec::new();
        let rate_limit_per_minute = r
            .positive("PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE")
            .unwrap_or_else(|| {
                profile_defaults_applied_fields.push("rateLimitPerMinute");
                profile.default_rate_limit_per_minute()
            });
        let rate_limit_window_seconds = r
            .positive("PLUGIN_AGENTS_RATE_LIMIT_WINDOW_SECONDS")
            .unwrap_or(60);

        if require_token_forced_in_prod {
            r.warnings.push(ConfigWarning::new(
                "PLUGIN_AGENTS_REQUIRE_TOKEN",
                "false is ignored in production (forced in prod); set PLUGIN_AGENTS_ALLOW_INSECURE_NO_TOKEN_IN_PROD=true to allow it",
            ));
        } else if !require_token {
            r.warnings.push(ConfigWarning::new(
                "PLUGIN_AGENTS_REQUIRE_TOKEN",
                "token enforcement is disabled: every request is granted every scope",
            ));
        }
        if allow_query_token {
            r.warnings.push(ConfigWarning::new(
                "PLUGIN_AGENTS_ALLOW_QUERY_TOKEN",
                "query tokens are enabled: tokens may end up in URLs and access logs",
            ));
        }

        Posture {
            environment,
            is_production,
            profile,
            profile_source,
            enabled,
            require_token,
            require_token_forced_in_prod,
            allow_query_token,
            fail_on_missing_token,
            redact_email,
            rate_limit_per_minute,
            rate_limit_window_seconds,
            flags,
            profile_defaults_applied_fields,
            warnings: r.warnings,
        }
    }

    pub fn profile_defaults_applied(&self) -> bool {
        !self.profile_defaults_applied_fields.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn posture(pairs: &[(&str, &str)]) -> Posture {
        let env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Posture::from_env(&env)
    }

    fn warned(p: &Posture, var: &str) -> bool {
        p.warnings.iter().any(|w| w.source == var)
    }

    #[test]
    fn defaults_are_secure_and_production() {
        let p = posture(&[]);
        assert_eq!(p.environment, "production");
        assert!(p.is_production);
        assert_eq!(p.profile, Profile::Production);
        assert_eq!(p.profile_source, ProfileSource::Inferred);
        assert!(p.enabled && p.require_token && p.fail_on_missing_token && p.redact_email);
        assert!(!p.allow_query_token);
        assert_eq!(p.flags, FeatureFlags::default());
        assert_eq!(p.rate_limit_per_minute, 60);
        assert_eq!(p.rate_limit_window_seconds, 60);
        assert_eq!(
            p.profile_defaults_applied_fields,
            vec!["rateLimitPerMinute"]
        );
    }

    #[test]
    fn booleans_accept_every_spelling_in_any_case() {
        for (raw, want) in [
            ("true", true),
            ("TRUE", true),
            ("1", true),
            ("Yes", true),
            ("on", true),
            ("false", false),
            ("0", false),
            ("NO", false),
            ("Off", false),
        ] {
            assert_eq!(parse_bool(raw), Some(want), "{raw}");
        }
        assert_eq!(parse_bool("enabled"), None);
    }

    #[test]
    fn invalid_boolean_counts_as_unset_and_is_reported() {
        let p = posture(&[("PLUGIN_AGENTS_ENABLED", "nope")]);
        assert!(p.enabled);
        assert!(warned(&p, "PLUGIN_AGENTS_ENABLED"));
    }

    #[test]
    fn environment_falls_back_to_craft_environment() {
        let p = posture(&[("CRAFT_ENVIRONMENT", "dev")]);
        assert_eq!(p.environment, "dev");
        assert!(!p.is_production);
        assert_eq!(p.profile, Profile::Local);
        let p = posture(&[("ENVIRONMENT", "prod"), ("CRAFT_ENVIRONMENT", "dev")]);
        assert!(p.is_production);
    }

    #[test]
    fn staging_is_inferred_with_its_rate_limit() {
        let p = posture(&[("ENVIRONMENT", "staging")]);
        assert_eq!(p.profile, Profile::Staging);
        assert_eq!(p.profile_source, ProfileSource::Inferred);
        assert_eq!(p.rate_limit_per_minute, 120);
    }

    #[test]
    fn profile_aliases_resolve() {
        for (raw, want) in [
            ("prod", Profile::Production),
            ("stage", Profile::Staging),
            ("testing", Profile::Test),
            ("ci", Profile::Test),
            ("dev", Profile::Local),
            ("development", Profile::Local),
        ] {
            assert_eq!(Profile::from_name(raw), Some(want), "{raw}");
        }
        let p = posture(&[("ENVIRONMENT", "qa-cluster")]);
        assert_eq!(p.profile, Profile::Local);
    }

    #[test]
    fn unknown_explicit_profile_falls_back_to_local_and_is_reported() {
        let p = posture(&[("PLUGIN_AGENTS_ENV_PROFILE", "qa")]);
        assert_eq!(p.profile, Profile::Local);
        assert_eq!(p.profile_source, ProfileSource::Env);
        assert!(warned(&p, "PLUGIN_AGENTS_ENV_PROFILE"));
    }

    #[test]
    fn explicit_rate_limit_wins_over_profile() {
        let p = posture(&[("PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE", "7")]);
        assert_eq!(p.rate_limit_per_minute, 7);
        assert!(!p.profile_defaults_applied());
        let p = posture(&[("PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE", "-3")]);
        assert_eq!(p.rate_limit_per_minute, 60);
        assert!(warned(&p, "PLUGIN_AGENTS_RATE_LIMIT_PER_MINUTE"));
    }

    #[test]
    fn require_token_false_is_forced_back_in_production() {
        let p = posture(&[
            ("ENVIRONMENT", "production"),
            ("PLUGIN_AGENTS_REQUIRE_TOKEN", "false"),
        ]);
        assert!(p.require_token && p.require_token_forced_in_prod);
        assert!(warned(&p, "PLUGIN_AGENTS_REQUIRE_TOKEN"));
    }

    #[test]
    fn require_token_false_allowed_in_prod_only_with_the_escape_hatch() {
        let p = posture(&[
            ("ENVIRONMENT", "production"),
            ("PLUGIN_AGENTS_REQUIRE_TOKEN", "false"),
            ("PLUGIN_AGENTS_ALLOW_INSECURE_NO_TOKEN_IN_PROD", "true"),
        ]);
        assert!(!p.require_token && !p.require_token_forced_in_prod);
        let p = posture(&[
            ("ENVIRONMENT", "local"),
            ("PLUGIN_AGENTS_REQUIRE_TOKEN", "off"),
        ]);
        assert!(!p.require_token);
        assert!(warned(&p, "PLUGIN_AGENTS_REQUIRE_TOKEN"));
    }

    #[test]
    fn query_tokens_and_flags_are_read() {
        let p = posture(&[
            ("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", "yes"),
            ("PLUGIN_AGENTS_ENABLE_USERS_API", "1"),
            ("PLUGIN_AGENTS_WRITES_EXPERIMENTAL", "on"),
            ("PLUGIN_AGENTS_REDACT_EMAIL", "false"),
        ]);
        assert!(p.allow_query_token && p.flags.users_api && p.flags.writes_experimental);
        assert!(!p.flags.addresses_api && !p.redact_email);
        assert!(warned(&p, "PLUGIN_AGENTS_ALLOW_QUERY_TOKEN"));
    }
}
