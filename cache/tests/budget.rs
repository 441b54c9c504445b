//! The byte budget: held bytes never exceed it, evictions follow the policy, bad budgets are
//! clear errors.

mod common;

use std::collections::VecDeque;

use common::{check, write_model, Rng, Spec, TempDir};
use cosmoe_cache::{CacheConfig, CacheError, EvictionPolicy, ExpertCache, ExpertKey, IoMode};

fn config(io: IoMode, budget: Option<u64>) -> CacheConfig {
    CacheConfig {
        budget,
        io,
        ..CacheConfig::default()
    }
}

/// Runs a decode-like access pattern: per token, per layer, `k` distinct experts fetched and held
/// together; checks bytes and the bound after every fetch. Returns the number of gets.
fn decode(cache: &ExpertCache, model: &common::Model, k: usize, tokens: usize, seed: u64) -> u64 {
    let mut rng = Rng(seed);
    let mut gets = 0;
    for _ in 0..tokens {
        for l in 0..cache.n_layers() {
            let n = cache.n_experts(l);
            let mut chosen: Vec<usize> = Vec::new();
            while chosen.len() < k.min(n) {
                // Skewed: low expert ids are popular, so there are hits to be had.
                let e = rng.below(n).min(rng.below(n));
                if !chosen.contains(&e) {
                    chosen.push(e);
                }
            }
            let held: Vec<_> = chosen
                .iter()
                .map(|&e| {
                    let w = cache.get(l, e).unwrap();
                    gets += 1;
                    let s = cache.stats();
                    if let Some(b) = s.budget {
                        assert!(s.cached_bytes <= b, "{} > budget {b}", s.cached_bytes);
                    }
                    w
                })
                .collect();
            for (&e, w) in chosen.iter().zip(&held) {
                check(model, l, e, w);
            }
        }
    }
    gets
}

#[test]
fn budgets_from_k_experts_to_unbounded() {
    let dir = TempDir::new("budgets");
    let model = write_model(dir.path(), Spec::default());
    let k = 2;
    for io in [IoMode::Direct, IoMode::Buffered] {
        let probe = ExpertCache::open(model.layout.clone(), config(io, None)).unwrap();
        let one = (0..3)
            .flat_map(|l| (0..8).map(move |e| (l, e)))
            .map(|(l, e)| probe.expert_bytes(l, e))
            .max()
            .unwrap();
        let total = probe.total_expert_bytes();
        let budgets = [
            Some(k as u64 * one),
            Some(k as u64 * one + one / 2),
            Some(5 * one),
            Some(total),
            None,
        ];
        let mut last_misses = u64::MAX;
        for budget in budgets {
            let cache = ExpertCache::open(model.layout.clone(), config(io, budget)).unwrap();
            cache.check_budget(k).unwrap();
            let gets = decode(&cache, &model, k, 40, 7);
            let s = cache.stats();
            assert_eq!(s.requests, gets);
            assert_eq!(s.hits + s.misses, s.requests);
            assert_eq!(s.reads, s.misses, "one read per miss without prefetch");
            assert_eq!(s.reads, s.evictions + cache.n_cached() as u64);
            assert!(s.stall_ns > 0);
            match budget {
                Some(b) if b < total => {
                    assert!(s.evictions > 0, "{io} budget {b}");
                    assert!(s.peak_cached_bytes <= b);
                }
                _ => {
                    assert_eq!(s.evictions, 0);
                    assert_eq!(s.misses, cache.n_cached() as u64, "each expert read once");
                    assert!(s.cached_bytes <= total);
                }
            }
            // More budget, fewer misses (same access sequence).
            assert!(
                s.misses <= last_misses,
                "{io} {budget:?}: {} misses",
                s.misses
            );
            last_misses = s.misses;
        }
    }
}

#[test]
fn lru_evicts_least_recently_used() {
    let dir = TempDir::new("lru");
    let model = write_model(dir.path(), Spec::default());
    let probe = ExpertCache::open(model.layout.clone(), config(IoMode::Buffered, None)).unwrap();
    let one = probe.expert_bytes(0, 0);
    let cache = ExpertCache::open(
        model.layout.clone(),
        config(IoMode::Buffered, Some(3 * one)),
    )
    .unwrap();
    for e in [0, 1, 2, 0, 3] {
        cache.get(0, e).unwrap(); // 3 evicts 1, the least recently used
    }
    let s = cache.stats();
    assert_eq!((s.misses, s.hits, s.evictions), (4, 1, 1));
    cache.get(0, 0).unwrap();
    cache.get(0, 2).unwrap();
    assert_eq!(cache.stats().hits, 3);
    cache.get(0, 1).unwrap(); // miss again; evicts 3
    cache.get(0, 3).unwrap(); // miss; evicts 0
    let s = cache.stats();
    assert_eq!((s.misses, s.hits, s.evictions), (6, 3, 3));
    assert_eq!(s.cached_bytes, 3 * one);
}

/// First in, first out: to show a policy plugs in without touching the cache.
#[derive(Default)]
struct Fifo(VecDeque<ExpertKey>);

impl EvictionPolicy for Fifo {
    fn insert(&mut self, key: ExpertKey) {
        self.0.push_back(key);
    }
    fn touch(&mut self, _key: ExpertKey) {}
    fn victim(&mut self) -> Option<ExpertKey> {
        self.0.front().copied()
    }
    fn remove(&mut self, key: ExpertKey) {
        self.0.retain(|&k| k != key);
    }
}

#[test]
fn another_policy_plugs_in() {
    let dir = TempDir::new("fifo");
    let model = write_model(dir.path(), Spec::default());
    let probe = ExpertCache::open(model.layout.clone(), config(IoMode::Buffered, None)).unwrap();
    let one = probe.expert_bytes(0, 0);
    let cache = ExpertCache::open_with_policy(
        model.layout.clone(),
        config(IoMode::Buffered, Some(3 * one)),
        Box::new(Fifo::default()),
    )
    .unwrap();
    for e in [0, 1, 2, 0, 3] {
        cache.get(0, e).unwrap(); // 3 evicts 0, the first in, although just used
    }
    cache.get(0, 1).unwrap();
    let s = cache.stats();
    assert_eq!((s.misses, s.hits, s.evictions), (4, 2, 1));
    cache.get(0, 0).unwrap();
    assert_eq!(cache.stats().misses, 5);
}

#[test]
fn budget_too_small_is_a_clear_error() {
    let dir = TempDir::new("small");
    let model = write_model(dir.path(), Spec::default());
    let probe = ExpertCache::open(model.layout.clone(), config(IoMode::Direct, None)).unwrap();
    let one = (0..8).map(|e| probe.expert_bytes(0, e)).max().unwrap();

    // Room for one expert but not for the k = 2 a layer needs at once.
    let cache = ExpertCache::open(
        model.layout.clone(),
        config(IoMode::Direct, Some(one + one / 2)),
    )
    .unwrap();
    cache.check_budget(1).unwrap();
    let err = cache.check_budget(2).unwrap_err();
    assert!(matches!(err, CacheError::BudgetTooSmall { k: 2, .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("cannot hold the k=2 experts of layer 0"),
        "{msg}"
    );
    assert!(msg.contains("MiB"), "{msg}");
    // k beyond the experts of a layer means all of them.
    let all =
        ExpertCache::open(model.layout.clone(), config(IoMode::Direct, Some(8 * one))).unwrap();
    all.check_budget(100).unwrap();

    // Less than one expert: refused at open.
    let err = ExpertCache::open(model.layout.clone(), config(IoMode::Direct, Some(one - 1)))
        .err()
        .unwrap();
    assert!(matches!(err, CacheError::ExpertTooLarge { .. }), "{err}");
    assert!(err
        .to_string()
        .contains("more than the whole expert cache budget"));

    // Mmap ignores the budget; so does a check without one.
    let mm = ExpertCache::open(model.layout.clone(), config(IoMode::Mmap, Some(1))).unwrap();
    mm.check_budget(8).unwrap();
    assert_eq!(mm.stats().budget, None);
}
