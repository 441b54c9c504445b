//! cosmoe-kernels: number formats and the kernels of a forward pass.
//!
//! This crate knows nothing of files, models or experts. It sees weights as row-major matrices of
//! bytes in one [`DType`] ([`MatRef`]) and activations as `f32` slices.
//!
//! Layout (DESIGN.md, "House style"): `scalar/` holds the reference twin of every kernel, one file per
//! format; SIMD tiers add one folder per ISA with the same function names. [`Kernels`] is the table the
//! runtime calls through, filled once per process from the CPU's features.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
pub mod acts;
pub mod blocks;
mod dispatch;
pub mod format;
mod matmul;
pub mod probe;
pub mod sample;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
pub mod x86_64;

pub use acts::{Q8Acts, Q8Prepared};
pub use blocks::{BlockQ4_0, BlockQ8_0, QK};
pub use dispatch::{kernels, Kernels, Tier, TierError};
pub use matmul::{matmul, matvec, matvec_jobs, MatvecJob};

/// The element formats of weight matrices: the float formats and GGML's block formats (their
/// layouts in [`blocks`]).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    /// GGML Q8_0: blocks of 32 `i8` with an f16 scale (34 bytes).
    Q8_0,
    /// GGML Q4_0: blocks of 32 4-bit values with an f16 scale (18 bytes).
    Q4_0,
    /// GGML Q4_1: Q4_0 with an f16 minimum (20 bytes).
    Q4_1,
    /// GGML Q5_0: 5-bit values with an f16 scale (22 bytes).
    Q5_0,
    /// GGML Q5_1: Q5_0 with an f16 minimum (24 bytes).
    Q5_1,
    /// GGML Q2_K: super-blocks of 256 2-bit values, 4-bit scales and mins (84 bytes).
    Q2_K,
    /// GGML Q3_K: super-blocks of 256 3-bit values, 6-bit scales (110 bytes).
    Q3_K,
    /// GGML Q4_K: super-blocks of 256 4-bit values, 6-bit scales and mins (144 bytes).
    Q4_K,
    /// GGML Q5_K: super-blocks of 256 5-bit values, 6-bit scales and mins (176 bytes).
    Q5_K,
    /// GGML Q6_K: super-blocks of 256 6-bit values, 8-bit scales (210 bytes).
    Q6_K,
    /// GGML IQ4_NL: blocks of 32 4-bit indices into a non-linear grid (18 bytes).
    IQ4_NL,
    /// GGML IQ4_XS: super-blocks of 256 IQ4_NL indices with 6-bit scales (136 bytes).
    IQ4_XS,
    /// GGML IQ3_XXS: super-blocks of 256, groups of 4 values from a 256-point grid with 7-bit signs
    /// and 4-bit scales (98 bytes, 3.06 bits per value).
    IQ3_XXS,
    /// GGML IQ3_S: groups of 4 from a 512-point grid, explicit signs, 4-bit scales (110 bytes).
    IQ3_S,
    /// GGML IQ2_XXS: groups of 8 from a 256-point grid with 7-bit signs, 4-bit scales (66 bytes).
    IQ2_XXS,
    /// GGML IQ2_XS: groups of 8 from a 512-point grid, 4-bit scales per 16 values (74 bytes).
    IQ2_XS,
    /// GGML IQ2_S: groups of 8 from a 1024-point grid, explicit signs (82 bytes).
    IQ2_S,
    /// GGML IQ1_S: groups of 8 from a 2048-point ternary grid plus a shift of +-1/8 (50 bytes).
    IQ1_S,
    /// GGML IQ1_M: IQ1_S with 3-bit scales per 16 values and the f16 scale spread over their top
    /// bits (56 bytes).
    IQ1_M,
}

impl DType {
    /// Number of formats (the length of [`DType::ALL`]).
    pub const COUNT: usize = 22;

    /// Position in [`DType::ALL`] (the index of the format's row in a kernel table).
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const ALL: [DType; DType::COUNT] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q2_K,
        DType::Q3_K,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
        DType::IQ4_NL,
        DType::IQ4_XS,
        DType::IQ3_XXS,
        DType::IQ3_S,
        DType::IQ2_XXS,
        DType::IQ2_XS,
        DType::IQ2_S,
        DType::IQ1_S,
        DType::IQ1_M,
    ];

    /// Values per block (1 for plain float formats).
    pub const fn block_len(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::IQ4_NL => {
                QK
            }
            DType::Q2_K
            | DType::Q3_K
            | DType::Q4_K
            | DType::Q5_K
            | DType::Q6_K
            | DType::IQ4_XS
            | DType::IQ3_XXS
            | DType::IQ3_S
            | DType::IQ2_XXS
            | DType::IQ2_XS
            | DType::IQ2_S
            | DType::IQ1_S
            | DType::IQ1_M => blocks::QK_K,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        use std::mem::size_of;
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => size_of::<BlockQ8_0>(),
            DType::Q4_0 => size_of::<BlockQ4_0>(),
            DType::Q4_1 => size_of::<blocks::BlockQ4_1>(),
            DType::Q5_0 => size_of::<blocks::BlockQ5_0>(),
            DType::Q5_1 => size_of::<blocks::BlockQ5_1>(),
            DType::Q2_K => size_of::<blocks::BlockQ2K>(),
            DType::Q3_K => size_of::<blocks::BlockQ3K>(),
            DType::Q4_K => size_of::<blocks::BlockQ4K>(),
            DType::Q5_K => size_of::<blocks::BlockQ5K>(),
            DType::Q6_K => size_of::<blocks::BlockQ6K>(),
            DType::IQ4_NL => size_of::<blocks::BlockIq4Nl>(),
            DType::IQ4_XS => size_of::<blocks::BlockIq4Xs>(),
            DType::IQ3_XXS => size_of::<blocks::BlockIq3Xxs>(),
            DType::IQ3_S => size_of::<blocks::BlockIq3S>(),
            DType::IQ2_XXS => size_of::<blocks::BlockIq2Xxs>(),
            DType::IQ2_XS => size_of::<blocks::BlockIq2Xs>(),
            DType::IQ2_S => size_of::<blocks::BlockIq2S>(),
            DType::IQ1_S => size_of::<blocks::BlockIq1S>(),
            DType::IQ1_M => size_of::<blocks::BlockIq1M>(),
        }
    }

    /// Whether products with this format quantise the activations (to Q8_0, Q8_1 or Q8_K) first.
    pub const fn quantised_activations(self) -> bool {
        !matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// Whether cosmoe can quantise to this format ([`quantize`]). The IQ1/IQ2/IQ3 formats have no
    /// quantiser here: llama.cpp's search their grids for the points an importance matrix weighs
    /// best (and for IQ2_XXS, IQ2_XS and IQ1_S refuse to run without one), so files in them come
    /// from `llama-quantize --imatrix`; cosmoe reads and multiplies them.
    pub const fn has_quantizer(self) -> bool {
        !matches!(
            self,
            DType::IQ3_XXS
                | DType::IQ3_S
                | DType::IQ2_XXS
                | DType::IQ2_XS
                | DType::IQ2_S
                | DType::IQ1_S
                | DType::IQ1_M
        )
    }

    /// Parses a format's name, e.g. `f32`, `bf16`, `q8_0`, `q4_k`, `iq4_xs` (any case).
    pub fn parse(s: &str) -> Option<DType> {
        DType::ALL
            .into_iter()
            .find(|d| d.name().eq_ignore_ascii_case(s))
    }

    /// Bytes of one row of `cols` values, or `None` if `cols` is not a whole number of blocks or the
    /// size overflows.
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        if !cols.is_multiple_of(self.block_len()) {
            return None;
        }
        (cols / self.block_len()).checked_mul(self.block_bytes())
    }

    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Q8_0 => "Q8_0",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q2_K => "Q2_K",
            DType::Q3_K => "Q3_K",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
            DType::IQ4_NL => "IQ4_NL",
            DType::IQ4_XS => "IQ4_XS",
            DType::IQ3_XXS => "IQ3_XXS",
            DType::IQ3_S => "IQ3_S",
            DType::IQ2_XXS => "IQ2_XXS",
            DType::IQ2_XS => "IQ2_XS",
            DType::IQ2_S => "IQ2_S",
            DType::IQ1_S => "IQ1_S",
            DType::IQ1_M => "IQ1_M",
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
    #[error("{len} values are not a whole number of rows of {cols}")]
    Rows { len: usize, cols: usize },
    #[error(
        "cosmoe cannot quantise to {0}: llama.cpp's quantiser for it searches a grid weighed by an \
         importance matrix (make {0} files with llama-quantize --imatrix)"
    )]
    NoQuantizer(DType),
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
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
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

/// Quantises `x` (a whole number of rows of `cols` values) to `dtype`, with the scalar reference
/// quantisers (deterministic; the bytes llama.cpp's `quantize_*` writes without an importance
/// matrix). Fails if `cols` is not a whole number of blocks, `x` not a whole number of rows, or the
/// format has no quantiser ([`DType::has_quantizer`]).
pub fn quantize(dtype: DType, x: &[f32], cols: usize) -> Result<Vec<u8>, KernelError> {
    let quantize = dispatch::SCALAR
        .format(dtype)
        .quantize
        .ok_or(KernelError::NoQuantizer(dtype))?;
    let row_bytes = dtype
        .row_bytes(cols)
        .ok_or(KernelError::RowBlocks { dtype, cols })?;
    if cols == 0 || !x.len().is_multiple_of(cols) {
        return Err(KernelError::Rows { len: x.len(), cols });
    }
    let rows = x.len() / cols;
    let mut out = vec![0u8; rows * row_bytes];
    for (o, xs) in out.chunks_exact_mut(row_bytes).zip(x.chunks_exact(cols)) {
        quantize(xs, o);
    }
    Ok(out)
}

/// Dequantises one row of `dtype` values into `out` (`out.len()` values).
pub fn dequantize_row(dtype: DType, row: &[u8], out: &mut [f32]) {
    kernels().dequantize_row(dtype, row, out)
}

/// `out = w * (x / rms(x))`, transformers' RMSNorm (`x * rsqrt(mean(x^2) + eps)`, then times the weight).
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    (kernels().rmsnorm)(x, w, eps, out)
}

/// `scores[j] = (q . k_j) * scale` for the `scores.len()` key rows `k_j = keys[j * stride..][..q.len()]`
/// (one query head against the cached keys of its KV head). Panics if those rows do not fit in `keys`.
pub fn attn_scores(q: &[f32], keys: &[f32], stride: usize, scale: f32, scores: &mut [f32]) {
    (kernels().attn_scores)(q, keys, stride, scale, scores)
}

/// `out = sum_j w[j] * v_j` over the `w.len()` value rows `v_j = values[j * stride..][..out.len()]`.
/// Panics if those rows do not fit in `values`.
pub fn attn_mix(w: &[f32], values: &[f32], stride: usize, out: &mut [f32]) {
    (kernels().attn_mix)(w, values, stride, out)
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

/// Rotary embedding in the interleaved layout (pairs `(x_{2i}, x_{2i+1})`), as llama.cpp applies it to
/// the `llama` family's permuted Q/K.
pub fn rope_interleaved(x: &mut [f32], cos: &[f32], sin: &[f32]) {
    (kernels().rope_interleaved)(x, cos, sin)
}
