//! Q4_K, Q5_K, Q6_K and the Q8_K activation quantiser against llama.cpp's own C code
//! (tests/fixtures/ggml_ref, made by make_ggml_ref.sh from ggml-quants.c and ggml-cpu/quants.c): blocks
//! byte for byte, dequantised values and generic dot products bit for bit; plus round-trip bounds.

use cosmoe_kernels::blocks::{as_blocks, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K};
use cosmoe_kernels::scalar::{q4_k, q5_k, q6_k, q8_k};

const ROWS: usize = 8;

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

/// ggml's `block_q8_K` (f32 `d`, 256 `i8`, 16 `i16`, little-endian), read field by field: our struct
/// has alignment 4, so the file's bytes are not cast.
fn q8k_from_bytes(b: &[u8]) -> BlockQ8K {
    assert_eq!(b.len(), std::mem::size_of::<BlockQ8K>());
    let mut out: BlockQ8K = bytemuck::Zeroable::zeroed();
    out.d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (q, &v) in out.qs.iter_mut().zip(&b[4..4 + QK_K]) {
        *q = v as i8;
    }
    for (s, v) in out.bsums.iter_mut().zip(b[4 + QK_K..].chunks_exact(2)) {
        *s = i16::from_le_bytes([v[0], v[1]]);
    }
    out
}

fn q8k_to_bytes(b: &BlockQ8K) -> Vec<u8> {
    let mut out = b.d.to_le_bytes().to_vec();
    out.extend(b.qs.iter().map(|&q| q as u8));
    out.extend(b.bsums.iter().flat_map(|s| s.to_le_bytes()));
    out
}

fn acts_q8k() -> Vec<BlockQ8K> {
    fixture("acts.q8_k.bin")
        .chunks_exact(std::mem::size_of::<BlockQ8K>())
        .map(q8k_from_bytes)
        .collect()
}

fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "{what}: row {} value {}: {g:e} != {w:e}",
            i / QK_K,
            i % QK_K
        );
    }
}

/// One K-quant format's reference functions, for the checks every format shares.
struct Format<B> {
    name: &'static str,
    quantize: fn(&[f32], &mut [B]),
    dequantize: fn(&[B], &mut [f32]),
    dot: fn(&[B], &[BlockQ8K]) -> f32,
}

fn check_against_ggml<B: bytemuck::Pod>(f: Format<B>) {
    let name = f.name;
    let x = f32s("input.f32");
    assert_eq!(x.len(), ROWS * QK_K);
    let want = fixture(&format!("{name}.bin"));
    let block_bytes = std::mem::size_of::<B>();
    assert_eq!(want.len(), ROWS * block_bytes, "{name}.bin");

    // quantize(input) == llama.cpp's blocks, byte for byte (one super-block per row).
    let mut got = vec![B::zeroed(); ROWS];
    (f.quantize)(&x, &mut got);
    let got_bytes: &[u8] = bytemuck::cast_slice(&got);
    for (r, (g, w)) in got_bytes
        .chunks_exact(block_bytes)
        .zip(want.chunks_exact(block_bytes))
        .enumerate()
    {
        if g != w {
            let at = g.iter().zip(w).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "{name} quantize: row {r} differs first at byte {at} ({} != {})",
                g[at], w[at]
            );
        }
    }

    // dequantize(llama.cpp's blocks) == its dequantised values, bit for bit.
    let blocks: &[B] = as_blocks(&want);
    assert_eq!(blocks.len(), ROWS);
    let mut y = vec![0f32; ROWS * QK_K];
    (f.dequantize)(blocks, &mut y);
    assert_bits_eq(
        &y,
        &f32s(&format!("{name}.deq.f32")),
        &format!("{name} dequantize"),
    );

    // The generic dot of row r with activation row r == llama.cpp's, bit for bit.
    let acts = acts_q8k();
    let dots = f32s(&format!("{name}.dot.f32"));
    assert_eq!((acts.len(), dots.len()), (ROWS, ROWS));
    for r in 0..ROWS {
        let d = (f.dot)(&blocks[r..r + 1], &acts[r..r + 1]);
        assert_eq!(
            d.to_bits(),
            dots[r].to_bits(),
            "{name} dot row {r}: {d:e} != {:e}",
            dots[r]
        );
    }
}

#[test]
fn q4_k_matches_ggml() {
    check_against_ggml::<BlockQ4K>(Format {
        name: "q4_K",
        quantize: q4_k::quantize,
        dequantize: q4_k::dequantize,
        dot: q4_k::dot,
    });
}

#[test]
fn q5_k_matches_ggml() {
    check_against_ggml::<BlockQ5K>(Format {
        name: "q5_K",
        quantize: q5_k::quantize,
        dequantize: q5_k::dequantize,
        dot: q5_k::dot,
    });
}

#[test]
fn q6_k_matches_ggml() {
    check_against_ggml::<BlockQ6K>(Format {
        name: "q6_K",
        quantize: q6_k::quantize,
        dequantize: q6_k::dequantize,
        dot: q6_k::dot,
    });
}

#[test]
fn q8_k_activations_match_ggml() {
    let a = f32s("acts.f32");
    assert_eq!(a.len(), ROWS * QK_K);
    let want = fixture("acts.q8_k.bin");
    let mut got = vec![bytemuck::Zeroable::zeroed(); ROWS];
    q8_k::quantize_row_activations(&a, &mut got);
    let got_bytes: Vec<u8> = got.iter().flat_map(q8k_to_bytes).collect();
    assert_eq!(got_bytes.len(), want.len());
    for (r, (g, w)) in got_bytes
        .chunks_exact(std::mem::size_of::<BlockQ8K>())
        .zip(want.chunks_exact(std::mem::size_of::<BlockQ8K>()))
        .enumerate()
    {
        assert_eq!(g, w, "acts.q8_k row {r}");
    }
    // And dequantize is `d * q` exactly.
    let mut y = vec![0f32; a.len()];
    q8_k::dequantize(&got, &mut y);
    for (i, v) in y.iter().enumerate() {
        let b = &got[i / QK_K];
        assert_eq!(v.to_bits(), (b.d * b.qs[i % QK_K] as f32).to_bits());
    }
}

/// Deterministic rows of assorted shapes (no rand dependency): xorshift-driven uniforms and
/// near-Gaussian sums at scales from 1e-3 to 1e2, a shifted (all-positive) row, a row with outliers,
/// an all-zero row and one with an all-zero sub-block. Two super-blocks per row.
fn test_rows() -> Vec<Vec<f32>> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 // [0, 1)
    };
    let n = 2 * QK_K;
    let mut rows = Vec::new();
    for (k, scale) in [1e-3f32, 0.05, 1.0, 30.0, 100.0].into_iter().enumerate() {
        let mut r: Vec<f32> = (0..n)
            .map(|_| {
                let g = (0..4).map(|_| next()).sum::<f32>() - 2.0;
                g * scale
            })
            .collect();
        match k {
            1 => r.iter_mut().for_each(|v| *v = v.abs() + 0.5 * scale),
            2 => r.iter_mut().step_by(23).for_each(|v| *v *= 50.0),
            3 => r[40..72].fill(0.0),
            _ => {}
        }
        rows.push(r);
    }
    rows.push((0..n).map(|_| next() * 2.0 - 1.0).collect());
    rows.push(vec![0.0; n]);
    rows
}

/// Over [`test_rows`] and the fixture's 8 rows, the largest |dequantize(quantize(x)) - x| of each row
/// at most `bound * max|x| + f16_levels *
/// 2^-25`: the second term is what an f16 super-block scale in the subnormal range costs (absolute
/// error up to half the smallest subnormal, 2^-25, times the largest multiplier it is applied to).
fn check_round_trip<B: bytemuck::Pod>(
    name: &str,
    quantize: fn(&[f32], &mut [B]),
    dequantize: fn(&[B], &mut [f32]),
    bound: f32,
    f16_levels: f32,
) {
    let fixture_rows = f32s("input.f32")
        .chunks(QK_K)
        .map(<[f32]>::to_vec)
        .collect::<Vec<_>>();
    for (r, x) in test_rows().iter().chain(&fixture_rows).enumerate() {
        let mut b = vec![B::zeroed(); x.len() / QK_K];
        quantize(x, &mut b);
        let mut y = vec![0f32; x.len()];
        dequantize(&b, &mut y);
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = x
            .iter()
            .zip(&y)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        if amax == 0.0 {
            assert_eq!(err, 0.0, "{name} row {r}: zeros must round-trip exactly");
        } else {
            let limit = bound * amax + f16_levels * (-25f32).exp2();
            assert!(
                err <= limit,
                "{name} row {r}: max error {err:e} > {limit:e} (max |x| {amax:e})"
            );
        }
    }
}

/// Round trips within what the formats allow. A K-quant sub-block of range at most `2 * amax` has
/// `2^bits - 1` steps, so half a step is `amax / (2^bits - 1)` for Q4_K/Q5_K (1/15, 1/31); Q6_K is
/// symmetric, `d * sc = amax_sub / 32` (half a step 1/64). On top: the 6-bit (Q4_K/Q5_K) or 8-bit
/// (Q6_K) rounding of each sub-block scale and min against the largest (up to 1/126 or 1/256 of it,
/// times up to 15, 31 or 32 levels where a value is clamped), and the f16 super-block scales (2^-11
/// relative where normal; where subnormal, up to 2^-25 absolute, times `63 * 15 + 63`, `63 * 31 + 63`
/// or `128 * 32`). Q8_K (an f32 scale): half a step of `amax / 127`.
#[test]
fn round_trips_within_format_bounds() {
    check_round_trip("q4_K", q4_k::quantize, q4_k::dequantize, 0.1, 63.0 * 16.0);
    check_round_trip("q5_K", q5_k::quantize, q5_k::dequantize, 0.05, 63.0 * 32.0);
    check_round_trip(
        "q6_K",
        q6_k::quantize,
        q6_k::dequantize,
        0.025,
        128.0 * 32.0,
    );
    check_round_trip(
        "q8_K",
        q8_k::quantize_row_activations,
        q8_k::dequantize,
        0.5 / 127.0 * 1.001,
        0.0,
    );
}

/// Multi-block dots agree with the dot of the dequantised vectors (computed in f64), to f32 rounding:
/// the products are exact integer sums times the block scales, so only the float accumulation differs.
#[test]
fn dots_match_dequantised_products() {
    let rows = test_rows();
    let acts = &rows[5];
    let mut a = vec![bytemuck::Zeroable::zeroed(); acts.len() / QK_K];
    q8_k::quantize_row_activations(acts, &mut a);
    let mut av = vec![0f32; acts.len()];
    q8_k::dequantize(&a, &mut av);
    fn check<B: bytemuck::Pod>(
        name: &str,
        x: &[f32],
        a: &[BlockQ8K],
        av: &[f32],
        quantize: fn(&[f32], &mut [B]),
        dequantize: fn(&[B], &mut [f32]),
        dot: fn(&[B], &[BlockQ8K]) -> f32,
    ) {
        let mut b = vec![B::zeroed(); x.len() / QK_K];
        quantize(x, &mut b);
        let mut wv = vec![0f32; x.len()];
        dequantize(&b, &mut wv);
        let want: f64 = wv.iter().zip(av).map(|(&p, &q)| p as f64 * q as f64).sum();
        let mag: f64 = wv
            .iter()
            .zip(av)
            .map(|(&p, &q)| (p as f64 * q as f64).abs())
            .sum();
        let got = dot(&b, a) as f64;
        assert!(
            (got - want).abs() <= 1e-5 * mag,
            "{name}: dot {got:e} vs dequantised {want:e}"
        );
    }
    for x in &rows {
        check(
            "q4_K",
            x,
            &a,
            &av,
            q4_k::quantize,
            q4_k::dequantize,
            q4_k::dot,
        );
        check(
            "q5_K",
            x,
            &a,
            &av,
            q5_k::quantize,
            q5_k::dequantize,
            q5_k::dot,
        );
        check(
            "q6_K",
            x,
            &a,
            &av,
            q6_k::quantize,
            q6_k::dequantize,
            q6_k::dot,
        );
    }
}

/// Non-finite and extreme input gives garbage (as in C) but never panics, debug build included.
#[test]
fn hostile_input_does_not_panic() {
    let mut x = vec![1.0f32; QK_K];
    x[3] = f32::NAN;
    x[100] = f32::INFINITY;
    x[200] = -f32::MAX;
    for x in [x, vec![f32::MAX; QK_K], vec![f32::MIN_POSITIVE / 4.0; QK_K]] {
        let mut a = [bytemuck::Zeroable::zeroed()];
        q8_k::quantize_row_activations(&x, &mut a);
        let mut y = vec![0f32; QK_K];
        let mut b4 = [bytemuck::Zeroable::zeroed()];
        q4_k::quantize(&x, &mut b4);
        q4_k::dequantize(&b4, &mut y);
        let _ = q4_k::dot(&b4, &a);
        let mut b5 = [bytemuck::Zeroable::zeroed()];
        q5_k::quantize(&x, &mut b5);
        q5_k::dequantize(&b5, &mut y);
        let _ = q5_k::dot(&b5, &a);
        let mut b6 = [bytemuck::Zeroable::zeroed()];
        q6_k::quantize(&x, &mut b6);
        q6_k::dequantize(&b6, &mut y);
        let _ = q6_k::dot(&b6, &a);
    }
    // Arbitrary bytes as blocks (as from a damaged file): every bit pattern is a valid block.
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut a: BlockQ8K = bytemuck::Zeroable::zeroed();
    a.qs.fill(-128);
    a.bsums.fill(i16::MIN);
    a.d = 1.0;
    let mut y = vec![0f32; QK_K];
    let w4: &[BlockQ4K] = as_blocks(&bytes);
    q4_k::dequantize(&w4[..1], &mut y);
    let _ = q4_k::dot(&w4[..1], &[a]);
    let w5: &[BlockQ5K] = as_blocks(&bytes);
    q5_k::dequantize(&w5[..1], &mut y);
    let _ = q5_k::dot(&w5[..1], &[a]);
    let w6: &[BlockQ6K] = as_blocks(&bytes);
    q6_k::dequantize(&w6[..1], &mut y);
    let _ = q6_k::dot(&w6[..1], &[a]);
}
