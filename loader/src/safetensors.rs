//! `*.safetensors` checkpoints over memory maps.
//!
//! A checkpoint is one `model.safetensors`, or shards listed by `model.safetensors.index.json`, or
//! (failing both) every `*.safetensors` file in the folder. Headers are parsed and validated by the
//! `safetensors` crate (header length within the file, offsets contiguous and matching dtype x shape,
//! data ending at the end of the file); tensors are then used in place as [`Bytes`] over the map.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ::safetensors::{Dtype, SafeTensors};
use cosmoe_kernels::{DType, MatRef};
use memmap2::Mmap;

use crate::{Bytes, LoaderError, Result};

/// Where one tensor lives.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    file: usize,
    /// Byte range inside the file.
    start: usize,
    end: usize,
}

impl TensorInfo {
    pub fn n_bytes(&self) -> usize {
        self.end - self.start
    }
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A validated 2-D weight matrix `(rows, cols)` backed by shared bytes.
#[derive(Clone, Debug)]
pub struct Weight {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub bytes: Bytes,
}

impl Weight {
    /// Checks that `bytes` holds exactly a `(rows, cols)` matrix of `dtype`.
    pub fn new(dtype: DType, rows: usize, cols: usize, bytes: Bytes) -> Option<Weight> {
        MatRef::new(dtype, rows, cols, &bytes).ok()?;
        Some(Weight {
            dtype,
            rows,
            cols,
            bytes,
        })
    }

    /// The matrix as the kernels take it.
    pub fn mat(&self) -> MatRef<'_> {
        MatRef::new_prechecked(self.dtype, self.rows, self.cols, &self.bytes)
    }

    /// This matrix converted to `dtype` (through f32, with the reference quantisers), in a new owned
    /// buffer; `None` if `cols` is not a whole number of `dtype` blocks or cosmoe has no quantiser
    /// for `dtype` ([`DType::has_quantizer`]).
    pub fn converted(&self, dtype: DType) -> Option<Weight> {
        if dtype == self.dtype {
            return Some(self.clone());
        }
        let row_bytes = dtype.row_bytes(self.cols)?;
        let mut out = Vec::with_capacity(row_bytes * self.rows);
        let mut row = vec![0f32; self.cols];
        let m = self.mat();
        for r in 0..self.rows {
            cosmoe_kernels::dequantize_row(self.dtype, m.row(r), &mut row);
            out.extend_from_slice(&cosmoe_kernels::quantize(dtype, &row, self.cols).ok()?);
        }
        Weight::new(dtype, self.rows, self.cols, Bytes::from_vec(out))
    }

    /// Rows `start..start + n` (for projections fused in one tensor, such as GraniteMoE's gate|up).
    pub fn rows_slice(&self, start: usize, n: usize) -> Option<Weight> {
        let rb = self.dtype.row_bytes(self.cols)?;
        let bytes = self.bytes.slice(start * rb..(start + n) * rb)?;
        Weight::new(self.dtype, n, self.cols, bytes)
    }
}

struct ShardFile {
    path: PathBuf,
    bytes: Bytes,
}

/// All tensors of a checkpoint, by name.
pub struct Checkpoint {
    dir: PathBuf,
    files: Vec<ShardFile>,
    tensors: HashMap<String, TensorInfo>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> LoaderError + '_ {
    move |err| LoaderError::Io {
        path: path.to_owned(),
        err,
    }
}

impl Checkpoint {
    /// Opens the safetensors weights of the folder `dir` (or the single file `dir`).
    pub fn open(dir: &Path) -> Result<Checkpoint> {
        if dir.is_file() {
            let mut ck = Checkpoint {
                dir: dir.parent().unwrap_or(Path::new(".")).to_owned(),
                files: Vec::new(),
                tensors: HashMap::new(),
            };
            ck.add_file(dir, None)?;
            return Ok(ck);
        }
        let mut ck = Checkpoint {
            dir: dir.to_owned(),
            files: Vec::new(),
            tensors: HashMap::new(),
        };
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        if index.is_file() {
            let map = read_index(&index)?;
            let mut shards: Vec<&str> = map.values().map(String::as_str).collect();
            shards.sort_unstable();
            shards.dedup();
            for shard in shards {
                let expected: Vec<&str> = map
                    .iter()
                    .filter(|(_, f)| f.as_str() == shard)
                    .map(|(n, _)| n.as_str())
                    .collect();
                let path = shard_path(dir, &index, shard)?;
                ck.add_file(&path, Some(&expected))?;
            }
        } else if single.is_file() {
            ck.add_file(&single, None)?;
        } else {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io_err(dir))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            paths.sort();
            for p in &paths {
                ck.add_file(p, None)?;
            }
        }
        if ck.tensors.is_empty() && ck.files.is_empty() {
            return Err(LoaderError::NoWeights {
                path: dir.to_owned(),
            });
        }
        Ok(ck)
    }

    /// Maps one file, validates its header and registers its tensors. With `expected` (from an
    /// index), every listed tensor must be in this file.
    fn add_file(&mut self, path: &Path, expected: Option<&[&str]>) -> Result<()> {
        let file = File::open(path).map_err(io_err(path))?;
        // SAFETY: the map is read-only and private to this process. Another process truncating or
        // rewriting the file while it is mapped is outside what cosmoe can guard against here
        // (the same contract as every mmap-based loader); the offsets used below are validated.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
        self.add_bytes(path, Bytes::new(Arc::new(map)), expected)
    }

    /// A checkpoint of one safetensors file held in memory (`path` names it in messages); for tests
    /// and fuzzing.
    pub fn from_bytes(bytes: Bytes, path: &Path) -> Result<Checkpoint> {
        let mut ck = Checkpoint {
            dir: path.to_owned(),
            files: Vec::new(),
            tensors: HashMap::new(),
        };
        ck.add_bytes(path, bytes, None)?;
        Ok(ck)
    }

    fn add_bytes(&mut self, path: &Path, map: Bytes, expected: Option<&[&str]>) -> Result<()> {
        let st_err = |msg: String| LoaderError::Safetensors {
            path: path.to_owned(),
            msg,
        };
        if map.len() < 8 {
            return Err(st_err(format!(
                "{} bytes is too short for a header",
                map.len()
            )));
        }
        let (header_len, meta) =
            SafeTensors::read_metadata(&map[..]).map_err(|e| st_err(e.to_string()))?;
        let data_start = 8 + header_len;
        let file_idx = self.files.len();
        for (name, info) in meta.tensors() {
            let dtype = match info.dtype {
                Dtype::F32 => DType::F32,
                Dtype::F16 => DType::F16,
                Dtype::BF16 => DType::BF16,
                other => {
                    return Err(LoaderError::UnsupportedDtype {
                        path: path.to_owned(),
                        tensor: name,
                        dtype: format!("{other:?}"),
                    })
                }
            };
            let (b, e) = info.data_offsets;
            let (start, end) = (data_start + b, data_start + e);
            if b > e || end > map.len() {
                return Err(st_err(format!("tensor `{name}` lies outside the file")));
            }
            if let Some(prev) = self.tensors.get(&name) {
                return Err(LoaderError::DuplicateTensor {
                    path: path.to_owned(),
                    other: self.files[prev.file].path.clone(),
                    tensor: name,
                });
            }
            let t = TensorInfo {
                name: name.clone(),
                dtype,
                shape: info.shape.clone(),
                file: file_idx,
                start,
                end,
            };
            self.tensors.insert(name, t);
        }
        if let Some(expected) = expected {
            for name in expected {
                if self.tensors.get(*name).is_none_or(|t| t.file != file_idx) {
                    return Err(LoaderError::MissingTensor {
                        path: path.to_owned(),
                        tensor: (*name).to_owned(),
                    });
                }
            }
        }
        self.files.push(ShardFile {
            path: path.to_owned(),
            bytes: map,
        });
        Ok(())
    }

    /// The checkpoint's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The paths of the weight files.
    /// Each weight file with its whole memory map.
    pub fn file_maps(&self) -> impl Iterator<Item = (&Path, &[u8])> {
        self.files.iter().map(|f| (f.path.as_path(), &*f.bytes))
    }

    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.path.as_path())
    }

    pub fn tensors(&self) -> impl Iterator<Item = &TensorInfo> {
        self.tensors.values()
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The first of `names` present in the checkpoint (for names that changed between versions).
    pub fn first_present<'n>(&self, names: &[&'n str]) -> Option<&'n str> {
        names.iter().copied().find(|n| self.contains(n))
    }

    fn path_of(&self, t: &TensorInfo) -> PathBuf {
        self.files[t.file].path.clone()
    }

    fn get(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .get(name)
            .ok_or_else(|| LoaderError::MissingTensor {
                path: self.dir.clone(),
                tensor: name.to_owned(),
            })
    }

    /// A tensor of exactly `shape`, as bytes.
    pub fn bytes(&self, name: &str, shape: &[usize]) -> Result<(DType, Bytes)> {
        let t = self.get(name)?;
        if t.shape != shape {
            return Err(LoaderError::Shape {
                path: self.path_of(t),
                tensor: name.to_owned(),
                got: t.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        let file = &self.files[t.file];
        let bytes = file
            .bytes
            .slice(t.start..t.end)
            .ok_or_else(|| LoaderError::Safetensors {
                path: file.path.clone(),
                msg: format!("tensor `{name}` lies outside the file"),
            })?;
        Ok((t.dtype, bytes))
    }

    /// A 2-D `(rows, cols)` matrix, used in place.
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Weight> {
        let (dtype, bytes) = self.bytes(name, &[rows, cols])?;
        Weight::new(dtype, rows, cols, bytes).ok_or_else(|| self.shape_err(name, &[rows, cols]))
    }

    /// A 3-D `(n, rows, cols)` tensor as `n` matrices (fused expert weights).
    pub fn stacked(&self, name: &str, n: usize, rows: usize, cols: usize) -> Result<Vec<Weight>> {
        let (dtype, bytes) = self.bytes(name, &[n, rows, cols])?;
        let per = dtype
            .row_bytes(cols)
            .and_then(|rb| rb.checked_mul(rows))
            .ok_or_else(|| self.shape_err(name, &[n, rows, cols]))?;
        (0..n)
            .map(|i| {
                bytes
                    .slice(i * per..(i + 1) * per)
                    .and_then(|b| Weight::new(dtype, rows, cols, b))
                    .ok_or_else(|| self.shape_err(name, &[n, rows, cols]))
            })
            .collect()
    }

    /// A 1-D tensor of `len` values, converted to `f32` (norm weights, biases).
    pub fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let (dtype, bytes) = self.bytes(name, &[len])?;
        let mut out = vec![0f32; len];
        cosmoe_kernels::dequantize_row(dtype, &bytes, &mut out);
        Ok(out)
    }

    fn shape_err(&self, name: &str, expected: &[usize]) -> LoaderError {
        let t = self.tensors.get(name);
        LoaderError::Shape {
            path: t
                .map(|t| self.path_of(t))
                .unwrap_or_else(|| self.dir.clone()),
            tensor: name.to_owned(),
            got: t.map(|t| t.shape.clone()).unwrap_or_default(),
            expected: expected.to_vec(),
        }
    }
}

/// `weight_map` of `model.safetensors.index.json`.
fn read_index(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|err| LoaderError::Json {
        path: path.to_owned(),
        err,
    })?;
    let bad = |msg: &str| LoaderError::BadValue {
        path: path.to_owned(),
        key: "weight_map".into(),
        msg: msg.into(),
    };
    let map = v
        .get("weight_map")
        .ok_or_else(|| LoaderError::MissingKey {
            path: path.to_owned(),
            key: "weight_map".into(),
        })?
        .as_object()
        .ok_or_else(|| bad("expected an object of tensor name -> file"))?;
    map.iter()
        .map(|(k, v)| {
            v.as_str()
                .map(|f| (k.clone(), f.to_owned()))
                .ok_or_else(|| bad("file names must be strings"))
        })
        .collect()
}

/// A shard named by the index: a plain file name in the same folder (no paths, so an index cannot
/// point outside the checkpoint).
fn shard_path(dir: &Path, index: &Path, shard: &str) -> Result<PathBuf> {
    let p = Path::new(shard);
    let plain = p.components().count() == 1 && p.file_name().is_some();
    if !plain {
        return Err(LoaderError::BadValue {
            path: index.to_owned(),
            key: "weight_map".into(),
            msg: format!("shard `{shard}` is not a file name in the checkpoint folder"),
        });
    }
    Ok(dir.join(p))
}
