//! Replays the fuzzers' committed corpora (loader/fuzz/corpus/) through the same entry points the
//! fuzz targets use, so the normal test suite (no nightly toolchain) keeps every input that once found
//! or guarded a bug.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        f(&std::fs::read(&p).unwrap());
        n += 1;
    }
    n
}

#[test]
fn gguf_corpus() {
    let n = replay("gguf", cosmoe_loader::fuzzing::gguf);
    assert!(n >= 2, "only {n} inputs");
}

#[test]
fn safetensors_config_corpus() {
    let n = replay(
        "safetensors_config",
        cosmoe_loader::fuzzing::safetensors_config,
    );
    assert!(n >= 2, "only {n} inputs");
}
