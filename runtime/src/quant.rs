//! llama-quantize's file types (`Q4_K_M`, `Q2_K`, ...) applied to cosmoe's models: which type each
//! matrix gets ([`cosmoe_loader::quant`] holds the rules), for `convert --type`, `synth --type` and
//! `--quantize` on load.
//!
//! The rules look at tensors by their GGUF names and shapes, as llama-quantize sees a file; a Hugging
//! Face checkpoint is planned as the file `cosmoe convert` would write of it.

use std::collections::HashMap;

use cosmoe_loader::quant::{plan_types, QuantModel, QuantTensor, TensorType};
use cosmoe_loader::{Architecture, LoaderError, ModelConfig};

pub use cosmoe_loader::quant::{Blocks, FileType, QuantScheme};

use crate::arch::{Naming, Part, TensorNames};
use crate::convert::gguf_arch;
use crate::{Error, Result};

/// What llama-quantize reads of a model besides its tensors.
pub fn quant_model(c: &ModelConfig) -> QuantModel {
    QuantModel {
        arch: gguf_arch(c.architecture).to_owned(),
        n_layer: c.n_layers,
        n_head: c.n_heads,
        n_head_kv: c.n_kv_heads,
        n_expert: c.moe.as_ref().map_or(0, |m| m.n_experts),
    }
}

/// Whether a GGUF file of `c` written by `cosmoe convert` has `output.weight` (llama.cpp's qwen2moe
/// and olmoe require it even when the embeddings are tied).
pub fn writes_output(c: &ModelConfig) -> bool {
    !c.tie_word_embeddings || matches!(c.architecture, Architecture::Qwen2Moe | Architecture::Olmoe)
}

/// The matrices of a GGUF file of `c` (llama.cpp's names; ggml dims, innermost first), with
/// `output.weight` where `output` says: what llama-quantize would see.
pub fn gguf_matrices(c: &ModelConfig, output: bool) -> Vec<(String, Vec<usize>)> {
    let names = TensorNames::new(c.architecture, Naming::Gguf);
    let (h, hd) = (c.hidden_size, c.head_dim);
    let (q_dim, kv_dim) = (c.n_heads * hd, c.n_kv_heads * hd);
    let mut v = vec![(names.embed().to_owned(), vec![h, c.vocab_size])];
    for l in 0..c.n_layers {
        let w = |p: Part| format!("{}.weight", names.part(l, p));
        v.push((w(Part::Q), vec![h, q_dim]));
        v.push((w(Part::K), vec![h, kv_dim]));
        v.push((w(Part::V), vec![h, kv_dim]));
        v.push((w(Part::O), vec![q_dim, h]));
        match &c.moe {
            Some(m) if c.is_sparse_layer(l) => {
                let (e, f) = (m.n_experts, m.expert_ffn);
                v.push((format!("blk.{l}.ffn_gate_inp.weight"), vec![h, e]));
                v.push((format!("blk.{l}.ffn_gate_exps.weight"), vec![h, f, e]));
                v.push((format!("blk.{l}.ffn_up_exps.weight"), vec![h, f, e]));
                v.push((format!("blk.{l}.ffn_down_exps.weight"), vec![f, h, e]));
                if let Some(s) = m.shared_expert_ffn {
                    v.push((w(Part::SharedGate), vec![h, s]));
                    v.push((w(Part::SharedUp), vec![h, s]));
                    v.push((w(Part::SharedDown), vec![s, h]));
                    v.push((w(Part::SharedRouter), vec![h, 1]));
                }
            }
            _ => {
                let f = c.intermediate_size;
                v.push((w(Part::Gate), vec![h, f]));
                v.push((w(Part::Up), vec![h, f]));
                v.push((w(Part::Down), vec![f, h]));
            }
        }
    }
    if output {
        v.push((names.lm_head().to_owned(), vec![h, c.vocab_size]));
    }
    v
}

/// The type of every matrix of one file, by GGUF tensor name.
#[derive(Clone, Debug)]
pub struct TypePlan {
    types: HashMap<String, TensorType>,
}

impl TypePlan {
    /// The types llama-quantize would give `tensors` (name, ggml dims) of a model of `c`, for
    /// matrices made of `blocks`. A scheme in a type cosmoe cannot quantise to is an
    /// [`Error::InvalidArgument`] (see [`plan_types`] for which).
    pub fn new(
        scheme: QuantScheme,
        c: &ModelConfig,
        tensors: &[(String, Vec<usize>)],
        blocks: Blocks,
    ) -> Result<TypePlan> {
        let ts: Vec<QuantTensor<'_>> = tensors
            .iter()
            .map(|(name, ne)| QuantTensor { name, ne })
            .collect();
        let planned = plan_types(scheme, &quant_model(c), &ts, blocks).map_err(|e| match e {
            LoaderError::Kernel(e) => Error::InvalidArgument(e.to_string()),
            e => Error::Load(e),
        })?;
        let types = tensors
            .iter()
            .zip(planned)
            .filter_map(|((name, _), t)| Some((name.clone(), t?)))
            .collect();
        Ok(TypePlan { types })
    }

    /// The plan for the file `cosmoe convert` would write of `c` ([`gguf_matrices`]).
    pub fn for_config(
        scheme: QuantScheme,
        c: &ModelConfig,
        output: bool,
        blocks: Blocks,
    ) -> Result<TypePlan> {
        Self::new(scheme, c, &gguf_matrices(c, output), blocks)
    }

    /// The type of tensor `name`; `None` where it stays as stored (routers, norms) or is not in the
    /// plan.
    pub fn get(&self, name: &str) -> Option<TensorType> {
        self.types.get(name).copied()
    }
}
