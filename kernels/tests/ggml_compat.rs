//! Q8_0 / Q4_0 blocks byte-identical to ggml's: the reference quantisers against blocks made by
//! llama.cpp's own gguf-py (tests/fixtures/make_ggml_blocks.py), and dequantisation checked against
//! the format's definition.

use std::path::Path;

use cosmoe_kernels::{dequantize_row, quantize, DType, QK};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/ggml_blocks")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn input() -> Vec<f32> {
    fixture("input.f32")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn quantisers_match_ggml_bytes() {
    let x = input();
    assert_eq!(x.len(), 64 * QK);
    for (dtype, file) in [(DType::Q8_0, "q8_0.bin"), (DType::Q4_0, "q4_0.bin")] {
        let want = fixture(file);
        let got = quantize(dtype, &x, x.len()).unwrap();
        assert_eq!(got.len(), want.len(), "{dtype}");
        for (b, (g, w)) in got
            .chunks(dtype.block_bytes())
            .zip(want.chunks(dtype.block_bytes()))
            .enumerate()
        {
            assert_eq!(g, w, "{dtype} block {b}");
        }
    }
}

/// Round trips within the formats' bounds: Q8_0 within half a step (d = max|x| / 127), Q4_0 within one
/// step (d = max / -8; the top of the range is clamped), plus what storing d as f16 costs (up to the whole
/// value where d underflows f16).
#[test]
fn round_trip_bounds() {
    let x = input();
    for dtype in [DType::Q8_0, DType::Q4_0] {
        let q = quantize(dtype, &x, x.len()).unwrap();
        let mut y = vec![0f32; x.len()];
        dequantize_row(dtype, &q, &mut y);
        for (b, (xs, ys)) in x.chunks(QK).zip(y.chunks(QK)).enumerate() {
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            // (step, steps of rounding error, largest |q|)
            let (d, steps, q_max) = match dtype {
                DType::Q8_0 => (amax / 127.0, 0.5, 127.0),
                _ => (amax / 8.0, 1.0, 8.0),
            };
            let d16 = half::f16::from_f32(d).to_f32();
            let bound = if d16 == 0.0 {
                amax
            } else {
                steps * d + q_max * (d - d16).abs()
            } * 1.0001;
            for (i, (a, b2)) in xs.iter().zip(ys).enumerate() {
                assert!(
                    (a - b2).abs() <= bound,
                    "{dtype} block {b} [{i}]: {a} -> {b2}, bound {bound}"
                );
            }
        }
    }
    // F16 / BF16 round trips: relative 2^-11 / 2^-8.
    for (dtype, rel) in [(DType::F16, 2f32.powi(-11)), (DType::BF16, 2f32.powi(-8))] {
        let xs: Vec<f32> = x.iter().map(|v| v.clamp(-60000.0, 60000.0)).collect();
        let q = quantize(dtype, &xs, xs.len()).unwrap();
        let mut y = vec![0f32; xs.len()];
        dequantize_row(dtype, &q, &mut y);
        for (a, b) in xs.iter().zip(&y) {
            assert!((a - b).abs() <= a.abs() * rel + 6e-8, "{dtype}: {a} -> {b}");
        }
    }
}
