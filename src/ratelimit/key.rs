//! What a bucket is keyed by, and its two spellings: a hashed in-memory key and a Redis key.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// Prefix of every counter this service writes to Redis.
pub const REDIS_KEY_PREFIX: &str = "agents-authz:rl:";

/// Which of the two limiter passes of spec section 6a is counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Before token lookup, keyed by client address: the brute-force guard.
    PreAuth,
    /// After authentication, keyed by client address and principal fingerprint.
    PostAuth,
}

impl Stage {
    /// The stable name used in keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PreAuth => "pre_auth",
            Self::PostAuth => "post_auth",
        }
    }
}

/// One bucket, borrowed from the request being checked.
///
/// `principal` must already be a non-secret fingerprint: it is written into Redis keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitKey<'a> {
    pub stage: Stage,
    pub route: &'a str,
    pub client_ip: Option<IpAddr>,
    pub principal: Option<&'a str>,
}

impl RateLimitKey<'_> {
    /// An IPv4 client seen through an IPv4-mapped IPv6 socket counts in the same bucket as
    /// the plain IPv4 address.
    fn canonical_ip(&self) -> Option<IpAddr> {
        self.client_ip.map(|ip| ip.to_canonical())
    }

    /// Feeds the bucket identity to `state`. [`OwnedKey`] is never hashed itself: the memory
    /// store keeps this hash beside each entry, so the two cannot drift apart.
    pub(crate) fn hash_into<H: Hasher>(&self, window_seconds: u32, state: &mut H) {
        self.stage.hash(state);
        window_seconds.hash(state);
        self.route.hash(state);
        self.canonical_ip().hash(state);
        self.principal.hash(state);
    }

    /// The Redis counter for this bucket in the window starting at `window_start`.
    ///
    /// Layout: `prefix stage:window_seconds:window_start:ip:principal:route`, where `ip` is
    /// `-`, a dotted IPv4 or a bracketed IPv6, `principal` is `-` or `<len>.<text>`, and the
    /// route is the free-form rest. Brackets and the length prefix keep the mapping one-to-one
    /// even though IPv6 addresses, fingerprints and routes may all contain `:`.
    pub(crate) fn redis_key(&self, window_seconds: u32, window_start: u64) -> String {
        let principal_len = self.principal.map_or(1, |p| p.len() + 4);
        let mut key =
            String::with_capacity(REDIS_KEY_PREFIX.len() + 64 + principal_len + self.route.len());
        key.push_str(REDIS_KEY_PREFIX);
        // Writing into a String cannot fail.
        let _ = write!(
            key,
            "{}:{window_seconds}:{window_start}:",
            self.stage.as_str()
        );
        let _ = match self.canonical_ip() {
            None => write!(key, "-"),
            Some(IpAddr::V4(ip)) => write!(key, "{ip}"),
            Some(IpAddr::V6(ip)) => write!(key, "[{ip}]"),
        };
        let _ = match self.principal {
            None => write!(key, ":-:"),
            Some(p) => write!(key, ":{}.{p}:", p.len()),
        };
        key.push_str(self.route);
        key
    }
}

/// The owned copy of a bucket identity kept by the memory store; allocated only when a
/// bucket is first seen, never on the lookup path.
#[derive(Debug)]
pub(crate) struct OwnedKey {
    stage: Stage,
    window_seconds: u32,
    route: Box<str>,
    client_ip: Option<IpAddr>,
    principal: Option<Box<str>>,
}

impl OwnedKey {
    pub(crate) fn new(key: &RateLimitKey<'_>, window_seconds: u32) -> Self {
        Self {
            stage: key.stage,
            window_seconds,
            route: key.route.into(),
            client_ip: key.canonical_ip(),
            principal: key.principal.map(Into::into),
        }
    }

    pub(crate) fn matches(&self, key: &RateLimitKey<'_>, window_seconds: u32) -> bool {
        self.stage == key.stage
            && self.window_seconds == window_seconds
            && *self.route == *key.route
            && self.client_ip == key.canonical_ip()
            && self.principal.as_deref() == key.principal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(route: &'a str, ip: Option<&str>, principal: Option<&'a str>) -> RateLimitKey<'a> {
        RateLimitKey {
            stage: Stage::PostAuth,
            route,
            client_ip: ip.map(|s| s.parse().unwrap()),
            principal,
        }
    }

    #[test]
    fn redis_key_reads_well_for_each_address_family() {
        let v4 = key("/agents/v1/products", Some("10.0.0.7"), Some("fp01"));
        assert_eq!(
            v4.redis_key(60, 1_700_000_040),
            "agents-authz:rl:post_auth:60:1700000040:10.0.0.7:4.fp01:/agents/v1/products"
        );
        let v6 = RateLimitKey {
            stage: Stage::PreAuth,
            ..key("r", Some("2001:db8::1"), None)
        };
        assert_eq!(
            v6.redis_key(60, 0),
            "agents-authz:rl:pre_auth:60:0:[2001:db8::1]:-:r"
        );
    }

    #[test]
    fn redis_key_cannot_confuse_colons_in_principal_and_route() {
        let a = key("c:d", None, Some("a:b"));
        let b = key("b:c:d", None, Some("a"));
        assert_ne!(a.redis_key(60, 0), b.redis_key(60, 0));
    }

    #[test]
    fn mapped_ipv4_shares_the_plain_ipv4_bucket() {
        let mapped = key("r", Some("::ffff:10.0.0.7"), None);
        let plain = key("r", Some("10.0.0.7"), None);
        assert_eq!(mapped.redis_key(60, 0), plain.redis_key(60, 0));
        assert!(OwnedKey::new(&plain, 60).matches(&mapped, 60));
    }

    #[test]
    fn owned_key_matches_only_its_own_bucket() {
        let k = key("r", Some("10.0.0.7"), Some("fp"));
        let owned = OwnedKey::new(&k, 60);
        assert!(owned.matches(&k, 60));
        assert!(!owned.matches(&k, 30));
        assert!(!owned.matches(&key("r", Some("10.0.0.8"), Some("fp")), 60));
        assert!(!owned.matches(&key("r", Some("10.0.0.7"), None), 60));
        assert!(!owned.matches(&key("s", Some("10.0.0.7"), Some("fp")), 60));
        let pre = RateLimitKey {
            stage: Stage::PreAuth,
            ..k
        };
        assert!(!owned.matches(&pre, 60));
    }
}
