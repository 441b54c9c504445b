//! cosmoe-kernels: number formats and the kernels of a forward pass.
//!
//! This crate knows nothing of files, models or experts. It sees weights as row-major matrices of
//! bytes in one [`DType`] ([`MatRef`]) and activations as `f32` slices.
//!
//! Layout (DESIGN.md, "House style"): `scalar/` holds the reference twin of every kernel, one file per
//! format; SIMD tiers add one folder per ISA with the same function names. [`Kernels`] is the table the
//! runtime calls through, filled once per process from the CPU's features.

mod dispatch;
mod matmul;
pub mod scalar;

pub use dispatch::{kernels, Kernels, Tier};
pub use matmul::{matmul, matvec};

/// The element formats of weight matrices.
///
/// Quantised block formats (Q8_0, Q4_0, ...) join this enum with their block size; every helper below
/// is written in terms of blocks so they fit without changes to callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    /// Values per block (1 for plain float formats).
    pub const fn block_len(self) -> usize {
        1
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Bytes of one row of `cols` values, or `None` if `cols` is not a whole number of blocks or the
    /// size overflows.
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        if cols % self.block_len() != 0 {
            return None;
        }
        (cols / self.block_len()).checked_mul(self.block_bytes())
    }

    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("a {rows} x {cols} {dtype} matrix needs {expected} bytes, got {got}")]
    MatrixSize {
        dtype: DType,
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
    #[error("{cols} columns are not a whole number of {dtype} blocks")]
    RowBlocks { dtype: DType, cols: usize },
}

/// A borrowed row-major `(rows, cols)` weight matrix stored as bytes of `dtype`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    dtype: DType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: &'a [u8],
}

impl<'a> MatRef<'a> {
    /// Checks that `data` holds exactly `rows` rows of `cols` values.
    pub fn new(
        dtype: DType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, KernelError> {
        let row_bytes = dtype
            .row_bytes(cols)
            .ok_or(KernelError::RowBlocks { dtype, cols })?;
        let expected = row_bytes.saturating_mul(rows);
        if expected != data.len() {
            return Err(KernelError::MatrixSize {
                dtype,
                rows,
                cols,
                expected,
                got: data.len(),
            });
        }
        Ok(MatRef {
            dtype,
            rows,
            cols,
            row_bytes,
            data,
        })
    }

    /// A matrix whose size the caller has already checked with [`MatRef::new`] (a stored view
    /// re-borrowed on the hot path). A wrong size makes [`MatRef::row`] panic, never read out of bounds.
    pub fn new_prechecked(dtype: DType, rows: usize, cols: usize, data: &'a [u8]) -> Self {
        let row_bytes = data.len().checked_div(rows).unwrap_or(0);
        debug_assert!(Self::new(dtype, rows, cols, data).is_ok());
        MatRef {
            dtype,
            rows,
            cols,
            row_bytes,
            data,
        }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }

    /// The bytes of row `r`. Panics if `r >= rows` (callers index with validated ids).
    pub fn row(&self, r: usize) -> &'a [u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// Rows `start..start + n` as a matrix of their own (for experts fused in one tensor).
    pub fn rows_slice(&self, start: usize, n: usize) -> MatRef<'a> {
        MatRef {
            data: &self.data[start * self.row_bytes..(start + n) * self.row_bytes],
            rows: n,
            ..*self
        }
    }
}

/// Dequantises one row of `dtype` values into `out` (`out.len()` values).
pub fn dequantize_row(dtype: DType, row: &[u8], out: &mut [f32]) {
    (kernels().dequantize_row)(dtype, row, out)
}

/// `out = w * (x / rms(x))`, transformers' RMSNorm (`x * rsqrt(mean(x^2) + eps)`, then times the weight).
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    (kernels().rmsnorm)(x, w, eps, out)
}

/// In-place softmax over `x`.
pub fn softmax(x: &mut [f32]) {
    (kernels().softmax)(x)
}

/// `gate = silu(gate) * up`, the gated activation of SwiGLU feed-forward blocks.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) {
    (kernels().silu_mul)(gate, up)
}

/// Dot product of two `f32` slices of equal length.
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot_f32)(a, b)
}

/// `y += a * x`.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    (kernels().axpy)(a, x, y)
}

/// Rotary embedding in the "NeoX" layout transformers uses (`rotate_half`): value `i` of the first half
/// pairs with value `i` of the second. `x` is one head (`head_dim` values); `cos`/`sin` hold
/// `head_dim / 2` values for this position.
pub fn rope_neox(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    (kernels().rope_neox)(x, cos, sin)
}
