//! Weight-times-activation products for every weight format, split across the current rayon pool by
//! rows. For Q8_0/Q4_0 weights the activations are quantised to Q8_0 blocks once per vector (with the
//! per-block terms of [`Q8Prepared`]), and the inner loop is integer dot products (as llama.cpp does).

use rayon::prelude::*;

use crate::acts::Q8Prepared;
use crate::blocks::{as_q4_0, as_q8_0, BlockQ8_0, QK};
use crate::{kernels, DType, Kernels, MatRef};

/// Below this many weight values a product runs on the calling thread: handing it to the pool costs
/// more than it saves (routers, tiny test models).
const PARALLEL_MIN: usize = 1 << 15;

/// Rows per rayon task: large enough to amortise scheduling, small enough to balance.
fn rows_per_task(rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    (rows / (threads * 8)).clamp(1, 256)
}

/// Activations in the form a weight format multiplies with.
enum Acts<'a> {
    F32(&'a [f32]),
    /// `n` vectors of `cols / 32` blocks.
    Q8(Q8Prepared),
}

impl Kernels {
    /// `y = W x` for `W: (rows, cols)`, `x: (cols)`, `y: (rows)`.
    pub fn matvec(&self, w: MatRef<'_>, x: &[f32], y: &mut [f32]) {
        self.matmul(w, x, 1, y)
    }

    /// `Y = X W^T` for `W: (rows, cols)`, `X: (n, cols)` row-major, `Y: (n, rows)` row-major: the same
    /// value as [`Kernels::matvec`] for each of the `n` tokens, reading each weight row once for all.
    pub fn matmul(&self, w: MatRef<'_>, x: &[f32], n: usize, y: &mut [f32]) {
        let (rows, cols) = (w.rows(), w.cols());
        assert_eq!(x.len(), n * cols, "matmul: X is not (n={n}, cols={cols})");
        assert_eq!(y.len(), n * rows, "matmul: Y is not (n={n}, rows={rows})");
        if n == 0 || rows == 0 {
            return;
        }
        let acts = self.prepare(w.dtype(), x, n, cols);
        let serial = rows * cols < PARALLEL_MIN || rayon::current_num_threads() == 1;
        let chunk = if serial { rows } else { rows_per_task(rows) };
        if n == 1 {
            let task = |(c, ys): (usize, &mut [f32])| self.rows_matvec(&w, &acts, c * chunk, ys);
            if serial {
                task((0, y));
            } else {
                y.par_chunks_mut(chunk).enumerate().for_each(task);
            }
            return;
        }
        // yt: (rows, n), so each task owns a contiguous block; transposed into y below.
        let mut yt = vec![0f32; rows * n];
        let task = |(c, block): (usize, &mut [f32])| match (&acts, w.dtype()) {
            (Acts::Q8(q), DType::Q4_0) => {
                let rows = w.rows_slice(c * chunk, block.len() / n);
                (self.matmul_q4_0_rows)(as_q4_0(rows.bytes()), q, block)
            }
            _ => {
                for t in 0..n {
                    self.rows_dot(&w, &acts, t, c * chunk, block.iter_mut().skip(t).step_by(n));
                }
            }
        };
        if serial {
            task((0, &mut yt));
        } else {
            yt.par_chunks_mut(chunk * n).enumerate().for_each(task);
        }
        // In 16 x 16 tiles: element by element, every store of a row of yt lands in another line of y
        // (measured: 11 % of a 512-token prefill on that one store).
        const TILE: usize = 16;
        for r0 in (0..rows).step_by(TILE) {
            for t0 in (0..n).step_by(TILE) {
                for r in r0..(r0 + TILE).min(rows) {
                    for t in t0..(t0 + TILE).min(n) {
                        y[t * rows + r] = yt[r * n + t];
                    }
                }
            }
        }
    }

    /// `y = W x` for several products at once (decode: a token's Q, K and V projections, the gate and
    /// up projections of all its experts), as one parallel job: the rows of all of them are split
    /// across the pool together, so the pool forks and joins once rather than once per product. Each
    /// `y` is exactly what [`Kernels::matvec`] gives.
    pub fn matvec_jobs(&self, jobs: &mut [MatvecJob<'_, '_>]) {
        for j in jobs.iter() {
            assert_eq!(
                j.x.len(),
                j.w.cols(),
                "matvec_jobs: x is not (cols={})",
                j.w.cols()
            );
            assert_eq!(
                j.y.len(),
                j.w.rows(),
                "matvec_jobs: y is not (rows={})",
                j.w.rows()
            );
        }
        // Jobs on the same input in the same form (an expert's gate and up) share its preparation:
        // `acts[of[i]]` is job i's.
        let (mut acts, mut of): (Vec<Acts<'_>>, Vec<usize>) = (Vec::new(), Vec::new());
        for (i, j) in jobs.iter().enumerate() {
            let same = jobs[..i].iter().position(|p| {
                std::ptr::eq(p.x, j.x)
                    && p.w.dtype().quantised_activations() == j.w.dtype().quantised_activations()
            });
            match same {
                Some(p) => of.push(of[p]),
                None => {
                    of.push(acts.len());
                    acts.push(self.prepare(j.w.dtype(), j.x, 1, j.w.cols()));
                }
            }
        }
        let values: usize = jobs.iter().map(|j| j.w.rows() * j.w.cols()).sum();
        let total_rows: usize = jobs.iter().map(|j| j.w.rows()).sum();
        if values < PARALLEL_MIN || rayon::current_num_threads() == 1 {
            for (j, &a) in jobs.iter_mut().zip(&of) {
                self.rows_matvec(&j.w, &acts[a], 0, j.y);
            }
            return;
        }
        let chunk = rows_per_task(total_rows);
        let ws: Vec<MatRef<'_>> = jobs.iter().map(|j| j.w).collect();
        // (job, first row, output rows)
        let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
        for (i, j) in jobs.iter_mut().enumerate() {
            for (c, ys) in j.y.chunks_mut(chunk).enumerate() {
                tasks.push((i, c * chunk, ys));
            }
        }
        tasks
            .into_par_iter()
            .for_each(|(i, r0, ys)| self.rows_matvec(&ws[i], &acts[of[i]], r0, ys));
    }

    /// Activations of `n` vectors of `cols` values in the form `dtype` multiplies with.
    fn prepare<'x>(&self, dtype: DType, x: &'x [f32], n: usize, cols: usize) -> Acts<'x> {
        if !dtype.quantised_activations() {
            return Acts::F32(x);
        }
        let nb = cols / QK;
        let mut q = vec![BlockQ8_0::default(); n * nb];
        for (xs, qs) in x.chunks_exact(cols).zip(q.chunks_exact_mut(nb.max(1))) {
            (self.quantize_row_q8_0)(xs, qs);
        }
        Acts::Q8(Q8Prepared::from_blocks(q, n))
    }

    /// Rows `r0..r0 + ys.len()` of `w` times the one vector of `acts`.
    fn rows_matvec(&self, w: &MatRef<'_>, acts: &Acts<'_>, r0: usize, ys: &mut [f32]) {
        match (acts, w.dtype()) {
            (Acts::Q8(q), DType::Q4_0) => {
                let rows = w.rows_slice(r0, ys.len());
                (self.dot_q4_0_rows)(as_q4_0(rows.bytes()), &q.get(0), ys)
            }
            _ => self.rows_dot(w, acts, 0, r0, ys.iter_mut()),
        }
    }

    /// Rows `r0..` of `w` times token `t` of the activations, one value into each of `ys` (as many
    /// rows as `ys` yields). The format is matched and the token's activations found once per call,
    /// not once per row: decode rows are short (a 448-wide Q4_0 row is 252 bytes).
    fn rows_dot<'y>(
        &self,
        w: &MatRef<'_>,
        acts: &Acts<'_>,
        t: usize,
        r0: usize,
        ys: impl Iterator<Item = &'y mut f32>,
    ) {
        let cols = w.cols();
        let rb = w.row_bytes();
        let rows = w.bytes()[(r0 * rb).min(w.bytes().len())..].chunks_exact(rb.max(1));
        let pairs = ys.zip(rows);
        match acts {
            Acts::F32(x) => {
                let x = &x[t * cols..(t + 1) * cols];
                match w.dtype() {
                    DType::F32 => {
                        let mut scratch = Vec::new();
                        for (y, row) in pairs {
                            *y = match bytemuck::try_cast_slice::<u8, f32>(row) {
                                Ok(vals) if cfg!(target_endian = "little") => {
                                    (self.dot_f32)(vals, x)
                                }
                                _ => {
                                    scratch.resize(cols, 0.0);
                                    crate::scalar::f32::dequantize_row(row, &mut scratch);
                                    (self.dot_f32)(&scratch, x)
                                }
                            };
                        }
                    }
                    DType::F16 => pairs.for_each(|(y, row)| *y = (self.dot_f16)(row, x)),
                    DType::BF16 => pairs.for_each(|(y, row)| *y = (self.dot_bf16)(row, x)),
                    // Quantised formats always come with Q8 activations.
                    DType::Q8_0 | DType::Q4_0 => pairs.for_each(|(y, _)| *y = f32::NAN),
                }
            }
            Acts::Q8(q) => {
                let xq = q.get(t);
                match w.dtype() {
                    DType::Q8_0 => {
                        let xb = xq.blocks();
                        pairs.for_each(|(y, row)| *y = (self.dot_q8_0)(as_q8_0(row), xb))
                    }
                    DType::Q4_0 => {
                        pairs.for_each(|(y, row)| *y = (self.dot_q4_0)(as_q4_0(row), &xq))
                    }
                    DType::F32 | DType::F16 | DType::BF16 => pairs.for_each(|(y, _)| *y = f32::NAN),
                }
            }
        }
    }
}

/// One product of [`Kernels::matvec_jobs`]: `y = w x`.
pub struct MatvecJob<'w, 'y> {
    pub w: MatRef<'w>,
    pub x: &'w [f32],
    pub y: &'y mut [f32],
}

/// [`Kernels::matvec_jobs`] with the process's kernel table.
pub fn matvec_jobs(jobs: &mut [MatvecJob<'_, '_>]) {
    kernels().matvec_jobs(jobs)
}

/// `y = W x` with the process's kernel table.
pub fn matvec(w: MatRef<'_>, x: &[f32], y: &mut [f32]) {
    kernels().matvec(w, x, y)
}

/// `Y = X W^T` with the process's kernel table.
pub fn matmul(w: MatRef<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    kernels().matmul(w, x, n, y)
}
