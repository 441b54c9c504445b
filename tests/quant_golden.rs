//! Models quantised by llama.cpp's `llama-quantize`, against llama.cpp's own outputs on those files
//! (tests/fixtures/quant/make_quant_fixtures.py):
//!
//! - the F32 source is `cosmoe synth` of a fixture preset (deterministic: the file the script quantised;
//!   every row whole 256-value super-blocks but for fixture-mixtral-8x-160);
//! - `--pure` to every block type cosmoe quantises to (two MoE presets), and llama-quantize's file types
//!   ("mixes": Q4_K_M, Q5_K_M, Q3_K_M, Q2_K, Q4_K_S, Q6_K, Q4_0, Q8_0 on three MoE presets, one with 8
//!   experts and expert rows that are no whole 256-value super-block; Q4_K_M, Q5_K_M, Q3_K_M and Q2_K on
//!   one dense and one MoE model per architecture family: llama, qwen2, qwen3, qwen2moe with its shared
//!   expert, olmoe, granitemoe): cosmoe chooses the type llama-quantize chose for every tensor, and its
//!   quantisers turn each tensor into the bytes llama-quantize wrote (sha256, tensor by tensor; `cosmoe
//!   synth` of a mix writes those bytes);
//! - the model quantised on load (`--quantize`) gives llama.cpp's 24 greedy ids, and its logits at the
//!   first position to 1e-5 (the largest difference measured is 3.8e-7; the prompt is one on which no
//!   near-tie of the random weights tips: see the script; llama.cpp's batched logits at later prompt
//!   positions differ on a few types, as a tipped routing tie would make them, and are printed, not
//!   asserted);
//! - llama-quantize's IQ1/IQ2/IQ3 file types with an importance matrix (the files are committed: cosmoe
//!   has no quantiser for those block types): the same checks of the outputs;
//! - llama.cpp's own converter's F32 fixtures (dense and MoE, tied embeddings, 48-wide rows, 8 experts)
//!   in every file type cosmoe names: the same type for every tensor and the same bytes;
//! - the cosmoe-wearable preset in Q4_K_M (448-wide rows, which fall back): the same types.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cosmoe::forward::Logits;
use cosmoe::generate::GenerateConfig;
use cosmoe::quant::{Blocks, FileType, QuantScheme, TypePlan};
use cosmoe::synth::{planned_types, synth, Preset, SynthConfig};
use cosmoe::{LoadOptions, Model, Session};
use cosmoe_kernels::{quantize, DType};
use cosmoe_loader::{GgufFile, ModelConfig};
use serde_json::Value;
use sha2::{Digest, Sha256};

const MIXES: [&str; 8] = [
    "Q4_K_M", "Q5_K_M", "Q3_K_M", "Q2_K", "Q4_K_S", "Q6_K", "Q4_0", "Q8_0",
];
/// The mixes of the one-per-architecture presets.
const ARCH_MIXES: [&str; 4] = ["Q4_K_M", "Q5_K_M", "Q3_K_M", "Q2_K"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/quant")
        .join(name)
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}

/// A tensor of an F32 file in `dtype`: its bytes as they are for F32, else quantised row by row.
fn tensor_bytes(file: &GgufFile, bytes: &[u8], name: &str, dtype: DType) -> Vec<u8> {
    let t = file.info(name).unwrap();
    let at = file.data_offset() + t.offset();
    let raw = &bytes[at..at + t.n_bytes()];
    assert_eq!(t.ggml_type().name(), "F32", "{name}");
    match dtype {
        DType::F32 => raw.to_vec(),
        _ => quantize(dtype, &f32s(raw), t.ne()[0]).unwrap(),
    }
}

fn sha(b: &[u8]) -> String {
    format!("{:x}", Sha256::digest(b))
}

/// One preset's F32 file: written by `synth`, and read back.
struct Source {
    preset: Preset,
    path: PathBuf,
    bytes: Vec<u8>,
    file: GgufFile,
    /// How `synth` wrote it.
    cfg: SynthConfig,
}

/// Checks one case: the types, the bytes (quantised here tensor by tensor for a pure type; `synth`
/// of the mix for a file type), and the model quantised on load against llama.cpp's outputs.
fn check_case(src: &Source, prompt: &[u32], scheme: QuantScheme, what: &str, want: &Value) {
    let tensors = want["tensors"].as_object().unwrap();
    let planned = planned_types(&src.preset, scheme).unwrap();
    assert_eq!(tensors.len(), planned.len(), "{what}");
    assert_eq!(tensors.len(), src.file.tensors().len(), "{what}");
    for (name, dtype) in &planned {
        assert_eq!(
            dtype.name(),
            tensors[name]["type"].as_str().unwrap(),
            "{what}: {name}"
        );
    }
    let digest = |name: &str, got: String| {
        assert_eq!(
            got,
            tensors[name]["sha256"].as_str().unwrap(),
            "{what}: {name}"
        );
    };
    if scheme.pure {
        for (name, dtype) in &planned {
            digest(
                name,
                sha(&tensor_bytes(&src.file, &src.bytes, name, *dtype)),
            );
        }
    } else {
        // `synth` of the mix writes llama-quantize's bytes of the F32 file.
        let out = src
            .path
            .with_extension(format!("{}.gguf", scheme.ftype.name()));
        synth(&SynthConfig {
            quant: scheme,
            out: out.clone(),
            ..src.cfg.clone()
        })
        .unwrap();
        let (bytes, file) = (std::fs::read(&out).unwrap(), GgufFile::open(&out).unwrap());
        assert_eq!(file.tensors().len(), tensors.len(), "synth {what}");
        for t in file.tensors() {
            let at = file.data_offset() + t.offset();
            digest(t.name(), sha(&bytes[at..at + t.n_bytes()]));
        }
        std::fs::remove_file(&out).unwrap();
    }

    // Quantised on load, the model gives llama.cpp's greedy ids and close logits.
    let opts = LoadOptions {
        quantize: Some(scheme),
        ..Default::default()
    };
    let model = Arc::new(Model::load_with(&src.path, &opts).unwrap());
    check_outputs(model, prompt, what, want);
}

/// The model's prompt logits at the first position within 1e-5 of llama.cpp's (relative to the
/// largest), and its greedy continuation equal to llama.cpp's.
fn check_outputs(model: Arc<Model>, prompt: &[u32], what: &str, want: &Value) {
    let mut s = Session::new(model.clone());
    let got = s.eval(prompt, Logits::All).unwrap().to_vec();
    let lc = f32s(&std::fs::read(fixture(want["llama_cpp_logits"].as_str().unwrap())).unwrap());
    assert_eq!(got.len(), lc.len(), "{what}");
    let rel = |a: &[f32], b: &[f32]| {
        let max = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / max
    };
    let v = model.config.vocab_size;
    let (first, all) = (rel(&got[..v], &lc[..v]), rel(&got, &lc));
    eprintln!("{what}: max|diff|/max|logit| first position {first:.1e}, whole prompt {all:.1e}");
    assert!(
        first <= 1e-5,
        "{what}: first-position logits off by {first:e}"
    );
    let greedy = ids(&want["llama_cpp_greedy"]);
    let cfg = GenerateConfig {
        max_new_tokens: greedy.len(),
        stop_at_eos: false,
        context_shift: None,
        sampler: Default::default(),
    };
    let g = Session::new(model)
        .complete(prompt, &cfg, |_, _| true)
        .unwrap();
    assert_eq!(
        g.tokens, greedy,
        "{what}: greedy ids differ from llama.cpp's"
    );
}

/// One preset: its F32 file written by `synth`, then every pure type and file type the script
/// recorded (at least `n_pure` pure types; exactly `mixes`).
fn check_preset(name: &str, n_pure: usize, mixes: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let rec = json(&format!("{name}.json"));
    let preset = Preset::find(name).unwrap();
    let path = dir.path().join(format!("{name}.f32.gguf"));
    let cfg = SynthConfig {
        preset: preset.clone(),
        quant: QuantScheme::pure(DType::F32),
        out: path.clone(),
        seed: 0,
        progress: false,
        alignment: 32,
    };
    synth(&cfg).unwrap();
    let src = Source {
        preset,
        bytes: std::fs::read(&path).unwrap(),
        file: GgufFile::open(&path).unwrap(),
        path,
        cfg,
    };
    let prompt = ids(&rec["prompt_ids"]);

    let pure = rec["types"].as_object().unwrap();
    assert!(pure.len() >= n_pure, "{name}: {} types", pure.len());
    for (ty, want) in pure {
        let dtype = DType::parse(ty).unwrap_or_else(|| panic!("{ty}"));
        let what = format!("{name} {ty} (pure)");
        check_case(&src, &prompt, QuantScheme::pure(dtype), &what, want);
    }

    let recorded = rec["mixes"].as_object().unwrap();
    assert_eq!(recorded.len(), mixes.len(), "{name}");
    for ty in mixes {
        let scheme = QuantScheme::mix(FileType::parse(ty).unwrap());
        check_case(
            &src,
            &prompt,
            scheme,
            &format!("{name} {ty}"),
            &recorded[*ty],
        );
    }
}

// One test per preset, so that the harness runs them side by side.
#[test]
fn llama_moe_256_matches_llama_cpp() {
    check_preset("fixture-llama-moe-256", 12, &MIXES);
}

#[test]
fn qwen3moe_256_matches_llama_cpp() {
    check_preset("fixture-qwen3moe-256", 12, &MIXES);
}

#[test]
fn mixtral_8x_160_matches_llama_cpp() {
    check_preset("fixture-mixtral-8x-160", 0, &MIXES);
}

#[test]
fn dense_llama_256_matches_llama_cpp() {
    check_preset("fixture-llama-256", 0, &ARCH_MIXES);
}

#[test]
fn dense_qwen2_256_matches_llama_cpp() {
    check_preset("fixture-qwen2-256", 0, &ARCH_MIXES);
}

#[test]
fn dense_qwen3_256_matches_llama_cpp() {
    check_preset("fixture-qwen3-256", 0, &ARCH_MIXES);
}

#[test]
fn qwen2moe_256_matches_llama_cpp() {
    check_preset("fixture-qwen2moe-256", 0, &ARCH_MIXES);
}

#[test]
fn olmoe_256_matches_llama_cpp() {
    check_preset("fixture-olmoe-256", 0, &ARCH_MIXES);
}

#[test]
fn granitemoe_256_matches_llama_cpp() {
    check_preset("fixture-granitemoe-256", 0, &ARCH_MIXES);
}

/// llama-quantize's IQ1/IQ2/IQ3 file types (with an importance matrix; the files are committed, cosmoe
/// has no quantiser for these block types): the tensor types llama-quantize wrote are read as such,
/// and the model gives llama.cpp's greedy ids and first-position logits.
#[test]
fn iq_files_of_llama_quantize_match_llama_cpp() {
    let rec = json("iq/fixture-iq-moe-256.json");
    let prompt = ids(&rec["prompt_ids"]);
    let files = rec["files"].as_object().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for (ftype, want) in files {
        let path = fixture(want["file"].as_str().unwrap());
        let file = GgufFile::open(&path).unwrap();
        let types = want["types"].as_object().unwrap();
        assert_eq!(file.tensors().len(), types.len(), "{ftype}");
        for t in file.tensors() {
            let ty = t.ggml_type().name();
            assert_eq!(
                ty,
                types[t.name()].as_str().unwrap(),
                "{ftype}: {}",
                t.name()
            );
            seen.insert(ty.to_string());
        }
        let model = Arc::new(Model::load(&path).unwrap());
        check_outputs(model, &prompt, &format!("fixture-iq-moe-256 {ftype}"), want);
    }
    for ty in [
        "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S",
    ] {
        assert!(seen.contains(ty), "no file holds {ty}: {seen:?}");
    }
}

/// The converter's F32 fixtures in every file type: llama-quantize's type for every tensor, and its
/// bytes (one digest over all tensors in name order).
#[test]
fn every_file_type_of_the_gguf_fixtures_matches_llama_quantize() {
    let rec = json("gguf_fixture_mixes.json");
    let files = rec["files"].as_object().unwrap();
    assert!(files.len() >= 6, "{} files", files.len());
    let gguf_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf");
    for (name, ftypes) in files {
        let path = gguf_dir.join(format!("{name}.f32.gguf"));
        let (bytes, file) = (
            std::fs::read(&path).unwrap(),
            GgufFile::open(&path).unwrap(),
        );
        let config = ModelConfig::from_gguf(&file).unwrap();
        let list: Vec<(String, Vec<usize>)> = file
            .tensors()
            .iter()
            .map(|t| (t.name().to_owned(), t.ne().to_vec()))
            .collect();
        let ftypes = ftypes.as_object().unwrap();
        // Every file type cosmoe can write (the IQ1/IQ2/IQ3 ones, pure only and never quantised to,
        // are not among them).
        let writable: Vec<FileType> = FileType::ALL
            .into_iter()
            .filter(|f| f.default_type().has_quantizer())
            .collect();
        assert_eq!(ftypes.len(), writable.len(), "{name}");
        for f in writable {
            let want = &ftypes[f.name()];
            let plan =
                TypePlan::new(QuantScheme::mix(f), &config, &list, Blocks::Quantised).unwrap();
            let mut names: Vec<&str> = list.iter().map(|t| t.0.as_str()).collect();
            names.sort_unstable();
            let mut h = Sha256::new();
            let mut n_checked = 0;
            for t in names {
                let dtype = plan.get(t).map_or(DType::F32, |p| p.dtype);
                if let Some(w) = want["types"].get(t) {
                    assert_eq!(dtype.name(), w.as_str().unwrap(), "{name} {f}: {t}");
                    n_checked += 1;
                }
                h.update(tensor_bytes(&file, &bytes, t, dtype));
            }
            assert_eq!(
                n_checked,
                want["types"].as_object().unwrap().len(),
                "{name} {f}"
            );
            let got = format!("{:x}", h.finalize());
            assert_eq!(got, want["sha256"].as_str().unwrap(), "{name} {f}: bytes");
        }
    }
}

/// The wearable preset's 448-wide rows fall back as llama-quantize's do (the script checked that
/// `cosmoe synth --type q4_k_m` writes llama-quantize's bytes; here, the types without the file).
#[test]
fn wearable_q4_k_m_types_match_llama_quantize() {
    let rec = json("wearable.Q4_K_M.types.json");
    let want = rec["types"].as_object().unwrap();
    let planned = planned_types(
        &Preset::find("cosmoe-wearable").unwrap(),
        QuantScheme::mix(FileType::Q4_K_M),
    )
    .unwrap();
    assert_eq!(planned.len(), want.len());
    for (name, dtype) in planned {
        assert_eq!(dtype.name(), want[&name].as_str().unwrap(), "{name}");
    }
}
