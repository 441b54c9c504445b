//! Q2_K and Q3_K against llama.cpp's own C code (tests/fixtures/ggml_ref, made by make_ggml_ref.sh):
//! the reference quantisers byte for byte, the dequantisers and the generic dot products with Q8_K
//! activations bit for bit, plus round-trip bounds derived from the formats.

use std::path::Path;

use bytemuck::Zeroable;
use cosmoe_kernels::blocks::{as_blocks, scale, BlockQ2K, BlockQ3K, BlockQ8K, QK_K};
use cosmoe_kernels::scalar::{q2_k, q3_k};

const ROWS: usize = 8;

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/ggml_ref"
    ))
    .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn input() -> Vec<f32> {
    let x = f32s(&fixture("input.f32"));
    assert_eq!(x.len(), ROWS * QK_K);
    x
}

/// ggml's `block_q8_K` (f32 d, 256 i8, 16 i16, little-endian, 292 bytes), read field by field: the
/// struct's alignment is 4, so the bytes of a `Vec<u8>` cannot be cast to it.
fn acts() -> Vec<BlockQ8K> {
    let bytes = fixture("acts.q8_k.bin");
    assert_eq!(bytes.len(), ROWS * std::mem::size_of::<BlockQ8K>());
    bytes
        .chunks_exact(292)
        .map(|b| {
            let (d, rest) = b.split_at(4);
            let (qs, bsums) = rest.split_at(QK_K);
            BlockQ8K {
                d: f32::from_le_bytes([d[0], d[1], d[2], d[3]]),
                qs: std::array::from_fn(|i| qs[i] as i8),
                bsums: std::array::from_fn(|i| {
                    i16::from_le_bytes([bsums[2 * i], bsums[2 * i + 1]])
                }),
            }
        })
        .collect()
}

fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{what} [{i}] (row {}): {g:e} vs {w:e}",
            i / QK_K
        );
    }
}

/// The three checks of one format: quantise (bytes), dequantise (bits), dot (bits).
fn check<B: bytemuck::Pod>(
    name: &str,
    quantize: fn(&[f32], &mut [B]),
    dequantize: fn(&[B], &mut [f32]),
    dot: fn(&[B], &[BlockQ8K]) -> f32,
) {
    let x = input();
    let want = fixture(&format!("{name}.bin"));
    let bsize = std::mem::size_of::<B>();
    assert_eq!(want.len(), ROWS * bsize, "{name}.bin");

    let mut got = vec![B::zeroed(); ROWS];
    quantize(&x, &mut got);
    for (r, (g, w)) in bytemuck::cast_slice::<B, u8>(&got)
        .chunks(bsize)
        .zip(want.chunks(bsize))
        .enumerate()
    {
        assert_eq!(g, w, "{name} quantize, row {r}");
    }

    let blocks: &[B] = as_blocks(&want);
    let mut y = vec![0f32; ROWS * QK_K];
    dequantize(blocks, &mut y);
    assert_bits_eq(
        &y,
        &f32s(&fixture(&format!("{name}.deq.f32"))),
        &format!("{name} dequantize"),
    );

    let a = acts();
    let want_dots = f32s(&fixture(&format!("{name}.dot.f32")));
    assert_eq!(want_dots.len(), ROWS);
    for r in 0..ROWS {
        let g = dot(&blocks[r..r + 1], &a[r..r + 1]);
        assert_eq!(
            g.to_bits(),
            want_dots[r].to_bits(),
            "{name} dot, row {r}: {g:e} vs {:e}",
            want_dots[r]
        );
    }
}

#[test]
fn q2_k_matches_llama_cpp() {
    check::<BlockQ2K>("q2_K", q2_k::quantize, q2_k::dequantize, q2_k::dot);
}

#[test]
fn q3_k_matches_llama_cpp() {
    check::<BlockQ3K>("q3_K", q3_k::quantize, q3_k::dequantize, q3_k::dot);
}

/// A multi-block row: Q2_K's dot is the per-block dots summed in order, bit for bit.
#[test]
fn multi_block_rows() {
    let x = input();
    let a = acts();
    let mut q2 = vec![BlockQ2K::zeroed(); ROWS];
    q2_k::quantize(&x, &mut q2);
    let mut q3 = vec![BlockQ3K::zeroed(); ROWS];
    q3_k::quantize(&x, &mut q3);

    let mut want = 0f32;
    for r in 0..ROWS {
        want += q2_k::dot(&q2[r..r + 1], &a[r..r + 1]);
    }
    assert_eq!(q2_k::dot(&q2, &a).to_bits(), want.to_bits());

    // Q3_K's generic dot accumulates eight float lanes across super-blocks and adds them at the end,
    // so a multi-block row is not the sum of per-block dots bit for bit (and the fixtures hold no
    // multi-block row): only within float rounding.
    let per_block: f32 = (0..ROWS)
        .map(|r| q3_k::dot(&q3[r..r + 1], &a[r..r + 1]))
        .sum();
    let whole = q3_k::dot(&q3, &a);
    let mag: f32 = (0..ROWS)
        .map(|r| q3_k::dot(&q3[r..r + 1], &a[r..r + 1]).abs())
        .sum();
    assert!(
        (whole - per_block).abs() <= 1e-5 * mag,
        "{whole} vs {per_block}"
    );
}

/// `max |x|` and `max(x) - min(0, min(x))` of a slice.
fn amax_range(xs: &[f32]) -> (f32, f32) {
    let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
    let hi = xs.iter().fold(0f32, |a, &v| a.max(v));
    let lo = xs.iter().fold(0f32, |a, &v| a.min(v));
    (amax, hi - lo)
}

/// Round trips, two bounds per value.
///
/// Exact: the last step of both quantisers requantises every value against its sub-block's stored
/// grid (`d_j * q - m_j`, `q` in `0..=3`, for Q2_K; `d_j * q`, `q` in `-4..=3`, for Q3_K), so each
/// value dequantises to the nearest level of that grid, up to the rounding of the float expressions
/// (a relative 1e-6 of the grid's magnitude). A sub-block whose stored scale is 0 holds zeros and
/// dequantises to `-m_j` (Q2_K) or 0 (Q3_K); the all-zero sub-block of row 1 comes back as zeros.
///
/// Coarse: 2^b levels spread evenly over a row's span are within half a level spacing of every
/// value: `span / 6` for Q2_K (4 levels over `max - min(0, min)`, the span its affine fit covers) and
/// `amax / 8` for Q3_K (8 levels over `[-amax, amax]`). ggml's fits (weighted least squares, a
/// mean-absolute-error search) are not minimax and the scales are rounded to 4 or 6 bits of the
/// super-block's largest, so neither is a hard guarantee: the test allows 10% over (measured on
/// these rows: at most 0.96 of `span / 6`, 1.008 of `amax / 8`).
#[test]
fn round_trip_bounds() {
    let x = input();
    let mut y = vec![0f32; x.len()];

    let mut q2 = vec![BlockQ2K::zeroed(); ROWS];
    q2_k::quantize(&x, &mut q2);
    q2_k::dequantize(&q2, &mut y);
    for (r, b) in q2.iter().enumerate() {
        let row = r * QK_K..(r + 1) * QK_K;
        let (_, span) = amax_range(&x[row.clone()]);
        for j in 0..QK_K / 16 {
            let d = scale(b.d) * (b.scales[j] & 0xf) as f32;
            let m = scale(b.dmin) * (b.scales[j] >> 4) as f32;
            let sub = r * QK_K + 16 * j..r * QK_K + 16 * (j + 1);
            for (&xv, &yv) in x[sub.clone()].iter().zip(&y[sub]) {
                let err = (xv - yv).abs();
                let nearest = if d == 0.0 {
                    (xv + m).abs()
                } else {
                    (0..4)
                        .map(|q| (xv - (d * q as f32 - m)).abs())
                        .fold(f32::INFINITY, f32::min)
                };
                let eps = 1e-6 * (3.0 * d + m + xv.abs());
                assert!(
                    err <= nearest + eps,
                    "q2_K row {r} sub {j}: {xv} -> {yv} (d {d}, m {m})"
                );
                assert!(
                    err <= 1.1 * span / 6.0,
                    "q2_K row {r} sub {j}: {xv} -> {yv}"
                );
            }
        }
    }
    assert!(
        y[QK_K..QK_K + 32].iter().all(|&v| v == 0.0),
        "q2_K: the zero sub-block"
    );

    let mut q3 = vec![BlockQ3K::zeroed(); ROWS];
    q3_k::quantize(&x, &mut q3);
    q3_k::dequantize(&q3, &mut y);
    for (r, b) in q3.iter().enumerate() {
        let row = r * QK_K..(r + 1) * QK_K;
        let (amax, _) = amax_range(&x[row.clone()]);
        // The scales unpacked as the format states them (not through the kernels' own helper).
        let sc = |j: usize| {
            let lo = if j < 8 {
                b.scales[j] & 0xf
            } else {
                b.scales[j - 8] >> 4
            };
            let hi = (b.scales[8 + j % 4] >> (2 * (j / 4))) & 3;
            (lo | (hi << 4)) as i32 - 32
        };
        for j in 0..QK_K / 16 {
            let d = scale(b.d) * sc(j) as f32;
            let sub = r * QK_K + 16 * j..r * QK_K + 16 * (j + 1);
            for (&xv, &yv) in x[sub.clone()].iter().zip(&y[sub]) {
                let err = (xv - yv).abs();
                let nearest = (-4..4)
                    .map(|q| (xv - d * q as f32).abs())
                    .fold(f32::INFINITY, f32::min);
                let eps = 1e-6 * (4.0 * d.abs() + xv.abs());
                assert!(
                    err <= nearest + eps,
                    "q3_K row {r} sub {j}: {xv} -> {yv} (d {d})"
                );
                assert!(
                    err <= 1.1 * amax / 8.0,
                    "q3_K row {r} sub {j}: {xv} -> {yv}"
                );
            }
        }
    }
    assert!(
        y[QK_K..QK_K + 32].iter().all(|&v| v == 0.0),
        "q3_K: the zero sub-block"
    );
}

/// Hostile inputs (infinities, NaN, the largest finite values, subnormals) and arbitrary block bytes
/// must not panic, in debug builds included (no overflow in the integer paths).
#[test]
fn hostile_inputs_do_not_panic() {
    let specials = [
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MAX,
        -f32::MAX,
        1e-40,
        -1e-45,
        0.0,
    ];
    let mut x = vec![0f32; 4 * QK_K];
    for (i, v) in x.iter_mut().enumerate() {
        *v = match i / QK_K {
            0 => specials[i % specials.len()],
            1 => {
                if i % 7 == 0 {
                    f32::MAX
                } else {
                    1.0
                }
            }
            2 => {
                if i % 5 == 0 {
                    f32::NAN
                } else {
                    -(i as f32)
                }
            }
            _ => 1e-40 * (i % 3) as f32,
        };
    }
    let mut y = vec![0f32; x.len()];
    let mut q2 = vec![BlockQ2K::zeroed(); 4];
    q2_k::quantize(&x, &mut q2);
    q2_k::dequantize(&q2, &mut y);
    let mut q3 = vec![BlockQ3K::zeroed(); 4];
    q3_k::quantize(&x, &mut q3);
    q3_k::dequantize(&q3, &mut y);

    // Arbitrary bytes as blocks, and extreme Q8_K activations.
    let bytes: Vec<u8> = (0..4 * 110u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let a = vec![
        BlockQ8K {
            d: 1.0,
            qs: [-128; QK_K],
            bsums: [i16::MIN; QK_K / 16]
        };
        4
    ];
    let w2: &[BlockQ2K] = as_blocks(&bytes);
    let w3: &[BlockQ3K] = as_blocks(&bytes);
    q2_k::dequantize(&w2[..4], &mut y);
    q3_k::dequantize(&w3[..4], &mut y);
    let _ = q2_k::dot(&w2[..4], &a);
    let _ = q3_k::dot(&w3[..4], &a);
}
