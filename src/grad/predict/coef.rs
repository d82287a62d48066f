//! The predictors' coefficients. Every predictor is a fixed linear
//! combination `Σ c_i g_i` of the recorded gradients; the coefficients depend
//! only on the record times and the target step, so they are computed once
//! per step (in f64) and shared by every element of every parameter.

use crate::{Error, Result};

/// A gradient predictor (chosen per parameter by measured error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Predictor {
    /// Repeat the newest recorded gradient.
    Last,
    /// Exponentially weighted mean of the recorded gradients (weight
    /// `ema_decay^age`, age in steps).
    Ema,
    /// The seed's weighted-least-squares line through the history,
    /// extrapolated (see [`wls_coefficients`]).
    Wls,
}

impl Predictor {
    /// Every predictor, in code order.
    pub fn all() -> [Predictor; 3] {
        [Predictor::Last, Predictor::Ema, Predictor::Wls]
    }

    /// The C code (`TRITTER_PREDICTOR_*`): 0 last, 1 ema, 2 wls.
    pub fn code(self) -> u32 {
        match self {
            Predictor::Last => 0,
            Predictor::Ema => 1,
            Predictor::Wls => 2,
        }
    }

    /// The predictor with this code.
    pub fn from_code(c: u32) -> Option<Predictor> {
        Predictor::all().into_iter().find(|p| p.code() == c)
    }

    /// Its bit in [`PhaseConfig::predictors`](super::PhaseConfig::predictors) (`1 << code`).
    pub fn bit(self) -> u32 {
        1 << self.code()
    }

    /// Lower-case name (`last`, `ema`, `wls`).
    pub fn name(self) -> &'static str {
        match self {
            Predictor::Last => "last",
            Predictor::Ema => "ema",
            Predictor::Wls => "wls",
        }
    }
}

/// Weighted-least-squares prediction coefficients: the prediction for step
/// `target` is `Σ c_i g_i` over history entries recorded at `times` (oldest
/// first, strictly increasing), with weights `decay^(t_new - t_i)` and the
/// trend extrapolated at most `horizon` steps past the newest time.
///
/// With `s_i = t_i - t_new` the fit `g(s) = b + v s` solves
/// `[S0 S1; S1 S2] [b; v] = [Σ w g; Σ w s g]` (`S_k = Σ w s^k`) and predicts
/// `b + v τ`, `τ = min(target - t_new, horizon)`. With one record, or
/// `det = S0 S2 - S1²` below `1e-12 S0 S2`, it is the weighted mean.
///
/// Errors: empty or non-increasing `times`, `target` before the newest time,
/// `decay` outside (0, 1].
pub fn wls_coefficients(times: &[u64], target: u64, decay: f64, horizon: u64) -> Result<Vec<f64>> {
    let newest = check_times(times, target)?;
    if !(decay > 0.0 && decay <= 1.0) {
        return Err(Error::invalid("decay", "must be in (0, 1]"));
    }
    let tau = (target - newest).min(horizon) as f64;
    let s: Vec<f64> = times.iter().map(|&t| t as f64 - newest as f64).collect();
    let w: Vec<f64> = times
        .iter()
        .map(|&t| decay.powf((newest - t) as f64))
        .collect();
    let s0: f64 = w.iter().sum();
    let s1: f64 = w.iter().zip(&s).map(|(w, s)| w * s).sum();
    let s2: f64 = w.iter().zip(&s).map(|(w, s)| w * s * s).sum();
    let det = s0 * s2 - s1 * s1;
    if times.len() < 2 || det <= 1e-12 * s0 * s2 {
        return Ok(w.iter().map(|w| w / s0).collect());
    }
    Ok(w.iter()
        .zip(&s)
        .map(|(w, s)| w * ((s2 - s1 * s) + tau * (s0 * s - s1)) / det)
        .collect())
}

/// Coefficients of the exponentially weighted mean: `c_i ∝ decay^(t_new − t_i)`,
/// summing to 1. Errors as [`wls_coefficients`].
pub fn ema_coefficients(times: &[u64], target: u64, decay: f64) -> Result<Vec<f64>> {
    let newest = check_times(times, target)?;
    if !(decay > 0.0 && decay <= 1.0) {
        return Err(Error::invalid("decay", "must be in (0, 1]"));
    }
    let w: Vec<f64> = times
        .iter()
        .map(|&t| decay.powf((newest - t) as f64))
        .collect();
    let s: f64 = w.iter().sum();
    Ok(w.iter().map(|w| w / s).collect())
}

/// Coefficients of "repeat the newest record": `[0, ..., 0, 1]`. Errors as
/// [`wls_coefficients`].
pub fn last_coefficients(times: &[u64], target: u64) -> Result<Vec<f64>> {
    check_times(times, target)?;
    let mut c = vec![0.0; times.len()];
    c[times.len() - 1] = 1.0;
    Ok(c)
}

fn check_times(times: &[u64], target: u64) -> Result<u64> {
    let Some(&newest) = times.last() else {
        return Err(Error::invalid("times", "history is empty"));
    };
    if times.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::invalid("times", "must be strictly increasing"));
    }
    if target < newest {
        return Err(Error::invalid("target", "is before the newest record"));
    }
    Ok(newest)
}
