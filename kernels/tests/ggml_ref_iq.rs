//! The IQ1/IQ2/IQ3 formats (IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M) against llama.cpp's
//! own C code (tests/fixtures/ggml_ref, made by make_ggml_ref.sh from ggml-quants.c and
//! ggml-cpu/quants.c): on committed random blocks of each type (4 super-blocks, random bytes with
//! finite f16 scales, one negative and one subnormal), `dequantize` equals `dequantize_row_*` and
//! `dot` against the committed Q8_K activations equals `ggml_vec_dot_*_q8_K_generic`, bit for bit,
//! one super-block at a time and all four as one row. (make_ggml_ref.sh also checks that gguf-py's
//! `dequantize` gives the same values, and that scalar/iq_grids.rs holds ggml-common.h's grids.)

use cosmoe_kernels::blocks::{as_blocks, BlockQ8K, QK_K};
use cosmoe_kernels::scalar::{iq1_m, iq1_s, iq2_s, iq2_xs, iq2_xxs, iq3_s, iq3_xxs};
use cosmoe_kernels::{dequantize_row, DType};

/// Super-blocks per fixture.
const BLOCKS: usize = 4;

fn fixture(name: &str) -> Vec<u8> {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/ggml_ref/").to_owned() + name;
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn f32s(name: &str) -> Vec<f32> {
    fixture(name)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// ggml's `block_q8_K` read field by field (our struct has alignment 4).
fn acts_q8k() -> Vec<BlockQ8K> {
    fixture("acts.q8_k.bin")
        .chunks_exact(std::mem::size_of::<BlockQ8K>())
        .map(|b| {
            let mut out: BlockQ8K = bytemuck::Zeroable::zeroed();
            out.d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            for (q, &v) in out.qs.iter_mut().zip(&b[4..4 + QK_K]) {
                *q = v as i8;
            }
            for (s, v) in out.bsums.iter_mut().zip(b[4 + QK_K..].chunks_exact(2)) {
                *s = i16::from_le_bytes([v[0], v[1]]);
            }
            out
        })
        .collect()
}

/// One format's reference functions.
struct Format<B> {
    name: &'static str,
    dtype: DType,
    dequantize: fn(&[B], &mut [f32]),
    dot: fn(&[B], &[BlockQ8K]) -> f32,
}

fn check_against_ggml<B: bytemuck::Pod>(f: Format<B>) {
    let name = f.name;
    let bytes = fixture(&format!("{name}.bin"));
    assert_eq!(bytes.len(), BLOCKS * std::mem::size_of::<B>(), "{name}.bin");
    assert_eq!(f.dtype.block_bytes(), std::mem::size_of::<B>());
    let blocks: &[B] = as_blocks(&bytes);

    // dequantize == dequantize_row_*, bit for bit; the kernel table's entry too.
    let want = f32s(&format!("{name}.deq.f32"));
    let mut y = vec![f32::NAN; BLOCKS * QK_K];
    (f.dequantize)(blocks, &mut y);
    let mut table = vec![f32::NAN; BLOCKS * QK_K];
    dequantize_row(f.dtype, &bytes, &mut table);
    for (i, ((g, t), w)) in y.iter().zip(&table).zip(&want).enumerate() {
        assert_eq!(
            (g.to_bits(), t.to_bits()),
            (w.to_bits(), w.to_bits()),
            "{name} dequantize: block {} value {}: {g:e} (table {t:e}) != {w:e}",
            i / QK_K,
            i % QK_K
        );
    }

    // dot == ggml_vec_dot_*_q8_K_generic, bit for bit: block b with activation block b, then the
    // four blocks as one row.
    let acts = acts_q8k();
    let dots = f32s(&format!("{name}.dot.f32"));
    assert_eq!(dots.len(), BLOCKS + 1);
    for (b, want) in dots.iter().enumerate() {
        let r = if b < BLOCKS { b..b + 1 } else { 0..BLOCKS };
        let d = (f.dot)(&blocks[r.clone()], &acts[r]);
        assert_eq!(
            d.to_bits(),
            want.to_bits(),
            "{name} dot {b}: {d:e} != {want:e}"
        );
    }
}

#[test]
fn iq3_xxs_matches_ggml() {
    check_against_ggml(Format {
        name: "iq3_xxs",
        dtype: DType::IQ3_XXS,
        dequantize: iq3_xxs::dequantize,
        dot: iq3_xxs::dot,
    });
}

#[test]
fn iq3_s_matches_ggml() {
    check_against_ggml(Format {
        name: "iq3_s",
        dtype: DType::IQ3_S,
        dequantize: iq3_s::dequantize,
        dot: iq3_s::dot,
    });
}

#[test]
fn iq2_xxs_matches_ggml() {
    check_against_ggml(Format {
        name: "iq2_xxs",
        dtype: DType::IQ2_XXS,
        dequantize: iq2_xxs::dequantize,
        dot: iq2_xxs::dot,
    });
}

#[test]
fn iq2_xs_matches_ggml() {
    check_against_ggml(Format {
        name: "iq2_xs",
        dtype: DType::IQ2_XS,
        dequantize: iq2_xs::dequantize,
        dot: iq2_xs::dot,
    });
}

#[test]
fn iq2_s_matches_ggml() {
    check_against_ggml(Format {
        name: "iq2_s",
        dtype: DType::IQ2_S,
        dequantize: iq2_s::dequantize,
        dot: iq2_s::dot,
    });
}

#[test]
fn iq1_s_matches_ggml() {
    check_against_ggml(Format {
        name: "iq1_s",
        dtype: DType::IQ1_S,
        dequantize: iq1_s::dequantize,
        dot: iq1_s::dot,
    });
}

#[test]
fn iq1_m_matches_ggml() {
    check_against_ggml(Format {
        name: "iq1_m",
        dtype: DType::IQ1_M,
        dequantize: iq1_m::dequantize,
        dot: iq1_m::dot,
    });
}

/// The sign table is the parity rule it is documented as, and the IQ1 grid holds only -1, 0, 1.
#[test]
fn iq_tables_hold_what_they_say() {
    use cosmoe_kernels::scalar::iq_grids::{IQ1S_GRID, KMASK_IQ2XS, KSIGNS_IQ2XS};
    for (i, &s) in KSIGNS_IQ2XS.iter().enumerate() {
        let parity = (i as u32).count_ones() % 2;
        assert_eq!(s as u32, i as u32 | (parity << 7), "ksigns[{i}]");
    }
    assert_eq!(KMASK_IQ2XS, [1, 2, 4, 8, 16, 32, 64, 128]);
    assert!(IQ1S_GRID
        .iter()
        .all(|g| g.to_le_bytes().iter().all(|&b| matches!(b as i8, -1..=1))));
}
