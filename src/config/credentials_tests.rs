use super::*;
use crate::core::credentials::CredentialSet;
use serde_json::json;

fn hash(token: &str) -> String {
    hex::encode(digest(token))
}

fn build(b: CredentialBuilder) -> (Vec<Credential>, Vec<ConfigWarning>) {
    let defaults = normalize(["auth:read health:read"]);
    b.build(&defaults, FeatureFlags::default())
}

#[test]
fn ids_are_normalised_as_the_spec_shows() {
    assert_eq!(normalize_id(" Ops Bot #2 ", 1), "ops-bot-2");
    assert_eq!(normalize_id("!!!", 3), "credential-3");
    assert_eq!(normalize_id("Team:Read_Only", 1), "team:read_only");
    assert_eq!(normalize_id("a  b", 1), "a-b");
}

#[test]
fn managed_keys_accept_both_document_shapes() {
    for doc in [
        json!({"credentials": [{"id": "k1", "tokenHash": hash("t1")}]}),
        json!([{"id": "k1", "tokenHash": hash("t1")}]),
    ] {
        let mut b = CredentialBuilder::new();
        b.add_managed("keys.json", &doc).unwrap();
        let (creds, w) = build(b);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(&*creds[0].id, "k1");
        assert_eq!(creds[0].source, CredentialSource::Managed);
        assert_eq!(creds[0].grant.header_value(), "auth:read health:read");
    }
    let mut b = CredentialBuilder::new();
    assert!(b.add_managed("keys.json", &json!({"keys": []})).is_err());
}

#[test]
fn broken_managed_entries_are_skipped_and_named_without_secrets() {
    let doc = json!([
        {"id": "no-hash"},
        {"id": "short", "tokenHash": "abc"},
        {"id": "bad-exp", "tokenHash": hash("x1"), "expiresAt": "tomorrow"},
        {"id": "bad-scopes", "tokenHash": hash("x2"), "scopes": 5},
        "not-an-object",
        {"id": "good", "tokenHash": hash("x3"), "scopes": ["orders:read"]}
    ]);
    let mut b = CredentialBuilder::new();
    b.add_managed("keys.json", &doc).unwrap();
    let (creds, w) = build(b);
    assert_eq!(creds.len(), 1);
    assert_eq!(w.len(), 5, "{w:?}");
    assert_eq!(w[2].entry.as_deref(), Some("entry 3"));
    assert!(w[2].message.contains("expiresAt"));
    for warning in &w {
        assert!(!warning.to_string().contains(&hash("x1")));
    }
}

#[test]
fn managed_key_state_fields_are_read() {
    let doc = json!([
        {"id": "p", "tokenHash": hash("p"), "pausedAt": "2026-01-01T00:00:00Z"},
        {"id": "r", "tokenHash": hash("r"), "revokedAt": "2026-01-01T00:00:00Z"},
        {"id": "e", "tokenHash": hash("e"), "expiresAt": "2026-01-01T00:00:00Z"},
        {"id": "ok", "tokenHash": hash("ok"), "pausedAt": null, "revokedAt": ""}
    ]);
    let mut b = CredentialBuilder::new();
    b.add_managed("k", &doc).unwrap();
    let (creds, _) = build(b);
    let set = CredentialSet::new(creds);
    let now = 1_800_000_000;
    use crate::core::credentials::AuthFailure::*;
    assert_eq!(set.authenticate("p", None, now).unwrap_err(), Paused);
    assert_eq!(set.authenticate("r", None, now).unwrap_err(), Revoked);
    assert_eq!(set.authenticate("e", None, now).unwrap_err(), Expired);
    assert!(set.authenticate("e", None, 1_767_225_599).is_ok());
    assert!(set.authenticate("ok", None, now).is_ok());
}

#[test]
fn invalid_allowlist_entries_fail_closed_and_are_reported() {
    let doc = json!([
        {"id": "bad", "tokenHash": hash("b"), "ipAllowlist": ["not-an-ip", "10.0.0.0/33"]},
        {"id": "mixed", "tokenHash": hash("m"), "ipAllowlist": ["nope", "192.168.1.7"]}
    ]);
    let mut b = CredentialBuilder::new();
    b.add_managed("k", &doc).unwrap();
    let (creds, w) = build(b);
    assert_eq!(creds[0].allowlist, IpAllowlist::Only(vec![]));
    assert!(w.iter().any(|w| w.message.contains("from nowhere")));
    let set = CredentialSet::new(creds);
    let ip = |s: &str| Some(s.parse().unwrap());
    assert!(set.authenticate("b", ip("127.0.0.1"), 0).is_err());
    assert!(set.authenticate("m", ip("192.168.1.7"), 0).is_ok());
    assert!(set.authenticate("m", ip("192.168.1.8"), 0).is_err());
}

#[test]
fn json_set_accepts_single_list_and_keyed_shapes() {
    let mut b = CredentialBuilder::new();
    b.add_json_set(r#"{"token": "single", "scopes": "orders:read, entries:read"}"#);
    b.add_json_set(r#"[{"value": "listed", "name": "Lister"}]"#);
    b.add_json_set(r#"{"Ops Bot": {"token": "keyed", "id": "ignored"}}"#);
    let (creds, w) = build(b);
    assert!(w.is_empty(), "{w:?}");
    let ids: Vec<&str> = creds.iter().map(|c| &*c.id).collect();
    assert_eq!(ids, ["credential-1", "lister", "ops-bot"]);
    assert_eq!(creds[0].grant.header_value(), "entries:read orders:read");
    assert!(creds.iter().all(|c| c.source == CredentialSource::EnvJson));
}

#[test]
fn json_set_problems_are_reported_never_fatal() {
    let mut b = CredentialBuilder::new();
    b.add_json_set("{not json at all secret-123");
    b.add_json_set(r#"[{"id": "empty", "token": "  "}, {"id": "ok", "token": "t"}]"#);
    let (creds, w) = build(b);
    assert_eq!(creds.len(), 1);
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].message.contains("not valid JSON"));
    assert!(!w[0].to_string().contains("secret-123"));
    assert!(w[1].message.contains("no token"));
}

#[test]
fn merge_keeps_the_first_of_duplicate_tokens_in_source_order() {
    let mut b = CredentialBuilder::new();
    b.add_managed("k", &json!([{"id": "managed", "tokenHash": hash("same")}]))
        .unwrap();
    b.add_json_set(r#"[{"id": "json", "token": "same"}, {"id": "json2", "token": "other"}]"#);
    b.add_legacy("other");
    b.add_legacy("legacy-only");
    let (creds, w) = build(b);
    let ids: Vec<&str> = creds.iter().map(|c| &*c.id).collect();
    assert_eq!(ids, ["managed", "json2", "default"]);
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(creds[2].source, CredentialSource::EnvLegacy);
    assert_eq!(creds[2].source.header_value(), "env");
}

#[test]
fn wildcard_scope_is_dropped_from_credentials() {
    let mut b = CredentialBuilder::new();
    b.add_json_set(r#"{"token": "t", "scopes": "* health:read"}"#);
    let (creds, w) = build(b);
    assert_eq!(creds[0].grant.header_value(), "health:read");
    assert!(w[0].message.contains("\"*\""));
}

proptest::proptest! {
    #[test]
    fn normalised_ids_are_never_empty_and_use_only_the_id_alphabet(raw in "\\PC{0,40}", pos in 1usize..50) {
        let id = normalize_id(&raw, pos);
        proptest::prop_assert!(!id.is_empty());
        proptest::prop_assert!(!id.starts_with('-') && !id.ends_with('-'));
        proptest::prop_assert!(id.chars().all(|c| matches!(c, 'a'..='z' | '0'..='9' | ':' | '_' | '-')));
    }
}
