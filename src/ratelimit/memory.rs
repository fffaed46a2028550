//! The in-process store: one exact counter per bucket, spread over independently locked
//! shards so concurrent checks on different buckets rarely meet.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use hashbrown::HashTable;

use super::key::OwnedKey;
use super::window::Window;
use super::{Quota, RateLimitError, RateLimitKey, RateLimitVerdict};

/// Sizing of the memory store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Number of independently locked shards; rounded up to a power of two. Default 64.
    pub shards: usize,
    /// Most buckets a shard holds before it evicts; bounds memory under a flood of distinct
    /// clients. Default 4096 (262,144 buckets, some tens of MiB at most, in total).
    pub max_entries_per_shard: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            shards: 64,
            max_entries_per_shard: 4096,
        }
    }
}

/// Exact fixed-window counters held in this process.
///
/// Each check locks one shard for a hash-table lookup and an increment, never across an
/// await, so with limit N exactly N of any number of concurrent checks on a bucket pass.
///
/// Memory stays bounded two ways. Buckets whose window has ended are swept from a shard the
/// first time it is touched after its earliest window end. And when a shard is full of
/// live buckets, it drops the eighth of them with the lowest counts. Evicting rather than
/// refusing new buckets is deliberate: the pre-auth stage is keyed by client address alone,
/// so refusing would let anyone with many addresses (one IPv6 /64 is plenty) lock out every
/// new client. Low counts go first because they carry the least evidence of abuse: a
/// client hammering one bucket keeps its high count, and an evicted bucket can gain at
/// most the few requests it had counted.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    evicted: AtomicU64,
}

struct Shard {
    table: HashTable<Entry>,
    /// Earliest window end among the entries (may be early, never late); `u64::MAX` if none.
    next_expiry: u64,
    capacity: usize,
}

struct Entry {
    hash: u64,
    key: OwnedKey,
    window_start: u64,
    window_end: u64,
    count: u32,
}

impl MemoryStore {
    pub fn new(config: MemoryConfig) -> Self {
        let shard_count = config.shards.clamp(1, 1 << 16).next_power_of_two();
        let capacity = config.max_entries_per_shard.max(1);
        let shards = (0..shard_count)
            .map(|_| Mutex::new(Shard::new(capacity)))
            .collect();
        Self {
            shards,
            hasher: RandomState::new(),
            evicted: AtomicU64::new(0),
        }
    }

    /// Counts one request against `key` at `now_epoch_seconds` and says whether it fits.
    pub fn check(
        &self,
        key: &RateLimitKey<'_>,
        quota: Quota,
        now_epoch_seconds: u64,
    ) -> Result<RateLimitVerdict, RateLimitError> {
        let window = Window::containing(now_epoch_seconds, quota)?;
        let hash = self.bucket_hash(key, quota);
        let mut shard = self.shard_for(hash);
        shard.sweep_expired(now_epoch_seconds);
        let count = shard.increment(hash, key, window, &self.evicted);
        drop(shard);
        Ok(window.verdict(u64::from(count), now_epoch_seconds))
    }

    /// The numbers `key` would see now, without counting a request (for whoami, whose
    /// request Envoy's Check has already counted).
    pub fn peek(
        &self,
        key: &RateLimitKey<'_>,
        quota: Quota,
        now_epoch_seconds: u64,
    ) -> Result<RateLimitVerdict, RateLimitError> {
        let window = Window::containing(now_epoch_seconds, quota)?;
        let hash = self.bucket_hash(key, quota);
        let count = self.shard_for(hash).count(hash, key, window);
        Ok(window.verdict(u64::from(count), now_epoch_seconds))
    }

    /// Buckets currently held across all shards.
    pub fn entry_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).table.len()).sum()
    }

    /// Live buckets dropped because a shard was full, since start.
    pub fn evicted_total(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    fn bucket_hash(&self, key: &RateLimitKey<'_>, quota: Quota) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        key.hash_into(quota.window_seconds, &mut hasher);
        std::hash::Hasher::finish(&hasher)
    }

    fn shard_for(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // The table uses the low bits for buckets and the top seven for tags; picking the
        // shard from the middle keeps the three independent.
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        lock(&self.shards[index])
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// A panic while a shard was locked cannot leave a counter half-written (every update is
/// a single store), so a poisoned shard is still usable.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Self {
            table: HashTable::new(),
            next_expiry: u64::MAX,
            capacity,
        }
    }

    /// Counts one request and returns the bucket's count in `window`, creating or
    /// restarting the bucket as needed.
    fn increment(
        &mut self,
        hash: u64,
        key: &RateLimitKey<'_>,
        window: Window,
        evicted: &AtomicU64,
    ) -> u32 {
        let window_seconds = window.seconds();
        let found = self.table.find_mut(hash, |e| {
            e.hash == hash && e.key.matches(key, window_seconds)
        });
        if let Some(entry) = found {
            if entry.window_start != window.start {
                entry.window_start = window.start;
                entry.window_end = window.end;
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            let count = entry.count;
            self.next_expiry = self.next_expiry.min(window.end);
            return count;
        }
        if self.table.len() >= self.capacity {
            let dropped = self.evict_lowest_counts();
            evicted.fetch_add(dropped as u64, Ordering::Relaxed);
        }
        let entry = Entry {
            hash,
            key: OwnedKey::new(key, window_seconds),
            window_start: window.start,
            window_end: window.end,
            count: 1,
        };
        self.table.insert_unique(hash, entry, |e| e.hash);
        self.next_expiry = self.next_expiry.min(window.end);
        1
    }

    /// The bucket's count in `window`, 0 when it has none.
    fn count(&self, hash: u64, key: &RateLimitKey<'_>, window: Window) -> u32 {
        let window_seconds = window.seconds();
        self.table
            .find(hash, |e| {
                e.hash == hash && e.key.matches(key, window_seconds)
            })
            .filter(|e| e.window_start == window.start)
            .map_or(0, |e| e.count)
    }

    /// Drops buckets whose window ended, at most once per earliest window end.
    fn sweep_expired(&mut self, now: u64) {
        if now < self.next_expiry {
            return;
        }
        self.table.retain(|e| e.window_end > now);
        self.next_expiry = self
            .table
            .iter()
            .map(|e| e.window_end)
            .min()
            .unwrap_or(u64::MAX);
    }

    /// Drops the eighth of the buckets with the lowest counts (at least one); one scan
    /// pays for many inserts, so a flood of new clients costs constant work per request.
    fn evict_lowest_counts(&mut self) -> usize {
        let target = (self.table.len() / 8).max(1);
        let mut counts: Vec<u32> = self.table.iter().map(|e| e.count).collect();
        let threshold = *counts.select_nth_unstable(target - 1).1;
        let below = counts.iter().filter(|&&c| c < threshold).count();
        let mut ties_to_drop = target - below;
        self.table.retain(|e| {
            if e.count < threshold {
                return false;
            }
            if e.count == threshold && ties_to_drop > 0 {
                ties_to_drop -= 1;
                return false;
            }
            true
        });
        target
    }
}

#[cfg(test)]
#[path = "memory_tests.rs"]
mod tests;
