//! `cosmoe perplexity` against llama.cpp's `llama-perplexity` on the same GGUF files and text
//! (tests/fixtures/perplexity/make_perplexity_fixtures.py), and the routing it reports and records.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/perplexity").join(name)
}

fn gguf(name: &str) -> String {
    root()
        .join("tests/fixtures/gguf")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn cosmoe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .args(args)
        .output()
        .expect("run cosmoe")
}

fn json_of(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Relative difference.
fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn perplexity_agrees_with_llama_cpp() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let text = fixture("text.txt");
    for case in expected["cases"].as_array().unwrap() {
        let model = gguf(case["model"].as_str().unwrap());
        let ctx = case["ctx"].as_u64().unwrap().to_string();
        let v = json_of(&cosmoe(&[
            "perplexity",
            "-m",
            &model,
            "-f",
            text.to_str().unwrap(),
            "-c",
            &ctx,
            "--json",
            "-t",
            "2",
        ]));
        let what = format!("{} -c {ctx}", case["model"]);
        let want: Vec<f64> = case["running_ppl"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let got: Vec<f64> = v["running_ppl"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(got.len(), want.len(), "{what}: windows");
        // llama.cpp prints 4 decimals; the issue asks for 1 %, the two agree far closer.
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(rel(*g, *w) < 1e-3, "{what}: window {}: {g} vs {w}", i + 1);
        }
        let (ppl, err) = (v["ppl"].as_f64().unwrap(), v["ppl_error"].as_f64().unwrap());
        assert!(
            rel(ppl, case["ppl"].as_f64().unwrap()) < 1e-3,
            "{what}: PPL {ppl} vs {}",
            case["ppl"]
        );
        assert!(
            rel(err, case["ppl_error"].as_f64().unwrap()) < 1e-2,
            "{what}: error {err}"
        );
        let n = ctx.parse::<u64>().unwrap();
        assert_eq!(
            v["scored_tokens"].as_u64().unwrap(),
            got.len() as u64 * (n - 1 - n / 2)
        );
    }
}

#[test]
fn perplexity_reports_and_records_the_routing() {
    let model = gguf("qwen3_moe.f32.gguf");
    let text = fixture("text.txt");
    let tmp = tempfile::tempdir().unwrap();
    let trace_path = tmp.path().join("routing.json");
    let v = json_of(&cosmoe(&[
        "perplexity",
        "-m",
        &model,
        "-f",
        text.to_str().unwrap(),
        "-c",
        "64",
        "--chunks",
        "3",
        "--json",
        "--record-routing",
        trace_path.to_str().unwrap(),
    ]));
    assert_eq!(v["chunks"], 3);
    let exrep = v["exrep"]["overall"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&exrep), "{v}");
    let trace: Value =
        serde_json::from_str(&std::fs::read_to_string(&trace_path).unwrap()).unwrap();
    let (n_layers, n_experts, k) = (
        trace["n_layers"].as_u64().unwrap() as usize,
        trace["n_experts"].as_u64().unwrap() as usize,
        trace["top_k"].as_u64().unwrap() as usize,
    );
    let tokens = trace["tokens"].as_array().unwrap();
    let scores = trace["scores"].as_array().unwrap();
    assert_eq!((tokens.len(), scores.len()), (3 * 64, 3 * 64));
    // Usage counts every token's k experts in every layer.
    let usage = v["expert_usage"].as_array().unwrap();
    assert_eq!(usage.len(), n_layers);
    for layer in usage {
        let total: u64 = layer
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .sum();
        assert_eq!(total, (3 * 64 * k) as u64);
    }
    // The recorded scores are the router's: its top-k are the chosen experts.
    for (t, (chosen, s)) in tokens.iter().zip(scores).enumerate() {
        for l in 0..n_layers {
            let row: Vec<f64> = s[l]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(row.len(), n_experts);
            let mut order: Vec<usize> = (0..n_experts).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let mut top: Vec<u64> = order[..k].iter().map(|&e| e as u64).collect();
            let mut got: Vec<u64> = chosen[l]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            top.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, top, "token {t} layer {l}");
        }
    }
    // The same trace replays: bench --routing-trace accepts it.
    let o = cosmoe(&[
        "bench",
        "--model",
        &model,
        "--routing-trace",
        trace_path.to_str().unwrap(),
        "--prompt-tokens",
        "8",
        "--gen-tokens",
        "4",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn perplexity_refuses_what_it_cannot_measure() {
    let text = fixture("text.txt");
    let text = text.to_str().unwrap();
    let fails = |args: &[&str], what: &str| {
        let o = cosmoe(args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(what), "{args:?}: {e}");
    };
    // A window larger than the context, and a text shorter than two windows.
    fails(
        &[
            "perplexity",
            "-m",
            &gguf("llama.q8_0.gguf"),
            "-f",
            text,
            "-c",
            "100000",
        ],
        "context holds",
    );
    let tmp = tempfile::tempdir().unwrap();
    let short = tmp.path().join("short.txt");
    std::fs::write(&short, "Licensed under the Apache License").unwrap();
    fails(
        &[
            "perplexity",
            "-m",
            &gguf("llama.q8_0.gguf"),
            "-f",
            short.to_str().unwrap(),
            "-c",
            "64",
        ],
        "needs at least 128",
    );
    // A model without a vocabulary.
    let no_vocab = root().join("tests/fixtures/golden/mixtral");
    let no_vocab = no_vocab.to_str().unwrap();
    fails(
        &["perplexity", "-m", no_vocab, "-f", text, "-c", "64"],
        "needs a tokenizer",
    );
    // A dense model records no routing.
    let out = tmp.path().join("r.json");
    fails(
        &[
            "perplexity",
            "-m",
            &gguf("llama.q8_0.gguf"),
            "-f",
            text,
            "--record-routing",
            out.to_str().unwrap(),
        ],
        "dense",
    );
    assert!(!out.exists());
}
