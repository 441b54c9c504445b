//! Where each expert's three projections live: slices of files, or bytes already in memory.

use std::path::PathBuf;

use cosmoe_kernels::DType;
use cosmoe_loader::{Bytes, Weight};

use crate::buffer::{alloc_size, round_up, ALIGN};
use crate::{CacheError, ExpertWeights};

/// Where one projection's bytes are.
#[derive(Clone, Debug)]
pub enum PartLoc {
    /// `len` bytes at `offset` of `ExpertLayout::files[file]` (a GGUF or safetensors file).
    File {
        file: usize,
        offset: u64,
        len: usize,
    },
    /// Bytes already in memory (e.g. quantised on load, or a window onto a map the caller owns).
    Memory(Bytes),
}

/// One projection (gate, up or down) of an expert: a `(rows, cols)` matrix of `dtype`.
#[derive(Clone, Debug)]
pub struct ExpertPart {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub loc: PartLoc,
}

impl ExpertPart {
    /// A part over a weight already in memory (no copy).
    pub fn from_weight(w: &Weight) -> ExpertPart {
        ExpertPart {
            dtype: w.dtype,
            rows: w.rows,
            cols: w.cols,
            loc: PartLoc::Memory(w.bytes.clone()),
        }
    }

    /// Bytes of the part where it lives.
    pub fn len(&self) -> usize {
        match &self.loc {
            PartLoc::File { len, .. } => *len,
            PartLoc::Memory(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes a `(rows, cols)` matrix of `dtype` has, or `None` if `cols` is not whole blocks.
    pub fn expected_len(&self) -> Option<usize> {
        self.dtype.row_bytes(self.cols)?.checked_mul(self.rows)
    }
}

/// The projections of one routed expert (a SwiGLU MLP): three matrices, or of a weight-decomposed
/// expert three left factors and three right ones, read and cached as one unit.
#[derive(Clone, Debug)]
pub struct ExpertLoc {
    /// (ffn, hidden), or the left factor (ffn, rank)
    pub gate: ExpertPart,
    /// (ffn, hidden), or (ffn, rank)
    pub up: ExpertPart,
    /// (hidden, ffn), or (hidden, rank)
    pub down: ExpertPart,
    /// The right factors of a weight-decomposed expert: gate (rank, hidden), up (rank, hidden),
    /// down (rank, ffn).
    pub right: Option<Box<[ExpertPart; 3]>>,
}

/// The most parts an expert has (a weight-decomposed one).
pub(crate) const MAX_PARTS: usize = 6;

impl ExpertLoc {
    /// An expert whose weights are already in memory (no copy).
    pub fn from_weights(w: &ExpertWeights) -> ExpertLoc {
        ExpertLoc {
            gate: ExpertPart::from_weight(&w.gate),
            up: ExpertPart::from_weight(&w.up),
            down: ExpertPart::from_weight(&w.down),
            right: w.right.as_ref().map(|r| {
                Box::new([
                    ExpertPart::from_weight(&r.gate),
                    ExpertPart::from_weight(&r.up),
                    ExpertPart::from_weight(&r.down),
                ])
            }),
        }
    }

    /// `(name, part)` for gate, up and down, then the right factors, in
    /// [`ExpertWeights::matrices`]' order.
    pub fn parts(&self) -> Vec<(&'static str, &ExpertPart)> {
        let mut v = vec![("gate", &self.gate), ("up", &self.up), ("down", &self.down)];
        if let Some([g, u, d]) = self.right.as_deref() {
            v.extend([("gate.right", g), ("up.right", u), ("down.right", d)]);
        }
        v
    }

    /// Bytes of the three weight matrices (without any buffer padding).
    pub fn n_bytes(&self) -> usize {
        self.parts().iter().map(|(_, p)| p.len()).sum()
    }

    /// Number of parameters.
    pub fn n_params(&self) -> usize {
        self.parts().iter().map(|(_, p)| p.rows * p.cols).sum()
    }
}

/// Every routed expert of a model: the files they are read from and where each part lies.
#[derive(Clone, Debug, Default)]
pub struct ExpertLayout {
    /// Files that [`PartLoc::File`] indexes.
    pub files: Vec<PathBuf>,
    /// `layers[l][e]`; an empty `Vec` for a dense layer.
    pub layers: Vec<Vec<ExpertLoc>>,
}

/// Where one part goes in its expert's buffer.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Slot {
    /// Start of the region reserved for the part (for an `O_DIRECT` read: 4096-aligned, and the
    /// file is read from `offset` rounded down to 4096 into here).
    pub region: usize,
    /// Bytes of the region.
    pub region_len: usize,
    /// Where the part's own bytes start in the buffer.
    pub data: usize,
    /// Whether the region is planned for an aligned (`O_DIRECT`) read.
    pub direct: bool,
}

/// One expert's buffer plan: a region per part, and the buffer size (what the cache charges).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Plan {
    /// One per part, in [`ExpertLoc::parts`]' order (the rest unused).
    pub slots: [Slot; MAX_PARTS],
    /// Allocated bytes: a whole number of pages.
    pub size: usize,
}

/// Alignment of a part's start inside a buffer when it is not read with `O_DIRECT`: a cache line.
const PART_ALIGN: usize = 64;

impl Plan {
    /// Lays out `loc`'s parts in one buffer. `direct(file)` says whether reads of that file are
    /// planned with `O_DIRECT` (each such part gets its own aligned superset region). `None` on
    /// arithmetic overflow.
    pub(crate) fn new(loc: &ExpertLoc, direct: impl Fn(usize) -> bool) -> Option<Plan> {
        let mut slots = [Slot::default(); MAX_PARTS];
        let mut end = 0usize;
        for (slot, (_, part)) in slots.iter_mut().zip(loc.parts()) {
            *slot = match part.loc {
                PartLoc::File { file, offset, len } if direct(file) => {
                    let lead = (offset % ALIGN as u64) as usize;
                    let region = round_up(end, ALIGN)?;
                    Slot {
                        region,
                        region_len: round_up(lead.checked_add(len)?, ALIGN)?,
                        data: region + lead,
                        direct: true,
                    }
                }
                _ => {
                    let region = round_up(end, PART_ALIGN)?;
                    Slot {
                        region,
                        region_len: part.len(),
                        data: region,
                        direct: false,
                    }
                }
            };
            end = slot.region.checked_add(slot.region_len)?;
        }
        Some(Plan {
            slots,
            size: alloc_size(end)?,
        })
    }
}

/// Checks one expert: each part's length matches its shape and each file part lies inside its
/// file (`file_lens[i]` = length of `files[i]`).
pub(crate) fn validate(
    layer: usize,
    expert: usize,
    loc: &ExpertLoc,
    files: &[PathBuf],
    file_lens: &[u64],
) -> Result<(), CacheError> {
    for (name, part) in loc.parts() {
        let err = |msg: String| CacheError::Layout {
            layer,
            expert,
            part: name,
            msg,
        };
        let Some(want) = part.expected_len() else {
            return Err(err(format!(
                "{} columns of {} are not whole blocks (or the size overflows)",
                part.cols,
                part.dtype.name()
            )));
        };
        if part.len() != want {
            return Err(err(format!(
                "{} bytes, but a ({}, {}) {} matrix has {want}",
                part.len(),
                part.rows,
                part.cols,
                part.dtype.name()
            )));
        }
        if let PartLoc::File { file, offset, len } = part.loc {
            let (Some(path), Some(&file_len)) = (files.get(file), file_lens.get(file)) else {
                return Err(err(format!(
                    "file index {file}, but the layout has {} files",
                    files.len()
                )));
            };
            let end = offset.checked_add(len as u64);
            if end.is_none_or(|end| end > file_len) {
                return Err(err(format!(
                    "bytes {offset}..{offset}+{len} lie outside {} ({file_len} bytes)",
                    path.display()
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(offset: u64, len: usize) -> ExpertPart {
        ExpertPart {
            dtype: DType::F32,
            rows: 1,
            cols: len / 4,
            loc: PartLoc::File {
                file: 0,
                offset,
                len,
            },
        }
    }

    #[test]
    fn direct_plan_aligns_each_part() {
        let loc = ExpertLoc {
            gate: part(4096 + 100, 400),
            up: part(10_000, 8192),
            down: part(0, 40),
            right: None,
        };
        let p = Plan::new(&loc, |_| true).unwrap();
        let [g, u, d, ..] = p.slots;
        assert_eq!((g.region, g.region_len, g.data), (0, 4096, 100));
        // 10_000 = 2 * 4096 + 1808; 1808 + 8192 rounds up to 12288.
        assert_eq!((u.region, u.region_len, u.data), (4096, 12288, 4096 + 1808));
        assert_eq!((d.region, d.region_len, d.data), (16384, 4096, 16384));
        assert_eq!(p.size, 20480);

        let p = Plan::new(&loc, |_| false).unwrap();
        let [g, u, d, ..] = p.slots;
        assert_eq!((g.data, u.data, d.data), (0, 448, 448 + 8192));
        assert_eq!(p.size, 12288);
    }

    #[test]
    fn a_weight_decomposed_expert_is_one_buffer_of_six_parts() {
        let loc = ExpertLoc {
            gate: part(0, 400),
            up: part(400, 400),
            down: part(800, 400),
            right: Some(Box::new([
                part(1200, 100),
                part(1300, 100),
                part(1400, 100),
            ])),
        };
        let names: Vec<&str> = loc.parts().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["gate", "up", "down", "gate.right", "up.right", "down.right"]
        );
        assert_eq!(loc.n_bytes(), 1500);
        let p = Plan::new(&loc, |_| false).unwrap();
        // Each part from the next cache line after the previous one.
        let data: Vec<usize> = p.slots.iter().map(|s| s.data).collect();
        assert_eq!(data, [0, 448, 896, 1344, 1472, 1600]);
        let p = Plan::new(&loc, |_| true).unwrap();
        assert!(p.slots.iter().all(|s| s.direct && s.region % ALIGN == 0));
        // 1200..1300 lies in the first page: its data starts 1200 bytes into its region.
        assert_eq!(p.slots[3].data - p.slots[3].region, 1200);
    }
}
