//! Many threads at once: bytes stay right, the bound holds, counts add up, one read per expert.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{check, write_model, Rng, Spec, TempDir};
use cosmoe_cache::{CacheConfig, ExpertCache, IoMode, PrefetchHint};

#[test]
fn stress_gets_and_prefetches_under_a_small_budget() {
    let dir = TempDir::new("stress");
    let spec = Spec {
        n_layers: 4,
        n_experts: 16,
        ..Spec::default()
    };
    let model = Arc::new(write_model(dir.path(), spec));
    for io in [IoMode::Direct, IoMode::Buffered] {
        let probe = ExpertCache::open(
            model.layout.clone(),
            CacheConfig {
                io,
                ..Default::default()
            },
        )
        .unwrap();
        let one = (0..4)
            .flat_map(|l| (0..16).map(move |e| (l, e)))
            .map(|(l, e)| probe.expert_bytes(l, e))
            .max()
            .unwrap();
        let budget = 3 * one;
        let cache = Arc::new(
            ExpertCache::open(
                model.layout.clone(),
                CacheConfig {
                    budget: Some(budget),
                    io,
                    prefetch_threads: 2,
                    prefetch_queue: 8,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let done = Arc::new(AtomicBool::new(false));
        let monitor = {
            let (cache, done) = (cache.clone(), done.clone());
            std::thread::spawn(move || {
                let mut checks = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let s = cache.stats();
                    assert!(s.cached_bytes <= budget && s.peak_cached_bytes <= budget);
                    checks += 1;
                }
                checks
            })
        };
        let gets = Arc::new(AtomicU64::new(0));
        let hints = Arc::new(AtomicU64::new(0));
        // A user whose position never moves: its hints are read-ahead, never stale, so loads by
        // hints surely run beside the gets (the default user's mostly go stale or are predictions,
        // which this full cache refuses room).
        let still = cosmoe_cache::CacheUser::new();
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (cache, model, gets, hints, still) = (
                    cache.clone(),
                    model.clone(),
                    gets.clone(),
                    hints.clone(),
                    still.clone(),
                );
                std::thread::spawn(move || {
                    let mut rng = Rng(0x1234_5678 + t * 7919);
                    let mut held = Vec::new();
                    for i in 0..1500u64 {
                        let (l, e) = (rng.below(4), rng.below(16).min(rng.below(16)));
                        match rng.below(10) {
                            0..=5 => {
                                let w = cache.get(l, e).unwrap();
                                gets.fetch_add(1, Ordering::Relaxed);
                                check(&model, l, e, &w);
                                // Hold a couple of experts a while, as a layer's matvecs would.
                                held.push(w);
                                if held.len() > 2 {
                                    held.remove(0);
                                }
                                let s = cache.stats();
                                assert!(s.cached_bytes <= budget);
                            }
                            6..=8 => {
                                let pos = if t == 0 { i } else { i.saturating_sub(3) };
                                let hs: Vec<_> = (0..3)
                                    .map(|j| PrefetchHint {
                                        layer: (l + j) % 4,
                                        expert: rng.below(16),
                                        // The first may be stale; the others never are.
                                        needed_at: match j {
                                            0 => pos + rng.below(4) as u64,
                                            _ => u64::MAX,
                                        },
                                    })
                                    .collect();
                                cache.prefetch(&hs);
                                hints.fetch_add(hs.len() as u64, Ordering::Relaxed);
                                if t == 1 {
                                    let h = PrefetchHint {
                                        layer: l,
                                        expert: rng.below(16),
                                        needed_at: 0,
                                    };
                                    cache.prefetch_as(&still, &[h]);
                                    hints.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            _ => {
                                if t == 0 {
                                    cache.set_position(i);
                                }
                                let _ = cache.get(l, 99).unwrap_err(); // unknown: not counted
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        cache.wait_prefetches();
        done.store(true, Ordering::Relaxed);
        assert!(monitor.join().unwrap() > 0);

        let s = cache.stats();
        let gets = gets.load(Ordering::Relaxed);
        let hints = hints.load(Ordering::Relaxed);
        eprintln!("{io}: {s:#?}");
        assert_eq!(s.requests, gets);
        assert_eq!(s.hits + s.misses, s.requests);
        assert!(s.cached_bytes <= budget && s.peak_cached_bytes <= budget);
        assert_eq!(
            hints,
            s.prefetch_dropped_full
                + s.prefetch_stale
                + s.prefetch_redundant
                + s.predicted_no_room
                + s.predicted_paused
                + s.prefetch_issued
        );
        // Predictions are prefetches; each ends used, wasted or still unused.
        assert!(s.predicted_issued <= s.prefetch_issued);
        assert!(s.predicted_useful <= s.prefetch_useful && s.predicted_wasted <= s.prefetch_wasted);
        assert!(s.predicted_useful + s.predicted_wasted <= s.predicted_issued);
        assert_eq!(s.prefetch_failed, 0);
        assert_eq!(
            s.prefetch_issued,
            s.prefetch_useful + s.prefetch_wasted + s.prefetch_unused
        );
        assert!(s.reads <= s.misses + s.prefetch_issued);
        assert_eq!(s.reads, s.evictions + cache.n_cached() as u64);
        assert!(s.evictions > 0 && s.hits > 0 && s.prefetch_issued > 0);
    }
}

#[test]
fn concurrent_requests_for_one_cold_expert_read_it_once() {
    let dir = TempDir::new("dedupe");
    let model = Arc::new(write_model(dir.path(), Spec::default()));
    for io in [IoMode::Direct, IoMode::Buffered] {
        let cache = Arc::new(
            ExpertCache::open(
                model.layout.clone(),
                CacheConfig {
                    budget: Some(1 << 20),
                    io,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        let delay = Duration::from_millis(300);
        cache.set_read_delay(delay);
        let n = 16;
        let barrier = Arc::new(Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let (cache, model, barrier) = (cache.clone(), model.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let w = cache.get(1, 5).unwrap();
                    check(&model, 1, 5, &w);
                    w
                })
            })
            .collect();
        let ws: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let s = cache.stats();
        assert_eq!(s.reads, 1, "{io}: {s:?}");
        assert_eq!(s.requests, n as u64);
        // All arrive within the 300 ms the read takes: all wait for the one read.
        assert_eq!(s.misses, n as u64, "{io}: {s:?}");
        assert!(s.stall_ns >= delay.as_nanos() as u64);
        assert!(
            ws.iter().all(|w| Arc::ptr_eq(w, &ws[0])),
            "one buffer shared"
        );
    }
}

#[test]
fn drop_with_a_backlog_of_hints_returns_promptly() {
    let dir = TempDir::new("drop");
    let model = write_model(dir.path(), Spec::default());
    let cache = ExpertCache::open(
        model.layout.clone(),
        CacheConfig {
            budget: Some(1 << 20),
            io: IoMode::Buffered,
            prefetch_threads: 2,
            prefetch_queue: 64,
            ..Default::default()
        },
    )
    .unwrap();
    cache.set_read_delay(Duration::from_millis(100));
    let hints: Vec<_> = (0..24)
        .map(|i| PrefetchHint {
            layer: i / 8,
            expert: i % 8,
            needed_at: 0,
        })
        .collect();
    cache.prefetch(&hints);
    let t0 = Instant::now();
    drop(cache);
    // Two threads each finish at most the hint they hold (100 ms), not the 12 queued each.
    assert!(
        t0.elapsed() < Duration::from_millis(800),
        "{:?}",
        t0.elapsed()
    );
}
