//! Bad input gets a clear error naming the file (and tensor), never a panic.

mod common;

use cosmoe::Session;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use common::copy_fixture;
use cosmoe::forward::Logits;
use cosmoe::{Error, Model};
use cosmoe_loader::LoaderError;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// Loads `dir` and returns the error's message (the load must fail).
fn load_err(dir: &Path) -> (Error, String) {
    match Model::load(dir) {
        Ok(_) => panic!("{} loaded, but should have failed", dir.display()),
        Err(e) => {
            let msg = e.to_string();
            (e, msg)
        }
    }
}

/// Rewrites `dir/model.safetensors` after `edit` has changed its tensors.
fn rewrite_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let out = safetensors::serialize(views, None::<HashMap<String, String>>).unwrap();
    std::fs::write(&path, out).unwrap();
}

const Q: &str = "model.layers.0.self_attn.q_proj.weight";

#[test]
fn missing_config() {
    let d = copy_fixture("llama");
    std::fs::remove_file(d.path().join("config.json")).unwrap();
    let (e, msg) = load_err(d.path());
    assert!(
        matches!(e, Error::Load(LoaderError::NotAModel { .. })),
        "{e:?}"
    );
    assert!(msg.contains("without config.json"), "{msg}");
}

/// Issue 13, defect 7: a model is told by content, not by name. A GGUF file under another name loads
/// as GGUF; config.json or the .safetensors file of a checkpoint means its folder; anything else is
/// an error saying what was expected (not "stream did not contain valid UTF-8").
#[test]
fn model_path_is_recognised_by_content() {
    let gguf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf/mixtral.q8_0.gguf");
    let d = copy_fixture("mixtral");
    let renamed = d.path().join("model.bin");
    std::fs::copy(&gguf, &renamed).unwrap();
    let ids = [1u32, 15, 27];
    let first = |m: Model| {
        let v = m.config.vocab_size;
        let mut s = Session::new(Arc::new(m));
        s.eval(&ids, Logits::Last).unwrap()[..v].to_vec()
    };
    assert_eq!(
        first(Model::load(&renamed).unwrap()),
        first(Model::load(&gguf).unwrap())
    );

    let folder = first(Model::load(d.path()).unwrap());
    for member in ["config.json", "model.safetensors"] {
        let got = first(Model::load(&d.path().join(member)).unwrap());
        assert_eq!(got, folder, "{member}");
    }

    let expected = "expected a GGUF file";
    let fake = d.path().join("fake.gguf");
    std::fs::write(&fake, b"not a gguf file").unwrap();
    let (e, msg) = load_err(&fake);
    assert!(
        matches!(e, Error::Load(LoaderError::NotAModel { .. })),
        "{e:?}"
    );
    assert!(
        msg.contains("fake.gguf") && msg.contains("`GGUF`") && msg.contains(expected),
        "{msg}"
    );

    let other = d.path().join("notes.txt");
    std::fs::write(&other, b"hello").unwrap();
    let (_, msg) = load_err(&other);
    assert!(msg.contains("notes.txt") && msg.contains(expected), "{msg}");

    // A safetensors file whose folder has no config.json.
    let lone = tempfile::tempdir().unwrap();
    let st = lone.path().join("model.safetensors");
    std::fs::copy(d.path().join("model.safetensors"), &st).unwrap();
    let (_, msg) = load_err(&st);
    assert!(
        msg.contains("no config.json") && msg.contains(expected),
        "{msg}"
    );
}

#[test]
fn malformed_config() {
    let d = copy_fixture("llama");
    std::fs::write(
        d.path().join("config.json"),
        "{\"architectures\": [\"LlamaForCausalLM\"], ",
    )
    .unwrap();
    let (e, msg) = load_err(d.path());
    assert!(matches!(e, Error::Load(LoaderError::Json { .. })), "{e:?}");
    assert!(
        msg.contains("config.json") && msg.contains("malformed JSON"),
        "{msg}"
    );
}

#[test]
fn config_missing_required_key() {
    let d = copy_fixture("mixtral");
    let p = d.path().join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("num_experts_per_tok");
    std::fs::write(&p, v.to_string()).unwrap();
    let (_, msg) = load_err(d.path());
    assert!(
        msg.contains("config.json") && msg.contains("num_experts_per_tok"),
        "{msg}"
    );
}

#[test]
fn unknown_architecture() {
    let d = copy_fixture("llama");
    let p = d.path().join("config.json");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("LlamaForCausalLM", "FancyNetForCausalLM");
    std::fs::write(&p, text).unwrap();
    let (e, msg) = load_err(d.path());
    assert!(
        matches!(e, Error::Load(LoaderError::UnsupportedArchitecture { .. })),
        "{e:?}"
    );
    assert!(
        msg.contains("FancyNetForCausalLM") && msg.contains("MixtralForCausalLM"),
        "{msg}"
    );
}

#[test]
fn missing_tensor() {
    let d = copy_fixture("llama");
    rewrite_weights(d.path(), |t| t.retain(|x| x.0 != Q));
    let (e, msg) = load_err(d.path());
    assert!(
        matches!(e, Error::Load(LoaderError::MissingTensor { .. })),
        "{e:?}"
    );
    assert!(msg.contains(Q), "{msg}");
}

#[test]
fn missing_expert_tensor() {
    let d = copy_fixture("mixtral");
    let name = "model.layers.1.block_sparse_moe.experts.3.w2.weight";
    rewrite_weights(d.path(), |t| t.retain(|x| x.0 != name));
    let (_, msg) = load_err(d.path());
    assert!(msg.contains(name), "{msg}");
}

#[test]
fn wrong_shape() {
    let d = copy_fixture("llama");
    rewrite_weights(d.path(), |t| {
        let x = t.iter_mut().find(|x| x.0 == Q).unwrap();
        // Same bytes, transposed shape.
        x.2 = vec![x.2[1], x.2[0] / 2, 2];
    });
    let (e, msg) = load_err(d.path());
    assert!(matches!(e, Error::Load(LoaderError::Shape { .. })), "{e:?}");
    assert!(
        msg.contains(Q) && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn unsupported_dtype() {
    let d = copy_fixture("llama");
    rewrite_weights(d.path(), |t| {
        let x = t.iter_mut().find(|x| x.0 == Q).unwrap();
        x.1 = Dtype::I32;
    });
    let (e, msg) = load_err(d.path());
    assert!(
        matches!(e, Error::Load(LoaderError::UnsupportedDtype { .. })),
        "{e:?}"
    );
    assert!(
        msg.contains(Q) && msg.contains("I32") && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn truncated_safetensors() {
    let d = copy_fixture("llama");
    let p = d.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    for keep in [0, 5, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&p, &bytes[..keep]).unwrap();
        let (e, msg) = load_err(d.path());
        assert!(
            matches!(e, Error::Load(LoaderError::Safetensors { .. })),
            "{keep}: {e:?}"
        );
        assert!(msg.contains("model.safetensors"), "{msg}");
    }
}

#[test]
fn header_larger_than_file() {
    let d = copy_fixture("llama");
    let p = d.path().join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    for n in [bytes.len() as u64, u64::MAX, 1 << 40] {
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let (e, msg) = load_err(d.path());
        assert!(
            matches!(e, Error::Load(LoaderError::Safetensors { .. })),
            "{n}: {e:?}"
        );
        assert!(msg.contains("model.safetensors"), "{msg}");
    }
}

#[test]
fn garbage_header() {
    let d = copy_fixture("llama");
    let p = d.path().join("model.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[8..40].fill(b'#');
    std::fs::write(&p, &bytes).unwrap();
    let (_, msg) = load_err(d.path());
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn no_weights() {
    let d = copy_fixture("llama");
    std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
    let (e, _) = load_err(d.path());
    assert!(
        matches!(e, Error::Load(LoaderError::NoWeights { .. })),
        "{e:?}"
    );
}

#[test]
fn index_errors() {
    // A shard the index names is missing.
    let d = copy_fixture("qwen3_moe_sharded");
    std::fs::remove_file(d.path().join("model-00002-of-00003.safetensors")).unwrap();
    let (_, msg) = load_err(d.path());
    assert!(msg.contains("model-00002-of-00003.safetensors"), "{msg}");

    // An index that points outside the folder.
    let d = copy_fixture("qwen3_moe_sharded");
    let p = d.path().join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("model-00001", "../model-00001");
    std::fs::write(&p, text).unwrap();
    let (_, msg) = load_err(d.path());
    assert!(msg.contains("not a file name"), "{msg}");

    // An index that claims a tensor lives in a shard that does not hold it.
    let d = copy_fixture("qwen3_moe_sharded");
    let p = d.path().join("model.safetensors.index.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let map = v["weight_map"].as_object_mut().unwrap();
    let (name, file) = map
        .iter()
        .next()
        .map(|(k, f)| (k.clone(), f.as_str().unwrap().to_owned()))
        .unwrap();
    let other = [
        "model-00001-of-00003.safetensors",
        "model-00002-of-00003.safetensors",
    ]
    .into_iter()
    .find(|f| *f != file)
    .unwrap();
    map.insert(name.clone(), other.into());
    std::fs::write(&p, v.to_string()).unwrap();
    let (_, msg) = load_err(d.path());
    assert!(msg.contains(&name), "{msg}");
}

#[test]
fn ids_outside_vocabulary() {
    let d = common::golden_dir().join("qwen2_moe");
    let model = Arc::new(Model::load(&d).unwrap());
    let mut kv = Session::new(model.clone());
    let v = model.config.vocab_size as u32;
    let e = kv
        .eval(&[1, v, 2], Logits::All)
        .map(<[f32]>::to_vec)
        .unwrap_err();
    assert!(
        matches!(e, Error::TokenOutOfRange { id, .. } if id == v),
        "{e:?}"
    );
    assert!(
        kv.n_past() == 0,
        "a failed forward leaves the cache as it was"
    );
    let e = kv.eval(&[], Logits::All).map(<[f32]>::to_vec).unwrap_err();
    assert!(matches!(e, Error::EmptyInput), "{e:?}");
    // The cache still works after the errors.
    kv.eval(&[1, 2], Logits::Last).map(<[f32]>::to_vec).unwrap();
    assert_eq!(kv.n_past(), 2);
}

#[test]
fn context_limit() {
    let d = common::golden_dir().join("llama");
    let model = Arc::new(Model::load(&d).unwrap());
    let max = model.config.max_position_embeddings;
    let ids = vec![1u32; max + 1];
    let e = Session::new(model.clone())
        .eval(&ids, Logits::Last)
        .map(<[f32]>::to_vec)
        .unwrap_err();
    assert!(matches!(e, Error::ContextFull { .. }), "{e:?}");
}
