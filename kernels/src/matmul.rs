//! Weight-times-activation products, split across the current rayon pool by rows.

use rayon::prelude::*;

use crate::{dequantize_row, dot_f32, DType, MatRef};

/// Rows per rayon task: large enough to amortise scheduling, small enough to balance.
fn rows_per_task(rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    (rows / (threads * 8)).clamp(1, 256)
}

/// Calls `f(row_values)` with row `r` of `w` as `f32`s: borrowed when the bytes are aligned `f32`s,
/// otherwise dequantised into `scratch`. Every product goes through here, so a value is computed the
/// same way whatever the batch size.
#[inline]
fn with_row<R>(w: &MatRef<'_>, r: usize, scratch: &mut Vec<f32>, f: impl FnOnce(&[f32]) -> R) -> R {
    let bytes = w.row(r);
    if w.dtype() == DType::F32 {
        if let Ok(vals) = bytemuck::try_cast_slice::<u8, f32>(bytes) {
            if cfg!(target_endian = "little") {
                return f(vals);
            }
        }
    }
    scratch.resize(w.cols(), 0.0);
    dequantize_row(w.dtype(), bytes, scratch);
    f(scratch)
}

/// `y = W x` for `W: (rows, cols)`, `x: (cols)`, `y: (rows)`.
pub fn matvec(w: MatRef<'_>, x: &[f32], y: &mut [f32]) {
    assert_eq!(
        x.len(),
        w.cols(),
        "matvec: x has {} values, W has {} columns",
        x.len(),
        w.cols()
    );
    assert_eq!(
        y.len(),
        w.rows(),
        "matvec: y has {} values, W has {} rows",
        y.len(),
        w.rows()
    );
    let chunk = rows_per_task(w.rows());
    y.par_chunks_mut(chunk)
        .enumerate()
        .for_each_init(Vec::new, |scratch, (c, ys)| {
            for (i, yv) in ys.iter_mut().enumerate() {
                *yv = with_row(&w, c * chunk + i, scratch, |row| dot_f32(row, x));
            }
        });
}

/// `Y = X W^T` for `W: (rows, cols)`, `X: (n, cols)` row-major, `Y: (n, rows)` row-major: the same
/// product as [`matvec`] for each of `n` tokens, reading each weight row once for all of them.
pub fn matmul(w: MatRef<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    let (rows, cols) = (w.rows(), w.cols());
    assert_eq!(x.len(), n * cols, "matmul: X is not (n={n}, cols={cols})");
    assert_eq!(y.len(), n * rows, "matmul: Y is not (n={n}, rows={rows})");
    if n == 1 {
        return matvec(w, x, y);
    }
    let chunk = rows_per_task(rows);
    // yt: (rows, n), so each task owns a contiguous block; transposed into y below.
    let mut yt = vec![0f32; rows * n];
    yt.par_chunks_mut(chunk * n)
        .enumerate()
        .for_each_init(Vec::new, |scratch, (c, block)| {
            for (i, out) in block.chunks_mut(n).enumerate() {
                with_row(&w, c * chunk + i, scratch, |row| {
                    for (t, o) in out.iter_mut().enumerate() {
                        *o = dot_f32(row, &x[t * cols..(t + 1) * cols]);
                    }
                });
            }
        });
    for r in 0..rows {
        for t in 0..n {
            y[t * rows + r] = yt[r * n + t];
        }
    }
}
