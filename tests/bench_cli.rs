//! `cosmoe demo`, `cosmoe bench` and routing traces through the command line: the report's fields are
//! consistent, the peak RSS stays within budget + resident weights + KV + 64 MiB, and a recorded trace
//! replays.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn cosmoe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .args(args)
        .output()
        .expect("run cosmoe")
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// The invariants of every report.
fn check(r: &Value) {
    let c = &r["cache"];
    assert_eq!(u(&c["hits"]) + u(&c["misses"]), u(&c["requests"]), "{c}");
    if let Some(b) = c["budget_bytes"].as_u64() {
        assert!(u(&c["peak_cached_bytes"]) <= b, "{c}");
    }
    let m = &r["memory"];
    if m["within_bound"].is_boolean() {
        assert_eq!(m["within_bound"], true, "peak RSS over the bound: {m}");
    }
    let l = &r["latency"];
    assert!(l["p50_ms"].as_f64() <= l["p90_ms"].as_f64());
    assert!(l["p99_ms"].as_f64() <= l["max_ms"].as_f64());
}

#[test]
fn demo_runs_within_its_memory_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let args = [
        "demo",
        "--dir",
        dir,
        "--prompt-tokens",
        "16",
        "--gen-tokens",
        "24",
        "--json",
    ];
    let r = json(&cosmoe(&args));
    check(&r);
    assert!(Path::new(dir).join("cosmoe-wearable.q4_0.gguf").is_file());
    let c = &r["cache"];
    let (budget, total) = (u(&c["budget_bytes"]), u(&c["total_expert_bytes"]));
    assert_eq!(budget, total / 2);
    assert!(u(&c["misses"]) > 0 && u(&c["bytes_read"]) > 0 && u(&c["evictions"]) > 0);
    let exrep = r["routing"]["exrep"].as_f64().unwrap();
    assert!((exrep - 0.44).abs() < 0.1, "ExRep {exrep}");
    assert_eq!(r["memory"]["within_bound"], true);
    // A second run reuses the synthesised file.
    let r2 = json(&cosmoe(&args));
    assert_eq!(r2["cache"]["total_expert_bytes"], c["total_expert_bytes"]);
}

#[test]
fn bench_replays_a_recorded_trace() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("tests/fixtures/gguf/qwen3_moe.f32.gguf");
    let model = model.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("trace.json");
    let out = cosmoe(&[
        "run",
        "--model",
        model,
        "--ids",
        "1,2,3,4,5",
        "-n",
        "12",
        "--print-ids",
        "--ignore-eos",
        "--record-routing",
        trace.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t: Value = serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    assert_eq!(t["tokens"].as_array().unwrap().len(), 5 + 11);

    for io in ["direct", "buffered", "mmap"] {
        let r = json(&cosmoe(&[
            "bench",
            "--model",
            model,
            "--prompt-tokens",
            "5",
            "--gen-tokens",
            "12",
            "--routing-trace",
            trace.to_str().unwrap(),
            "--expert-cache-pct",
            "60",
            "--io",
            io,
            "--prefetch",
            "history",
            "--json",
        ]));
        check(&r);
        assert_eq!(r["cache"]["io"], io);
        assert!(r["routing"]["source"]
            .as_str()
            .unwrap()
            .starts_with("trace"));
        // The replayed routing has the recorded routing's ExRep.
        let layers = t["tokens"].as_array().unwrap();
        let k = u(&t["top_k"]) as usize;
        let (mut new, mut pairs) = (0, 0);
        for l in 0..u(&t["n_layers"]) as usize {
            for w in layers.windows(2) {
                let a: Vec<u64> = w[0][l].as_array().unwrap().iter().map(u).collect();
                let b: Vec<u64> = w[1][l].as_array().unwrap().iter().map(u).collect();
                new += b.iter().filter(|e| !a.contains(e)).count();
                pairs += 1;
            }
        }
        let want = new as f64 / (k * pairs) as f64;
        let got = r["routing"]["exrep"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "{io}: ExRep {got}, trace {want}");
    }
}

#[test]
fn bench_flags_are_checked() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("tests/fixtures/gguf/qwen3_moe.f32.gguf");
    let model = model.to_str().unwrap();
    for (args, want) in [
        (vec!["--io", "floppy"], "floppy"),
        (vec!["--prefetch", "oracle"], "oracle"),
        (vec!["--expert-cache-pct", "150"], "not in [0, 100]"),
        (vec!["--routing", "synthetic:exrep=3"], "exrep"),
        (vec!["--expert-cache-mb", "0"], "budget"),
    ] {
        let mut a = vec!["bench", "--model", model, "--gen-tokens", "2"];
        a.extend(args.iter());
        let out = cosmoe(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn run_json_reports_the_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("tests/fixtures/gguf/qwen3_moe.f32.gguf");
    let v = json(&cosmoe(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--ids",
        "1,2,3",
        "-n",
        "6",
        "--ignore-eos",
        "--expert-cache-pct",
        "50",
        "--io",
        "buffered",
        "--json",
    ]));
    assert_eq!(v["tokens"].as_array().unwrap().len(), 6);
    let r = &v["report"];
    check(r);
    assert_eq!(u(&r["prompt_tokens"]), 3);
    assert!(r["latency"]["p50_ms"].as_f64().is_some());
    assert!(u(&r["cache"]["requests"]) > 0);
    assert_eq!(r["cache"]["io"], "buffered");
}

#[test]
fn the_default_cache_policy_follows_the_budget_and_a_flag_overrides_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("tests/fixtures/gguf/qwen3_moe.f32.gguf");
    let model = model.to_str().unwrap();
    let policy = |budget: &[&str]| {
        let mut args = vec![
            "bench",
            "--model",
            model,
            "--prompt-tokens",
            "2",
            "--gen-tokens",
            "2",
            "--io",
            "buffered",
            "--json",
        ];
        args.extend_from_slice(budget);
        let r = json(&cosmoe(&args));
        check(&r);
        r["cache"]["policy"].as_str().unwrap().to_string()
    };
    // Measured best on trained routing: stale for a share of the bytes, layer for k a layer.
    assert_eq!(policy(&["--expert-cache-pct", "50"]), "stale");
    assert_eq!(policy(&["--expert-cache-experts", "2"]), "layer");
    let given = ["--expert-cache-experts", "2", "--cache-policy", "lfu"];
    assert_eq!(policy(&given), "lfu");
}
