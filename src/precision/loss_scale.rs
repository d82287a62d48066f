//! Dynamic loss scaling with the semantics of `torch.amp.GradScaler`.
//!
//! The scaler holds a scale `S` (f32) and a growth tracker. Each step the
//! caller multiplies the loss by `S`, back-propagates, then calls
//! [`LossScaler::unscale`] on the gradient buffers (multiplies them by
//! `1/S` and reports whether any input value was inf or NaN), skips the
//! optimizer step if one was, and calls [`LossScaler::update`]:
//!
//! * overflow found: `S *= backoff_factor`, tracker = 0;
//! * otherwise tracker += 1; when it reaches `growth_interval`,
//!   `S *= growth_factor` (kept only if the product is finite) and tracker = 0.
//!
//! This is `torch._amp_update_scale_` step for step (same f32 arithmetic; the
//! unscale factor is `1/S` computed in f64 and rounded to f32, as
//! `GradScaler.unscale_` does). Two bounds extend it: after each update the
//! scale is clamped to `[min_scale, max_scale]`.
//!
//! **The floor.** torch's scale has no floor: a long run of overflow steps
//! halves it to 0 (after about 150 from 2^16), where it stays for good
//! (`0 · growth = 0`, and `1/0 = inf` turns every unscaled gradient into
//! inf/NaN, so every later step overflows too). Here `min_scale` defaults to
//! [`DEFAULT_MIN_SCALE`] = 2^-24 (the smallest positive f16: a loss of 1
//! scaled below it is 0 in f16, so no useful scale is lower) and must be at
//! least `f32::MIN_POSITIVE` (so `1/S` is finite): after the overflows stop,
//! the scale grows back by `growth_factor` every `growth_interval` steps.
//! Above the floor the sequence is torch's, step for step.

use rayon::prelude::*;

use crate::{Error, Result};

/// Loss-scaler settings (defaults: torch's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScalerConfig {
    /// Initial scale (finite, > 0; default 65536 = 2^16).
    pub init_scale: f32,
    /// Growth factor (finite, > 1; default 2).
    pub growth_factor: f32,
    /// Backoff factor (in (0, 1); default 0.5).
    pub backoff_factor: f32,
    /// Overflow-free steps between growths (>= 1; default 2000).
    pub growth_interval: u32,
    /// Lower bound on the scale (finite, >= `f32::MIN_POSITIVE`; default
    /// [`DEFAULT_MIN_SCALE`] = 2^-24).
    pub min_scale: f32,
    /// Upper bound on the scale (>= min_scale, may be +inf; default +inf).
    pub max_scale: f32,
}

/// The default floor of the scale: 2^-24, the smallest positive f16.
pub const DEFAULT_MIN_SCALE: f32 = 1.0 / 16_777_216.0;

impl Default for LossScalerConfig {
    fn default() -> Self {
        LossScalerConfig {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            min_scale: DEFAULT_MIN_SCALE,
            max_scale: f32::INFINITY,
        }
    }
}

impl LossScalerConfig {
    /// Checks every field (errors name the field).
    pub fn validate(&self) -> Result<()> {
        if !(self.init_scale.is_finite() && self.init_scale > 0.0) {
            return Err(Error::invalid("init_scale", "must be finite and > 0"));
        }
        if !(self.growth_factor.is_finite() && self.growth_factor > 1.0) {
            return Err(Error::invalid("growth_factor", "must be finite and > 1"));
        }
        if !(self.backoff_factor > 0.0 && self.backoff_factor < 1.0) {
            return Err(Error::invalid("backoff_factor", "must be in (0, 1)"));
        }
        if self.growth_interval == 0 {
            return Err(Error::invalid("growth_interval", "must be >= 1"));
        }
        if !(self.min_scale.is_finite() && self.min_scale >= f32::MIN_POSITIVE) {
            return Err(Error::invalid(
                "min_scale",
                format!(
                    "must be finite and >= {:e} (so 1/scale is finite and the scale can \
                     recover), got {}",
                    f32::MIN_POSITIVE,
                    self.min_scale
                ),
            ));
        }
        if self.max_scale.is_nan() || self.max_scale < self.min_scale || self.max_scale <= 0.0 {
            return Err(Error::invalid("max_scale", "must be > 0 and >= min_scale"));
        }
        if self.init_scale < self.min_scale || self.init_scale > self.max_scale {
            return Err(Error::invalid(
                "init_scale",
                "must lie in [min_scale, max_scale]",
            ));
        }
        Ok(())
    }
}

/// The dynamic loss scaler (see the module docs).
#[derive(Debug, Clone)]
pub struct LossScaler {
    cfg: LossScalerConfig,
    scale: f32,
    tracker: u32,
    steps: u64,
    overflows: u64,
}

/// Elements per block for the parallel inf/NaN scan and unscale.
const BLOCK: usize = 1 << 15;

fn any_non_finite(x: &[f32]) -> bool {
    !x.iter().fold(true, |ok, v| ok & v.is_finite())
}

impl LossScaler {
    /// A scaler with the given settings (validated).
    pub fn new(cfg: LossScalerConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(LossScaler {
            scale: cfg.init_scale,
            cfg,
            tracker: 0,
            steps: 0,
            overflows: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &LossScalerConfig {
        &self.cfg
    }

    /// The current scale.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Consecutive overflow-free updates since the last growth or backoff.
    pub fn growth_tracker(&self) -> u32 {
        self.tracker
    }

    /// Number of [`update`](Self::update) calls, and how many found an overflow.
    pub fn counts(&self) -> (u64, u64) {
        (self.steps, self.overflows)
    }

    /// `1/S` as `GradScaler.unscale_` computes it (f64 reciprocal, rounded to f32).
    pub fn inv_scale(&self) -> f32 {
        (1.0 / self.scale as f64) as f32
    }

    /// Whether any value in any buffer is inf or NaN (nothing is modified).
    pub fn found_inf(buffers: &[&[f32]]) -> bool {
        crate::parallel::install(|| {
            buffers
                .par_iter()
                .any(|b| b.par_chunks(BLOCK).any(any_non_finite))
        })
    }

    /// Multiplies every buffer by `1/S` in place and returns whether any
    /// *input* value was inf or NaN (torch's `_amp_foreach_non_finite_check_and_unscale_`).
    pub fn unscale(&self, buffers: &mut [&mut [f32]]) -> bool {
        let inv = self.inv_scale();
        crate::parallel::install(|| {
            buffers
                .par_iter_mut()
                .map(|b| {
                    b.par_chunks_mut(BLOCK)
                        .map(|c| {
                            let bad = any_non_finite(c);
                            for v in c.iter_mut() {
                                *v *= inv;
                            }
                            bad
                        })
                        .reduce(|| false, |a, b| a | b)
                })
                .reduce(|| false, |a, b| a | b)
        })
    }

    /// Updates the scale after a step (see the module docs); returns the new scale.
    pub fn update(&mut self, found_inf: bool) -> f32 {
        self.steps += 1;
        if found_inf {
            self.overflows += 1;
            self.scale *= self.cfg.backoff_factor;
            self.tracker = 0;
        } else {
            let successful = self.tracker + 1;
            if successful == self.cfg.growth_interval {
                let grown = self.scale * self.cfg.growth_factor;
                if grown.is_finite() {
                    self.scale = grown;
                }
                self.tracker = 0;
            } else {
                self.tracker = successful;
            }
        }
        self.scale = self.scale.clamp(self.cfg.min_scale, self.cfg.max_scale);
        self.scale
    }

    /// Replaces the scale (clamped to the bounds) and resets the tracker, as
    /// `GradScaler.update(new_scale)` does.
    pub fn set_scale(&mut self, scale: f32) -> Result<()> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::invalid("scale", "must be finite and > 0"));
        }
        self.scale = scale.clamp(self.cfg.min_scale, self.cfg.max_scale);
        self.tracker = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules written out independently over f64 (exact for these powers of two).
    fn reference(pattern: &[bool], cfg: &LossScalerConfig) -> Vec<f64> {
        let (mut s, mut t) = (cfg.init_scale as f64, 0u32);
        pattern
            .iter()
            .map(|&inf| {
                if inf {
                    s *= cfg.backoff_factor as f64;
                    t = 0;
                } else if t + 1 == cfg.growth_interval {
                    if s * (cfg.growth_factor as f64) < f32::MAX as f64 {
                        s *= cfg.growth_factor as f64;
                    }
                    t = 0;
                } else {
                    t += 1;
                }
                s = s.clamp(cfg.min_scale as f64, cfg.max_scale as f64);
                s
            })
            .collect()
    }

    #[test]
    fn matches_the_rules_on_a_scripted_pattern() {
        let cfg = LossScalerConfig {
            init_scale: 1024.0,
            growth_interval: 3,
            ..Default::default()
        };
        let pattern: Vec<bool> = (0..200)
            .map(|i| i % 17 == 5 || i % 23 == 0 || (40..44).contains(&i))
            .collect();
        let mut s = LossScaler::new(cfg).unwrap();
        let got: Vec<f64> = pattern.iter().map(|&f| s.update(f) as f64).collect();
        assert_eq!(got, reference(&pattern, &cfg));
        assert_eq!(s.counts().1, pattern.iter().filter(|&&f| f).count() as u64);
    }

    /// A long run of overflows stops at the floor (torch's unfloored scale
    /// reaches 0 and never recovers); afterwards the scale grows back.
    #[test]
    fn default_floor_stops_backoff_and_the_scale_recovers() {
        let cfg = LossScalerConfig {
            growth_interval: 3,
            ..Default::default()
        };
        let mut s = LossScaler::new(cfg).unwrap();
        for _ in 0..400 {
            s.update(true);
        }
        assert_eq!(s.scale(), DEFAULT_MIN_SCALE);
        assert!(s.inv_scale().is_finite());
        // unscale of finite values stays finite at the floor
        let mut g = vec![1e-3f32 * DEFAULT_MIN_SCALE; 4];
        assert!(!s.unscale(&mut [&mut g]));
        assert!(g.iter().all(|v| v.is_finite() && (*v - 1e-3).abs() < 1e-9));
        // 40 doublings, one per 3 clean steps, back to 2^16
        for step in 1..=120 {
            let v = s.update(false);
            let want = DEFAULT_MIN_SCALE * 2f32.powi(step / 3);
            assert_eq!(v, want, "clean step {step}");
        }
        assert_eq!(s.scale(), 65536.0);
        // the floor itself is validated
        for bad in [0.0, f32::MIN_POSITIVE / 2.0, -1.0, f32::INFINITY] {
            let c = LossScalerConfig {
                min_scale: bad,
                init_scale: 1.0,
                ..Default::default()
            };
            assert!(LossScaler::new(c).is_err(), "{bad}");
        }
        let c = LossScalerConfig {
            min_scale: f32::MIN_POSITIVE,
            init_scale: 1.0,
            growth_interval: 1,
            ..Default::default()
        };
        let mut s = LossScaler::new(c).unwrap();
        for _ in 0..300 {
            s.update(true);
        }
        assert_eq!(s.scale(), f32::MIN_POSITIVE);
        assert_eq!(s.update(false), 2.0 * f32::MIN_POSITIVE);
    }

    #[test]
    fn growth_stops_at_overflow_and_bounds_clamp() {
        let cfg = LossScalerConfig {
            init_scale: 2f32.powi(126),
            growth_interval: 1,
            ..Default::default()
        };
        let mut s = LossScaler::new(cfg).unwrap();
        assert_eq!(s.update(false), 2f32.powi(127));
        assert_eq!(s.update(false), 2f32.powi(127)); // 2^128 is inf: kept
        let cfg = LossScalerConfig {
            init_scale: 4.0,
            growth_interval: 1,
            min_scale: 1.0,
            max_scale: 16.0,
            ..Default::default()
        };
        let mut s = LossScaler::new(cfg).unwrap();
        let seq: Vec<f32> = [false, false, false, true, true, true, true]
            .iter()
            .map(|&f| s.update(f))
            .collect();
        assert_eq!(seq, vec![8.0, 16.0, 16.0, 8.0, 4.0, 2.0, 1.0]);
        assert_eq!(s.update(true), 1.0);
    }

    #[test]
    fn unscale_detects_and_multiplies() {
        let s = LossScaler::new(LossScalerConfig {
            init_scale: 8.0,
            ..Default::default()
        })
        .unwrap();
        let mut a = vec![8.0f32; 100_000];
        let mut b = vec![16.0f32, -4.0];
        {
            let mut bufs: Vec<&mut [f32]> = vec![&mut a, &mut b];
            assert!(!s.unscale(&mut bufs));
        }
        assert!(a.iter().all(|&v| v == 1.0));
        assert_eq!(b, vec![2.0, -0.5]);
        a[77_777] = f32::NAN;
        assert!(LossScaler::found_inf(&[&b, &a]));
        let mut bufs: Vec<&mut [f32]> = vec![&mut b, &mut a];
        assert!(s.unscale(&mut bufs));
        assert!(!LossScaler::found_inf(&[&b]));
    }

    #[test]
    fn config_errors_name_the_field() {
        for (cfg, arg) in [
            (
                LossScalerConfig {
                    init_scale: 0.0,
                    ..Default::default()
                },
                "init_scale",
            ),
            (
                LossScalerConfig {
                    growth_factor: 1.0,
                    ..Default::default()
                },
                "growth_factor",
            ),
            (
                LossScalerConfig {
                    backoff_factor: 1.0,
                    ..Default::default()
                },
                "backoff_factor",
            ),
            (
                LossScalerConfig {
                    growth_interval: 0,
                    ..Default::default()
                },
                "growth_interval",
            ),
            (
                LossScalerConfig {
                    min_scale: -1.0,
                    ..Default::default()
                },
                "min_scale",
            ),
            (
                LossScalerConfig {
                    min_scale: 0.0,
                    ..Default::default()
                },
                "min_scale",
            ),
            (
                LossScalerConfig {
                    max_scale: f32::NAN,
                    ..Default::default()
                },
                "max_scale",
            ),
            (
                LossScalerConfig {
                    max_scale: 10.0,
                    ..Default::default()
                },
                "init_scale",
            ),
        ] {
            match LossScaler::new(cfg).unwrap_err() {
                Error::InvalidArgument { arg: a, .. } => assert_eq!(a, arg),
                e => panic!("{e:?}"),
            }
        }
    }
}
