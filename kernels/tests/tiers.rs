//! Every SIMD tier this CPU runs, against the scalar reference, over odd lengths and unaligned starts.
//!
//! Float sums may differ from the reference by reassociation (and FMA); the limit for a dot product is
//! relative to the sum of the magnitudes of its terms. Integer parts (Q8_0/Q4_0 block sums) and the
//! activation quantiser must match exactly.

use cosmoe_kernels::blocks::{scale, BlockQ4_0, BlockQ8_0, BlockQ8_1, QK};
use cosmoe_kernels::format::Products;
use cosmoe_kernels::{quantize, sample, scalar, DType, Kernels, MatRef, Q8Acts, Q8Prepared, Tier};

type RowDot = fn(&[u8], &[f32]) -> f32;
type Q8Dot = fn(&[u8], &Q8Acts<'_>) -> f32;
type Q8Rows = fn(&[u8], &Q8Acts<'_>, &mut [f32]);
type Q8Tile = fn(&[u8], &Q8Prepared, &mut [f32]);

/// `k`'s row . f32 kernel for a float format.
fn f32_dot(k: &Kernels, dtype: DType) -> RowDot {
    match k.format(dtype).products {
        Products::F32 { dot } => dot,
        _ => panic!("{dtype} does not take f32 activations"),
    }
}

/// `k`'s kernels for a format that takes prepared Q8_0 activations.
fn q8_kernels(k: &Kernels, dtype: DType) -> (Q8Dot, Option<Q8Rows>, Option<Q8Tile>) {
    match k.format(dtype).products {
        Products::Q8_0 {
            dot,
            dot_rows,
            matmul_rows,
        } => (dot, dot_rows, matmul_rows),
        _ => panic!("{dtype} does not take Q8_0 activations"),
    }
}

fn q8_dot(k: &Kernels, dtype: DType) -> Q8Dot {
    q8_kernels(k, dtype).0
}

const LENS: [usize; 24] = [
    0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 127, 128, 129, 255, 257, 1000,
    4097,
];
const BLOCKS: [usize; 17] = [0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 129];

/// Deterministic values in about [-scale, scale], with some exact zeros and large outliers.
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            match i % 97 {
                13 => 0.0,
                41 => u * scale * 20.0,
                _ => u * scale,
            }
        })
        .collect()
}

fn simd_tiers() -> Vec<&'static Kernels> {
    let tiers: Vec<&'static Kernels> = Tier::available()
        .into_iter()
        .filter(|&t| t != Tier::Scalar)
        .filter_map(Kernels::for_tier)
        .collect();
    eprintln!(
        "testing tiers: {:?} (CPU lacks: {:?})",
        tiers
            .iter()
            .map(|k| (k.tier, k.features))
            .collect::<Vec<_>>(),
        Tier::ALL
            .iter()
            .filter(|t| !t.supported())
            .collect::<Vec<_>>()
    );
    tiers
}

fn close(got: f32, want: f32, magnitude: f32, what: &str) {
    let tol = 2e-6 * magnitude + 1e-30;
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, reference {want}, |diff| {} > {tol}",
        (got - want).abs()
    );
}

/// A byte buffer holding `data` at offset `off` (to test unaligned starts).
fn at_offset(data: &[u8], off: usize) -> Vec<u8> {
    let mut v = vec![0xa5u8; off];
    v.extend_from_slice(data);
    v
}

#[test]
fn dot_f32() {
    for k in simd_tiers() {
        for &n in &LENS {
            for off in 0..4 {
                let a = values(n + off, 1, 1.0);
                let b = values(n + off, 2, 1.0);
                let (a, b) = (&a[off..], &b[..n]);
                let mag: f32 = a.iter().zip(b).map(|(x, y)| (x * y).abs()).sum();
                close(
                    (k.dot_f32)(a, b),
                    scalar::f32::dot(a, b),
                    mag,
                    &format!("{:?} dot_f32 n={n} off={off}", k.tier),
                );
            }
        }
    }
}

#[test]
fn dot_f16_bf16() {
    for k in simd_tiers() {
        for dtype in [DType::F16, DType::BF16] {
            for &n in &LENS {
                let w = values(n, 3, 0.5);
                let x = values(n, 4, 2.0);
                let bytes = quantize(dtype, &w, n.max(1)).unwrap_or_default();
                let mut deq = vec![0f32; n];
                scalar::dequantize_row(dtype, &bytes, &mut deq);
                let mag: f32 = deq.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
                for off in 0..3 {
                    let buf = at_offset(&bytes, off);
                    let row = &buf[off..];
                    let (got, want) = match dtype {
                        DType::F16 => (f32_dot(k, dtype)(row, &x), scalar::f16::dot(row, &x)),
                        _ => (f32_dot(k, dtype)(row, &x), scalar::bf16::dot(row, &x)),
                    };
                    close(
                        got,
                        want,
                        mag,
                        &format!("{:?} dot_{dtype} n={n} off={off}", k.tier),
                    );
                }
            }
        }
    }
}

fn q8(x: &[f32]) -> Vec<BlockQ8_0> {
    let mut q = vec![BlockQ8_0::default(); x.len() / QK];
    scalar::q8_0::quantize_row_activations(x, &mut q);
    q
}

/// Sum over blocks of |d_w d_x sum_i w_i x_i|: the scale of float rounding in a block dot product.
fn block_magnitude(w: &[f32], xq: &[BlockQ8_0]) -> f32 {
    let mut x = vec![0f32; xq.len() * QK];
    scalar::q8_0::dequantize_row(xq, &mut x);
    w.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum::<f32>() + 1e-20
}

#[test]
fn dot_q8_0_and_q4_0() {
    for k in simd_tiers() {
        for &nb in &BLOCKS {
            let n = nb * QK;
            let x = values(n, 5, 1.0);
            let xq = q8(&x);
            let prepared = Q8Prepared::from_blocks(xq.clone(), 1);
            let xa = prepared.get(0);
            for dtype in [DType::Q8_0, DType::Q4_0] {
                let w = values(n, 6, 0.1);
                let bytes = quantize(dtype, &w, n.max(QK)).unwrap_or_default();
                let bytes = &bytes[..nb * dtype.block_bytes()];
                let mut deq = vec![0f32; n];
                scalar::dequantize_row(dtype, bytes, &mut deq);
                let mag = block_magnitude(&deq, &xq);
                for off in 0..3 {
                    let buf = at_offset(bytes, off);
                    let row = &buf[off..];
                    let (got, want) = match dtype {
                        DType::Q8_0 => {
                            let r: &[BlockQ8_0] = bytemuck::cast_slice(row);
                            (q8_dot(k, dtype)(row, &xa), scalar::q8_0::dot(r, &xq))
                        }
                        _ => {
                            let r: &[BlockQ4_0] = bytemuck::cast_slice(row);
                            (q8_dot(k, dtype)(row, &xa), scalar::q4_0::dot(r, &xa))
                        }
                    };
                    close(
                        got,
                        want,
                        mag,
                        &format!("{:?} dot_{dtype} blocks={nb} off={off}", k.tier),
                    );
                }
            }
        }
    }
}

/// The dot products of the formats with Q8_0 or Q8_1 activations other than Q8_0/Q4_0 (Q4_1, Q5_0,
/// Q5_1, IQ4_NL): every tier against the scalar table's, over block counts of one, odd and even
/// (a tier may take two blocks a step), unaligned starts, and activations with and without the
/// extreme bytes -128 and 127.
#[test]
fn dot_legacy_formats() {
    let scalar_k = Kernels::for_tier(Tier::Scalar).unwrap();
    for k in simd_tiers() {
        for &nb in &BLOCKS {
            let n = nb * QK;
            for (xi, x) in [values(n, 17, 1.0), values(n, 18, 1e-3)].iter().enumerate() {
                let mut x8 = vec![BlockQ8_0::default(); nb];
                scalar::q8_0::quantize_row_activations(x, &mut x8);
                let mut x1 = vec![BlockQ8_1::default(); nb];
                scalar::q8_1::quantize_row_activations(x, &mut x1);
                if xi == 1 {
                    // The extreme bytes the activation quantisers write only for degenerate blocks.
                    for (b8, b1) in x8.iter_mut().zip(&mut x1) {
                        for j in (0..QK).step_by(3) {
                            b8.qs[j] = [-128, 127][j % 2];
                            b1.qs[j] = [-128, 127][j % 2];
                        }
                    }
                }
                let prepared = Q8Prepared::from_blocks(x8.clone(), 1);
                let xa = prepared.get(0);
                let mut deq_x = vec![0f32; n];
                scalar::q8_0::dequantize_row(&x8, &mut deq_x);
                for dtype in [DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::IQ4_NL] {
                    let w = values(n, 19, 0.1);
                    let bytes = quantize(dtype, &w, n.max(QK)).unwrap_or_default();
                    let bytes = &bytes[..nb * dtype.block_bytes()];
                    let mut deq = vec![0f32; n];
                    scalar::dequantize_row(dtype, bytes, &mut deq);
                    // With the mins: |m| times |x| too, as the min terms are summed apart.
                    let mag = deq
                        .iter()
                        .zip(&deq_x)
                        .map(|(a, b)| (a.abs() + 0.2) * b.abs())
                        .sum::<f32>()
                        + 1e-20;
                    for off in 0..3 {
                        let buf = at_offset(bytes, off);
                        let row = &buf[off..];
                        let (got, want) =
                            match (k.format(dtype).products, scalar_k.format(dtype).products) {
                                (Products::Q8_0 { dot, .. }, Products::Q8_0 { dot: r, .. }) => {
                                    (dot(row, &xa), r(row, &xa))
                                }
                                (Products::Q8_1 { dot }, Products::Q8_1 { dot: r }) => {
                                    (dot(row, &x1), r(row, &x1))
                                }
                                _ => panic!("{dtype}: the tier's activations differ from scalar's"),
                            };
                        close(
                            got,
                            want,
                            mag,
                            &format!("{:?} dot_{dtype} blocks={nb} x={xi} off={off}", k.tier),
                        );
                    }
                }
            }
        }
    }
}

/// The rows kernel of every tier (decode's matvec) gives each row exactly what the tier's one-row dot
/// product gives (so decode and prefill agree bit for bit), over row counts around its four-row
/// steps and rows short and long enough to take each of its paths (a 129-block row is hinted in the
/// loop, shorter ones four rows at a time).
#[test]
fn dot_q4_0_rows_equals_dot() {
    let tiers = Tier::available().into_iter().filter_map(Kernels::for_tier);
    for k in tiers {
        for &nb in &BLOCKS {
            let x = values(nb * QK, 7, 1.0);
            let prepared = Q8Prepared::from_blocks(q8(&x), 1);
            let xa = prepared.get(0);
            for rows in 0..10 {
                let w = values(rows * nb * QK, 8, 0.1);
                let bytes = quantize(DType::Q4_0, &w, (nb * QK).max(QK)).unwrap_or_default();
                let bytes = &bytes[..rows * nb * DType::Q4_0.block_bytes()];
                let blocks: &[BlockQ4_0] = bytemuck::cast_slice(bytes);
                let mut y = vec![f32::NAN; rows];
                let dot_rows = q8_kernels(k, DType::Q4_0)
                    .1
                    .expect("Q4_0 has a rows kernel");
                dot_rows(bytes, &xa, &mut y);
                for (r, &got) in y.iter().enumerate() {
                    let want = match nb {
                        0 => 0.0,
                        _ => q8_dot(k, DType::Q4_0)(
                            bytemuck::cast_slice(&blocks[r * nb..(r + 1) * nb]),
                            &xa,
                        ),
                    };
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{:?} blocks={nb} rows={rows} r={r}",
                        k.tier
                    );
                }
            }
        }
    }
}

/// The prefill kernel of every tier gives each (row, token) exactly what the tier's one-row dot product
/// gives, over token counts around its four-token steps and rows short and long.
#[test]
fn matmul_q4_0_rows_equals_dot() {
    let tiers = Tier::available().into_iter().filter_map(Kernels::for_tier);
    for k in tiers {
        for &nb in &BLOCKS {
            for n in [1usize, 3, 4, 5, 8, 9] {
                let x = values(n * nb * QK, 9, 1.0);
                let mut q = vec![BlockQ8_0::default(); n * nb];
                for (xs, qs) in x
                    .chunks_exact((nb * QK).max(1))
                    .zip(q.chunks_exact_mut(nb.max(1)))
                {
                    scalar::q8_0::quantize_row_activations(xs, qs);
                }
                let prepared = Q8Prepared::from_blocks(q, n);
                let rows = 2 + n % 3;
                let w = values(rows * nb * QK, 10, 0.1);
                let bytes = quantize(DType::Q4_0, &w, (nb * QK).max(QK)).unwrap_or_default();
                let blocks: &[BlockQ4_0] =
                    bytemuck::cast_slice(&bytes[..rows * nb * DType::Q4_0.block_bytes()]);
                let mut yt = vec![f32::NAN; rows * n];
                let tile = q8_kernels(k, DType::Q4_0)
                    .2
                    .expect("Q4_0 has a tile kernel");
                tile(bytemuck::cast_slice(blocks), &prepared, &mut yt);
                for r in 0..rows {
                    for t in 0..n {
                        let want = match nb {
                            0 => 0.0,
                            _ => q8_dot(k, DType::Q4_0)(
                                bytemuck::cast_slice(&blocks[r * nb..(r + 1) * nb]),
                                &prepared.get(t),
                            ),
                        };
                        assert_eq!(
                            yt[r * n + t].to_bits(),
                            want.to_bits(),
                            "{:?} blocks={nb} n={n} r={r} t={t}",
                            k.tier
                        );
                    }
                }
            }
        }
    }
}

/// The attention kernels against the reference: head widths with and without a tail of eight, key
/// counts around the four-row steps, rows `stride` apart with other heads' values between them.
#[test]
fn attention() {
    for k in simd_tiers() {
        for hd in [0usize, 1, 7, 8, 9, 56, 64, 128, 130] {
            for n in [0usize, 1, 3, 4, 5, 9, 200] {
                let stride = 2 * hd + 3;
                let len = match n {
                    0 => 0,
                    _ => (n - 1) * stride + hd,
                };
                let t = format!("{:?} hd={hd} n={n}", k.tier);
                let q = values(hd, 21, 1.0);
                let keys = values(len, 22, 1.0);
                let (mut s1, mut s2) = (vec![f32::NAN; n], vec![f32::NAN; n]);
                (k.attn_scores)(&q, &keys, stride, 0.125, &mut s1);
                scalar::attn::attn_scores(&q, &keys, stride, 0.125, &mut s2);
                for (j, (a, b)) in s1.iter().zip(&s2).enumerate() {
                    let mag: f32 = (0..hd).map(|i| (q[i] * keys[j * stride + i]).abs()).sum();
                    close(
                        *a,
                        *b,
                        mag * 0.125 + 1e-6,
                        &format!("{t} attn_scores j={j}"),
                    );
                }
                let w = values(n, 23, 1.0);
                let (mut o1, mut o2) = (vec![f32::NAN; hd], vec![f32::NAN; hd]);
                (k.attn_mix)(&w, &keys, stride, &mut o1);
                scalar::attn::attn_mix(&w, &keys, stride, &mut o2);
                for (i, (a, b)) in o1.iter().zip(&o2).enumerate() {
                    let mag: f32 = (0..n).map(|j| (w[j] * keys[j * stride + i]).abs()).sum();
                    close(*a, *b, mag + 1e-6, &format!("{t} attn_mix i={i}"));
                }
            }
        }
    }
}

/// Rows that do not fit are refused, whatever the tier (the SIMD loops read without bounds checks).
#[test]
fn attention_rows_must_fit() {
    let tiers = Tier::available().into_iter().filter_map(Kernels::for_tier);
    for k in tiers {
        let q = vec![1f32; 8];
        let keys = vec![1f32; 3 * 10 + 8];
        let short = &keys[..3 * 10 + 7];
        let mut s = vec![0f32; 4];
        let r = std::panic::catch_unwind(|| (k.attn_scores)(&q, short, 10, 1.0, &mut s.clone()));
        assert!(r.is_err(), "{:?} attn_scores read past the keys", k.tier);
        let mut o = vec![0f32; 8];
        let r = std::panic::catch_unwind(|| (k.attn_mix)(&[1.0; 4], short, 10, &mut o.clone()));
        assert!(r.is_err(), "{:?} attn_mix read past the values", k.tier);
        (k.attn_scores)(&q, &keys, 10, 1.0, &mut s);
        (k.attn_mix)(&[1.0; 4], &keys, 10, &mut o);
        assert_eq!(s, vec![8.0; 4]);
        assert_eq!(o, vec![4.0; 8]);
    }
}

#[test]
fn quantize_row_q8_0_is_bit_identical() {
    for k in simd_tiers() {
        for &nb in &BLOCKS {
            let mut x = values(nb * QK, 7, 3.0);
            if nb > 2 {
                // An all-zero block and exact .5 ties.
                x[..QK].fill(0.0);
                x[QK] = 127.0;
                x[QK + 1] = 0.5;
                x[QK + 2] = -2.5;
            }
            let mut a = vec![BlockQ8_0::default(); nb];
            let mut b = vec![BlockQ8_0::default(); nb];
            (k.quantize_row_q8_0)(&x, &mut a);
            scalar::q8_0::quantize_row_activations(&x, &mut b);
            assert_eq!(a, b, "{:?} quantize_row_q8_0 blocks={nb}", k.tier);
        }
    }
}

#[test]
fn quantize_row_q8_1_is_bit_identical() {
    for k in simd_tiers() {
        for &nb in &BLOCKS {
            let mut x = values(nb * QK, 20, 3.0);
            if nb > 2 {
                // An all-zero block and exact .5 ties (amax 127: d = 1).
                x[..QK].fill(0.0);
                x[QK] = 127.0;
                x[QK + 1] = 0.5;
                x[QK + 2] = -2.5;
                x[QK + 3] = -0.5;
            }
            let mut a = vec![BlockQ8_1::default(); nb];
            let mut b = vec![BlockQ8_1::default(); nb];
            (k.quantize_row_q8_1)(&x, &mut a);
            scalar::q8_1::quantize_row_activations(&x, &mut b);
            assert_eq!(a, b, "{:?} quantize_row_q8_1 blocks={nb}", k.tier);
        }
    }
}

#[test]
fn elementwise() {
    for k in simd_tiers() {
        for &n in &LENS {
            let x = values(n, 8, 2.0);
            let w = values(n, 9, 1.0);
            let t = format!("{:?} n={n}", k.tier);

            let (mut y1, mut y2) = (values(n, 10, 1.0), values(n, 10, 1.0));
            (k.axpy)(0.37, &x, &mut y1);
            scalar::f32::axpy(0.37, &x, &mut y2);
            for (a, b) in y1.iter().zip(&y2) {
                close(*a, *b, b.abs() + 1.0, &format!("{t} axpy"));
            }

            let (mut o1, mut o2) = (vec![0f32; n], vec![0f32; n]);
            (k.rmsnorm)(&x, &w, 1e-6, &mut o1);
            scalar::ops::rmsnorm(&x, &w, 1e-6, &mut o2);
            for (a, b) in o1.iter().zip(&o2) {
                close(*a, *b, b.abs() + 1e-3, &format!("{t} rmsnorm"));
            }

            let (mut s1, mut s2) = (x.clone(), x.clone());
            (k.softmax)(&mut s1);
            scalar::ops::softmax(&mut s2);
            for (a, b) in s1.iter().zip(&s2) {
                close(*a, *b, b.abs() + 1e-6, &format!("{t} softmax"));
            }

            let (mut g1, mut g2) = (x.clone(), x.clone());
            (k.silu_mul)(&mut g1, &w);
            scalar::ops::silu_mul(&mut g2, &w);
            for (a, b) in g1.iter().zip(&g2) {
                close(*a, *b, b.abs() + 1e-6, &format!("{t} silu_mul"));
            }

            if n % 2 == 0 {
                let cos = values(n / 2, 11, 1.0);
                let sin = values(n / 2, 12, 1.0);
                let (mut r1, mut r2) = (x.clone(), x.clone());
                (k.rope_neox)(&mut r1, &cos, &sin);
                scalar::ops::rope_neox(&mut r2, &cos, &sin);
                for (a, b) in r1.iter().zip(&r2) {
                    close(*a, *b, b.abs() + 2.0, &format!("{t} rope"));
                }
                let (mut r1, mut r2) = (x.clone(), x.clone());
                (k.rope_interleaved)(&mut r1, &cos, &sin);
                scalar::ops::rope_interleaved(&mut r2, &cos, &sin);
                for (a, b) in r1.iter().zip(&r2) {
                    close(*a, *b, b.abs() + 2.0, &format!("{t} rope_interleaved"));
                }
            }

            for dtype in DType::ALL {
                let cols = n / dtype.block_len() * dtype.block_len();
                if cols == 0 {
                    continue;
                }
                let bytes = sample::weights(dtype, &x[..cols], cols).unwrap();
                let (mut d1, mut d2) = (vec![0f32; cols], vec![0f32; cols]);
                k.dequantize_row(dtype, &bytes, &mut d1);
                scalar::dequantize_row(dtype, &bytes, &mut d2);
                assert_eq!(d1, d2, "{t} dequantize {dtype}");
            }
        }
    }
}

/// Q8_K activations of `x` (a whole number of super-blocks).
fn q8k(x: &[f32]) -> Vec<cosmoe_kernels::blocks::BlockQ8K> {
    let mut a = vec![bytemuck::Zeroable::zeroed(); x.len() / cosmoe_kernels::blocks::QK_K];
    scalar::q8_k::quantize_row_activations(x, &mut a);
    a
}

/// f16 super-block scales from the largest to the smallest subnormal, of both signs.
const EDGE_SCALES: [u16; 8] = [
    0x7bff, 0xfbff, 0x0400, 0x0001, 0x8001, 0x3c00, 0xbc00, 0x1234,
];

/// A row of `dtype` (IQ2_XS, IQ2_S, IQ1_S or IQ1_M) whose blocks use every grid index, sign pattern,
/// sub-block scale and shift sign (group `g` of block `b` takes grid index `32 * b + g`), with the
/// super-block scales of `EDGE_SCALES`, and a last block of the largest products: one grid point of
/// the largest magnitudes throughout with the largest scales, which against activations of -127
/// (constant `x`) reaches the bounds the SIMD kernels' integer lanes are sized for.
fn iq_edge_row(dtype: DType) -> Vec<u8> {
    use cosmoe_kernels::blocks::{to_scale, BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs};
    use cosmoe_kernels::scalar::iq_grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID};
    let d = |b: usize| EDGE_SCALES[b % EDGE_SCALES.len()].to_le_bytes();
    let top = |grid: &[u64]| {
        grid.iter()
            .position(|&g| g == 0x2b2b_2b2b_2b2b_2b2b)
            .unwrap()
    };
    match dtype {
        DType::IQ2_XS => {
            let mut v: Vec<BlockIq2Xs> =
                vec![bytemuck::Zeroable::zeroed(); IQ2XS_GRID.len() / 32 + 1];
            let last = v.len() - 1;
            for (b, x) in v.iter_mut().enumerate() {
                for g in 0..32 {
                    let i = 32 * b + g;
                    let word = if b == last {
                        top(&IQ2XS_GRID)
                    } else {
                        (i % 512) | ((i % 128) << 9)
                    };
                    x.qs[2 * g..2 * g + 2].copy_from_slice(&(word as u16).to_le_bytes());
                }
                for k in 0..8 {
                    x.scales[k] = (((8 * b + k) % 16) | (((8 * b + k + 5) % 16) << 4)) as u8;
                }
                x.d = d(b);
                if b == last {
                    (x.d, x.scales) = (to_scale(1.0), [0xff; 8]);
                }
            }
            bytemuck::cast_slice(&v).to_vec()
        }
        DType::IQ2_S => {
            let mut v: Vec<BlockIq2S> =
                vec![bytemuck::Zeroable::zeroed(); IQ2S_GRID.len() / 32 + 1];
            let last = v.len() - 1;
            for (b, x) in v.iter_mut().enumerate() {
                for g in 0..32 {
                    let i = 32 * b + g;
                    let (idx, signs) = if b == last {
                        (top(&IQ2S_GRID), 0)
                    } else {
                        (i % 1024, i % 256)
                    };
                    x.qs[g] = idx as u8;
                    x.qh[g / 4] |= ((idx >> 8) << (2 * (g % 4))) as u8;
                    x.qs[32 + g] = signs as u8;
                }
                for k in 0..8 {
                    x.scales[k] = (((8 * b + k) % 16) | (((8 * b + k + 5) % 16) << 4)) as u8;
                }
                x.d = d(b);
                if b == last {
                    (x.d, x.scales) = (to_scale(1.0), [0xff; 8]);
                }
            }
            bytemuck::cast_slice(&v).to_vec()
        }
        DType::IQ1_S => {
            // Grid point 0 is all -1.
            let mut v: Vec<BlockIq1S> =
                vec![bytemuck::Zeroable::zeroed(); IQ1S_GRID.len() / 32 + 1];
            let last = v.len() - 1;
            for (b, x) in v.iter_mut().enumerate() {
                for ib in 0..8 {
                    let mut qh = if b == last {
                        0xf000
                    } else {
                        ((8 * b + ib) % 16) << 12
                    };
                    for l in 0..4 {
                        let idx = if b == last {
                            0
                        } else {
                            (32 * b + 4 * ib + l) % 2048
                        };
                        x.qs[4 * ib + l] = idx as u8;
                        qh |= (idx >> 8) << (3 * l);
                    }
                    x.qh[2 * ib..2 * ib + 2].copy_from_slice(&(qh as u16).to_le_bytes());
                }
                x.d = if b == last { to_scale(1.0) } else { d(b) };
            }
            bytemuck::cast_slice(&v).to_vec()
        }
        DType::IQ1_M => {
            let mut v: Vec<BlockIq1M> =
                vec![bytemuck::Zeroable::zeroed(); IQ1S_GRID.len() / 32 + 1];
            let last = v.len() - 1;
            for (b, x) in v.iter_mut().enumerate() {
                for g in 0..32 {
                    let (idx, negative) = match b == last {
                        true => (0, 1),
                        false => ((32 * b + g) % 2048, (g / 2 + b) % 2),
                    };
                    x.qs[g] = idx as u8;
                    x.qh[g / 2] |= (((idx >> 8) | (negative << 3)) << (4 * (g % 2))) as u8;
                }
                for k in 0..4 {
                    let f = |h: usize| {
                        if b == last {
                            7
                        } else {
                            (16 * b + 4 * k + h) % 8
                        }
                    };
                    let w = f(0) | (f(1) << 3) | (f(2) << 6) | (f(3) << 9);
                    x.scales[2 * k..2 * k + 2].copy_from_slice(&(w as u16).to_le_bytes());
                }
                let s = if b == last { to_scale(1.0) } else { d(b) };
                sample::set_super_scale(dtype, bytemuck::bytes_of_mut(x), s);
            }
            bytemuck::cast_slice(&v).to_vec()
        }
        _ => unreachable!("{dtype} has no edge row"),
    }
}

/// The IQ1/IQ2/IQ3 products of every tier equal the scalar reference bit for bit (their integer sums
/// are exact and converted once per super-block, as the reference's), over block counts and
/// unaligned starts; for IQ2_XS, IQ2_S, IQ1_S and IQ1_M also over every grid point, sign pattern and
/// scale, extreme super-block scales and the largest products ([`iq_edge_row`]).
#[test]
fn dot_iq_lattice_formats_bit_for_bit() {
    use cosmoe_kernels::blocks::QK_K;
    let scalar_k = Kernels::for_tier(Tier::Scalar).unwrap();
    let q8k_dot = |k: &Kernels, dtype: DType| match k.format(dtype).products {
        Products::Q8K { dot, .. } => dot,
        _ => panic!("{dtype} does not take Q8_K activations"),
    };
    let check = |k: &Kernels, dtype: DType, bytes: &[u8], x: &[f32], what: &str| {
        let a = q8k(x);
        for off in 0..3 {
            let buf = at_offset(bytes, off);
            let row = &buf[off..];
            let (got, want) = (
                q8k_dot(k, dtype)(row, &a),
                q8k_dot(scalar_k, dtype)(row, &a),
            );
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{:?} {dtype} {what} blocks={} off={off}: {got} != {want}",
                k.tier,
                a.len()
            );
        }
    };
    let formats = [
        DType::IQ3_XXS,
        DType::IQ3_S,
        DType::IQ2_XXS,
        DType::IQ2_XS,
        DType::IQ2_S,
        DType::IQ1_S,
        DType::IQ1_M,
    ];
    for k in simd_tiers() {
        for dtype in formats {
            for nb in [0usize, 1, 2, 3, 5, 9, 17] {
                let n = nb * QK_K;
                let w = values(n.max(QK_K), 21, 0.1);
                let bytes = sample::weights(dtype, &w[..n], n.max(QK_K)).unwrap_or_default();
                check(k, dtype, &bytes, &values(n, 22, 1.0), "random");
            }
        }
        for dtype in &formats[3..] {
            let bytes = iq_edge_row(*dtype);
            let n = bytes.len() / dtype.block_bytes() * QK_K;
            check(k, *dtype, &bytes, &values(n, 23, 1.0), "edge");
            check(k, *dtype, &bytes, &vec![-1.0; n], "edge, acts -127");
        }
    }
}

/// Whole products: every tier and format against the scalar table, with odd row counts, one token
/// and several.
#[test]
fn matvec_and_matmul() {
    let scalar_k = Kernels::for_tier(Tier::Scalar).unwrap();
    for k in simd_tiers() {
        for dtype in DType::ALL {
            // Rows of 1, 2, 3 and 4 super-blocks for the 256-value formats.
            for (rows, cols) in [
                (1usize, 32usize),
                (3, 64),
                (33, 96),
                (130, 256),
                (2, 512),
                (5, 768),
                (517, 1024),
            ] {
                if !cols.is_multiple_of(dtype.block_len()) {
                    continue;
                }
                let w = values(rows * cols, 13, 0.1);
                let bytes = sample::weights(dtype, &w, cols).unwrap();
                let m = MatRef::new(dtype, rows, cols, &bytes).unwrap();
                for n in [1, 2, 5] {
                    let x = values(n * cols, 14, 1.0);
                    let (mut y1, mut y2) = (vec![0f32; n * rows], vec![0f32; n * rows]);
                    k.matmul(m, &x, n, &mut y1);
                    scalar_k.matmul(m, &x, n, &mut y2);
                    let mut deq = vec![0f32; cols];
                    for r in 0..rows {
                        scalar::dequantize_row(dtype, m.row(r), &mut deq);
                        for t in 0..n {
                            let mag: f32 = deq
                                .iter()
                                .zip(&x[t * cols..])
                                .map(|(a, b)| (a * b).abs())
                                .sum();
                            let tol_mag = if dtype.quantised_activations() {
                                mag * 4.0
                            } else {
                                mag
                            };
                            close(
                                y1[t * rows + r],
                                y2[t * rows + r],
                                tol_mag,
                                &format!("{:?} {dtype} {rows}x{cols} n={n} r={r} t={t}", k.tier),
                            );
                        }
                    }
                }
            }
        }
    }
}

/// `matmul` computes every output exactly as `matvec` does (prefill and decode must agree bit for bit),
/// on every tier, scalar included, with row counts over the parallel threshold and column counts with
/// and without a partial group of eight Q8_0/Q4_0 blocks.
#[test]
fn matmul_equals_matvec_bit_for_bit() {
    let tiers = Tier::available().into_iter().filter_map(Kernels::for_tier);
    for k in tiers {
        for dtype in DType::ALL {
            for (rows, cols) in [(3usize, 64usize), (517, 1024), (129, 608), (5, 768)] {
                if !cols.is_multiple_of(dtype.block_len()) {
                    continue;
                }
                let w = values(rows * cols, 15, 0.1);
                let bytes = sample::weights(dtype, &w, cols).unwrap();
                let m = MatRef::new(dtype, rows, cols, &bytes).unwrap();
                // 9: two tiles of four tokens (the Q8_K tiles) and one token left over.
                for n in [3, 9] {
                    let x = values(n * cols, 16, 1.0);
                    let mut y = vec![0f32; n * rows];
                    k.matmul(m, &x, n, &mut y);
                    for t in 0..n {
                        let mut yv = vec![0f32; rows];
                        k.matvec(m, &x[t * cols..(t + 1) * cols], &mut yv);
                        for r in 0..rows {
                            assert_eq!(
                                y[t * rows + r].to_bits(),
                                yv[r].to_bits(),
                                "{:?} {dtype} {rows}x{cols} n={n} t={t} r={r}",
                                k.tier
                            );
                        }
                    }
                }
            }
        }
    }
}

/// `matvec_jobs` gives each product exactly what `matvec` gives, on every tier, for jobs of several
/// formats and shapes together (over and under the parallel threshold), and refuses a wrong shape.
#[test]
fn matvec_jobs_equals_matvec_bit_for_bit() {
    use cosmoe_kernels::MatvecJob;
    let tiers = Tier::available().into_iter().filter_map(Kernels::for_tier);
    for k in tiers {
        for shapes in [
            vec![
                (DType::Q4_0, 448, 448),
                (DType::Q4_0, 130, 448),
                (DType::F32, 3, 448),
            ],
            vec![
                (DType::Q8_0, 1280, 448),
                (DType::Q4_0, 1280, 448),
                (DType::BF16, 7, 64),
            ],
            vec![(DType::F16, 2, 32)],
            vec![],
        ] {
            let mats: Vec<(Vec<u8>, Vec<f32>)> = shapes
                .iter()
                .enumerate()
                .map(|(i, &(dtype, rows, cols))| {
                    let w = values(rows * cols, 30 + i as u64, 0.1);
                    (
                        quantize(dtype, &w, cols).unwrap(),
                        values(cols, 40 + i as u64, 1.0),
                    )
                })
                .collect();
            let ms: Vec<MatRef<'_>> = shapes
                .iter()
                .zip(&mats)
                .map(|(&(dtype, rows, cols), (b, _))| MatRef::new(dtype, rows, cols, b).unwrap())
                .collect();
            let mut ys: Vec<Vec<f32>> = ms.iter().map(|m| vec![f32::NAN; m.rows()]).collect();
            let mut jobs: Vec<MatvecJob<'_, '_>> = ms
                .iter()
                .zip(&mats)
                .zip(ys.iter_mut())
                .map(|((m, (_, x)), y)| MatvecJob { w: *m, x, y })
                .collect();
            k.matvec_jobs(&mut jobs);
            for ((m, (_, x)), y) in ms.iter().zip(&mats).zip(&ys) {
                let mut want = vec![0f32; m.rows()];
                k.matvec(*m, x, &mut want);
                let (got, want): (Vec<u32>, Vec<u32>) = (
                    y.iter().map(|v| v.to_bits()).collect(),
                    want.iter().map(|v| v.to_bits()).collect(),
                );
                assert_eq!(
                    got,
                    want,
                    "{:?} {} {}x{}",
                    k.tier,
                    m.dtype(),
                    m.rows(),
                    m.cols()
                );
            }
        }
        // Jobs on one input share its quantised form.
        let x = values(448, 50, 1.0);
        let (b4, b8) = (
            quantize(DType::Q4_0, &values(300 * 448, 51, 0.1), 448).unwrap(),
            quantize(DType::Q8_0, &values(200 * 448, 52, 0.1), 448).unwrap(),
        );
        let m4 = MatRef::new(DType::Q4_0, 300, 448, &b4).unwrap();
        let m8 = MatRef::new(DType::Q8_0, 200, 448, &b8).unwrap();
        let (mut y4, mut y8) = (vec![0f32; 300], vec![0f32; 200]);
        k.matvec_jobs(&mut [
            MatvecJob {
                w: m4,
                x: &x,
                y: &mut y4,
            },
            MatvecJob {
                w: m8,
                x: &x,
                y: &mut y8,
            },
        ]);
        let (mut w4, mut w8) = (vec![0f32; 300], vec![0f32; 200]);
        k.matvec(m4, &x, &mut w4);
        k.matvec(m8, &x, &mut w8);
        assert_eq!((y4, y8), (w4, w8), "{:?}: shared input", k.tier);

        let bytes = quantize(DType::F32, &[1.0; 64], 32).unwrap();
        let m = MatRef::new(DType::F32, 2, 32, &bytes).unwrap();
        let r = std::panic::catch_unwind(|| {
            let mut y = vec![0f32; 3];
            k.matvec_jobs(&mut [MatvecJob {
                w: m,
                x: &[1.0; 32],
                y: &mut y,
            }]);
        });
        assert!(
            r.is_err(),
            "{:?}: a 3-row output for a 2-row matrix was accepted",
            k.tier
        );
    }
}

/// The scale helpers agree with half's conversions.
#[test]
fn block_scale_roundtrip() {
    for v in [0.0f32, 1.0, -2.5, 6.1e-5, 65504.0] {
        assert_eq!(
            scale(cosmoe_kernels::blocks::to_scale(v)),
            half::f16::from_f32(v).to_f32()
        );
    }
}
