//! Checks on what an operator asks `keys` to write, using the loader's own normalisers so
//! that everything written loads exactly as written.

use super::edit::EditError;
use crate::config::credentials::{normalize_id, parse_net};
use crate::core::scopes::{WILDCARD, is_known, normalize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// Longest `--expires-in`: about a hundred years, far past any sensible key lifetime.
pub const MAX_EXPIRY_DAYS: u32 = 36_500;

/// A new key's id must already be in the loader's normal form, so the id an operator
/// types is the id logs and `keys list` show.
pub fn new_id(raw: &str) -> Result<String, EditError> {
    let normal = normalize_id(raw, 0);
    if raw.is_empty() || normal != raw {
        let suggestion = (!raw.trim().is_empty()).then_some(normal);
        return Err(EditError::InvalidId {
            raw: raw.to_string(),
            suggestion,
        });
    }
    Ok(normal)
}

/// Normalised scopes; refuses an empty list (the key would silently get the default
/// scopes), `*` (never granted to a key) and, unless allowed, names the API does not know.
pub fn scopes(raw: &[String], allow_unknown: bool) -> Result<Vec<String>, EditError> {
    let scopes = normalize(raw.iter().map(String::as_str));
    if scopes.is_empty() {
        return Err(EditError::NoScopes);
    }
    if scopes.iter().any(|s| s == WILDCARD) {
        return Err(EditError::WildcardScope);
    }
    let unknown: Vec<String> = scopes.iter().filter(|s| !is_known(s)).cloned().collect();
    if !allow_unknown && !unknown.is_empty() {
        return Err(EditError::UnknownScopes(unknown));
    }
    Ok(scopes)
}

/// Each address or CIDR in the form the loader reads it (`10.0.0.1` -> `10.0.0.1/32`),
/// duplicates dropped, order kept.
pub fn ip_allowlist(raw: &[String]) -> Result<Vec<String>, EditError> {
    let mut out: Vec<String> = Vec::new();
    for item in raw.iter().flat_map(|r| r.split(',')).map(str::trim) {
        let net = parse_net(item).ok_or_else(|| EditError::InvalidIp(item.to_string()))?;
        let net = net.to_string();
        if !out.contains(&net) {
            out.push(net);
        }
    }
    Ok(out)
}

/// `now` plus `days`, as RFC 3339 UTC to the second.
pub fn expires_at(now: OffsetDateTime, days: u32) -> Result<String, EditError> {
    if days == 0 || days > MAX_EXPIRY_DAYS {
        return Err(EditError::InvalidDays(days));
    }
    Ok(timestamp(now + Duration::days(i64::from(days))))
}

/// RFC 3339 in UTC, whole seconds: `2026-12-03T19:04:05Z`.
pub fn timestamp(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .expect("zero nanoseconds is valid")
        .format(&Rfc3339)
        .expect("a UTC time formats as RFC 3339")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ids_must_be_in_normal_form() {
        assert_eq!(new_id("ci-bot:eu_1").unwrap(), "ci-bot:eu_1");
        let err = new_id("CI Bot").unwrap_err();
        assert_eq!(
            err,
            EditError::InvalidId {
                raw: "CI Bot".into(),
                suggestion: Some("ci-bot".into())
            }
        );
        assert!(matches!(
            new_id(""),
            Err(EditError::InvalidId {
                suggestion: None,
                ..
            })
        ));
    }

    #[test]
    fn scopes_are_normalised_and_checked() {
        let got = scopes(&strings(&["Health:read,auth:read", "health:read"]), false).unwrap();
        assert_eq!(got, ["auth:read", "health:read"]);
        assert!(scopes(&strings(&["plugins:shop:items:read"]), false).is_ok());
        assert!(scopes(&strings(&["consumers:read"]), false).is_ok());
        assert_eq!(
            scopes(&strings(&["helth:read"]), false).unwrap_err(),
            EditError::UnknownScopes(strings(&["helth:read"]))
        );
        assert!(scopes(&strings(&["helth:read"]), true).is_ok());
        assert_eq!(scopes(&strings(&[" , "]), true), Err(EditError::NoScopes));
        assert_eq!(
            scopes(&strings(&["*"]), true),
            Err(EditError::WildcardScope)
        );
    }

    #[test]
    fn allowlists_are_canonical_and_invalid_entries_refused() {
        let got = ip_allowlist(&strings(&["10.0.0.1", "10.1.0.0/16,::ffff:10.0.0.1"])).unwrap();
        assert_eq!(got, ["10.0.0.1/32", "10.1.0.0/16"]);
        assert_eq!(
            ip_allowlist(&strings(&["10.0.0.300"])).unwrap_err(),
            EditError::InvalidIp("10.0.0.300".into())
        );
    }

    #[test]
    fn expiry_is_utc_seconds_and_bounded() {
        let now = OffsetDateTime::parse("2026-12-03T19:04:05.123+02:00", &Rfc3339).unwrap();
        assert_eq!(expires_at(now, 7).unwrap(), "2026-12-10T17:04:05Z");
        assert_eq!(expires_at(now, 0), Err(EditError::InvalidDays(0)));
        assert!(expires_at(now, MAX_EXPIRY_DAYS + 1).is_err());
    }
}
