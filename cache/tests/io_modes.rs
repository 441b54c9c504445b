//! Every way of holding experts hands back exactly the bytes of the file.

mod common;

use std::sync::Arc;

use common::{check, memory_layout, write_model, Spec, TempDir};
use cosmoe_cache::{CacheConfig, ExpertCache, ExpertLoc, ExpertStore, IoMode, ALIGN};
use cosmoe_kernels::DType;

fn config(io: IoMode, budget: Option<u64>) -> CacheConfig {
    CacheConfig {
        budget,
        io,
        ..CacheConfig::default()
    }
}

fn get_all(cache: &ExpertCache, model: &common::Model) {
    for l in 0..cache.n_layers() {
        for e in 0..cache.n_experts(l) {
            check(model, l, e, &cache.get(l, e).unwrap());
        }
    }
}

#[test]
fn every_io_mode_gives_the_file_bytes() {
    for dtype in [DType::Q8_0, DType::F32, DType::Q4_0] {
        let dir = TempDir::new("modes");
        let spec = Spec {
            n_layers: 4,
            n_experts: 5,
            dtype,
            hidden: 64,
            ffn: 96,
            dense_every: 4, // layer 3 dense
        };
        let model = write_model(dir.path(), spec);
        for io in IoMode::ALL {
            for budget in [None, Some(1 << 30)] {
                let cache = ExpertCache::open(model.layout.clone(), config(io, budget)).unwrap();
                assert_eq!(cache.n_layers(), 4);
                assert_eq!(cache.n_experts(3), 0);
                assert_eq!(cache.n_experts(9), 0);
                get_all(&cache, &model);
                get_all(&cache, &model); // again: from the cache this time
                let s = cache.stats();
                assert_eq!(s.requests, 2 * 15, "{io} {budget:?}");
                assert_eq!(s.io, io);
                match io {
                    IoMode::Mmap => {
                        assert_eq!((s.hits, s.reads, s.bytes_read, s.budget), (30, 0, 0, None));
                    }
                    _ => {
                        assert_eq!((s.hits, s.misses, s.reads), (15, 15, 15), "{io}");
                        assert!(s.bytes_read >= cache.total_bytes() as u64);
                        if io == IoMode::Direct && cache.notices().is_empty() {
                            // O_DIRECT reads whole aligned blocks around each part.
                            assert!(s.bytes_read > cache.total_bytes() as u64);
                        }
                        assert_eq!(s.budget, budget);
                        assert_eq!(s.cached_bytes, cache.total_expert_bytes());
                        assert_eq!(s.evictions, 0);
                    }
                }
                assert_eq!(
                    cache.total_bytes(),
                    15 * (3 * model.expected[0][0][0].len())
                );
            }
        }
    }
}

#[test]
fn buffers_are_aligned_and_hold_all_three_parts() {
    let dir = TempDir::new("align");
    let model = write_model(dir.path(), Spec::default());
    for io in [IoMode::Direct, IoMode::Buffered] {
        let cache = ExpertCache::open(model.layout.clone(), config(io, Some(1 << 30))).unwrap();
        for l in 0..3 {
            let w = cache.get(l, 1).unwrap();
            let base = w.gate.bytes.as_ptr() as usize;
            // The gate is the first part of the buffer: its region starts the allocation.
            let region = base - base % ALIGN;
            for p in [&w.gate, &w.up, &w.down] {
                let at = p.bytes.as_ptr() as usize;
                assert!(
                    at >= region
                        && at + p.bytes.len() <= region + cache.expert_bytes(l, 1) as usize
                );
                if io == IoMode::Buffered {
                    assert_eq!(at % 64, 0);
                }
            }
            assert_eq!(cache.expert_bytes(l, 1) % ALIGN as u64, 0);
        }
    }
}

#[test]
fn memory_parts_copied_under_a_budget_and_in_place_without() {
    let dir = TempDir::new("memory");
    let model = write_model(dir.path(), Spec::default());
    let layout = memory_layout(&model);
    let src = |l: usize, e: usize| match &layout.layers[l][e].gate.loc {
        cosmoe_cache::PartLoc::Memory(b) => b.as_ptr(),
        _ => unreachable!(),
    };
    for io in IoMode::ALL {
        let resident = ExpertCache::open(layout.clone(), config(io, None)).unwrap();
        get_all(&resident, &model);
        assert_eq!(resident.get(1, 2).unwrap().gate.bytes.as_ptr(), src(1, 2));
        assert_eq!(resident.stats().bytes_read, 0);
        assert_eq!(resident.iter().count(), 24);

        let budget = 4 * resident_charge(&layout.layers[0][0]);
        let bounded = ExpertCache::open(layout.clone(), config(io, Some(budget))).unwrap();
        if io != IoMode::Mmap {
            assert_eq!(bounded.expert_bytes(0, 0), budget / 4);
        }
        get_all(&bounded, &model);
        let w = bounded.get(1, 2).unwrap();
        let s = bounded.stats();
        if io == IoMode::Mmap {
            assert_eq!(w.gate.bytes.as_ptr(), src(1, 2));
        } else {
            assert_ne!(w.gate.bytes.as_ptr(), src(1, 2));
            assert_eq!(
                s.bytes_read,
                (s.reads as usize * layout.layers[0][0].n_bytes()) as u64
            );
            assert!(s.cached_bytes <= budget && s.peak_cached_bytes <= budget);
            assert!(s.evictions > 0);
        }
    }
}

/// Bytes of one expert's cache buffer when copied from memory: its parts at 64-byte steps, whole
/// pages.
fn resident_charge(loc: &ExpertLoc) -> u64 {
    let mut end = 0usize;
    for (_, p) in loc.parts() {
        end = end.next_multiple_of(64) + p.len();
    }
    end.next_multiple_of(ALIGN) as u64
}

#[test]
fn resident_store_serves_in_place() {
    let dir = TempDir::new("store");
    let model = write_model(dir.path(), Spec::default());
    let mmap = ExpertCache::open(model.layout.clone(), config(IoMode::Mmap, None)).unwrap();
    let weights: Vec<Vec<_>> = (0..3)
        .map(|l| (0..8).map(|e| (*mmap.get(l, e).unwrap()).clone()).collect())
        .collect();
    let store = ExpertStore::resident(weights.clone());
    assert_eq!(store.n_layers(), 3);
    assert_eq!(store.iter().count(), 24);
    assert_eq!(
        store.total_bytes(),
        weights.iter().flatten().map(|w| w.n_bytes()).sum::<usize>()
    );
    let w: Arc<_> = store.get(2, 7).unwrap();
    assert_eq!(w.down.bytes.as_ptr(), weights[2][7].down.bytes.as_ptr());
    check(&model, 2, 7, &w);
    assert!(store.get(3, 0).is_err());
    let s = store.stats();
    assert_eq!((s.requests, s.hits, s.bytes_read), (1, 1, 0));
    assert!(store.check_budget(8).is_ok());
}

#[test]
fn tmpfs_direct_reads_fall_back_with_a_notice_or_work() {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("no /dev/shm: skipped");
        return;
    }
    let dir = TempDir::new_in(shm, "tmpfs");
    let model = write_model(dir.path(), Spec::default());
    let cache =
        ExpertCache::open(model.layout.clone(), config(IoMode::Direct, Some(1 << 30))).unwrap();
    get_all(&cache, &model);
    let notices = cache.notices();
    // Kernels since 6.6 accept O_DIRECT on tmpfs; older ones refuse it with EINVAL.
    eprintln!("tmpfs notices: {notices:?}");
    for n in &notices {
        assert!(n.contains("O_DIRECT") && n.contains("/dev/shm"), "{n}");
    }
}
