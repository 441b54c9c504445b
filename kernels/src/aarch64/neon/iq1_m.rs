//! IQ1_M weights against Q8_K-quantised activations (the lattice helpers: [`super::iq2_xxs`]).

use super::iq2_xxs::{grid8x4, half_sums, scaled_sum16};
use super::{cvt_f16, s8, I8Dot};
use crate::blocks::{BlockIq1M, BlockQ8K, IQ1S_DELTA};
use crate::scalar::iq2_xxs::le_u16;
use crate::scalar::iq_grids::IQ1S_GRID;

super::q8k_dots!(BlockIq1M);

/// ggml's `ggml_vec_dot_iq1_m_q8_K`: per super-block `d_w * d_a * (sumi1 + 1/8 * sumi2)`, `sumi1`
/// the scaled grid products, `sumi2` the scaled, signed sums of the activations (the shift's sign is
/// per eight values, finer than `bsums`: a second pass of products with +-1 bytes).
///
/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockIq1M], a: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        // Group l of sub-block ib: 8 index bits in qs, the nibble l % 2 of qh[2 * ib + l / 2] holds
        // three more and the sign of the shift on top.
        let nibble = |ib: usize, l: usize| (x.qh[2 * ib + l / 2] >> (4 * (l % 2))) & 0xf;
        let s = half_sums::<D>(&y.qs, |ib| {
            let grid: [u64; 4] = core::array::from_fn(|l| {
                IQ1S_GRID[x.qs[4 * ib + l] as usize | ((nibble(ib, l) & 7) as usize) << 8]
            });
            // Values -1, 0, 1 as bytes.
            grid8x4(grid).map(|g| s8(g))
        });
        let shifts = half_sums::<D>(&y.qs, |ib| {
            // -1 or 1 in each byte of a group, by the sign of its shift.
            let shift: [u64; 4] = core::array::from_fn(|l| match nibble(ib, l) & 8 {
                0 => 0x0101_0101_0101_0101,
                _ => u64::MAX,
            });
            grid8x4(shift).map(|g| s8(g))
        });
        // Four little-endian u16 words: 3-bit half scales (half j at bits 3 * (j % 4) of word
        // j / 4), the f16 super-block scale in their top nibbles.
        let sc: [u16; 4] = core::array::from_fn(|k| le_u16(&x.scales, 2 * k));
        let ls = core::array::from_fn(|j| 2 * ((sc[j / 4] >> (3 * (j % 4))) & 7) as i16 + 1);
        let d =
            (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
        // |sumi1|, |sumi2| <= 256 * 128 * 15: exact in i32.
        let (sumi1, sumi2) = (scaled_sum16(s, &ls), scaled_sum16(shifts, &ls));
        sumf += cvt_f16(d) * y.d * (sumi1 as f32 + IQ1S_DELTA * sumi2 as f32);
    }
    sumf
}

#[cfg(test)]
mod tests {
    use super::super::tests::check_iq;
    use super::*;
    use crate::{scalar, DType};

    #[test]
    fn dot_paths_equal_reference() {
        check_iq(DType::IQ1_M, scalar::iq1_m::dot, dot, dot_dotprod);
    }
}
