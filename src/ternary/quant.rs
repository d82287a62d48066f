//! Ternary weight quantization (AbsMean, AbsMax, threshold) and int8
//! per-token activation quantization.
//!
//! # Weight rule
//!
//! For each scale group (see [`Granularity`]) the scale `s` is
//! * AbsMean (BitNet b1.58): `s = mean |w|` over the group,
//! * AbsMax: `s = max |w|` over the group,
//!
//! and every weight of the group becomes
//! * without threshold: `t = clamp(round(w / (s + eps)), -1, 1)` with
//!   round-half-to-even (as `torch.round`/`np.round`), i.e. `t = +1` iff
//!   `w / (s + eps) > 0.5`, `t = -1` iff `< -0.5`;
//! * with threshold factor `f` (BitTorch's `threshold_factor`): `t = 0` if
//!   `|w| <= f * s`, else `sign(w)`.
//!
//! The dequantized weight is `t * s`.
//!
//! Group sums are accumulated in 16 f32 lanes (lane `i` takes elements
//! `i, i+16, ...` of the group), then the lanes are added in f64 in lane order;
//! a per-tensor mean adds the per-row sums in row order in f64. This order is
//! fixed, so scales are bit-identical for any thread count.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;

use super::pack;
use super::Granularity;
use crate::{check_finite, Error, Result};

/// Which statistic sets the scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantMethod {
    /// `s = mean |w|` (BitNet b1.58).
    AbsMean,
    /// `s = max |w|`.
    AbsMax,
}

crate::c_codes!(QuantMethod, "method", "quantization method" {
    AbsMean = 0 => "absmean",
    AbsMax = 1 => "absmax",
});

/// Quantization settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantConfig {
    /// Scale statistic.
    pub method: QuantMethod,
    /// Scale granularity.
    pub granularity: Granularity,
    /// `Some(f)`: weights with `|w| <= f * s` become 0, others `sign(w)`.
    pub threshold: Option<f32>,
    /// Added to the scale before dividing (guards all-zero groups).
    pub eps: f32,
}

impl Default for QuantConfig {
    /// AbsMean, per output row, no threshold, `eps = 1e-5`... the BitNet rule
    /// with a scale per row (a per-tensor scale is one setting away).
    fn default() -> Self {
        QuantConfig {
            method: QuantMethod::AbsMean,
            granularity: Granularity::PerRow,
            threshold: None,
            eps: 1e-5,
        }
    }
}

impl QuantConfig {
    /// Checks the fields (finite non-negative eps and threshold, group size > 0).
    pub fn validate(&self) -> Result<()> {
        self.granularity.validate()?;
        if !(self.eps.is_finite() && self.eps >= 0.0) {
            return Err(Error::invalid(
                "eps",
                format!("must be finite and >= 0, got {}", self.eps),
            ));
        }
        if let Some(t) = self.threshold {
            if !(t.is_finite() && t >= 0.0) {
                return Err(Error::invalid(
                    "threshold_factor",
                    format!("must be finite and >= 0, got {t}"),
                ));
            }
        }
        Ok(())
    }
}

/// Ternary values and their scales.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    /// `[rows, cols]` values in {-1, 0, +1}.
    pub values: Array2<i8>,
    /// `[scale_rows, groups_per_row]` (see [`Granularity::scale_shape`]).
    pub scales: Array2<f32>,
    /// Granularity of `scales`.
    pub granularity: Granularity,
}

/// Sum of |x| in the documented order (16 f32 lanes, lanes added in f64).
#[inline]
pub fn abs_sum(xs: &[f32]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if xs.len() >= 64 && is_x86_feature_detected!("avx512f") {
        // SAFETY: feature checked.
        return unsafe { abs_sum_avx512(xs) };
    }
    abs_sum_scalar(xs)
}

/// [`abs_sum`] with one 16-lane register: lane `i` still takes elements
/// `i, i+16, ...` in order, so the result is bit-identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn abs_sum_avx512(xs: &[f32]) -> f64 {
    use std::arch::x86_64::*;
    let mut acc = _mm512_setzero_ps();
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        // SAFETY: c holds 16 floats.
        acc = _mm512_add_ps(acc, _mm512_abs_ps(unsafe { _mm512_loadu_ps(c.as_ptr()) }));
    }
    let mut lanes = [0f32; 16];
    // SAFETY: lanes holds 16 floats.
    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), acc) };
    for (i, v) in chunks.remainder().iter().enumerate() {
        lanes[i] += v.abs();
    }
    lanes.iter().map(|&a| a as f64).sum()
}

fn abs_sum_scalar(xs: &[f32]) -> f64 {
    let mut acc = [0f32; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            acc[i] += c[i].abs();
        }
    }
    for (i, v) in chunks.remainder().iter().enumerate() {
        acc[i] += v.abs();
    }
    acc.iter().map(|&a| a as f64).sum()
}

/// max |x| (0 for an empty slice).
#[inline]
pub fn abs_max(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            acc[i] = acc[i].max(c[i].abs());
        }
    }
    for (i, v) in chunks.remainder().iter().enumerate() {
        acc[i] = acc[i].max(v.abs());
    }
    acc.iter().fold(0f32, |m, &a| m.max(a))
}

fn group_stat(xs: &[f32], method: QuantMethod) -> f64 {
    match method {
        QuantMethod::AbsMean => abs_sum(xs),
        QuantMethod::AbsMax => abs_max(xs) as f64,
    }
}

/// Computes the scales of a contiguous row-major `rows x cols` matrix.
/// Returns `scale_rows * groups_per_row` values.
/// Errors: [`Error::OutOfMemory`] naming `weights` when the scales cannot
/// be allocated.
pub fn compute_scales(w: &[f32], rows: usize, cols: usize, cfg: &QuantConfig) -> Result<Vec<f32>> {
    let g = cfg.granularity;
    let (srows, ngroups) = g.scale_shape(rows, cols);
    if cols == 0 || rows == 0 {
        return crate::try_zeroed(srows * ngroups, "weights");
    }
    match g {
        Granularity::PerTensor => {
            let per_row: Vec<f64> = crate::parallel::install(|| {
                w.par_chunks(cols)
                    .map(|r| group_stat(r, cfg.method))
                    .collect()
            });
            let s = match cfg.method {
                QuantMethod::AbsMean => {
                    (per_row.iter().sum::<f64>() / (rows as f64 * cols as f64)) as f32
                }
                QuantMethod::AbsMax => per_row.iter().fold(0f64, |m, &v| m.max(v)) as f32,
            };
            Ok(vec![s])
        }
        Granularity::PerRow | Granularity::PerGroup(_) => {
            let glen = g.group_len(cols);
            let mut out = crate::try_zeroed(srows * ngroups, "weights")?;
            crate::parallel::install(|| {
                out.par_chunks_mut(ngroups)
                    .zip(w.par_chunks(cols))
                    .for_each(|(s, r)| {
                        for (si, grp) in s.iter_mut().zip(r.chunks(glen)) {
                            let v = group_stat(grp, cfg.method);
                            *si = match cfg.method {
                                QuantMethod::AbsMean => (v / grp.len() as f64) as f32,
                                QuantMethod::AbsMax => v as f32,
                            };
                        }
                    })
            });
            Ok(out)
        }
    }
}

/// The per-group rule as two comparison bounds: `t = +1` iff `w > hi`
/// (or `w / d > 0.5`), see the module docs. Returned as a closure-free enum so
/// the inner loops stay branch-free.
#[derive(Clone, Copy)]
enum Rule {
    /// `q = w / d`; `t = (q > 0.5) - (q < -0.5)`.
    Round { d: f32 },
    /// `t = (w > thr) - (w < -thr)`.
    Threshold { thr: f32 },
}

impl Rule {
    fn new(scale: f32, cfg: &QuantConfig) -> Rule {
        match cfg.threshold {
            Some(f) => Rule::Threshold { thr: f * scale },
            None => Rule::Round { d: scale + cfg.eps },
        }
    }
}

#[inline(always)]
fn scale_for(scales: &[f32], g: Granularity, ngroups: usize, row: usize, group: usize) -> f32 {
    match g {
        Granularity::PerTensor => scales[0],
        _ => scales[row * ngroups + group],
    }
}

/// The weights as one row-major slice: borrowed when contiguous, else a
/// copy allocated fallibly (a strided or broadcast view's logical size may
/// be far more than the memory behind it).
fn contiguous<'a>(w: &ArrayView2<'a, f32>) -> Result<std::borrow::Cow<'a, [f32]>> {
    let w = *w;
    Ok(match w.to_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(crate::try_collect(w.len(), w.iter().copied(), "weights")?),
    })
}

/// Quantizes `w` (`[rows, cols]`, any strides) to ternary values and scales.
///
/// Errors: [`Error::NonFinite`] (naming `weights`) for NaN/inf input, invalid
/// config fields.
pub fn quantize(w: ArrayView2<f32>, cfg: &QuantConfig) -> Result<Quantized> {
    cfg.validate()?;
    let (rows, cols) = w.dim();
    let data = contiguous(&w)?;
    check_finite(&data, "weights")?;
    let scales = compute_scales(&data, rows, cols, cfg)?;
    let (srows, ngroups) = cfg.granularity.scale_shape(rows, cols);
    let mut values = pack::zeros(rows, cols)?;
    if cols > 0 {
        let vs = values.as_slice_mut().expect("fresh array is contiguous");
        crate::parallel::install(|| {
            vs.par_chunks_mut(cols)
                .zip(data.par_chunks(cols))
                .enumerate()
                .for_each(|(i, (o, r))| {
                    quantize_span(
                        r,
                        o,
                        0,
                        i,
                        &scales,
                        cfg,
                        ngroups,
                        cfg.granularity.group_len(cols),
                    )
                })
        });
    }
    let scales = Array2::from_shape_vec((srows, ngroups), scales).expect("scale shape");
    Ok(Quantized {
        values,
        scales,
        granularity: cfg.granularity,
    })
}

/// Quantizes `w` straight into the canonical 2-bit layout (one pass over the
/// data after the scale pass; no intermediate i8 matrix).
///
/// Returns `(packed, scales)` with `packed.len() == rows * ceil(cols / 4)`.
pub fn quantize_pack_2bit(w: ArrayView2<f32>, cfg: &QuantConfig) -> Result<(Vec<u8>, Vec<f32>)> {
    cfg.validate()?;
    let (rows, cols) = w.dim();
    let data = contiguous(&w)?;
    let scales = compute_scales(&data, rows, cols, cfg)?;
    // An AbsMean scale is a sum of |w|: NaN or inf anywhere makes it
    // non-finite, so finite scales prove finite input and the separate scan
    // is needed only otherwise (where it finds the index, or passes when a
    // huge finite sum overflowed).
    if cfg.method != QuantMethod::AbsMean || !scales.iter().all(|s| s.is_finite()) {
        check_finite(&data, "weights")?;
    }
    let (_, ngroups) = cfg.granularity.scale_shape(rows, cols);
    let rb = pack::row_bytes(cols, pack::PackedLayout::TwoBit);
    let mut packed = crate::try_zeroed(crate::checked_mul(rows, rb, "weights")?, "weights")?;
    if cols > 0 {
        crate::parallel::install(|| {
            packed
                .par_chunks_mut(rb)
                .zip(data.par_chunks(cols))
                .enumerate()
                .for_each(|(i, (o, r))| {
                    let glen = cfg.granularity.group_len(cols);
                    // Whole 64-weight chunks through the SIMD path where it applies.
                    let done = simd_quantize_pack_row(r, o, i, &scales, cfg, ngroups, glen);
                    // The rest in 256-weight tiles through a stack buffer, then pack.
                    let mut tile = [0i8; 256];
                    let (r, o) = (&r[done..], &mut o[done / 4..]);
                    for (t, (src, dst)) in r.chunks(256).zip(o.chunks_mut(64)).enumerate() {
                        quantize_span(
                            src,
                            &mut tile[..src.len()],
                            done + t * 256,
                            i,
                            &scales,
                            cfg,
                            ngroups,
                            glen,
                        );
                        pack::pack_2bit_row(&tile[..src.len()], dst);
                    }
                })
        });
    }
    Ok((packed, scales))
}

/// Quantizes and packs the leading whole 64-weight chunks of row `row` with
/// AVX-512 + BMI2 when the CPU has them and every chunk lies in one scale
/// group; returns how many weights it did (a multiple of 64, maybe 0). The
/// per-weight arithmetic is the scalar rule's (`w / d` then two compares, or
/// two compares with the threshold), so the bytes are identical.
#[allow(clippy::too_many_arguments)]
fn simd_quantize_pack_row(
    src: &[f32],
    dst: &mut [u8],
    row: usize,
    scales: &[f32],
    cfg: &QuantConfig,
    ngroups: usize,
    glen: usize,
) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if (ngroups == 1 || glen.is_multiple_of(64))
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("bmi2")
        {
            let n = src.len() / 64 * 64;
            let rule = |k: usize| {
                Rule::new(
                    scale_for(scales, cfg.granularity, ngroups, row, k / glen),
                    cfg,
                )
            };
            // SAFETY: features checked above; n <= src.len(), n / 4 <= dst.len().
            unsafe { quantize_pack_avx512(&src[..n], &mut dst[..n / 4], rule) };
            return n;
        }
    }
    let _ = (src, dst, row, scales, cfg, ngroups, glen);
    0
}

/// `src.len()` a multiple of 64; `dst` holds `src.len() / 4` bytes. Pos/neg
/// masks of 64 weights are interleaved into 2-bit codes with `pdep`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,bmi2")]
unsafe fn quantize_pack_avx512(src: &[f32], dst: &mut [u8], rule: impl Fn(usize) -> Rule) {
    use std::arch::x86_64::*;
    const EVEN: u64 = 0x5555_5555_5555_5555;
    for (c, (s, d)) in src
        .chunks_exact(64)
        .zip(dst.chunks_exact_mut(16))
        .enumerate()
    {
        let (mut p, mut n) = (0u64, 0u64);
        match rule(c * 64) {
            Rule::Round { d: dv } => {
                let dv = _mm512_set1_ps(dv);
                let (hi, lo) = (_mm512_set1_ps(0.5), _mm512_set1_ps(-0.5));
                for i in 0..4 {
                    // SAFETY: s holds 64 floats.
                    let q = _mm512_div_ps(unsafe { _mm512_loadu_ps(s.as_ptr().add(16 * i)) }, dv);
                    p |= (_mm512_cmp_ps_mask::<_CMP_GT_OQ>(q, hi) as u64) << (16 * i);
                    n |= (_mm512_cmp_ps_mask::<_CMP_LT_OQ>(q, lo) as u64) << (16 * i);
                }
            }
            Rule::Threshold { thr } => {
                let (hi, lo) = (_mm512_set1_ps(thr), _mm512_set1_ps(-thr));
                for i in 0..4 {
                    // SAFETY: s holds 64 floats.
                    let w = unsafe { _mm512_loadu_ps(s.as_ptr().add(16 * i)) };
                    p |= (_mm512_cmp_ps_mask::<_CMP_GT_OQ>(w, hi) as u64) << (16 * i);
                    n |= (_mm512_cmp_ps_mask::<_CMP_LT_OQ>(w, lo) as u64) << (16 * i);
                }
            }
        }
        // +1 -> code 01 (even bit), -1 -> code 10 (odd bit), weight e at bits 2e.
        let w0 = _pdep_u64(p & 0xFFFF_FFFF, EVEN) | _pdep_u64(n & 0xFFFF_FFFF, EVEN << 1);
        let w1 = _pdep_u64(p >> 32, EVEN) | _pdep_u64(n >> 32, EVEN << 1);
        d[..8].copy_from_slice(&w0.to_le_bytes());
        d[8..].copy_from_slice(&w1.to_le_bytes());
    }
}

/// Quantizes `src` (elements `start..start+len` of row `row`) into `dst`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn quantize_span(
    src: &[f32],
    dst: &mut [i8],
    start: usize,
    row: usize,
    scales: &[f32],
    cfg: &QuantConfig,
    ngroups: usize,
    glen: usize,
) {
    let mut k = 0;
    while k < src.len() {
        let gi = (start + k) / glen;
        let end = ((gi + 1) * glen - start).min(src.len());
        let rule = Rule::new(scale_for(scales, cfg.granularity, ngroups, row, gi), cfg);
        match rule {
            Rule::Round { d } => {
                for (o, &w) in dst[k..end].iter_mut().zip(&src[k..end]) {
                    let q = w / d;
                    *o = (q > 0.5) as i8 - (q < -0.5) as i8;
                }
            }
            Rule::Threshold { thr } => {
                for (o, &w) in dst[k..end].iter_mut().zip(&src[k..end]) {
                    *o = (w > thr) as i8 - (w < -thr) as i8;
                }
            }
        }
        k = end;
    }
}

/// Int8 per-token absmax activation quantization (BitNet W1.58A8).
///
/// For each row `x` of `[batch, dim]`: `s = 127 / max(max|x|, 1e-5)`,
/// `q = clamp(round(x * s), -128, 127)` (round half to even). Returns
/// `(q, s)` with `s` of length `batch`; dequantize with `x ≈ q / s`.
pub fn quantize_activations_i8(x: ArrayView2<f32>) -> Result<(Array2<i8>, Array1<f32>)> {
    let (b, d) = x.dim();
    let mut q = pack::zeros(b, d)?;
    let mut s = Array1::from_vec(crate::try_zeroed(b, "batch")?);
    for (bi, row) in x.axis_iter(Axis(0)).enumerate() {
        let data = contiguous_row(&row);
        check_finite(&data, "activations").map_err(|e| match e {
            Error::NonFinite { index, .. } => Error::NonFinite {
                arg: "activations",
                index: bi * d + index,
            },
            e => e,
        })?;
        let sc = act_scale(&data);
        s[bi] = sc;
        let qrow = q.row_mut(bi).into_slice().expect("contiguous");
        quantize_act_row(&data, sc, qrow);
    }
    Ok((q, s))
}

fn contiguous_row<'a>(r: &ndarray::ArrayView1<'a, f32>) -> std::borrow::Cow<'a, [f32]> {
    match r.clone().to_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(r.iter().copied().collect()),
    }
}

/// The per-token scale `127 / max(max|x|, 1e-5)`.
#[inline]
pub fn act_scale(x: &[f32]) -> f32 {
    127.0 / abs_max(x).max(1e-5)
}

/// `q[i] = clamp(round_half_even(x[i] * s), -128, 127)`.
#[inline]
pub fn quantize_act_row(x: &[f32], s: f32, q: &mut [i8]) {
    for (o, &v) in q.iter_mut().zip(x) {
        *o = (v * s).round_ties_even().clamp(-128.0, 127.0) as i8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn cfg(method: QuantMethod, g: Granularity) -> QuantConfig {
        QuantConfig {
            method,
            granularity: g,
            threshold: None,
            eps: 1e-5,
        }
    }

    #[test]
    fn absmean_per_tensor_by_hand() {
        let w = array![[1.0f32, -1.0, 0.2, -0.2], [2.0, 0.0, -0.6, 0.6]];
        // mean |w| = (1+1+.2+.2+2+0+.6+.6)/8 = 0.7
        let q = quantize(w.view(), &cfg(QuantMethod::AbsMean, Granularity::PerTensor)).unwrap();
        assert!((q.scales[[0, 0]] - 0.7).abs() < 1e-6);
        assert_eq!(q.values, array![[1i8, -1, 0, 0], [1, 0, -1, 1]]);
    }

    #[test]
    fn per_group_keeps_each_group_scale() {
        let w = array![[10.0f32, -10.0, 0.1, -0.1, 0.05]];
        let q = quantize(
            w.view(),
            &cfg(QuantMethod::AbsMax, Granularity::PerGroup(2)),
        )
        .unwrap();
        assert_eq!(q.scales.shape(), &[1, 3]);
        assert_eq!(q.scales.row(0).to_vec(), vec![10.0, 0.1, 0.05]);
        assert_eq!(q.values, array![[1i8, -1, 1, -1, 1]]);
    }

    #[test]
    fn threshold_rule() {
        let w = array![[1.0f32, 0.04, -0.06, 0.05]];
        let mut c = cfg(QuantMethod::AbsMax, Granularity::PerRow);
        c.threshold = Some(0.05);
        let q = quantize(w.view(), &c).unwrap();
        assert_eq!(q.values, array![[1i8, 0, -1, 0]]);
    }

    #[test]
    fn half_rounds_to_even_zero() {
        // w / s == 0.5 exactly -> 0 ; slightly above -> 1.
        let w = array![[1.0f32, 0.5, 0.50001, -0.5, -1.0]];
        let mut c = cfg(QuantMethod::AbsMax, Granularity::PerRow);
        c.eps = 0.0;
        let q = quantize(w.view(), &c).unwrap();
        assert_eq!(q.values, array![[1i8, 0, 1, 0, -1]]);
    }

    #[test]
    fn nonfinite_is_error_naming_weights() {
        let w = array![[1.0f32, f32::NAN]];
        let e = quantize(w.view(), &QuantConfig::default()).unwrap_err();
        assert_eq!(
            e,
            Error::NonFinite {
                arg: "weights",
                index: 1
            }
        );
        assert!(quantize_pack_2bit(w.view(), &QuantConfig::default()).is_err());
    }

    #[test]
    fn fused_pack_reports_the_same_nonfinite_error() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0usize, 63, 64, 200, 3 * 130 - 1] {
                let mut w = Array2::from_shape_fn((3, 130), |(i, j)| {
                    crate::rng::uniform_f32(3, (i * 130 + j) as u64) - 0.5
                });
                w[[at / 130, at % 130]] = bad;
                for m in [QuantMethod::AbsMean, QuantMethod::AbsMax] {
                    for g in [
                        Granularity::PerTensor,
                        Granularity::PerRow,
                        Granularity::PerGroup(64),
                    ] {
                        let c = cfg(m, g);
                        let e = quantize_pack_2bit(w.view(), &c).unwrap_err();
                        assert_eq!(
                            e,
                            Error::NonFinite {
                                arg: "weights",
                                index: at
                            }
                        );
                    }
                }
            }
        }
        // Finite input whose |w| sum overflows f32 is not an error.
        let w = Array2::from_elem((1, 100), 3e38f32);
        let (_, s) = quantize_pack_2bit(w.view(), &QuantConfig::default()).unwrap();
        assert!(s[0].is_infinite());
    }

    #[test]
    fn simd_abs_sum_is_bit_identical() {
        for n in (0..300).chain([1000, 4096, 4097]) {
            let xs: Vec<f32> = (0..n)
                .map(|i| (crate::rng::uniform_f32(5, i as u64) - 0.5) * 1e3)
                .collect();
            assert_eq!(
                abs_sum(&xs).to_bits(),
                abs_sum_scalar(&xs).to_bits(),
                "n {n}"
            );
        }
    }

    #[test]
    fn zero_group_is_all_zero() {
        let w = Array2::<f32>::zeros((3, 7));
        let q = quantize(w.view(), &QuantConfig::default()).unwrap();
        assert!(q.values.iter().all(|&v| v == 0));
        assert!(q.scales.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn fused_pack_equals_quantize_then_pack_on_ties_and_group_edges() {
        // Exact ties w / s == ±0.5 (eps 0), values next to them, zeros, and
        // groups of 128 / 192 (the SIMD path) and 100 (the scalar path).
        let vals = [
            1.0f32,
            0.5,
            0.500_000_06,
            -0.5,
            -0.499_999_97,
            0.0,
            -1.0,
            0.25,
        ];
        let w = Array2::from_shape_fn((3, 384 + 7), |(i, j)| vals[(i * 5 + j * 3) % vals.len()]);
        for g in [
            Granularity::PerRow,
            Granularity::PerGroup(128),
            Granularity::PerGroup(192),
            Granularity::PerGroup(100),
        ] {
            for thr in [None, Some(0.5)] {
                let c = QuantConfig {
                    method: QuantMethod::AbsMax,
                    granularity: g,
                    threshold: thr,
                    eps: 0.0,
                };
                let q = quantize(w.view(), &c).unwrap();
                let (p, _) = quantize_pack_2bit(w.view(), &c).unwrap();
                assert_eq!(
                    p,
                    pack::pack_2bit(q.values.view()).unwrap(),
                    "{g:?} {thr:?}"
                );
                assert!(q.values.iter().any(|&v| v == 0) && q.values.iter().any(|&v| v == 1));
            }
        }
    }

    #[test]
    fn fused_pack_equals_quantize_then_pack() {
        for &(r, c) in &[(1, 1), (3, 5), (4, 257), (2, 1000), (5, 33)] {
            let w = Array2::from_shape_fn((r, c), |(i, j)| {
                crate::rng::uniform_f32(9, (i * c + j) as u64) * 2.0 - 1.0
            });
            for g in [
                Granularity::PerTensor,
                Granularity::PerRow,
                Granularity::PerGroup(4),
                Granularity::PerGroup(7),
                Granularity::PerGroup(64),
            ] {
                for m in [QuantMethod::AbsMean, QuantMethod::AbsMax] {
                    for thr in [None, Some(0.3)] {
                        let c = QuantConfig {
                            method: m,
                            granularity: g,
                            threshold: thr,
                            eps: 1e-5,
                        };
                        let q = quantize(w.view(), &c).unwrap();
                        let (p, s) = quantize_pack_2bit(w.view(), &c).unwrap();
                        assert_eq!(p, pack::pack_2bit(q.values.view()).unwrap());
                        assert_eq!(s, q.scales.iter().copied().collect::<Vec<_>>());
                    }
                }
            }
        }
    }

    #[test]
    fn activation_quant_rule() {
        let x = array![[0.0f32, 1.0, -2.0, 0.5], [0.0, 0.0, 0.0, 0.0]];
        let (q, s) = quantize_activations_i8(x.view()).unwrap();
        assert_eq!(s[0], 63.5);
        // 1*63.5 = 63.5 -> 64 (even), -2*63.5 = -127, 0.5*63.5=31.75 -> 32
        assert_eq!(q.row(0).to_vec(), vec![0, 64, -127, 32]);
        assert_eq!(s[1], 127.0 / 1e-5);
        assert!(q.row(1).iter().all(|&v| v == 0));
    }
}
