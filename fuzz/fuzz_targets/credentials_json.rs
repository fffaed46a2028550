//! `PLUGIN_AGENTS_API_CREDENTIALS`: any text as the variable's value. Loading never
//! panics, a bad value becomes a warning, and no warning or id repeats a token.
#![no_main]

use agents_authz::config::build_snapshot;
use agents_authz_fuzz::{check_loaded, secrets_in};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: BTreeMap<String, String> = [
        ("ENVIRONMENT".to_string(), "production".to_string()),
        (
            "PLUGIN_AGENTS_WRITES_EXPERIMENTAL".to_string(),
            "true".to_string(),
        ),
        (
            "PLUGIN_AGENTS_API_CREDENTIALS".to_string(),
            text.to_string(),
        ),
    ]
    .into();
    let secrets = serde_json::from_str(text)
        .map(|doc| secrets_in(&doc))
        .unwrap_or_default();
    let result = build_snapshot(&env, None, None, 1);
    // The variable is never fatal: every problem is a warning on a usable snapshot.
    assert!(
        result.is_ok(),
        "a bad credentials variable must not fail the load"
    );
    check_loaded(&result, &secrets);
});
