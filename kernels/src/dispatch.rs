//! The kernel table: one per instruction-set tier, chosen once per process from the CPU's features
//! (or picked with `COSMOE_KERNELS=scalar|avx2|avx512|neon`); every call goes through a function
//! pointer, so the binary needs no `target-cpu=native` and runs on any CPU of its architecture.

use std::sync::OnceLock;

use crate::acts::{Q8Acts, Q8Prepared};
use crate::blocks::{BlockQ4_0, BlockQ8_0};
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
    pub dot_f32: fn(&[f32], &[f32]) -> f32,
    /// f16 row (little-endian bytes, any alignment) . f32.
    pub dot_f16: fn(&[u8], &[f32]) -> f32,
    /// bf16 row (little-endian bytes, any alignment) . f32.
    pub dot_bf16: fn(&[u8], &[f32]) -> f32,
    pub dot_q8_0: fn(&[BlockQ8_0], &[BlockQ8_0]) -> f32,
    /// Q4_0 row . prepared Q8_0 activations (the same number of blocks).
    pub dot_q4_0: fn(&[BlockQ4_0], &Q8Acts<'_>) -> f32,
    /// `dot_q4_0` of each of `y.len()` rows stored back to back (decode's matvec: one call per task,
    /// so a tier can hint the rows ahead however short they are).
    pub dot_q4_0_rows: fn(&[BlockQ4_0], &Q8Acts<'_>, &mut [f32]),
    /// Prefill's product: `yt[r * n + t] = w[r] . x[t]` for rows stored back to back and the `n`
    /// vectors of the prepared activations (a tier may tile rows by tokens).
    pub matmul_q4_0_rows: fn(&[BlockQ4_0], &Q8Prepared, &mut [f32]),
    /// The activation quantiser (`scalar::q8_0::quantize_row_activations`, bit for bit).
    pub quantize_row_q8_0: fn(&[f32], &mut [BlockQ8_0]),
    pub axpy: fn(f32, &[f32], &mut [f32]),
    pub dequantize_row: fn(DType, &[u8], &mut [f32]),
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

/// The scalar table; SIMD tiers start from it and replace what they implement.
pub const SCALAR: Kernels = Kernels {
    tier: Tier::Scalar,
    features: &[],
    dot_f32: scalar::f32::dot,
    dot_f16: scalar::f16::dot,
    dot_bf16: scalar::bf16::dot,
    dot_q8_0: scalar::q8_0::dot,
    dot_q4_0: scalar::q4_0::dot,
    dot_q4_0_rows: scalar::q4_0::dot_rows,
    matmul_q4_0_rows: scalar::q4_0::matmul_rows,
    quantize_row_q8_0: scalar::q8_0::quantize_row_activations,
    axpy: scalar::f32::axpy,
    dequantize_row: scalar::dequantize_row,
    rmsnorm: scalar::ops::rmsnorm,
    attn_scores: scalar::attn::attn_scores,
    attn_mix: scalar::attn::attn_mix,
    softmax: scalar::ops::softmax,
    silu_mul: scalar::ops::silu_mul,
    rope_neox: scalar::ops::rope_neox,
    rope_interleaved: scalar::ops::rope_interleaved,
};

impl Kernels {
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
            eprintln!(
                "cosmoe: COSMOE_KERNELS={want}: {}; using {}",
                TierError::Unsupported(t.name()),
                best.name()
            );
            best
        }
        Err(e) => {
            eprintln!("cosmoe: COSMOE_KERNELS: {e}; using {}", best.name());
            best
        }
    }
}

/// The table for this process, chosen on first use.
pub fn kernels() -> &'static Kernels {
    static CHOSEN: OnceLock<&'static Kernels> = OnceLock::new();
    CHOSEN.get_or_init(|| Kernels::for_tier(chosen()).unwrap_or(&SCALAR))
}
