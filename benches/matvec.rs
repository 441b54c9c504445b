//! Kernel benches at the shapes of real models, in every weight format, reporting weight bytes per
//! second for decode (matvec: bound by how fast weights stream from memory) and FLOPs for prefill
//! (matmul over 64 tokens). Run: `cargo bench --bench matvec` (COSMOE_KERNELS=scalar|avx2|... to pick
//! a tier).

use cosmoe_kernels::{kernels, DType, MatRef};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// (name, rows, cols): the matrices decode multiplies, as `(out, in)`.
const SHAPES: [(&str, usize, usize); 5] = [
    // OLMoE-1B-7B expert gate/up projection: hidden 2048 -> ffn 1024
    ("olmoe_1b_7b_expert", 1024, 2048),
    // Qwen3-30B-A3B expert gate/up projection: hidden 2048 -> ffn 768
    ("qwen3_30b_a3b_expert", 768, 2048),
    // Mixtral-8x7B expert gate/up projection: hidden 4096 -> ffn 14336
    ("mixtral_8x7b_expert", 14336, 4096),
    // an attention projection of a 2048-wide model
    ("attention_2048", 2048, 2048),
    // the LM head of a 2048-wide model with OLMoE's vocabulary
    ("lm_head_2048x50304", 50304, 2048),
];

fn weights(dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let x: Vec<f32> = (0..rows * cols)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect();
    cosmoe_kernels::sample::weights(dtype, &x, cols).expect("whole blocks")
}

fn bench(c: &mut Criterion) {
    let k = kernels();
    eprintln!("kernel tier: {:?} {:?}", k.tier, k.features);
    for (name, rows, cols) in SHAPES {
        let mut g = c.benchmark_group(name);
        g.sample_size(20);
        for dtype in DType::ALL {
            let w = weights(dtype, rows, cols);
            let m = MatRef::new(dtype, rows, cols, &w).expect("shape");
            let fmt = dtype.name().to_lowercase();

            let x: Vec<f32> = (0..cols).map(|i| (i % 7) as f32 * 0.1).collect();
            let mut y = vec![0f32; rows];
            g.throughput(Throughput::Bytes(w.len() as u64));
            g.bench_function(BenchmarkId::new("matvec", &fmt), |b| {
                b.iter(|| k.matvec(m, &x, &mut y))
            });

            if rows * cols <= 1 << 23 {
                let n = 64;
                let xs: Vec<f32> = (0..n * cols).map(|i| (i % 5) as f32 * 0.1).collect();
                let mut ys = vec![0f32; n * rows];
                g.throughput(Throughput::Elements((2 * rows * cols * n) as u64));
                g.bench_function(BenchmarkId::new("matmul64_flops", &fmt), |b| {
                    b.iter(|| k.matmul(m, &xs, n, &mut ys))
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
