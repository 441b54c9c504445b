//! IQ2_XS weights against Q8_K-quantised activations (the lattice helpers: [`super::iq2_xxs`]).

use super::iq2_xxs::{apply_signs, grid8x4, half_sums, nibble_scales, scaled_sum16};
use super::{scale, I8Dot};
use crate::blocks::{BlockIq2Xs, BlockQ8K};
use crate::scalar::iq2_xxs::le_u16;
use crate::scalar::iq_grids::{IQ2XS_GRID, KSIGNS_IQ2XS};

super::q8k_dots!(BlockIq2Xs);

/// ggml's `ggml_vec_dot_iq2_xs_q8_K`: per super-block `(d_w * d_a) * sum (2 * ls + 1) * (grid *
/// sign . q_a)` over the 16-value halves, summed in order, times 1/8 at the end.
///
/// # Safety
/// The CPU must have what `D` uses (see [`I8Dot`]).
#[inline(always)]
unsafe fn dot_blocks<D: I8Dot>(w: &[BlockIq2Xs], a: &[BlockQ8K]) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in w.iter().zip(a) {
        let s = half_sums::<D>(&y.qs, |ib32| {
            // One u16 per group of eight: a 9-bit grid index, a 7-bit sign index above it.
            let q: [u16; 4] = core::array::from_fn(|l| le_u16(&x.qs, 2 * (4 * ib32 + l)));
            let signs = u32::from_le_bytes(q.map(|q| KSIGNS_IQ2XS[(q >> 9) as usize]));
            apply_signs(grid8x4(q.map(|q| IQ2XS_GRID[(q & 511) as usize])), signs)
        });
        // |bsum| <= 256 * 43 * 128 * 31 < 2^26.
        let bsum = scaled_sum16(s, &nibble_scales(&x.scales));
        sumf += (scale(x.d) * y.d) * bsum as f32;
    }
    0.125 * sumf
}

#[cfg(test)]
mod tests {
    use super::super::tests::check_iq;
    use super::*;
    use crate::{scalar, DType};

    #[test]
    fn dot_paths_equal_reference() {
        check_iq(DType::IQ2_XS, scalar::iq2_xs::dot, dot, dot_dotprod);
    }
}
