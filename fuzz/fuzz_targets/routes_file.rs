//! The routes file: any bytes as its text, merged over the built-in table as a reload
//! does. A bad file is a typed `ConfigError` naming the file; whatever table results,
//! no guarded route lets a request without a token through.
#![no_main]

use agents_authz::config::{ConfigError, build_snapshot, parse_json};
use agents_authz::core::decision::decide;
use agents_authz::core::request::RequestFacts;
use agents_authz::core::routes::Access;
use agents_authz_fuzz::check_loaded;
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const NAME: &str = "fuzz-routes.json";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: BTreeMap<String, String> = [
        ("ENVIRONMENT".to_string(), "production".to_string()),
        (
            "PLUGIN_AGENTS_API_TOKEN".to_string(),
            "fuzz-legacy-token".to_string(),
        ),
    ]
    .into();
    let result = parse_json("routes", Path::new(NAME), text)
        .and_then(|doc| build_snapshot(&env, None, Some(&(PathBuf::from(NAME), doc)), 1));
    if let Err(e) = &result {
        assert!(matches!(
            e,
            ConfigError::Json { .. } | ConfigError::Shape { .. }
        ));
        assert!(e.to_string().contains(NAME), "the error names the file");
    }
    check_loaded(&result, &[]);
    let Ok(snapshot) = result else {
        return;
    };
    for route in snapshot.routes.routes() {
        for method in ["GET", "POST"] {
            let facts = RequestFacts {
                method,
                path: &route.path,
                content_type: agents_authz::core::request::HeaderField::Present("application/json"),
                ..Default::default()
            };
            let decision = decide(&snapshot, &facts);
            if decision.is_allow() {
                let public = decision.route.is_some_and(|r| r.access == Access::Public);
                assert!(public, "a request without a token passed a guarded route");
            }
        }
    }
});
