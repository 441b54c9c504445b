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
    tail: &'a [Quants32],
    tail_corr: &'a [[i32; 8]],
    tail_d: &'a [[f32; 8]],
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

    /// `(pairs * 2)`: the blocks after the last whole group, two by two (`pairs = (len % 8) / 2`; an
    /// odd last block is only in `blocks`), for a kernel that holds two blocks' nibbles in one
    /// register: for pair `p` (blocks `a = len / 8 * 8 + 2p` and `b = a + 1`), entries `2p` and
    /// `2p + 1` are
    ///
    /// ```text
    /// [x[a].qs[0..16],  x[b].qs[0..16]]     (the values the low nibbles multiply)
    /// [x[a].qs[16..32], x[b].qs[16..32]]    (the values the high nibbles multiply)
    /// ```
    pub fn tail(&self) -> &'a [Quants32] {
        self.tail
    }

    /// `(pairs)`: `[8 sums[a], 0, 0, 0, 8 sums[b], 0, 0, 0]` for pair `p` of [`Q8Acts::tail`]: what to
    /// subtract from its eight lanes of unsigned-nibble products to get `sum_i (q_i - 8) x_i` per block.
    pub fn tail_corr(&self) -> &'a [[i32; 8]] {
        self.tail_corr
    }

    /// `(pairs)`: `[d[a]; 4 lanes, d[b]; 4 lanes]` for pair `p` of [`Q8Acts::tail`].
    pub fn tail_d(&self) -> &'a [[f32; 8]] {
        self.tail_d
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
    /// (n, pairs * 2), pairs = nb % 8 / 2
    tail: Vec<Quants32>,
    /// (n, pairs)
    tail_corr: Vec<[i32; 8]>,
    /// (n, pairs)
    tail_d: Vec<[f32; 8]>,
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
        let d: Vec<f32> = blocks.iter().map(|b| scale(b.d)).collect();
        let sums: Vec<i32> = blocks
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
        let pairs = nb % GROUP / 2;
        let (mut tail, mut tail_corr, mut tail_d) = (
            Vec::with_capacity(n * pairs * 2),
            Vec::with_capacity(n * pairs),
            Vec::with_capacity(n * pairs),
        );
        for t in 0..n {
            for p in 0..pairs {
                let a = t * nb + nb / GROUP * GROUP + 2 * p;
                let (xa, xb) = (&blocks[a].qs, &blocks[a + 1].qs);
                for h in 0..2 {
                    let mut e = Quants32::default();
                    e.0[..16].copy_from_slice(&xa[16 * h..16 * h + 16]);
                    e.0[16..].copy_from_slice(&xb[16 * h..16 * h + 16]);
                    tail.push(e);
                }
                let (sa, sb): (i32, i32) = (sums[a], sums[a + 1]);
                tail_corr.push([8 * sa, 0, 0, 0, 8 * sb, 0, 0, 0]);
                let (da, db) = (d[a], d[a + 1]);
                tail_d.push([da, da, da, da, db, db, db, db]);
            }
        }
        Q8Prepared {
            n,
            nb,
            blocks,
            d,
            sums,
            groups,
            tail,
            tail_corr,
            tail_d,
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
        let pairs = nb % GROUP / 2;
        Q8Acts {
            blocks: &self.blocks[t * nb..(t + 1) * nb],
            d: &self.d[t * nb..(t + 1) * nb],
            sums: &self.sums[t * nb..(t + 1) * nb],
            groups: &self.groups[t * per..(t + 1) * per],
            tail: &self.tail[t * pairs * 2..(t + 1) * pairs * 2],
            tail_corr: &self.tail_corr[t * pairs..(t + 1) * pairs],
            tail_d: &self.tail_d[t * pairs..(t + 1) * pairs],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocks::to_scale;

    #[test]
    fn prepared_terms_and_group_order() {
        for nb in [0usize, 1, 6, 7, 8, 9, 14, 16, 19] {
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
                let pairs = nb % 8 / 2;
                assert_eq!(a.tail().len(), 2 * pairs);
                for p in 0..pairs {
                    let (xa, xb) = (&xs[nb / 8 * 8 + 2 * p], &xs[nb / 8 * 8 + 2 * p + 1]);
                    for j in 0..32 {
                        let blk = if j < 16 { xa } else { xb };
                        assert_eq!(
                            a.tail()[2 * p].0[j],
                            blk.qs[j % 16],
                            "nb={nb} pair {p} j={j}"
                        );
                        assert_eq!(a.tail()[2 * p + 1].0[j], blk.qs[16 + j % 16]);
                    }
                    let (sa, sb) = (
                        a.sums()[nb / 8 * 8 + 2 * p],
                        a.sums()[nb / 8 * 8 + 2 * p + 1],
                    );
                    assert_eq!(a.tail_corr()[p], [8 * sa, 0, 0, 0, 8 * sb, 0, 0, 0]);
                    let (da, db) = (scale(xa.d), scale(xb.d));
                    assert_eq!(a.tail_d()[p], [da, da, da, da, db, db, db, db]);
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
