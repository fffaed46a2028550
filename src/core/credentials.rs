//! Credentials as the decision core sees them: digests, grants and restrictions, never
//! plaintext tokens, with a lookup that compares digests in constant time.

use super::scopes::Grant;
use ipnet::IpNet;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use subtle::ConstantTimeEq;

pub type TokenDigest = [u8; 32];

/// SHA-256 of a presented or configured token.
pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// A stable, non-secret handle for a credential: a keyed hash of its digest, so it
/// cannot be reversed to the token or matched against a leaked token hash.
pub fn fingerprint(digest: &TokenDigest) -> String {
    let mut h = Sha256::new();
    h.update(b"agents-authz/principal/v1:");
    h.update(digest);
    let out: [u8; 32] = h.finalize().into();
    format!("fp_{}", hex::encode(&out[..8]))
}

/// Where a credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialSource {
    /// Managed keys from the control panel (the managed-keys file).
    Managed,
    /// `PLUGIN_AGENTS_API_CREDENTIALS`.
    EnvJson,
    /// `PLUGIN_AGENTS_API_TOKEN`.
    EnvLegacy,
}

impl CredentialSource {
    /// The value of `x-agents-credential-source`.
    pub fn header_value(self) -> &'static str {
        match self {
            CredentialSource::Managed => "cp",
            CredentialSource::EnvJson | CredentialSource::EnvLegacy => "env",
        }
    }

    /// The name used in posture reports and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialSource::Managed => "managed",
            CredentialSource::EnvJson => "json",
            CredentialSource::EnvLegacy => "legacy",
        }
    }
}

/// Which client addresses may use a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpAllowlist {
    Any,
    /// Only these networks; empty means nowhere (every entry was invalid: fail closed).
    Only(Vec<IpNet>),
}

impl IpAllowlist {
    pub fn permits(&self, ip: Option<IpAddr>) -> bool {
        match self {
            IpAllowlist::Any => true,
            IpAllowlist::Only(nets) => {
                let Some(ip) = ip.map(canonical_ip) else {
                    return false;
                };
                nets.iter().any(|n| n.contains(&ip))
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are matched as IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[derive(Debug, Clone)]
pub struct Credential {
    pub id: Box<str>,
    pub source: CredentialSource,
    pub digest: TokenDigest,
    pub fingerprint: Box<str>,
    pub grant: Grant,
    pub allowlist: IpAllowlist,
    pub expires_at: Option<i64>,
    pub paused: bool,
    pub revoked: bool,
}

/// Why a presented token did not authenticate. All of them answer 401; the reason is
/// for decision logs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    UnknownToken,
    Expired,
    Paused,
    Revoked,
    IpNotAllowed,
}

/// The merged credential set of a snapshot, indexed by digest prefix.
#[derive(Debug, Default)]
pub struct CredentialSet {
    entries: Vec<Credential>,
    /// The entry with a digest prefix. One index per key, no allocation per key: with a
    /// million keys a `Vec` per prefix cost about 60 MB.
    by_prefix: HashMap<u64, u32>,
    /// Prefixes several entries share (possible, though never seen with SHA-256 digests).
    shared: HashMap<u64, Vec<u32>>,
}

impl CredentialSet {
    /// Builds the set; entries must already be de-duplicated by digest.
    pub fn new(entries: Vec<Credential>) -> Self {
        let mut by_prefix: HashMap<u64, u32> = HashMap::with_capacity(entries.len());
        let mut shared: HashMap<u64, Vec<u32>> = HashMap::new();
        for (i, c) in entries.iter().enumerate() {
            let p = prefix(&c.digest);
            if let Some(list) = shared.get_mut(&p) {
                list.push(i as u32);
            } else if let Some(first) = by_prefix.insert(p, i as u32) {
                by_prefix.remove(&p);
                shared.insert(p, vec![first, i as u32]);
            }
        }
        Self {
            entries,
            by_prefix,
            shared,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Credential> {
        self.entries.iter()
    }

    /// Finds the credential for a token and checks that it may be used now, from `ip`.
    pub fn authenticate(
        &self,
        token: &str,
        ip: Option<IpAddr>,
        now_epoch_seconds: i64,
    ) -> Result<&Credential, AuthFailure> {
        let presented = digest(token);
        let credential = self.find(&presented).ok_or(AuthFailure::UnknownToken)?;
        if credential.revoked {
            return Err(AuthFailure::Revoked);
        }
        if credential.paused {
            return Err(AuthFailure::Paused);
        }
        if credential
            .expires_at
            .is_some_and(|t| t <= now_epoch_seconds)
        {
            return Err(AuthFailure::Expired);
        }
        if !credential.allowlist.permits(ip) {
            return Err(AuthFailure::IpNotAllowed);
        }
        Ok(credential)
    }

    /// The hash map narrows by a non-secret-dependent amount of work to the few
    /// candidates sharing a digest prefix; the full digest is compared in constant time.
    fn find(&self, presented: &TokenDigest) -> Option<&Credential> {
        let p = prefix(presented);
        let candidates = match self.by_prefix.get(&p) {
            Some(i) => std::slice::from_ref(i),
            None => self.shared.get(&p)?.as_slice(),
        };
        candidates
            .iter()
            .map(|&i| &self.entries[i as usize])
            .find(|c| bool::from(c.digest.ct_eq(presented)))
    }
}

fn prefix(d: &TokenDigest) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::scopes::{FeatureFlags, GrantedScopes, normalize};

    pub(crate) fn credential(id: &str, token: &str) -> Credential {
        let d = digest(token);
        Credential {
            id: id.into(),
            source: CredentialSource::Managed,
            digest: d,
            fingerprint: fingerprint(&d).into(),
            grant: Grant::Scopes(GrantedScopes::resolve(
                &normalize(["health:read"]),
                FeatureFlags::default(),
            )),
            allowlist: IpAllowlist::Any,
            expires_at: None,
            paused: false,
            revoked: false,
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn digest_matches_sha256_hex() {
        assert_eq!(
            hex::encode(digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn fingerprint_is_stable_and_not_the_digest() {
        let d = digest("abc");
        let fp = fingerprint(&d);
        assert_eq!(fp, fingerprint(&d));
        assert_eq!(fp.len(), 3 + 16);
        assert!(!hex::encode(d).contains(&fp[3..]));
    }

    #[test]
    fn finds_the_matching_credential_only() {
        let set = CredentialSet::new(vec![credential("a", "tok-a"), credential("b", "tok-b")]);
        assert_eq!(&*set.authenticate("tok-b", None, 0).unwrap().id, "b");
        assert_eq!(
            set.authenticate("tok-c", None, 0).unwrap_err(),
            AuthFailure::UnknownToken
        );
    }

    #[test]
    fn keys_sharing_a_digest_prefix_are_told_apart_by_the_full_digest() {
        let a = credential("a", "token-a");
        let mut b = credential("b", "token-b");
        b.digest = a.digest;
        b.digest[31] ^= 1;
        let mut c = credential("c", "token-c");
        c.digest = a.digest;
        c.digest[30] ^= 1;
        let d = credential("d", "token-d");
        let digests = [a.digest, b.digest, c.digest, d.digest];
        let set = CredentialSet::new(vec![a, b, c, d]);
        for (digest, id) in digests.iter().zip(["a", "b", "c", "d"]) {
            assert_eq!(set.find(digest).map(|c| &*c.id), Some(id));
        }
        let mut stranger = digests[0];
        stranger[29] ^= 1;
        assert!(set.find(&stranger).is_none());
    }

    #[test]
    fn revoked_paused_and_expired_keys_do_not_authenticate() {
        let mut c = credential("a", "t");
        c.revoked = true;
        let set = CredentialSet::new(vec![c.clone()]);
        assert_eq!(
            set.authenticate("t", None, 0).err(),
            Some(AuthFailure::Revoked)
        );
        c.revoked = false;
        c.paused = true;
        let set = CredentialSet::new(vec![c.clone()]);
        assert_eq!(
            set.authenticate("t", None, 0).err(),
            Some(AuthFailure::Paused)
        );
        c.paused = false;
        c.expires_at = Some(99);
        let set = CredentialSet::new(vec![c]);
        assert_eq!(
            set.authenticate("t", None, 100).err(),
            Some(AuthFailure::Expired)
        );
        assert_eq!(
            set.authenticate("t", None, 99).err(),
            Some(AuthFailure::Expired)
        );
        assert!(set.authenticate("t", None, 98).is_ok());
    }

    #[test]
    fn allowlist_matches_v4_v6_and_single_addresses() {
        let list = IpAllowlist::Only(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
            "192.168.1.7/32".parse().unwrap(),
        ]);
        assert!(list.permits(ip("192.168.1.7")));
        assert!(!list.permits(ip("192.168.1.8")));
        assert!(list.permits(ip("10.20.30.40")));
        assert!(list.permits(ip("2001:db8::1")));
        assert!(list.permits(ip("::ffff:10.1.2.3")));
        assert!(!list.permits(None));
    }

    #[test]
    fn empty_allowlist_permits_nobody() {
        assert!(!IpAllowlist::Only(vec![]).permits(ip("127.0.0.1")));
        assert!(IpAllowlist::Any.permits(None));
    }

    #[test]
    fn ip_outside_allowlist_is_refused() {
        let mut c = credential("a", "t");
        c.allowlist = IpAllowlist::Only(vec!["127.0.0.2/32".parse().unwrap()]);
        let set = CredentialSet::new(vec![c]);
        assert!(set.authenticate("t", ip("127.0.0.2"), 0).is_ok());
        assert_eq!(
            set.authenticate("t", ip("127.0.0.1"), 0).err(),
            Some(AuthFailure::IpNotAllowed)
        );
    }
}
