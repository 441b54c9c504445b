//! What a model is made of: sizes, parameter counts, and how its bytes split between the experts
//! (what offloading can move to flash) and the always-resident weights.

use std::collections::BTreeMap;

use cosmoe_loader::gguf::Value;
use serde::Serialize;

use crate::Model;

#[derive(Clone, Debug, Serialize)]
pub struct ExpertReport {
    pub n_experts: usize,
    pub top_k: usize,
    pub expert_ffn: usize,
    pub shared_expert_ffn: Option<usize>,
    /// Weight-decomposed experts: the rank of their factors.
    pub expert_rank: Option<usize>,
    pub sparse_layers: usize,
    pub params_per_expert: usize,
    pub bytes_per_expert: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelReport {
    pub path: String,
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Tensors per storage type in the files.
    pub dtypes: BTreeMap<String, usize>,
    pub experts: Option<ExpertReport>,
    pub params_total: usize,
    /// Parameters one token touches: everything but the experts it is not routed to.
    pub params_active_per_token: usize,
    pub bytes_total: usize,
    pub bytes_experts: usize,
    /// Embeddings, attention, norms, routers, shared experts, LM head.
    pub bytes_resident: usize,
    pub expert_share: f64,
    /// A GGUF file's metadata, `(key, value)` in file order; in JSON an object of typed values
    /// (strings, numbers, booleans, arrays), an array longer than [`JSON_ARRAY_MAX`] shortened to
    /// `{"type", "len", "first"}` (its first 8 elements).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "metadata_json"
    )]
    pub metadata: Vec<(String, Value)>,
}

impl ModelReport {
    pub fn of(model: &Model, path: &str) -> ModelReport {
        let c = &model.config;
        let mut dtypes = BTreeMap::new();
        let (mut params_total, mut bytes_total) = (0usize, 0usize);
        for t in model.source.tensor_stats() {
            *dtypes.entry(t.dtype).or_insert(0) += 1;
            params_total += t.n_elements;
            bytes_total += t.n_bytes;
        }
        let bytes_experts = model.experts.total_bytes();
        let mut inactive = 0usize;
        let experts = c.moe.as_ref().map(|m| {
            let first = model.experts.layout().layers.iter().flatten().next();
            let sparse_layers = (0..c.n_layers).filter(|&l| c.is_sparse_layer(l)).count();
            let params_per_expert = first.map_or(0, |w| w.n_params());
            inactive = sparse_layers * (m.n_experts - m.top_k) * params_per_expert;
            ExpertReport {
                n_experts: m.n_experts,
                top_k: m.top_k,
                expert_ffn: m.expert_ffn,
                shared_expert_ffn: m.shared_expert_ffn,
                expert_rank: m.expert_rank,
                sparse_layers,
                params_per_expert,
                bytes_per_expert: first.map_or(0, |w| w.n_bytes()),
            }
        });
        ModelReport {
            path: path.to_owned(),
            architecture: c.architecture.hf_class().to_owned(),
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            n_layers: c.n_layers,
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            intermediate_size: c.intermediate_size,
            max_position_embeddings: c.max_position_embeddings,
            tie_word_embeddings: c.tie_word_embeddings,
            dtypes,
            experts,
            params_total,
            params_active_per_token: params_total - inactive,
            bytes_total,
            bytes_experts,
            bytes_resident: bytes_total - bytes_experts,
            expert_share: if bytes_total == 0 {
                0.0
            } else {
                bytes_experts as f64 / bytes_total as f64
            },
            metadata: Vec::new(),
        }
    }

    /// Adds a GGUF file's metadata to the report.
    pub fn with_gguf_metadata(mut self, f: &cosmoe_loader::GgufFile) -> Self {
        self.metadata = f
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self
    }
}

/// Arrays up to this length are written whole in `inspect --json`.
pub const JSON_ARRAY_MAX: usize = 64;

fn metadata_json<S: serde::Serializer>(m: &[(String, Value)], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(m.len()))?;
    for (k, v) in m {
        map.serialize_entry(k, &value_json(v))?;
    }
    map.end()
}

/// A metadata value as JSON (a non-finite float as null).
fn value_json(v: &Value) -> serde_json::Value {
    use serde_json::json;
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F32(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(x) => json!(x),
        Value::Array(a) => {
            let shown = if a.len() > JSON_ARRAY_MAX { 8 } else { a.len() };
            let items: Vec<serde_json::Value> = (0..shown)
                .filter_map(|i| a.get(i))
                .map(|v| value_json(&v))
                .collect();
            if a.len() > JSON_ARRAY_MAX {
                json!({ "type": a.elem_type().to_string(), "len": a.len(), "first": items })
            } else {
                serde_json::Value::Array(items)
            }
        }
    }
}

fn human(n: usize) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.2} G", n / 1e9),
        n if n >= 1e6 => format!("{:.2} M", n / 1e6),
        n if n >= 1e3 => format!("{:.1} k", n / 1e3),
        n => format!("{n}"),
    }
}

fn mib(n: usize) -> String {
    format!("{:.2} MiB", n as f64 / (1024.0 * 1024.0))
}

impl std::fmt::Display for ModelReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dtypes: Vec<String> = self
            .dtypes
            .iter()
            .map(|(k, v)| format!("{k} x{v}"))
            .collect();
        writeln!(f, "model              {}", self.path)?;
        writeln!(f, "architecture       {}", self.architecture)?;
        writeln!(f, "tensors            {}", dtypes.join(", "))?;
        writeln!(
            f,
            "layers x hidden    {} x {} (vocab {}, context {})",
            self.n_layers, self.hidden_size, self.vocab_size, self.max_position_embeddings
        )?;
        writeln!(
            f,
            "attention          {} heads, {} kv heads, head_dim {}",
            self.n_heads, self.n_kv_heads, self.head_dim
        )?;
        match &self.experts {
            Some(e) => {
                writeln!(
                    f,
                    "experts            {} per layer, top-{}, ffn {}, in {} of {} layers{}",
                    e.n_experts,
                    e.top_k,
                    e.expert_ffn,
                    e.sparse_layers,
                    self.n_layers,
                    e.shared_expert_ffn
                        .map_or(String::new(), |s| format!(", shared expert ffn {s}"))
                        + &e.expert_rank.map_or(String::new(), |r| {
                            format!(", weight-decomposed: rank {r}")
                        })
                )?;
                writeln!(
                    f,
                    "per expert         {} params, {}",
                    human(e.params_per_expert),
                    mib(e.bytes_per_expert)
                )?;
            }
            None => writeln!(
                f,
                "mlp                dense, ffn {}",
                self.intermediate_size
            )?,
        }
        writeln!(
            f,
            "parameters         {} total, {} active per token",
            human(self.params_total),
            human(self.params_active_per_token)
        )?;
        writeln!(
            f,
            "bytes              {} total = {} experts ({:.1} %) + {} resident",
            mib(self.bytes_total),
            mib(self.bytes_experts),
            100.0 * self.expert_share,
            mib(self.bytes_resident)
        )?;
        if !self.metadata.is_empty() {
            writeln!(f, "\nGGUF metadata")?;
            for (k, v) in &self.metadata {
                writeln!(f, "  {k:<44} {v}")?;
            }
        }
        Ok(())
    }
}
