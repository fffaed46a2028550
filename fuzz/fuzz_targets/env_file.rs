//! The env file: any bytes as its text, parsed as a reload parses it, then loaded. A
//! parse error is a typed `ConfigError::EnvFile` naming the file; nothing panics, and no
//! report repeats a token the file set.
#![no_main]

use agents_authz::config::{ConfigError, SPEC_VAR_PREFIX, build_snapshot, parse_env_file};
use agents_authz_fuzz::{check_loaded, secrets_in};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::Path;

const NAME: &str = "fuzz.env";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let pairs = match parse_env_file(Path::new(NAME), text) {
        Ok(pairs) => pairs,
        Err(e) => {
            assert!(matches!(e, ConfigError::EnvFile { .. }));
            let message = e.to_string();
            assert!(message.starts_with("env file fuzz.env: "), "{message}");
            return;
        }
    };
    let mut env: BTreeMap<String, String> =
        [("ENVIRONMENT".to_string(), "production".to_string())].into();
    env.extend(
        pairs
            .into_iter()
            .filter(|(k, _)| k.starts_with(SPEC_VAR_PREFIX)),
    );
    let mut secrets = env
        .get("PLUGIN_AGENTS_API_CREDENTIALS")
        .and_then(|raw| serde_json::from_str(raw).ok())
        .map(|doc| secrets_in(&doc))
        .unwrap_or_default();
    if let Some(legacy) = env.get("PLUGIN_AGENTS_API_TOKEN").map(|t| t.trim()) {
        let unique = text.matches(legacy).count() == 1;
        if unique && legacy.len() >= 8 && legacy.bytes().any(|b| b.is_ascii_uppercase()) {
            secrets.push(legacy.to_string());
        }
    }
    let result = build_snapshot(&env, None, None, 1);
    assert!(result.is_ok(), "environment values alone never fail a load");
    check_loaded(&result, &secrets);
});
