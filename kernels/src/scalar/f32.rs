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
