//! What differs between architectures, each difference in one place.
//!
//! The forward pass ([`crate::forward`]) is one function for all of them; it asks [`ArchSpec`] how to
//! normalise q/k and route tokens, and `ModelConfig` for the values (biases, multipliers, windows).
//! [`TensorNames`] maps each weight to its name in a Hugging Face checkpoint.

use cosmoe_loader::Architecture;

/// RMSNorm of queries and keys before RoPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkNorm {
    None,
    /// Qwen3-MoE: over each head (`head_dim` weights shared by all heads).
    PerHead,
    /// OLMoE: over the whole projection (`n_heads * head_dim` weights), before splitting into heads.
    Whole,
}

/// How router logits become expert weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Routing {
    /// Softmax over all experts, then top-k (renormalised where `norm_topk_prob`): Mixtral, Qwen, OLMoE.
    SoftmaxTopK,
    /// Top-k of the logits, then softmax over those k: GraniteMoE.
    TopKSoftmax,
}

#[derive(Clone, Copy, Debug)]
pub struct ArchSpec {
    pub qk_norm: QkNorm,
    pub routing: Routing,
    /// Whether `o_proj` carries a bias when `attention_bias` is set (Qwen2's never does).
    pub o_bias_with_attention_bias: bool,
}

impl ArchSpec {
    pub fn of(arch: Architecture) -> ArchSpec {
        use Architecture as A;
        ArchSpec {
            qk_norm: match arch {
                A::Qwen3 | A::Qwen3Moe => QkNorm::PerHead,
                A::Olmoe => QkNorm::Whole,
                _ => QkNorm::None,
            },
            routing: match arch {
                A::GraniteMoe => Routing::TopKSoftmax,
                _ => Routing::SoftmaxTopK,
            },
            o_bias_with_attention_bias: !matches!(arch, A::Qwen2 | A::Qwen2Moe),
        }
    }
}

/// How a layer's routed experts are stored in the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpertLayout {
    /// One 2-D tensor per expert and projection: `{prefix}.{e}.{gate}.weight` etc.
    PerExpert {
        prefix: String,
        gate: &'static str,
        up: &'static str,
        down: &'static str,
    },
    /// 3-D tensors: `gate_up` of shape (n_experts, 2 * ffn, hidden), gate rows first, and `down` of
    /// shape (n_experts, hidden, ffn).
    Fused { gate_up: String, down: String },
}

/// Names of one checkpoint's tensors.
pub struct TensorNames {
    arch: Architecture,
}

impl TensorNames {
    pub fn new(arch: Architecture) -> Self {
        TensorNames { arch }
    }

    pub fn embed(&self) -> &'static str {
        "model.embed_tokens.weight"
    }
    pub fn final_norm(&self) -> &'static str {
        "model.norm.weight"
    }
    pub fn lm_head(&self) -> &'static str {
        "lm_head.weight"
    }

    pub fn layer(&self, l: usize, rest: &str) -> String {
        format!("model.layers.{l}.{rest}")
    }

    /// The MoE block's module path: `block_sparse_moe` (Mixtral, GraniteMoE) or `mlp`.
    fn moe_module(&self) -> &'static str {
        match self.arch {
            Architecture::Mixtral | Architecture::GraniteMoe => "block_sparse_moe",
            _ => "mlp",
        }
    }

    /// Candidate names of the router weight (n_experts, hidden); transformers 5 renamed some.
    pub fn router(&self, l: usize) -> Vec<String> {
        let m = self.moe_module();
        match self.arch {
            Architecture::GraniteMoe => vec![
                self.layer(l, &format!("{m}.router.layer.weight")),
                self.layer(l, &format!("{m}.router.weight")),
            ],
            _ => vec![
                self.layer(l, &format!("{m}.gate.weight")),
                self.layer(l, "mlp.gate.weight"),
                self.layer(l, &format!("{m}.router.weight")),
            ],
        }
    }

    /// Candidate layouts of layer `l`'s experts, in the order they are tried.
    pub fn expert_layouts(&self, l: usize) -> Vec<ExpertLayout> {
        let m = self.moe_module();
        let mut v = Vec::new();
        match self.arch {
            Architecture::Mixtral => v.push(ExpertLayout::PerExpert {
                prefix: self.layer(l, &format!("{m}.experts")),
                gate: "w1",
                up: "w3",
                down: "w2",
            }),
            Architecture::GraniteMoe => v.push(ExpertLayout::Fused {
                gate_up: self.layer(l, &format!("{m}.input_linear.weight")),
                down: self.layer(l, &format!("{m}.output_linear.weight")),
            }),
            _ => {}
        }
        for module in [m, "mlp"] {
            v.push(ExpertLayout::PerExpert {
                prefix: self.layer(l, &format!("{module}.experts")),
                gate: "gate_proj",
                up: "up_proj",
                down: "down_proj",
            });
            v.push(ExpertLayout::Fused {
                gate_up: self.layer(l, &format!("{module}.experts.gate_up_proj")),
                down: self.layer(l, &format!("{module}.experts.down_proj")),
            });
        }
        v.dedup();
        v
    }
}
