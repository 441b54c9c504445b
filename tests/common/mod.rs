//! Shared helpers of the integration tests: the golden fixtures made by tests/fixtures/make_fixtures.py.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

/// Every fixture folder, sorted; panics if there are fewer than expected (so tests cannot pass vacuously).
pub fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/fixtures/golden exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    v.sort();
    assert!(
        v.len() >= 9,
        "expected at least 9 golden fixtures, found {}",
        v.len()
    );
    v
}

pub struct Expected {
    pub json: Value,
    pub prompt_ids: Vec<u32>,
    pub greedy_ids: Vec<u32>,
    pub vocab_size: usize,
    /// (n_prompt, vocab) from transformers.
    pub logits: Vec<f32>,
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("a list of ids")
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn expected(dir: &Path) -> Expected {
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let logits: Vec<f32> = std::fs::read(dir.join("logits.bin"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Expected {
        prompt_ids: ids(&json["prompt_ids"]),
        greedy_ids: ids(&json["greedy_ids"]),
        vocab_size: json["vocab_size"].as_u64().unwrap() as usize,
        logits,
        json,
    }
}

/// max |a - b| / max |b|.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let max_b = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let max_d = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    max_d / max_b
}

/// Copies a fixture folder into a fresh temporary directory (for tests that damage files).
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let src = golden_dir().join(name);
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
    }
    tmp
}

/// `cosmoe ARGS` with `stdin` written to its input; its output once it ends.
pub fn cosmoe_with_stdin(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_cosmoe"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cosmoe");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("wait for cosmoe")
}
