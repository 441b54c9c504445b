//! include/cosmoe.h is what cbindgen generates from runtime/src/capi.rs with cbindgen.toml; this test
//! fails when it is out of date (run it with COSMOE_BLESS=1 to rewrite the header).

use std::path::Path;

#[test]
fn header_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(root.join("runtime/src/capi.rs"))
        .generate()
        .expect("cbindgen parses runtime/src/capi.rs")
        .write(&mut generated);
    let generated = String::from_utf8(generated).expect("UTF-8 header");
    let path = root.join("include/cosmoe.h");
    if std::env::var_os("COSMOE_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("writing include/cosmoe.h");
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "include/cosmoe.h is out of date with runtime/src/capi.rs: run \
         `COSMOE_BLESS=1 cargo test --test c_header` and commit the header"
    );
    // The entry points the issue fixes are all there.
    for f in [
        "const char *cosmoe_version(void)",
        "enum cosmoe_status cosmoe_model_load(const char *path",
        "void cosmoe_model_free(struct cosmoe_model **model)",
        "enum cosmoe_status cosmoe_session_generate(struct cosmoe_session *session",
        "typedef struct cosmoe_session cosmoe_session;",
        "typedef bool (*cosmoe_token_fn)(int32_t token",
    ] {
        assert!(current.contains(f), "the header lacks `{f}`");
    }
}

/// docs/c-api.md shows examples/python/cosmoe_ctypes.py (which tests/c_api.rs runs) as it is.
#[test]
fn the_doc_shows_the_python_example_as_tested() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/c-api.md")).unwrap();
    let py = std::fs::read_to_string(root.join("examples/python/cosmoe_ctypes.py")).unwrap();
    assert!(
        doc.contains(&py),
        "docs/c-api.md must quote examples/python/cosmoe_ctypes.py verbatim"
    );
}
