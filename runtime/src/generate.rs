//! Generation: prefill the prompt, then sample and decode one token at a time.

use std::time::{Duration, Instant};

use crate::forward::Logits;
use crate::sampler::{Sampler, SamplerConfig};
use crate::{Error, Model, Result};

#[derive(Clone, Debug)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    /// Stop after a token listed as `eos_token_id` in config.json.
    pub stop_at_eos: bool,
    pub sampler: SamplerConfig,
}

/// What one generation produced and what it cost.
#[derive(Clone, Debug, Default)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    /// Prompt forward pass (includes the first token's logits).
    pub prefill: Duration,
    /// All later forward passes.
    pub decode: Duration,
    /// Stopped because the model's context was full.
    pub hit_context_limit: bool,
}

/// Generates up to `cfg.max_new_tokens` after `prompt`, calling `on_token` with each new token as soon
/// as it is sampled (before the next forward pass).
pub fn generate(
    model: &Model,
    prompt: &[u32],
    cfg: &GenerateConfig,
    mut on_token: impl FnMut(u32),
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(Error::EmptyInput);
    }
    let max_ctx = model.config.max_position_embeddings;
    let mut sampler = Sampler::new(cfg.sampler.clone())?;
    let mut kv = model.new_kv_cache();
    let mut g = Generation {
        prompt_tokens: prompt.len(),
        ..Default::default()
    };
    if cfg.max_new_tokens == 0 {
        return Ok(g);
    }
    let t0 = Instant::now();
    let mut logits = model.forward(prompt, &mut kv, Logits::Last)?;
    g.prefill = t0.elapsed();
    loop {
        let tok = sampler.sample(&logits);
        g.tokens.push(tok);
        on_token(tok);
        let eos = cfg.stop_at_eos && model.config.eos_token_ids.contains(&tok);
        if eos || g.tokens.len() >= cfg.max_new_tokens {
            break;
        }
        if kv.len() >= max_ctx {
            g.hit_context_limit = true;
            break;
        }
        let t = Instant::now();
        logits = model.forward(&[tok], &mut kv, Logits::Last)?;
        g.decode += t.elapsed();
    }
    Ok(g)
}
