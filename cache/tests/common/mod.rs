//! Synthetic expert files for the cache tests: real files in a unique temp folder, experts of
//! known bytes at known places.

#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use cosmoe_cache::{ExpertLayout, ExpertLoc, ExpertPart, ExpertWeights, PartLoc};
use cosmoe_kernels::DType;
use cosmoe_loader::Bytes;

/// A folder under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        Self::new_in(&std::env::temp_dir(), tag)
    }

    pub fn new_in(base: &Path, tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = base.join(format!(
            "cosmoe-cache-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A made-up model: the layout and, for each expert, the bytes of gate, up and down.
pub struct Model {
    pub layout: ExpertLayout,
    pub expected: Vec<Vec<[Vec<u8>; 3]>>,
}

/// Shape of the synthetic model.
#[derive(Clone, Copy)]
pub struct Spec {
    pub n_layers: usize,
    pub n_experts: usize,
    pub dtype: DType,
    pub hidden: usize,
    pub ffn: usize,
    /// Layers with no experts (dense), by index.
    pub dense_every: usize,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            n_layers: 3,
            n_experts: 8,
            dtype: DType::Q8_0,
            hidden: 64,
            ffn: 96,
            dense_every: 0,
        }
    }
}

/// Deterministic bytes of one part.
pub fn part_bytes(layer: usize, expert: usize, part: usize, len: usize) -> Vec<u8> {
    let mut x = (layer as u64) << 40 | (expert as u64) << 20 | (part as u64) << 8 | 0x9e37;
    (0..len)
        .map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn shapes(spec: &Spec) -> [(usize, usize); 3] {
    [
        (spec.ffn, spec.hidden),
        (spec.ffn, spec.hidden),
        (spec.hidden, spec.ffn),
    ]
}

fn part_len(dtype: DType, rows: usize, cols: usize) -> usize {
    dtype.row_bytes(cols).unwrap() * rows
}

/// Writes the experts into two files in `dir`: even layers GGUF-style in `a.bin` (per layer three
/// 4096-aligned tensors `(n_experts, rows, cols)`, so an expert's part is contiguous), odd layers
/// in `b.bin` with the parts of each expert together at odd offsets (a few bytes of gap).
pub fn write_model(dir: &Path, spec: Spec) -> Model {
    let paths = [dir.join("a.bin"), dir.join("b.bin")];
    let mut data: [Vec<u8>; 2] = [vec![0xAA; 123], vec![0xBB; 7]]; // headers
    let shapes = shapes(&spec);
    let mut layers = Vec::new();
    let mut expected = Vec::new();
    for l in 0..spec.n_layers {
        if spec.dense_every > 0 && l % spec.dense_every == spec.dense_every - 1 {
            layers.push(Vec::new());
            expected.push(Vec::new());
            continue;
        }
        let f = l % 2;
        let bytes: Vec<[Vec<u8>; 3]> = (0..spec.n_experts)
            .map(|e| {
                std::array::from_fn(|p| {
                    let (r, c) = shapes[p];
                    part_bytes(l, e, p, part_len(spec.dtype, r, c))
                })
            })
            .collect();
        let mut offsets = vec![[0u64; 3]; spec.n_experts];
        let buf = &mut data[f];
        if f == 0 {
            for p in 0..3 {
                let pad = (4096 - buf.len() % 4096) % 4096;
                buf.extend(std::iter::repeat_n(0u8, pad));
                for e in 0..spec.n_experts {
                    offsets[e][p] = buf.len() as u64;
                    buf.extend_from_slice(&bytes[e][p]);
                }
            }
        } else {
            for e in 0..spec.n_experts {
                for p in 0..3 {
                    buf.extend(std::iter::repeat_n(0x55u8, 1 + (e + p) % 5));
                    offsets[e][p] = buf.len() as u64;
                    buf.extend_from_slice(&bytes[e][p]);
                }
            }
        }
        let locs = (0..spec.n_experts)
            .map(|e| {
                let part = |p: usize| {
                    let (rows, cols) = shapes[p];
                    ExpertPart {
                        dtype: spec.dtype,
                        rows,
                        cols,
                        loc: PartLoc::File {
                            file: f,
                            offset: offsets[e][p],
                            len: bytes[e][p].len(),
                        },
                    }
                };
                ExpertLoc {
                    gate: part(0),
                    up: part(1),
                    down: part(2),
                    right: None,
                }
            })
            .collect();
        layers.push(locs);
        expected.push(bytes);
    }
    for (path, d) in paths.iter().zip(&data) {
        let mut file = File::create(path).unwrap();
        file.write_all(d).unwrap();
        file.write_all(&[0xCC; 100]).unwrap(); // a tail
    }
    Model {
        layout: ExpertLayout {
            files: paths.to_vec(),
            layers,
        },
        expected,
    }
}

/// The same experts as `model`, held in memory (each part its own `Vec`).
pub fn memory_layout(model: &Model) -> ExpertLayout {
    let layers = model
        .layout
        .layers
        .iter()
        .zip(&model.expected)
        .map(|(locs, bytes)| {
            locs.iter()
                .zip(bytes)
                .map(|(loc, b)| {
                    let part = |p: &ExpertPart, i: usize| ExpertPart {
                        loc: PartLoc::Memory(Bytes::from_vec(b[i].clone())),
                        ..p.clone()
                    };
                    ExpertLoc {
                        gate: part(&loc.gate, 0),
                        up: part(&loc.up, 1),
                        down: part(&loc.down, 2),
                        right: None,
                    }
                })
                .collect()
        })
        .collect();
    ExpertLayout {
        files: Vec::new(),
        layers,
    }
}

/// Panics unless `w` holds exactly the expected bytes and shapes of `(layer, expert)`.
pub fn check(model: &Model, layer: usize, expert: usize, w: &ExpertWeights) {
    let exp = &model.expected[layer][expert];
    let loc = &model.layout.layers[layer][expert];
    for (i, (got, (name, part))) in [&w.gate, &w.up, &w.down]
        .into_iter()
        .zip(loc.parts())
        .enumerate()
    {
        assert_eq!(
            (got.dtype, got.rows, got.cols),
            (part.dtype, part.rows, part.cols),
            "layer {layer} expert {expert} {name}: shape"
        );
        assert!(
            got.bytes[..] == exp[i][..],
            "layer {layer} expert {expert} {name}: bytes differ"
        );
    }
}

/// A small deterministic PRNG for access patterns.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}
