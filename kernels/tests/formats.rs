//! Every format through the kernel table: `quantize` and `dequantize_row` give llama.cpp's bytes and
//! values (the fixtures of tests/fixtures/ggml_ref), and `matmul` of every format is the product of
//! its dequantised weights with the activations, within what quantising the activations costs.

use std::path::Path;

use cosmoe_kernels::{dequantize_row, matmul, quantize, sample, DType, KernelError, MatRef};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/ggml_ref")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The block formats and their fixture names.
const GGML: [(DType, &str); 12] = [
    (DType::Q4_0, "q4_0"),
    (DType::Q4_1, "q4_1"),
    (DType::Q5_0, "q5_0"),
    (DType::Q5_1, "q5_1"),
    (DType::Q8_0, "q8_0"),
    (DType::Q2_K, "q2_K"),
    (DType::Q3_K, "q3_K"),
    (DType::Q4_K, "q4_K"),
    (DType::Q5_K, "q5_K"),
    (DType::Q6_K, "q6_K"),
    (DType::IQ4_NL, "iq4_nl"),
    (DType::IQ4_XS, "iq4_xs"),
];

#[test]
fn the_table_quantises_and_dequantises_as_llama_cpp() {
    let x = f32s(&fixture("input.f32"));
    for (dtype, name) in GGML {
        let want = fixture(&format!("{name}.bin"));
        assert_eq!(
            quantize(dtype, &x, 256).ok().as_deref(),
            Some(&want[..]),
            "{dtype}"
        );
        let deq = f32s(&fixture(&format!("{name}.deq.f32")));
        let mut got = vec![0f32; x.len()];
        for (row, out) in want
            .chunks_exact(dtype.row_bytes(256).unwrap())
            .zip(got.chunks_exact_mut(256))
        {
            dequantize_row(dtype, row, out);
        }
        let same = got
            .iter()
            .zip(&deq)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{dtype}: dequantised values differ from llama.cpp's");
        assert_eq!(DType::parse(name), Some(dtype));
    }
}

#[test]
fn every_format_multiplies_as_its_dequantised_weights() {
    let (rows, cols, n) = (9, 512, 3);
    let w: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.05)
        .collect();
    let x: Vec<f32> = (0..n * cols)
        .map(|i| (i * 104729 % 997) as f32 / 498.5 - 1.0)
        .collect();
    for dtype in DType::ALL {
        // Random valid blocks for the formats without a quantiser.
        let bytes = sample::weights(dtype, &w, cols).unwrap();
        let m = MatRef::new(dtype, rows, cols, &bytes).unwrap();
        let mut y = vec![f32::NAN; n * rows];
        matmul(m, &x, n, &mut y);
        let mut deq = vec![0f32; cols];
        for r in 0..rows {
            dequantize_row(dtype, m.row(r), &mut deq);
            for t in 0..n {
                let xs = &x[t * cols..(t + 1) * cols];
                let want: f64 = deq.iter().zip(xs).map(|(a, b)| *a as f64 * *b as f64).sum();
                let mag: f64 = deq
                    .iter()
                    .zip(xs)
                    .map(|(a, b)| (*a * *b).abs() as f64)
                    .sum();
                // Q8 activations: each value within half a step of 1/127 of its block's maximum.
                let tol = if dtype.quantised_activations() {
                    0.01
                } else {
                    1e-5
                } * mag
                    + 1e-6;
                let got = y[t * rows + r] as f64;
                assert!(
                    (got - want).abs() <= tol,
                    "{dtype} row {r} token {t}: {got} vs {want} (tolerance {tol})"
                );
            }
        }
    }
}

/// Asking to quantise to a format without a quantiser is an error naming it, in the table as in
/// `quantize`; every other format has one.
#[test]
fn formats_without_a_quantiser_refuse_to_quantise() {
    let x = vec![0.5f32; 512];
    for dtype in DType::ALL {
        let k = cosmoe_kernels::Kernels::for_tier(cosmoe_kernels::Tier::Scalar).unwrap();
        assert_eq!(
            k.format(dtype).quantize.is_some(),
            dtype.has_quantizer(),
            "{dtype}"
        );
        match quantize(dtype, &x, 256) {
            Ok(b) => assert!(dtype.has_quantizer() && b.len() == 2 * dtype.row_bytes(256).unwrap()),
            Err(e) => {
                assert!(!dtype.has_quantizer(), "{dtype}: {e}");
                assert_eq!(e, KernelError::NoQuantizer(dtype));
                assert!(e.to_string().contains(dtype.name()), "{e}");
            }
        }
    }
    assert_eq!(
        quantize(DType::Q4_K, &x, 100),
        Err(KernelError::RowBlocks {
            dtype: DType::Q4_K,
            cols: 100
        })
    );
    assert_eq!(
        quantize(DType::Q8_0, &x[..500], 64),
        Err(KernelError::Rows { len: 500, cols: 64 })
    );
}
