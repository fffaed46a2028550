//! Fixed-window rate limiting for the two limiter passes of spec section 6: a store
//! counts one request per check and answers with the numbers for the `X-RateLimit-*`
//! headers. Standalone: nothing here knows about requests, credentials or responses.

mod error;
mod key;
mod memory;
mod redis_store;
mod window;

pub use error::RateLimitError;
pub use key::{REDIS_KEY_PREFIX, RateLimitKey, Stage};
pub use memory::{MemoryConfig, MemoryStore};
pub use redis_store::{RedisConfig, RedisStore};
pub use window::{Quota, RateLimitVerdict};

/// The store chosen by `--rate-limit-store`.
#[derive(Debug)]
pub enum RateLimiter {
    /// `off`: nothing is counted and no rate-limit headers are sent.
    Disabled,
    /// `memory` (the default): exact counters in this process only.
    Memory(MemoryStore),
    /// `redis://HOST:PORT/DB`: counters shared by every replica using the same Redis.
    Redis(RedisStore),
}

impl RateLimiter {
    /// Builds the store named by a `--rate-limit-store` value: `memory`, `off`, or a
    /// `redis://` URL. Connects to Redis lazily, so this works before the runtime starts
    /// and does not fail when Redis is down at boot; checks fail closed until it answers.
    pub fn from_spec(spec: &str) -> Result<Self, RateLimitError> {
        let spec = spec.trim();
        if spec.eq_ignore_ascii_case("memory") {
            return Ok(Self::Memory(MemoryStore::new(MemoryConfig::default())));
        }
        if spec.eq_ignore_ascii_case("off") {
            return Ok(Self::Disabled);
        }
        if spec.starts_with("redis://") {
            return RedisStore::new(spec, RedisConfig::default()).map(Self::Redis);
        }
        // The spec is not echoed: a mistyped Redis URL may carry a password.
        Err(RateLimitError::InvalidSpec {
            reason: "expected `memory`, `off` or `redis://HOST:PORT/DB`".to_owned(),
        })
    }

    /// Counts one request against `key` at `now_epoch_seconds`.
    ///
    /// `Ok(None)` when limiting is disabled: no verdict, so no `X-RateLimit-*` headers and
    /// no `rateLimit` block in whoami. An `Err` means the store could not decide; spec
    /// section 6 says the request then fails closed.
    pub async fn check(
        &self,
        key: &RateLimitKey<'_>,
        quota: Quota,
        now_epoch_seconds: u64,
    ) -> Result<Option<RateLimitVerdict>, RateLimitError> {
        match self {
            Self::Disabled => Ok(None),
            Self::Memory(store) => store.check(key, quota, now_epoch_seconds).map(Some),
            Self::Redis(store) => store.check(key, quota, now_epoch_seconds).await.map(Some),
        }
    }

    /// The numbers `key` would see now, without counting a request.
    pub async fn peek(
        &self,
        key: &RateLimitKey<'_>,
        quota: Quota,
        now_epoch_seconds: u64,
    ) -> Result<Option<RateLimitVerdict>, RateLimitError> {
        match self {
            Self::Disabled => Ok(None),
            Self::Memory(store) => store.peek(key, quota, now_epoch_seconds).map(Some),
            Self::Redis(store) => store.peek(key, quota, now_epoch_seconds).await.map(Some),
        }
    }

    /// Whether the store can answer now: always for `off` and `memory`, a PING for Redis.
    /// Meant for readiness probes.
    pub async fn ping(&self) -> Result<(), RateLimitError> {
        match self {
            Self::Disabled | Self::Memory(_) => Ok(()),
            Self::Redis(store) => store.ping().await,
        }
    }

    /// The store kind for logs and posture: `off`, `memory` or `redis`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Disabled => "off",
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_selects_the_store() {
        assert_eq!(RateLimiter::from_spec("memory").unwrap().kind(), "memory");
        assert_eq!(RateLimiter::from_spec(" OFF ").unwrap().kind(), "off");
        let redis = RateLimiter::from_spec("redis://127.0.0.1:6379/2").unwrap();
        assert_eq!(redis.kind(), "redis");
    }

    #[test]
    fn a_bad_spec_is_refused_without_echoing_it() {
        let err = RateLimiter::from_spec("redis:/admin:hunter2@cache").unwrap_err();
        assert!(matches!(err, RateLimitError::InvalidSpec { .. }));
        assert!(!err.to_string().contains("hunter2"), "{err}");

        let err = RateLimiter::from_spec("redis://:hunter2@cache:notaport/0").unwrap_err();
        assert!(matches!(err, RateLimitError::InvalidSpec { .. }));
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn redis_store_is_named_without_its_password() {
        let limiter = RateLimiter::from_spec("redis://:hunter2@127.0.0.1:6390/3").unwrap();
        let shown = format!("{limiter:?}");
        assert!(shown.contains("127.0.0.1:6390/3"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn disabled_gives_no_verdict() {
        let key = RateLimitKey {
            stage: Stage::PreAuth,
            route: "/r",
            client_ip: None,
            principal: None,
        };
        let quota = Quota::new(1, 60).unwrap();
        let verdict = RateLimiter::Disabled.check(&key, quota, 0).await.unwrap();
        assert_eq!(verdict, None);
    }

    #[tokio::test]
    async fn memory_limiter_counts_through_the_enum() {
        let limiter = RateLimiter::from_spec("memory").unwrap();
        let key = RateLimitKey {
            stage: Stage::PreAuth,
            route: "/r",
            client_ip: None,
            principal: None,
        };
        let quota = Quota::new(1, 60).unwrap();
        let first = limiter.check(&key, quota, 0).await.unwrap().unwrap();
        let second = limiter.check(&key, quota, 1).await.unwrap().unwrap();
        assert!(first.allowed && !second.allowed);
    }
}
