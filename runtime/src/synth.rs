//! `cosmoe synth`: a GGUF file with random weights at the shapes of a real model, for benchmarks
//! without downloads. The file is what `cosmoe convert` writes for such a model (the same names, keys,
//! 3-D experts and 4096-byte alignment), so cosmoe and llama.cpp both run it; it is streamed to disk a
//! chunk of rows at a time.
//!
//! The matrices' types follow a llama-quantize file type ([`crate::quant`]): `Q4_K_M` gives each
//! tensor the type llama-quantize would, its fallbacks for rows that are not whole blocks included
//! (the wearable's 448-wide rows are no whole 256-value super-block: Q4_K falls back to Q5_0). Their
//! values are the F32 file's (`f32`, the same seed) quantised, so the file is tensor for tensor what
//! `llama-quantize` writes of the F32 one; a pure Q4_0 or Q8_0 file (`QuantScheme::pure`) is filled
//! with random blocks instead, which is faster for the large presets.
//!
//! Random weights route almost at random (no locality between tokens): benchmarks drive routing from a
//! trace or a synthetic generator instead (DESIGN.md, "What a run reports").

use std::path::{Path, PathBuf};

use cosmoe_kernels::sample::set_super_scale;
use cosmoe_kernels::DType;
use cosmoe_loader::gguf::{Array, Value};
use cosmoe_loader::gguf_writer::{GgufWriter, TensorSink};
use cosmoe_loader::{Architecture, GgmlType, ModelConfig, MoeConfig, RopeConfig, RopeScaling};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::arch::{Naming, Part, QkNorm, TensorNames};
use crate::convert::metadata;
use crate::quant::{Blocks, QuantScheme, TypePlan};
use crate::{Error, Result};
use cosmoe_loader::config::Multipliers;

/// The shapes of one real (or the paper's) model.
#[derive(Clone, Debug)]
pub struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    pub arch: Architecture,
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// The FFN width of an expert, or of the dense MLP where `experts` is 0.
    pub expert_ffn: usize,
    /// 0 for a dense model.
    pub experts: usize,
    pub top_k: usize,
    /// Qwen2-MoE's shared expert (with its sigmoid gate).
    pub shared_expert_ffn: Option<usize>,
    /// Weight-decomposed experts (CoSMoEs): the rank of their factors.
    pub expert_rank: Option<usize>,
    /// Biases on q, k and v (Qwen2, Qwen2-MoE).
    pub attention_bias: bool,
    pub tied: bool,
    pub rope_theta: f64,
    pub rms_eps: f32,
    pub context: usize,
    pub norm_topk: bool,
    pub multipliers: Multipliers,
}

const fn llama_moe(
    name: &'static str,
    about: &'static str,
    layers: usize,
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    expert_ffn: usize,
) -> Preset {
    Preset {
        name,
        about,
        arch: Architecture::Mixtral,
        vocab: 128_256,
        hidden,
        layers,
        heads,
        kv_heads,
        head_dim: hidden / heads,
        expert_ffn,
        experts: 8,
        top_k: 2,
        shared_expert_ffn: None,
        expert_rank: None,
        attention_bias: false,
        tied: false,
        rope_theta: 500_000.0,
        rms_eps: 1e-5,
        context: 4096,
        norm_topk: true,
        multipliers: Multipliers {
            embedding: 1.0,
            residual: 1.0,
            attention: None,
            logits_scaling: 1.0,
        },
    }
}

/// A test fixture's shapes: 2 layers, hidden 256 (4 heads of 64, 2 KV heads), 4 experts top-2 of FFN
/// 512, 512 tokens, 256 positions.
const fn fixture_256(name: &'static str, about: &'static str) -> Preset {
    Preset {
        name,
        about,
        vocab: 512,
        experts: 4,
        context: 256,
        rope_theta: 10_000.0,
        ..llama_moe(name, about, 2, 256, 4, 2, 512)
    }
}

/// The presets (../shared/PAPER.md for the paper's; the published configs for the others).
pub fn presets() -> Vec<Preset> {
    let plain = Multipliers::default();
    vec![
        llama_moe(
            "cosmoe-wearable",
            "CoSMoEs wearable MoE: 19 layers, hidden 448, 8 experts top-2 (~392M params)",
            19,
            448,
            8,
            8,
            1280,
        ),
        llama_moe(
            "cosmoe-phone",
            "CoSMoEs phone MoE: 24 layers, hidden 1440, 8 experts top-2 (~3.69B params)",
            24,
            1440,
            18,
            6,
            3840,
        ),
        Preset {
            arch: Architecture::Cosmoe,
            expert_rank: Some(208),
            ..llama_moe(
                "cosmoe-wearable-wd",
                "CoSMoEs wearable WD MoE: 32 layers, hidden 416, 8 weight-decomposed experts (rank 208) top-2 (~400M params)",
                32,
                416,
                8,
                8,
                1280,
            )
        },
        Preset {
            arch: Architecture::Cosmoe,
            expert_rank: Some(800),
            ..llama_moe(
                "cosmoe-phone-wd",
                "CoSMoEs phone WD MoE: 26 layers, hidden 1600, 8 weight-decomposed experts (rank 800) top-2 (~3.55B params)",
                26,
                1600,
                20,
                5,
                4352,
            )
        },
        Preset {
            name: "olmoe-1b-7b",
            about: "OLMoE-1B-7B-0924: 16 layers, hidden 2048, 64 experts top-8 (~6.9B params)",
            arch: Architecture::Olmoe,
            vocab: 50_304,
            hidden: 2048,
            layers: 16,
            heads: 16,
            kv_heads: 16,
            head_dim: 128,
            expert_ffn: 1024,
            experts: 64,
            top_k: 8,
            shared_expert_ffn: None,
            expert_rank: None,
            attention_bias: false,
            tied: false,
            rope_theta: 10_000.0,
            rms_eps: 1e-5,
            context: 4096,
            norm_topk: false,
            multipliers: plain.clone(),
        },
        Preset {
            name: "granite-1b-a400m",
            about: "granite-3.0-1b-a400m: 24 layers, hidden 1024, 32 experts top-8 (~1.3B params)",
            arch: Architecture::GraniteMoe,
            vocab: 49_155,
            hidden: 1024,
            layers: 24,
            heads: 16,
            kv_heads: 8,
            head_dim: 64,
            expert_ffn: 512,
            experts: 32,
            top_k: 8,
            shared_expert_ffn: None,
            expert_rank: None,
            attention_bias: false,
            tied: true,
            rope_theta: 10_000.0,
            rms_eps: 1e-6,
            context: 4096,
            norm_topk: true,
            multipliers: Multipliers {
                embedding: 12.0,
                residual: 0.22,
                attention: Some(0.015625),
                logits_scaling: 6.0,
            },
        },
        Preset {
            name: "qwen3-30b-a3b",
            about: "Qwen3-30B-A3B: 48 layers, hidden 2048, 128 experts top-8 (~30.5B params)",
            arch: Architecture::Qwen3Moe,
            vocab: 151_936,
            hidden: 2048,
            layers: 48,
            heads: 32,
            kv_heads: 4,
            head_dim: 128,
            expert_ffn: 768,
            experts: 128,
            top_k: 8,
            shared_expert_ffn: None,
            expert_rank: None,
            attention_bias: false,
            tied: false,
            rope_theta: 1_000_000.0,
            rms_eps: 1e-6,
            context: 40_960,
            norm_topk: true,
            multipliers: plain,
        },
        // Test fixtures: every row a whole number of 256-value super-blocks (hidden 256, expert
        // FFN 512), small enough to quantise and run in a test.
        fixture_256(
            "fixture-llama-moe-256",
            "test fixture: llama-architecture MoE, 2 layers, hidden 256, 4 experts top-2",
        ),
        Preset {
            arch: Architecture::Qwen3Moe,
            rope_theta: 1_000_000.0,
            rms_eps: 1e-6,
            ..fixture_256(
                "fixture-qwen3moe-256",
                "test fixture: qwen3moe, 2 layers, hidden 256, head_dim 64, 4 experts top-2",
            )
        },
        // Eight experts (llama-quantize's `n_expert == 8` rules: attn_v and attn_k in Q8_0,
        // attn_output in Q5_K) and expert rows of 160 values, no whole 256-value super-block (its
        // fallbacks: Q4_K to Q5_0, Q6_K to Q8_0, ...).
        Preset {
            name: "fixture-mixtral-8x-160",
            about: "test fixture: Mixtral-style MoE, 4 layers, hidden 256, 8 experts top-2, expert FFN 160",
            vocab: 512,
            heads: 4,
            kv_heads: 1,
            head_dim: 64,
            context: 256,
            rope_theta: 10_000.0,
            ..llama_moe("", "", 4, 256, 4, 1, 160)
        },
        // One dense and one MoE model per GGUF architecture family (llama: the presets above), every
        // row whole 256-value super-blocks.
        Preset {
            arch: Architecture::Llama,
            experts: 0,
            ..fixture_256("fixture-llama-256", "test fixture: dense llama, 2 layers, hidden 256, FFN 512")
        },
        Preset {
            arch: Architecture::Qwen2,
            experts: 0,
            attention_bias: true,
            rope_theta: 1_000_000.0,
            rms_eps: 1e-6,
            ..fixture_256("fixture-qwen2-256", "test fixture: dense qwen2 (q, k, v biases), 2 layers, hidden 256, FFN 512")
        },
        Preset {
            arch: Architecture::Qwen3,
            experts: 0,
            rope_theta: 1_000_000.0,
            rms_eps: 1e-6,
            ..fixture_256("fixture-qwen3-256", "test fixture: dense qwen3, 2 layers, hidden 256, FFN 512")
        },
        Preset {
            arch: Architecture::Qwen2Moe,
            shared_expert_ffn: Some(512),
            expert_rank: None,
            attention_bias: true,
            norm_topk: false,
            rope_theta: 1_000_000.0,
            rms_eps: 1e-6,
            ..fixture_256("fixture-qwen2moe-256", "test fixture: qwen2moe, 2 layers, hidden 256, 4 experts top-2 and a shared expert")
        },
        Preset {
            arch: Architecture::Olmoe,
            norm_topk: false,
            // llama.cpp's OLMoE has k_norm over the whole hidden size: no grouped-query attention.
            kv_heads: 4,
            ..fixture_256("fixture-olmoe-256", "test fixture: olmoe, 2 layers, hidden 256, 4 experts top-2")
        },
        Preset {
            arch: Architecture::GraniteMoe,
            tied: true,
            rms_eps: 1e-6,
            multipliers: Multipliers {
                embedding: 0.1,
                residual: 0.8,
                attention: Some(0.015625),
                logits_scaling: 2.0,
            },
            ..fixture_256("fixture-granitemoe-256", "test fixture: granitemoe (tied, with multipliers), 2 layers, hidden 256, 4 experts top-2")
        },
        // The files llama-quantize writes in its IQ1/IQ2/IQ3 file types (with an importance matrix)
        // are committed, so this one is small: one layer, expert FFN 256, 320 tokens.
        Preset {
            layers: 1,
            expert_ffn: 256,
            vocab: 320,
            ..fixture_256("fixture-iq-moe-256", "test fixture: llama-architecture MoE, 1 layer, hidden 256, 4 experts top-2, expert FFN 256")
        },
    ]
}

impl Preset {
    pub fn find(name: &str) -> Result<Preset> {
        presets()
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = presets().iter().map(|p| p.name).collect();
                Error::InvalidArgument(format!(
                    "unknown preset `{name}` (presets: {})",
                    names.join(", ")
                ))
            })
    }

    pub fn config(&self) -> ModelConfig {
        ModelConfig {
            architecture: self.arch,
            vocab_size: self.vocab,
            hidden_size: self.hidden,
            n_layers: self.layers,
            n_heads: self.heads,
            n_kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            intermediate_size: self.expert_ffn,
            rms_norm_eps: self.rms_eps,
            rope: RopeConfig {
                theta: self.rope_theta,
                scaling: RopeScaling::None,
            },
            max_position_embeddings: self.context,
            tie_word_embeddings: self.tied,
            attention_bias: self.attention_bias,
            mlp_bias: false,
            clip_qkv: None,
            sliding_window: vec![None; self.layers],
            moe: (self.experts > 0).then(|| MoeConfig {
                n_experts: self.experts,
                top_k: self.top_k,
                expert_ffn: self.expert_ffn,
                norm_topk_prob: self.norm_topk,
                shared_expert_ffn: self.shared_expert_ffn,
                sparse_layers: vec![true; self.layers],
                expert_rank: self.expert_rank,
            }),
            multipliers: self.multipliers.clone(),
            bos_token_id: None,
            eos_token_ids: Vec::new(),
        }
    }
}

/// What to synthesise.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub preset: Preset,
    /// Types of the matrices: F32 (uniform values, a source to quantise), a llama-quantize file type
    /// (those values quantised as llama-quantize would), or pure Q4_0 / Q8_0 or an IQ1/IQ2/IQ3 format (random blocks); norms
    /// and routers are F32.
    pub quant: QuantScheme,
    pub out: PathBuf,
    pub seed: u64,
    pub progress: bool,
    /// Tensor alignment (`general.alignment`); 4096 lets one aligned read fetch an expert, 32 suits a
    /// file `llama-quantize` will rewrite (it pads to 32 whatever the file says).
    pub alignment: u32,
}

/// What kind of values a tensor holds.
#[derive(Clone, Copy, Debug)]
enum Fill {
    /// All ones (norm weights).
    Ones,
    /// Uniform with standard deviation `std`, F32.
    Uniform { std: f32 },
    /// Random blocks of the file type whose values have standard deviation about `std`.
    Blocks { std: f32 },
    /// The values of `Uniform { std }` quantised to the tensor's type, row by row.
    Quantised { std: f32 },
}

struct Planned {
    name: String,
    ne: Vec<usize>,
    dtype: DType,
    fill: Fill,
}

/// The tensors of a preset, as `cosmoe convert` would name and lay them out, every matrix F32 (the
/// types are chosen once all are known).
fn plan(c: &ModelConfig) -> Vec<Planned> {
    let names = TensorNames::new(c.architecture, Naming::Gguf);
    let (h, hd) = (c.hidden_size, c.head_dim);
    let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);
    let mut v = Vec::new();
    let mat = |v: &mut Vec<Planned>, name: String, ne: Vec<usize>| {
        let std = 1.0 / (ne[0] as f32).sqrt();
        v.push(Planned {
            name,
            ne,
            dtype: DType::F32,
            fill: Fill::Uniform { std },
        })
    };
    let vec_ones = |v: &mut Vec<Planned>, name: String, n: usize| {
        v.push(Planned {
            name,
            ne: vec![n],
            dtype: DType::F32,
            fill: Fill::Ones,
        })
    };
    let vec_uniform = |v: &mut Vec<Planned>, name: String, n: usize, std: f32| {
        v.push(Planned {
            name,
            ne: vec![n],
            dtype: DType::F32,
            fill: Fill::Uniform { std },
        })
    };
    mat(&mut v, names.embed().into(), vec![h, c.vocab_size]);
    let qk = crate::arch::ArchSpec::of(c.architecture).qk_norm;
    for l in 0..c.n_layers {
        let w = |p: Part| format!("{}.weight", names.part(l, p));
        vec_ones(&mut v, w(Part::AttnNorm), h);
        mat(&mut v, w(Part::Q), vec![h, q_dim]);
        mat(&mut v, w(Part::K), vec![h, kv_dim]);
        mat(&mut v, w(Part::V), vec![h, kv_dim]);
        if c.attention_bias {
            for (p, n) in [(Part::Q, q_dim), (Part::K, kv_dim), (Part::V, kv_dim)] {
                vec_uniform(&mut v, format!("{}.bias", names.part(l, p)), n, 0.1);
            }
        }
        mat(&mut v, w(Part::O), vec![q_dim, h]);
        match qk {
            QkNorm::None => {}
            QkNorm::PerHead => {
                vec_ones(&mut v, w(Part::QNorm), hd);
                vec_ones(&mut v, w(Part::KNorm), hd);
            }
            QkNorm::Whole => {
                vec_ones(&mut v, w(Part::QNorm), q_dim);
                vec_ones(&mut v, w(Part::KNorm), kv_dim);
            }
        }
        vec_ones(&mut v, w(Part::FfnNorm), h);
        let Some(m) = c.moe.as_ref() else {
            // A dense MLP.
            let f = c.intermediate_size;
            mat(&mut v, w(Part::Gate), vec![h, f]);
            mat(&mut v, w(Part::Up), vec![h, f]);
            mat(&mut v, w(Part::Down), vec![f, h]);
            continue;
        };
        let (e, f) = (m.n_experts, m.expert_ffn);
        v.push(Planned {
            name: format!("blk.{l}.ffn_gate_inp.weight"),
            ne: vec![h, e],
            dtype: DType::F32,
            fill: Fill::Uniform {
                std: 1.0 / (h as f32).sqrt(),
            },
        });
        match m.expert_rank {
            None => {
                mat(
                    &mut v,
                    format!("blk.{l}.ffn_gate_exps.weight"),
                    vec![h, f, e],
                );
                mat(&mut v, format!("blk.{l}.ffn_up_exps.weight"), vec![h, f, e]);
                mat(
                    &mut v,
                    format!("blk.{l}.ffn_down_exps.weight"),
                    vec![f, h, e],
                );
            }
            // Weight-decomposed: left factors (n, r), then right factors (r, m), as convert writes them.
            Some(r) => {
                for (p, n) in [("gate", f), ("up", f), ("down", h)] {
                    mat(
                        &mut v,
                        format!("blk.{l}.ffn_{p}_l_exps.weight"),
                        vec![r, n, e],
                    );
                }
                for (p, m) in [("gate", h), ("up", h), ("down", f)] {
                    mat(
                        &mut v,
                        format!("blk.{l}.ffn_{p}_r_exps.weight"),
                        vec![m, r, e],
                    );
                }
            }
        }
        if let Some(sf) = m.shared_expert_ffn {
            let std = 1.0 / (h as f32).sqrt();
            vec_uniform(&mut v, w(Part::SharedRouter), h, std);
            mat(&mut v, w(Part::SharedGate), vec![h, sf]);
            mat(&mut v, w(Part::SharedUp), vec![h, sf]);
            mat(&mut v, w(Part::SharedDown), vec![sf, h]);
        }
    }
    vec_ones(&mut v, names.final_norm().into(), h);
    let output_required = matches!(c.architecture, Architecture::Qwen2Moe | Architecture::Olmoe);
    if !c.tie_word_embeddings || output_required {
        mat(&mut v, names.lm_head().into(), vec![h, c.vocab_size]);
    }
    v
}

/// A byte-level BPE vocabulary of `n` tokens that llama.cpp accepts (the 256 byte symbols, one merge,
/// then unused padding tokens), so text prompts work in both runtimes.
fn synthetic_vocab(n: usize) -> Vec<(String, Value)> {
    let mut tokens: Vec<String> = byte_symbols();
    tokens.push("\u{120}\u{120}".into());
    let mut types = vec![1i32; tokens.len()];
    for i in tokens.len()..n {
        tokens.push(format!("[PAD{i}]"));
        types.push(5);
    }
    tokens.truncate(n);
    types.truncate(n);
    let s = |x: &str| Value::String(x.into());
    vec![
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.pre".into(), s("gpt-2")),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(Array::String(tokens)),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(Array::I32(types)),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(Array::String(vec!["\u{120} \u{120}".into()])),
        ),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ]
}

/// GPT-2's printable stand-ins for the 256 byte values, in byte order.
fn byte_symbols() -> Vec<String> {
    let printable =
        |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256u32;
    (0u32..256)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                next += 1;
                next - 1
            };
            char::from_u32(c).map(String::from).unwrap_or_default()
        })
        .collect()
}

/// The preset's tensors with the types `quant` gives them, and how each is filled.
fn typed_plan(c: &ModelConfig, quant: QuantScheme) -> Result<Vec<Planned>> {
    let mut items = plan(c);
    let list: Vec<(String, Vec<usize>)> = items
        .iter()
        .map(|i| (i.name.clone(), i.ne.clone()))
        .collect();
    let types = TypePlan::new(quant, c, &list, Blocks::Random)?;
    for it in &mut items {
        let (Some(t), Fill::Uniform { std }) = (types.get(&it.name), it.fill) else {
            continue;
        };
        it.dtype = t.dtype;
        it.fill = match t.dtype {
            DType::F32 => Fill::Uniform { std },
            DType::Q4_0 | DType::Q8_0 if quant.pure => Fill::Blocks { std },
            // The IQ1/IQ2/IQ3 formats have no quantiser here: random blocks.
            dt if !dt.has_quantizer() => Fill::Blocks { std },
            _ => Fill::Quantised { std },
        };
    }
    Ok(items)
}

/// Writes the preset's file; returns its size in bytes.
pub fn synth(cfg: &SynthConfig) -> Result<u64> {
    crate::outfile::check_output(&cfg.out, &[])?;
    let c = cfg.preset.config();
    let items = typed_plan(&c, cfg.quant)?;
    let mut w = GgufWriter::new();
    w.set_alignment(cfg.alignment)?;
    metadata(&mut w, &c, Path::new(cfg.preset.name), cfg.quant);
    w.set(
        "general.name",
        Value::String(format!("{} (random weights)", cfg.preset.name)),
    );
    for (k, v) in synthetic_vocab(c.vocab_size) {
        w.set(&k, v);
    }
    for it in &items {
        w.add_tensor(&it.name, &it.ne, GgmlType::from_dtype(it.dtype))?;
    }
    crate::convert::write_file(&w, &cfg.out, cfg.progress, |i, sink| {
        let n_bytes = w.tensors()[i].n_bytes;
        fill(&items[i], cfg.seed ^ ((i as u64) << 32), n_bytes, sink)
    })
}

/// Bytes generated per parallel chunk.
const CHUNK: usize = 1 << 20;

fn fill(
    p: &Planned,
    seed: u64,
    n_bytes: usize,
    sink: &mut TensorSink<'_>,
) -> cosmoe_loader::Result<()> {
    match p.fill {
        Fill::Ones => {
            for _ in 0..n_bytes / 4 {
                sink.put(&1f32.to_le_bytes())?;
            }
            Ok(())
        }
        Fill::Uniform { std } => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let a = std * 3f32.sqrt();
            for _ in 0..n_bytes / 4 {
                sink.put(&uniform(&mut rng, a).to_le_bytes())?;
            }
            Ok(())
        }
        Fill::Quantised { std } => {
            // The values `Uniform` writes, drawn in the same order, quantised a chunk of rows at a time.
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let a = std * 3f32.sqrt();
            let cols = p.ne[0];
            let rows: usize = p.ne[1..].iter().product();
            let per_chunk = (CHUNK / 4 / cols).max(1);
            let mut x = Vec::with_capacity(per_chunk * cols);
            let mut left = rows;
            while left > 0 {
                let n = per_chunk.min(left);
                x.clear();
                x.extend((0..n * cols).map(|_| uniform(&mut rng, a)));
                let q: Vec<Vec<u8>> = x
                    .par_chunks(cols)
                    .map(|row| cosmoe_kernels::quantize(p.dtype, row, cols).unwrap_or_default())
                    .collect();
                for r in &q {
                    sink.put(r)?;
                }
                left -= n;
            }
            Ok(())
        }
        Fill::Blocks { std } => {
            let block = p.dtype.block_bytes();
            // Standard deviation of a block's values at scale 1: uniform nibbles minus 8, uniform i8,
            // or (IQ formats) random grid points, signs and sub-block scales.
            let q_std = match p.dtype {
                DType::Q4_0 => 4.61,
                DType::Q8_0 => 73.9,
                dt => unit_std(dt),
            };
            let d = half::f16::from_f32(std / q_std).to_le_bytes();
            let per_chunk = CHUNK / block * block;
            let n_chunks = n_bytes.div_ceil(per_chunk);
            for batch in (0..n_chunks).collect::<Vec<_>>().chunks(8) {
                let bufs: Vec<Vec<u8>> = batch
                    .par_iter()
                    .map(|&k| {
                        let len = per_chunk.min(n_bytes - k * per_chunk);
                        let mut buf = vec![0u8; len];
                        ChaCha8Rng::seed_from_u64(seed.wrapping_add(k as u64)).fill_bytes(&mut buf);
                        for b in buf.chunks_exact_mut(block) {
                            if p.dtype.has_quantizer() {
                                b[..2].copy_from_slice(&d);
                            } else {
                                set_super_scale(p.dtype, b, d);
                            }
                        }
                        buf
                    })
                    .collect();
                for b in &bufs {
                    sink.put(b)?;
                }
            }
            Ok(())
        }
    }
}

/// The standard deviation of the values of 64 random blocks of `dtype` (an IQ format) with
/// super-block scale 1.
fn unit_std(dtype: DType) -> f32 {
    const N: usize = 64;
    let mut buf = vec![0u8; N * dtype.block_bytes()];
    ChaCha8Rng::seed_from_u64(0).fill_bytes(&mut buf);
    for b in buf.chunks_exact_mut(dtype.block_bytes()) {
        set_super_scale(dtype, b, half::f16::ONE.to_le_bytes());
    }
    let mut y = vec![0f32; N * dtype.block_len()];
    cosmoe_kernels::dequantize_row(dtype, &buf, &mut y);
    let n = y.len() as f64;
    let mean = y.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = y.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    var.sqrt() as f32
}

/// Every tensor of the preset's file and its type under `quant` (norms and routers F32).
pub fn planned_types(p: &Preset, quant: QuantScheme) -> Result<Vec<(String, DType)>> {
    Ok(typed_plan(&p.config(), quant)?
        .into_iter()
        .map(|t| (t.name, t.dtype))
        .collect())
}

/// A value uniform in `[-a, a)` (24 random bits).
fn uniform(rng: &mut ChaCha8Rng, a: f32) -> f32 {
    let u = (rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
    (2.0 * u - 1.0) * a
}

/// Parameters of a preset's file (every tensor's values).
pub fn n_params(p: &Preset) -> usize {
    plan(&p.config())
        .iter()
        .map(|t| t.ne.iter().product::<usize>())
        .sum()
}
