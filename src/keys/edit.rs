//! The edits behind `keys create|update|rotate|revoke|pause|resume|delete`, as pure
//! functions on a [`KeyDocument`]. Each touches only the fields it is about in the one
//! entry it names; every other entry, and every unknown field, stays as it was.

use super::document::KeyDocument;
use super::validate::{self, timestamp};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

/// Why an edit was refused. The file is never written when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("no key with id {0:?}")]
    UnknownId(String),
    #[error("a key with id {0:?} already exists")]
    DuplicateId(String),
    #[error("id {raw:?} is not in normal form (lowercase a-z 0-9 : _ -){}",
        suggestion.as_ref().map(|s| format!("; use {s:?}")).unwrap_or_default())]
    InvalidId {
        raw: String,
        suggestion: Option<String>,
    },
    #[error("no scopes given; a key needs at least one")]
    NoScopes,
    #[error("scope \"*\" is never granted to a key")]
    WildcardScope,
    #[error(
        "unknown scopes {}; check the spelling, or pass --allow-unknown-scopes",
        .0.join(" ")
    )]
    UnknownScopes(Vec<String>),
    #[error("{0:?} is not an IP address or CIDR")]
    InvalidIp(String),
    #[error("expiry of {0} days is out of range (1 to {max})", max = validate::MAX_EXPIRY_DAYS)]
    InvalidDays(u32),
    #[error("key {0:?} is revoked, which is final; delete it or create a new key")]
    Revoked(String),
    #[error("nothing to update: give --scopes, --expires-in, --no-expiry, --ip or --clear-ip")]
    NothingToUpdate,
}

/// Whether an edit changed the document. Asking for a state the key is already in is
/// not an error (scripts can repeat a command), but nothing is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Changed,
    AlreadySo(&'static str),
}

/// `keys create`, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub id: String,
    pub scopes: Vec<String>,
    pub expires_in_days: Option<u32>,
    pub ip_allowlist: Vec<String>,
    pub allow_unknown_scopes: bool,
}

/// A new expiry: `days` from now, or none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    InDays(u32),
    Never,
}

/// `keys update`: each `Some` replaces that field; `ip_allowlist: Some(vec![])` clears it.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    pub scopes: Option<Vec<String>>,
    pub expiry: Option<Expiry>,
    pub ip_allowlist: Option<Vec<String>>,
    pub allow_unknown_scopes: bool,
}

/// Appends a key holding only `token_hash`; returns its id.
pub fn create(
    doc: &mut KeyDocument,
    key: &NewKey,
    token_hash: &str,
    now: OffsetDateTime,
) -> Result<String, EditError> {
    let id = validate::new_id(&key.id)?;
    if doc.position(&id).is_some() {
        return Err(EditError::DuplicateId(id));
    }
    let scopes = validate::scopes(&key.scopes, key.allow_unknown_scopes)?;
    let ips = validate::ip_allowlist(&key.ip_allowlist)?;
    let mut entry = Map::new();
    entry.insert("id".into(), json!(id));
    entry.insert("tokenHash".into(), json!(token_hash));
    entry.insert("scopes".into(), json!(scopes));
    if !ips.is_empty() {
        entry.insert("ipAllowlist".into(), json!(ips));
    }
    if let Some(days) = key.expires_in_days {
        entry.insert("expiresAt".into(), json!(validate::expires_at(now, days)?));
    }
    entry.insert("createdAt".into(), json!(timestamp(now)));
    doc.entries_mut().push(Value::Object(entry));
    Ok(id)
}

pub fn update(
    doc: &mut KeyDocument,
    id: &str,
    change: &KeyUpdate,
    now: OffsetDateTime,
) -> Result<Outcome, EditError> {
    if change.scopes.is_none() && change.expiry.is_none() && change.ip_allowlist.is_none() {
        return Err(EditError::NothingToUpdate);
    }
    // Validate everything before touching the entry, so a refusal changes nothing.
    let scopes = match &change.scopes {
        Some(raw) => Some(validate::scopes(raw, change.allow_unknown_scopes)?),
        None => None,
    };
    let ips = match &change.ip_allowlist {
        Some(raw) => Some(validate::ip_allowlist(raw)?),
        None => None,
    };
    let expires = match change.expiry {
        Some(Expiry::InDays(days)) => Some(Some(validate::expires_at(now, days)?)),
        Some(Expiry::Never) => Some(None),
        None => None,
    };
    let entry = live_entry(doc, id)?;
    let before = entry.clone();
    if let Some(scopes) = scopes {
        entry.insert("scopes".into(), json!(scopes));
    }
    if let Some(ips) = ips {
        set_or_remove(entry, "ipAllowlist", (!ips.is_empty()).then(|| json!(ips)));
    }
    if let Some(at) = expires {
        set_or_remove(entry, "expiresAt", at.map(Value::String));
    }
    Ok(changed_if(*entry != before, "as asked already"))
}

/// Replaces the key's token hash: the old token stops working at the next reload.
pub fn rotate(
    doc: &mut KeyDocument,
    id: &str,
    token_hash: &str,
    now: OffsetDateTime,
) -> Result<(), EditError> {
    let entry = live_entry(doc, id)?;
    entry.insert("tokenHash".into(), json!(token_hash));
    entry.insert("rotatedAt".into(), json!(timestamp(now)));
    Ok(())
}

/// Sets `revokedAt`. Final: no command undoes it.
pub fn revoke(doc: &mut KeyDocument, id: &str, now: OffsetDateTime) -> Result<Outcome, EditError> {
    match live_entry(doc, id) {
        Err(EditError::Revoked(_)) => Ok(Outcome::AlreadySo("already revoked")),
        Err(e) => Err(e),
        Ok(entry) => {
            entry.insert("revokedAt".into(), json!(timestamp(now)));
            Ok(Outcome::Changed)
        }
    }
}

pub fn pause(doc: &mut KeyDocument, id: &str, now: OffsetDateTime) -> Result<Outcome, EditError> {
    let entry = live_entry(doc, id)?;
    if crate::config::credentials::is_set(entry.get("pausedAt")) {
        return Ok(Outcome::AlreadySo("already paused"));
    }
    entry.insert("pausedAt".into(), json!(timestamp(now)));
    Ok(Outcome::Changed)
}

pub fn resume(doc: &mut KeyDocument, id: &str) -> Result<Outcome, EditError> {
    let entry = live_entry(doc, id)?;
    Ok(changed_if(
        entry.shift_remove("pausedAt").is_some(),
        "not paused",
    ))
}

/// Removes the entry; returns it so the caller can say what went.
pub fn delete(doc: &mut KeyDocument, id: &str) -> Result<Value, EditError> {
    let index = doc
        .position(id)
        .ok_or_else(|| EditError::UnknownId(id.to_string()))?;
    Ok(doc.entries_mut().remove(index))
}

/// The entry named `id`, refusing revoked keys.
fn live_entry<'d>(
    doc: &'d mut KeyDocument,
    id: &str,
) -> Result<&'d mut Map<String, Value>, EditError> {
    let index = doc
        .position(id)
        .ok_or_else(|| EditError::UnknownId(id.to_string()))?;
    let entry = doc.object_mut(index);
    if crate::config::credentials::is_set(entry.get("revokedAt")) {
        return Err(EditError::Revoked(id.to_string()));
    }
    Ok(entry)
}

fn set_or_remove(entry: &mut Map<String, Value>, field: &str, value: Option<Value>) {
    match value {
        Some(v) => {
            entry.insert(field.into(), v);
        }
        None => {
            entry.shift_remove(field);
        }
    }
}

fn changed_if(changed: bool, otherwise: &'static str) -> Outcome {
    if changed {
        Outcome::Changed
    } else {
        Outcome::AlreadySo(otherwise)
    }
}

#[cfg(test)]
#[path = "edit_tests.rs"]
mod tests;
