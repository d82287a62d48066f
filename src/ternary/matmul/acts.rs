//! Prepared activations: `x` copied once per call into the order and type a
//! strategy's kernels read (batch row `b` at `b * kx`, in range order; zeros
//! in the padding and outside a range's scale group).

use ndarray::ArrayView2;

use super::layout::Aligned;
use super::plan::Plan;

/// Which preparation a strategy needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ActsKind {
    /// Int8 per-token quantization (W1.58A8).
    I8,
    /// f32 as given (in range order).
    F32,
    /// f32 permuted within each K block for the direct f32 kernels
    /// ([`permute_f32`]).
    F32Permuted,
    /// Pair tables of the 2-bit lookup kernel ([`build_lut_2bit`]).
    F32Lut,
    /// f32 split into three int8 digits ([`Digits`]).
    F32Digits,
}

/// f32 activations as exact sums of three int8 digits, per scale group:
/// `x ≈ (65536 h + 256 l₁ + l₀) / scale_g` with `scale_g = DIGIT_MAX /
/// max_{k∈g} |x[k]|` and `h, l₁, l₀` in `-128..=127`, so the int8 kernels
/// compute `Σ t·x` of the rounded `x` exactly; each `x` is off by at most
/// `max|x| / (2 · DIGIT_MAX)` (24-bit fixed point relative to the group's
/// largest value).
pub(crate) struct Digits {
    /// `[batch][3][kx]`: the high, middle and low digit rows.
    pub d: Aligned<i8>,
    /// `[batch][ngroups]`: `1 / scale_g` (0 for an all-zero group).
    pub inv: Vec<f64>,
    /// `[batch][ngroups][3]`: `Σ_{k∈g} digit` (for the code offset).
    pub dsum: Vec<i64>,
}

/// Largest `|x|` a digit triple holds: `127 · (65536 + 256 + 1)`.
pub(crate) const DIGIT_MAX: f64 = 8_355_711.0;

/// The prepared activations.
pub(crate) enum Acts {
    I8 {
        q: Aligned<i8>,
        /// Per-token scale `a[b]`.
        a: Vec<f32>,
        /// `Σ_{k in group g} q[b,k]`, `[batch][ngroups]`.
        qsum: Vec<i32>,
    },
    /// f32 in range order ([`ActsKind::F32`]) or permuted
    /// ([`ActsKind::F32Permuted`]); pair tables ([`ActsKind::F32Lut`]).
    F32 {
        x: Aligned<f32>,
    },
    Digits(Digits),
}

/// Entries per pair table of the lookup kernels (`x86::f32_lut_2bit_avx512`).
pub(crate) const LUT: usize = 16;

/// Permutes one K block of `bk` (256 or 320) f32 activations into the order
/// of the direct f32 kernels: `dst[(4 i + m) · 16 + l] = src[64 i + 4 l + m]`.
fn permute_f32(src: &[f32], dst: &mut [f32]) {
    for (s, d) in src.chunks_exact(64).zip(dst.chunks_exact_mut(64)) {
        for m in 0..4 {
            for l in 0..16 {
                d[m * 16 + l] = s[4 * l + m];
            }
        }
    }
}

/// The pair tables of one 2-bit K block of 256 activations: table
/// `(16 j + 2 m + h)` (`j` 0..16, `m` 0..4, `h` 0..2) is for the pair
/// `x₁ = src[128 h + 4 j + m]`, `x₂ = src[128 h + 64 + 4 j + m]`; entry
/// `c₁ + 4 c₂` (codes `c = t + 1`) holds `t₁·x₁ + t₂·x₂` (one rounding; the
/// products are exact), the unused entries 0.
fn build_lut_2bit(src: &[f32], dst: &mut [f32]) {
    for j in 0..16 {
        for n in 0..8 {
            let (m, h) = (n / 2, n % 2);
            let x1 = src[128 * h + 4 * j + m];
            let x2 = src[128 * h + 64 + 4 * j + m];
            let d = &mut dst[(j * 8 + n) * LUT..][..LUT];
            d[0] = -x1 + -x2;
            d[1] = -x2;
            d[2] = x1 + -x2;
            d[3] = 0.0;
            d[4] = -x1;
            d[5] = 0.0;
            d[6] = x1;
            d[7] = 0.0;
            d[8] = -x1 + x2;
            d[9] = x2;
            d[10] = x1 + x2;
            d[11..].fill(0.0);
        }
    }
}

/// Splits `x_int` (`|x_int| <= DIGIT_MAX`) into balanced base-256 digits
/// `(h, m, l)`, each in `-128..=127`, with `x_int = 65536 h + 256 m + l`.
#[inline]
pub(crate) fn split_digits(x: i32) -> [i8; 3] {
    let l = ((x + 128) & 255) - 128;
    let r = (x - l) >> 8;
    let m = ((r + 128) & 255) - 128;
    let h = (r - m) >> 8;
    [h as i8, m as i8, l as i8]
}

impl Acts {
    /// Prepares `x` (`[batch, cols]`) as `kind` for the plan.
    pub fn prepare(p: &Plan, kind: ActsKind, x: ArrayView2<f32>) -> Acts {
        let (batch, kx, cols) = (p.batch, p.kx, p.cols);
        match kind {
            ActsKind::I8 => {
                let mut q = Aligned::<i8>::zeroed(batch * kx);
                let mut a = vec![0f32; batch];
                let mut qsum = vec![0i32; batch * p.ngroups];
                let mut qrow = vec![0i8; cols];
                let qs = q.as_mut_slice();
                for (b, xr) in x.rows().into_iter().enumerate() {
                    let owned;
                    let xs: &[f32] = match xr.to_slice() {
                        Some(s) => s,
                        None => {
                            owned = xr.to_vec();
                            &owned
                        }
                    };
                    // The same scale as quant::act_scale (max is order-independent).
                    a[b] = 127.0 / (p.k.abs_max)(xs).max(1e-5);
                    (p.k.quantize)(xs, a[b], &mut qrow);
                    for (g, gs) in qrow.chunks(p.glen).enumerate() {
                        qsum[b * p.ngroups + g] = gs.iter().map(|&v| v as i32).sum();
                    }
                    p.spread(&qrow, &mut qs[b * kx..(b + 1) * kx]);
                }
                Acts::I8 { q, a, qsum }
            }
            ActsKind::F32 | ActsKind::F32Permuted => {
                let mut xb = Aligned::<f32>::zeroed(batch * kx);
                let xs = xb.as_mut_slice();
                let mut row = vec![0f32; kx];
                for (b, xr) in x.rows().into_iter().enumerate() {
                    let owned;
                    let src: &[f32] = match xr.to_slice() {
                        Some(s) => s,
                        None => {
                            owned = xr.to_vec();
                            &owned
                        }
                    };
                    let dst = &mut xs[b * kx..(b + 1) * kx];
                    if kind == ActsKind::F32Permuted {
                        row.fill(0.0);
                        p.spread(src, &mut row);
                        for (s, d) in row.chunks_exact(p.bk).zip(dst.chunks_exact_mut(p.bk)) {
                            permute_f32(s, d);
                        }
                    } else {
                        p.spread(src, dst);
                    }
                }
                Acts::F32 { x: xb }
            }
            ActsKind::F32Lut => {
                let mut xb = Aligned::<f32>::zeroed(batch * kx * LUT / 2);
                let xs = xb.as_mut_slice();
                let mut row = vec![0f32; kx];
                for (b, xr) in x.rows().into_iter().enumerate() {
                    let owned;
                    let src: &[f32] = match xr.to_slice() {
                        Some(s) => s,
                        None => {
                            owned = xr.to_vec();
                            &owned
                        }
                    };
                    row.fill(0.0);
                    p.spread(src, &mut row);
                    let dst = &mut xs[b * kx * LUT / 2..(b + 1) * kx * LUT / 2];
                    for (s, d) in row
                        .chunks_exact(256)
                        .zip(dst.chunks_exact_mut(256 * LUT / 2))
                    {
                        build_lut_2bit(s, d);
                    }
                }
                Acts::F32 { x: xb }
            }
            ActsKind::F32Digits => {
                let ng = p.ngroups;
                let mut d = Aligned::<i8>::zeroed(batch * 3 * kx);
                let mut inv = vec![0f64; batch * ng];
                let mut dsum = vec![0i64; batch * ng * 3];
                let mut dig = [vec![0i8; cols], vec![0i8; cols], vec![0i8; cols]];
                let ds = d.as_mut_slice();
                for (b, xr) in x.rows().into_iter().enumerate() {
                    let owned;
                    let src: &[f32] = match xr.to_slice() {
                        Some(s) => s,
                        None => {
                            owned = xr.to_vec();
                            &owned
                        }
                    };
                    for (g, xg) in src.chunks(p.glen).enumerate() {
                        let mx = (p.k.abs_max)(xg) as f64;
                        let k0 = g * p.glen;
                        if mx == 0.0 {
                            for dr in dig.iter_mut() {
                                dr[k0..k0 + xg.len()].fill(0);
                            }
                            continue;
                        }
                        let scale = DIGIT_MAX / mx;
                        inv[b * ng + g] = mx / DIGIT_MAX;
                        let mut sums = [0i64; 3];
                        for (j, &v) in xg.iter().enumerate() {
                            let xi = (v as f64 * scale).round_ties_even() as i32;
                            let s = split_digits(xi);
                            for i in 0..3 {
                                dig[i][k0 + j] = s[i];
                                sums[i] += s[i] as i64;
                            }
                        }
                        dsum[(b * ng + g) * 3..][..3].copy_from_slice(&sums);
                    }
                    for (i, dr) in dig.iter().enumerate() {
                        p.spread(dr, &mut ds[(b * 3 + i) * kx..(b * 3 + i + 1) * kx]);
                    }
                }
                Acts::Digits(Digits { d, inv, dsum })
            }
        }
    }

    /// The per-token int8 scales (`None` for f32 activations).
    pub fn int8_scales(&self) -> Option<&[f32]> {
        match self {
            Acts::I8 { a, .. } => Some(a),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_split_is_exact_over_the_whole_range() {
        let m = DIGIT_MAX as i32;
        let mut vals: Vec<i32> = vec![
            0, 1, -1, 127, 128, -128, -129, 255, 256, -256, 32767, -32768,
        ];
        vals.extend([m, -m, m - 1, -m + 1, 65535, -65536, 8_388_607 - 65_536]);
        let mut s = 7u64;
        for _ in 0..100_000 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            vals.push(((s >> 33) as i64 % (2 * m as i64 + 1) - m as i64) as i32);
        }
        for v in vals {
            let [h, mi, l] = split_digits(v);
            assert_eq!(65536 * h as i32 + 256 * mi as i32 + l as i32, v, "{v}");
        }
    }
}
