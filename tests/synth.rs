//! `cosmoe synth`: presets at their published sizes, files that load and run, and clear errors.

use cosmoe::forward::Logits;
use cosmoe::synth::{n_params, presets, synth, Preset, SynthConfig};
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
        ("olmoe-1b-7b", 6919.0),
        ("granite-1b-a400m", 1335.0),
        ("qwen3-30b-a3b", 30532.0),
    ];
    // The real shapes, and the two small test-fixture presets (tests/quant_golden.rs).
    assert_eq!(presets().len(), want.len() + 2);
    let fixtures = presets()
        .into_iter()
        .filter(|p| p.name.starts_with("fixture-"));
    for p in fixtures {
        let m = n_params(&p) as f64 / 1e6;
        assert!((3.0..5.0).contains(&m), "{}: {m}M parameters", p.name);
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
        dtype: DType::Q4_0,
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
fn synth_refuses_formats_it_cannot_write() {
    let tmp = tempfile::tempdir().unwrap();
    let e = synth(&SynthConfig {
        preset: Preset::find("cosmoe-wearable").unwrap(),
        dtype: DType::F16,
        out: tmp.path().join("x.gguf"),
        seed: 0,
        progress: false,
        alignment: cosmoe::convert::ALIGNMENT,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("q4_0, q8_0") && e.contains("F16"), "{e}");
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
            dtype,
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
        let (iq, f32s) = (logits(None), logits(Some(DType::F32)));
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
