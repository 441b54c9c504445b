//! From logits to the next token: a repeat penalty, then greedy at temperature 0, else top-k, min-p,
//! temperature and top-p sampling with a seeded, reproducible generator (ChaCha8).

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
    /// Drop tokens less likely than `min_p` times the most likely one, at temperature 1 as
    /// llama.cpp's min-p (0: off).
    pub min_p: f32,
    /// Divide the positive logits of tokens among the last `repeat_last_n` of the context by this,
    /// multiply the negative ones (CTRL's penalty, as llama.cpp's; 1: off). Applies to greedy too.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
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
        if !(0.0..=1.0).contains(&cfg.min_p) {
            return Err(Error::InvalidArgument(format!(
                "min-p must be in [0, 1], got {}",
                cfg.min_p
            )));
        }
        if !(cfg.repeat_penalty.is_finite() && cfg.repeat_penalty > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "the repeat penalty must be a finite number > 0, got {}",
                cfg.repeat_penalty
            )));
        }
        let rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        Ok(Sampler { cfg, rng })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// The next token given one position's logits and the context so far (`recent`: its tokens, the
    /// last `repeat_last_n` of which are penalised).
    pub fn sample(&mut self, logits: &[f32], recent: &[u32]) -> u32 {
        let penalised;
        let logits = if self.cfg.repeat_penalty != 1.0 && self.cfg.repeat_last_n > 0 {
            penalised = self.penalise(logits, recent);
            &penalised[..]
        } else {
            logits
        };
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
        if self.cfg.min_p > 0.0 {
            // p_i / p_max = exp(l_i - l_max) at temperature 1; the first candidate always stays.
            let floor = cand[0].1 + self.cfg.min_p.ln();
            let keep = cand.iter().take_while(|c| c.1 >= floor).count().max(1);
            cand.truncate(keep);
        }

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

    /// `logits` with the repeat penalty applied to each distinct token of `recent`'s tail.
    fn penalise(&self, logits: &[f32], recent: &[u32]) -> Vec<f32> {
        let mut out = logits.to_vec();
        let mut seen: Vec<u32> =
            recent[recent.len().saturating_sub(self.cfg.repeat_last_n)..].to_vec();
        seen.sort_unstable();
        seen.dedup();
        let p = self.cfg.repeat_penalty;
        for &t in &seen {
            if let Some(v) = out.get_mut(t as usize) {
                *v = if *v > 0.0 { *v / p } else { *v * p };
            }
        }
        out
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
            ..SamplerConfig::default()
        }
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(cfg(0.0, 40, 0.95, 1)).unwrap();
        assert_eq!(s.sample(&[0.1, 3.0, -1.0, 3.0], &[]), 1);
        assert_eq!(argmax(&[f32::NAN, 1.0]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_reproduces() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let mut s = Sampler::new(cfg(1.0, 1, 1.0, 7)).unwrap();
        for _ in 0..20 {
            assert_eq!(s.sample(&logits, &[]), argmax(&logits));
        }
        let draw = |seed| {
            let mut s = Sampler::new(cfg(1.5, 0, 1.0, seed)).unwrap();
            (0..30).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }

    #[test]
    fn top_p_restricts_to_nucleus() {
        // One token holds ~88 % of the mass: top_p 0.5 must always pick it.
        let logits = [5.0, 3.0, 0.0, 0.0, 0.0];
        let mut s = Sampler::new(cfg(1.0, 0, 0.5, 9)).unwrap();
        assert!((0..100).all(|_| s.sample(&logits, &[]) == 0));
        // With everything allowed, others do come up.
        let mut s = Sampler::new(cfg(1.0, 0, 1.0, 9)).unwrap();
        assert!((0..200).any(|_| s.sample(&logits, &[]) != 0));
    }

    #[test]
    fn bad_settings_are_errors() {
        assert!(Sampler::new(cfg(-1.0, 0, 1.0, 0)).is_err());
        assert!(Sampler::new(cfg(f32::NAN, 0, 1.0, 0)).is_err());
        assert!(Sampler::new(cfg(1.0, 0, 0.0, 0)).is_err());
        assert!(Sampler::new(cfg(1.0, 0, 1.5, 0)).is_err());
        let with = |min_p, repeat_penalty| SamplerConfig {
            min_p,
            repeat_penalty,
            ..cfg(1.0, 0, 1.0, 0)
        };
        assert!(Sampler::new(with(1.5, 1.0)).is_err());
        assert!(Sampler::new(with(-0.1, 1.0)).is_err());
        assert!(Sampler::new(with(0.1, 0.0)).is_err());
        assert!(Sampler::new(with(0.1, f32::INFINITY)).is_err());
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        // exp(-3) ~ 0.05 of the best: min-p 0.1 keeps tokens 0 and 1 (exp(-1) ~ 0.37) only.
        let logits = [4.0, 3.0, 1.0, 1.0, 1.0, 1.0];
        let mut s = Sampler::new(SamplerConfig {
            min_p: 0.1,
            ..cfg(2.0, 0, 1.0, 5)
        })
        .unwrap();
        let drawn: Vec<u32> = (0..300).map(|_| s.sample(&logits, &[])).collect();
        assert!(drawn.iter().all(|&t| t <= 1));
        assert!(drawn.contains(&1));
        let mut s = Sampler::new(cfg(2.0, 0, 1.0, 5)).unwrap();
        assert!((0..300).any(|_| s.sample(&logits, &[]) > 1));
    }

    #[test]
    fn repeat_penalty_applies_to_the_recent_tail_and_to_greedy() {
        let pen = |n| SamplerConfig {
            repeat_penalty: 2.0,
            repeat_last_n: n,
            ..cfg(0.0, 40, 1.0, 0)
        };
        // 3.0 / 2 = 1.5 < 2.0: token 1 loses to token 0 once it was seen.
        let logits = [2.0, 3.0, -1.0];
        let mut s = Sampler::new(pen(4)).unwrap();
        assert_eq!(s.sample(&logits, &[]), 1);
        assert_eq!(s.sample(&logits, &[1, 1]), 0);
        // Seen only before the last 2 tokens: not penalised.
        let mut s = Sampler::new(pen(2)).unwrap();
        assert_eq!(s.sample(&logits, &[1, 2, 2]), 1);
        // A negative logit is multiplied: -1 * 2 = -2.
        assert_eq!(s.penalise(&logits, &[2]), vec![2.0, 3.0, -2.0]);
        // Ids past the vocabulary are ignored.
        assert_eq!(s.penalise(&logits, &[7]), logits.to_vec());
    }
}
