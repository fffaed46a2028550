//! What the fuzz targets share: the fixed snapshot the Check target decides against,
//! and the checks every file target makes on a loaded snapshot.

use agents_authz::config::{ConfigError, build_snapshot};
use agents_authz::core::credentials::digest;
use agents_authz::core::snapshot::Snapshot;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A token of the fixed snapshot, and whether it can authenticate at all.
pub struct KnownToken {
    pub token: &'static str,
    /// The credential id it authenticates as, when it is live.
    pub live_id: Option<&'static str>,
}

/// Every token the fixed snapshot knows. The fuzzer picks from these by index as well
/// as making up its own, so the allow paths are reached.
pub const KNOWN_TOKENS: [KnownToken; 7] = [
    KnownToken {
        token: "fuzz-reader-5e1f0a9d",
        live_id: Some("reader"),
    },
    KnownToken {
        token: "fuzz-office-2c7b41e0",
        live_id: Some("office"),
    },
    KnownToken {
        token: "fuzz-revoked-77aa0c13",
        live_id: None,
    },
    KnownToken {
        token: "fuzz-expired-31bb9f02",
        live_id: None,
    },
    KnownToken {
        token: "fuzz-paused-8d30e6a4",
        live_id: None,
    },
    KnownToken {
        token: "fuzz-json-0d4e6b8c",
        live_id: Some("ops"),
    },
    KnownToken {
        token: "fuzz-legacy-a1b2c3d4",
        live_id: Some("default"),
    },
];

/// Production posture (tokens required, no way to switch that off), query tokens and
/// the experimental writes on, so every route and every token source is reachable.
pub fn fixed_snapshot() -> Snapshot {
    let env: BTreeMap<String, String> = [
        ("ENVIRONMENT", "production"),
        ("PLUGIN_AGENTS_ALLOW_QUERY_TOKEN", "true"),
        ("PLUGIN_AGENTS_WRITES_EXPERIMENTAL", "true"),
        ("PLUGIN_AGENTS_ENABLE_USERS_API", "true"),
        (
            "PLUGIN_AGENTS_API_CREDENTIALS",
            r#"{"ops": {"token": "fuzz-json-0d4e6b8c", "scopes": "entries:read, syncstate:write control:approvals:write"}}"#,
        ),
        ("PLUGIN_AGENTS_API_TOKEN", "fuzz-legacy-a1b2c3d4"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let hash = |t: &str| hex(&digest(t));
    let managed = json!({"credentials": [
        {"id": "reader", "tokenHash": hash(KNOWN_TOKENS[0].token),
         "scopes": ["health:read", "products:read", "entries:read", "plugins:shop:items:read"]},
        {"id": "office", "tokenHash": hash(KNOWN_TOKENS[1].token), "scopes": ["*"],
         "ipAllowlist": ["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"]},
        {"id": "revoked", "tokenHash": hash(KNOWN_TOKENS[2].token),
         "revokedAt": "2026-01-01T00:00:00Z"},
        {"id": "expired", "tokenHash": hash(KNOWN_TOKENS[3].token),
         "expiresAt": "2001-01-01T00:00:00Z"},
        {"id": "paused", "tokenHash": hash(KNOWN_TOKENS[4].token),
         "pausedAt": "2026-01-01T00:00:00Z"},
    ]});
    let routes = (
        PathBuf::from("fuzz-routes.json"),
        json!({"routes": [
            {"path": "/status", "public": true},
            {"path": "/static/", "match": "prefix", "public": true},
            {"path": "/agents/v1/reports", "methods": ["GET", "POST"], "scopes": ["reports:read"]},
            {"path": "/agents/v1/metrics", "disabled": true},
        ]}),
    );
    build_snapshot(&env, Some(("fuzz-keys.json", &managed)), Some(&routes), 1)
        .expect("the fixed fuzz snapshot loads")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// True when `needle` occurs in `haystack` (byte-wise).
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Checks every loader's result must pass: a failure is a typed error whose message
/// names the file, and a snapshot never reports a secret the input held.
pub fn check_loaded(result: &Result<Snapshot, ConfigError>, secrets: &[String]) {
    match result {
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty());
            assert_no_secret(&message, secrets);
        }
        Ok(snapshot) => {
            for w in &snapshot.warnings {
                assert_no_secret(&w.to_string(), secrets);
            }
            for c in snapshot.credentials.iter() {
                assert!(!c.id.is_empty(), "a credential id is never empty");
                assert_no_secret(&c.id, secrets);
            }
            assert!(!snapshot.routes.is_empty());
        }
    }
}

fn assert_no_secret(text: &str, secrets: &[String]) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "a report repeats a secret");
    }
}

/// Token values of a credentials document that must never be reported: the ones with a
/// capital letter (every reported name is lowercased first, so a capital can only come
/// from the secret itself) and a character that is neither a capital nor `_` (so the
/// token is not a piece of a variable name such as `PLUGIN_AGENTS_API_CREDENTIALS`, which
/// reports quote), at least 8 characters (so a coincidence is not a leak), and written
/// nowhere else in the document (an allowlist entry may be quoted in a warning).
pub fn secrets_in(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect_secrets(doc, &mut out);
    let text = doc.to_string();
    out.retain(|s| {
        s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
            && text.matches(s.as_str()).count() == 1
    });
    out
}

fn collect_secrets(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(list) => list.iter().for_each(|x| collect_secrets(x, out)),
        Value::Object(map) => {
            for (k, x) in map {
                if let (true, Value::String(s)) = (k == "token" || k == "value", x) {
                    let t = s.trim();
                    if t.len() >= 8
                        && t.bytes().any(|b| b.is_ascii_uppercase())
                        && t.bytes().any(|b| !b.is_ascii_uppercase() && b != b'_')
                    {
                        out.push(t.to_string());
                    }
                }
                collect_secrets(x, out);
            }
        }
        _ => {}
    }
}
