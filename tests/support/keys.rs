//! Managed-keys files for tests: tokens are known to the test, only their SHA-256 is written.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// One managed key as the control panel would export it.
#[derive(Clone, Debug, Default)]
pub struct ManagedKey {
    pub id: String,
    pub token: String,
    pub scopes: Vec<String>,
    pub ip_allowlist: Option<Vec<String>>,
    pub expires_at: Option<String>,
    pub paused_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl ManagedKey {
    pub fn new(id: &str, token: &str, scopes: &[&str]) -> Self {
        let scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        Self {
            id: id.to_owned(),
            token: token.to_owned(),
            scopes,
            ..Self::default()
        }
    }

    pub fn allow_ips(mut self, ips: &[&str]) -> Self {
        self.ip_allowlist = Some(ips.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({
            "id": self.id,
            "tokenHash": sha256_hex(&self.token),
            "scopes": self.scopes,
        });
        let optional = [
            (
                "ipAllowlist",
                self.ip_allowlist.as_ref().map(|ips| json!(ips)),
            ),
            ("expiresAt", self.expires_at.as_ref().map(|t| json!(t))),
            ("pausedAt", self.paused_at.as_ref().map(|t| json!(t))),
            ("revokedAt", self.revoked_at.as_ref().map(|t| json!(t))),
        ];
        for (field, value) in optional {
            if let Some(value) = value {
                entry[field] = value;
            }
        }
        entry
    }
}

/// Lowercase hex SHA-256 of a token, the form managed keys are stored in.
pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Writes `{"credentials": [...]}` to `<dir>/managed-keys.json` and returns the path.
pub fn write_managed_keys(dir: &Path, keys: &[ManagedKey]) -> PathBuf {
    let credentials: Vec<Value> = keys.iter().map(ManagedKey::to_json).collect();
    let path = dir.join("managed-keys.json");
    let text = serde_json::to_string_pretty(&json!({ "credentials": credentials }))
        .expect("serialise managed keys");
    std::fs::write(&path, text).expect("write managed keys");
    path
}
