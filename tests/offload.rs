//! The expert cache under the forward pass: outputs are bit-identical in every mode (resident, each
//! `--io`, every budget down to one layer's k experts, each prefetch predictor), the budget holds, and a
//! budget too small for one layer is a clear error.

mod common;

use cosmoe::Session;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cosmoe::forward::Logits;
use cosmoe::routing::Prefetch;
use cosmoe::{LoadOptions, Model};
use cosmoe_cache::{CacheConfig, IoMode};

use common::{expected, golden_dir};

fn gguf(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

/// Logits of every position of the prompt, then of each greedy decode step (token by token, so the
/// cache sees decode traffic and prefetch hints).
fn run(path: &Path, opts: &LoadOptions, prompt: &[u32], n_new: usize) -> (Vec<f32>, Arc<Model>) {
    let model = Model::load_with(path, opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let model = Arc::new(model);
    let mut kv = Session::new(model.clone());
    let mut out = kv.eval(prompt, Logits::All).map(<[f32]>::to_vec).unwrap();
    let v = model.config.vocab_size;
    let mut next = argmax(&out[out.len() - v..]);
    for _ in 0..n_new {
        let l = kv.eval(&[next], Logits::Last).map(<[f32]>::to_vec).unwrap();
        next = argmax(&l);
        out.extend_from_slice(&l);
    }
    model.experts.wait_prefetches();
    (out, model)
}

fn argmax(x: &[f32]) -> u32 {
    x.iter()
        .enumerate()
        .fold(0, |b, (i, &v)| if v > x[b] { i } else { b }) as u32
}

fn opts(budget: Option<u64>, io: IoMode, prefetch: Prefetch) -> LoadOptions {
    LoadOptions {
        cache: CacheConfig {
            budget,
            io,
            prefetch_threads: usize::from(prefetch != Prefetch::None),
            ..Default::default()
        },
        prefetch,
        ..Default::default()
    }
}

#[test]
fn outputs_are_identical_in_every_mode() {
    // GGUF files (experts read from the file) and Hugging Face folders (per-expert and fused 3-D
    // experts, read from the safetensors files).
    let cases: Vec<(PathBuf, String)> = vec![
        (gguf("mixtral.q8_0.gguf"), "mixtral".into()),
        (gguf("qwen3_moe.f32.gguf"), "qwen3_moe".into()),
        (golden_dir().join("olmoe"), "olmoe".into()),
        (golden_dir().join("qwen2_moe"), "qwen2_moe".into()),
        // Weight-decomposed experts: six matrices an expert, read and cached as one unit.
        (golden_dir().join("cosmoe_wd"), "cosmoe_wd".into()),
    ];
    for (path, fixture) in cases {
        let prompt = expected(&golden_dir().join(&fixture)).prompt_ids;
        let (base, model) = run(&path, &LoadOptions::default(), &prompt, 12);
        let m = model.config.moe.clone().unwrap();
        let total = model.experts.total_expert_bytes();
        // The smallest budget that holds one layer's k largest experts.
        let per_expert = (0..model.experts.n_layers())
            .flat_map(|l| (0..model.experts.n_experts(l)).map(move |e| (l, e)))
            .map(|(l, e)| model.experts.expert_bytes(l, e))
            .max()
            .unwrap();
        let min = per_expert * m.top_k as u64;
        drop(model);
        let mut modes = Vec::new();
        for io in IoMode::ALL {
            modes.push(opts(None, io, Prefetch::None));
        }
        for budget in [min, total / 2, total] {
            for prefetch in [
                Prefetch::None,
                Prefetch::Gate,
                Prefetch::History,
                Prefetch::GateHistory,
            ] {
                modes.push(opts(Some(budget), IoMode::Buffered, prefetch));
            }
            modes.push(opts(Some(budget), IoMode::Direct, Prefetch::GateHistory));
            let mut layer = opts(Some(budget), IoMode::Buffered, Prefetch::History);
            layer.cache.policy = cosmoe_cache::PolicyKind::Layer;
            modes.push(layer);
            let mut lfu = opts(Some(budget), IoMode::Buffered, Prefetch::None);
            lfu.cache.policy = cosmoe_cache::PolicyKind::Lfu;
            modes.push(lfu);
        }
        for o in &modes {
            let (got, model) = run(&path, o, &prompt, 12);
            let what = format!("{fixture}: {:?} {:?}", o.cache, o.prefetch);
            assert!(got == base, "{what}: logits differ from the resident run");
            let s = model.experts.stats();
            assert_eq!(s.hits + s.misses, s.requests, "{what}");
            if let (Some(b), IoMode::Buffered | IoMode::Direct) = (o.cache.budget, o.cache.io) {
                assert!(
                    s.peak_cached_bytes <= b,
                    "{what}: peak {} > budget {b}",
                    s.peak_cached_bytes
                );
                if b == min {
                    assert!(s.evictions > 0, "{what}: a one-layer budget must evict");
                    assert!(s.misses > 0 && s.bytes_read > 0, "{what}");
                }
            }
        }
    }
}

#[test]
fn budget_too_small_for_one_layer_is_an_error() {
    let path = gguf("mixtral.q8_0.gguf");
    let model = Arc::new(Model::load_with(&path, &LoadOptions::default()).unwrap());
    let one = model.experts.expert_bytes(0, 0);
    drop(model);
    let e = match Model::load_with(&path, &opts(Some(one), IoMode::Buffered, Prefetch::None)) {
        Ok(_) => panic!("a budget of one expert for top-2 routing was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("budget") && e.contains("k=2"), "{e}");
}

/// A copy of a GGUF file with the expert tensors last, so cutting the file's tail removes expert bytes
/// only (the resident weights stay mapped in place, and a map must not lose its pages under a run).
/// Returns the file offset of the first expert tensor.
fn experts_last_copy(src: &Path, out: &Path) -> u64 {
    use cosmoe_loader::gguf_writer::GgufWriter;
    let f = cosmoe_loader::GgufFile::open(src).unwrap();
    let mut w = GgufWriter::new();
    w.set_alignment(4096).unwrap();
    for (k, v) in f.metadata() {
        if k != "general.alignment" {
            w.set(k, v.clone());
        }
    }
    let mut infos: Vec<_> = f.tensors().iter().collect();
    infos.sort_by_key(|t| t.name().contains("_exps"));
    for t in &infos {
        let ne = cosmoe_loader::GgufTensorInfo::ne(t);
        w.add_tensor(t.name(), ne, t.ggml_type()).unwrap();
    }
    let file = std::fs::File::create(out).unwrap();
    w.write(out, file, |i, _, sink| {
        sink.put(&f.tensor_bytes(infos[i]).unwrap())
    })
    .unwrap();
    let g = cosmoe_loader::GgufFile::open(out).unwrap();
    let first = g
        .tensors()
        .iter()
        .find(|t| t.name().contains("_exps"))
        .unwrap();
    (g.data_offset() + first.offset()) as u64
}

#[test]
fn a_truncated_file_is_an_error_of_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("m.gguf");
    let prompt = expected(&golden_dir().join("mixtral")).prompt_ids;
    for io in [IoMode::Buffered, IoMode::Direct] {
        let first_expert = experts_last_copy(&gguf("mixtral.q8_0.gguf"), &path);
        let model =
            Arc::new(Model::load_with(&path, &opts(Some(1 << 30), io, Prefetch::None)).unwrap());
        // Cut the file under the loaded model, past its resident weights: the experts are gone.
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let len = file.metadata().unwrap().len();
        file.set_len(first_expert + 100).unwrap();
        let mut kv = Session::new(model.clone());
        let e = kv
            .eval(&prompt, Logits::Last)
            .map(<[f32]>::to_vec)
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.gguf"), "{io}: {e}");
        assert_eq!(
            kv.n_past(),
            0,
            "a failed forward pass must leave the KV cache as it was"
        );
        // A failed read is not cached: with the file whole again, the same model runs.
        drop(file);
        experts_last_copy(&gguf("mixtral.q8_0.gguf"), &path);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        kv.eval(&prompt, Logits::Last).map(<[f32]>::to_vec).unwrap();
    }
}

#[test]
fn prefill_loads_each_expert_once_per_batch() {
    let path = gguf("qwen3_moe.f32.gguf");
    let model =
        Arc::new(Model::load_with(&path, &opts(None, IoMode::Buffered, Prefetch::None)).unwrap());
    let prompt: Vec<u32> = (0..40).map(|i| (i * 7 % 200) as u32).collect();
    let mut kv = Session::new(model.clone());
    kv.eval(&prompt, Logits::Last).map(<[f32]>::to_vec).unwrap();
    let m = model.config.moe.clone().unwrap();
    let trace = kv.routing_trace().unwrap();
    assert_eq!(trace.tokens.len(), prompt.len());
    // Distinct (layer, expert) pairs the batch used: one fetch each, however many tokens chose them.
    let mut used = std::collections::HashSet::new();
    for layers in &trace.tokens {
        for (l, es) in layers.iter().enumerate() {
            used.extend(es.iter().map(|&e| (l, e)));
        }
    }
    let s = model.experts.stats();
    assert_eq!(s.requests as usize, used.len());
    assert_eq!(s.reads as usize, used.len());
    assert!(used.len() < prompt.len() * m.top_k * model.config.n_layers);
}

/// `cache_experts_per_layer = k` with the `layer` policy is the CoSMoEs paper's offloading rule
/// (Eq. 8): in decode, the experts a token stops using are exactly the ones evicted, so every expert
/// replacement of the routing (what ExRep counts) is one read, and nothing else is; with the reader
/// threads' read-ahead too.
#[test]
fn k_experts_per_layer_with_the_layer_policy_is_the_papers_offloading_rule() {
    let path = gguf("mixtral.q8_0.gguf");
    for readers in [0, 2] {
        let opts = LoadOptions {
            cache: CacheConfig {
                io: IoMode::Buffered,
                prefetch_threads: readers,
                policy: cosmoe_cache::PolicyKind::Layer,
                ..Default::default()
            },
            cache_experts_per_layer: Some(2),
            ..Default::default()
        };
        let model = Arc::new(Model::load_with(&path, &opts).unwrap());
        let m = model.config.moe.clone().unwrap();
        assert_eq!(m.top_k, 2);
        let n_layers = model.config.n_layers;
        // The budget holds exactly one token's experts.
        let one = model.experts.expert_bytes(0, 0);
        assert_eq!(
            model.experts.budget(),
            Some(one * (n_layers * m.top_k) as u64)
        );
        let mut kv = Session::new(model.clone());
        let mut next = 1u32;
        for _ in 0..48 {
            let l = kv.eval(&[next], Logits::Last).map(<[f32]>::to_vec).unwrap();
            next = argmax(&l);
        }
        model.experts.wait_prefetches();
        let trace = kv.routing_trace().unwrap();
        let counts = cosmoe::routing::exrep_counts(&trace.tokens, n_layers);
        let replaced: usize = counts.iter().map(|c| c.new).sum();
        assert!(
            replaced > 0,
            "the routing never changed: the test would check nothing"
        );
        let s = model.experts.stats();
        let first = (n_layers * m.top_k) as u64;
        let what = format!("{readers} reader threads");
        assert_eq!(
            s.reads,
            first + replaced as u64,
            "{what}: reads = the first token's experts + replacements"
        );
        assert_eq!(
            s.evictions, replaced as u64,
            "{what}: each replacement evicts the expert it replaces"
        );
        assert_eq!(s.requests, (48 * n_layers * m.top_k) as u64, "{what}");
    }
}
