//! The forward pass against Hugging Face transformers on every golden fixture.

mod common;

use common::{expected, fixtures, golden_dir, ids, rel_err};
use cosmoe::forward::Logits;
use cosmoe::generate::GenerateConfig;
use cosmoe::sampler::SamplerConfig;
use cosmoe::Model;
use cosmoe::Session;
use std::sync::Arc;

fn greedy(n: usize) -> GenerateConfig {
    GenerateConfig {
        max_new_tokens: n,
        stop_at_eos: false,
        context_shift: None,
        sampler: SamplerConfig {
            temperature: 0.0,
            ..Default::default()
        },
    }
}

#[test]
fn logits_match_transformers() {
    let mut report = Vec::new();
    for dir in fixtures() {
        let exp = expected(&dir);
        let model = Arc::new(Model::load(&dir).unwrap());
        assert_eq!(model.config.vocab_size, exp.vocab_size);
        let mut kv = Session::new(model.clone());
        let got = kv
            .eval(&exp.prompt_ids, Logits::All)
            .map(<[f32]>::to_vec)
            .unwrap();
        let err = rel_err(&got, &exp.logits);
        report.push(format!(
            "{}: {err:.2e}",
            dir.file_name().unwrap().to_string_lossy()
        ));
        assert!(
            err <= 1e-4,
            "{}: max |diff| / max |logit| = {err:e}",
            dir.display()
        );
    }
    eprintln!(
        "relative logit error vs transformers: {}",
        report.join(", ")
    );
}

#[test]
fn greedy_continuation_matches_transformers() {
    for dir in fixtures() {
        let exp = expected(&dir);
        let model = Arc::new(Model::load(&dir).unwrap());
        let g = Session::new(model.clone())
            .complete(&exp.prompt_ids, &greedy(exp.greedy_ids.len()), |_, _| true)
            .unwrap();
        assert_eq!(g.tokens, exp.greedy_ids, "{}", dir.display());
    }
}

/// Decoding one token at a time through the KV cache computes every value the same way as one
/// forward pass over the whole sequence, so the logits are identical, not just close.
#[test]
fn kv_cache_decode_equals_full_forward() {
    for dir in fixtures() {
        let exp = expected(&dir);
        let model = Arc::new(Model::load(&dir).unwrap());
        let seq: Vec<u32> = exp
            .prompt_ids
            .iter()
            .chain(&exp.greedy_ids)
            .copied()
            .collect();
        let v = model.config.vocab_size;
        let full = Session::new(model.clone())
            .eval(&seq, Logits::All)
            .map(<[f32]>::to_vec)
            .unwrap();

        let mut kv = Session::new(model.clone());
        // A prefill of the prompt, then one token at a time.
        let p = exp.prompt_ids.len();
        let pre = kv
            .eval(&seq[..p], Logits::All)
            .map(<[f32]>::to_vec)
            .unwrap();
        assert_eq!(pre, full[..p * v], "{}: prefill", dir.display());
        for (i, &t) in seq.iter().enumerate().skip(p) {
            let step = kv.eval(&[t], Logits::Last).map(<[f32]>::to_vec).unwrap();
            assert_eq!(
                step,
                full[i * v..(i + 1) * v],
                "{}: position {i}",
                dir.display()
            );
        }
        assert_eq!(kv.n_past(), seq.len());
    }
}

#[test]
fn sharded_and_single_file_agree() {
    let single = Arc::new(Model::load(&golden_dir().join("qwen3_moe")).unwrap());
    let sharded = Arc::new(Model::load(&golden_dir().join("qwen3_moe_sharded")).unwrap());
    assert_eq!(single.source.n_files(), 1);
    assert!(sharded.source.n_files() > 1);
    let ids = expected(&golden_dir().join("qwen3_moe")).prompt_ids;
    let a = Session::new(single.clone())
        .eval(&ids, Logits::All)
        .map(<[f32]>::to_vec)
        .unwrap();
    let b = Session::new(sharded.clone())
        .eval(&ids, Logits::All)
        .map(<[f32]>::to_vec)
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn tokenizer_and_text_prompt_match() {
    let dir = golden_dir().join("llama");
    let exp = expected(&dir);
    let tok = cosmoe_loader::tokenizer::load_from_dir(&dir)
        .unwrap()
        .expect("llama fixture has a tokenizer");
    let cases = exp.json["tokenizer_cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let got = tok.encode(text, false).unwrap().get_ids().to_vec();
        assert_eq!(got, ids(&case["ids"]), "{text:?}");
    }
    let prompt = tok
        .encode(exp.json["prompt_text"].as_str().unwrap(), false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(prompt, ids(&exp.json["prompt_text_ids"]));
    let model = Arc::new(Model::load(&dir).unwrap());
    let want = ids(&exp.json["prompt_text_greedy_ids"]);
    let g = Session::new(model.clone())
        .complete(&prompt, &greedy(want.len()), |_, _| true)
        .unwrap();
    assert_eq!(g.tokens, want);
}
