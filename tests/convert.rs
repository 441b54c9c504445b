//! `cosmoe convert` against llama.cpp, without llama.cpp:
//!
//! - the tensors it writes are byte-identical to those of llama.cpp's own converter (the files in
//!   tests/fixtures/gguf/, made by tests/fixtures/make_gguf_fixtures.py), names, types and shapes too;
//! - on the checkpoints of tests/fixtures/convert/src/, it writes exactly the files
//!   tests/fixtures/convert/make_convert_fixtures.py gave to llama.cpp (same sha256), and cosmoe's greedy
//!   continuation on each equals llama.cpp's recorded one; so does cosmoe's on the files llama.cpp's
//!   `llama-quantize` made from them; and the vocabulary it writes tokenises as llama.cpp tokenised it;
//! - what cannot be converted is refused with a message that says why.

mod common;

use cosmoe::Session;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cosmoe::convert::{convert, ConvertConfig, ALIGNMENT};
use cosmoe::generate::GenerateConfig;
use cosmoe::sampler::SamplerConfig;
use cosmoe::{LoadOptions, Model};
use cosmoe_kernels::DType;
use cosmoe_loader::gguf::Value;
use cosmoe_loader::GgufFile;
use serde_json::Value as J;
use sha2::{Digest, Sha256};

use common::{golden_dir, ids};

fn convert_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/convert")
}

fn config(src: &Path, out: &Path, dtype: DType) -> ConvertConfig {
    ConvertConfig {
        src: src.to_owned(),
        out: out.to_owned(),
        quant: dtype.into(),
        tokenizer: None,
        alignment: ALIGNMENT,
        progress: false,
    }
}

fn greedy(model: &Arc<Model>, prompt: &[u32], n: usize) -> Vec<u32> {
    let cfg = GenerateConfig {
        max_new_tokens: n,
        stop_at_eos: false,
        context_shift: None,
        sampler: SamplerConfig {
            temperature: 0.0,
            ..Default::default()
        },
    };
    Session::new(model.clone())
        .complete(prompt, &cfg, |_, _| true)
        .unwrap()
        .tokens
}

/// Keys whose values legitimately differ from llama.cpp's converter's files: names, the vocabulary
/// (those fixtures carry a synthetic one) and the alignment.
fn comparable_key(k: &str) -> bool {
    !(k.starts_with("tokenizer.")
        || k.starts_with("general.") && k != "general.architecture" && k != "general.file_type"
        || k.ends_with(".attention.key_length")
        || k.ends_with(".attention.value_length"))
}

#[test]
fn tensors_are_byte_identical_to_llama_cpp_converter() {
    let pairs = [
        ("mixtral", "f32"),
        ("mixtral", "f16"),
        ("mixtral", "q8_0"),
        ("llama", "f32"),
        ("llama", "q8_0"),
        ("qwen2", "f16"),
        ("qwen2", "q8_0"),
        ("qwen3", "q8_0"),
        ("qwen3_moe", "f32"),
        ("qwen3_moe", "f16"),
        ("granitemoe", "f32"),
        ("granitemoe", "f16"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (name, ty) in pairs {
        let theirs_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/gguf/{name}.{ty}.gguf"));
        let out = tmp.path().join(format!("{name}.{ty}.gguf"));
        let r = convert(&config(
            &golden_dir().join(name),
            &out,
            DType::parse(ty).unwrap(),
        ))
        .unwrap();
        let ours = GgufFile::open(&out).unwrap();
        let theirs = GgufFile::open(&theirs_path).unwrap();
        assert_eq!(ours.alignment(), 4096);
        assert_eq!(r.tensors, theirs.tensors().len(), "{name}.{ty}");
        let mut names: Vec<&str> = ours.tensors().iter().map(|t| t.name()).collect();
        let mut want: Vec<&str> = theirs.tensors().iter().map(|t| t.name()).collect();
        names.sort();
        want.sort();
        assert_eq!(names, want, "{name}.{ty}: tensor names");
        for t in theirs.tensors() {
            let o = ours.info(t.name()).unwrap();
            let what = format!("{name}.{ty}: {}", t.name());
            assert_eq!(o.ne(), t.ne(), "{what}: shape");
            assert_eq!(o.ggml_type(), t.ggml_type(), "{what}: type");
            assert!(
                *ours.tensor_bytes(o).unwrap() == *theirs.tensor_bytes(t).unwrap(),
                "{what}: bytes differ"
            );
            assert_eq!(o.offset() % 4096, 0, "{what}: not page-aligned");
        }
        for (k, v) in theirs.metadata().iter().filter(|(k, _)| comparable_key(k)) {
            assert_eq!(ours.get(k), Some(v), "{name}.{ty}: key {k}");
        }
        for (k, _) in ours.metadata().iter().filter(|(k, _)| comparable_key(k)) {
            assert!(theirs.get(k).is_some(), "{name}.{ty}: extra key {k}");
        }
    }
}

#[test]
fn converted_files_run_like_the_checkpoint() {
    // Fixtures without a llama.cpp-converted twin must still compute what transformers computed,
    // through the GGUF naming, permutation and layout: a sharded checkpoint with a 4.x config...
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sharded.gguf");
    convert(&config(
        &golden_dir().join("qwen3_moe_sharded"),
        &out,
        DType::F32,
    ))
    .unwrap();
    let exp = common::expected(&golden_dir().join("qwen3_moe_sharded"));
    let model = Arc::new(Model::load_with(&out, &LoadOptions::default()).unwrap());
    let mut kv = Session::new(model.clone());
    let got = kv
        .eval(&exp.prompt_ids, cosmoe::forward::Logits::All)
        .map(<[f32]>::to_vec)
        .unwrap();
    let err = common::rel_err(&got, &exp.logits);
    assert!(err < 1e-5, "qwen3_moe_sharded: max rel err {err}");
    assert_eq!(
        greedy(&model, &exp.prompt_ids, exp.greedy_ids.len()),
        exp.greedy_ids
    );

    // ...and Mistral, whose sliding window GGUF cannot hold (the conversion says so): the file runs
    // as transformers does without the window.
    let out = tmp.path().join("mistral.gguf");
    let r = convert(&config(&golden_dir().join("mistral"), &out, DType::F32)).unwrap();
    assert!(
        r.notices
            .iter()
            .any(|n| n.contains("sliding attention window")),
        "{:?}",
        r.notices
    );
    let exp = common::expected(&golden_dir().join("mistral"));
    let want = ids(&exp.json["greedy_ids_without_window"]);
    let model = Arc::new(Model::load_with(&out, &LoadOptions::default()).unwrap());
    assert_eq!(greedy(&model, &exp.prompt_ids, want.len()), want);
}

struct Case {
    model: String,
    text: String,
    kind: String,
    exp: J,
    prompt: Vec<u32>,
}

fn cases() -> Vec<Case> {
    let exp: J = serde_json::from_str(
        &std::fs::read_to_string(convert_dir().join("expected.json")).unwrap(),
    )
    .unwrap();
    let mut v = Vec::new();
    for (model, m) in exp.as_object().unwrap() {
        for (kind, f) in m["files"].as_object().unwrap() {
            v.push(Case {
                model: model.clone(),
                text: m["prompt_text"].as_str().unwrap().to_owned(),
                kind: kind.clone(),
                exp: f.clone(),
                prompt: ids(&m["hf_prompt_ids"]),
            });
        }
    }
    assert!(v.len() >= 30, "expected 30 cases, found {}", v.len());
    v
}

#[test]
fn cosmoe_written_files_are_those_llama_cpp_ran_and_greedy_matches() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for c in cases().iter().filter(|c| !c.kind.starts_with("requant")) {
        let src = convert_dir().join("src").join(&c.model);
        let out = tmp.path().join(format!("{}.{}.gguf", c.model, c.kind));
        convert(&config(&src, &out, DType::parse(&c.kind).unwrap())).unwrap();
        let what = format!("{} {}", c.model, c.kind);
        let sha = format!("{:x}", Sha256::digest(std::fs::read(&out).unwrap()));
        assert_eq!(
            sha,
            c.exp["sha256"].as_str().unwrap(),
            "{what}: not the file llama.cpp was given"
        );
        let want = ids(&c.exp["llama_cpp_greedy"]);
        assert!(want.len() >= 16);
        let model = Arc::new(Model::load_with(&out, &LoadOptions::default()).unwrap());
        assert_eq!(greedy(&model, &c.prompt, want.len()), want, "{what}");

        // The vocabulary written from tokenizer.json, read back from the file, tokenises the prompt
        // as llama.cpp did.
        let tok = cosmoe_loader::tokenizer::from_gguf(&GgufFile::open(&out).unwrap())
            .unwrap()
            .unwrap();
        let enc = tok.encode(c.text.as_str(), true).unwrap();
        assert_eq!(
            enc.get_ids(),
            ids(&c.exp["llama_cpp_prompt_ids"]).as_slice(),
            "{what}: tokens"
        );
        checked += 1;
    }
    assert_eq!(checked, 18);
}

#[test]
fn llama_quantize_files_run_with_llama_cpp_greedy() {
    let mut checked = 0;
    for c in cases().iter().filter(|c| c.kind.starts_with("requant")) {
        let q = c.kind.trim_start_matches("requant_");
        let path = convert_dir().join(format!("{}.requant.{q}.gguf", c.model));
        let what = format!("{} llama-quantize {q}", c.model);
        let f = GgufFile::open(&path).unwrap();
        let quantised = f
            .tensors()
            .iter()
            .filter(|t| t.ggml_type().name().eq_ignore_ascii_case(q))
            .count();
        assert!(quantised > 0, "{what}: no {q} tensors");
        let model = Arc::new(Model::load_with(&path, &LoadOptions::default()).unwrap());
        let want = ids(&c.exp["llama_cpp_greedy"]);
        assert_eq!(greedy(&model, &c.prompt, want.len()), want, "{what}");
        checked += 1;
    }
    assert_eq!(checked, 12);
}

#[test]
fn q4_0_experts_are_page_aligned_and_contiguous() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.gguf");
    let src = convert_dir().join("src/qwen3_moe");
    convert(&config(&src, &out, DType::Q4_0)).unwrap();
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.get("general.alignment"), Some(&Value::U32(4096)));
    assert_eq!(f.get("general.file_type"), Some(&Value::U32(2)));
    let t = f.info("blk.0.ffn_gate_exps.weight").unwrap();
    assert_eq!(t.ne(), &[64, 64, 8]);
    assert_eq!(t.ggml_type().name(), "Q4_0");
    assert_eq!((f.data_offset() + t.offset()) % 4096, 0);
    // Expert e's slice starts e * (rows * row bytes) into the tensor.
    let r1 = f
        .expert_file_range("blk.0.ffn_gate_exps.weight", 1)
        .unwrap();
    let r0 = f
        .expert_file_range("blk.0.ffn_gate_exps.weight", 0)
        .unwrap();
    assert_eq!(r0.end, r1.start);
    assert_eq!(r1.len(), 64 * (64 / 32) * 18);
    // Norms and routers stay F32.
    assert_eq!(
        f.info("blk.0.ffn_gate_inp.weight")
            .unwrap()
            .ggml_type()
            .name(),
        "F32"
    );
    assert_eq!(
        f.info("blk.0.attn_norm.weight").unwrap().ggml_type().name(),
        "F32"
    );
}

fn convert_err(src: &Path, f: impl FnOnce(&mut ConvertConfig)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(src, &tmp.path().join("x.gguf"), DType::F16);
    f(&mut cfg);
    let e = convert(&cfg).unwrap_err().to_string();
    assert!(
        !tmp.path().join("x.gguf").exists() && !tmp.path().join("x.gguf.part").exists(),
        "a failed conversion left a file"
    );
    e
}

#[test]
fn what_cannot_be_converted_is_refused_clearly() {
    // Qwen2-MoE with a dense layer: llama.cpp's qwen2moe has experts in every layer.
    let e = convert_err(&golden_dir().join("qwen2_moe"), |_| {});
    assert!(e.contains("dense layers"), "{e}");
    // A GGUF file is not a checkpoint folder.
    let gguf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/llama.f32.gguf");
    let e = convert_err(&gguf, |_| {});
    assert!(e.contains("Hugging Face checkpoint folder"), "{e}");
    // A bad alignment.
    let e = convert_err(&golden_dir().join("llama"), |c| c.alignment = 48);
    assert!(e.contains("alignment 48"), "{e}");
    // A tokenizer whose pre-tokenizer llama.cpp does not know by name.
    let tmp = tempfile::tempdir().unwrap();
    let tok_path = tmp.path().join("tokenizer.json");
    let mut tok: J = serde_json::from_str(
        &std::fs::read_to_string(golden_dir().join("llama/tokenizer.json")).unwrap(),
    )
    .unwrap();
    tok["pre_tokenizer"] = serde_json::json!({
        "type": "Split", "pattern": {"Regex": "[a-z]+"}, "behavior": "Isolated", "invert": false
    });
    std::fs::write(&tok_path, tok.to_string()).unwrap();
    let e = convert_err(&golden_dir().join("llama"), |c| {
        c.tokenizer = Some(tok_path.clone())
    });
    assert!(e.contains("[a-z]+") && e.contains("llama.cpp"), "{e}");
    // A vocabulary larger than the model's.
    let e = convert_err(&golden_dir().join("mixtral"), |c| {
        c.tokenizer = Some(golden_dir().join("llama/tokenizer.json"))
    });
    assert!(e.contains("outside the model's vocabulary"), "{e}");
}

/// Weight-decomposed experts (docs/wd-experts.md) have no llama.cpp architecture: they are written as
/// cosmoe's own `cosmoe` GGUF architecture, each factor of every expert stacked
/// (`ffn_gate_l_exps`, `ffn_gate_r_exps`, ...), and the F32 file gives the checkpoint's logits bit for
/// bit; a quantised one runs too, its factors typed by the rules (rows of 24 values fall back to F16).
#[test]
fn weight_decomposed_experts_convert_to_cosmoe_gguf() {
    let src = golden_dir().join("cosmoe_wd");
    let prompt = ids(&common::expected(&src).json["prompt_ids"]);
    let tmp = tempfile::tempdir().unwrap();
    let logits = |m: &Arc<Model>| {
        let mut s = Session::new(m.clone());
        s.eval(&prompt, cosmoe::forward::Logits::All)
            .unwrap()
            .to_vec()
    };
    let want = logits(&Arc::new(Model::load(&src).unwrap()));
    for dtype in [DType::F32, DType::Q8_0] {
        let out = tmp.path().join(format!("wd.{}.gguf", dtype.name()));
        let r = convert(&config(&src, &out, dtype)).unwrap();
        assert_eq!(r.architecture, "cosmoe");
        let f = GgufFile::open(&out).unwrap();
        assert_eq!(f.get("cosmoe.expert_rank"), Some(&Value::U32(24)));
        for name in ["ffn_gate_l_exps", "ffn_up_r_exps", "ffn_down_r_exps"] {
            assert!(
                f.tensor(&format!("blk.1.{name}.weight")).is_some(),
                "{name}"
            );
        }
        let model = Arc::new(Model::load(&out).unwrap());
        assert_eq!(model.config.moe.as_ref().unwrap().expert_rank, Some(24));
        let got = logits(&model);
        if dtype == DType::F32 {
            assert!(got == want, "F32 GGUF logits differ from the checkpoint's");
        } else {
            assert!(
                common::rel_err(&got, &want) < 0.05,
                "{}",
                common::rel_err(&got, &want)
            );
        }
    }
}
