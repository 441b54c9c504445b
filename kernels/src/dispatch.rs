//! The kernel table: one per instruction-set tier, chosen once per process from the CPU's features
//! (or picked with `COSMOE_KERNELS=scalar|avx2|avx512|neon`); every call goes through a function
//! pointer, so the binary needs no `target-cpu=native` and runs on any CPU of its architecture.

use std::sync::OnceLock;

use crate::blocks::{as_blocks, as_blocks_mut, as_q4_0, as_q8_0, BlockQ8K, BlockQ8_0, BlockQ8_1};
use crate::format::{block_products, f32_products, q8_0_products, FormatKernels, Products};
use crate::{scalar, DType};

/// An instruction-set tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Portable Rust: the reference.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2,
    /// x86-64 with AVX-512 F/BW/VL (using VNNI and BF16 instructions where the CPU has them).
    Avx512,
    /// aarch64 Advanced SIMD (using the dot-product instructions where the CPU has them).
    Neon,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TierError {
    #[error("unknown kernel tier `{0}` (scalar, avx2, avx512, neon)")]
    Unknown(String),
    #[error("this CPU cannot run the {0} kernels")]
    Unsupported(&'static str),
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Scalar, Tier::Avx2, Tier::Avx512, Tier::Neon];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Scalar => "scalar",
            Tier::Avx2 => "avx2",
            Tier::Avx512 => "avx512",
            Tier::Neon => "neon",
        }
    }

    pub fn parse(s: &str) -> Result<Tier, TierError> {
        Tier::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| TierError::Unknown(s.to_owned()))
    }

    /// Whether this CPU can run the tier.
    pub fn supported(self) -> bool {
        match self {
            Tier::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => crate::x86_64::avx2_supported(),
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => crate::x86_64::avx512_supported(),
            #[cfg(target_arch = "aarch64")]
            Tier::Neon => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The tier used by default: the best one this CPU runs. (The AVX-512 tier passed
    /// `kernels/tests/tiers.rs` on an AMD Zen 5 CPU with VNNI and VBMI, 2026-11-23; where a kernel of
    /// its own measured no faster than the AVX2 one, its table holds the AVX2 one.)
    pub fn best() -> Tier {
        [Tier::Avx512, Tier::Avx2, Tier::Neon]
            .into_iter()
            .find(|t| t.supported())
            .unwrap_or(Tier::Scalar)
    }

    /// Tiers this CPU runs, scalar first.
    pub fn available() -> Vec<Tier> {
        Tier::ALL.into_iter().filter(|t| t.supported()).collect()
    }
}

/// Function pointers of one tier (the same names as the functions in `scalar/`).
#[derive(Clone, Copy)]
pub struct Kernels {
    pub tier: Tier,
    /// Sub-features in use within the tier, for reports (`"vnni"`, `"bf16"`, `"dotprod"`).
    pub features: &'static [&'static str],
    /// One entry per weight format, indexed by [`DType::index`] ([`Kernels::format`]).
    pub formats: [FormatKernels; DType::COUNT],
    pub dot_f32: fn(&[f32], &[f32]) -> f32,
    /// The activation quantisers (`scalar::q8_*::quantize_row_activations`, bit for bit).
    pub quantize_row_q8_0: fn(&[f32], &mut [BlockQ8_0]),
    pub quantize_row_q8_1: fn(&[f32], &mut [BlockQ8_1]),
    pub quantize_row_q8_k: fn(&[f32], &mut [BlockQ8K]),
    pub axpy: fn(f32, &[f32], &mut [f32]),
    pub rmsnorm: fn(&[f32], &[f32], f32, &mut [f32]),
    /// Scores of one query head against `scores.len()` key rows `stride` apart, times a scale.
    pub attn_scores: fn(&[f32], &[f32], usize, f32, &mut [f32]),
    /// `out = sum_j w[j] * v_j` over `w.len()` value rows `stride` apart.
    pub attn_mix: fn(&[f32], &[f32], usize, &mut [f32]),
    pub softmax: fn(&mut [f32]),
    pub silu_mul: fn(&mut [f32], &[f32]),
    pub rope_neox: fn(&mut [f32], &[f32], &[f32]),
    pub rope_interleaved: fn(&mut [f32], &[f32], &[f32]),
}

/// A format's row of the scalar table: its scalar dequantiser, quantiser and products
/// (`scalar_format!(iq2_xxs, no quantizer, ...)` for a format without a quantiser).
macro_rules! scalar_format {
    ($m:ident, $products:expr) => {
        FormatKernels {
            dequantize: |row, out| scalar::$m::dequantize(as_blocks(row), out),
            quantize: Some(|x, out| scalar::$m::quantize(x, as_blocks_mut(out))),
            products: $products,
        }
    };
    ($m:ident, no quantizer, $products:expr) => {
        FormatKernels {
            dequantize: |row, out| scalar::$m::dequantize(as_blocks(row), out),
            quantize: None,
            products: $products,
        }
    };
}

/// The scalar formats, in [`DType::ALL`] order.
const SCALAR_FORMATS: [FormatKernels; DType::COUNT] = [
    FormatKernels {
        dequantize: scalar::f32::dequantize_row,
        quantize: Some(scalar::f32::quantize_row),
        products: f32_products!(scalar::f32::dot),
    },
    FormatKernels {
        dequantize: scalar::f16::dequantize_row,
        quantize: Some(scalar::f16::quantize_row),
        products: Products::F32 {
            dot: scalar::f16::dot,
        },
    },
    FormatKernels {
        dequantize: scalar::bf16::dequantize_row,
        quantize: Some(scalar::bf16::quantize_row),
        products: Products::F32 {
            dot: scalar::bf16::dot,
        },
    },
    FormatKernels {
        dequantize: |row, out| scalar::q8_0::dequantize_row(as_q8_0(row), out),
        quantize: Some(|x, out| scalar::q8_0::quantize_row(x, as_blocks_mut(out))),
        products: q8_0_products!(blocks: as_q8_0, scalar::q8_0::dot),
    },
    FormatKernels {
        dequantize: |row, out| scalar::q4_0::dequantize_row(as_q4_0(row), out),
        quantize: Some(|x, out| scalar::q4_0::quantize_row(x, as_blocks_mut(out))),
        products: q8_0_products!(
            as_q4_0,
            scalar::q4_0::dot,
            scalar::q4_0::dot_rows,
            scalar::q4_0::matmul_rows
        ),
    },
    scalar_format!(q4_1, block_products!(Q8_1, scalar::q4_1::dot)),
    scalar_format!(q5_0, q8_0_products!(blocks: as_blocks, scalar::q5_0::dot)),
    scalar_format!(q5_1, block_products!(Q8_1, scalar::q5_1::dot)),
    scalar_format!(q2_k, block_products!(Q8K, scalar::q2_k::dot)),
    scalar_format!(q3_k, block_products!(Q8K, scalar::q3_k::dot)),
    scalar_format!(q4_k, block_products!(Q8K, scalar::q4_k::dot)),
    scalar_format!(q5_k, block_products!(Q8K, scalar::q5_k::dot)),
    scalar_format!(q6_k, block_products!(Q8K, scalar::q6_k::dot)),
    scalar_format!(
        iq4_nl,
        q8_0_products!(blocks: as_blocks, scalar::iq4_nl::dot)
    ),
    scalar_format!(iq4_xs, block_products!(Q8K, scalar::iq4_xs::dot)),
    scalar_format!(
        iq3_xxs,
        no quantizer,
        block_products!(Q8K, scalar::iq3_xxs::dot)
    ),
    scalar_format!(iq3_s, no quantizer, block_products!(Q8K, scalar::iq3_s::dot)),
    scalar_format!(
        iq2_xxs,
        no quantizer,
        block_products!(Q8K, scalar::iq2_xxs::dot)
    ),
    scalar_format!(
        iq2_xs,
        no quantizer,
        block_products!(Q8K, scalar::iq2_xs::dot)
    ),
    scalar_format!(iq2_s, no quantizer, block_products!(Q8K, scalar::iq2_s::dot)),
    scalar_format!(iq1_s, no quantizer, block_products!(Q8K, scalar::iq1_s::dot)),
    scalar_format!(iq1_m, no quantizer, block_products!(Q8K, scalar::iq1_m::dot)),
];

/// The scalar table; SIMD tiers start from it and replace what they implement.
pub const SCALAR: Kernels = Kernels {
    tier: Tier::Scalar,
    features: &[],
    formats: SCALAR_FORMATS,
    dot_f32: scalar::f32::dot,
    quantize_row_q8_0: scalar::q8_0::quantize_row_activations,
    quantize_row_q8_1: scalar::q8_1::quantize_row_activations,
    quantize_row_q8_k: scalar::q8_k::quantize_row_activations,
    axpy: scalar::f32::axpy,
    rmsnorm: scalar::ops::rmsnorm,
    attn_scores: scalar::attn::attn_scores,
    attn_mix: scalar::attn::attn_mix,
    softmax: scalar::ops::softmax,
    silu_mul: scalar::ops::silu_mul,
    rope_neox: scalar::ops::rope_neox,
    rope_interleaved: scalar::ops::rope_interleaved,
};

impl Kernels {
    /// The kernels of one weight format.
    pub fn format(&self, dtype: DType) -> &FormatKernels {
        &self.formats[dtype.index()]
    }

    /// This table with `dtype`'s products replaced (a tier's own kernels for a format).
    pub(crate) fn with_products(mut self, dtype: DType, products: Products) -> Kernels {
        self.formats[dtype.index()].products = products;
        self
    }

    /// Dequantises one row of `dtype` values (`row`) into `out`.
    pub fn dequantize_row(&self, dtype: DType, row: &[u8], out: &mut [f32]) {
        (self.format(dtype).dequantize)(row, out)
    }

    /// The table of `tier`, or `None` if this CPU cannot run it.
    pub fn for_tier(tier: Tier) -> Option<&'static Kernels> {
        if !tier.supported() {
            return None;
        }
        static TABLES: [OnceLock<Kernels>; 4] = [
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
            OnceLock::new(),
        ];
        let i = Tier::ALL.iter().position(|&t| t == tier)?;
        Some(TABLES[i].get_or_init(|| build(tier)))
    }
}

fn build(tier: Tier) -> Kernels {
    match tier {
        #[cfg(target_arch = "x86_64")]
        Tier::Avx2 => crate::x86_64::avx2::table(),
        #[cfg(target_arch = "x86_64")]
        Tier::Avx512 => crate::x86_64::avx512::table(),
        #[cfg(target_arch = "aarch64")]
        Tier::Neon => crate::aarch64::neon::table(),
        _ => SCALAR,
    }
}

/// The tier `COSMOE_KERNELS` asks for, if set (a tier this CPU cannot run falls back to the default,
/// with a warning on stderr).
fn chosen() -> Tier {
    let best = Tier::best();
    let Ok(want) = std::env::var("COSMOE_KERNELS") else {
        return best;
    };
    match Tier::parse(&want) {
        Ok(t) if t.supported() => t,
        Ok(t) => {
            warn(format_args!(
                "COSMOE_KERNELS={want}: {}; using {}",
                TierError::Unsupported(t.name()),
                best.name()
            ));
            best
        }
        Err(e) => {
            warn(format_args!("COSMOE_KERNELS: {e}; using {}", best.name()));
            best
        }
    }
}

/// A line on stderr; not `eprintln!`, which panics when stderr is closed.
fn warn(msg: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "cosmoe: {msg}");
}

/// The table for this process, chosen on first use.
pub fn kernels() -> &'static Kernels {
    static CHOSEN: OnceLock<&'static Kernels> = OnceLock::new();
    CHOSEN.get_or_init(|| Kernels::for_tier(chosen()).unwrap_or(&SCALAR))
}
