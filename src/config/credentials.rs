//! Parsing the three credential sources into core credentials (spec section 2).
//! Each problem becomes a [`ConfigWarning`] naming the source and entry; no warning ever
//! contains a token.

use crate::core::credentials::{
    Credential, CredentialSource, IpAllowlist, TokenDigest, digest, fingerprint,
};
use crate::core::scopes::{FeatureFlags, Grant, GrantedScopes, WILDCARD, normalize};
use crate::core::warning::ConfigWarning;
use ipnet::IpNet;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const CREDENTIALS_VAR: &str = "PLUGIN_AGENTS_API_CREDENTIALS";
pub const LEGACY_TOKEN_VAR: &str = "PLUGIN_AGENTS_API_TOKEN";
pub const TOKEN_SCOPES_VAR: &str = "PLUGIN_AGENTS_TOKEN_SCOPES";

/// Lowercase; runs outside `a-z 0-9 : _ -` become `-`; trim `-`; empty becomes
/// `credential-<position>` (1-based).
pub fn normalize_id(raw: &str, position: usize) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_run = false;
    for c in raw.chars().map(|c| c.to_ascii_lowercase()) {
        if matches!(c, 'a'..='z' | '0'..='9' | ':' | '_' | '-') {
            out.push(c);
            in_run = false;
        } else if !in_run {
            out.push('-');
            in_run = true;
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        format!("credential-{position}")
    } else {
        trimmed.to_string()
    }
}

/// One credential before it is checked against the others.
struct Candidate {
    id: String,
    source: CredentialSource,
    digest: TokenDigest,
    /// Shared between candidates with the same list (see `CredentialBuilder::intern`).
    scopes: Option<Arc<[String]>>,
    allowlist: IpAllowlist,
    expires_at: Option<i64>,
    paused: bool,
    revoked: bool,
}

/// Collects credentials from every source, then merges them.
pub struct CredentialBuilder {
    candidates: Vec<Candidate>,
    /// Each distinct scope list once: managed keys mostly share a few lists, and a million
    /// keys must not hold a million copies.
    scope_lists: HashSet<Arc<[String]>>,
    pub warnings: Vec<ConfigWarning>,
}

impl Default for CredentialBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl CredentialBuilder {
    pub fn new() -> Self {
        Self {
            candidates: Vec::new(),
            scope_lists: HashSet::new(),
            warnings: Vec::new(),
        }
    }

    /// The managed-keys document: `{"credentials": [...]}` or a bare list.
    /// `Err` only when the document as a whole has the wrong shape.
    pub fn add_managed(&mut self, source_name: &str, doc: &Value) -> Result<(), String> {
        let list = match doc {
            Value::Array(list) => list,
            Value::Object(map) => match map.get("credentials") {
                Some(Value::Array(list)) => list,
                _ => return Err("expected a list, or an object with a \"credentials\" list".into()),
            },
            _ => return Err("expected a list, or an object with a \"credentials\" list".into()),
        };
        for (i, entry) in list.iter().enumerate() {
            self.add_managed_entry(source_name, i + 1, entry);
        }
        Ok(())
    }

    /// One entry of a managed-keys document, at its 1-based `position`; a bad entry is
    /// skipped with a warning.
    pub fn add_managed_entry(&mut self, source_name: &str, position: usize, entry: &Value) {
        match self.managed_entry(source_name, entry, position) {
            Ok(c) => self.candidates.push(c),
            Err(reason) => self.warnings.push(
                ConfigWarning::new(source_name, format!("{reason}; key skipped"))
                    .at(format!("entry {position}")),
            ),
        }
    }

    fn intern(&mut self, scopes: Option<Vec<String>>) -> Option<Arc<[String]>> {
        let scopes = scopes?;
        if let Some(shared) = self.scope_lists.get(scopes.as_slice()) {
            return Some(shared.clone());
        }
        let shared: Arc<[String]> = scopes.into();
        self.scope_lists.insert(shared.clone());
        Some(shared)
    }

    fn managed_entry(
        &mut self,
        source_name: &str,
        entry: &Value,
        position: usize,
    ) -> Result<Candidate, String> {
        let obj = entry.as_object().ok_or("not an object")?;
        let id = normalize_id(optional_str(obj, "id")?.unwrap_or(""), position);
        let hash = optional_str(obj, "tokenHash")?.ok_or("tokenHash is missing")?;
        let digest = parse_token_hash(hash)?;
        let scopes = parse_scopes(obj.get("scopes")).map_err(|e| format!("scopes {e}"))?;
        let scopes = self.intern(scopes);
        let allowlist = self.parse_allowlist(source_name, &id, obj.get("ipAllowlist"))?;
        let expires_at = match optional_str(obj, "expiresAt")? {
            None => None,
            Some(raw) => Some(parse_time(raw).map_err(|e| format!("expiresAt {e}"))?),
        };
        Ok(Candidate {
            id,
            source: CredentialSource::Managed,
            digest,
            scopes,
            allowlist,
            expires_at,
            paused: is_set(obj.get("pausedAt")),
            revoked: is_set(obj.get("revokedAt")),
        })
    }

    fn parse_allowlist(
        &mut self,
        source_name: &str,
        id: &str,
        value: Option<&Value>,
    ) -> Result<IpAllowlist, String> {
        let list = match value {
            None | Some(Value::Null) => return Ok(IpAllowlist::Any),
            Some(Value::Array(list)) => list,
            Some(_) => return Err("ipAllowlist is not a list".into()),
        };
        if list.is_empty() {
            return Ok(IpAllowlist::Any);
        }
        let mut nets = Vec::new();
        for item in list {
            match item.as_str().and_then(parse_net) {
                Some(net) => nets.push(net),
                None => self.warnings.push(
                    ConfigWarning::new(
                        source_name,
                        format!(
                            "ipAllowlist entry {} is not an IP address or CIDR; it is ignored and never widens access",
                            short_json(item)
                        ),
                    )
                    .at(id),
                ),
            }
        }
        if nets.is_empty() {
            self.warnings.push(
                ConfigWarning::new(
                    source_name,
                    "every ipAllowlist entry is invalid: the key authenticates from nowhere",
                )
                .at(id),
            );
        }
        Ok(IpAllowlist::Only(nets))
    }

    /// `PLUGIN_AGENTS_API_CREDENTIALS`: one object, a list, or an object keyed by id.
    pub fn add_json_set(&mut self, raw: &str) {
        let doc: Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            Err(e) => {
                self.warnings.push(ConfigWarning::new(
                    CREDENTIALS_VAR,
                    format!(
                        "not valid JSON (line {}, column {}); no credentials read from it",
                        e.line(),
                        e.column()
                    ),
                ));
                return;
            }
        };
        let entries: Vec<(Option<&str>, &Value)> = match &doc {
            Value::Array(list) => list.iter().map(|v| (None, v)).collect(),
            Value::Object(map) if map.contains_key("token") || map.contains_key("value") => {
                vec![(None, &doc)]
            }
            Value::Object(map) => map.iter().map(|(k, v)| (Some(k.as_str()), v)).collect(),
            _ => {
                self.warnings.push(ConfigWarning::new(
                    CREDENTIALS_VAR,
                    "expected an object or a list of objects; no credentials read from it",
                ));
                return;
            }
        };
        for (i, (key, entry)) in entries.into_iter().enumerate() {
            let at = key.map_or_else(
                || format!("entry {}", i + 1),
                |k| format!("entry {:?}", normalize_id(k, i + 1)),
            );
            match json_set_entry(key, entry, i + 1) {
                Ok(c) => self.candidates.push(c),
                Err(reason) => self.warnings.push(
                    ConfigWarning::new(CREDENTIALS_VAR, format!("{reason}; entry skipped")).at(at),
                ),
            }
        }
    }

    /// `PLUGIN_AGENTS_API_TOKEN`: the legacy single token, id `default`.
    pub fn add_legacy(&mut self, token: &str) {
        let token = token.trim();
        if token.is_empty() {
            return;
        }
        self.candidates.push(Candidate {
            id: "default".into(),
            source: CredentialSource::EnvLegacy,
            digest: digest(token),
            scopes: None,
            allowlist: IpAllowlist::Any,
            expires_at: None,
            paused: false,
            revoked: false,
        });
    }

    /// Merges in the order added; the first of two entries with the same token wins.
    pub fn build(
        mut self,
        default_scopes: &[String],
        flags: FeatureFlags,
    ) -> (Vec<Credential>, Vec<ConfigWarning>) {
        let mut seen = HashSet::with_capacity(self.candidates.len());
        // Credentials with the same scope list share one resolved grant.
        let default_grant = GrantedScopes::resolve(default_scopes, flags);
        let mut grants: HashMap<Arc<[String]>, GrantedScopes> = HashMap::new();
        let mut out = Vec::with_capacity(self.candidates.len());
        for c in std::mem::take(&mut self.candidates) {
            if !seen.insert(c.digest) {
                self.warnings.push(
                    ConfigWarning::new(
                        c.source.as_str(),
                        "same token as an earlier credential; the earlier one is kept",
                    )
                    .at(&c.id),
                );
                continue;
            }
            let scopes = c.scopes.as_deref().unwrap_or(default_scopes);
            if scopes.iter().any(|s| s == WILDCARD) {
                self.warnings.push(
                    ConfigWarning::new(
                        c.source.as_str(),
                        "scope \"*\" is only granted when token enforcement is off; dropped",
                    )
                    .at(&c.id),
                );
            }
            let grant = match &c.scopes {
                None => default_grant.clone(),
                Some(list) => grants
                    .entry(list.clone())
                    .or_insert_with(|| GrantedScopes::resolve(list, flags))
                    .clone(),
            };
            let d = c.digest;
            out.push(Credential {
                id: c.id.into(),
                source: c.source,
                digest: d,
                fingerprint: fingerprint(&d).into(),
                grant: Grant::Scopes(grant),
                allowlist: c.allowlist,
                expires_at: c.expires_at,
                paused: c.paused,
                revoked: c.revoked,
            });
        }
        self.warnings.extend(duplicate_ids(&out));
        (out, self.warnings)
    }
}

/// One warning per credential whose id an earlier one already uses. Borrows the ids
/// rather than copying them: with a million keys the copies would outlive the build as
/// heap fragments.
fn duplicate_ids(credentials: &[Credential]) -> Vec<ConfigWarning> {
    let mut ids = HashSet::with_capacity(credentials.len());
    credentials
        .iter()
        .filter(|c| !ids.insert(&*c.id))
        .map(|c| {
            ConfigWarning::new(
                c.source.as_str(),
                "id is used by an earlier credential; logs cannot tell them apart",
            )
            .at(&*c.id)
        })
        .collect()
}

fn json_set_entry(key: Option<&str>, entry: &Value, position: usize) -> Result<Candidate, String> {
    let obj = entry.as_object().ok_or("not an object")?;
    let token = match optional_str(obj, "token")? {
        Some(t) if !t.trim().is_empty() => t,
        _ => optional_str(obj, "value")?.unwrap_or(""),
    }
    .trim();
    if token.is_empty() {
        return Err("has no token (or value)".into());
    }
    let raw_id = match key {
        Some(k) => k,
        None => match optional_str(obj, "id")? {
            Some(id) => id,
            None => optional_str(obj, "name")?.unwrap_or(""),
        },
    };
    Ok(Candidate {
        id: normalize_id(raw_id, position),
        source: CredentialSource::EnvJson,
        digest: digest(token),
        scopes: parse_scopes(obj.get("scopes"))
            .map_err(|e| format!("scopes {e}"))?
            .map(Arc::from),
        allowlist: IpAllowlist::Any,
        expires_at: None,
        paused: false,
        revoked: false,
    })
}

fn optional_str<'v>(obj: &'v Map<String, Value>, field: &str) -> Result<Option<&'v str>, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{field} is not a string")),
    }
}

/// `None` when absent or empty after normalisation (the default scopes apply).
fn parse_scopes(value: Option<&Value>) -> Result<Option<Vec<String>>, &'static str> {
    let scopes = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => normalize([s.as_str()]),
        Some(Value::Array(items)) => {
            let strs: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
            normalize(strs.ok_or("must be strings")?)
        }
        Some(_) => return Err("must be a list of strings or a string"),
    };
    Ok((!scopes.is_empty()).then_some(scopes))
}

fn parse_token_hash(raw: &str) -> Result<TokenDigest, String> {
    let mut out = [0u8; 32];
    if raw.len() != 64 || hex::decode_to_slice(raw, &mut out).is_err() {
        return Err("tokenHash is not a SHA-256 hex digest (64 hex characters)".into());
    }
    Ok(out)
}

/// An RFC 3339 timestamp as Unix seconds; shared with the `keys` command.
pub fn parse_time(raw: &str) -> Result<i64, String> {
    OffsetDateTime::parse(raw.trim(), &Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| "is not an RFC 3339 timestamp".into())
}

/// An IP address or CIDR, IPv4-mapped IPv6 folded to IPv4; shared with the `keys`
/// command so what it writes loads as written.
pub fn parse_net(raw: &str) -> Option<IpNet> {
    let raw = raw.trim();
    raw.parse::<IpNet>()
        .ok()
        .or_else(|| raw.parse::<IpAddr>().ok().map(IpNet::from))
        .map(|n| match n {
            IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                Some(v4) if v6.prefix_len() >= 96 => {
                    IpNet::V4(ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).expect("prefix fits"))
                }
                _ => n,
            },
            v4 => v4,
        })
}

/// A timestamp, `true` or any non-empty string marks the key paused or revoked.
pub fn is_set(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
    }
}

/// A JSON value for a warning, short enough for one log line.
fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 64 {
        format!("{}...", &s[..s.floor_char_boundary(64)])
    } else {
        s
    }
}

#[cfg(test)]
#[path = "credentials_tests.rs"]
mod tests;
