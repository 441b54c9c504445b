//! The GGUF writer against the reader: every value type, alignments, tensor data and padding; and the
//! writer's refusals.

use cosmoe_loader::gguf::{Array, Value};
use cosmoe_loader::gguf_writer::GgufWriter;
use cosmoe_loader::{GgmlType, GgufFile};

fn all_values() -> Vec<(&'static str, Value)> {
    vec![
        ("a.u8", Value::U8(7)),
        ("a.i8", Value::I8(-7)),
        ("a.u16", Value::U16(700)),
        ("a.i16", Value::I16(-700)),
        ("a.u32", Value::U32(70_000)),
        ("a.i32", Value::I32(-70_000)),
        ("a.f32", Value::F32(1.5)),
        ("a.bool", Value::Bool(true)),
        ("a.str", Value::String("héllo ▁".into())),
        ("a.u64", Value::U64(1 << 40)),
        ("a.i64", Value::I64(-(1 << 40))),
        ("a.f64", Value::F64(-2.25)),
        (
            "a.arr_str",
            Value::Array(Array::String(vec!["x".into(), "".into()])),
        ),
        ("a.arr_f32", Value::Array(Array::F32(vec![0.5, -1.0]))),
        ("a.arr_i32", Value::Array(Array::I32(vec![1, -2, 3]))),
        ("a.arr_bool", Value::Array(Array::Bool(vec![true, false]))),
        (
            "a.arr_arr",
            Value::Array(Array::Array(vec![
                Array::U8(vec![1, 2]),
                Array::String(vec!["y".into()]),
            ])),
        ),
    ]
}

#[test]
fn written_files_read_back() {
    for alignment in [32u32, 64, 4096] {
        let mut w = GgufWriter::new();
        if alignment != 32 {
            w.set_alignment(alignment).unwrap();
        }
        for (k, v) in all_values() {
            w.set(k, v);
        }
        w.set("general.architecture", Value::String("llama".into()));
        // Overwriting keeps one entry.
        w.set("a.u8", Value::U8(8));
        w.add_tensor("t.f32", &[3, 2], GgmlType::F32).unwrap();
        w.add_tensor("t.q8", &[64, 3], GgmlType::Q8_0).unwrap();
        w.add_tensor("t.f16", &[5], GgmlType::F16).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("x.gguf");
        let file = std::fs::File::create(&path).unwrap();
        let n = w
            .write(&path, file, |i, t, sink| {
                let bytes: Vec<u8> = (0..t.n_bytes).map(|b| (b * 7 + i) as u8).collect();
                // In two pieces, as a converter streams rows.
                sink.put(&bytes[..t.n_bytes / 2])?;
                sink.put(&bytes[t.n_bytes / 2..])
            })
            .unwrap();
        assert_eq!(n, w.file_size());
        assert_eq!(n, std::fs::metadata(&path).unwrap().len());

        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), alignment as usize);
        for (k, v) in all_values() {
            let want = if k == "a.u8" { Value::U8(8) } else { v };
            assert_eq!(f.get(k), Some(&want), "{k}");
        }
        assert_eq!(f.tensors().len(), 3);
        for (i, t) in f.tensors().iter().enumerate() {
            assert_eq!(t.offset() % alignment as usize, 0);
            let want: Vec<u8> = (0..t.n_bytes()).map(|b| (b * 7 + i) as u8).collect();
            assert_eq!(&*f.tensor_bytes(t).unwrap(), &want[..], "{}", t.name());
        }
        assert_eq!(f.info("t.q8").unwrap().ne(), &[64, 3]);
        assert_eq!(f.info("t.q8").unwrap().n_bytes(), 3 * 2 * 34);
    }
}

#[test]
fn writer_refuses_bad_plans_and_wrong_data() {
    let mut w = GgufWriter::new();
    assert!(w.set_alignment(48).is_err());
    w.add_tensor("a", &[32, 2], GgmlType::Q4_0).unwrap();
    let e = w
        .add_tensor("a", &[32], GgmlType::F32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`a`") && e.contains("twice"), "{e}");
    let e = w
        .add_tensor("b", &[33, 2], GgmlType::Q8_0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("whole number of Q8_0 blocks"), "{e}");
    assert!(w.add_tensor("c", &[0, 2], GgmlType::F32).is_err());
    assert!(w.add_tensor("d", &[], GgmlType::F32).is_err());
    assert!(w
        .add_tensor("e", &[usize::MAX / 2, 4], GgmlType::F32)
        .is_err());

    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.gguf");
    // Too few bytes for a tensor.
    let e = w
        .write(&path, Vec::new(), |_, _, sink| sink.put(&[0; 10]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`a`") && e.contains("expected 36"), "{e}");
    // Too many.
    let e = w
        .write(&path, Vec::new(), |_, _, sink| sink.put(&[0; 37]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`a`") && e.contains("36 bytes"), "{e}");
}
