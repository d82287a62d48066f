//! RMSNorm as transformers' `BitNetRMSNorm` computes it in f32:
//! `y = w ⊙ (x · rsqrt(mean(x²) + eps))`.
//!
//! The mean of squares is summed in f64 (torch sums f32 in its own
//! vectorized order), so the two differ by a few f32 ulps of the scale.

/// Normalizes every `width`-wide row of `x` into `out` with weight `w`.
///
/// # Panics
/// If `w.len() != width` or the slices are not whole rows of equal count.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let width = w.len();
    assert!(width > 0 && x.len() == out.len() && x.len().is_multiple_of(width));
    for (xr, or) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let ss: f64 = xr.iter().map(|&v| v as f64 * v as f64).sum();
        let var = (ss / width as f64) as f32;
        let r = 1.0 / (var + eps).sqrt();
        for ((o, &v), &g) in or.iter_mut().zip(xr).zip(w) {
            *o = g * (v * r);
        }
    }
}

/// [`rms_norm`] in place.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let width = w.len();
    assert!(width > 0 && x.len().is_multiple_of(width));
    for xr in x.chunks_exact_mut(width) {
        let ss: f64 = xr.iter().map(|&v| v as f64 * v as f64).sum();
        let var = (ss / width as f64) as f32;
        let r = 1.0 / (var + eps).sqrt();
        for (v, &g) in xr.iter_mut().zip(w) {
            *v = g * (*v * r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_hand() {
        // mean of squares of [3, 4] = 12.5
        let x = [3.0f32, 4.0, 0.0, 0.0];
        let mut y = [0f32; 2];
        rms_norm(&x[..2], &[1.0, 2.0], 0.0, &mut y);
        let r = 1.0 / 12.5f32.sqrt();
        assert_eq!(y, [3.0 * r, 2.0 * 4.0 * r]);
        let mut z = x;
        rms_norm_inplace(&mut z[..2], &[1.0, 2.0], 0.0);
        assert_eq!(z[..2], y[..2]);
        rms_norm_inplace(&mut z[2..], &[1.0, 2.0], 1e-5);
        assert!(z[2..].iter().all(|v| *v == 0.0), "a zero row stays zero");
    }
}
