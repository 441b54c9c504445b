//! Weight-times-activation products for every weight format, split across the current rayon pool by
//! rows. The format's entry in the kernel table ([`crate::format`]) says which activations it takes:
//! f32, or Q8_0 / Q8_1 / Q8_K blocks quantised once per vector (Q8_0 with the per-block terms of
//! [`Q8Prepared`]), so that the inner loops are integer dot products, as llama.cpp's are.

use rayon::prelude::*;

use crate::acts::Q8Prepared;
use crate::blocks::{BlockQ8K, BlockQ8_0, BlockQ8_1, QK, QK_K};
use crate::format::{ActsKind, Products};
use crate::{kernels, Kernels, MatRef};

/// Below this many weight values a product runs on the calling thread: handing it to the pool costs
/// more than it saves (routers, tiny test models).
const PARALLEL_MIN: usize = 1 << 15;

/// Rows per rayon task: large enough to amortise scheduling, small enough to balance.
fn rows_per_task(rows: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    (rows / (threads * 8)).clamp(1, 256)
}

/// Activations in the form a weight format multiplies with (`n` vectors).
enum Acts<'a> {
    F32(&'a [f32]),
    /// `cols / 32` blocks per vector, prepared.
    Q8_0(Q8Prepared),
    /// `cols / 32` blocks per vector.
    Q8_1(Vec<BlockQ8_1>),
    /// `cols / 256` blocks per vector.
    Q8K(Vec<BlockQ8K>),
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
        let products = self.format(w.dtype()).products;
        let task = |(c, block): (usize, &mut [f32])| match (&acts, products) {
            (
                Acts::Q8_0(q),
                Products::Q8_0 {
                    matmul_rows: Some(matmul_rows),
                    ..
                },
            ) => {
                let rows = w.rows_slice(c * chunk, block.len() / n);
                matmul_rows(rows.bytes(), q, block)
            }
            (
                Acts::Q8K(q),
                Products::Q8K {
                    matmul_rows: Some(matmul_rows),
                    ..
                },
            ) => {
                let rows = w.rows_slice(c * chunk, block.len() / n);
                matmul_rows(rows.bytes(), q, n, block)
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
            let kind = |w: &MatRef<'_>| self.format(w.dtype()).products.acts();
            let same = jobs[..i]
                .iter()
                .position(|p| std::ptr::eq(p.x, j.x) && kind(&p.w) == kind(&j.w));
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
    fn prepare<'x>(&self, dtype: crate::DType, x: &'x [f32], n: usize, cols: usize) -> Acts<'x> {
        /// `n` vectors quantised `len` values to a block by `quantize`.
        fn blocks<B: Copy + bytemuck::Zeroable>(
            x: &[f32],
            cols: usize,
            len: usize,
            quantize: fn(&[f32], &mut [B]),
        ) -> Vec<B> {
            let nb = cols / len;
            let mut q = vec![B::zeroed(); x.len() / cols.max(1) * nb];
            for (xs, qs) in x
                .chunks_exact(cols.max(1))
                .zip(q.chunks_exact_mut(nb.max(1)))
            {
                quantize(xs, qs);
            }
            q
        }
        match self.format(dtype).products.acts() {
            ActsKind::F32 => Acts::F32(x),
            ActsKind::Q8_0 => Acts::Q8_0(Q8Prepared::from_blocks(
                blocks::<BlockQ8_0>(x, cols, QK, self.quantize_row_q8_0),
                n,
            )),
            ActsKind::Q8_1 => Acts::Q8_1(blocks(x, cols, QK, self.quantize_row_q8_1)),
            ActsKind::Q8K => Acts::Q8K(blocks(x, cols, QK_K, self.quantize_row_q8_k)),
        }
    }

    /// Rows `r0..r0 + ys.len()` of `w` times the one vector of `acts`.
    fn rows_matvec(&self, w: &MatRef<'_>, acts: &Acts<'_>, r0: usize, ys: &mut [f32]) {
        match (acts, self.format(w.dtype()).products) {
            (
                Acts::Q8_0(q),
                Products::Q8_0 {
                    dot_rows: Some(dot_rows),
                    ..
                },
            ) => dot_rows(w.rows_slice(r0, ys.len()).bytes(), &q.get(0), ys),
            _ => self.rows_dot(w, acts, 0, r0, ys.iter_mut()),
        }
    }

    /// Rows `r0..` of `w` times token `t` of the activations, one value into each of `ys` (as many
    /// rows as `ys` yields). The format's kernel and the token's activations are found once per call,
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
        // Activations are prepared in the form the format's products take, so the pairs match.
        match (acts, self.format(w.dtype()).products) {
            (Acts::F32(x), Products::F32 { dot }) => {
                let x = &x[t * cols..(t + 1) * cols];
                pairs.for_each(|(y, row)| *y = dot(row, x))
            }
            (Acts::Q8_0(q), Products::Q8_0 { dot, .. }) => {
                let x = q.get(t);
                pairs.for_each(|(y, row)| *y = dot(row, &x))
            }
            (Acts::Q8_1(q), Products::Q8_1 { dot }) => {
                let nb = cols / QK;
                let x = &q[t * nb..(t + 1) * nb];
                pairs.for_each(|(y, row)| *y = dot(row, x))
            }
            (Acts::Q8K(q), Products::Q8K { dot, .. }) => {
                let nb = cols / QK_K;
                let x = &q[t * nb..(t + 1) * nb];
                pairs.for_each(|(y, row)| *y = dot(row, x))
            }
            _ => pairs.for_each(|(y, _)| *y = f32::NAN),
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
