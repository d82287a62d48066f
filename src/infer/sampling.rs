//! Next-token choice from a row of logits: greedy, temperature, top-k,
//! top-p (nucleus), each draw a pure function of `(seed, index)`.
//!
//! * `temperature == 0`: greedy, the first index of the largest logit (as
//!   `torch.argmax`).
//! * otherwise the candidates are all tokens, or the `top_k` largest logits
//!   (ties broken by the lower index); probabilities are `softmax(logits / T)`
//!   over the candidates, computed in f64; with `top_p < 1` the candidates
//!   sorted by decreasing probability are cut after the shortest prefix whose
//!   probability reaches `top_p` (at least one token, transformers' rule);
//!   then one uniform `u = uniform_f64(seed, index)` picks the token whose
//!   cumulative interval holds `u · total`.
//!
//! The same `(logits, params, seed, index)` always gives the same token, on
//! any thread count and machine.

use crate::{Error, Result};

/// How to choose a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy; > 0 divides the logits.
    pub temperature: f32,
    /// Keep only the k largest logits (0 = all).
    pub top_k: usize,
    /// Nucleus mass in (0, 1] (1 = all).
    pub top_p: f32,
}

impl Default for SamplingParams {
    /// Greedy.
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
        }
    }
}

impl SamplingParams {
    /// Finite `temperature >= 0`, `top_p` in (0, 1].
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::invalid(
                "temperature",
                format!("must be finite and >= 0, got {}", self.temperature),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid(
                "top_p",
                format!("must be in (0, 1], got {}", self.top_p),
            ));
        }
        Ok(())
    }
}

/// The index of the largest value (the first one on ties).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

/// Chooses a token from `logits` (see the module docs). Errors: empty or
/// non-finite logits, invalid parameters.
pub fn sample(logits: &[f32], params: &SamplingParams, seed: u64, index: u64) -> Result<u32> {
    params.validate()?;
    if logits.is_empty() {
        return Err(Error::invalid("logits", "empty"));
    }
    crate::check_finite(logits, "logits")?;
    if logits.len() > u32::MAX as usize {
        return Err(Error::invalid("logits", "more than 2^32 entries"));
    }
    if params.temperature == 0.0 {
        return Ok(argmax(logits) as u32);
    }
    let inv_t = 1.0 / params.temperature as f64;
    let k = if params.top_k == 0 {
        logits.len()
    } else {
        params.top_k.min(logits.len())
    };
    let u = crate::rng::uniform_f64(seed, index);
    let filtered = k < logits.len() || params.top_p < 1.0;
    if !filtered {
        // All tokens in index order: no sort needed.
        let m = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let total: f64 = logits.iter().map(|&l| ((l as f64 - m) * inv_t).exp()).sum();
        let target = u * total;
        let mut c = 0.0;
        for (i, &l) in logits.iter().enumerate() {
            c += ((l as f64 - m) * inv_t).exp();
            if target < c {
                return Ok(i as u32);
            }
        }
        return Ok(argmax(logits) as u32);
    }
    // Candidates by decreasing logit, ties by index.
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let cmp = |a: &u32, b: &u32| {
        logits[*b as usize]
            .partial_cmp(&logits[*a as usize])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(b))
    };
    if k < idx.len() {
        idx.select_nth_unstable_by(k - 1, cmp);
        idx.truncate(k);
    }
    idx.sort_unstable_by(cmp);
    let m = logits[idx[0] as usize] as f64;
    let w: Vec<f64> = idx
        .iter()
        .map(|&i| ((logits[i as usize] as f64 - m) * inv_t).exp())
        .collect();
    let total: f64 = w.iter().sum();
    let mut keep = w.len();
    if params.top_p < 1.0 {
        let need = params.top_p as f64 * total;
        let mut c = 0.0;
        for (j, &p) in w.iter().enumerate() {
            c += p;
            if c >= need {
                keep = j + 1;
                break;
            }
        }
    }
    let kept: f64 = w[..keep].iter().sum();
    let target = u * kept;
    let mut c = 0.0;
    for j in 0..keep {
        c += w[j];
        if target < c {
            return Ok(idx[j]);
        }
    }
    Ok(idx[keep - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: f32, k: usize, tp: f32) -> SamplingParams {
        SamplingParams {
            temperature: t,
            top_k: k,
            top_p: tp,
        }
    }

    #[test]
    fn greedy_and_determinism() {
        let l = [0.1f32, 3.0, 3.0, -1.0];
        assert_eq!(sample(&l, &p(0.0, 0, 1.0), 1, 0).unwrap(), 1);
        let l: Vec<f32> = (0..1000).map(|i| ((i * 37) % 101) as f32 / 10.0).collect();
        for params in [
            p(1.0, 0, 1.0),
            p(0.7, 50, 1.0),
            p(1.3, 0, 0.9),
            p(1.0, 10, 0.5),
        ] {
            let a: Vec<u32> = (0..50)
                .map(|i| sample(&l, &params, 7, i).unwrap())
                .collect();
            let b: Vec<u32> = (0..50)
                .map(|i| sample(&l, &params, 7, i).unwrap())
                .collect();
            let c: Vec<u32> = (0..50)
                .map(|i| sample(&l, &params, 8, i).unwrap())
                .collect();
            assert_eq!(a, b);
            assert_ne!(a, c, "another seed draws other tokens");
        }
    }

    #[test]
    fn top_k_and_top_p_restrict_the_support() {
        let l = [5.0f32, 4.0, 3.0, 2.0, 1.0, 0.0];
        for i in 0..200 {
            let t = sample(&l, &p(5.0, 2, 1.0), 3, i).unwrap();
            assert!(t < 2);
            // softmax(l) at T=1: p0 = 0.636, p0 + p1 = 0.870; top_p 0.8 keeps {0, 1}
            let t = sample(&l, &p(1.0, 0, 0.8), 3, i).unwrap();
            assert!(t < 2);
            let t = sample(&l, &p(1.0, 0, 0.5), 3, i).unwrap();
            assert_eq!(t, 0);
        }
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        // chi-square-style check: 20k draws, 4 tokens
        let l = [0.0f32, 1.0, 2.0, 0.5];
        let z: f64 = l.iter().map(|&v| (v as f64).exp()).sum();
        let n = 20000u64;
        let mut cnt = [0u64; 4];
        for i in 0..n {
            cnt[sample(&l, &p(1.0, 0, 1.0), 11, i).unwrap() as usize] += 1;
        }
        for j in 0..4 {
            let pj = (l[j] as f64).exp() / z;
            let sd = (n as f64 * pj * (1.0 - pj)).sqrt();
            assert!((cnt[j] as f64 - n as f64 * pj).abs() < 5.0 * sd, "{cnt:?}");
        }
    }

    #[test]
    fn bad_input() {
        assert!(sample(&[], &SamplingParams::default(), 0, 0).is_err());
        assert!(sample(&[f32::NAN], &SamplingParams::default(), 0, 0).is_err());
        assert!(sample(&[1.0], &p(-1.0, 0, 1.0), 0, 0).is_err());
        assert!(sample(&[1.0], &p(1.0, 0, 0.0), 0, 0).is_err());
        assert!(sample(&[1.0], &p(1.0, 0, 1.5), 0, 0).is_err());
    }
}
