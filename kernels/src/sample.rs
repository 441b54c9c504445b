//! Weights of any format for tests and benchmarks, including the formats cosmoe cannot quantise to
//! ([`DType::has_quantizer`]): for those, random valid blocks rather than quantised values.

use crate::blocks::{to_scale, QK_K};
use crate::{quantize, DType, KernelError};

/// `x.len() / cols` rows of `cols` values of `dtype`: [`quantize`]`(dtype, x, cols)` where the
/// format has a quantiser. Where it has none, random blocks: random bytes (from a generator seeded
/// by the values the block stands for) with each super-block scale set to the f16 nearest
/// `max |x| / 32` over the block's values (at least f16's smallest normal number, so no scale is
/// infinite, NaN or subnormal). Such a row does not approximate `x`; it is a valid row of the
/// format whose values have about `x`'s magnitude.
pub fn weights(dtype: DType, x: &[f32], cols: usize) -> Result<Vec<u8>, KernelError> {
    if dtype.has_quantizer() {
        return quantize(dtype, x, cols);
    }
    let row_bytes = dtype
        .row_bytes(cols)
        .ok_or(KernelError::RowBlocks { dtype, cols })?;
    if cols == 0 || !x.len().is_multiple_of(cols) {
        return Err(KernelError::Rows { len: x.len(), cols });
    }
    debug_assert_eq!(dtype.block_len(), QK_K);
    let mut out = vec![0u8; x.len() / cols * row_bytes];
    for (b, xs) in out
        .chunks_exact_mut(dtype.block_bytes())
        .zip(x.chunks_exact(QK_K))
    {
        let mut s = xs.iter().fold(0x9e37_79b9_7f4a_7c15u64, |h, v| {
            (h ^ v.to_bits() as u64).wrapping_mul(0x0100_0000_01b3)
        }) | 1;
        for byte in b.iter_mut() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *byte = (s >> 56) as u8;
        }
        let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = to_scale((amax / 32.0).max(half::f16::MIN_POSITIVE.to_f32()));
        set_super_scale(dtype, b, d);
    }
    Ok(out)
}

/// Writes the f16 super-block scale `d` into block `b` of `dtype`, a format without a quantiser (the
/// IQ1/IQ2/IQ3 formats: `d` first, or IQ1_M's nibbles), for random blocks made elsewhere (`cosmoe
/// synth`).
pub fn set_super_scale(dtype: DType, b: &mut [u8], d: [u8; 2]) {
    debug_assert!(!dtype.has_quantizer() && b.len() == dtype.block_bytes());
    match dtype {
        // The f16 in the top nibbles of the four little-endian u16 scale words (ggml's
        // `iq1m_scale_t`): bits 0..4 in word 0, 4..8 in word 1, ...
        DType::IQ1_M => {
            let bits = u16::from_le_bytes(d);
            let words = &mut b[QK_K / 8 + QK_K / 16..];
            for k in 0..4 {
                let nibble = ((bits >> (4 * k)) & 0xf) as u8;
                words[2 * k + 1] = (words[2 * k + 1] & 0x0f) | (nibble << 4);
            }
        }
        // `d` first, as in every other IQ block.
        _ => b[..2].copy_from_slice(&d),
    }
}
