//! One decode step of each golden fixture (tiny models: this measures per-token overhead, not bandwidth).

use std::path::Path;

use cosmoe::forward::Logits;
use cosmoe::Model;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let mut g = c.benchmark_group("decode_step_fixture");
    for name in ["mixtral", "qwen2_moe", "olmoe", "granitemoe"] {
        let model = Model::load(&golden.join(name)).expect("fixture loads");
        let prompt: Vec<u32> = (1..17).collect();
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut kv = model.new_kv_cache();
                    model
                        .forward(&prompt, &mut kv, Logits::Last)
                        .expect("prefill");
                    kv
                },
                |mut kv| model.forward(&[5], &mut kv, Logits::Last).expect("decode"),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
