//! The shared store: one Redis counter per bucket and window, so every replica pointed at
//! the same Redis enforces one limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, RedisError, Script};
use tokio::sync::OnceCell;

use super::window::Window;
use super::{Quota, RateLimitError, RateLimitKey, RateLimitVerdict};

/// Increments the bucket and, when this call created it, gives it a lifetime. Running both
/// in one script makes them atomic: no counter can be left behind without an expiry.
const INCREMENT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return count
";

/// Timing and pooling of the Redis store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisConfig {
    /// Budget for one check, connection wait included; past it the check fails closed.
    /// Default 250 ms.
    pub call_timeout: Duration,
    /// Multiplexed connections used round-robin. Default 2.
    pub connections: usize,
    /// Longest pause between reconnection attempts while Redis is away, which bounds how
    /// long after Redis returns the first check succeeds. Default 1 s.
    pub reconnect_max_delay: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(250),
            connections: 2,
            reconnect_max_delay: Duration::from_secs(1),
        }
    }
}

/// Fixed-window counters in Redis, shared across replicas.
///
/// Connections are made on first use and remade in the background after a failure, so the
/// store recovers by itself when Redis comes back. Every failure, including a slow answer,
/// surfaces as an error within [`RedisConfig::call_timeout`].
///
/// Replicas must keep their clocks in sync (NTP): each computes the window from its own
/// clock, and a skewed replica counts part of a window into a neighbouring key.
pub struct RedisStore {
    /// Boxed: the parsed connection settings are large and needed only to (re)connect.
    client: Box<Client>,
    config: RedisConfig,
    pool: OnceCell<Box<[ConnectionManager]>>,
    next: AtomicUsize,
    script: Script,
    /// `host:port/db`, never the password; names the store in errors and logs.
    label: Arc<str>,
    /// Whether the last check reached Redis; logs only the transitions, not every failure.
    answering: AtomicBool,
}

impl RedisStore {
    /// Parses `url` without connecting.
    pub fn new(url: &str, config: RedisConfig) -> Result<Self, RateLimitError> {
        let client = Client::open(url).map_err(|e| RateLimitError::InvalidSpec {
            reason: format!("redis URL: {e}"),
        })?;
        let info = client.get_connection_info();
        let label = format!("{}/{}", info.addr(), info.redis_settings().db()).into();
        Ok(Self {
            client: Box::new(client),
            config,
            pool: OnceCell::new(),
            next: AtomicUsize::new(0),
            script: Script::new(INCREMENT_SCRIPT),
            label,
            answering: AtomicBool::new(true),
        })
    }

    /// Counts one request against `key` at `now_epoch_seconds` in the shared counter.
    pub async fn check(
        &self,
        key: &RateLimitKey<'_>,
        quota: Quota,
        now_epoch_seconds: u64,
    ) -> Result<RateLimitVerdict, RateLimitError> {
        let window = Window::containing(now_epoch_seconds, quota)?;
        let redis_key = key.redis_key(quota.window_seconds, window.start);
        let ttl = window.shared_ttl_seconds(now_epoch_seconds);
        let outcome = self.within_budget(self.increment(&redis_key, ttl)).await;
        self.note_outcome(&outcome);
        let count = u64::try_from(outcome?).map_err(|_| RateLimitError::BadReply {
            store: self.label.clone(),
            reason: "counter below zero".to_owned(),
        })?;
        Ok(window.verdict(count, now_epoch_seconds))
    }

    /// The numbers `key` would see now, without counting a request.
    pub async fn peek(
        &self,
        key: &RateLimitKey<'_>,
        quota: Quota,
        now_epoch_seconds: u64,
    ) -> Result<RateLimitVerdict, RateLimitError> {
        let window = Window::containing(now_epoch_seconds, quota)?;
        let redis_key = key.redis_key(quota.window_seconds, window.start);
        let read = async {
            let mut conn = self.connection().await?;
            redis::cmd("GET")
                .arg(&redis_key)
                .query_async::<Option<i64>>(&mut conn)
                .await
        };
        let outcome = self.within_budget(read).await;
        self.note_outcome(&outcome);
        let count = u64::try_from(outcome?.unwrap_or(0)).unwrap_or(0);
        Ok(window.verdict(count, now_epoch_seconds))
    }

    /// One PING within the call budget.
    pub async fn ping(&self) -> Result<(), RateLimitError> {
        let ping = async {
            let mut conn = self.connection().await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await
        };
        let outcome = self.within_budget(ping).await;
        self.note_outcome(&outcome);
        outcome
    }

    async fn increment(&self, redis_key: &str, ttl: u64) -> Result<i64, RedisError> {
        let mut conn = self.connection().await?;
        self.script
            .key(redis_key)
            .arg(ttl)
            .invoke_async(&mut conn)
            .await
    }

    /// Runs one Redis exchange under the call budget and names the store in its error.
    async fn within_budget<T>(
        &self,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RateLimitError> {
        match tokio::time::timeout(self.config.call_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.classify(&e)),
            Err(_) => Err(self.timeout_error()),
        }
    }

    /// The next pooled connection, building the pool on first use. The managers connect
    /// lazily, so building them needs only the runtime, not a reachable Redis.
    async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        let pool = self
            .pool
            .get_or_try_init(|| async { self.build_pool() })
            .await?;
        let index = self.next.fetch_add(1, Ordering::Relaxed) % pool.len();
        Ok(pool[index].clone())
    }

    fn build_pool(&self) -> Result<Box<[ConnectionManager]>, RedisError> {
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.config.call_timeout))
            .set_response_timeout(Some(self.config.call_timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(self.config.reconnect_max_delay)
            .set_number_of_retries(4);
        (0..self.config.connections.max(1))
            .map(|_| {
                ConnectionManager::new_lazy_with_config(
                    (*self.client).clone(),
                    manager_config.clone(),
                )
            })
            .collect()
    }

    fn classify(&self, e: &RedisError) -> RateLimitError {
        let store = self.label.clone();
        if e.is_timeout() {
            return self.timeout_error();
        }
        match e.kind() {
            ErrorKind::Parse | ErrorKind::UnexpectedReturnType | ErrorKind::Server(_) => {
                RateLimitError::BadReply {
                    store,
                    reason: e.to_string(),
                }
            }
            _ => RateLimitError::Unreachable {
                store,
                reason: e.to_string(),
            },
        }
    }

    fn timeout_error(&self) -> RateLimitError {
        RateLimitError::Timeout {
            store: self.label.clone(),
            timeout_ms: u64::try_from(self.config.call_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// One warning when Redis stops answering and one notice when it is back, instead of a
    /// line per failed request; per-request failures are the caller's decision log.
    fn note_outcome<T>(&self, outcome: &Result<T, RateLimitError>) {
        let answering = outcome.is_ok();
        if self.answering.load(Ordering::Relaxed) == answering
            || self.answering.swap(answering, Ordering::Relaxed) == answering
        {
            return;
        }
        match outcome {
            Ok(_) => tracing::info!(
                ratelimit.store = %self.label,
                "rate-limit store answering again"
            ),
            Err(error) => tracing::warn!(
                ratelimit.store = %self.label,
                %error,
                "rate-limit store not answering; rate-limited requests fail closed"
            ),
        }
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("store", &self.label)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
