//! From logits to the next token: greedy at temperature 0, else temperature, top-k and top-p sampling
//! with a seeded, reproducible generator (ChaCha8).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 picks the most likely token (greedy); higher flattens the distribution.
    pub temperature: f32,
    /// Sample among the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Then among the smallest set whose probability reaches `top_p` (1: all).
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            seed: 0,
        }
    }
}

pub struct Sampler {
    cfg: SamplerConfig,
    rng: ChaCha8Rng,
}

/// Index of the largest value (the first of equal ones; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Result<Sampler> {
        if !(cfg.temperature.is_finite() && cfg.temperature >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "temperature must be a finite number >= 0, got {}",
                cfg.temperature
            )));
        }
        if !(cfg.top_p > 0.0 && cfg.top_p <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "top-p must be in (0, 1], got {}",
                cfg.top_p
            )));
        }
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Ok(Sampler { cfg, rng })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// The next token given one position's logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.cfg.temperature == 0.0 || logits.len() <= 1 {
            return argmax(logits);
        }
        // Candidates, most likely first (NaN logits are never candidates).
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(|(i, &v)| (i as u32, v))
            .collect();
        if cand.is_empty() {
            return 0;
        }
        let by_logit = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = if self.cfg.top_k == 0 {
            cand.len()
        } else {
            self.cfg.top_k.min(cand.len())
        };
        if k < cand.len() {
            cand.select_nth_unstable_by(k - 1, by_logit);
            cand.truncate(k);
        }
        cand.sort_unstable_by(by_logit);

        // Softmax at temperature T over the candidates.
        let max = cand[0].1;
        let inv_t = 1.0 / self.cfg.temperature as f64;
        let mut probs: Vec<f64> = cand
            .iter()
            .map(|c| ((c.1 - max) as f64 * inv_t).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);

        // Nucleus: the shortest prefix whose mass reaches top_p.
        let mut keep = probs.len();
        if self.cfg.top_p < 1.0 {
            let mut acc = 0.0;
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if acc >= self.cfg.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        let mass: f64 = probs[..keep].iter().sum();
        let mut u = self.rng.random::<f64>() * mass;
        for (c, p) in cand[..keep].iter().zip(&probs) {
            if u < *p {
                return c.0;
            }
            u -= p;
        }
        cand[keep - 1].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k,
            top_p,
            seed,
        }
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(cfg(0.0, 40, 0.95, 1)).unwrap();
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_reproduces() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let mut s = Sampler::new(cfg(1.0, 1, 1.0, 7)).unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&logits), argmax(&logits));
        }
        let draw = |seed| {
            let mut s = Sampler::new(cfg(1.5, 0, 1.0, seed)).unwrap();
            (0..30).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn top_p_restricts_to_nucleus() {
        // One token holds ~88 % of the mass: top_p 0.5 must always pick it.
        let logits = [5.0, 3.0, 0.0, 0.0, 0.0];
        let mut s = Sampler::new(cfg(1.0, 0, 0.5, 9)).unwrap();
        assert!((0..100).all(|_| s.sample(&logits) == 0));
        // With everything allowed, others do come up.
        let mut s = Sampler::new(cfg(1.0, 0, 1.0, 9)).unwrap();
        assert!((0..200).any(|_| s.sample(&logits) != 0));
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(Sampler::new(cfg(-1.0, 0, 1.0, 0)).is_err());
        assert!(Sampler::new(cfg(f32::NAN, 0, 1.0, 0)).is_err());
        assert!(Sampler::new(cfg(1.0, 0, 0.0, 0)).is_err());
        assert!(Sampler::new(cfg(1.0, 0, 1.5, 0)).is_err());
    }
}
