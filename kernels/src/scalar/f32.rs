//! `f32` weights and activations.

/// Copies little-endian `f32` bytes into `out`.
pub fn dequantize_row(row: &[u8], out: &mut [f32]) {
    debug_assert_eq!(row.len(), out.len() * 4);
    for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
        *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// `sum_i term(i)` for `i < n` with eight independent partial sums (lane `i % 8`), combined pairwise at
/// the end, then the tail: the summation order of every scalar dot product.
#[inline(always)]
pub fn dot_by(n: usize, term: impl Fn(usize) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let body = n / 8 * 8;
    let mut i = 0;
    while i < body {
        for (l, a) in acc.iter_mut().enumerate() {
            *a += term(i + l);
        }
        i += 8;
    }
    let mut tail = 0f32;
    for j in body..n {
        tail += term(j);
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Dot product of two equally long slices.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    dot_by(n, |i| a[i] * b[i])
}

/// `y += a * x`.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `row . x` for an f32 row given as bytes: in place where the bytes are aligned for f32 (on a
/// little-endian machine), else through a copy; `dot` is the tier's f32 dot product.
pub fn dot_row(row: &[u8], x: &[f32], dot: fn(&[f32], &[f32]) -> f32) -> f32 {
    match bytemuck::try_cast_slice::<u8, f32>(row) {
        Ok(vals) if cfg!(target_endian = "little") => dot(vals, x),
        _ => {
            let mut copy = vec![0f32; row.len() / 4];
            dequantize_row(row, &mut copy);
            dot(&copy, x)
        }
    }
}

/// Values to little-endian f32 bytes.
pub fn quantize_row(x: &[f32], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(4).zip(x) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}
