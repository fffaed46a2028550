//! The managed-keys file: any bytes as its text, through the same entry-by-entry reader and
//! builder a reload uses. A bad file is a typed `ConfigError` naming the file; a bad entry is a
//! warning; nothing panics.
#![no_main]

use agents_authz::config::{ConfigError, build_snapshot_from_keys_text};
use agents_authz_fuzz::check_loaded;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::Path;

const NAME: &str = "fuzz-keys.json";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: BTreeMap<String, String> =
        [("ENVIRONMENT".to_string(), "production".to_string())].into();
    let result = build_snapshot_from_keys_text(&env, Path::new(NAME), text, 1);
    if let Err(e) = &result {
        assert!(matches!(
            e,
            ConfigError::Json { .. } | ConfigError::Shape { .. }
        ));
        assert!(e.to_string().contains(NAME), "the error names the file");
    }
    check_loaded(&result, &[]);
});
