//! GGUF reader: round trips through a small writer, then hostile files, one per defence, and a
//! randomised mutation run. Every hostile file must give an error, never a panic.

use std::path::Path;

use cosmoe_loader::gguf::{Array, Value, ValueType, ALIGNMENT_KEY, MAX_ARRAY_DEPTH};
use cosmoe_loader::{Bytes, DType, GgmlType, GgufFile, LoaderError};

// ---------------------------------------------------------------------------------------------
// A small GGUF writer with every field overridable, for valid and hostile files alike
// ---------------------------------------------------------------------------------------------

fn enc_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s);
}

fn enc_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend(x.to_le_bytes()),
        Value::U16(x) => out.extend(x.to_le_bytes()),
        Value::I16(x) => out.extend(x.to_le_bytes()),
        Value::U32(x) => out.extend(x.to_le_bytes()),
        Value::I32(x) => out.extend(x.to_le_bytes()),
        Value::F32(x) => out.extend(x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => enc_str(out, s.as_bytes()),
        Value::Array(a) => enc_array(out, a),
        Value::U64(x) => out.extend(x.to_le_bytes()),
        Value::I64(x) => out.extend(x.to_le_bytes()),
        Value::F64(x) => out.extend(x.to_le_bytes()),
    }
}

fn enc_array(out: &mut Vec<u8>, a: &Array) {
    out.extend(a.elem_type().id().to_le_bytes());
    out.extend((a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr) => {
            for x in $v {
                out.extend(x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => out.extend(v),
        Array::I8(v) => each!(v),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => {
            for s in v {
                enc_str(out, s.as_bytes());
            }
        }
        Array::Array(v) => {
            for x in v {
                enc_array(out, x);
            }
        }
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
    }
}

#[derive(Clone)]
struct Tensor {
    name: Vec<u8>,
    ne: Vec<u64>,
    /// Written instead of `ne.len()` when set.
    n_dims: Option<u32>,
    ty: u32,
    data: Vec<u8>,
    /// Written instead of the laid-out offset when set.
    offset: Option<u64>,
}

#[derive(Clone)]
struct Gguf {
    magic: [u8; 4],
    version: u32,
    n_tensors: Option<u64>,
    n_kv: Option<u64>,
    kv: Vec<u8>,
    kv_count: u64,
    tensors: Vec<Tensor>,
    /// The alignment the data is laid out with (independent of the metadata, for hostile files).
    layout_align: u64,
}

impl Gguf {
    fn new() -> Gguf {
        Gguf {
            magic: *b"GGUF",
            version: 3,
            n_tensors: None,
            n_kv: None,
            kv: Vec::new(),
            kv_count: 0,
            tensors: Vec::new(),
            layout_align: 32,
        }
    }

    fn kv(self, key: &str, v: Value) -> Gguf {
        let mut raw = (v.value_type().id()).to_le_bytes().to_vec();
        enc_value(&mut raw, &v);
        self.kv_raw(key.as_bytes(), &raw)
    }

    /// A key, then `rest` (value type and value) as given.
    fn kv_raw(mut self, key: &[u8], rest: &[u8]) -> Gguf {
        enc_str(&mut self.kv, key);
        self.kv.extend(rest);
        self.kv_count += 1;
        self
    }

    /// Any bytes as the next metadata entry.
    fn kv_bytes(mut self, raw: &[u8]) -> Gguf {
        self.kv.extend(raw);
        self.kv_count += 1;
        self
    }

    /// `general.alignment` and the layout both at `a`.
    fn alignment(mut self, a: u32) -> Gguf {
        self.layout_align = a.into();
        self.kv(ALIGNMENT_KEY, Value::U32(a))
    }

    fn tensor(mut self, name: &str, ne: &[u64], ty: GgmlType, data: Vec<u8>) -> Gguf {
        self.tensors.push(Tensor {
            name: name.as_bytes().to_vec(),
            ne: ne.to_vec(),
            n_dims: None,
            ty: ty.id(),
            data,
            offset: None,
        });
        self
    }

    fn tensor_raw(mut self, t: Tensor) -> Gguf {
        self.tensors.push(t);
        self
    }

    fn build(&self) -> Vec<u8> {
        let align = |x: u64| {
            x.div_ceil(self.layout_align)
                .saturating_mul(self.layout_align)
        };
        let mut out = Vec::new();
        out.extend(self.magic);
        out.extend(self.version.to_le_bytes());
        out.extend(
            self.n_tensors
                .unwrap_or(self.tensors.len() as u64)
                .to_le_bytes(),
        );
        out.extend(self.n_kv.unwrap_or(self.kv_count).to_le_bytes());
        out.extend(&self.kv);
        let mut next = 0u64;
        let mut placed = Vec::new();
        for t in &self.tensors {
            enc_str(&mut out, &t.name);
            out.extend(t.n_dims.unwrap_or(t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ty.to_le_bytes());
            let off = t.offset.unwrap_or(next);
            out.extend(off.to_le_bytes());
            placed.push(off);
            next = align(off.saturating_add(t.data.len() as u64));
        }
        if self.tensors.is_empty() {
            return out;
        }
        let data_start = align(out.len() as u64) as usize;
        out.resize(data_start, 0);
        for (t, &off) in self.tensors.iter().zip(&placed) {
            // hostile offsets are not laid out
            let Some(at) = usize::try_from(off)
                .ok()
                .filter(|&o| o < 1 << 20)
                .map(|o| data_start + o)
            else {
                continue;
            };
            if out.len() < at + t.data.len() {
                out.resize(at + t.data.len(), 0);
            }
            out[at..at + t.data.len()].copy_from_slice(&t.data);
        }
        out
    }
}

fn parse(bytes: Vec<u8>) -> Result<GgufFile, LoaderError> {
    GgufFile::parse(Bytes::from_vec(bytes), Path::new("test.gguf"))
}

/// The message of the [`LoaderError::Gguf`] that `bytes` must give.
#[track_caller]
fn gguf_err(bytes: Vec<u8>) -> String {
    match parse(bytes) {
        Err(LoaderError::Gguf { path, msg }) => {
            assert_eq!(path, Path::new("test.gguf"));
            msg
        }
        Err(e) => panic!("expected a GGUF format error, got another error: {e}"),
        Ok(f) => panic!("expected a GGUF format error, parsed: {f:?}"),
    }
}

#[track_caller]
fn assert_err(bytes: Vec<u8>, needles: &[&str]) {
    let msg = gguf_err(bytes);
    for n in needles {
        assert!(msg.contains(n), "error `{msg}` does not mention `{n}`");
    }
}

// ---------------------------------------------------------------------------------------------
// A valid file
// ---------------------------------------------------------------------------------------------

fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (i as f32 * 0.37 + seed).sin() * 2.0)
        .collect()
}

fn f32_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f16_bytes(x: &[f32]) -> Vec<u8> {
    x.iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect()
}

fn every_value() -> Vec<(&'static str, Value)> {
    vec![
        ("general.architecture", Value::String("olmoe".into())),
        ("t.u8", Value::U8(200)),
        ("t.i8", Value::I8(-100)),
        ("t.u16", Value::U16(60000)),
        ("t.i16", Value::I16(-30000)),
        ("t.u32", Value::U32(4_000_000_000)),
        ("t.i32", Value::I32(-2_000_000_000)),
        ("t.f32", Value::F32(1e-6)),
        ("t.bool", Value::Bool(true)),
        ("t.bool_false", Value::Bool(false)),
        ("t.string", Value::String("héllo, wörld".into())),
        ("t.empty_string", Value::String(String::new())),
        ("t.u64", Value::U64(u64::MAX)),
        ("t.i64", Value::I64(i64::MIN)),
        ("t.f64", Value::F64(-1.5e300)),
        ("t.arr.u8", Value::Array(Array::U8(vec![1, 2, 255]))),
        ("t.arr.i8", Value::Array(Array::I8(vec![-1, 0, 127]))),
        ("t.arr.u16", Value::Array(Array::U16(vec![1, 65535]))),
        ("t.arr.i16", Value::Array(Array::I16(vec![-32768, 7]))),
        ("t.arr.u32", Value::Array(Array::U32(vec![0, u32::MAX]))),
        ("t.arr.i32", Value::Array(Array::I32(vec![1, -1, 3]))),
        ("t.arr.f32", Value::Array(Array::F32(vec![0.5, -0.25, 1e9]))),
        ("t.arr.bool", Value::Array(Array::Bool(vec![true, false]))),
        (
            "t.arr.str",
            Value::Array(Array::String(vec!["a".into(), String::new(), "ü".into()])),
        ),
        ("t.arr.u64", Value::Array(Array::U64(vec![u64::MAX, 0]))),
        ("t.arr.i64", Value::Array(Array::I64(vec![i64::MIN, 5]))),
        ("t.arr.f64", Value::Array(Array::F64(vec![1.0 / 3.0]))),
        ("t.arr.empty", Value::Array(Array::F32(vec![]))),
        (
            "t.arr.nested",
            Value::Array(Array::Array(vec![
                Array::I32(vec![1, 2]),
                Array::String(vec!["x".into()]),
                Array::Array(vec![Array::U8(vec![9])]),
                Array::Bool(vec![]),
            ])),
        ),
    ]
}

/// Metadata of every type; F32, F16, Q8_0 and Q4_0 tensors (matrix, vector, matrix, 3 experts)
/// and a zero-size one. The last tensor ends the file.
fn sample_builder() -> Gguf {
    let mut g = Gguf::new();
    for (k, v) in every_value() {
        g = g.kv(k, v);
    }
    let q8 = cosmoe_kernels::quantize(DType::Q8_0, &values(2 * 64, 1.0), 64).unwrap();
    let q4 = cosmoe_kernels::quantize(DType::Q4_0, &values(3 * 2 * 32, 2.0), 32).unwrap();
    g.tensor(
        "token_embd.weight",
        &[4, 3],
        GgmlType::F32,
        f32_bytes(&values(12, 0.0)),
    )
    .tensor(
        "output_norm.weight",
        &[8],
        GgmlType::F16,
        f16_bytes(&values(8, 3.0)),
    )
    .tensor("empty", &[0, 5], GgmlType::F32, vec![])
    .tensor("blk.0.attn_q.weight", &[64, 2], GgmlType::Q8_0, q8)
    .tensor(
        "blk.0.ffn_gate_exps.weight",
        &[32, 2, 3],
        GgmlType::Q4_0,
        q4,
    )
}

fn sample() -> Vec<u8> {
    sample_builder().build()
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn metadata_of_every_type_round_trips_in_order() {
    let f = parse(sample()).unwrap();
    assert_eq!(f.version(), 3);
    let expected = every_value();
    assert_eq!(f.metadata().len(), expected.len());
    for ((k, v), (ek, ev)) in f.metadata().iter().zip(&expected) {
        assert_eq!(k, ek);
        assert_eq!(v, ev, "{k}");
        assert_eq!(f.get(k), Some(ev));
    }
    assert_eq!(f.get("missing"), None);
    assert_eq!(f.architecture().unwrap(), "olmoe");
    assert_eq!(f.require_u64("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(f.require_u64("t.u8").unwrap(), 200);
    assert_eq!(f.require_f64("t.f32").unwrap() as f32, 1e-6);
    assert_eq!(f.require_f64("t.i32").unwrap(), -2e9);
    assert!(matches!(
        f.require_u64("t.i8"),
        Err(LoaderError::BadValue { ref key, .. }) if key == "t.i8"
    ));
    assert!(matches!(
        f.require_str("t.u8"),
        Err(LoaderError::BadValue { .. })
    ));
    assert!(matches!(
        f.require("nope"),
        Err(LoaderError::MissingKey { ref key, .. }) if key == "nope"
    ));
    let nested = f.get("t.arr.nested").and_then(Value::as_array).unwrap();
    assert_eq!(nested.elem_type(), ValueType::Array);
    assert_eq!(nested.as_arrays().unwrap()[0].to_i64s(), Some(vec![1, 2]));
    let strs = f.get("t.arr.str").and_then(Value::as_array).unwrap();
    assert_eq!(strs.as_strings().unwrap()[2], "ü");
    assert_eq!(strs.get(0), Some(Value::String("a".into())));
    assert_eq!(strs.get(3), None);
    assert_eq!(
        f.get("t.arr.u32")
            .and_then(Value::as_array)
            .and_then(Array::to_i64s),
        Some(vec![0, u32::MAX as i64])
    );
    assert_eq!(
        f.get("t.arr.u64")
            .and_then(Value::as_array)
            .and_then(Array::to_i64s),
        None,
        "u64::MAX is no i64"
    );
}

#[test]
fn tensors_round_trip_shapes_types_and_bytes() {
    let g = sample_builder();
    let bytes = g.build();
    let f = parse(bytes.clone()).unwrap();
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.data_offset() % 32, 0);
    assert_eq!(f.tensors().len(), g.tensors.len());
    for (t, w) in f.tensors().iter().zip(&g.tensors) {
        assert_eq!(t.name().as_bytes(), &w.name[..]);
        let ne: Vec<u64> = t.ne().iter().map(|&d| d as u64).collect();
        assert_eq!(ne, w.ne);
        assert_eq!(t.ggml_type().id(), w.ty);
        assert_eq!(t.n_bytes(), w.data.len(), "{}", t.name());
        assert_eq!(t.offset() % 32, 0);
        assert_eq!(&f.tensor_bytes(t).unwrap()[..], &w.data[..], "{}", t.name());
        let r = f.file_range(t).unwrap();
        assert_eq!(&bytes[r], &w.data[..]);
    }
    let e = f.tensor("blk.0.ffn_gate_exps.weight").unwrap();
    assert_eq!(e.ne(), &[32, 2, 3]);
    assert_eq!(e.shape(), vec![3, 2, 32]);
    assert_eq!(e.n_elements(), 192);
    assert_eq!(e.dtype(), Some(DType::Q4_0));

    // weights in place
    let emb = f.weight("token_embd.weight").unwrap();
    assert_eq!((emb.dtype, emb.rows, emb.cols), (DType::F32, 3, 4));
    let q = f.matrix("blk.0.attn_q.weight", 2, 64).unwrap();
    assert_eq!((q.dtype, q.rows, q.cols), (DType::Q8_0, 2, 64));
    assert!(matches!(
        f.matrix("blk.0.attn_q.weight", 64, 2),
        Err(LoaderError::Shape { ref got, .. }) if got == &vec![2, 64]
    ));
    assert_eq!(f.vector("output_norm.weight").unwrap(), {
        let x = values(8, 3.0);
        x.iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect::<Vec<_>>()
    });
    let empty = f.weight("empty").unwrap();
    assert_eq!((empty.rows, empty.cols, empty.bytes.len()), (5, 0, 0));

    // experts: each one's slice is contiguous, in order
    assert_eq!(f.n_experts("blk.0.ffn_gate_exps.weight").unwrap(), 3);
    assert!(matches!(
        f.stacked("blk.0.ffn_gate_exps.weight", 4, 2, 32),
        Err(LoaderError::Shape { .. })
    ));
    let exps = f.stacked("blk.0.ffn_gate_exps.weight", 3, 2, 32).unwrap();
    assert_eq!(exps.len(), 3);
    let all = f.tensor_bytes(e).unwrap();
    let per = 2 * 18;
    for (i, w) in exps.iter().enumerate() {
        assert_eq!((w.dtype, w.rows, w.cols), (DType::Q4_0, 2, 32));
        assert_eq!(&w.bytes[..], &all[i * per..(i + 1) * per]);
        let r = f
            .expert_file_range("blk.0.ffn_gate_exps.weight", i)
            .unwrap();
        assert_eq!(&bytes[r], &w.bytes[..]);
    }
    assert!(matches!(
        f.expert("blk.0.ffn_gate_exps.weight", 3),
        Err(LoaderError::GgufTensor { .. })
    ));
    // a 3-D tensor is no matrix; a 1-expert view of a matrix is fine (ggml drops trailing 1s)
    assert!(matches!(
        f.weight("blk.0.ffn_gate_exps.weight"),
        Err(LoaderError::GgufTensor { ref tensor, .. }) if tensor == "blk.0.ffn_gate_exps.weight"
    ));
    assert_eq!(f.n_experts("blk.0.attn_q.weight").unwrap(), 1);
    assert_eq!(f.stacked("blk.0.attn_q.weight", 1, 2, 64).unwrap().len(), 1);
    assert!(matches!(
        f.weight("nope"),
        Err(LoaderError::MissingTensor { .. })
    ));
}

#[test]
fn open_maps_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, sample()).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), path);
    assert_eq!(f.tensors().len(), 5);
    assert_eq!(f.weight("token_embd.weight").unwrap().rows, 3);
    assert!(matches!(
        GgufFile::open(&dir.path().join("missing.gguf")),
        Err(LoaderError::Io { .. })
    ));
}

#[test]
fn version_2_reads_like_version_3() {
    let mut g = sample_builder();
    g.version = 2;
    let f = parse(g.build()).unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(f.tensors().len(), 5);
}

#[test]
fn alignment_key_sets_the_layout() {
    let g = Gguf::new()
        .alignment(4096)
        .tensor("a", &[3], GgmlType::F32, f32_bytes(&[1., 2., 3.]))
        .tensor("b", &[32], GgmlType::Q8_0, vec![7; 34]);
    let f = parse(g.build()).unwrap();
    assert_eq!(f.alignment(), 4096);
    assert_eq!(f.data_offset(), 4096);
    assert_eq!(f.tensor("b").unwrap().offset(), 4096);
    assert_eq!(f.vector("a").unwrap(), vec![1., 2., 3.]);
}

#[test]
fn metadata_only_file_needs_no_padding() {
    let bytes = Gguf::new().kv("a", Value::U8(1)).build();
    let len = bytes.len();
    let f = parse(bytes).unwrap();
    assert!(f.tensors().is_empty());
    assert_eq!(f.data_offset(), len);
    let empty = Gguf::new().build();
    assert_eq!(empty.len(), 24);
    assert!(parse(empty).unwrap().metadata().is_empty());
}

#[test]
fn unsupported_types_parse_but_are_no_weights() {
    let g = Gguf::new()
        .tensor(
            "blk.0.ffn_down.weight",
            &[256, 2],
            GgmlType::TQ1_0,
            vec![1; 2 * 54],
        )
        .tensor(
            "blk.0.ffn_up_exps.weight",
            &[512, 1, 4],
            GgmlType::MXFP4,
            vec![2; 4 * 16 * 17],
        );
    let bytes = g.build();
    let f = parse(bytes.clone()).unwrap();
    let t = f.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!(
        (t.ggml_type(), t.n_bytes(), t.dtype()),
        (GgmlType::TQ1_0, 108, None)
    );
    let err = f.weight("blk.0.ffn_down.weight").unwrap_err();
    assert!(
        matches!(err, LoaderError::UnsupportedGgmlType { ref ggml_type, .. } if ggml_type == "TQ1_0")
    );
    let msg = err.to_string();
    for needle in ["test.gguf", "blk.0.ffn_down.weight", "TQ1_0"] {
        assert!(msg.contains(needle), "{msg}");
    }
    assert!(matches!(
        f.expert("blk.0.ffn_up_exps.weight", 0),
        Err(LoaderError::UnsupportedGgmlType { .. })
    ));
    // raw expert ranges work for any type (a cache can still read them)
    let r = f.expert_file_range("blk.0.ffn_up_exps.weight", 3).unwrap();
    assert_eq!(r.len(), 16 * 17);
    assert!(bytes[r].iter().all(|&b| b == 2));
}

/// The IQ1/IQ2/IQ3 types are weights in their kernel formats (ggml ids 16-19, 21, 22, 29).
#[test]
fn iq_types_are_weights() {
    let types = [
        (GgmlType::IQ2_XXS, DType::IQ2_XXS, 16, 66),
        (GgmlType::IQ2_XS, DType::IQ2_XS, 17, 74),
        (GgmlType::IQ3_XXS, DType::IQ3_XXS, 18, 98),
        (GgmlType::IQ1_S, DType::IQ1_S, 19, 50),
        (GgmlType::IQ3_S, DType::IQ3_S, 21, 110),
        (GgmlType::IQ2_S, DType::IQ2_S, 22, 82),
        (GgmlType::IQ1_M, DType::IQ1_M, 29, 56),
    ];
    let mut g = Gguf::new();
    for (i, &(t, _, _, bytes)) in types.iter().enumerate() {
        g = g.tensor(&format!("w{i}"), &[512, 3], t, vec![i as u8; 3 * 2 * bytes]);
    }
    let f = parse(g.build()).unwrap();
    for (i, &(t, d, id, bytes)) in types.iter().enumerate() {
        assert_eq!((t.id(), GgmlType::from_id(id)), (id, Some(t)));
        let w = f.weight(&format!("w{i}")).unwrap();
        assert_eq!((w.dtype, w.rows, w.cols), (d, 3, 512), "{t}");
        assert_eq!(w.mat().bytes(), &vec![i as u8; 3 * 2 * bytes][..], "{t}");
    }
}

#[test]
fn display_shortens_long_arrays() {
    let v = Value::Array(Array::I32((0..100).collect()));
    assert_eq!(v.to_string(), "[0, 1, 2, 3, 4, 5, 6, 7, ... (100 i32)]");
    assert_eq!(Value::String("a\"b".into()).to_string(), "\"a\\\"b\"");
}

/// A file written by llama.cpp's own Python writer (gguf-py 0.19.0, `GGUFWriter`), so this reader is
/// checked against the format as its authors write it, not only against this file's writer:
///
/// ```python
/// w = GGUFWriter(path, "olmoe")
/// w.add_uint32("olmoe.expert_count", 3); w.add_float32("olmoe.rope.freq_base", 10000.0)
/// w.add_bool("t.flag", True); w.add_string("general.name", "tiny")
/// w.add_array("tokenizer.ggml.tokens", ["<s>", "a", "é"]); w.add_array("t.ints", [1, -2, 3])
/// w.add_uint64("t.big", 2**40)
/// w.add_tensor("token_embd.weight", np.arange(12, dtype=np.float32).reshape(3, 4) / 4)
/// w.add_tensor("output_norm.weight", np.linspace(-1, 1, 8).astype(np.float16))
/// x = (np.arange(2*3*32, dtype=np.float32).reshape(3, 2, 32) - 90) / 37
/// w.add_tensor("blk.0.ffn_up_exps.weight", gguf.quants.quantize(x, Q8_0), raw_dtype=Q8_0)
/// ```
const GGUF_PY_FIXTURE: &str = concat!(
    "474755460300000003000000000000000800000000000000140000000000000067656e6572616c2e6172636869746563",
    "747572650800000005000000000000006f6c6d6f6512000000000000006f6c6d6f652e6578706572745f636f756e7404",
    "0000000300000014000000000000006f6c6d6f652e726f70652e667265715f626173650600000000401c460600000000",
    "000000742e666c616707000000010c0000000000000067656e6572616c2e6e616d650800000004000000000000007469",
    "6e791500000000000000746f6b656e697a65722e67676d6c2e746f6b656e730900000008000000030000000000000003",
    "000000000000003c733e0100000000000000610200000000000000c3a90600000000000000742e696e74730900000005",
    "000000030000000000000001000000feffffff030000000500000000000000742e6269670a0000000000000000010000",
    "1100000000000000746f6b656e5f656d62642e7765696768740200000004000000000000000300000000000000000000",
    "00000000000000000012000000000000006f75747075745f6e6f726d2e77656967687401000000080000000000000001",
    "00000040000000000000001800000000000000626c6b2e302e66666e5f75705f657870732e7765696768740300000020",
    "000000000000000200000000000000030000000000000008000000600000000000000000000000000000000000000000",
    "00000000000000000000000000000000000000000000803e0000003f0000403f0000803f0000a03f0000c03f0000e03f",
    "000000400000104000002040000030400000000000000000000000000000000000bcb7b9dbb692b09230db36b739003c",
    "00000000000000000000000000000000e724818284858788898b8c8e8f919293959698999a9c9d9fa0a1a3a4a6a7a9aa",
    "abad5222818385888a8c8e90939597999b9da0a2a4a6a8abadafb1b3b6b8babcbec0c3c5aa1d81868b9095999ea3a8ad",
    "b2b7bcc0c5cacfd4d9dee3e8ecf1f6fb00050a0f1418082015181b1f2226292d3033373a3e4145484c4f5256595d6064",
    "676a6e7175787c7f852346484a4b4d4f51535557585a5c5e6062636567696b6d6e7072747678797b7d7f812558595b5c",
    "5d5e60616263656667686a6b6c6d6f70717274757677797a7b7c7e7f0000000000000000000000000000000000000000",
);

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn reads_a_file_written_by_gguf_py() {
    let f = parse(unhex(GGUF_PY_FIXTURE)).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.architecture().unwrap(), "olmoe");
    assert_eq!(f.require_u64("olmoe.expert_count").unwrap(), 3);
    assert_eq!(f.get("olmoe.expert_count"), Some(&Value::U32(3)));
    assert_eq!(f.require_f64("olmoe.rope.freq_base").unwrap(), 10000.0);
    assert_eq!(f.get("t.flag"), Some(&Value::Bool(true)));
    assert_eq!(f.require_str("general.name").unwrap(), "tiny");
    let tokens = f.get("tokenizer.ggml.tokens").and_then(Value::as_array);
    assert_eq!(
        tokens.and_then(Array::as_strings),
        Some(&["<s>".to_string(), "a".into(), "é".into()][..])
    );
    assert_eq!(
        f.get("t.ints")
            .and_then(Value::as_array)
            .and_then(Array::as_i32s),
        Some(&[1, -2, 3][..])
    );
    assert_eq!(f.get("t.big"), Some(&Value::U64(1 << 40)));
    assert_eq!(f.data_offset() % 32, 0);

    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!((emb.ne(), emb.shape()), (&[4, 3][..], vec![3, 4]));
    let w = f.matrix("token_embd.weight", 3, 4).unwrap();
    let vals: Vec<f32> = w
        .bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(vals, (0..12).map(|i| i as f32 / 4.0).collect::<Vec<_>>());
    let norm = f.vector("output_norm.weight").unwrap();
    assert_eq!((norm[0], norm[7]), (-1.0, 1.0));

    // numpy (3, 2, 32) is ggml ne [32, 2, 3]: expert e is x[e], contiguous
    let exps = f.stacked("blk.0.ffn_up_exps.weight", 3, 2, 32).unwrap();
    for (e, w) in exps.iter().enumerate() {
        assert_eq!(w.dtype, DType::Q8_0);
        let m = w.mat();
        let mut row = vec![0f32; 32];
        for r in 0..2 {
            cosmoe_kernels::dequantize_row(DType::Q8_0, m.row(r), &mut row);
            for (c, &v) in row.iter().enumerate() {
                let x = ((e * 64 + r * 32 + c) as f32 - 90.0) / 37.0;
                assert!((v - x).abs() < 0.02, "expert {e} [{r}, {c}]: {v} vs {x}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile files
// ---------------------------------------------------------------------------------------------

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample();
    for n in 0..bytes.len() {
        assert!(
            matches!(parse(bytes[..n].to_vec()), Err(LoaderError::Gguf { .. })),
            "a prefix of {n} of {} bytes parsed",
            bytes.len()
        );
    }
    assert!(parse(bytes).is_ok());
}

#[test]
fn wrong_magic() {
    let mut g = sample_builder();
    g.magic = *b"GGML";
    assert_err(g.build(), &["magic", "GGML"]);
    assert_err(b"GGU".to_vec(), &["too short"]);
}

#[test]
fn unsupported_versions() {
    for (v, needle) in [
        (0u32, "version 0"),
        (1, "version 1 is not supported"),
        (4, "version 4 is not supported"),
        (u32::MAX, "not supported"),
        (3u32.swap_bytes(), "big-endian"),
        (2u32.swap_bytes(), "big-endian"),
    ] {
        let mut g = sample_builder();
        g.version = v;
        assert_err(g.build(), &[needle]);
    }
}

#[test]
fn absurd_counts_fail_fast() {
    for n in [1u64 << 62, u64::MAX, 1 << 40] {
        let mut g = sample_builder();
        g.n_tensors = Some(n);
        assert_err(g.build(), &["header claims", &n.to_string()]);
        let mut g = sample_builder();
        g.n_kv = Some(n);
        assert_err(g.build(), &["header claims", &n.to_string()]);
    }
    // one more entry than the file holds: runs out of bytes, also an error
    let mut g = sample_builder();
    g.n_kv = Some(g.kv_count + 1);
    gguf_err(g.build());
}

#[test]
fn absurd_string_lengths() {
    // key length
    let mut raw = (1u64 << 62).to_le_bytes().to_vec();
    raw.extend(b"key and then some bytes");
    assert_err(
        Gguf::new().kv_bytes(&raw).build(),
        &["metadata key 0", "claims"],
    );
    // string value length
    let mut rest = ValueType::String.id().to_le_bytes().to_vec();
    rest.extend(u64::MAX.to_le_bytes());
    assert_err(
        Gguf::new().kv_raw(b"general.name", &rest).build(),
        &["general.name", "claims"],
    );
    // tensor name length
    let t = Tensor {
        name: vec![],
        ne: vec![],
        n_dims: None,
        ty: 0,
        data: vec![],
        offset: None,
    };
    let mut bytes = Gguf::new().tensor_raw(t).build();
    bytes[24..32].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert_err(bytes, &["tensor 0 name", "claims"]);
}

#[test]
fn absurd_array_lengths() {
    for (elem, n) in [
        (ValueType::U8, 1u64 << 60),
        (ValueType::F64, 1 << 61),
        (ValueType::String, 1 << 62),
        (ValueType::Array, 1 << 62),
        (ValueType::Bool, u64::MAX),
        (ValueType::U8, 1000),
    ] {
        let mut rest = ValueType::Array.id().to_le_bytes().to_vec();
        rest.extend(elem.id().to_le_bytes());
        rest.extend(n.to_le_bytes());
        rest.extend([0; 64]);
        assert_err(
            Gguf::new().kv_raw(b"tokenizer.ggml.tokens", &rest).build(),
            &["tokenizer.ggml.tokens", "array", &n.to_string()],
        );
    }
}

fn raw_tensor(ne: &[u64], ty: u32) -> Tensor {
    Tensor {
        name: b"t".to_vec(),
        ne: ne.to_vec(),
        n_dims: None,
        ty,
        data: vec![0; 64],
        offset: None,
    }
}

#[test]
fn too_many_dims() {
    let g = Gguf::new().tensor_raw(raw_tensor(&[1, 1, 1, 1, 1], 0));
    assert_err(g.build(), &["tensor `t`", "5 dims"]);
    let mut t = raw_tensor(&[1], 0);
    t.n_dims = Some(u32::MAX);
    assert_err(Gguf::new().tensor_raw(t).build(), &["tensor `t`", "dims"]);
    // 4 dims is fine
    let g = Gguf::new().tensor("t", &[2, 2, 2, 2], GgmlType::I8, vec![0; 16]);
    assert_eq!(
        parse(g.build()).unwrap().tensor("t").unwrap().n_elements(),
        16
    );
}

#[test]
fn absurd_dims_and_element_count_overflow() {
    for ne in [
        &[1u64 << 63][..],            // negative as ggml's int64
        &[u64::MAX],                  // likewise
        &[1 << 32, 1 << 32],          // 2^64 elements
        &[1 << 21, 1 << 21, 1 << 21], // 2^63 elements
        &[1 << 40, 1 << 40, 0],       // product of the non-zero dims overflows
    ] {
        assert_err(
            Gguf::new().tensor_raw(raw_tensor(ne, 0)).build(),
            &["tensor `t`", "overflow"],
        );
    }
    // elements fit, bytes do not: 2^62 F64 values
    assert_err(
        Gguf::new().tensor_raw(raw_tensor(&[1 << 62], 28)).build(),
        &["tensor `t`", "overflow"],
    );
    // fits in every counter, but not in the file
    assert_err(
        Gguf::new().tensor_raw(raw_tensor(&[1 << 61], 0)).build(),
        &["tensor `t`", "past the end"],
    );
}

#[test]
fn rows_must_be_whole_blocks() {
    let g = Gguf::new().tensor_raw(raw_tensor(&[33, 1], GgmlType::Q8_0.id()));
    assert_err(g.build(), &["tensor `t`", "33 values per row", "Q8_0"]);
    let g = Gguf::new().tensor_raw(raw_tensor(&[128, 2], GgmlType::Q4_K.id()));
    assert_err(g.build(), &["tensor `t`", "Q4_K"]);
}

#[test]
fn unknown_type_ids() {
    for id in [4u32, 5, 31, 36, 38, 42, 1000, u32::MAX] {
        let g = Gguf::new().tensor_raw(raw_tensor(&[32], id));
        assert_err(
            g.build(),
            &["tensor `t`", "unknown ggml type", &id.to_string()],
        );
    }
    // unknown metadata value types, at the top and inside an array
    let rest = [13u32.to_le_bytes(), [0; 4]].concat();
    assert_err(
        Gguf::new().kv_raw(b"k", &rest).build(),
        &["key `k`", "unknown value type 13"],
    );
    let mut rest = ValueType::Array.id().to_le_bytes().to_vec();
    rest.extend(u32::MAX.to_le_bytes());
    rest.extend(0u64.to_le_bytes());
    assert_err(
        Gguf::new().kv_raw(b"k", &rest).build(),
        &["key `k`", "unknown value type"],
    );
}

#[test]
fn offsets_past_the_end() {
    // (the builder lays out no data at offsets from 2^20 on)
    for off in [1u64 << 40, !31, 1 << 20] {
        let mut t = raw_tensor(&[4], 0);
        t.offset = Some(off);
        assert_err(Gguf::new().tensor_raw(t).build(), &["tensor `t`"]);
    }
    // the last byte of a tensor past the end
    let mut bytes = Gguf::new()
        .tensor("a", &[8], GgmlType::F32, vec![0; 32])
        .build();
    bytes.pop();
    assert_err(bytes, &["tensor `a`", "past the end"]);
}

#[test]
fn overlapping_tensors() {
    let mut b = raw_tensor(&[16], 0);
    b.name = b"b".to_vec();
    b.offset = Some(32);
    let g = Gguf::new()
        .tensor("a", &[16], GgmlType::F32, vec![0; 64])
        .tensor_raw(b);
    assert_err(g.build(), &["`a`", "`b`", "overlap"]);
    // the same offset twice, in the other order
    let mut b = raw_tensor(&[16], 0);
    b.name = b"b".to_vec();
    b.offset = Some(0);
    let g = Gguf::new()
        .tensor("a", &[8], GgmlType::F32, vec![0; 32])
        .tensor_raw(b);
    assert_err(g.build(), &["overlap"]);
    // touching is fine, and so is any order
    let mut b = raw_tensor(&[8], 0);
    b.name = b"b".to_vec();
    b.offset = Some(0);
    let g = Gguf::new()
        .tensor_raw(Tensor {
            offset: Some(32),
            ..raw_tensor(&[8], 0)
        })
        .tensor_raw(b);
    assert!(parse(g.build()).is_ok());
}

#[test]
fn misaligned_offset() {
    let mut b = raw_tensor(&[1], 0);
    b.offset = Some(36);
    let g = Gguf::new()
        .tensor("a", &[1], GgmlType::F32, vec![0; 4])
        .tensor_raw(b);
    assert_err(g.build(), &["tensor `t`", "offset 36", "alignment 32"]);
}

#[test]
fn bad_alignment() {
    for a in [0u32, 3, 48, u32::MAX] {
        let g = Gguf::new().kv(ALIGNMENT_KEY, Value::U32(a)).tensor(
            "a",
            &[1],
            GgmlType::F32,
            vec![0; 4],
        );
        assert_err(g.build(), &[ALIGNMENT_KEY, "power of two"]);
    }
    let g =
        Gguf::new()
            .kv(ALIGNMENT_KEY, Value::U64(32))
            .tensor("a", &[1], GgmlType::F32, vec![0; 4]);
    assert_err(g.build(), &[ALIGNMENT_KEY, "u32", "u64"]);
    // a huge power of two puts the data section past the end
    let g = Gguf::new().kv(ALIGNMENT_KEY, Value::U32(1 << 31)).tensor(
        "a",
        &[1],
        GgmlType::F32,
        vec![0; 4],
    );
    assert_err(g.build(), &["data section"]);
}

#[test]
fn non_utf8_strings() {
    let bad = b"k\xff\xfe";
    assert_err(
        Gguf::new()
            .kv("k", Value::U8(0))
            .kv_raw(bad, &[0, 0, 0, 0, 1])
            .build(),
        &["metadata key 1", "UTF-8"],
    );
    let mut rest = ValueType::String.id().to_le_bytes().to_vec();
    enc_str(&mut rest, b"\xc3\x28");
    assert_err(
        Gguf::new().kv_raw(b"name", &rest).build(),
        &["key `name`", "UTF-8"],
    );
    let mut rest = ValueType::Array.id().to_le_bytes().to_vec();
    rest.extend(ValueType::String.id().to_le_bytes());
    rest.extend(2u64.to_le_bytes());
    enc_str(&mut rest, b"ok");
    enc_str(&mut rest, b"\x80");
    assert_err(
        Gguf::new().kv_raw(b"tokens", &rest).build(),
        &["key `tokens`", "element 1", "UTF-8"],
    );
    let mut t = raw_tensor(&[1], 0);
    t.name = b"w\xff".to_vec();
    assert_err(
        Gguf::new().tensor_raw(t).build(),
        &["tensor 0 name", "UTF-8"],
    );
}

/// An array nested `depth` deep (1 = a plain array of one u8).
fn nested(depth: usize) -> Vec<u8> {
    let mut rest = ValueType::Array.id().to_le_bytes().to_vec();
    for _ in 1..depth {
        rest.extend(ValueType::Array.id().to_le_bytes());
        rest.extend(1u64.to_le_bytes());
    }
    rest.extend(ValueType::U8.id().to_le_bytes());
    rest.extend(1u64.to_le_bytes());
    rest.push(42);
    rest
}

#[test]
fn deep_nesting() {
    let f = parse(
        Gguf::new()
            .kv_raw(b"deep", &nested(MAX_ARRAY_DEPTH))
            .build(),
    )
    .unwrap();
    let mut a = f.get("deep").and_then(Value::as_array).unwrap();
    for _ in 1..MAX_ARRAY_DEPTH {
        a = &a.as_arrays().unwrap()[0];
    }
    assert_eq!(a.as_u8s(), Some(&[42u8][..]));
    for depth in [MAX_ARRAY_DEPTH + 1, 100_000] {
        assert_err(
            Gguf::new().kv_raw(b"deep", &nested(depth)).build(),
            &["key `deep`", "nested"],
        );
    }
}

#[test]
fn duplicates() {
    let g = Gguf::new()
        .kv("general.name", Value::U8(1))
        .kv("general.name", Value::U8(2));
    assert_err(g.build(), &["duplicate metadata key `general.name`"]);
    let g = Gguf::new()
        .tensor("w", &[1], GgmlType::F32, vec![0; 4])
        .tensor("w", &[1], GgmlType::F32, vec![0; 4]);
    assert_err(g.build(), &["duplicate tensor name `w`"]);
}

#[test]
fn empty_keys_bad_bools_and_long_names() {
    assert_err(
        Gguf::new().kv("", Value::U32(1)).build(),
        &["key 0 is empty"],
    );
    let rest = [ValueType::Bool.id().to_le_bytes().as_slice(), &[2]].concat();
    assert_err(
        Gguf::new().kv_raw(b"b", &rest).build(),
        &["key `b`", "bool", "not 0 or 1"],
    );
    let mut rest = ValueType::Array.id().to_le_bytes().to_vec();
    rest.extend(ValueType::Bool.id().to_le_bytes());
    rest.extend(2u64.to_le_bytes());
    rest.extend([1, 255]);
    assert_err(Gguf::new().kv_raw(b"b", &rest).build(), &["key `b`", "255"]);
    let name63 = "n".repeat(63);
    let ok = Gguf::new().tensor(&name63, &[1], GgmlType::F32, vec![0; 4]);
    assert!(parse(ok.build()).is_ok());
    let name64 = "n".repeat(64);
    let long = Gguf::new().tensor(&name64, &[1], GgmlType::F32, vec![0; 4]);
    assert_err(long.build(), &["64 bytes"]);
}

/// xorshift64*: a fixed-seed generator, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Uses everything a parsed file offers; none of it may panic.
fn exercise(f: &GgufFile) {
    for (_, v) in f.metadata() {
        let _ = v.to_string();
    }
    for t in f.tensors() {
        let _ = f.tensor_bytes(t);
        let _ = (t.shape(), t.n_elements());
        let _ = f.weight(t.name());
        let _ = f.vector(t.name());
        if let [n, rows, cols] = t.shape()[..] {
            let _ = f.stacked(t.name(), n, rows, cols);
        }
        let _ = f.n_experts(t.name());
        let _ = f.matrix(t.name(), 1, 1);
        let _ = f.expert_file_range(t.name(), 1);
    }
}

#[test]
fn random_mutations_never_panic() {
    let base = sample();
    let header_len = parse(base.clone()).unwrap().data_offset();
    let interesting: [u64; 8] = [0, 1, 31, 32, 1 << 31, 1 << 62, u64::MAX, u64::MAX / 34];
    // COSMOE_GGUF_MUTATIONS / COSMOE_GGUF_SEED run it longer or elsewhere (a failure names both)
    let env = |k: &str, default: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let iters = env("COSMOE_GGUF_MUTATIONS", 20_000);
    let seed = env("COSMOE_GGUF_SEED", 0x5eed_cafe_f00d_d00d) | 1;
    let mut rng = Rng(seed);
    let (mut ok, mut err) = (0, 0);
    for iter in 0..iters {
        let mut b = base.clone();
        for _ in 0..1 + rng.below(3) {
            if b.is_empty() {
                break;
            }
            // mostly the header, where the structure is
            let at = if rng.below(10) < 9 {
                rng.below(header_len.min(b.len()))
            } else {
                rng.below(b.len())
            };
            match rng.below(4) {
                0 => b[at] ^= 1 << rng.below(8),
                1 => b[at] = rng.next() as u8,
                2 => {
                    let v = interesting[rng.below(interesting.len())].to_le_bytes();
                    let n = (b.len() - at).min(8);
                    b[at..at + n].copy_from_slice(&v[..n]);
                }
                _ => {
                    let cut = rng.below(b.len());
                    b.truncate(cut.max(at));
                }
            }
        }
        let r = std::panic::catch_unwind(|| parse(b.clone()).map(|f| exercise(&f)));
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(_)) => err += 1,
            Err(_) => panic!("iteration {iter} of seed {seed} panicked"),
        }
    }
    // the run exercised both outcomes
    assert!(
        iters < 4000 || (ok > iters / 100 && err > iters / 4),
        "ok {ok}, err {err}"
    );
}
