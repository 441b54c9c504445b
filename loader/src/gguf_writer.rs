//! Writing GGUF version 3 files, streamed: the header (metadata and tensor infos) is laid out from the
//! planned tensors, then each tensor's bytes are produced one at a time by the caller, so a model is
//! never held in RAM whole.
//!
//! The layout is what llama.cpp's `gguf.cpp` accepts (and what [`crate::gguf`] reads back):
//!
//! ```text
//! "GGUF" | version u32 = 3 | n_tensors u64 | n_kv u64
//! n_kv x      (key: u64 len + bytes) (type u32) (value)
//! n_tensors x (name) (n_dims u32) (ne[i] u64, innermost first) (ggml type u32) (offset u64)
//! zero padding to `general.alignment`
//! tensor data, in tensor-info order, each padded with zeros to the alignment
//! ```
//!
//! Offsets are relative to the start of the data section and packed exactly as llama.cpp requires
//! (`offset_i = sum_{j<i} pad(bytes_j)`). `general.alignment` is written as a u32 whenever the alignment
//! is not ggml's default of 32.

use std::io::{self, Write};
use std::path::Path;

use crate::gguf::{Array, GgmlType, Value};
use crate::{LoaderError, Result};

const DEFAULT_ALIGNMENT: usize = 32;

/// One tensor of the file to be written.
#[derive(Clone, Debug)]
pub struct TensorPlan {
    pub name: String,
    /// ggml dimensions, innermost (contiguous) first: a `(rows, cols)` matrix is `[cols, rows]`.
    pub ne: Vec<usize>,
    pub ggml_type: GgmlType,
    /// Bytes of data (without padding).
    pub n_bytes: usize,
}

/// A GGUF file being planned: metadata and tensor shapes; [`GgufWriter::write`] streams it out.
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorPlan>,
    alignment: usize,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// Sets a metadata key, replacing an earlier value of the same key (as gguf-py does).
    pub fn set(&mut self, key: &str, value: Value) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.metadata.push((key.to_owned(), value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// Aligns every tensor to `alignment` bytes (a power of two) and records it as `general.alignment`.
    pub fn set_alignment(&mut self, alignment: u32) -> Result<()> {
        if !alignment.is_power_of_two() {
            return Err(plan_error(format!(
                "alignment {alignment} is not a power of two"
            )));
        }
        self.alignment = alignment as usize;
        self.set("general.alignment", Value::U32(alignment));
        Ok(())
    }

    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Plans a tensor of ggml dimensions `ne` (innermost first). Refuses duplicate names, empty or
    /// overflowing shapes, and rows that are not a whole number of the type's blocks.
    pub fn add_tensor(&mut self, name: &str, ne: &[usize], ggml_type: GgmlType) -> Result<()> {
        let bad = |msg: String| plan_error(format!("tensor `{name}`: {msg}"));
        if self.tensors.iter().any(|t| t.name == name) {
            return Err(bad("planned twice".into()));
        }
        if ne.is_empty() || ne.len() > 4 || ne.contains(&0) {
            return Err(bad(format!("bad shape {ne:?}")));
        }
        let n = ne
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(format!("shape {ne:?} overflows")))?;
        if !ne[0].is_multiple_of(ggml_type.block_len()) {
            return Err(bad(format!(
                "rows of {} values are not a whole number of {ggml_type} blocks of {}",
                ne[0],
                ggml_type.block_len()
            )));
        }
        let n_bytes = ggml_type
            .bytes_of(n)
            .ok_or_else(|| bad(format!("shape {ne:?} overflows")))?;
        self.tensors.push(TensorPlan {
            name: name.to_owned(),
            ne: ne.to_vec(),
            ggml_type,
            n_bytes,
        });
        Ok(())
    }

    pub fn tensors(&self) -> &[TensorPlan] {
        &self.tensors
    }

    /// Bytes of the whole file once written.
    pub fn file_size(&self) -> u64 {
        let data: u64 = self
            .tensors
            .iter()
            .map(|t| pad(t.n_bytes, self.alignment) as u64)
            .sum();
        pad(self.header().len(), self.alignment) as u64 + data
    }

    /// The header: magic, counts, metadata and tensor infos (unpadded).
    fn header(&self) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(b"GGUF");
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut h, k);
            h.extend_from_slice(&v.value_type().id().to_le_bytes());
            put_value(&mut h, v);
        }
        let mut offset = 0usize;
        for t in &self.tensors {
            put_str(&mut h, &t.name);
            h.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
            for &d in &t.ne {
                h.extend_from_slice(&(d as u64).to_le_bytes());
            }
            h.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            h.extend_from_slice(&(offset as u64).to_le_bytes());
            offset += pad(t.n_bytes, self.alignment);
        }
        h
    }

    /// Writes the file to `out`: the header, then for each planned tensor (in order) whatever `data`
    /// writes into the [`TensorSink`] it is given, which must be exactly the tensor's bytes. `path`
    /// names the file in errors. Returns the bytes written.
    pub fn write<W, F>(&self, path: &Path, out: W, mut data: F) -> Result<u64>
    where
        W: Write,
        F: FnMut(usize, &TensorPlan, &mut TensorSink<'_>) -> Result<()>,
    {
        let io = |err: io::Error| LoaderError::Io {
            path: path.to_owned(),
            err,
        };
        let mut out = Counting { inner: out, n: 0 };
        let header = self.header();
        out.write_all(&header).map_err(io)?;
        zeros(&mut out, pad(header.len(), self.alignment) - header.len()).map_err(io)?;
        for (i, t) in self.tensors.iter().enumerate() {
            let mut sink = TensorSink {
                out: &mut out,
                written: 0,
                expected: t.n_bytes,
                path,
                tensor: &t.name,
            };
            data(i, t, &mut sink)?;
            if sink.written != t.n_bytes {
                return Err(LoaderError::GgufTensor {
                    path: path.to_owned(),
                    tensor: t.name.clone(),
                    msg: format!("got {} bytes of data, expected {}", sink.written, t.n_bytes),
                });
            }
            zeros(&mut out, pad(t.n_bytes, self.alignment) - t.n_bytes).map_err(io)?;
        }
        out.flush().map_err(io)?;
        Ok(out.n)
    }
}

/// Where one tensor's bytes go; refuses more than the tensor holds.
pub struct TensorSink<'a> {
    out: &'a mut dyn Write,
    written: usize,
    expected: usize,
    path: &'a Path,
    tensor: &'a str,
}

impl TensorSink<'_> {
    pub fn put(&mut self, bytes: &[u8]) -> Result<()> {
        if self.written + bytes.len() > self.expected {
            return Err(LoaderError::GgufTensor {
                path: self.path.to_owned(),
                tensor: self.tensor.to_owned(),
                msg: format!(
                    "more than its {} bytes of data were produced",
                    self.expected
                ),
            });
        }
        self.out.write_all(bytes).map_err(|err| LoaderError::Io {
            path: self.path.to_owned(),
            err,
        })?;
        self.written += bytes.len();
        Ok(())
    }

    /// Bytes still to come.
    pub fn remaining(&self) -> usize {
        self.expected - self.written
    }
}

fn plan_error(msg: String) -> LoaderError {
    LoaderError::Gguf {
        path: "(file being written)".into(),
        msg,
    }
}

fn pad(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

fn zeros(out: &mut impl Write, n: usize) -> io::Result<()> {
    const Z: [u8; 4096] = [0; 4096];
    let mut left = n;
    while left > 0 {
        let k = left.min(Z.len());
        out.write_all(&Z[..k])?;
        left -= k;
    }
    Ok(())
}

struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn put_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn put_value(h: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => h.push(*x),
        Value::I8(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => h.push(u8::from(*x)),
        Value::String(s) => put_str(h, s),
        Value::Array(a) => put_array(h, a),
        Value::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
    }
}

fn put_array(h: &mut Vec<u8>, a: &Array) {
    h.extend_from_slice(&a.elem_type().id().to_le_bytes());
    h.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! each {
        ($v:expr, $f:expr) => {
            for x in $v {
                $f(h, x)
            }
        };
    }
    match a {
        Array::U8(v) => h.extend_from_slice(v),
        Array::I8(v) => each!(v, |h: &mut Vec<u8>, x: &i8| h
            .extend_from_slice(&x.to_le_bytes())),
        Array::U16(v) => each!(v, |h: &mut Vec<u8>, x: &u16| h
            .extend_from_slice(&x.to_le_bytes())),
        Array::I16(v) => each!(v, |h: &mut Vec<u8>, x: &i16| h
            .extend_from_slice(&x.to_le_bytes())),
        Array::U32(v) => each!(v, |h: &mut Vec<u8>, x: &u32| h
            .extend_from_slice(&x.to_le_bytes())),
        Array::I32(v) => each!(v, |h: &mut Vec<u8>, x: &i32| h
            .extend_from_slice(&x.to_le_bytes())),
        Array::F32(v) => each!(v, |h: &mut Vec<u8>, x: &f32| h
            .extend_from_slice(&x.to_le_bytes())),
        Array::Bool(v) => each!(v, |h: &mut Vec<u8>, x: &bool| h.push(u8::from(*x))),
        Array::String(v) => each!(v, |h: &mut Vec<u8>, s: &String| put_str(h, s)),
        Array::Array(v) => each!(v, |h: &mut Vec<u8>, a: &Array| put_array(h, a)),
        Array::U64(v) => each!(v, |h: &mut Vec<u8>, x: &u64| h
            .extend_from_slice(&x.to_le_bytes())),
        Array::I64(v) => each!(v, |h: &mut Vec<u8>, x: &i64| h
            .extend_from_slice(&x.to_le_bytes())),
        Array::F64(v) => each!(v, |h: &mut Vec<u8>, x: &f64| h
            .extend_from_slice(&x.to_le_bytes())),
    }
}
