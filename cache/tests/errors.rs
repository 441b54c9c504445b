//! Bad layouts, missing and truncated files: errors that name the place, never a panic or SIGBUS.

mod common;

use std::fs::OpenOptions;

use common::{check, write_model, Spec, TempDir};
use cosmoe_cache::{CacheConfig, CacheError, ExpertCache, ExpertPart, IoMode, PartLoc};

fn config(io: IoMode, budget: Option<u64>) -> CacheConfig {
    CacheConfig {
        budget,
        io,
        ..CacheConfig::default()
    }
}

#[test]
fn truncated_file_is_an_error_naming_it() {
    for io in IoMode::ALL {
        let dir = TempDir::new("trunc");
        let model = write_model(dir.path(), Spec::default());
        let cache = ExpertCache::open(model.layout.clone(), config(io, Some(1 << 20))).unwrap();
        // Layer 1 lives in b.bin, experts one after the other: cut it in the middle of expert 4.
        let PartLoc::File { offset, .. } = model.layout.layers[1][4].up.loc else {
            unreachable!()
        };
        let b = &model.layout.files[1];
        OpenOptions::new()
            .write(true)
            .open(b)
            .unwrap()
            .set_len(offset + 10)
            .unwrap();

        // Before the cut: still fine.
        check(&model, 1, 2, &cache.get(1, 2).unwrap());
        for e in 4..8 {
            let err = cache.get(1, e).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("b.bin"), "{io}: {msg}");
            match (io, &err) {
                (
                    IoMode::Mmap,
                    CacheError::Truncated {
                        layer: 1, expert, ..
                    },
                ) => {
                    assert_eq!(*expert, e)
                }
                (
                    _,
                    CacheError::ShortRead {
                        path,
                        offset: o,
                        wanted,
                        got,
                    },
                ) => {
                    assert_eq!(path, b);
                    assert!(*got < *wanted, "{msg}");
                    if e == 4 {
                        assert_eq!((*o, *got), (offset, 10), "{msg}");
                    }
                }
                _ => panic!("{io}: unexpected {err:?}"),
            }
            // Not cached: asking again reads (and fails) again.
            assert!(cache.get(1, e).is_err());
        }
        // The other file is untouched.
        check(&model, 0, 7, &cache.get(0, 7).unwrap());
        let s = cache.stats();
        if io != IoMode::Mmap {
            assert_eq!(
                s.cached_bytes,
                cache.expert_bytes(1, 2) + cache.expert_bytes(0, 7)
            );
        }
    }
}

#[test]
fn bad_layouts_are_refused_at_open() {
    let dir = TempDir::new("layout");
    let model = write_model(dir.path(), Spec::default());
    let a_len = std::fs::metadata(&model.layout.files[0]).unwrap().len();

    let mut bad = model.layout.clone();
    bad.layers[2][3].down.loc = PartLoc::File {
        file: 0,
        offset: a_len - 100,
        len: bad.layers[2][3].down.len(),
    };
    let msg = ExpertCache::open(bad, CacheConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("layer 2 expert 3 down") && msg.contains("a.bin"),
        "{msg}"
    );
    assert!(msg.contains("outside"), "{msg}");

    let mut bad = model.layout.clone();
    bad.layers[0][1].gate.rows += 1;
    let err = ExpertCache::open(bad, CacheConfig::default())
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            CacheError::Layout {
                layer: 0,
                expert: 1,
                part: "gate",
                ..
            }
        ),
        "{err}"
    );

    let mut bad = model.layout.clone();
    bad.layers[0][1].up.cols = 33; // not whole Q8_0 blocks
    let msg = ExpertCache::open(bad, CacheConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("not whole blocks"), "{msg}");

    let mut bad = model.layout.clone();
    if let PartLoc::File { file, .. } = &mut bad.layers[0][0].gate.loc {
        *file = 7;
    }
    let msg = ExpertCache::open(bad, CacheConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("file index 7"), "{msg}");

    let mut bad = model.layout.clone();
    bad.files[1] = dir.path().join("missing.bin");
    let err = ExpertCache::open(bad, CacheConfig::default())
        .err()
        .unwrap();
    assert!(matches!(err, CacheError::Open { .. }) && err.to_string().contains("missing.bin"));

    let bad_part = ExpertPart {
        loc: PartLoc::Memory(cosmoe_loader::Bytes::from_vec(vec![0; 5])),
        ..model.layout.layers[0][0].gate.clone()
    };
    let mut bad = model.layout.clone();
    bad.layers[1][0].up = bad_part;
    let msg = ExpertCache::open(bad, CacheConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("layer 1 expert 0 up: 5 bytes"), "{msg}");
}

#[test]
fn unknown_expert() {
    let dir = TempDir::new("unknown");
    let model = write_model(dir.path(), Spec::default());
    let cache = ExpertCache::open(model.layout.clone(), CacheConfig::default()).unwrap();
    let err = cache.get(0, 8).unwrap_err();
    assert!(matches!(
        err,
        CacheError::UnknownExpert {
            layer: 0,
            expert: 8,
            n_experts: 8
        }
    ));
    assert!(cache.get(3, 0).is_err());
    assert_eq!(cache.stats().requests, 0);
}

#[test]
fn refused_o_direct_falls_back_to_buffered_with_a_notice() {
    let dir = TempDir::new("einval");
    let model = write_model(dir.path(), Spec::default());
    let cache =
        ExpertCache::open(model.layout.clone(), config(IoMode::Direct, Some(1 << 20))).unwrap();
    check(&model, 0, 0, &cache.get(0, 0).unwrap());
    cache.simulate_direct_einval();
    for l in 0..3 {
        for e in 0..8 {
            check(&model, l, e, &cache.get(l, e).unwrap());
        }
    }
    let notices = cache.notices();
    // One notice per file, each naming it.
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(notices[0].contains("O_DIRECT") && notices.iter().any(|n| n.contains("a.bin")));
}
