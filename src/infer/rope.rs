//! Rotary position embeddings, rotate-half convention (transformers'
//! `apply_rotary_pos_emb`): for a head `x` of width `d` and `i < d/2`,
//!
//! ```text
//! x'[i]       = x[i]·cos(p·f_i) − x[i + d/2]·sin(p·f_i)
//! x'[i + d/2] = x[i + d/2]·cos(p·f_i) + x[i]·sin(p·f_i)
//! ```
//!
//! with inverse frequencies `f_i = 1 / θ^(2i/d)` computed in f32 as
//! transformers does (`θ ** (arange(0, d, 2).float() / d)`), optionally
//! rescaled by `rope_scaling` (linear, or llama3's smooth band). The angle
//! `p·f_i` is rounded to f32 (as transformers' f32 `position_ids · inv_freq`);
//! cos and sin are evaluated in f64 and rounded, so each is within half an
//! f32 ulp of the exact function of that angle.

use crate::{Error, Result};

/// RoPE frequency scaling (`rope_parameters.rope_type`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Every inverse frequency divided by `factor`.
    Linear {
        /// Scale factor.
        factor: f64,
    },
    /// Llama 3.1's band scaling (transformers' `_compute_llama3_parameters`).
    Llama3 {
        /// Factor for low frequencies.
        factor: f64,
        /// Wavelengths above `original / low_freq_factor` are divided by `factor`.
        low_freq_factor: f64,
        /// Wavelengths below `original / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// Pretraining context length.
        original_max_position_embeddings: f64,
    },
}

impl RopeScaling {
    /// Finite positive factors; llama3's `high_freq_factor != low_freq_factor`.
    pub fn validate(&self) -> Result<()> {
        let pos = |v: f64, what: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(
                    "rope_parameters",
                    format!("{what} must be finite and > 0, got {v}"),
                ))
            }
        };
        match *self {
            RopeScaling::Default => Ok(()),
            RopeScaling::Linear { factor } => pos(factor, "factor"),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                pos(factor, "factor")?;
                pos(low_freq_factor, "low_freq_factor")?;
                pos(high_freq_factor, "high_freq_factor")?;
                pos(
                    original_max_position_embeddings,
                    "original_max_position_embeddings",
                )?;
                if high_freq_factor == low_freq_factor {
                    return Err(Error::invalid(
                        "rope_parameters",
                        "high_freq_factor must differ from low_freq_factor",
                    ));
                }
                Ok(())
            }
        }
    }
}

/// Precomputed inverse frequencies of one head width.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    /// Frequencies for heads of width `head_dim` (even), base `theta`.
    pub fn new(head_dim: usize, theta: f64, scaling: RopeScaling) -> Self {
        let half = head_dim / 2;
        let d = head_dim as f32;
        let base = theta as f32;
        let mut inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                let e = (2 * i) as f32 / d;
                let p = (base as f64).powf(e as f64) as f32;
                1.0f32 / p
            })
            .collect();
        match scaling {
            RopeScaling::Default => {}
            RopeScaling::Linear { factor } => {
                for f in &mut inv_freq {
                    *f /= factor as f32;
                }
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: old,
            } => {
                // The same f32 tensor arithmetic as transformers.
                let (factor, lo, hi, old) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                    old as f32,
                );
                let low_wavelen = old / lo;
                let high_wavelen = old / hi;
                for f in &mut inv_freq {
                    let wavelen = (2.0 * std::f64::consts::PI) as f32 / *f;
                    let scaled = if wavelen > low_wavelen {
                        *f / factor
                    } else {
                        *f
                    };
                    let smooth = (old / wavelen - lo) / (hi - lo);
                    let smoothed = (1.0 - smooth) * scaled / factor + smooth * scaled;
                    // transformers: ~(wavelen < high) * ~(wavelen > low); no NaN here
                    let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
                    *f = if medium { smoothed } else { scaled };
                }
            }
        }
        Rope { inv_freq }
    }

    /// The inverse frequencies (`head_dim / 2`).
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// Writes `cos` and `sin` of position `pos` (`head_dim / 2` each).
    pub fn cos_sin(&self, pos: usize, cos: &mut [f32], sin: &mut [f32]) {
        let p = pos as f32;
        for ((f, c), s) in self.inv_freq.iter().zip(cos).zip(sin) {
            let a = (p * f) as f64;
            *c = a.cos() as f32;
            *s = a.sin() as f32;
        }
    }

    /// Rotates every head of `x` (`heads · head_dim` values) in place with
    /// the `cos`/`sin` of one position.
    pub fn apply(x: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32]) {
        let half = head_dim / 2;
        for h in x.chunks_exact_mut(head_dim) {
            let (a, b) = h.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_frequencies_and_rotation() {
        let r = Rope::new(8, 10000.0, RopeScaling::Default);
        let want = [1.0, 0.1, 0.01, 0.001];
        for (a, b) in r.inv_freq().iter().zip(want) {
            assert!((a - b).abs() <= 1e-7 * b, "{a} vs {b}");
        }
        let (mut c, mut s) = ([0f32; 4], [0f32; 4]);
        r.cos_sin(0, &mut c, &mut s);
        let mut x = [1.0f32, 2., 3., 4., 5., 6., 7., 8.];
        let x0 = x;
        Rope::apply(&mut x, 8, &c, &s);
        assert_eq!(x, x0, "position 0 is the identity");
        // A rotation keeps the norm of each (i, i + d/2) pair.
        r.cos_sin(37, &mut c, &mut s);
        Rope::apply(&mut x, 8, &c, &s);
        for i in 0..4 {
            let n0 = x0[i].hypot(x0[i + 4]);
            let n1 = x[i].hypot(x[i + 4]);
            assert!((n0 - n1).abs() < 1e-5);
        }
        // pair 0 turned by 37 rad
        let (cc, ss) = (37f64.cos(), 37f64.sin());
        assert!((x[0] as f64 - (1.0 * cc - 5.0 * ss)).abs() < 1e-5);
    }

    #[test]
    fn llama3_bands() {
        let base = Rope::new(64, 500000.0, RopeScaling::Default);
        let old = 64.0;
        let r = Rope::new(
            64,
            500000.0,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: old,
            },
        );
        let mut saw = [false; 3];
        for (&f0, &f) in base.inv_freq().iter().zip(r.inv_freq()) {
            let wl = 2.0 * std::f64::consts::PI / f0 as f64;
            if wl < old / 4.0 {
                assert_eq!(f, f0);
                saw[0] = true;
            } else if wl > old {
                assert!((f - f0 / 8.0).abs() <= 1e-6 * f0);
                saw[2] = true;
            } else {
                assert!(f < f0 && f > f0 / 8.0);
                saw[1] = true;
            }
        }
        assert_eq!(saw, [true; 3], "all three bands present");
        let lin = Rope::new(64, 500000.0, RopeScaling::Linear { factor: 2.0 });
        assert_eq!(lin.inv_freq()[3], base.inv_freq()[3] / 2.0);
    }
}
