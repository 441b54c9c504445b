//! One interface over the files a model's weights come from (a safetensors checkpoint, a GGUF file), so
//! the model builder does not care which it reads. Shapes are always row-major: `(rows, cols)` for a
//! matrix, `(n, rows, cols)` for stacked experts, whatever order the file stores its dimensions in.

use std::path::{Path, PathBuf};

use crate::{Checkpoint, GgufFile, LoaderError, Result, Weight};

/// What a model path names, told by content rather than by name: a GGUF file by its magic (whatever
/// its extension), a checkpoint folder by its config.json, and a file of a checkpoint folder
/// (`config.json`, a `.safetensors` shard, the tokenizer...) as that folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelPath {
    Gguf(PathBuf),
    Checkpoint(PathBuf),
}

impl ModelPath {
    pub fn resolve(path: &Path) -> Result<ModelPath> {
        let not_a_model = |msg: &str| LoaderError::NotAModel {
            path: path.to_owned(),
            msg: msg.into(),
        };
        let meta = std::fs::metadata(path).map_err(|err| LoaderError::Io {
            path: path.to_owned(),
            err,
        })?;
        if meta.is_dir() {
            if path.join("config.json").is_file() {
                return Ok(ModelPath::Checkpoint(path.to_owned()));
            }
            return Err(not_a_model("a folder without config.json"));
        }
        if !meta.is_file() {
            return Err(not_a_model("not a regular file"));
        }
        if GgufFile::is_gguf_path(path) {
            return Ok(ModelPath::Gguf(path.to_owned()));
        }
        let dir = match path.parent() {
            Some(d) if d.as_os_str().is_empty() => Path::new("."),
            Some(d) => d,
            None => Path::new("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let member =
            name.ends_with(".safetensors") || name.ends_with(".json") || name == "tokenizer.model";
        if member && dir.join("config.json").is_file() {
            return Ok(ModelPath::Checkpoint(dir.to_owned()));
        }
        if name.ends_with(".gguf") {
            return Err(not_a_model(
                "named .gguf, but its first bytes are not `GGUF`",
            ));
        }
        if member {
            return Err(not_a_model(
                "a checkpoint file, but its folder has no config.json",
            ));
        }
        Err(not_a_model("neither a GGUF file nor part of a checkpoint"))
    }

    pub fn path(&self) -> &Path {
        match self {
            ModelPath::Gguf(p) | ModelPath::Checkpoint(p) => p,
        }
    }
}

/// What `inspect` shows of one tensor.
#[derive(Clone, Debug)]
pub struct TensorStat {
    pub name: String,
    /// Storage type as the file names it (`F32`, `BF16`, `Q4_0`, `Q4_K`...).
    pub dtype: String,
    pub n_elements: usize,
    pub n_bytes: usize,
}

pub trait WeightSource: Send + Sync {
    /// The file or folder, for messages.
    fn origin(&self) -> &Path;
    fn contains(&self, name: &str) -> bool;
    /// A 2-D `(rows, cols)` matrix, in place.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Weight>;
    /// A 3-D `(n, rows, cols)` tensor as `n` matrices, in place.
    fn stacked(&self, name: &str, n: usize, rows: usize, cols: usize) -> Result<Vec<Weight>>;
    /// A 1-D tensor of `len` values converted to `f32`.
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>>;
    /// Every tensor, for reports.
    fn tensor_stats(&self) -> Vec<TensorStat>;
    /// Number of weight files.
    fn n_files(&self) -> usize;
    /// The file and offset where `bytes` lie, if they are a window onto one of this source's files
    /// (so a cache can read them with `pread` instead of going through the map).
    fn locate(&self, bytes: &[u8]) -> Option<(PathBuf, u64)>;
}

/// Offset of `inner` within `outer`, if it lies wholly inside.
fn offset_in(outer: &[u8], inner: &[u8]) -> Option<u64> {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    (i >= o && i + inner.len() <= o + outer.len()).then(|| (i - o) as u64)
}

impl WeightSource for Checkpoint {
    fn origin(&self) -> &Path {
        self.dir()
    }
    fn contains(&self, name: &str) -> bool {
        Checkpoint::contains(self, name)
    }
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Weight> {
        Checkpoint::matrix(self, name, rows, cols)
    }
    fn stacked(&self, name: &str, n: usize, rows: usize, cols: usize) -> Result<Vec<Weight>> {
        Checkpoint::stacked(self, name, n, rows, cols)
    }
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        Checkpoint::vector(self, name, len)
    }
    fn tensor_stats(&self) -> Vec<TensorStat> {
        self.tensors()
            .map(|t| TensorStat {
                name: t.name.clone(),
                dtype: t.dtype.to_string(),
                n_elements: t.n_elements(),
                n_bytes: t.n_bytes(),
            })
            .collect()
    }
    fn n_files(&self) -> usize {
        self.files().count()
    }
    fn locate(&self, bytes: &[u8]) -> Option<(PathBuf, u64)> {
        self.file_maps()
            .find_map(|(path, map)| offset_in(map, bytes).map(|o| (path.to_owned(), o)))
    }
}

impl WeightSource for GgufFile {
    fn origin(&self) -> &Path {
        self.path()
    }
    fn contains(&self, name: &str) -> bool {
        GgufFile::contains(self, name)
    }
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Weight> {
        GgufFile::matrix(self, name, rows, cols)
    }
    fn stacked(&self, name: &str, n: usize, rows: usize, cols: usize) -> Result<Vec<Weight>> {
        GgufFile::stacked(self, name, n, rows, cols)
    }
    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        self.check_shape(name, &[len])?;
        GgufFile::vector(self, name)
    }
    fn tensor_stats(&self) -> Vec<TensorStat> {
        self.tensors()
            .iter()
            .map(|t| TensorStat {
                name: t.name().to_owned(),
                dtype: t.ggml_type().to_string(),
                n_elements: t.n_elements(),
                n_bytes: t.n_bytes(),
            })
            .collect()
    }
    fn n_files(&self) -> usize {
        1
    }
    fn locate(&self, bytes: &[u8]) -> Option<(PathBuf, u64)> {
        offset_in(self.bytes(), bytes).map(|o| (self.path().to_owned(), o))
    }
}
