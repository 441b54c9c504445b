//! `cosmoe convert`: a Hugging Face checkpoint folder written as a GGUF file that llama.cpp also runs.
//!
//! The checkpoint is loaded as a [`Model`] (weights in place over the memory map, every shape checked),
//! and each tensor is written under llama.cpp's name, with its keys and layouts (docs/formats.md,
//! "What `cosmoe convert` writes"):
//!
//! - experts as 3-D `blk.N.ffn_{gate,up,down}_exps.weight`, expert-major, so one expert's slice is one
//!   contiguous range; every tensor aligned to 4096 bytes (`general.alignment`), so that range starts on
//!   a page and can be read with one aligned read;
//! - Q and K rows permuted for `llama` and `granitemoe`, whose llama.cpp graphs use interleaved RoPE;
//! - norms, biases and routers in F32, every other matrix in the type llama-quantize would give it
//!   under the requested file type (`Q4_K_M`, `Q8_0`, ..., or one type throughout with `pure`;
//!   [`crate::quant`]), its fallbacks included (F16 where no quantised type fits the row length, as
//!   llama.cpp's converter does);
//! - the vocabulary from `tokenizer.json` ([`cosmoe_loader::gguf_vocab`]).
//!
//! Tensors are converted a chunk of rows at a time and streamed to disk: the model is never in RAM whole.

use std::io::BufWriter;
use std::path::{Path, PathBuf};

use cosmoe_kernels::DType;
use cosmoe_loader::gguf::Value;
use cosmoe_loader::gguf_vocab::{gguf_vocab, VocabInfo};
use cosmoe_loader::gguf_writer::{GgufWriter, TensorSink};
use cosmoe_loader::{Architecture, GgmlType, GgufFile, ModelConfig, RopeScaling, Weight};
use rayon::prelude::*;

use crate::arch::{Naming, Part, TensorNames};
use crate::model::{Ffn, Linear, Mlp};
use crate::outfile::{check_output, PartFile};
use crate::quant::{Blocks, QuantScheme, TypePlan};
use crate::{Error, Model, Result};

/// What to convert, and how.
#[derive(Clone, Debug)]
pub struct ConvertConfig {
    /// Hugging Face checkpoint folder.
    pub src: PathBuf,
    /// GGUF file to write (replaced atomically once complete; refused before any work if it is not a
    /// regular file or is one of the input files: [`crate::outfile::check_output`]).
    pub out: PathBuf,
    /// Types of the weight matrices: a llama-quantize file type, or one type throughout
    /// (`DType::Q8_0.into()`).
    pub quant: QuantScheme,
    /// tokenizer.json to use instead of the folder's.
    pub tokenizer: Option<PathBuf>,
    /// Alignment of every tensor in bytes: a power of two, at least 32 (ggml's default);
    /// [`ALIGNMENT`] unless a tool needs otherwise (`llama-quantize` rewrites files with 32-byte
    /// padding but keeps the input's `general.alignment`, so its output of a 4096-aligned file is
    /// unloadable: convert with 32 for it).
    pub alignment: u32,
    /// Draw a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// What a conversion did.
#[derive(Clone, Debug)]
pub struct ConvertReport {
    pub architecture: &'static str,
    pub tensors: usize,
    pub file_bytes: u64,
    /// Things the user should know (a missing vocabulary, a matrix kept in F16, semantics llama.cpp
    /// does not have).
    pub notices: Vec<String>,
}

/// The default alignment of every tensor: one page, so an expert's slice can start an aligned read.
pub const ALIGNMENT: u32 = 4096;

/// The GGUF architecture a model is written as: llama.cpp's name of its architecture, or `cosmoe` for
/// weight-decomposed experts, which llama.cpp has no architecture for (docs/wd-experts.md).
pub fn gguf_arch_of(c: &ModelConfig) -> &'static str {
    match c.moe.as_ref().and_then(|m| m.expert_rank) {
        Some(_) => "cosmoe",
        None => gguf_arch(c.architecture),
    }
}

/// llama.cpp's name of an architecture.
pub fn gguf_arch(a: Architecture) -> &'static str {
    match a {
        // A Cosmoe model without WD experts is a Llama (dense) or a Mixtral (MoE) under other names.
        Architecture::Llama
        | Architecture::Mistral
        | Architecture::Mixtral
        | Architecture::Cosmoe => "llama",
        Architecture::Qwen2 => "qwen2",
        Architecture::Qwen3 => "qwen3",
        Architecture::Qwen2Moe => "qwen2moe",
        Architecture::Qwen3Moe => "qwen3moe",
        Architecture::Olmoe => "olmoe",
        Architecture::GraniteMoe => "granitemoe",
    }
}

/// Where a tensor's values come from.
enum Data {
    /// Written as F32.
    Vector(Vec<f32>),
    /// A matrix; rows permuted for interleaved RoPE when `heads` is set.
    Matrix { w: Weight, heads: Option<usize> },
    /// Experts stacked in order into one 3-D tensor.
    Stack(Vec<Weight>),
}

struct Item {
    name: String,
    /// ggml dims, innermost first.
    ne: Vec<usize>,
    dtype: DType,
    data: Data,
}

/// Converts `cfg.src` to a GGUF file at `cfg.out`.
pub fn convert(cfg: &ConvertConfig) -> Result<ConvertReport> {
    if GgufFile::is_gguf_path(&cfg.src) || !cfg.src.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{}: convert reads a Hugging Face checkpoint folder (config.json + *.safetensors)",
            cfg.src.display()
        )));
    }
    // Before any work: a type cosmoe can quantise to, and an output that can only be a new or
    // replaced regular file, none of the inputs.
    let mut inputs = vec![cfg.src.as_path()];
    inputs.extend(cfg.tokenizer.as_deref());
    cosmoe_loader::quant::check_blocks(cfg.quant, Blocks::Quantised)?;
    check_output(&cfg.out, &inputs)?;
    let model = Model::load(&cfg.src)?;
    let c = &model.config;
    let arch = gguf_arch_of(c);
    let mut notices = Vec::new();
    check_convertible(c, &cfg.src, &mut notices)?;

    if cfg.alignment < 32 || !cfg.alignment.is_power_of_two() {
        return Err(Error::InvalidArgument(format!(
            "alignment {} must be a power of two of at least 32",
            cfg.alignment
        )));
    }
    let mut w = GgufWriter::new();
    if cfg.alignment != 32 {
        w.set_alignment(cfg.alignment)?;
    }
    metadata(&mut w, c, &cfg.src, cfg.quant);

    let tok = cfg
        .tokenizer
        .clone()
        .or_else(|| Some(cfg.src.join("tokenizer.json")).filter(|p| p.is_file()));
    match tok {
        Some(path) => {
            let info = VocabInfo {
                vocab_size: c.vocab_size,
                bos_token_id: c.bos_token_id,
                eos_token_id: c.eos_token_ids.first().copied(),
            };
            for (k, v) in gguf_vocab(&path, &info)? {
                w.set(&k, v);
            }
        }
        None => notices.push(format!(
            "{} has no tokenizer.json: the file holds no vocabulary, so cosmoe runs it with --ids and \
             llama.cpp will not load it (give one with --tokenizer)",
            cfg.src.display()
        )),
    }

    let mut items = plan(&model)?;
    let list: Vec<(String, Vec<usize>)> = items
        .iter()
        .map(|i| (i.name.clone(), i.ne.clone()))
        .collect();
    let types = TypePlan::new(cfg.quant, c, &list, Blocks::Quantised)?;
    let mut fallbacks = Vec::new();
    for it in &mut items {
        if let Some(t) = types.get(&it.name) {
            it.dtype = t.dtype;
            fallbacks.extend(
                t.fallback_from
                    .map(|from| (it.name.clone(), it.ne[0], from, t.dtype)),
            );
        }
    }
    notices.extend(fallback_notices(&fallbacks));
    for it in &items {
        w.add_tensor(&it.name, &it.ne, GgmlType::from_dtype(it.dtype))?;
    }

    let written = write_file(&w, &cfg.out, cfg.progress, |i, sink| {
        write_item(&items[i], sink)
    })?;
    Ok(ConvertReport {
        architecture: arch,
        tensors: items.len(),
        file_bytes: written,
        notices,
    })
}

/// Streams `w` to `out` through `out.part` (renamed when complete, removed on error and, in the
/// `cosmoe` binary, on SIGINT/SIGTERM: [`crate::outfile`]), with a progress bar over the tensor
/// bytes; `data(i, sink)` writes tensor `i`. Returns the bytes written.
pub(crate) fn write_file(
    w: &GgufWriter,
    out: &Path,
    progress: bool,
    mut data: impl FnMut(usize, &mut TensorSink<'_>) -> cosmoe_loader::Result<()>,
) -> Result<u64> {
    let total: u64 = w.tensors().iter().map(|t| t.n_bytes as u64).sum();
    let part = PartFile::create(out)?;
    let bar = progress_bar(progress, total);
    let written = w.write(
        part.path(),
        BufWriter::with_capacity(1 << 20, part.file()),
        |i, t, sink| {
            bar.set_message(t.name.clone());
            data(i, sink)?;
            bar.inc(t.n_bytes as u64);
            Ok(())
        },
    );
    bar.finish_and_clear();
    let written = written?;
    part.finish()?;
    Ok(written)
}

fn progress_bar(show: bool, total: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Refuses what llama.cpp's graph for the architecture cannot express; notes what it ignores.
fn check_convertible(c: &ModelConfig, src: &Path, notices: &mut Vec<String>) -> Result<()> {
    let refuse = |msg: String| {
        Err(Error::Model {
            path: src.to_owned(),
            msg: format!("cannot convert to GGUF: {msg}"),
        })
    };
    let arch = gguf_arch_of(c);
    if arch == "cosmoe" {
        notices.push(
            "weight-decomposed experts are written as cosmoe's own GGUF architecture `cosmoe` \
             (docs/wd-experts.md): llama.cpp will not load the file"
                .into(),
        );
    }
    if let Some(m) = &c.moe {
        if m.sparse_layers.iter().any(|s| !s) {
            return refuse(format!(
                "llama.cpp's `{arch}` has routed experts in every layer, this model has dense layers"
            ));
        }
    }
    if c.mlp_bias {
        return refuse("MLP biases are not supported".into());
    }
    let full_width = matches!(
        c.architecture,
        Architecture::Qwen2 | Architecture::Qwen2Moe | Architecture::Olmoe
    );
    if full_width && c.n_heads * c.head_dim != c.hidden_size {
        return refuse(format!(
            "llama.cpp's `{arch}` needs n_heads * head_dim = hidden_size ({} * {} != {})",
            c.n_heads, c.head_dim, c.hidden_size
        ));
    }
    if c.architecture == Architecture::Olmoe && c.n_kv_heads != c.n_heads {
        return refuse("llama.cpp's `olmoe` needs as many key/value heads as query heads".into());
    }
    if c.architecture == Architecture::GraniteMoe && c.head_dim * c.n_heads != c.hidden_size {
        return refuse(
            "llama.cpp's `granitemoe` derives head_dim from hidden_size / n_heads".into(),
        );
    }
    if matches!(c.rope.scaling, RopeScaling::Llama3 { .. }) && arch != "llama" {
        return refuse(format!("Llama 3 RoPE scaling on `{arch}`"));
    }
    if c.sliding_window.iter().any(Option::is_some) {
        notices.push(
            "the sliding attention window is not represented in GGUF (llama.cpp attends to every \
             position; so does cosmoe on the converted file)"
                .into(),
        );
    }
    if c.clip_qkv.is_some() {
        notices.push("clip_qkv is not represented in GGUF (llama.cpp does not clamp q/k/v)".into());
    }
    if let Some(m) = &c.moe {
        // llama.cpp hard-codes the renormalisation of the top-k weights per architecture.
        let llama_cpp_norm = matches!(
            c.architecture,
            Architecture::Mixtral
                | Architecture::Cosmoe
                | Architecture::Qwen3Moe
                | Architecture::GraniteMoe
        );
        let hf_norm = m.norm_topk_prob || c.architecture == Architecture::GraniteMoe;
        if hf_norm != llama_cpp_norm {
            notices.push(format!(
                "norm_topk_prob = {} but llama.cpp's `{arch}` always uses {llama_cpp_norm}: routing \
                 weights of the GGUF file differ from the checkpoint's",
                m.norm_topk_prob
            ));
        }
    }
    Ok(())
}

/// One line per kind of fallback: matrices whose rows are not whole blocks of the type the rules
/// chose, and the type they got instead (`(name, row length, chosen, written)`).
fn fallback_notices(f: &[(String, usize, DType, DType)]) -> Vec<String> {
    let mut kinds: Vec<(DType, DType)> = f.iter().map(|x| (x.2, x.3)).collect();
    kinds.sort_by_key(|&(a, b)| (a.index(), b.index()));
    kinds.dedup();
    kinds
        .into_iter()
        .map(|(from, to)| {
            let of: Vec<String> = f
                .iter()
                .filter(|x| (x.2, x.3) == (from, to))
                .map(|x| format!("{} ({})", x.0, x.1))
                .collect();
            let shown = of.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
            let more = match of.len() {
                n if n > 3 => format!(" and {} more", n - 3),
                _ => String::new(),
            };
            let what = match of.len() {
                1 => "1 matrix whose rows are".to_owned(),
                n => format!("{n} matrices whose rows are"),
            };
            format!(
                "{what} not whole {from:?} blocks of {} values: written as {to:?}, as \
                 llama-quantize does: {shown}{more}",
                from.block_len()
            )
        })
        .collect()
}

/// The `general.*` and `{arch}.*` keys, as llama.cpp's converter writes them (`general.file_type` is
/// `quant`'s llama-quantize file type).
pub(crate) fn metadata(w: &mut GgufWriter, c: &ModelConfig, src: &Path, quant: QuantScheme) {
    let arch = gguf_arch_of(c);
    let u32v = |n: usize| Value::U32(n as u32);
    let name = src
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    w.set("general.architecture", Value::String(arch.into()));
    w.set("general.type", Value::String("model".into()));
    w.set("general.name", Value::String(name));
    w.set("general.file_type", Value::U32(quant.ftype.llama_ftype()));
    w.set("general.quantization_version", Value::U32(2));
    let mut set = |k: &str, v: Value| w.set(&format!("{arch}.{k}"), v);
    set("block_count", u32v(c.n_layers));
    set("context_length", u32v(c.max_position_embeddings));
    set("embedding_length", u32v(c.hidden_size));
    set("attention.head_count", u32v(c.n_heads));
    set("attention.head_count_kv", u32v(c.n_kv_heads));
    set("rope.freq_base", Value::F32(c.rope.theta as f32));
    set(
        "attention.layer_norm_rms_epsilon",
        Value::F32(c.rms_norm_eps),
    );
    let derived_head_dim = c.hidden_size / c.n_heads;
    let qwen3 = matches!(c.architecture, Architecture::Qwen3 | Architecture::Qwen3Moe);
    if qwen3 || c.head_dim != derived_head_dim || !c.hidden_size.is_multiple_of(c.n_heads) {
        set("attention.key_length", u32v(c.head_dim));
        set("attention.value_length", u32v(c.head_dim));
    }
    if matches!(arch, "llama" | "granitemoe") {
        set("vocab_size", u32v(c.vocab_size));
        set("rope.dimension_count", u32v(c.head_dim));
    }
    if let RopeScaling::Linear { factor } = c.rope.scaling {
        set("rope.scaling.type", Value::String("linear".into()));
        set("rope.scaling.factor", Value::F32(factor as f32));
    }
    match &c.moe {
        None => set("feed_forward_length", u32v(c.intermediate_size)),
        Some(m) => {
            set("expert_count", u32v(m.n_experts));
            set("expert_used_count", u32v(m.top_k));
            match c.architecture {
                Architecture::Qwen2Moe | Architecture::Qwen3Moe => {
                    set("feed_forward_length", u32v(c.intermediate_size));
                    set("expert_feed_forward_length", u32v(m.expert_ffn));
                }
                _ => set("feed_forward_length", u32v(m.expert_ffn)),
            }
            if let Some(s) = m.shared_expert_ffn {
                set("expert_shared_feed_forward_length", u32v(s));
            }
            if let Some(r) = m.expert_rank {
                set("expert_rank", u32v(r));
            }
        }
    }
    if c.architecture == Architecture::GraniteMoe {
        let m = &c.multipliers;
        if let Some(a) = m.attention {
            set("attention.scale", Value::F32(a));
        }
        set("embedding_scale", Value::F32(m.embedding));
        set("residual_scale", Value::F32(m.residual));
        set("logit_scale", Value::F32(m.logits_scaling));
    }
}

/// Collects the tensors of the file; the matrices' types are chosen once all are known (F32 until
/// then).
struct Planner {
    items: Vec<Item>,
}

impl Planner {
    /// A matrix; its rows permuted for interleaved RoPE when `heads` is set.
    fn matrix(&mut self, name: String, w: &Weight, heads: Option<usize>) {
        self.push(
            name,
            vec![w.cols, w.rows],
            DType::F32,
            Data::Matrix {
                w: w.clone(),
                heads,
            },
        );
    }

    /// A matrix kept in F32 (routers, as llama.cpp's converter does: routing decisions are sensitive
    /// and routers are small).
    fn f32_matrix(&mut self, name: String, w: &Weight) {
        let data = Data::Matrix {
            w: w.clone(),
            heads: None,
        };
        self.push(name, vec![w.cols, w.rows], DType::F32, data);
    }

    fn vector(&mut self, name: String, v: &[f32], heads: Option<usize>) {
        let v: Vec<f32> = match heads {
            Some(h) => permute_rows(v.len(), h).map(|r| v[r]).collect(),
            None => v.to_vec(),
        };
        self.push(name, vec![v.len()], DType::F32, Data::Vector(v));
    }

    fn linear(&mut self, name: &str, lin: &Linear, heads: Option<usize>) {
        self.matrix(format!("{name}.weight"), &lin.w, heads);
        if let Some(b) = &lin.b {
            self.vector(format!("{name}.bias"), b, heads);
        }
    }

    fn mlp(&mut self, names: [String; 3], m: &Mlp) {
        for (name, lin) in names.iter().zip([&m.gate, &m.up, &m.down]) {
            self.linear(name, lin, None);
        }
    }

    /// One projection of every expert of a layer, stacked: ne = [cols, rows, n_experts].
    fn experts(&mut self, name: String, ws: Vec<Weight>) {
        let (rows, cols) = (ws[0].rows, ws[0].cols);
        self.push(
            name,
            vec![cols, rows, ws.len()],
            DType::F32,
            Data::Stack(ws),
        );
    }

    fn push(&mut self, name: String, ne: Vec<usize>, dtype: DType, data: Data) {
        self.items.push(Item {
            name,
            ne,
            dtype,
            data,
        });
    }
}

/// Every tensor of the file, in llama.cpp's names.
fn plan(model: &Model) -> Result<Vec<Item>> {
    let c = &model.config;
    let names = TensorNames::new(c.architecture, Naming::Gguf);
    let mut p = Planner { items: Vec::new() };
    // llama.cpp's `llama` and `granitemoe` graphs rotate adjacent pairs: permute Q and K rows per head.
    let (qh, kh) = match gguf_arch_of(c) {
        "llama" | "granitemoe" => (Some(c.n_heads), Some(c.n_kv_heads)),
        _ => (None, None),
    };

    p.matrix(names.embed().into(), &model.embed, None);
    if let RopeScaling::Llama3 { .. } = c.rope.scaling {
        p.vector("rope_freqs.weight".into(), &llama3_rope_factors(c), None);
    }
    for (l, layer) in model.layers.iter().enumerate() {
        let n = |part: Part| names.part(l, part);
        let a = &layer.attn;
        p.vector(
            format!("{}.weight", n(Part::AttnNorm)),
            &layer.attn_norm,
            None,
        );
        p.linear(&n(Part::Q), &a.q, qh);
        p.linear(&n(Part::K), &a.k, kh);
        p.linear(&n(Part::V), &a.v, None);
        p.linear(&n(Part::O), &a.o, None);
        if let Some(qn) = &a.q_norm {
            p.vector(format!("{}.weight", n(Part::QNorm)), qn, None);
        }
        if let Some(kn) = &a.k_norm {
            p.vector(format!("{}.weight", n(Part::KNorm)), kn, None);
        }
        p.vector(
            format!("{}.weight", n(Part::FfnNorm)),
            &layer.ffn_norm,
            None,
        );
        match &layer.ffn {
            Ffn::Dense(m) => p.mlp([n(Part::Gate), n(Part::Up), n(Part::Down)], m),
            Ffn::Moe(moe) => {
                p.f32_matrix(format!("blk.{l}.ffn_gate_inp.weight"), &moe.router);
                let experts = (0..model.experts.n_experts(l))
                    .map(|e| model.experts.get(l, e))
                    .collect::<Result<Vec<_>, _>>()?;
                // A weight-decomposed expert's left factors as `ffn_*_l_exps`, right as `_r_exps`.
                let wd = experts.iter().all(|x| x.right.is_some());
                let (l_, r_) = if wd { ("_l", "_r") } else { ("", "") };
                let gate = experts.iter().map(|x| x.gate.clone()).collect();
                let up = experts.iter().map(|x| x.up.clone()).collect();
                let down = experts.iter().map(|x| x.down.clone()).collect();
                p.experts(format!("blk.{l}.ffn_gate{l_}_exps.weight"), gate);
                p.experts(format!("blk.{l}.ffn_up{l_}_exps.weight"), up);
                p.experts(format!("blk.{l}.ffn_down{l_}_exps.weight"), down);
                if wd {
                    let right = |f: fn(&cosmoe_cache::RightFactors) -> &Weight| {
                        experts
                            .iter()
                            .filter_map(|x| x.right.as_deref().map(f).cloned())
                            .collect()
                    };
                    p.experts(
                        format!("blk.{l}.ffn_gate{r_}_exps.weight"),
                        right(|r| &r.gate),
                    );
                    p.experts(format!("blk.{l}.ffn_up{r_}_exps.weight"), right(|r| &r.up));
                    p.experts(
                        format!("blk.{l}.ffn_down{r_}_exps.weight"),
                        right(|r| &r.down),
                    );
                }
                if let Some((shared, gate)) = &moe.shared {
                    let parts = [Part::SharedGate, Part::SharedUp, Part::SharedDown];
                    p.mlp(parts.map(n), shared);
                    p.f32_matrix(format!("{}.weight", n(Part::SharedRouter)), gate);
                }
            }
        }
    }
    p.vector(names.final_norm().into(), &model.norm, None);
    // llama.cpp's qwen2moe and olmoe require `output` even when the embeddings are tied.
    if crate::quant::writes_output(c) {
        p.matrix(names.lm_head().into(), &model.lm_head, None);
    }
    Ok(p.items)
}

/// llama.cpp's Q/K permutation for interleaved RoPE: output row `h*D + 2i + s` is input row
/// `h*D + s*D/2 + i` (D = rows per head), turning transformers' half-split pairs into adjacent ones.
fn permute_rows(rows: usize, heads: usize) -> impl Iterator<Item = usize> {
    let d = rows / heads;
    (0..rows).map(move |r| {
        let (h, j) = (r / d, r % d);
        h * d + (j % 2) * (d / 2) + j / 2
    })
}

/// llama.cpp's converter's `rope_freqs` for Llama 3 scaling (f32 arithmetic, as torch does it): the
/// factor each frequency is divided by.
fn llama3_rope_factors(c: &ModelConfig) -> Vec<f32> {
    let RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings,
    } = c.rope.scaling
    else {
        return Vec::new();
    };
    let (factor, low, high, old) = (
        factor as f32,
        low_freq_factor as f32,
        high_freq_factor as f32,
        original_max_position_embeddings as f32,
    );
    let base = c.rope.theta as f32;
    let dim = c.head_dim;
    let (low_wavelen, high_wavelen) = (old / low, old / high);
    (0..dim / 2)
        .map(|i| {
            let freq = 1.0 / base.powf((2 * i) as f32 / dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (old / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

/// Rows converted per parallel chunk.
const CHUNK_ROWS: usize = 256;

fn write_item(it: &Item, sink: &mut TensorSink<'_>) -> cosmoe_loader::Result<()> {
    match &it.data {
        Data::Vector(v) => {
            for x in v {
                sink.put(&x.to_le_bytes())?;
            }
            Ok(())
        }
        Data::Matrix { w, heads } => {
            let order: Vec<usize> = match heads {
                Some(h) => permute_rows(w.rows, *h).collect(),
                None => (0..w.rows).collect(),
            };
            write_rows(w, &order, it.dtype, sink)
        }
        Data::Stack(ws) => {
            for w in ws {
                let order: Vec<usize> = (0..w.rows).collect();
                write_rows(w, &order, it.dtype, sink)?;
            }
            Ok(())
        }
    }
}

/// Rows `order` of `w`, converted to `dtype` (bytes copied as they are when the type does not change).
fn write_rows(
    w: &Weight,
    order: &[usize],
    dtype: DType,
    sink: &mut TensorSink<'_>,
) -> cosmoe_loader::Result<()> {
    let m = w.mat();
    if w.dtype == dtype {
        for &r in order {
            sink.put(m.row(r))?;
        }
        return Ok(());
    }
    for chunk in order.chunks(CHUNK_ROWS) {
        let rows: Vec<Vec<u8>> = chunk
            .par_iter()
            .map(|&r| {
                let mut x = vec![0f32; w.cols];
                cosmoe_kernels::dequantize_row(w.dtype, m.row(r), &mut x);
                // The plan chose a type whose blocks divide the row, so this cannot fail.
                cosmoe_kernels::quantize(dtype, &x, w.cols).unwrap_or_default()
            })
            .collect();
        for r in &rows {
            sink.put(r)?;
        }
    }
    Ok(())
}
