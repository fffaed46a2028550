//! A key's status as `keys list` shows it, from the same fields and rules the loader uses
//! to decide whether the key authenticates.

use crate::config::credentials::{is_set, parse_time};
use serde_json::{Map, Value};

/// A key that expires within this many days is shown as `expiring`.
pub const EXPIRING_WITHIN_DAYS: i64 = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// Authenticates.
    Active,
    /// Authenticates, but expires within [`EXPIRING_WITHIN_DAYS`].
    Expiring,
    Expired,
    Paused,
    /// Final: a revoked key is never resumed.
    Revoked,
    /// The loader skips the entry (a field it cannot read); it authenticates nothing.
    Invalid,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Expiring => "expiring",
            KeyStatus::Expired => "expired",
            KeyStatus::Paused => "paused",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Invalid => "invalid",
        }
    }

    /// True when the service accepts the key's token.
    pub fn authenticates(self) -> bool {
        matches!(self, KeyStatus::Active | KeyStatus::Expiring)
    }
}

/// The most severe state first: revoked beats paused beats expired. `invalid` only
/// covers what this function reads (an unreadable `expiresAt`); other entry problems are
/// reported by the loader's warnings.
pub fn status(entry: &Map<String, Value>, now_epoch: i64) -> KeyStatus {
    if is_set(entry.get("revokedAt")) {
        return KeyStatus::Revoked;
    }
    if is_set(entry.get("pausedAt")) {
        return KeyStatus::Paused;
    }
    let expires = match entry.get("expiresAt") {
        None | Some(Value::Null) => return KeyStatus::Active,
        Some(Value::String(raw)) => match parse_time(raw) {
            Ok(at) => at,
            Err(_) => return KeyStatus::Invalid,
        },
        Some(_) => return KeyStatus::Invalid,
    };
    // The service's own rule: a key expires at its expiresAt second.
    if expires <= now_epoch {
        KeyStatus::Expired
    } else if expires - now_epoch <= EXPIRING_WITHIN_DAYS * 86_400 {
        KeyStatus::Expiring
    } else {
        KeyStatus::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_796_000_000;

    fn of(v: Value) -> KeyStatus {
        status(v.as_object().unwrap(), NOW)
    }

    fn at(epoch: i64) -> String {
        crate::keys::validate::timestamp(time::OffsetDateTime::from_unix_timestamp(epoch).unwrap())
    }

    #[test]
    fn severity_order_and_expiry_window() {
        assert_eq!(of(json!({})), KeyStatus::Active);
        assert_eq!(
            of(json!({"expiresAt": at(NOW + 8 * 86_400)})),
            KeyStatus::Active
        );
        assert_eq!(
            of(json!({"expiresAt": at(NOW + 86_400)})),
            KeyStatus::Expiring
        );
        assert_eq!(of(json!({"expiresAt": at(NOW)})), KeyStatus::Expired);
        assert_eq!(
            of(json!({"expiresAt": at(NOW - 1), "pausedAt": at(NOW)})),
            KeyStatus::Paused
        );
        assert_eq!(
            of(json!({"pausedAt": true, "revokedAt": at(NOW)})),
            KeyStatus::Revoked
        );
        assert_eq!(of(json!({"pausedAt": ""})), KeyStatus::Active);
        assert_eq!(of(json!({"expiresAt": "soon"})), KeyStatus::Invalid);
        assert!(KeyStatus::Expiring.authenticates() && !KeyStatus::Paused.authenticates());
    }
}
