//! Several users of one cache: each user's counters are its own requests and loads, they add up to
//! the cache's totals, and each user's hints go stale against its own position.

mod common;

use std::sync::Arc;

use common::{check, write_model, Spec, TempDir};
use cosmoe_cache::{CacheConfig, CacheStats, CacheUser, ExpertCache, IoMode, PrefetchHint};

/// A cache that holds `experts` experts of layer 0 (all of its experts are the same size).
fn open(model: &common::Model, experts: u64, prefetch_threads: usize) -> ExpertCache {
    let probe = ExpertCache::open(model.layout.clone(), CacheConfig::default()).unwrap();
    let one = probe.expert_bytes(0, 0);
    ExpertCache::open(
        model.layout.clone(),
        CacheConfig {
            budget: Some(experts * one),
            io: IoMode::Buffered,
            prefetch_threads,
            ..Default::default()
        },
    )
    .unwrap()
}

fn sum(a: &CacheStats, b: &CacheStats) -> [u64; 8] {
    [
        a.requests + b.requests,
        a.hits + b.hits,
        a.misses + b.misses,
        a.bytes_read + b.bytes_read,
        a.reads + b.reads,
        a.evictions + b.evictions,
        a.prefetch_issued + b.prefetch_issued,
        a.prefetch_useful + b.prefetch_useful,
    ]
}

fn totals(s: &CacheStats) -> [u64; 8] {
    [
        s.requests,
        s.hits,
        s.misses,
        s.bytes_read,
        s.reads,
        s.evictions,
        s.prefetch_issued,
        s.prefetch_useful,
    ]
}

#[test]
fn each_user_counts_its_own_requests() {
    let dir = TempDir::new("users");
    let model = write_model(dir.path(), Spec::default());
    let cache = Arc::new(open(&model, 3, 0));
    let (a, b) = (CacheUser::new(), CacheUser::new());
    // a: 5 distinct experts (5 misses), then the last one again (a hit).
    for e in 0..5 {
        check(&model, 0, e, &cache.get_as(&a, 0, e).unwrap());
    }
    cache.get_as(&a, 0, 4).unwrap();
    let sa = cache.stats_of(&a);
    assert_eq!((sa.requests, sa.hits, sa.misses, sa.reads), (6, 1, 5, 5));
    assert_eq!(sa.evictions, 2, "3 experts fit: 2 of a's 5 loads evicted");
    // b hits what a left (experts 2..5) and misses expert 7, evicting one of a's.
    for e in [2, 3, 7] {
        cache.get_as(&b, 0, e).unwrap();
    }
    let sb = cache.stats_of(&b);
    assert_eq!((sb.requests, sb.hits, sb.misses, sb.reads), (3, 2, 1, 1));
    assert_eq!(sb.evictions, 1);
    assert_eq!(cache.stats_of(&a).requests, 6, "b's requests are not a's");
    assert_eq!(sum(&sa, &sb), totals(&cache.stats()));
    assert!(sa.bytes_read > 0 && sb.bytes_read > 0);
}

#[test]
fn users_on_threads_add_up_to_the_totals() {
    let dir = TempDir::new("users_threads");
    let model = write_model(dir.path(), Spec::default());
    let cache = Arc::new(open(&model, 6, 1));
    let users: Vec<Arc<CacheUser>> = (0..2).map(|_| CacheUser::new()).collect();
    std::thread::scope(|s| {
        for (i, u) in users.iter().enumerate() {
            let (cache, model) = (&cache, &model);
            s.spawn(move || {
                let mut rng = common::Rng(7 + i as u64);
                for step in 0..300u64 {
                    u.set_position(step);
                    let (l, e) = (rng.below(3), rng.below(8));
                    if step % 3 == 0 {
                        let hint = PrefetchHint {
                            layer: l,
                            expert: (e + 1) % 8,
                            needed_at: step + 1,
                        };
                        cache.prefetch_as(u, &[hint]);
                    }
                    check(model, l, e, &cache.get_as(u, l, e).unwrap());
                }
            });
        }
    });
    cache.wait_prefetches();
    let (s0, s1) = (cache.stats_of(&users[0]), cache.stats_of(&users[1]));
    assert_eq!((s0.requests, s1.requests), (300, 300));
    assert_eq!(sum(&s0, &s1), totals(&cache.stats()));
    let t = cache.stats();
    assert_eq!(
        s0.prefetch_wasted + s1.prefetch_wasted,
        t.prefetch_wasted,
        "wasted prefetches are counted to the user that hinted them"
    );
    assert_eq!(s0.prefetch_unused + s1.prefetch_unused, t.prefetch_unused);
}

#[test]
fn hints_go_stale_against_their_users_position() {
    let dir = TempDir::new("users_stale");
    let model = write_model(dir.path(), Spec::default());
    let cache = open(&model, 8, 1);
    let (ahead, behind) = (CacheUser::new(), CacheUser::new());
    ahead.set_position(100);
    let hint = |expert| PrefetchHint {
        layer: 1,
        expert,
        needed_at: 10,
    };
    // Stamped 10: stale for the user at 100, due for the user at 0.
    cache.prefetch_as(&ahead, &[hint(1)]);
    cache.prefetch_as(&behind, &[hint(2)]);
    cache.wait_prefetches();
    let (sa, sb) = (cache.stats_of(&ahead), cache.stats_of(&behind));
    assert_eq!((sa.prefetch_stale, sa.prefetch_issued), (1, 0));
    assert_eq!((sb.prefetch_stale, sb.prefetch_issued), (0, 1));
    assert_eq!(sb.reads, 1, "the prefetch's read is counted to its user");
}
