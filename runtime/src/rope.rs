//! Rotary position embeddings, with the frequencies computed as transformers computes them (in f32).

use cosmoe_loader::{RopeConfig, RopeScaling};

/// Inverse frequencies of one head (`head_dim / 2` of them).
#[derive(Clone, Debug)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    /// `factors` (llama.cpp's `rope_freqs`, one per frequency) divide the frequencies.
    pub fn new(cfg: &RopeConfig, head_dim: usize, factors: Option<&[f32]>) -> Rope {
        let base = cfg.theta as f32;
        let d = head_dim as f32;
        // transformers: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all in f32.
        let mut inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / d))
            .collect();
        match cfg.scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => {
                let f = factor as f32;
                inv_freq.iter_mut().for_each(|x| *x /= f);
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                // transformers' _compute_llama3_parameters: long wavelengths are slowed by `factor`,
                // short ones kept, the band between interpolated smoothly.
                let (factor, low, high) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                );
                let old_len = original_max_position_embeddings as f32;
                let low_wavelen = old_len / low;
                let high_wavelen = old_len / high;
                for x in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f32::consts::PI / *x;
                    let scaled = if wavelen > low_wavelen {
                        *x / factor
                    } else {
                        *x
                    };
                    let medium = (high_wavelen..=low_wavelen).contains(&wavelen);
                    *x = if medium {
                        let smooth = (old_len / wavelen - low) / (high - low);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    } else {
                        scaled
                    };
                }
            }
        }
        if let Some(ff) = factors {
            inv_freq.iter_mut().zip(ff).for_each(|(x, f)| *x /= f);
        }
        Rope { inv_freq }
    }

    /// cos and sin of every frequency at position `pos` (`head_dim / 2` each).
    pub fn cos_sin(&self, pos: usize, cos: &mut [f32], sin: &mut [f32]) {
        let p = pos as f32;
        for ((c, s), &f) in cos.iter_mut().zip(sin.iter_mut()).zip(&self.inv_freq) {
            let angle = p * f;
            *c = angle.cos();
            *s = angle.sin();
        }
    }

    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_frequencies() {
        let r = Rope::new(
            &RopeConfig {
                theta: 10000.0,
                scaling: RopeScaling::None,
            },
            8,
            None,
        );
        let want = [1.0, 0.1, 0.01, 0.001];
        for (a, b) in r.inv_freq().iter().zip(want) {
            assert!((a - b).abs() <= 1e-6 * b, "{a} vs {b}");
        }
    }

    #[test]
    fn llama3_bands() {
        // head_dim 64 with theta 500000: some wavelengths fall in each band for old_len 64.
        let cfg = RopeConfig {
            theta: 500000.0,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 64.0,
            },
        };
        let plain = Rope::new(
            &RopeConfig {
                theta: 500000.0,
                scaling: RopeScaling::None,
            },
            64,
            None,
        );
        let r = Rope::new(&cfg, 64, None);
        // highest frequency (short wavelength) unchanged, lowest divided by 8
        assert_eq!(r.inv_freq()[0], plain.inv_freq()[0]);
        let last = plain.inv_freq().len() - 1;
        assert!((r.inv_freq()[last] - plain.inv_freq()[last] / 8.0).abs() < 1e-12);
    }
}
