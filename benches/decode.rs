//! One decode step of each golden fixture (tiny models: this measures per-token overhead, not bandwidth).

use cosmoe::Session;
use std::path::Path;
use std::sync::Arc;

use cosmoe::forward::Logits;
use cosmoe::Model;
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let mut g = c.benchmark_group("decode_step_fixture");
    for name in ["mixtral", "qwen2_moe", "olmoe", "granitemoe"] {
        let model = Arc::new(Model::load(&golden.join(name)).expect("fixture loads"));
        let prompt: Vec<u32> = (1..17).collect();
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut kv = Session::new(model.clone());
                    kv.eval(&prompt, Logits::Last)
                        .map(<[f32]>::to_vec)
                        .expect("prefill");
                    kv
                },
                |mut kv| {
                    kv.eval(&[5], Logits::Last)
                        .map(<[f32]>::to_vec)
                        .expect("decode")
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
