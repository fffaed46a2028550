use super::*;
use crate::config::build_snapshot;
use crate::core::credentials::digest;
use std::collections::BTreeMap;
use time::format_description::well_known::Rfc3339;

const OLD: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const NEW: &str = "2222222222222222222222222222222222222222222222222222222222222222";

fn now() -> OffsetDateTime {
    OffsetDateTime::parse("2026-12-03T19:00:00Z", &Rfc3339).unwrap()
}

/// A hand-written file: an unknown top-level field, an unknown entry field, and a
/// second entry the edits below must leave exactly as it is.
fn doc() -> KeyDocument {
    let text = format!(
        r#"{{"revision": 3, "credentials": [
            {{"id": "alpha", "tokenHash": "{OLD}", "scopes": ["health:read"], "owner": "ops"}},
            {{"tokenHash": "{NEW}", "id": "beta", "scopes": "auth:read", "pausedAt": true}}
        ]}}"#
    );
    KeyDocument::parse(&text).unwrap().0
}

fn new_key(id: &str) -> NewKey {
    NewKey {
        id: id.into(),
        scopes: vec!["health:read auth:read".into()],
        expires_in_days: Some(30),
        ip_allowlist: vec!["10.0.0.0/8".into()],
        allow_unknown_scopes: false,
    }
}

fn entry(doc: &KeyDocument, id: &str) -> Value {
    doc.entries()[doc.position(id).unwrap()].clone()
}

/// The other entries and fields, as they were.
fn assert_rest_untouched(before: &KeyDocument, after: &KeyDocument, edited: &str) {
    let other = |d: &KeyDocument| -> Vec<Value> {
        (0..d.entries().len())
            .filter(|&i| d.id_at(i).as_deref() != Some(edited))
            .map(|i| d.entries()[i].clone())
            .collect()
    };
    assert_eq!(other(before), other(after));
    assert!(after.to_text().starts_with("{\n  \"revision\": 3,"));
}

#[test]
fn create_appends_a_complete_entry_that_loads_cleanly() {
    let mut d = doc();
    let hash = hex::encode(digest("gamma-token"));
    assert_eq!(
        create(&mut d, &new_key("gamma"), &hash, now()).unwrap(),
        "gamma"
    );
    assert_eq!(
        entry(&d, "gamma"),
        json!({"id": "gamma", "tokenHash": hash, "scopes": ["auth:read", "health:read"],
               "ipAllowlist": ["10.0.0.0/8"], "expiresAt": "2027-01-02T19:00:00Z",
               "createdAt": "2026-12-03T19:00:00Z"})
    );
    assert_rest_untouched(&doc(), &d, "gamma");
    let root: Value = serde_json::from_str(&d.to_text()).unwrap();
    let snap = build_snapshot(&BTreeMap::new(), Some(("keys", &root)), None, 1).unwrap();
    assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
    assert_eq!(snap.credentials.len(), 3);
}

#[test]
fn create_refuses_duplicates_and_bad_input_without_changing_anything() {
    let mut d = doc();
    let err = create(&mut d, &new_key("alpha"), NEW, now()).unwrap_err();
    assert_eq!(err, EditError::DuplicateId("alpha".into()));
    let mut bad_ip = new_key("gamma");
    bad_ip.ip_allowlist = vec!["nowhere".into()];
    assert!(matches!(
        create(&mut d, &bad_ip, NEW, now()),
        Err(EditError::InvalidIp(_))
    ));
    assert_eq!(d, doc());
}

#[test]
fn update_replaces_only_the_given_fields() {
    let mut d = doc();
    let change = KeyUpdate {
        scopes: Some(vec!["products:read".into()]),
        ip_allowlist: Some(vec!["192.0.2.7".into()]),
        expiry: Some(Expiry::InDays(1)),
        ..Default::default()
    };
    assert_eq!(
        update(&mut d, "alpha", &change, now()),
        Ok(Outcome::Changed)
    );
    assert_eq!(
        entry(&d, "alpha"),
        json!({"id": "alpha", "tokenHash": OLD, "scopes": ["products:read"], "owner": "ops",
               "ipAllowlist": ["192.0.2.7/32"], "expiresAt": "2026-12-04T19:00:00Z"})
    );
    let clear = KeyUpdate {
        ip_allowlist: Some(vec![]),
        expiry: Some(Expiry::Never),
        ..Default::default()
    };
    assert_eq!(update(&mut d, "alpha", &clear, now()), Ok(Outcome::Changed));
    assert_eq!(
        update(&mut d, "alpha", &clear, now()),
        Ok(Outcome::AlreadySo("as asked already"))
    );
    assert_eq!(
        update(&mut d, "alpha", &KeyUpdate::default(), now()),
        Err(EditError::NothingToUpdate)
    );
    assert_rest_untouched(&doc(), &d, "alpha");
}

#[test]
fn rotate_replaces_the_hash_and_keeps_the_rest() {
    let mut d = doc();
    rotate(&mut d, "beta", OLD, now()).unwrap();
    let beta = entry(&d, "beta");
    assert_eq!(beta["tokenHash"], OLD);
    assert_eq!(beta["pausedAt"], true);
    assert_eq!(beta["rotatedAt"], "2026-12-03T19:00:00Z");
    assert_rest_untouched(&doc(), &d, "beta");
    assert_eq!(
        rotate(&mut d, "nobody", OLD, now()),
        Err(EditError::UnknownId("nobody".into()))
    );
}

#[test]
fn pause_resume_and_revoke_follow_the_lifecycle() {
    let mut d = doc();
    assert_eq!(pause(&mut d, "alpha", now()), Ok(Outcome::Changed));
    assert_eq!(
        pause(&mut d, "alpha", now()),
        Ok(Outcome::AlreadySo("already paused"))
    );
    assert_eq!(resume(&mut d, "alpha"), Ok(Outcome::Changed));
    assert_eq!(
        resume(&mut d, "alpha"),
        Ok(Outcome::AlreadySo("not paused"))
    );
    assert_eq!(entry(&d, "alpha"), entry(&doc(), "alpha"));
    assert_eq!(revoke(&mut d, "beta", now()), Ok(Outcome::Changed));
    assert_eq!(entry(&d, "beta")["revokedAt"], "2026-12-03T19:00:00Z");
    assert_eq!(
        revoke(&mut d, "beta", now()),
        Ok(Outcome::AlreadySo("already revoked"))
    );
    let revoked = Err(EditError::Revoked("beta".into()));
    assert_eq!(resume(&mut d, "beta"), revoked);
    assert_eq!(pause(&mut d, "beta", now()), revoked);
    assert_eq!(
        rotate(&mut d, "beta", NEW, now()).map(|_| Outcome::Changed),
        revoked
    );
}

#[test]
fn delete_removes_exactly_one_entry() {
    let mut d = doc();
    let gone = delete(&mut d, "alpha").unwrap();
    assert_eq!(gone["owner"], "ops");
    assert_eq!(d.entries().len(), 1);
    assert_eq!(d.position("beta"), Some(0));
    assert!(delete(&mut d, "alpha").is_err());
}
