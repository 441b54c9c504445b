//! `cosmoe simulate` is the runtime's cache, not a model of it: replaying a recorded trace, its hits,
//! misses, evictions and bytes read equal what `cosmoe bench` measures on the same trace, policy and
//! budget (one session, no reader threads, no prefetch); and Belady's bound is never beaten.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn cosmoe(args: &[&str]) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .args(args)
        .output()
        .expect("run cosmoe");
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

#[test]
fn simulated_hits_equal_the_runtimes() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/mixtral.q8_0.gguf");
    let model = model.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("routing.json");
    let trace = trace.to_str().unwrap();
    // The model's own routing over 60 generated tokens.
    let run = [
        "run",
        "-m",
        model,
        "--ids",
        "1,2,3",
        "-n",
        "60",
        "--ignore-eos",
        "--print-ids",
    ];
    Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .args(run)
        .args(["--record-routing", trace])
        .output()
        .unwrap();
    // bench evaluates 1 prompt token and 39 decode steps: the trace's first 40 tokens.
    let mut compared = 0;
    for pct in ["25", "50", "75"] {
        let sim = cosmoe(&[
            "simulate",
            "--trace",
            trace,
            "-m",
            model,
            "--io",
            "buffered",
            "--budget-pct",
            pct,
            "--tokens",
            "40",
            "--json",
        ]);
        let rows = sim["rows"].as_array().unwrap();
        let belady = rows.iter().find(|r| r["policy"] == "belady").unwrap()["hits"]
            .as_u64()
            .unwrap();
        for policy in ["lru", "layer", "lfu", "stale"] {
            let row = rows.iter().find(|r| r["policy"] == policy).unwrap();
            let b = cosmoe(&[
                "bench",
                "--model",
                model,
                "--routing-trace",
                trace,
                "--io",
                "buffered",
                "--io-threads",
                "0",
                "--prefetch",
                "none",
                "--cache-policy",
                policy,
                "--expert-cache-pct",
                pct,
                "--prompt-tokens",
                "1",
                "--gen-tokens",
                "40",
                "--json",
            ]);
            let c = &b["cache"];
            let what = format!("{policy} at {pct} %");
            for k in ["requests", "hits", "misses", "evictions", "bytes_read"] {
                assert_eq!(row[k], c[k], "{what}: {k}");
            }
            assert!(
                belady >= row["hits"].as_u64().unwrap(),
                "{what}: Belady below it"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 12);

    // A budget of k experts a layer (`--budget-experts`, `--expert-cache-experts`) too.
    let sim = cosmoe(&[
        "simulate",
        "--trace",
        trace,
        "-m",
        model,
        "--io",
        "buffered",
        "--budget-experts",
        "2",
        "--policy",
        "layer",
        "--tokens",
        "40",
        "--json",
    ]);
    let row = &sim["rows"][0];
    assert_eq!(row["budget_experts_per_layer"], 2);
    let b = cosmoe(&[
        "bench",
        "--model",
        model,
        "--routing-trace",
        trace,
        "--io",
        "buffered",
        "--io-threads",
        "0",
        "--prefetch",
        "none",
        "--cache-policy",
        "layer",
        "--expert-cache-experts",
        "2",
        "--prompt-tokens",
        "1",
        "--gen-tokens",
        "40",
        "--json",
    ]);
    assert_eq!(row["budget_bytes"], b["cache"]["budget_bytes"]);
    for k in ["requests", "hits", "misses", "evictions", "bytes_read"] {
        assert_eq!(row[k], b["cache"][k], "2 experts a layer: {k}");
    }
}

#[test]
fn plot_draws_a_line_per_policy_and_never_over_its_input() {
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("t.json");
    // 2 layers x 4 experts, top-1, with some reuse.
    let tokens: Vec<Vec<Vec<u32>>> = (0..40u32)
        .map(|t| vec![vec![(t / 3) % 4], vec![(t / 5 + 1) % 4]])
        .collect();
    let t = serde_json::json!({"n_layers": 2, "n_experts": 4, "top_k": 1, "tokens": tokens});
    std::fs::write(&trace, t.to_string()).unwrap();
    let svg = tmp.path().join("hits.svg");
    let (trace_s, svg_s) = (trace.to_str().unwrap(), svg.to_str().unwrap());
    cosmoe(&[
        "simulate",
        "--trace",
        trace_s,
        "--budget-pct",
        "25,50,75",
        "--json",
        "--plot",
        svg_s,
    ]);
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{}", &text[..80.min(text.len())]);
    for label in [
        "lru",
        "layer",
        "lfu",
        "stale",
        "belady (offline bound)",
        "hit rate (%)",
        "ExRep",
    ] {
        assert!(text.contains(label), "no `{label}` in the plot");
    }
    // One line of three points (the budgets) per policy; the axes and legend samples have two.
    let lines = text
        .split("<polyline")
        .skip(1)
        .filter(|l| {
            let pts = l.split("points=\"").nth(1).unwrap_or("");
            pts.split('"')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .count()
                == 3
        })
        .count();
    assert_eq!(lines, 5, "{text}");
    // The plot may not replace the trace it reads.
    let before = std::fs::read(&trace).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .args(["simulate", "--trace", trace_s, "--plot", trace_s])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(std::fs::read(&trace).unwrap(), before);
}

#[test]
fn simulate_refuses_a_trace_of_another_model_and_a_dense_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let trace = tmp.path().join("t.json");
    // A trace of 3 layers x 8 experts does not fit the 2 x 4 fixture.
    let t = serde_json::json!({"n_layers": 3, "n_experts": 8, "top_k": 2, "tokens": [[[0, 1], [2, 3], [4, 5]]]});
    std::fs::write(&trace, t.to_string()).unwrap();
    let fails = |m: &str, what: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_cosmoe"))
            .args(["simulate", "--trace", trace.to_str().unwrap(), "-m", m])
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && e.contains(what), "{e}");
    };
    fails(
        root.join("tests/fixtures/gguf/mixtral.q8_0.gguf")
            .to_str()
            .unwrap(),
        "3 layers x 8 experts",
    );
    fails(
        root.join("tests/fixtures/gguf/llama.f32.gguf")
            .to_str()
            .unwrap(),
        "dense",
    );
}
