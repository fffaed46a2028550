use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use super::*;
use crate::ratelimit::Stage;

const T0: u64 = 1_700_000_040; // a window start for 60-second windows

fn quota(limit: u32) -> Quota {
    Quota {
        limit,
        window_seconds: 60,
    }
}

fn key_for(ip: u32) -> RateLimitKey<'static> {
    RateLimitKey {
        stage: Stage::PreAuth,
        route: "/agents/v1/products",
        client_ip: Some(IpAddr::V4(Ipv4Addr::from(ip))),
        principal: None,
    }
}

fn small(shards: usize, max_entries_per_shard: usize) -> MemoryStore {
    MemoryStore::new(MemoryConfig {
        shards,
        max_entries_per_shard,
    })
}

#[test]
fn counts_to_the_limit_then_denies_until_the_window_rolls_over() {
    let store = MemoryStore::new(MemoryConfig::default());
    let key = key_for(1);
    let seen: Vec<_> = (0..4)
        .map(|i| store.check(&key, quota(3), T0 + 10 + i).unwrap())
        .collect();
    assert_eq!(
        seen.iter().map(|v| v.allowed).collect::<Vec<_>>(),
        [true, true, true, false]
    );
    assert_eq!(
        seen.iter().map(|v| v.remaining).collect::<Vec<_>>(),
        [2, 1, 0, 0]
    );
    assert!(
        seen.iter()
            .all(|v| v.reset_epoch == T0 + 60 && v.limit == 3)
    );
    assert_eq!(seen[3].retry_after_seconds, 60 - 13);

    let last_second = store.check(&key, quota(3), T0 + 59).unwrap();
    assert!(!last_second.allowed);
    assert_eq!(last_second.retry_after_seconds, 1);

    let next = store.check(&key, quota(3), T0 + 60).unwrap();
    assert!(next.allowed);
    assert_eq!((next.remaining, next.reset_epoch), (2, T0 + 120));
}

#[test]
fn buckets_differ_by_every_part_of_the_key() {
    let store = MemoryStore::new(MemoryConfig::default());
    let base = RateLimitKey {
        principal: Some("fp-1"),
        ..key_for(1)
    };
    let variants = [
        base,
        RateLimitKey {
            stage: Stage::PostAuth,
            ..base
        },
        RateLimitKey {
            route: "/agents/v1/entries",
            ..base
        },
        RateLimitKey {
            client_ip: None,
            ..base
        },
        RateLimitKey {
            principal: Some("fp-2"),
            ..base
        },
        RateLimitKey {
            principal: None,
            ..base
        },
    ];
    for key in &variants {
        assert!(store.check(key, quota(1), T0).unwrap().allowed);
    }
    for key in &variants {
        assert!(!store.check(key, quota(1), T0).unwrap().allowed);
    }
    let other_window = Quota {
        limit: 1,
        window_seconds: 30,
    };
    assert!(store.check(&base, other_window, T0).unwrap().allowed);
}

#[test]
fn a_zero_second_window_is_an_error_not_a_panic() {
    let store = MemoryStore::new(MemoryConfig::default());
    let bad = Quota {
        limit: 1,
        window_seconds: 0,
    };
    assert!(matches!(
        store.check(&key_for(1), bad, T0),
        Err(RateLimitError::InvalidQuota { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_the_limit_passes_under_concurrency() {
    const LIMIT: u32 = 250;
    const TASKS: usize = 64;
    const CHECKS_PER_TASK: usize = 20;
    let store = Arc::new(MemoryStore::new(MemoryConfig::default()));
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let mut allowed = 0u32;
                for _ in 0..CHECKS_PER_TASK {
                    let verdict = store.check(&key_for(9), quota(LIMIT), T0).unwrap();
                    allowed += u32::from(verdict.allowed);
                    tokio::task::yield_now().await;
                }
                allowed
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += task.await.unwrap();
    }
    assert_eq!(
        allowed,
        LIMIT,
        "{} checks against limit {LIMIT}",
        TASKS * CHECKS_PER_TASK
    );
}

#[test]
fn ended_windows_are_swept_on_the_next_touch() {
    let store = small(1, 1000);
    for ip in 0..200 {
        store.check(&key_for(ip), quota(5), T0).unwrap();
    }
    assert_eq!(store.entry_count(), 200);
    store.check(&key_for(0), quota(5), T0 + 60).unwrap();
    assert_eq!(store.entry_count(), 1);
    assert_eq!(store.evicted_total(), 0);
}

#[test]
fn a_flood_of_new_clients_stays_within_the_cap() {
    let (shards, cap) = (4, 32);
    let store = small(shards, cap);
    for ip in 0..10_000 {
        store.check(&key_for(ip), quota(5), T0).unwrap();
        assert!(store.entry_count() <= shards * cap);
    }
    assert!(store.evicted_total() >= (10_000 - shards * cap) as u64);
}

#[test]
fn eviction_spares_the_busiest_bucket() {
    let store = small(1, 8);
    let abuser = key_for(7_000_000);
    for _ in 0..5 {
        store.check(&abuser, quota(5), T0).unwrap();
    }
    for ip in 0..1_000 {
        store.check(&key_for(ip), quota(5), T0).unwrap();
    }
    let verdict = store.check(&abuser, quota(5), T0).unwrap();
    assert!(
        !verdict.allowed,
        "the flood must not reset the abuser's count"
    );
}
