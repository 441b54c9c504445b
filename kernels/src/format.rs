//! One entry per weight format: everything about multiplying by it (ggml's type traits, candle's
//! `GgmlType`). A tier's [`crate::Kernels`] holds one [`FormatKernels`] per [`DType`]; the products
//! (`matmul`, `matvec_jobs`) prepare the activations the entry asks for and call its functions, with
//! no arm per format. Adding a format is one file per tier and one row in each tier's table.

use crate::acts::{Q8Acts, Q8Prepared};
use crate::blocks::{BlockQ8K, BlockQ8_1};

/// One row of values to its bytes.
pub type QuantizeFn = fn(&[f32], &mut [u8]);

/// `dot` of each of `y.len()` Q8_0-activation rows stored back to back.
pub type Q8RowsFn = fn(&[u8], &Q8Acts<'_>, &mut [f32]);

/// `yt[r * n + t] = w[r] . x[t]` over rows back to back and `n` prepared vectors.
pub type Q8TileFn = fn(&[u8], &Q8Prepared, &mut [f32]);

/// Prefill for the Q8_K formats: `yt[r * n + t] = w[r] . x[t]` for rows back to back and the `n`
/// (third argument) vectors of `x.len() / n` blocks each, back to back.
pub type Q8KTileFn = fn(&[u8], &[BlockQ8K], usize, &mut [f32]);

/// How a format's products take their activations, and its kernels for them. Every function takes
/// the raw bytes of whole weight rows (any alignment) and one token's activations.
#[derive(Clone, Copy)]
pub enum Products {
    /// f32 activations (the float formats): one row . x.
    F32 { dot: fn(&[u8], &[f32]) -> f32 },
    /// Q8_0 activations prepared once per vector ([`Q8Prepared`]: blocks, f32 scales, block sums).
    Q8_0 {
        dot: fn(&[u8], &Q8Acts<'_>) -> f32,
        /// `dot` of each of `y.len()` rows stored back to back (decode; one call per task, so a tier
        /// can hint rows ahead however short they are). `None`: `dot` row by row.
        dot_rows: Option<Q8RowsFn>,
        /// Prefill: `yt[r * n + t] = w[r] . x[t]` for rows back to back and the `n` prepared vectors
        /// (a tier may tile rows by tokens). `None`: `dot` for each row and token.
        matmul_rows: Option<Q8TileFn>,
    },
    /// Q8_1 activations (Q8_0 with `d * sum(q)` per block: the formats with a minimum).
    Q8_1 { dot: fn(&[u8], &[BlockQ8_1]) -> f32 },
    /// Q8_K activations (256-value super-blocks with sums of 16: the K-quants and the IQ
    /// formats but IQ4_NL).
    Q8K {
        dot: fn(&[u8], &[BlockQ8K]) -> f32,
        /// Prefill (bit for bit `dot` for each row and token; a tier may unpack each row once for
        /// several tokens). `None`: `dot` for each row and token.
        matmul_rows: Option<Q8KTileFn>,
    },
}

/// The activation form a format's products take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ActsKind {
    F32,
    Q8_0,
    Q8_1,
    Q8K,
}

impl Products {
    pub fn acts(&self) -> ActsKind {
        match self {
            Products::F32 { .. } => ActsKind::F32,
            Products::Q8_0 { .. } => ActsKind::Q8_0,
            Products::Q8_1 { .. } => ActsKind::Q8_1,
            Products::Q8K { .. } => ActsKind::Q8K,
        }
    }
}

/// A tier's kernels for one weight format.
#[derive(Clone, Copy)]
pub struct FormatKernels {
    /// One row's bytes to `out.len()` f32 values, as ggml's `dequantize_row_*` (bit for bit).
    pub dequantize: fn(&[u8], &mut [f32]),
    /// One row of values to its bytes, as llama.cpp's `quantize_*` without an importance matrix (bit
    /// for bit; the scalar reference in every tier). `None` for the formats cosmoe cannot quantise
    /// to ([`crate::DType::has_quantizer`]).
    pub quantize: Option<QuantizeFn>,
    pub products: Products,
}

/// [`Products::Q8_0`] from kernels over typed blocks: `q8_0_products!(as_q4_0, dot)` or
/// `q8_0_products!(as_q4_0, dot, dot_rows, matmul_rows)`; the byte rows are viewed as blocks with
/// the first argument.
macro_rules! q8_0_products {
    // A kernel over the activations' blocks alone (Q8_0 . Q8_0).
    (blocks: $blocks:path, $dot:path) => {
        $crate::format::Products::Q8_0 {
            dot: |row, x| $dot($blocks(row), x.blocks()),
            dot_rows: None,
            matmul_rows: None,
        }
    };
    ($blocks:path, $dot:path) => {
        $crate::format::Products::Q8_0 {
            dot: |row, x| $dot($blocks(row), x),
            dot_rows: None,
            matmul_rows: None,
        }
    };
    ($blocks:path, $dot:path, $rows:path, $matmul:path) => {
        $crate::format::Products::Q8_0 {
            dot: |row, x| $dot($blocks(row), x),
            dot_rows: Some(|rows, x, y| $rows($blocks(rows), x, y)),
            matmul_rows: Some(|rows, x, yt| $matmul($blocks(rows), x, yt)),
        }
    };
}
pub(crate) use q8_0_products;

/// [`Products::Q8_1`] / [`Products::Q8K`] from a kernel over typed blocks:
/// `block_products!(Q8K, dot)` or, with a prefill tile over byte rows, `block_products!(Q8K, dot,
/// matmul_rows)`.
macro_rules! block_products {
    (Q8K, $dot:path) => {
        $crate::format::Products::Q8K {
            dot: |row, x| $dot($crate::blocks::as_blocks(row), x),
            matmul_rows: None,
        }
    };
    (Q8K, $dot:path, $tile:path) => {
        $crate::format::Products::Q8K {
            dot: |row, x| $dot($crate::blocks::as_blocks(row), x),
            matmul_rows: Some($tile),
        }
    };
    ($kind:ident, $dot:path) => {
        $crate::format::Products::$kind {
            dot: |row, x| $dot($crate::blocks::as_blocks(row), x),
        }
    };
}
pub(crate) use block_products;

/// [`Products::F32`] for f32 rows given as bytes, with a tier's f32 dot product.
macro_rules! f32_products {
    ($dot:path) => {
        $crate::format::Products::F32 {
            dot: |row, x| $crate::scalar::f32::dot_row(row, x, $dot),
        }
    };
}
pub(crate) use f32_products;
