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
        for policy in ["lru", "layer", "lfu"] {
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
    assert_eq!(compared, 9);
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
