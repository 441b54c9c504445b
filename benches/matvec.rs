//! Matrix-vector products at the shapes of real models, in the plain float formats, reporting weight
//! bytes per second (decode is bound by how fast weights stream from memory).

use cosmoe_kernels::{matvec, DType, MatRef};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// (name, rows, cols) of matrices decode multiplies every token.
const SHAPES: [(&str, usize, usize); 3] = [
    // one OLMoE-1B-7B expert projection (gate/up: 1024 x 2048)
    ("olmoe_1b_7b_expert", 1024, 2048),
    // one Qwen3-30B-A3B expert projection (768 x 2048)
    ("qwen3_30b_a3b_expert", 768, 2048),
    // an attention projection of a 2048-wide model
    ("attn_2048", 2048, 2048),
];

fn weights(dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let n = rows * cols;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
    };
    match dtype {
        DType::F32 => (0..n).flat_map(|_| next().to_le_bytes()).collect(),
        DType::F16 => (0..n)
            .flat_map(|_| half::f16::from_f32(next()).to_le_bytes())
            .collect(),
        DType::BF16 => (0..n)
            .flat_map(|_| half::bf16::from_f32(next()).to_le_bytes())
            .collect(),
    }
}

fn bench(c: &mut Criterion) {
    for (name, rows, cols) in SHAPES {
        let mut g = c.benchmark_group(name);
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let w = weights(dtype, rows, cols);
            let m = MatRef::new(dtype, rows, cols, &w).expect("shape");
            let x: Vec<f32> = (0..cols).map(|i| (i % 7) as f32 * 0.1).collect();
            let mut y = vec![0f32; rows];
            g.throughput(Throughput::Bytes(w.len() as u64));
            g.bench_function(
                BenchmarkId::new("matvec", dtype.name().to_lowercase()),
                |b| b.iter(|| matvec(m, &x, &mut y)),
            );
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
