//! A GGUF file's metadata as a [`ModelConfig`], following what llama.cpp reads for each architecture
//! (`general.architecture`: `llama`, `qwen2`, `qwen3`, `qwen2moe`, `qwen3moe`, `olmoe`, `granitemoe`).
//!
//! Where llama.cpp hard-codes behaviour rather than reading it, the config says what llama.cpp does,
//! since it is the reference for GGUF files (docs/llama-cpp-gguf-notes.md): routing weights are
//! renormalised for `llama` (Mixtral), `qwen3moe` and `granitemoe` and not for `qwen2moe` and `olmoe`;
//! there is no sliding window and no q/k/v clamp; every layer of a MoE is sparse.

use crate::config::{Architecture, Multipliers, RopeConfig, RopeScaling};
use crate::gguf::{GgufFile, Value};
use crate::{LoaderError, ModelConfig, MoeConfig, Result};

/// How this GGUF architecture lays out RoPE pairs: `true` for llama.cpp's "normal" (interleaved)
/// mode, used by the architectures whose converter permutes Q/K (`llama`, `granitemoe`).
pub fn gguf_rope_interleaved(arch: &str) -> bool {
    matches!(arch, "llama" | "granitemoe")
}

struct Meta<'a> {
    f: &'a GgufFile,
    arch: &'a str,
}

const MAX_DIM: u64 = 1 << 26;

impl Meta<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }
    fn get(&self, k: &str) -> Option<&Value> {
        self.f.get(&self.key(k))
    }
    fn bad(&self, k: &str, msg: String) -> LoaderError {
        LoaderError::BadValue {
            path: self.f.path().to_owned(),
            key: self.key(k),
            msg,
        }
    }
    /// A size: an integer in `1..=2^26`; per-layer arrays must hold one value for every layer.
    fn opt_dim(&self, k: &str) -> Result<Option<usize>> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let n = match v {
            Value::Array(a) => {
                let vals = a
                    .to_i64s()
                    .ok_or_else(|| self.bad(k, "expected integers".into()))?;
                let first = vals.first().copied().unwrap_or(0);
                if vals.iter().any(|&x| x != first) {
                    return Err(
                        self.bad(k, "per-layer values that differ are not supported".into())
                    );
                }
                u64::try_from(first).ok()
            }
            v => v.as_u64(),
        };
        match n {
            Some(n) if (1..=MAX_DIM).contains(&n) => Ok(Some(n as usize)),
            _ => Err(self.bad(k, format!("expected a size in 1..={MAX_DIM}, got {v}"))),
        }
    }
    fn dim(&self, k: &str) -> Result<usize> {
        self.opt_dim(k)?.ok_or_else(|| LoaderError::MissingKey {
            path: self.f.path().to_owned(),
            key: self.key(k),
        })
    }
    fn opt_f64(&self, k: &str) -> Result<Option<f64>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| self.bad(k, format!("expected a finite number, got {v}"))),
        }
    }
    /// llama.cpp's "0 means unset" scales.
    fn scale(&self, k: &str) -> Result<Option<f32>> {
        Ok(self.opt_f64(k)?.filter(|&x| x != 0.0).map(|x| x as f32))
    }
}

impl ModelConfig {
    /// The configuration of the model in a GGUF file.
    pub fn from_gguf(f: &GgufFile) -> Result<ModelConfig> {
        let arch_name = f.architecture()?;
        let m = Meta { f, arch: arch_name };
        let unsupported = || LoaderError::UnsupportedArchitecture {
            path: f.path().to_owned(),
            arch: arch_name.to_owned(),
            supported: "llama, qwen2, qwen3, qwen2moe, qwen3moe, olmoe, granitemoe, cosmoe".into(),
        };
        let n_experts = m.opt_dim("expert_count")?;
        use Architecture as A;
        let architecture = match (arch_name, n_experts) {
            ("llama", None) => A::Llama,
            ("llama", Some(_)) => A::Mixtral,
            ("qwen2", _) => A::Qwen2,
            ("qwen3", _) => A::Qwen3,
            ("qwen2moe", _) => A::Qwen2Moe,
            ("qwen3moe", _) => A::Qwen3Moe,
            ("olmoe", _) => A::Olmoe,
            ("granitemoe", _) => A::GraniteMoe,
            // cosmoe's own: weight-decomposed experts (docs/wd-experts.md), which llama.cpp lacks.
            ("cosmoe", Some(_)) => A::Cosmoe,
            _ => return Err(unsupported()),
        };

        let hidden_size = m.dim("embedding_length")?;
        let n_layers = m.dim("block_count")?;
        if n_layers > 1 << 14 {
            return Err(m.bad(
                "block_count",
                format!("{n_layers} layers exceed the limit of 16384"),
            ));
        }
        let n_heads = m.dim("attention.head_count")?;
        let n_kv_heads = m.opt_dim("attention.head_count_kv")?.unwrap_or(n_heads);
        if n_heads % n_kv_heads != 0 {
            return Err(m.bad(
                "attention.head_count_kv",
                format!("{n_kv_heads} does not divide attention.head_count = {n_heads}"),
            ));
        }
        let head_dim = match m.opt_dim("attention.key_length")? {
            Some(d) => d,
            None if hidden_size % n_heads == 0 => hidden_size / n_heads,
            None => {
                return Err(m.bad(
                    "attention.head_count",
                    format!("does not divide {hidden_size}"),
                ))
            }
        };
        if head_dim % 2 != 0 {
            return Err(m.bad(
                "attention.key_length",
                format!("{head_dim} must be even (RoPE)"),
            ));
        }
        if let Some(rot) = m.opt_dim("rope.dimension_count")? {
            if rot != head_dim {
                return Err(m.bad(
                    "rope.dimension_count",
                    format!("partial rotary embeddings ({rot} of {head_dim}) are not supported"),
                ));
            }
        }
        let rms_norm_eps = m
            .opt_f64("attention.layer_norm_rms_epsilon")?
            .ok_or_else(|| LoaderError::MissingKey {
                path: f.path().to_owned(),
                key: m.key("attention.layer_norm_rms_epsilon"),
            })? as f32;
        let max_position_embeddings = m.dim("context_length")?;

        let theta = m.opt_f64("rope.freq_base")?.unwrap_or(10000.0);
        if theta <= 0.0 {
            return Err(m.bad("rope.freq_base", format!("{theta} must be positive")));
        }
        let scaling = match m.get("rope.scaling.type").map(|v| v.as_str()) {
            None | Some(Some("linear")) => match m.opt_f64("rope.scaling.factor")? {
                Some(fac) if fac > 0.0 && fac != 1.0 => RopeScaling::Linear { factor: fac },
                Some(fac) if fac < 0.0 => {
                    return Err(m.bad("rope.scaling.factor", format!("{fac}")))
                }
                _ => RopeScaling::None,
            },
            Some(Some("none")) => RopeScaling::None,
            Some(other) => {
                return Err(m.bad(
                    "rope.scaling.type",
                    format!(
                        "{} is not supported (none, linear; llama3 comes as rope_freqs)",
                        other.unwrap_or("?")
                    ),
                ))
            }
        };

        // The vocabulary is the token list (what llama.cpp sizes its tensors by), else the embedding rows.
        let vocab_size = match f.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
            Some(a) if !a.is_empty() => a.len(),
            _ => f
                .tensor("token_embd.weight")
                .and_then(|t| t.shape().first().copied())
                .ok_or_else(|| LoaderError::MissingKey {
                    path: f.path().to_owned(),
                    key: "tokenizer.ggml.tokens".into(),
                })?,
        };

        let feed_forward = m.opt_dim("feed_forward_length")?;
        let moe = match n_experts {
            None if architecture.is_moe() => {
                return Err(LoaderError::MissingKey {
                    path: f.path().to_owned(),
                    key: m.key("expert_count"),
                })
            }
            None => None,
            Some(n_experts) => {
                let top_k = m.dim("expert_used_count")?;
                if top_k > n_experts {
                    return Err(m.bad(
                        "expert_used_count",
                        format!("{top_k} exceeds expert_count {n_experts}"),
                    ));
                }
                let expert_ffn = match architecture {
                    A::Qwen2Moe | A::Qwen3Moe => {
                        m.opt_dim("expert_feed_forward_length")?.or(feed_forward)
                    }
                    _ => feed_forward,
                }
                .ok_or_else(|| LoaderError::MissingKey {
                    path: f.path().to_owned(),
                    key: m.key("feed_forward_length"),
                })?;
                Some(MoeConfig {
                    n_experts,
                    top_k,
                    expert_ffn,
                    norm_topk_prob: matches!(
                        architecture,
                        A::Mixtral | A::Qwen3Moe | A::GraniteMoe | A::Cosmoe
                    ),
                    shared_expert_ffn: match architecture {
                        A::Qwen2Moe => m.opt_dim("expert_shared_feed_forward_length")?,
                        _ => None,
                    },
                    sparse_layers: vec![true; n_layers],
                    expert_rank: match architecture {
                        A::Cosmoe => Some(m.dim("expert_rank")?),
                        _ => None,
                    },
                })
            }
        };
        let intermediate_size = match (&moe, feed_forward) {
            (_, Some(ff)) => ff,
            (Some(mc), None) => mc.expert_ffn,
            (None, None) => m.dim("feed_forward_length")?,
        };

        let multipliers = match architecture {
            A::GraniteMoe => Multipliers {
                embedding: m.scale("embedding_scale")?.unwrap_or(1.0),
                residual: m.scale("residual_scale")?.unwrap_or(1.0),
                attention: m.scale("attention.scale")?,
                logits_scaling: m
                    .scale("logit_scale")?
                    .ok_or_else(|| LoaderError::MissingKey {
                        path: f.path().to_owned(),
                        key: m.key("logit_scale"),
                    })?,
            },
            _ => Multipliers::default(),
        };

        let id = |k: &str| {
            f.get(k)
                .and_then(|v| v.as_u64())
                .and_then(|x| u32::try_from(x).ok())
        };
        Ok(ModelConfig {
            architecture,
            vocab_size,
            hidden_size,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            intermediate_size,
            rms_norm_eps,
            rope: RopeConfig { theta, scaling },
            max_position_embeddings,
            tie_word_embeddings: !f.contains("output.weight"),
            attention_bias: f.contains("blk.0.attn_q.bias"),
            mlp_bias: false,
            clip_qkv: None,
            sliding_window: vec![None; n_layers],
            moe,
            multipliers,
            bos_token_id: id("tokenizer.ggml.bos_token_id"),
            eos_token_ids: id("tokenizer.ggml.eos_token_id").into_iter().collect(),
        })
    }
}
