//! `cosmoe synth`: presets at their published sizes, files that load and run, and clear errors.

use cosmoe::forward::Logits;
use cosmoe::quant::{FileType, QuantScheme};
use cosmoe::synth::{n_params, planned_types, presets, synth, Preset, SynthConfig};
use cosmoe::Session;
use cosmoe::{LoadOptions, Model};
use cosmoe_kernels::DType;
use cosmoe_loader::GgufFile;
use std::sync::Arc;

#[test]
fn presets_have_their_published_sizes() {
    // (preset, parameters in millions as published or as ../shared/PAPER.md derives them)
    let want = [
        ("cosmoe-wearable", 392.0),
        ("cosmoe-phone", 3690.0),
        // The paper's WD models: its 377M / 3.65B total, with cosmoe's rounded hidden sizes and the
        // derived expert width (../shared/PAPER.md); the factors counted as stored.
        ("cosmoe-wearable-wd", 399.9),
        ("cosmoe-phone-wd", 3547.0),
        ("olmoe-1b-7b", 6919.0),
        ("granite-1b-a400m", 1335.0),
        ("qwen3-30b-a3b", 30532.0),
    ];
    // The real shapes, and the small test-fixture presets of tests/quant_golden.rs (the IQ one,
    // whose quantised files are committed, the smallest).
    let fixtures: Vec<Preset> = presets()
        .into_iter()
        .filter(|p| p.name.starts_with("fixture-"))
        .collect();
    assert_eq!(presets().len(), want.len() + fixtures.len());
    assert_eq!(fixtures.len(), 10);
    for p in &fixtures {
        let m = n_params(p) as f64 / 1e6;
        let range = if p.name == "fixture-iq-moe-256" {
            1.0..1.5
        } else {
            1.0..5.0
        };
        assert!(range.contains(&m), "{}: {m}M parameters", p.name);
    }
    // Dense where the preset has no experts; Qwen2-MoE's shared expert with its gate.
    let names = |p: &str| -> Vec<String> {
        planned_types(&Preset::find(p).unwrap(), QuantScheme::pure(DType::F32))
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    };
    let dense = names("fixture-qwen2-256");
    assert!(dense.iter().any(|n| n == "blk.1.ffn_down.weight"));
    assert!(dense.iter().any(|n| n == "blk.1.attn_k.bias"));
    assert!(!dense.iter().any(|n| n.contains("exps")));
    // Weight-decomposed experts: each factor of every expert stacked, no full expert matrices.
    let wd = names("cosmoe-wearable-wd");
    for n in [
        "ffn_gate_l_exps",
        "ffn_gate_r_exps",
        "ffn_down_l_exps",
        "ffn_down_r_exps",
    ] {
        assert!(wd.iter().any(|t| t == &format!("blk.31.{n}.weight")), "{n}");
    }
    assert!(!wd.iter().any(|t| t.contains("ffn_up_exps")));
    let shared = names("fixture-qwen2moe-256");
    for n in ["ffn_gate_inp_shexp", "ffn_up_shexp", "ffn_down_exps"] {
        assert!(
            shared.iter().any(|t| t == &format!("blk.0.{n}.weight")),
            "{n}"
        );
    }
    for (name, m) in want {
        let got = n_params(&Preset::find(name).unwrap()) as f64 / 1e6;
        assert!(
            (got - m).abs() / m < 0.01,
            "{name}: {got:.0}M parameters, published {m}M"
        );
    }
    let e = Preset::find("gpt-5").unwrap_err().to_string();
    assert!(e.contains("cosmoe-wearable"), "{e}");
}

#[test]
fn wearable_synthesises_loads_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("w.gguf");
    let cfg = SynthConfig {
        preset: Preset::find("cosmoe-wearable").unwrap(),
        quant: QuantScheme::pure(DType::Q4_0),
        out: out.clone(),
        seed: 7,
        progress: false,
        alignment: cosmoe::convert::ALIGNMENT,
    };
    let n = synth(&cfg).unwrap();
    assert_eq!(n, std::fs::metadata(&out).unwrap().len());
    let f = GgufFile::open(&out).unwrap();
    assert_eq!(f.alignment(), 4096);
    let t = f.info("blk.3.ffn_down_exps.weight").unwrap();
    assert_eq!(t.ne(), &[1280, 448, 8]);
    assert_eq!(t.ggml_type().name(), "Q4_0");
    // Deterministic: the same seed writes the same bytes.
    let again = tmp.path().join("w2.gguf");
    synth(&SynthConfig {
        out: again.clone(),
        ..cfg.clone()
    })
    .unwrap();
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&again).unwrap());

    let model = Arc::new(Model::load_with(&out, &LoadOptions::default()).unwrap());
    assert_eq!(model.config.n_layers, 19);
    let mut kv = Session::new(model.clone());
    let logits = kv
        .eval(&[1, 2, 3], Logits::Last)
        .map(<[f32]>::to_vec)
        .unwrap();
    assert_eq!(logits.len(), 128_256);
    assert!(logits.iter().all(|x| x.is_finite()));
    // Its vocabulary tokenises text (bytes), so text prompts work.
    let tok = cosmoe_loader::tokenizer::from_gguf(&f).unwrap().unwrap();
    assert_eq!(tok.encode("hi", false).unwrap().get_ids().len(), 2);
}

#[test]
fn mixes_write_llama_quantize_types_and_load() {
    // The wearable's 448-wide rows are no whole Q4_K super-block: llama-quantize's fallback (Q5_0);
    // its 1280-wide expert down rows are, and take the mix's own types.
    let types = planned_types(
        &Preset::find("cosmoe-wearable").unwrap(),
        QuantScheme::mix(FileType::Q4_K_M),
    )
    .unwrap();
    let ty = |n: &str| types.iter().find(|t| t.0 == n).unwrap().1;
    assert_eq!(ty("blk.0.attn_q.weight"), DType::Q5_0);
    assert_eq!(ty("blk.0.attn_v.weight"), DType::Q8_0); // 8 experts
    assert_eq!(ty("blk.0.ffn_down_exps.weight"), DType::Q6_K); // use_more_bits
    assert_eq!(ty("blk.2.ffn_down_exps.weight"), DType::Q4_K);
    assert_eq!(ty("output.weight"), DType::Q8_0);
    assert_eq!(ty("blk.0.ffn_gate_inp.weight"), DType::F32);

    // A small preset in a mix: every tensor in its planned type, and the file runs.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m.gguf");
    let preset = Preset::find("fixture-mixtral-8x-160").unwrap();
    let quant = QuantScheme::mix(FileType::Q3_K_M);
    synth(&SynthConfig {
        preset: preset.clone(),
        quant,
        out: out.clone(),
        seed: 0,
        progress: false,
        alignment: 32,
    })
    .unwrap();
    let f = GgufFile::open(&out).unwrap();
    for (name, dtype) in planned_types(&preset, quant).unwrap() {
        assert_eq!(
            f.info(&name).unwrap().ggml_type().name(),
            dtype.name(),
            "{name}"
        );
    }
    let model = Arc::new(Model::load(&out).unwrap());
    let logits = Session::new(model)
        .eval(&[1, 2, 3], Logits::Last)
        .unwrap()
        .to_vec();
    assert!(logits.iter().all(|x| x.is_finite()));
}

#[test]
fn unknown_types_are_refused_with_the_accepted_names() {
    let e = QuantScheme::parse("q4_k_x", false).unwrap_err().to_string();
    assert!(
        e.contains("q4_k_x") && e.contains("q4_k_m") && e.contains("iq4_xs"),
        "{e}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .args([
            "synth",
            "--preset",
            "cosmoe-wearable",
            "--type",
            "q9_k",
            "-o",
        ])
        .arg(std::env::temp_dir().join("never.gguf"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("q9_k") && err.contains("q5_k_s"),
        "{err}"
    );
}

/// GGUF files of the IQ1/IQ2/IQ3 formats (random blocks) load and run, and give the logits of the
/// same weights dequantised to F32 on load, within what quantising the activations to Q8_K costs.
#[test]
fn iq_files_load_and_run_as_their_dequantised_weights() {
    let tmp = tempfile::tempdir().unwrap();
    for dtype in [DType::IQ3_XXS, DType::IQ2_XXS, DType::IQ1_M] {
        let out = tmp.path().join(format!("{dtype}.gguf"));
        synth(&SynthConfig {
            preset: Preset::find("fixture-qwen3moe-256").unwrap(),
            quant: QuantScheme::pure(dtype),
            out: out.clone(),
            seed: 3,
            progress: false,
            alignment: 32,
        })
        .unwrap();
        let f = GgufFile::open(&out).unwrap();
        let t = f.info("blk.1.ffn_down_exps.weight").unwrap();
        assert_eq!(t.ggml_type().name(), dtype.name());
        let logits = |quantize| {
            let opts = LoadOptions {
                quantize,
                ..Default::default()
            };
            let model = Arc::new(Model::load_with(&out, &opts).unwrap());
            Session::new(model)
                .eval(&[1, 2, 3, 4], Logits::All)
                .map(<[f32]>::to_vec)
                .unwrap()
        };
        let (iq, f32s) = (logits(None), logits(Some(DType::F32.into())));
        assert!(iq.iter().all(|x| x.is_finite()), "{dtype}");
        let max = f32s.iter().fold(0f32, |m, x| m.max(x.abs()));
        let diff = iq
            .iter()
            .zip(&f32s)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        eprintln!("{dtype}: max|diff| / max|logit| = {}", diff / max);
        assert!(max > 0.0 && diff <= 0.05 * max, "{dtype}: {diff} vs {max}");
    }
}

/// The IQ1/IQ2/IQ3 types, which cosmoe cannot quantise to, are refused with a reason as mixes (in
/// `synth`) and on load.
#[test]
fn iq_types_are_pure_only_and_never_quantised_to() {
    let tmp = tempfile::tempdir().unwrap();
    let e = synth(&SynthConfig {
        preset: Preset::find("fixture-qwen3moe-256").unwrap(),
        quant: QuantScheme::mix(FileType::IQ2_XXS),
        out: tmp.path().join("mix.gguf"),
        seed: 0,
        progress: false,
        alignment: 32,
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("importance matrix") && e.contains("--pure"),
        "{e}"
    );
    let src = tmp.path().join("f32.gguf");
    synth(&SynthConfig {
        preset: Preset::find("fixture-qwen3moe-256").unwrap(),
        quant: DType::F32.into(),
        out: src.clone(),
        seed: 0,
        progress: false,
        alignment: 32,
    })
    .unwrap();
    let opts = LoadOptions {
        quantize: Some(QuantScheme::pure(DType::IQ3_S)),
        ..Default::default()
    };
    let Err(e) = Model::load_with(&src, &opts) else {
        panic!("quantised to IQ3_S on load");
    };
    let e = e.to_string();
    assert!(e.contains("iq3_s") && e.contains("quantiser"), "{e}");
}
