//! Models quantised by llama.cpp's `llama-quantize --pure` to every block type cosmoe computes with,
//! against llama.cpp's own outputs on those files (tests/fixtures/quant/make_quant_fixtures.py; the files
//! themselves are not committed):
//!
//! - the F32 source is `cosmoe synth` of a fixture preset (deterministic: the file the script quantised);
//! - cosmoe's quantisers turn each of its tensors into the bytes llama-quantize wrote (sha256, tensor by
//!   tensor, with the type llama-quantize chose);
//! - the model quantised on load (`--quantize`) gives llama.cpp's 24 greedy ids, and its logits at the
//!   first position to 1e-5 (the prompt is one on which no near-tie of the random weights tips: see the
//!   script; llama.cpp's batched logits at later prompt positions differ on a few types, as a tipped
//!   routing tie would make them, and are printed, not asserted).

use std::path::Path;
use std::sync::Arc;

use cosmoe::forward::Logits;
use cosmoe::generate::GenerateConfig;
use cosmoe::synth::{synth, Preset, SynthConfig};
use cosmoe::{LoadOptions, Model, Session};
use cosmoe_kernels::{quantize, DType};
use cosmoe_loader::GgufFile;
use serde_json::Value;
use sha2::{Digest, Sha256};

const PRESETS: [&str; 2] = ["fixture-llama-moe-256", "fixture-qwen3moe-256"];

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/quant")
        .join(name)
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn llama_quantize_files_match_llama_cpp() {
    let dir = tempfile::tempdir().unwrap();
    for name in PRESETS {
        let rec: Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let src = dir.path().join(format!("{name}.f32.gguf"));
        synth(&SynthConfig {
            preset: Preset::find(name).unwrap(),
            dtype: DType::F32,
            out: src.clone(),
            seed: 0,
            progress: false,
            alignment: 32,
        })
        .unwrap();
        let bytes = std::fs::read(&src).unwrap();
        let file = GgufFile::open(&src).unwrap();
        let prompt: Vec<u32> = rec["prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let types = rec["types"].as_object().unwrap();
        assert!(types.len() >= 12, "{name}: {} types", types.len());
        for (ty, want) in types {
            let dtype = DType::parse(ty).unwrap_or_else(|| panic!("{ty}"));
            let what = format!("{name} {ty}");

            // The same bytes as llama-quantize, tensor by tensor.
            let tensors = want["tensors"].as_object().unwrap();
            assert_eq!(tensors.len(), file.tensors().len(), "{what}");
            for t in file.tensors() {
                let w = &tensors[t.name()];
                let at = file.data_offset() + t.offset();
                let values = f32s(&bytes[at..at + t.n_bytes()]);
                let out_type = DType::parse(w["type"].as_str().unwrap()).unwrap();
                let ours = quantize(out_type, &values, t.ne()[0]).unwrap();
                let digest = format!("{:x}", Sha256::digest(&ours));
                assert_eq!(
                    digest,
                    w["sha256"].as_str().unwrap(),
                    "{what}: {}",
                    t.name()
                );
            }

            // Quantised on load, the model gives llama.cpp's greedy ids and close logits.
            let opts = LoadOptions {
                quantize: Some(dtype),
                ..Default::default()
            };
            let model = Arc::new(Model::load_with(&src, &opts).unwrap());
            let mut s = Session::new(model.clone());
            let got = s.eval(&prompt, Logits::All).unwrap().to_vec();
            let lc =
                f32s(&std::fs::read(fixture(want["llama_cpp_logits"].as_str().unwrap())).unwrap());
            assert_eq!(got.len(), lc.len(), "{what}");
            let rel = |a: &[f32], b: &[f32]| {
                let max = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / max
            };
            let v = model.config.vocab_size;
            let (first, all) = (rel(&got[..v], &lc[..v]), rel(&got, &lc));
            eprintln!(
                "{what}: max|diff|/max|logit| first position {first:.1e}, whole prompt {all:.1e}"
            );
            assert!(
                first <= 1e-5,
                "{what}: first-position logits off by {first:e}"
            );
            let greedy: Vec<u32> = want["llama_cpp_greedy"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let cfg = GenerateConfig {
                max_new_tokens: greedy.len(),
                stop_at_eos: false,
                sampler: Default::default(),
            };
            let g = Session::new(model)
                .complete(&prompt, &cfg, |_, _| true)
                .unwrap();
            assert_eq!(
                g.tokens, greedy,
                "{what}: greedy ids differ from llama.cpp's"
            );
        }
    }
}
