//! bfloat16 weights (the top 16 bits of an `f32`) against f32 activations.

use std::arch::aarch64::*;

/// Dot product of a bf16 row (little-endian bytes, any alignment) with f32 values: each weight
/// widened exactly (`shll` by 16), then fused multiply-adds in sixteen lanes, as
/// [`super::f32::dot`].
pub fn dot(row: &[u8], x: &[f32]) -> f32 {
    debug_assert_eq!(row.len(), x.len() * 2);
    let n = x.len().min(row.len() / 2);
    // SAFETY: `row` holds at least `2 n` bytes and `x` at least `n` values; NEON is baseline on
    // aarch64.
    unsafe { dot_neon(&row[..2 * n], &x[..n]) }
}

/// # Safety
/// `row.len() == 2 * x.len()`.
#[inline(always)]
unsafe fn dot_neon(row: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    let (pw, px) = (row.as_ptr(), x.as_ptr());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    // SAFETY (all loads below): `i + 16 <= n` (32 bytes of `row` from byte `2 i`, 16 values of `x`)
    // or `i + 4 <= n` (8 bytes, 4 values): in bounds. Byte loads have no alignment requirement.
    while i + 16 <= n {
        let h0 = vreinterpretq_u16_u8(vld1q_u8(pw.add(2 * i)));
        let h1 = vreinterpretq_u16_u8(vld1q_u8(pw.add(2 * i + 16)));
        let w = [
            vshll_n_u16::<16>(vget_low_u16(h0)),
            vshll_high_n_u16::<16>(h0),
            vshll_n_u16::<16>(vget_low_u16(h1)),
            vshll_high_n_u16::<16>(h1),
        ];
        for (k, (acc, w)) in acc.iter_mut().zip(w).enumerate() {
            let w = vreinterpretq_f32_u32(w);
            *acc = vfmaq_f32(*acc, w, vld1q_f32(px.add(i + 4 * k)));
        }
        i += 16;
    }
    while i + 4 <= n {
        let w = vshll_n_u16::<16>(vreinterpret_u16_u8(vld1_u8(pw.add(2 * i))));
        acc[0] = vfmaq_f32(acc[0], vreinterpretq_f32_u32(w), vld1q_f32(px.add(i)));
        i += 4;
    }
    let v = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    let mut sum = vaddvq_f32(v);
    for j in i..n {
        let w = f32::from_bits((u16::from_le_bytes([row[2 * j], row[2 * j + 1]]) as u32) << 16);
        sum += w * x[j];
    }
    sum
}
