//! Fixed windows aligned to the epoch, and the numbers a client is told about them.

use super::RateLimitError;

/// How many requests one bucket may make per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests allowed per window. Zero denies every request; to turn limiting off use
    /// [`super::RateLimiter::Disabled`] instead.
    pub limit: u32,
    /// Window length in seconds; must be at least 1.
    pub window_seconds: u32,
}

impl Quota {
    /// Builds a quota, rejecting a zero-length window so configuration errors surface at
    /// load time rather than as a failed check on every request.
    pub fn new(limit: u32, window_seconds: u32) -> Result<Self, RateLimitError> {
        let quota = Self {
            limit,
            window_seconds,
        };
        Window::containing(0, quota)?;
        Ok(quota)
    }
}

/// The outcome of one counted request, in the units of the `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitVerdict {
    /// Whether this request fits in the window.
    pub allowed: bool,
    /// The quota's limit (`X-RateLimit-Limit`).
    pub limit: u32,
    /// Requests left in this window after this one (`X-RateLimit-Remaining`).
    pub remaining: u32,
    /// Epoch seconds at which the window ends (`X-RateLimit-Reset`).
    pub reset_epoch: u64,
    /// Seconds until the window ends when denied (`Retry-After`, `retryAfter`); 0 when allowed.
    pub retry_after_seconds: u64,
}

/// The fixed window that contains one instant: `[start, end)` in epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) start: u64,
    pub(crate) end: u64,
    quota: Quota,
}

impl Window {
    /// The window holding `now`; windows start at multiples of the window length so every
    /// replica with a synchronised clock agrees on the boundaries.
    pub(crate) fn containing(now: u64, quota: Quota) -> Result<Self, RateLimitError> {
        if quota.window_seconds == 0 {
            return Err(RateLimitError::InvalidQuota {
                reason: "window_seconds must be at least 1",
            });
        }
        let length = u64::from(quota.window_seconds);
        let start = now - now % length;
        Ok(Self {
            start,
            end: start.saturating_add(length),
            quota,
        })
    }

    /// The window length in seconds.
    pub(crate) fn seconds(&self) -> u32 {
        self.quota.window_seconds
    }

    /// The verdict for the request that brought the window's count to `count`.
    pub(crate) fn verdict(&self, count: u64, now: u64) -> RateLimitVerdict {
        let limit = self.quota.limit;
        let allowed = count <= u64::from(limit);
        let remaining = u64::from(limit).saturating_sub(count);
        RateLimitVerdict {
            allowed,
            limit,
            remaining: u32::try_from(remaining).unwrap_or(limit),
            reset_epoch: self.end,
            retry_after_seconds: if allowed {
                0
            } else {
                self.end.saturating_sub(now)
            },
        }
    }

    /// How long a shared counter must outlive `now`: to the window end, plus one more
    /// window so a replica whose clock runs behind still finds the same counter.
    pub(crate) fn shared_ttl_seconds(&self, now: u64) -> u64 {
        self.end.saturating_sub(now) + u64::from(self.quota.window_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Quota = Quota {
        limit: 3,
        window_seconds: 60,
    };

    #[test]
    fn windows_align_to_the_epoch() {
        let w = Window::containing(1_700_000_061, MINUTE).unwrap();
        assert_eq!((w.start, w.end), (1_700_000_040, 1_700_000_100));
        let first = Window::containing(1_700_000_040, MINUTE).unwrap();
        assert_eq!(first.start, 1_700_000_040);
        let last = Window::containing(1_700_000_099, MINUTE).unwrap();
        assert_eq!(last, first);
        let next = Window::containing(1_700_000_100, MINUTE).unwrap();
        assert_eq!(next.start, 1_700_000_100);
    }

    #[test]
    fn remaining_counts_down_then_denies_with_retry_after() {
        let now = 1_700_000_090;
        let w = Window::containing(now, MINUTE).unwrap();
        let remaining: Vec<_> = (1..=3).map(|n| w.verdict(n, now).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        assert!(w.verdict(3, now).allowed);
        assert_eq!(w.verdict(3, now).retry_after_seconds, 0);

        let denied = w.verdict(4, now);
        assert!(!denied.allowed);
        assert_eq!(denied.remaining, 0);
        assert_eq!(denied.reset_epoch, 1_700_000_100);
        assert_eq!(denied.retry_after_seconds, 10);
    }

    #[test]
    fn last_second_of_a_window_still_asks_to_wait_one_second() {
        let now = 1_700_000_099;
        let denied = Window::containing(now, MINUTE).unwrap().verdict(9, now);
        assert_eq!(denied.retry_after_seconds, 1);
    }

    #[test]
    fn zero_limit_denies_and_zero_window_is_rejected() {
        let shut = Quota::new(0, 60).unwrap();
        let w = Window::containing(5, shut).unwrap();
        assert!(!w.verdict(1, 5).allowed);
        assert!(matches!(
            Quota::new(10, 0),
            Err(RateLimitError::InvalidQuota { .. })
        ));
    }

    #[test]
    fn shared_ttl_covers_the_rest_of_the_window_and_one_more() {
        let w = Window::containing(1_700_000_090, MINUTE).unwrap();
        assert_eq!(w.shared_ttl_seconds(1_700_000_090), 70);
    }
}
