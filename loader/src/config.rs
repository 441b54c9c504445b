//! `config.json` of a Hugging Face checkpoint, as one typed [`ModelConfig`].
//!
//! Both forms real checkpoints use are accepted: transformers 4.x (`rope_theta` and `rope_scaling` at
//! the top level, the scaling type under `type` or `rope_type`) and 5.x (`rope_parameters`). Unknown
//! keys are ignored; a missing required key is named in the error. Defaults for optional keys are
//! those of transformers' configuration classes.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::{LoaderError, Result};

/// The model families cosmoe runs, by their transformers class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Architecture {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Mixtral,
    Qwen2Moe,
    Qwen3Moe,
    Olmoe,
    GraniteMoe,
    /// The CoSMoEs paper's models as cosmoe's reference module writes them
    /// (tests/fixtures/cosmoe_reference.py): Llama-3 blocks with a dense MLP or a Mixtral-style
    /// mixture of experts under Qwen-style names.
    Cosmoe,
}

impl Architecture {
    pub const ALL: [Architecture; 10] = [
        Architecture::Llama,
        Architecture::Mistral,
        Architecture::Qwen2,
        Architecture::Qwen3,
        Architecture::Mixtral,
        Architecture::Qwen2Moe,
        Architecture::Qwen3Moe,
        Architecture::Olmoe,
        Architecture::GraniteMoe,
        Architecture::Cosmoe,
    ];

    /// The transformers class name (`architectures[0]` in config.json).
    pub fn hf_class(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Mistral => "MistralForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
            Architecture::Qwen3 => "Qwen3ForCausalLM",
            Architecture::Mixtral => "MixtralForCausalLM",
            Architecture::Qwen2Moe => "Qwen2MoeForCausalLM",
            Architecture::Qwen3Moe => "Qwen3MoeForCausalLM",
            Architecture::Olmoe => "OlmoeForCausalLM",
            Architecture::GraniteMoe => "GraniteMoeForCausalLM",
            Architecture::Cosmoe => "CosmoeForCausalLM",
        }
    }

    /// transformers' `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Mixtral => "mixtral",
            Architecture::Qwen2Moe => "qwen2_moe",
            Architecture::Qwen3Moe => "qwen3_moe",
            Architecture::Olmoe => "olmoe",
            Architecture::GraniteMoe => "granitemoe",
            Architecture::Cosmoe => "cosmoe",
        }
    }

    pub fn is_moe(self) -> bool {
        matches!(
            self,
            Architecture::Mixtral
                | Architecture::Qwen2Moe
                | Architecture::Qwen3Moe
                | Architecture::Olmoe
                | Architecture::GraniteMoe
        )
    }

    pub(crate) fn supported_list() -> String {
        Self::ALL.map(|a| a.hf_class()).join(", ")
    }
}

/// Rotary position embedding parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    pub scaling: RopeScaling,
}

/// The `rope_type`s cosmoe implements (transformers' `ROPE_INIT_FUNCTIONS` of the same names).
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor` (frequencies divided by it).
    Linear {
        factor: f64,
    },
    /// Llama 3.1's band-wise frequency scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// Mixture-of-experts hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct MoeConfig {
    pub n_experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Hidden width of one routed expert.
    pub expert_ffn: usize,
    /// Renormalise the top-k router probabilities to sum to one.
    pub norm_topk_prob: bool,
    /// Hidden width of the always-on shared expert (Qwen2-MoE), if any.
    pub shared_expert_ffn: Option<usize>,
    /// `sparse_layers[i]`: layer `i` has routed experts (else a dense MLP of `intermediate_size`).
    pub sparse_layers: Vec<bool>,
    /// Weight-decomposed experts (the CoSMoEs paper): every expert matrix M (n x m) is stored as
    /// L (n x r) . R (r x m) of this rank r.
    pub expert_rank: Option<usize>,
}

/// GraniteMoE's scalar multipliers; 1.0 (and attention `None`) for every other architecture.
#[derive(Clone, Debug, PartialEq)]
pub struct Multipliers {
    pub embedding: f32,
    pub residual: f32,
    /// Replaces `1/sqrt(head_dim)` as the attention score scale.
    pub attention: Option<f32>,
    /// Logits are divided by this.
    pub logits_scaling: f32,
}

impl Default for Multipliers {
    fn default() -> Self {
        Multipliers {
            embedding: 1.0,
            residual: 1.0,
            attention: None,
            logits_scaling: 1.0,
        }
    }
}

/// One model's hyper-parameters, whichever architecture and config form it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Width of dense MLPs (every layer of a dense model; the dense layers of a MoE).
    pub intermediate_size: usize,
    pub rms_norm_eps: f32,
    pub rope: RopeConfig,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v (and o, where the architecture puts one there).
    pub attention_bias: bool,
    pub mlp_bias: bool,
    /// OLMoE: q/k/v clamped to `[-c, c]`.
    pub clip_qkv: Option<f32>,
    /// Sliding attention window per layer (`None`: full causal attention).
    pub sliding_window: Vec<Option<usize>>,
    pub moe: Option<MoeConfig>,
    pub multipliers: Multipliers,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

/// Largest accepted size of any one dimension (2^26: over 50x the largest real models').
const MAX_DIM: usize = 1 << 26;
/// Largest accepted number of layers.
const MAX_LAYERS: usize = 1 << 14;

/// A JSON object read with the file's path at hand for errors.
struct Obj<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }
    fn bad(&self, key: &str, msg: impl Into<String>) -> LoaderError {
        LoaderError::BadValue {
            path: self.path.to_owned(),
            key: key.to_owned(),
            msg: msg.into(),
        }
    }
    fn missing(&self, key: &str) -> LoaderError {
        LoaderError::MissingKey {
            path: self.path.to_owned(),
            key: key.to_owned(),
        }
    }
    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.bad(key, format!("expected a non-negative integer, got {v}"))),
        }
    }
    fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| self.missing(key))
    }
    /// A required size that must also be positive and plausible: hostile configs must not make
    /// cosmoe allocate per-layer tables of absurd size or overflow products of dimensions.
    fn dim(&self, key: &str) -> Result<usize> {
        let limit = if key == "num_hidden_layers" {
            MAX_LAYERS
        } else {
            MAX_DIM
        };
        match self.usize(key)? {
            0 => Err(self.bad(key, "must be positive")),
            n if n > limit => Err(self.bad(key, format!("{n} exceeds the limit of {limit}"))),
            n => Ok(n),
        }
    }
    fn opt_dim(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(_) => self.dim(key).map(Some),
        }
    }
    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| self.bad(key, format!("expected a finite number, got {v}"))),
        }
    }
    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.bad(key, format!("expected true or false, got {v}"))),
        }
    }
    fn opt_str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.bad(key, format!("expected a string, got {v}"))),
        }
    }
    fn opt_obj(&self, key: &str) -> Result<Option<Obj<'a>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj {
                path: self.path,
                map,
            })),
            Some(v) => Err(self.bad(key, format!("expected an object, got {v}"))),
        }
    }
    /// An integer or a list of integers (token ids), as a list.
    fn ids(&self, key: &str) -> Result<Vec<u32>> {
        let one = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    one(v).ok_or_else(|| self.bad(key, format!("expected token ids, got {v}")))
                })
                .collect(),
            Some(v) => one(v)
                .map(|id| vec![id])
                .ok_or_else(|| self.bad(key, format!("expected a token id, got {v}"))),
        }
    }
}

impl ModelConfig {
    /// Reads `dir/config.json` (or the file itself if `path` is a file).
    pub fn from_file(path: &Path) -> Result<Self> {
        let path: PathBuf = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_owned()
        };
        let text = std::fs::read_to_string(&path).map_err(|err| LoaderError::Io {
            path: path.clone(),
            err,
        })?;
        Self::from_json_str(&text, &path)
    }

    /// Parses config.json text; `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|err| LoaderError::Json {
            path: path.to_owned(),
            err,
        })?;
        let Value::Object(map) = &value else {
            return Err(LoaderError::BadValue {
                path: path.to_owned(),
                key: "(top level)".into(),
                msg: "expected a JSON object".into(),
            });
        };
        Self::from_obj(&Obj { path, map })
    }

    fn from_obj(c: &Obj<'_>) -> Result<Self> {
        let architecture = architecture(c)?;
        use Architecture as A;

        if let Some(act) = c.opt_str("hidden_act")? {
            if act != "silu" {
                return Err(c.bad(
                    "hidden_act",
                    format!("`{act}` is not supported (only silu)"),
                ));
            }
        }

        let hidden_size = c.dim("hidden_size")?;
        let n_layers = c.dim("num_hidden_layers")?;
        let n_heads = c.dim("num_attention_heads")?;
        let n_kv_heads = c.opt_dim("num_key_value_heads")?.unwrap_or(n_heads);
        if n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(c.bad(
                "num_key_value_heads",
                format!("{n_kv_heads} does not divide num_attention_heads = {n_heads}"),
            ));
        }
        let head_dim = match c.opt_dim("head_dim")? {
            Some(d) => d,
            None if hidden_size % n_heads == 0 => hidden_size / n_heads,
            None => {
                return Err(c.bad(
                    "num_attention_heads",
                    format!("does not divide hidden_size = {hidden_size} and no head_dim is given"),
                ))
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(c.bad(
                "head_dim",
                format!("{head_dim} must be even and positive (RoPE)"),
            ));
        }

        let vocab_size = c.dim("vocab_size")?;
        let default_eps = match architecture {
            A::Mixtral | A::Olmoe | A::Cosmoe => 1e-5,
            _ => 1e-6,
        };
        let rms_norm_eps = c.opt_f64("rms_norm_eps")?.unwrap_or(default_eps) as f32;
        let default_theta = match architecture {
            A::Mixtral => 1e6,
            A::Cosmoe => 5e5,
            _ => 1e4,
        };
        let rope = rope(c, default_theta)?;
        let max_position_embeddings = c.opt_usize("max_position_embeddings")?.unwrap_or(4096);
        let tie_word_embeddings = c.opt_bool("tie_word_embeddings")?.unwrap_or(false);
        // Qwen2 and Qwen2-MoE always have q/k/v biases; the others only where config says so.
        let attention_bias = match architecture {
            A::Qwen2 => true,
            A::Qwen2Moe => c.opt_bool("qkv_bias")?.unwrap_or(true),
            _ => c.opt_bool("attention_bias")?.unwrap_or(false),
        };
        let mlp_bias = match architecture {
            A::Llama => c.opt_bool("mlp_bias")?.unwrap_or(false),
            _ => false,
        };
        let clip_qkv = match architecture {
            A::Olmoe => c.opt_f64("clip_qkv")?.map(|x| x as f32),
            _ => None,
        };

        let moe = moe(c, architecture, n_layers)?;
        // Dense MLP width: every layer of a dense model, the dense layers of a Qwen2/3-MoE. For the
        // other MoEs `intermediate_size` is the expert width and there are no dense layers.
        let intermediate_size = match (&moe, architecture) {
            (Some(m), _) if m.sparse_layers.iter().all(|&s| s) => {
                c.opt_dim("intermediate_size")?.unwrap_or(m.expert_ffn)
            }
            _ => c.dim("intermediate_size")?,
        };

        let multipliers = match architecture {
            A::GraniteMoe => Multipliers {
                embedding: c.opt_f64("embedding_multiplier")?.unwrap_or(1.0) as f32,
                residual: c.opt_f64("residual_multiplier")?.unwrap_or(1.0) as f32,
                attention: Some(c.opt_f64("attention_multiplier")?.unwrap_or(1.0) as f32),
                logits_scaling: c.opt_f64("logits_scaling")?.unwrap_or(1.0) as f32,
            },
            _ => Multipliers::default(),
        };
        if multipliers.logits_scaling == 0.0 {
            return Err(c.bad("logits_scaling", "must not be zero"));
        }

        let sliding_window = sliding_window(c, architecture, n_layers)?;
        let bos_token_id = c.ids("bos_token_id")?.first().copied();
        let eos_token_ids = c.ids("eos_token_id")?;

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
            rope,
            max_position_embeddings,
            tie_word_embeddings,
            attention_bias,
            mlp_bias,
            clip_qkv,
            sliding_window,
            moe,
            multipliers,
            bos_token_id,
            eos_token_ids,
        })
    }

    /// Whether layer `layer` routes to experts.
    pub fn is_sparse_layer(&self, layer: usize) -> bool {
        self.moe
            .as_ref()
            .is_some_and(|m| m.sparse_layers.get(layer).copied().unwrap_or(false))
    }
}

fn architecture(c: &Obj<'_>) -> Result<Architecture> {
    if let Some(v) = c.get("architectures") {
        let name = v
            .as_array()
            .and_then(|a| a.first())
            .and_then(|s| s.as_str())
            .ok_or_else(|| {
                c.bad(
                    "architectures",
                    format!("expected a list of class names, got {v}"),
                )
            })?;
        return Architecture::ALL
            .into_iter()
            .find(|a| a.hf_class() == name)
            .ok_or_else(|| LoaderError::UnsupportedArchitecture {
                path: c.path.to_owned(),
                arch: name.to_owned(),
                supported: Architecture::supported_list(),
            });
    }
    let Some(mt) = c.opt_str("model_type")? else {
        return Err(c.missing("architectures"));
    };
    Architecture::ALL
        .into_iter()
        .find(|a| a.model_type() == mt)
        .ok_or_else(|| LoaderError::UnsupportedArchitecture {
            path: c.path.to_owned(),
            arch: mt.to_owned(),
            supported: Architecture::supported_list(),
        })
}

/// RoPE from `rope_parameters` (5.x) or `rope_theta` + `rope_scaling` (4.x).
fn rope(c: &Obj<'_>, default_theta: f64) -> Result<RopeConfig> {
    let (params, key) = match c.opt_obj("rope_parameters")? {
        Some(p) => (Some(p), "rope_parameters"),
        None => (c.opt_obj("rope_scaling")?, "rope_scaling"),
    };
    let theta = match params
        .as_ref()
        .map(|p| p.opt_f64("rope_theta"))
        .transpose()?
        .flatten()
    {
        Some(t) => t,
        None => c.opt_f64("rope_theta")?.unwrap_or(default_theta),
    };
    if theta <= 0.0 {
        return Err(c.bad("rope_theta", format!("{theta} must be positive")));
    }
    let Some(p) = params else {
        return Ok(RopeConfig {
            theta,
            scaling: RopeScaling::None,
        });
    };
    let kind = match p.opt_str("rope_type")? {
        Some(k) => k,
        None => p.opt_str("type")?.unwrap_or("default"),
    };
    let factor = |p: &Obj<'_>| -> Result<f64> {
        let f = p
            .opt_f64("factor")?
            .ok_or_else(|| c.missing(&format!("{key}.factor")))?;
        if f <= 0.0 {
            return Err(c.bad(&format!("{key}.factor"), format!("{f} must be positive")));
        }
        Ok(f)
    };
    let scaling = match kind {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear {
            factor: factor(&p)?,
        },
        "llama3" => {
            let need = |k: &str| -> Result<f64> {
                p.opt_f64(k)?
                    .ok_or_else(|| c.missing(&format!("{key}.{k}")))
            };
            let (low, high) = (need("low_freq_factor")?, need("high_freq_factor")?);
            if low >= high {
                return Err(c.bad(
                    &format!("{key}.high_freq_factor"),
                    format!("{high} must exceed low_freq_factor = {low}"),
                ));
            }
            RopeScaling::Llama3 {
                factor: factor(&p)?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: need("original_max_position_embeddings")?,
            }
        }
        other => {
            return Err(c.bad(
                &format!("{key}.rope_type"),
                format!("RoPE type `{other}` is not supported (default, linear, llama3)"),
            ))
        }
    };
    Ok(RopeConfig { theta, scaling })
}

fn moe(c: &Obj<'_>, arch: Architecture, n_layers: usize) -> Result<Option<MoeConfig>> {
    use Architecture as A;
    let (n_key, ffn_key) = match arch {
        A::Mixtral | A::GraniteMoe => ("num_local_experts", "intermediate_size"),
        A::Olmoe => ("num_experts", "intermediate_size"),
        A::Qwen2Moe | A::Qwen3Moe => ("num_experts", "moe_intermediate_size"),
        // Dense when it has no experts.
        A::Cosmoe if matches!(c.opt_usize("num_local_experts")?, None | Some(0)) => {
            return Ok(None)
        }
        A::Cosmoe => ("num_local_experts", "moe_intermediate_size"),
        A::Llama | A::Mistral | A::Qwen2 | A::Qwen3 => return Ok(None),
    };
    // transformers 5 writes `num_local_experts` for Qwen3-MoE where 4.x and the hub write `num_experts`.
    let n_experts = match c.opt_usize(n_key)? {
        Some(_) => c.dim(n_key)?,
        None => {
            let other = if n_key == "num_experts" {
                "num_local_experts"
            } else {
                "num_experts"
            };
            match c.opt_usize(other)? {
                Some(_) => c.dim(other)?,
                None => return Err(c.missing(n_key)),
            }
        }
    };
    let top_k = c.dim("num_experts_per_tok")?;
    if top_k > n_experts {
        return Err(c.bad(
            "num_experts_per_tok",
            format!("{top_k} exceeds the number of experts ({n_experts})"),
        ));
    }
    let expert_ffn = c.dim(ffn_key)?;
    let norm_topk_prob = match arch {
        A::Mixtral | A::Cosmoe => true,
        A::GraniteMoe => false, // top-k then softmax: already sums to one
        _ => c.opt_bool("norm_topk_prob")?.unwrap_or(false),
    };
    let shared_expert_ffn = match arch {
        A::Qwen2Moe => match c.opt_usize("shared_expert_intermediate_size")? {
            Some(0) | None => None,
            Some(_) => c.opt_dim("shared_expert_intermediate_size")?,
        },
        _ => None,
    };
    let mut sparse_layers = vec![true; n_layers];
    if matches!(arch, A::Qwen2Moe | A::Qwen3Moe) {
        let step = c.opt_usize("decoder_sparse_step")?.unwrap_or(1);
        let only_dense: Vec<usize> = match c.get("mlp_only_layers") {
            None => Vec::new(),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(|x| x.as_u64().map(|n| n as usize)).collect())
                .ok_or_else(|| {
                    c.bad(
                        "mlp_only_layers",
                        format!("expected a list of layer indices, got {v}"),
                    )
                })?,
        };
        for (i, s) in sparse_layers.iter_mut().enumerate() {
            // transformers: sparse iff not in mlp_only_layers and (i + 1) % step == 0.
            *s = !only_dense.contains(&i) && step > 0 && (i + 1) % step == 0;
        }
    }
    let expert_rank = match arch {
        A::Cosmoe => c.opt_dim("expert_rank")?,
        _ => None,
    };
    Ok(Some(MoeConfig {
        n_experts,
        top_k,
        expert_ffn,
        norm_topk_prob,
        shared_expert_ffn,
        sparse_layers,
        expert_rank,
    }))
}

/// The attention window of each layer. Mistral and Mixtral apply `sliding_window` to every layer; the
/// Qwen families only with `use_sliding_window` (from `max_window_layers` on, or as `layer_types` says).
fn sliding_window(c: &Obj<'_>, arch: Architecture, n_layers: usize) -> Result<Vec<Option<usize>>> {
    use Architecture as A;
    // Qwen2-MoE writes `"sliding_window": 0` when the window is off; 0 never means "see nothing".
    let window = c.opt_usize("sliding_window")?.filter(|&w| w > 0);
    let windows = match arch {
        A::Mistral | A::Mixtral => vec![window; n_layers],
        A::Qwen2 | A::Qwen3 | A::Qwen2Moe | A::Qwen3Moe => {
            let use_sw = c.opt_bool("use_sliding_window")?.unwrap_or(false);
            if !use_sw || window.is_none() {
                vec![None; n_layers]
            } else if let Some(types) = c.get("layer_types") {
                let types = types
                    .as_array()
                    .filter(|a| a.len() == n_layers)
                    .ok_or_else(|| {
                        c.bad("layer_types", format!("expected {n_layers} layer types"))
                    })?;
                types
                    .iter()
                    .map(|t| match t.as_str() {
                        Some("sliding_attention") => Ok(window),
                        Some("full_attention") => Ok(None),
                        _ => Err(c.bad("layer_types", format!("unknown layer type {t}"))),
                    })
                    .collect::<Result<_>>()?
            } else {
                let from = c.opt_usize("max_window_layers")?.unwrap_or(n_layers);
                (0..n_layers)
                    .map(|i| if i >= from { window } else { None })
                    .collect()
            }
        }
        A::Llama | A::Olmoe | A::GraniteMoe | A::Cosmoe => vec![None; n_layers],
    };
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ModelConfig> {
        ModelConfig::from_json_str(s, Path::new("config.json"))
    }

    const BASE: &str = r#""hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 100, "intermediate_size": 128"#;

    #[test]
    fn v4_and_v5_rope_forms_agree() {
        let v4 = parse(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], {BASE}, "rope_theta": 500000.0,
               "rope_scaling": {{"type": "linear", "factor": 2.0}}, "some_unknown_key": [1, 2]}}"#
        ))
        .unwrap();
        let v5 = parse(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], {BASE},
               "rope_parameters": {{"rope_type": "linear", "factor": 2.0, "rope_theta": 500000.0}}}}"#
        ))
        .unwrap();
        assert_eq!(v4.rope, v5.rope);
        assert_eq!(v4.rope.scaling, RopeScaling::Linear { factor: 2.0 });
        assert_eq!(v4.head_dim, 16);
        assert_eq!(v4.n_kv_heads, 2);
    }

    #[test]
    fn missing_key_is_named() {
        let e =
            parse(r#"{"architectures": ["MixtralForCausalLM"], "hidden_size": 8}"#).unwrap_err();
        assert!(e.to_string().contains("num_hidden_layers"), "{e}");
        let e = parse(&format!(
            r#"{{"architectures": ["MixtralForCausalLM"], {BASE}}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains("num_local_experts"), "{e}");
    }

    #[test]
    fn unknown_architecture_and_rope_type() {
        let e = parse(&format!(
            r#"{{"architectures": ["GPT2LMHeadModel"], {BASE}}}"#
        ))
        .unwrap_err();
        assert!(
            matches!(e, LoaderError::UnsupportedArchitecture { .. }),
            "{e}"
        );
        let e = parse(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], {BASE}, "rope_scaling": {{"rope_type": "yarn", "factor": 4}}}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains("yarn"), "{e}");
    }

    #[test]
    fn qwen2_moe_dense_layers() {
        let c = parse(&format!(
            r#"{{"architectures": ["Qwen2MoeForCausalLM"], {BASE}, "num_experts": 4,
               "num_experts_per_tok": 2, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 48,
               "mlp_only_layers": [1], "decoder_sparse_step": 1}}"#
        ))
        .unwrap();
        let m = c.moe.as_ref().unwrap();
        assert_eq!(m.sparse_layers, vec![true, false]);
        assert_eq!(m.shared_expert_ffn, Some(48));
        assert!(c.attention_bias);
    }

    #[test]
    fn absurd_sizes_are_errors() {
        let e = parse(
            r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1000000000000,
               "num_attention_heads": 4, "vocab_size": 100, "intermediate_size": 128}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("num_hidden_layers"), "{e}");
        let e = parse(&format!(
            r#"{{"architectures": ["LlamaForCausalLM"], {BASE}, "head_dim": 99999999999}}"#
        ))
        .unwrap_err();
        assert!(e.to_string().contains("head_dim"), "{e}");
    }

    #[test]
    fn wrong_types_are_errors() {
        let e =
            parse(r#"{"architectures": ["LlamaForCausalLM"], "hidden_size": "big"}"#).unwrap_err();
        assert!(e.to_string().contains("hidden_size"), "{e}");
        let e = parse("[1, 2]").unwrap_err();
        assert!(e.to_string().contains("object"), "{e}");
        let e = parse("{not json").unwrap_err();
        assert!(matches!(e, LoaderError::Json { .. }), "{e}");
    }
}
