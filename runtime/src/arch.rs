//! What differs between architectures, each difference in one place.
//!
//! The forward pass ([`crate::forward`]) is one function for all of them; it asks [`ArchSpec`] how to
//! normalise q/k and route tokens, and `ModelConfig` for the values (biases, multipliers, windows).
//! [`TensorNames`] maps each weight to its name in a Hugging Face checkpoint or a GGUF file.

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
    /// RoPE pairs interleaved `(x_2i, x_2i+1)` (GGUF files of the llama family, whose Q/K the converter
    /// permuted) rather than split in halves (Hugging Face checkpoints, and the other GGUF families).
    pub rope_interleaved: bool,
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
            rope_interleaved: false,
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
    /// Three 3-D tensors (GGUF `ffn_{gate,up,down}_exps`): (n_experts, ffn, hidden) twice and
    /// (n_experts, hidden, ffn).
    Stacked {
        gate: String,
        up: String,
        down: String,
    },
}

/// The file format whose naming a model's tensors follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// Hugging Face transformers (`model.layers.N.self_attn.q_proj.weight`).
    HuggingFace,
    /// llama.cpp's GGUF (`blk.N.attn_q.weight`).
    Gguf,
}

/// The tensors of one layer, by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    AttnNorm,
    Q,
    K,
    V,
    O,
    QNorm,
    KNorm,
    FfnNorm,
    /// Dense MLP.
    Gate,
    Up,
    Down,
    /// Qwen2-MoE's shared expert and its sigmoid gate.
    SharedGate,
    SharedUp,
    SharedDown,
    SharedRouter,
}

/// Names of one model's tensors.
pub struct TensorNames {
    arch: Architecture,
    naming: Naming,
}

impl TensorNames {
    pub fn new(arch: Architecture, naming: Naming) -> Self {
        TensorNames { arch, naming }
    }

    pub fn embed(&self) -> &'static str {
        match self.naming {
            Naming::HuggingFace => "model.embed_tokens.weight",
            Naming::Gguf => "token_embd.weight",
        }
    }
    pub fn final_norm(&self) -> &'static str {
        match self.naming {
            Naming::HuggingFace => "model.norm.weight",
            Naming::Gguf => "output_norm.weight",
        }
    }
    pub fn lm_head(&self) -> &'static str {
        match self.naming {
            Naming::HuggingFace => "lm_head.weight",
            Naming::Gguf => "output.weight",
        }
    }

    fn layer(&self, l: usize, rest: &str) -> String {
        match self.naming {
            Naming::HuggingFace => format!("model.layers.{l}.{rest}"),
            Naming::Gguf => format!("blk.{l}.{rest}"),
        }
    }

    /// The name of a layer's tensor without its `.weight` / `.bias` suffix.
    pub fn part(&self, l: usize, p: Part) -> String {
        let rest = match self.naming {
            Naming::HuggingFace => match p {
                Part::AttnNorm => "input_layernorm",
                Part::Q => "self_attn.q_proj",
                Part::K => "self_attn.k_proj",
                Part::V => "self_attn.v_proj",
                Part::O => "self_attn.o_proj",
                Part::QNorm => "self_attn.q_norm",
                Part::KNorm => "self_attn.k_norm",
                Part::FfnNorm => "post_attention_layernorm",
                Part::Gate => "mlp.gate_proj",
                Part::Up => "mlp.up_proj",
                Part::Down => "mlp.down_proj",
                Part::SharedGate => "mlp.shared_expert.gate_proj",
                Part::SharedUp => "mlp.shared_expert.up_proj",
                Part::SharedDown => "mlp.shared_expert.down_proj",
                Part::SharedRouter => "mlp.shared_expert_gate",
            },
            Naming::Gguf => match p {
                Part::AttnNorm => "attn_norm",
                Part::Q => "attn_q",
                Part::K => "attn_k",
                Part::V => "attn_v",
                Part::O => "attn_output",
                Part::QNorm => "attn_q_norm",
                Part::KNorm => "attn_k_norm",
                Part::FfnNorm => "ffn_norm",
                Part::Gate => "ffn_gate",
                Part::Up => "ffn_up",
                Part::Down => "ffn_down",
                Part::SharedGate => "ffn_gate_shexp",
                Part::SharedUp => "ffn_up_shexp",
                Part::SharedDown => "ffn_down_shexp",
                Part::SharedRouter => "ffn_gate_inp_shexp",
            },
        };
        self.layer(l, rest)
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
        if self.naming == Naming::Gguf {
            return vec![self.layer(l, "ffn_gate_inp.weight")];
        }
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
        if self.naming == Naming::Gguf {
            return vec![ExpertLayout::Stacked {
                gate: self.layer(l, "ffn_gate_exps.weight"),
                up: self.layer(l, "ffn_up_exps.weight"),
                down: self.layer(l, "ffn_down_exps.weight"),
            }];
        }
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
