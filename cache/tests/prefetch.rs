//! Prefetch accounting: stale hints dropped, useful / wasted / unused / redundant counted.

mod common;

use std::time::{Duration, Instant};

use common::{check, write_model, Spec, TempDir};
use cosmoe_cache::{CacheConfig, ExpertCache, IoMode, PrefetchHint};

fn hint(layer: usize, expert: usize, needed_at: u64) -> PrefetchHint {
    PrefetchHint {
        layer,
        expert,
        needed_at,
    }
}

fn open(model: &common::Model, experts_budget: Option<u64>, queue: usize) -> ExpertCache {
    let probe = ExpertCache::open(model.layout.clone(), CacheConfig::default()).unwrap();
    let one = (0..3)
        .flat_map(|l| (0..8).map(move |e| (l, e)))
        .map(|(l, e)| probe.expert_bytes(l, e))
        .max()
        .unwrap();
    ExpertCache::open(
        model.layout.clone(),
        CacheConfig {
            budget: experts_budget.map(|n| n * one),
            io: IoMode::Direct,
            prefetch_threads: 1,
            prefetch_queue: queue,
            ..Default::default()
        },
    )
    .unwrap()
}

/// Waits until `cond` holds of the stats (for a prefetch thread to get going).
fn wait_for(cache: &ExpertCache, cond: impl Fn(&cosmoe_cache::CacheStats) -> bool) {
    let t0 = Instant::now();
    while !cond(&cache.stats()) {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn stale_hints_are_dropped_unread() {
    let dir = TempDir::new("stale");
    let model = write_model(dir.path(), Spec::default());
    let cache = open(&model, Some(4), 16);
    cache.set_position(10);
    cache.prefetch(&[hint(0, 1, 5), hint(0, 2, 9)]);
    cache.wait_prefetches();
    let s = cache.stats();
    assert_eq!((s.prefetch_stale, s.prefetch_issued, s.reads), (2, 0, 0));
    // Due now or later: loaded.
    cache.prefetch(&[hint(0, 1, 10), hint(0, 2, 11)]);
    cache.wait_prefetches();
    let s = cache.stats();
    assert_eq!((s.prefetch_stale, s.prefetch_issued, s.reads), (2, 2, 2));
    // The position may go back (a new sequence).
    cache.set_position(0);
    cache.prefetch(&[hint(0, 3, 0)]);
    cache.wait_prefetches();
    assert_eq!(cache.stats().prefetch_issued, 3);
}

#[test]
fn useful_wasted_unused_redundant() {
    let dir = TempDir::new("useful");
    let model = write_model(dir.path(), Spec::default());
    let cache = open(&model, Some(2), 16);

    // Prefetched, then used: a hit, and useful.
    cache.prefetch(&[hint(0, 0, 0)]);
    cache.wait_prefetches();
    assert_eq!(cache.stats().prefetch_unused, 1);
    check(&model, 0, 0, &cache.get(0, 0).unwrap());
    let s = cache.stats();
    assert_eq!(
        (s.hits, s.misses, s.prefetch_useful, s.prefetch_unused),
        (1, 0, 1, 0)
    );
    // A second get of it counts nothing more.
    cache.get(0, 0).unwrap();
    assert_eq!(cache.stats().prefetch_useful, 1);

    // Already cached: redundant.
    cache.prefetch(&[hint(0, 0, 0)]);
    cache.wait_prefetches();
    assert_eq!(cache.stats().prefetch_redundant, 1);

    // Prefetched, then pushed out by two gets before any use: wasted.
    cache.prefetch(&[hint(0, 1, 0)]);
    cache.wait_prefetches();
    cache.get(0, 2).unwrap();
    cache.get(0, 3).unwrap();
    let s = cache.stats();
    assert_eq!((s.prefetch_wasted, s.prefetch_unused), (1, 0), "{s:?}");

    // Prefetched and never used: unused at stats time.
    cache.prefetch(&[hint(1, 4, 0)]);
    cache.wait_prefetches();
    let s = cache.stats();
    assert_eq!(s.prefetch_unused, 1);
    assert_eq!(
        s.prefetch_issued,
        s.prefetch_useful + s.prefetch_wasted + s.prefetch_unused + s.prefetch_failed
    );
    assert_eq!(s.prefetch_issued, 3);
}

#[test]
fn get_waits_for_a_prefetch_in_flight() {
    let dir = TempDir::new("inflight");
    let model = write_model(dir.path(), Spec::default());
    let cache = open(&model, Some(4), 16);
    cache.set_read_delay(Duration::from_millis(200));
    cache.prefetch(&[hint(2, 6, 0)]);
    wait_for(&cache, |s| s.prefetch_issued == 1); // the prefetch thread is reading it
    let t0 = Instant::now();
    check(&model, 2, 6, &cache.get(2, 6).unwrap());
    let waited = t0.elapsed();
    let s = cache.stats();
    // A miss (it waited) but no second read; the prefetch was useful.
    assert_eq!((s.misses, s.hits, s.reads), (1, 0, 1), "{s:?}");
    assert_eq!((s.prefetch_useful, s.prefetch_unused), (1, 0));
    assert!(s.stall_ns > 0 && s.stall_ns <= waited.as_nanos() as u64 + 1_000_000);
    // A hint for it while in flight or after: redundant.
    cache.set_read_delay(Duration::ZERO);
    cache.prefetch(&[hint(2, 6, 0)]);
    cache.wait_prefetches();
    assert_eq!(cache.stats().prefetch_redundant, 1);
}

#[test]
fn full_queue_drops_hints() {
    let dir = TempDir::new("full");
    let model = write_model(dir.path(), Spec::default());
    let cache = open(&model, None, 1);
    cache.set_read_delay(Duration::from_millis(200));
    let hints: Vec<_> = (0..10).map(|e| hint(e / 8, e % 8, 0)).collect();
    cache.prefetch(&hints);
    cache.wait_prefetches();
    let s = cache.stats();
    // At most one being read and one queued; the rest dropped.
    assert!(s.prefetch_dropped_full >= 8, "{s:?}");
    assert_eq!(s.prefetch_dropped_full + s.prefetch_issued, 10);
}

#[test]
fn no_prefetch_thread_no_prefetch() {
    let dir = TempDir::new("nothread");
    let model = write_model(dir.path(), Spec::default());
    let cache = ExpertCache::open(model.layout.clone(), CacheConfig::default()).unwrap();
    cache.prefetch(&[hint(0, 0, 0)]);
    cache.wait_prefetches();
    assert_eq!(
        cache.stats(),
        ExpertCache::open(model.layout.clone(), CacheConfig::default())
            .unwrap()
            .stats()
    );
}

#[test]
fn predicted_hints_wait_for_the_running_layers_reads_and_are_accounted() {
    let dir = TempDir::new("predicted");
    let model = write_model(dir.path(), Spec::default());
    let cache = std::sync::Arc::new(open(&model, Some(4), 16));
    let delay = Duration::from_millis(60);
    cache.set_read_delay(delay);
    cache.set_position(4);
    // A `get` of the running layer reads; a prediction for the next position comes meanwhile.
    let t0 = Instant::now();
    let reader = {
        let cache = cache.clone();
        std::thread::spawn(move || cache.get(0, 1).map(|_| t0.elapsed()))
    };
    std::thread::sleep(Duration::from_millis(10));
    cache.prefetch(&[hint(1, 3, 5)]);
    cache.wait_prefetches();
    let elapsed = t0.elapsed();
    let got = reader.join().unwrap().unwrap();
    let s = cache.stats();
    assert_eq!((s.prefetch_issued, s.predicted_issued), (1, 1), "{s:?}");
    // The prediction waited for the `get`'s read, then read alone.
    assert!(
        s.predicted_deferred_ns >= (delay / 2).as_nanos() as u64,
        "{s:?}"
    );
    assert!(elapsed >= got + delay, "{elapsed:?} {got:?}");
    assert!(s.predicted_read_ns >= delay.as_nanos() as u64, "{s:?}");
    // Used: its whole read was stall saved.
    let w = cache.get(1, 3).unwrap();
    check(&model, 1, 3, &w);
    let s = cache.stats();
    assert_eq!((s.hits, s.predicted_useful), (1, 1));
    assert_eq!(s.predicted_saved_ns, s.predicted_read_ns);
    // Read-ahead (due now) is a prefetch, not a prediction.
    cache.prefetch(&[hint(2, 1, 4)]);
    cache.wait_prefetches();
    cache.get(2, 1).unwrap();
    let s = cache.stats();
    assert_eq!(
        (s.prefetch_issued, s.predicted_issued, s.predicted_useful),
        (2, 1, 1)
    );

    // Room for one more: a prediction takes it; evicted unused, it is wasted.
    cache.set_read_delay(Duration::ZERO);
    cache.prefetch(&[hint(2, 0, 6)]);
    cache.wait_prefetches();
    assert_eq!(cache.stats().predicted_issued, 2);
    for (l, e) in [(2, 5), (2, 6), (2, 7), (1, 5)] {
        cache.get(l, e).unwrap();
    }
    let s = cache.stats();
    assert_eq!((s.predicted_wasted, s.predicted_no_room), (1, 0), "{s:?}");
    // The cache is full of experts in use, and LRU calls none expendable: a guess evicts nothing.
    let reads = s.reads;
    cache.prefetch(&[hint(0, 7, 6)]);
    cache.wait_prefetches();
    let s = cache.stats();
    assert_eq!(
        (s.predicted_issued, s.predicted_no_room, s.reads),
        (2, 1, reads),
        "{s:?}"
    );
}

#[test]
fn predictions_pause_while_they_do_not_pay() {
    let dir = TempDir::new("pause");
    let model = write_model(dir.path(), Spec::default());
    let cache = open(&model, Some(4), 64);
    cache.set_read_delay(Duration::from_millis(20));
    // A prediction read into free room, then evicted unused: 20 ms of reads for nothing.
    cache.prefetch(&[hint(0, 0, 1)]);
    cache.wait_prefetches();
    for e in 0..4 {
        cache.get(1, e).unwrap();
    }
    let s = cache.stats();
    assert_eq!((s.predicted_issued, s.predicted_wasted), (1, 1), "{s:?}");
    // Now predictions pause, all but one in 32 (a probe, here refused for room: the cache is full
    // of experts LRU keeps).
    let hints: Vec<_> = (0..32).map(|e| hint(2 * (e % 2), (e / 2) % 8, 1)).collect();
    cache.prefetch(&hints);
    cache.wait_prefetches();
    let s = cache.stats();
    assert_eq!((s.predicted_paused, s.predicted_no_room), (31, 1), "{s:?}");
    assert_eq!(s.predicted_issued, 1);
}
