//! Activations prepared for the quantised products: each vector quantised to Q8_0 blocks once, plus
//! the per-block terms every weight row reuses, computed once per vector instead of once per row
//! (the f32 scales, the sums of the quants, and the quants reordered for the AVX2 Q4_0 kernel).

use crate::blocks::{scale, BlockQ8_0, QK};

/// Blocks per group in [`Q8Acts::groups`].
pub const GROUP: usize = 8;

/// 32 activation quants, 32-byte aligned (one aligned AVX2 load).
#[repr(C, align(32))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quants32(pub [i8; QK]);

/// One prepared activation vector of `len()` Q8_0 blocks, borrowed from a [`Q8Prepared`]. The fields
/// are private so that their lengths always agree (kernels read them with unchecked SIMD loads).
#[derive(Clone, Copy, Debug)]
pub struct Q8Acts<'a> {
    blocks: &'a [BlockQ8_0],
    d: &'a [f32],
    sums: &'a [i32],
    groups: &'a [Quants32],
}

impl<'a> Q8Acts<'a> {
    /// Blocks of the vector.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// The quantised vector: `(len)` blocks, as the activation quantiser wrote them.
    pub fn blocks(&self) -> &'a [BlockQ8_0] {
        self.blocks
    }

    /// `(len)`: `blocks::scale(blocks[b].d)`, the block scales as f32 (exact).
    pub fn d(&self) -> &'a [f32] {
        self.d
    }

    /// `(len)`: `sum_i blocks[b].qs[i]`. With it `sum_i (q_i - 8) x_i = sum_i q_i x_i - 8 sum_i x_i`,
    /// so a Q4_0 kernel can multiply the unsigned nibbles directly.
    pub fn sums(&self) -> &'a [i32] {
        self.sums
    }

    /// `(len / 8 * 8)`: the quants of every whole group of [`GROUP`] blocks `x[8g..8g + 8]`, reordered
    /// so that blocks `p` and `p + 4` of a group share a register, each 16 values (half a block) in
    /// one 128-bit lane. For `p` in `0..4`, entries `8g + 2p` and `8g + 2p + 1` are
    ///
    /// ```text
    /// [x[8g+p].qs[0..16],  x[8g+p+4].qs[0..16]]    (the values the low nibbles multiply)
    /// [x[8g+p].qs[16..32], x[8g+p+4].qs[16..32]]   (the values the high nibbles multiply)
    /// ```
    ///
    /// (the layout the AVX2 Q4_0 kernel reads; other tiers use [`Q8Acts::blocks`]). Blocks past the
    /// last whole group are only in `blocks`.
    pub fn groups(&self) -> &'a [Quants32] {
        self.groups
    }
}

/// `n` activation vectors of `nb` blocks each, prepared for the Q8_0/Q4_0 kernels.
#[derive(Clone, Debug, Default)]
pub struct Q8Prepared {
    n: usize,
    nb: usize,
    /// (n, nb)
    blocks: Vec<BlockQ8_0>,
    /// (n, nb)
    d: Vec<f32>,
    /// (n, nb)
    sums: Vec<i32>,
    /// (n, nb / 8 * 8)
    groups: Vec<Quants32>,
}

impl Q8Prepared {
    /// Prepares `n` vectors from their quantised blocks, `(n, nb)` row-major. `blocks.len()` should be
    /// a multiple of `n` (as in the kernels' zips, a longer tail is left out); with `n == 0` there are
    /// no vectors.
    pub fn from_blocks(mut blocks: Vec<BlockQ8_0>, n: usize) -> Q8Prepared {
        let nb = blocks.len().checked_div(n).unwrap_or(0);
        debug_assert_eq!(
            nb * n,
            blocks.len(),
            "Q8Prepared: blocks are not (n={n}, nb)"
        );
        blocks.truncate(nb * n);
        let d = blocks.iter().map(|b| scale(b.d)).collect();
        let sums = blocks
            .iter()
            .map(|b| b.qs.iter().map(|&q| q as i32).sum())
            .collect();
        let per = nb / GROUP * GROUP;
        let mut groups = vec![Quants32::default(); n * per];
        if per > 0 {
            for (xs, gs) in blocks.chunks_exact(nb).zip(groups.chunks_exact_mut(per)) {
                for (x, g) in xs.chunks_exact(GROUP).zip(gs.chunks_exact_mut(GROUP)) {
                    for (p, e) in g.chunks_exact_mut(2).enumerate() {
                        let (a, b) = (&x[p].qs, &x[p + GROUP / 2].qs);
                        for (h, e) in e.iter_mut().enumerate() {
                            let half = 16 * h..16 * h + 16;
                            e.0[..16].copy_from_slice(&a[half.clone()]);
                            e.0[16..].copy_from_slice(&b[half]);
                        }
                    }
                }
            }
        }
        Q8Prepared {
            n,
            nb,
            blocks,
            d,
            sums,
            groups,
        }
    }

    /// Vectors held.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Vector `t` (panics if `t >= n`).
    pub fn get(&self, t: usize) -> Q8Acts<'_> {
        assert!(t < self.n, "Q8Prepared::get: vector {t} of {}", self.n);
        let (nb, per) = (self.nb, self.nb / GROUP * GROUP);
        Q8Acts {
            blocks: &self.blocks[t * nb..(t + 1) * nb],
            d: &self.d[t * nb..(t + 1) * nb],
            sums: &self.sums[t * nb..(t + 1) * nb],
            groups: &self.groups[t * per..(t + 1) * per],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::to_scale;

    #[test]
    fn prepared_terms_and_group_order() {
        for nb in [0usize, 1, 7, 8, 9, 16, 19] {
            let n = 2;
            let blocks: Vec<BlockQ8_0> = (0..n * nb)
                .map(|b| BlockQ8_0 {
                    d: to_scale(b as f32 * 0.25 - 1.0),
                    qs: std::array::from_fn(|i| (b * 37 + i * 11) as u8 as i8),
                })
                .collect();
            let p = Q8Prepared::from_blocks(blocks.clone(), n);
            assert_eq!(p.n(), n);
            for t in 0..n {
                let a = p.get(t);
                let xs = &blocks[t * nb..(t + 1) * nb];
                assert_eq!(a.blocks(), xs);
                assert_eq!(a.len(), nb);
                for (b, x) in xs.iter().enumerate() {
                    assert_eq!(a.d()[b], scale(x.d));
                    assert_eq!(a.sums()[b], x.qs.iter().map(|&q| q as i32).sum::<i32>());
                }
                assert_eq!(a.groups().len(), nb / 8 * 8);
                for (i, g) in a.groups().iter().enumerate() {
                    let (grp, p, half) = (i / 8, i % 8 / 2, i % 2);
                    for j in 0..32 {
                        let blk = &xs[grp * 8 + p + 4 * (j / 16)];
                        assert_eq!(
                            g.0[j],
                            blk.qs[16 * half + j % 16],
                            "nb={nb} entry {i} j={j}"
                        );
                    }
                }
            }
        }
        assert_eq!(Q8Prepared::from_blocks(Vec::new(), 0).n(), 0);
        assert_eq!(std::mem::align_of::<Quants32>(), 32);
    }
}
