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
use crate::cpu::{self, CpuLevel, Kernel};
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

/// The kernels this module runs at a requested [`CpuLevel`]: the best one at
/// or below it that the CPU supports.
fn kernel(level: CpuLevel) -> Kernel {
    Kernel::pick(level, true)
}

/// Sum of |x| in the documented order (16 f32 lanes, lanes added in f64), at
/// the active CPU level.
#[inline]
pub fn abs_sum(xs: &[f32]) -> f64 {
    abs_sum_k(kernel(cpu::active()), xs)
}

/// [`abs_sum`] with the kernels of `level`: bit-identical at every level.
pub fn abs_sum_at(level: CpuLevel, xs: &[f32]) -> f64 {
    abs_sum_k(kernel(level), xs)
}

#[inline]
fn abs_sum_k(k: Kernel, xs: &[f32]) -> f64 {
    match k {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the kernel is picked only when the CPU has AVX-512F.
        Kernel::Avx512 if xs.len() >= 64 => unsafe { abs_sum_avx512(xs) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the kernel is picked only when the CPU has AVX2.
        Kernel::Avx2 | Kernel::Avx512 if xs.len() >= 16 => unsafe { abs_sum_avx2(xs) },
        _ => abs_sum_scalar(xs),
    }
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

/// [`abs_sum`] with two 8-lane registers holding lanes 0..8 and 8..16: the
/// same per-lane order, so bit-identical to the scalar sum.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn abs_sum_avx2(xs: &[f32]) -> f64 {
    use std::arch::x86_64::*;
    let mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
    let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        // SAFETY: c holds 16 floats.
        let (x0, x1) = unsafe {
            (
                _mm256_loadu_ps(c.as_ptr()),
                _mm256_loadu_ps(c.as_ptr().add(8)),
            )
        };
        a0 = _mm256_add_ps(a0, _mm256_and_ps(x0, mask));
        a1 = _mm256_add_ps(a1, _mm256_and_ps(x1, mask));
    }
    let mut lanes = [0f32; 16];
    // SAFETY: lanes holds 16 floats.
    unsafe {
        _mm256_storeu_ps(lanes.as_mut_ptr(), a0);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), a1);
    }
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

/// max |x| (0 for an empty slice); NaN is ignored (f32 `max`). Portable.
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

/// max |x| as the largest `|x|` bit pattern (0 for an empty slice), with the
/// kernels of `level`. Equal to [`abs_max`] on finite input; unlike it, a
/// NaN or infinity anywhere makes the result non-finite (their patterns sit
/// above every finite one), which is how the fused quantizer proves its
/// input finite without a separate scan.
pub fn abs_max_at(level: CpuLevel, xs: &[f32]) -> f32 {
    abs_max_bits_k(kernel(level), xs)
}

#[inline]
fn abs_max_bits_k(k: Kernel, xs: &[f32]) -> f32 {
    match k {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 (or above) was detected for these kernels.
        Kernel::Avx2 | Kernel::Avx512 if xs.len() >= 32 => unsafe { abs_max_bits_avx2(xs) },
        _ => abs_max_bits_scalar(xs),
    }
}

fn abs_max_bits_scalar(xs: &[f32]) -> f32 {
    let mut acc = [0u32; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for i in 0..16 {
            acc[i] = acc[i].max(c[i].to_bits() & 0x7FFF_FFFF);
        }
    }
    let m = chunks
        .remainder()
        .iter()
        .fold(0u32, |m, v| m.max(v.to_bits() & 0x7FFF_FFFF));
    f32::from_bits(acc.iter().fold(m, |m, &a| m.max(a)))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn abs_max_bits_avx2(xs: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mask = _mm256_set1_epi32(0x7FFF_FFFF);
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut chunks = xs.chunks_exact(32);
    for c in &mut chunks {
        for (j, a) in acc.iter_mut().enumerate() {
            // SAFETY: c holds 32 floats.
            let v = unsafe { _mm256_loadu_si256(c.as_ptr().add(8 * j) as *const __m256i) };
            *a = _mm256_max_epu32(*a, _mm256_and_si256(v, mask));
        }
    }
    let m = _mm256_max_epu32(
        _mm256_max_epu32(acc[0], acc[1]),
        _mm256_max_epu32(acc[2], acc[3]),
    );
    let mut lanes = [0u32; 8];
    // SAFETY: lanes holds 8 u32.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, m) };
    let tail = abs_max_bits_scalar(chunks.remainder()).to_bits();
    f32::from_bits(lanes.iter().fold(tail, |m, &a| m.max(a)))
}

#[inline]
fn group_stat(k: Kernel, xs: &[f32], method: QuantMethod) -> f64 {
    match method {
        QuantMethod::AbsMean => abs_sum_k(k, xs),
        QuantMethod::AbsMax => abs_max_bits_k(k, xs) as f64,
    }
}

/// The scale of one group from its statistic (mean or max).
#[inline]
fn group_scale(k: Kernel, grp: &[f32], method: QuantMethod) -> f32 {
    let v = group_stat(k, grp, method);
    match method {
        QuantMethod::AbsMean => (v / grp.len() as f64) as f32,
        QuantMethod::AbsMax => v as f32,
    }
}

/// Computes the scales of a contiguous row-major `rows x cols` matrix.
/// Returns `scale_rows * groups_per_row` values.
/// Errors: [`Error::OutOfMemory`] naming `weights` when the scales cannot
/// be allocated.
pub fn compute_scales(w: &[f32], rows: usize, cols: usize, cfg: &QuantConfig) -> Result<Vec<f32>> {
    compute_scales_at(cpu::active(), w, rows, cols, cfg)
}

/// [`compute_scales`] with the kernels of `level` (bit-identical at every level).
pub fn compute_scales_at(
    level: CpuLevel,
    w: &[f32],
    rows: usize,
    cols: usize,
    cfg: &QuantConfig,
) -> Result<Vec<f32>> {
    let k = kernel(level);
    let g = cfg.granularity;
    let (srows, ngroups) = g.scale_shape(rows, cols);
    if cols == 0 || rows == 0 {
        return crate::try_zeroed(srows * ngroups, "weights");
    }
    match g {
        Granularity::PerTensor => {
            let per_row: Vec<f64> = crate::parallel::install(|| {
                w.par_chunks(cols)
                    .map(|r| group_stat(k, r, cfg.method))
                    .collect()
            });
            let s = match cfg.method {
                QuantMethod::AbsMean => {
                    (per_row.iter().sum::<f64>() / (rows as f64 * cols as f64)) as f32
                }
                // f64 max ignores NaN: take the largest bit pattern instead,
                // so a non-finite row keeps the scale non-finite.
                QuantMethod::AbsMax => f32::from_bits(
                    per_row
                        .iter()
                        .map(|&v| (v as f32).to_bits())
                        .max()
                        .unwrap_or(0),
                ),
            };
            Ok(vec![s])
        }
        Granularity::PerRow | Granularity::PerGroup(_) => {
            let glen = g.group_len(cols);
            let mut out = crate::try_zeroed(srows * ngroups, "weights")?;
            crate::parallel::install(|| {
                out.par_chunks_mut(ngroups)
                    .zip(w.par_chunks(cols))
                    .for_each(|(s, r)| row_scales(k, r, s, cfg.method, glen))
            });
            Ok(out)
        }
    }
}

/// The scales of one row's groups into `s`.
#[inline]
fn row_scales(k: Kernel, r: &[f32], s: &mut [f32], method: QuantMethod, glen: usize) {
    for (si, grp) in s.iter_mut().zip(r.chunks(glen)) {
        *si = group_scale(k, grp, method);
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

    /// The rule as one bound `hi >= 0`: `t = (w > hi) - (w < -hi)` gives the
    /// same trit as the rule for every float `w` (NaN compares false both ways).
    ///
    /// For [`Rule::Round`], `fl(w / d) > 0.5` holds iff the exact quotient
    /// exceeds `0.5 + 2^-25` (the midpoint between 0.5 and the next float,
    /// which rounds to even, i.e. down to 0.5), i.e. iff `w > d (0.5 + 2^-25)`
    /// for `d > 0`. That product is exact in f64 (24 + 25 significant bits);
    /// for a float `w`, `w > x` iff `w > RD(x)` (the largest float `<= x`).
    /// Rounding to nearest is symmetric, so the `-0.5` side is `w < -hi`.
    /// `d = 0` gives `hi = 0`: `w / 0` is `±inf` (NaN for `w = 0`), the same
    /// trits as `w > 0` / `w < 0`. No division is left in the SIMD loops.
    fn bound(self) -> f32 {
        match self {
            Rule::Threshold { thr } => thr,
            Rule::Round { d } => round_bound(d),
        }
    }
}

/// `RD(d · (0.5 + 2^-25))` in f32 (see [`Rule::bound`]).
fn round_bound(d: f32) -> f32 {
    let x = d as f64 * (0.5 + 1.0 / (1u64 << 25) as f64);
    let t = x as f32;
    if t as f64 > x {
        t.next_down()
    } else {
        t
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
    quantize_at(cpu::active(), w, cfg)
}

/// [`quantize`] with the kernels of `level` (identical results at every level).
pub fn quantize_at(level: CpuLevel, w: ArrayView2<f32>, cfg: &QuantConfig) -> Result<Quantized> {
    cfg.validate()?;
    let k = kernel(level);
    let (rows, cols) = w.dim();
    let data = contiguous(&w)?;
    check_finite(&data, "weights")?;
    let scales = compute_scales_at(level, &data, rows, cols, cfg)?;
    let (srows, ngroups) = cfg.granularity.scale_shape(rows, cols);
    let glen = cfg.granularity.group_len(cols);
    let mut values = pack::zeros(rows, cols)?;
    if cols > 0 {
        let vs = values.as_slice_mut().expect("fresh array is contiguous");
        crate::parallel::install(|| {
            vs.par_chunks_mut(cols)
                .zip(data.par_chunks(cols))
                .enumerate()
                .for_each(|(i, (o, r))| {
                    let mut start = 0;
                    while start < cols {
                        let gi = start / glen;
                        let end = ((gi + 1) * glen).min(cols);
                        let rule =
                            Rule::new(scale_for(&scales, cfg.granularity, ngroups, i, gi), cfg);
                        quantize_group(k, &r[start..end], &mut o[start..end], rule);
                        start = end;
                    }
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

/// The trits of one group (one rule) into `dst`.
#[inline]
fn quantize_group(k: Kernel, src: &[f32], dst: &mut [i8], rule: Rule) {
    match k {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2 (or above) was detected for these kernels; the
        // lengths are equal.
        Kernel::Avx2 | Kernel::Avx512 => unsafe { quantize_i8_avx2(src, rule.bound(), dst) },
        _ => quantize_span_rule(src, dst, rule),
    }
}

/// Quantizes `w` straight into the canonical 2-bit layout, at the active
/// CPU level. Per-row and per-group scales are computed row by row just
/// before the row is quantized (one pass over the input from memory; the
/// second reads the row from cache); a per-tensor scale needs its own pass
/// first.
///
/// Returns `(packed, scales)` with `packed.len() == rows * ceil(cols / 4)`.
pub fn quantize_pack_2bit(w: ArrayView2<f32>, cfg: &QuantConfig) -> Result<(Vec<u8>, Vec<f32>)> {
    quantize_pack_2bit_at(cpu::active(), w, cfg)
}

/// [`quantize_pack_2bit`] with the kernels of `level`: the same bytes and
/// scales at every level.
pub fn quantize_pack_2bit_at(
    level: CpuLevel,
    w: ArrayView2<f32>,
    cfg: &QuantConfig,
) -> Result<(Vec<u8>, Vec<f32>)> {
    cfg.validate()?;
    let k = kernel(level);
    let (rows, cols) = w.dim();
    let data = contiguous(&w)?;
    let g = cfg.granularity;
    let (srows, ngroups) = g.scale_shape(rows, cols);
    let glen = g.group_len(cols);
    let rb = pack::row_bytes(cols, pack::PackedLayout::TwoBit);
    let mut packed = crate::try_zeroed(crate::checked_mul(rows, rb, "weights")?, "weights")?;
    let mut scales = match g {
        Granularity::PerTensor => compute_scales_at(level, &data, rows, cols, cfg)?,
        _ => crate::try_zeroed(srows * ngroups, "weights")?,
    };
    if cols > 0 && rows > 0 {
        crate::parallel::install(|| match g {
            Granularity::PerTensor => {
                let s = &scales[..1];
                packed
                    .par_chunks_mut(rb)
                    .zip(data.par_chunks(cols))
                    .for_each(|(o, r)| pack_row(k, r, o, s, cfg, glen))
            }
            _ => packed
                .par_chunks_mut(rb)
                .zip(data.par_chunks(cols))
                .zip(scales.par_chunks_mut(ngroups))
                .for_each(|((o, r), s)| {
                    row_scales(k, r, s, cfg.method, glen);
                    pack_row(k, r, o, s, cfg, glen)
                }),
        });
    }
    // Both statistics are non-finite iff a group holds NaN or inf (AbsMean:
    // the sum; AbsMax: the largest bit pattern), so finite scales prove
    // finite input and the separate scan runs only otherwise (where it finds
    // the index, or passes when a huge finite sum overflowed).
    if !scales.iter().all(|s| s.is_finite()) {
        check_finite(&data, "weights")?;
    }
    Ok((packed, scales))
}

/// Quantizes and packs one row whose group scales are `s` (one scale for a
/// per-tensor or per-row matrix) into its `ceil(cols / 4)` bytes.
#[inline]
fn pack_row(k: Kernel, r: &[f32], o: &mut [u8], s: &[f32], cfg: &QuantConfig, glen: usize) {
    let ngroups = s.len();
    let done = match k {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 if ngroups == 1 || glen.is_multiple_of(64) => {
            // Whole 64-weight chunks (each in one group) with AVX-512.
            let n = r.len() / 64 * 64;
            let rule = |k: usize| Rule::new(s[if ngroups == 1 { 0 } else { k / glen }], cfg);
            // SAFETY: the kernel runs only on CPUs with AVX-512F and BMI2;
            // n <= r.len(), n / 4 <= o.len().
            unsafe { quantize_pack_avx512(&r[..n], &mut o[..n / 4], rule) };
            n
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx512 if ngroups == 1 => {
            // SAFETY: AVX2 was detected; o holds ceil(r.len() / 4) bytes.
            unsafe { pack_2bit_avx2(r, Rule::new(s[0], cfg).bound(), o) };
            r.len()
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx512 if glen.is_multiple_of(4) => {
            // Every group starts on a byte; a group's last byte is partial
            // only at the end of the row.
            for (gi, (src, dst)) in r.chunks(glen).zip(o.chunks_mut(glen / 4)).enumerate() {
                let hi = Rule::new(s[gi], cfg).bound();
                // SAFETY: AVX2 was detected; dst holds ceil(src.len() / 4) bytes.
                unsafe { pack_2bit_avx2(src, hi, dst) };
            }
            r.len()
        }
        _ => 0,
    };
    if done == r.len() {
        return;
    }
    // The rest in 256-weight tiles through a stack buffer, then pack.
    let mut tile = [0i8; 256];
    let (r, o) = (&r[done..], &mut o[done / 4..]);
    for (t, (src, dst)) in r.chunks(256).zip(o.chunks_mut(64)).enumerate() {
        let start = done + t * 256;
        let tile = &mut tile[..src.len()];
        let mut j = 0;
        while j < src.len() {
            let gi = (start + j) / glen;
            let end = ((gi + 1) * glen - start).min(src.len());
            let rule = Rule::new(s[if ngroups == 1 { 0 } else { gi }], cfg);
            quantize_span_rule(&src[j..end], &mut tile[j..end], rule);
            j = end;
        }
        pack::pack_2bit_row(tile, dst);
    }
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

/// The canonical 2-bit codes of 16 floats (`x0`, `x1`: weights 0..8, 8..16)
/// against the bound `hi` (`nhi = -hi`), as one 32-bit word: weight `e` at
/// bits `2e..2e+1`.
///
/// No `pdep` (microcoded and slow before Zen 3): in every 32-bit lane the
/// `> hi` mask fills the low half and the `< -hi` mask the high half; a
/// saturating pack to bytes leaves each weight's two masks in adjacent
/// bytes, and `movemask` reads them out as the code bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn codes16_avx2(
    x0: std::arch::x86_64::__m256,
    x1: std::arch::x86_64::__m256,
    hi: std::arch::x86_64::__m256,
    nhi: std::arch::x86_64::__m256,
) -> u32 {
    use std::arch::x86_64::*;
    let g0 = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(x0, hi));
    let l0 = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(x0, nhi));
    let g1 = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(x1, hi));
    let l1 = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(x1, nhi));
    let p0 = _mm256_blend_epi16::<0xAA>(g0, l0);
    let p1 = _mm256_blend_epi16::<0xAA>(g1, l1);
    // packs interleaves the 128-bit halves: [w0-3, w8-11 | w4-7, w12-15].
    let b = _mm256_packs_epi16(p0, p1);
    _mm256_movemask_epi8(_mm256_permute4x64_epi64::<0xD8>(b)) as u32
}

/// Trits of 8 floats against the bound (`nhi = -hi`) as i32 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn trits8_avx2(
    x: std::arch::x86_64::__m256,
    hi: std::arch::x86_64::__m256,
    nhi: std::arch::x86_64::__m256,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // t = (w < -hi) - (w > hi) as masks (-1 / 0): +1, -1 or 0.
    let gt = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(x, hi));
    let lt = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(x, nhi));
    _mm256_sub_epi32(lt, gt)
}

/// Lane mask for a masked load of the first `n` (< 8) of 8 floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn first_lanes(n: usize) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx)
}

/// Loads floats `i..i + 16` of `src` (zeros past its end) as two vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load16_tail(
    src: &[f32],
    i: usize,
) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    let n = src.len() - i;
    let p = src.as_ptr();
    // SAFETY: masked loads touch only lanes < n past i (inside src).
    unsafe {
        if n >= 16 {
            return (_mm256_loadu_ps(p.add(i)), _mm256_loadu_ps(p.add(i + 8)));
        }
        if n >= 8 {
            let x0 = _mm256_loadu_ps(p.add(i));
            let x1 = if n > 8 {
                _mm256_maskload_ps(p.add(i + 8), first_lanes(n - 8))
            } else {
                _mm256_setzero_ps()
            };
            return (x0, x1);
        }
        (
            _mm256_maskload_ps(p.add(i), first_lanes(n)),
            _mm256_setzero_ps(),
        )
    }
}

/// Quantizes `src` against the bound `hi >= 0` and packs it into `dst`
/// (`ceil(src.len() / 4)` bytes; trits past the end of `src` in the last
/// byte are 0). 32 weights a step, codes by [`codes16_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_2bit_avx2(src: &[f32], hi: f32, dst: &mut [u8]) {
    use std::arch::x86_64::*;
    let n = src.len();
    assert!(dst.len() >= n.div_ceil(4));
    let (h, nh) = (_mm256_set1_ps(hi), _mm256_set1_ps(-hi));
    let (p, d) = (src.as_ptr(), dst.as_mut_ptr());
    let mut i = 0;
    // SAFETY: loads read src[i..i + 32] with i + 32 <= n; stores write
    // dst[i / 4..i / 4 + 8] within ceil(n / 4).
    unsafe {
        while i + 32 <= n {
            let lo = codes16_avx2(
                _mm256_loadu_ps(p.add(i)),
                _mm256_loadu_ps(p.add(i + 8)),
                h,
                nh,
            );
            let hi2 = codes16_avx2(
                _mm256_loadu_ps(p.add(i + 16)),
                _mm256_loadu_ps(p.add(i + 24)),
                h,
                nh,
            );
            let w = lo as u64 | (hi2 as u64) << 32;
            std::ptr::write_unaligned(d.add(i / 4) as *mut u64, w.to_le());
            i += 32;
        }
        while i < n {
            let (x0, x1) = load16_tail(src, i);
            let w = codes16_avx2(x0, x1, h, nh).to_le_bytes();
            let nb = (n - i).min(16).div_ceil(4);
            std::ptr::copy_nonoverlapping(w.as_ptr(), d.add(i / 4), nb);
            i += 16;
        }
    }
}

/// Quantizes `src` against the bound `hi >= 0` into trits `dst` (same length).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_i8_avx2(src: &[f32], hi: f32, dst: &mut [i8]) {
    use std::arch::x86_64::*;
    let n = src.len();
    assert_eq!(dst.len(), n);
    let (h, nh) = (_mm256_set1_ps(hi), _mm256_set1_ps(-hi));
    let p = src.as_ptr();
    let mut i = 0;
    // SAFETY: loads read src[i..i + 32] with i + 32 <= n; the store writes
    // dst[i..i + 32].
    unsafe {
        while i + 32 <= n {
            let t0 = trits8_avx2(_mm256_loadu_ps(p.add(i)), h, nh);
            let t1 = trits8_avx2(_mm256_loadu_ps(p.add(i + 8)), h, nh);
            let t2 = trits8_avx2(_mm256_loadu_ps(p.add(i + 16)), h, nh);
            let t3 = trits8_avx2(_mm256_loadu_ps(p.add(i + 24)), h, nh);
            // packs: [t0 lo, t1 lo | t0 hi, t1 hi] then bytes likewise;
            // the final dword permute restores element order.
            let a = _mm256_packs_epi32(t0, t1);
            let b = _mm256_packs_epi32(t2, t3);
            let c = _mm256_packs_epi16(a, b);
            let c = _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, c);
            i += 32;
        }
    }
    for (o, &w) in dst[i..].iter_mut().zip(&src[i..]) {
        *o = (w > hi) as i8 - (w < -hi) as i8;
    }
}

/// The trits of `src` under one rule (the scalar reference).
#[inline]
fn quantize_span_rule(src: &[f32], dst: &mut [i8], rule: Rule) {
    match rule {
        Rule::Round { d } => {
            for (o, &w) in dst.iter_mut().zip(src) {
                let q = w / d;
                *o = (q > 0.5) as i8 - (q < -0.5) as i8;
            }
        }
        Rule::Threshold { thr } => {
            for (o, &w) in dst.iter_mut().zip(src) {
                *o = (w > thr) as i8 - (w < -thr) as i8;
            }
        }
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
    fn division_free_bound_gives_the_division_rule() {
        // For scales d across the whole f32 range (zero, subnormal, tiny,
        // ordinary, huge), the floats at and around d / 2 and the bound
        // itself: `w / d > 0.5` iff `w > bound`, `w / d < -0.5` iff `w < -bound`.
        let mut ds = vec![
            0.0f32,
            f32::from_bits(1),
            1e-40,
            1e-38,
            3e-39,
            1e30,
            3e38,
            f32::MAX,
        ];
        ds.extend((0..4000).map(|i| {
            let u = crate::rng::uniform_f64(77, i);
            (2f64.powf(u * 250.0 - 125.0)) as f32
        }));
        for d in ds {
            let hi = Rule::Round { d }.bound();
            let mut ws = vec![hi, d * 0.5, 0.0, f32::from_bits(1)];
            for base in [hi, d * 0.5] {
                let (mut a, mut b) = (base, base);
                for _ in 0..3 {
                    a = a.next_up();
                    b = b.next_down();
                    ws.push(a);
                    ws.push(b);
                }
            }
            for w in ws.into_iter().flat_map(|w| [w, -w]) {
                let q = w / d;
                assert_eq!(q > 0.5, w > hi, "d {d:e} w {w:e} hi {hi:e}");
                assert_eq!(q < -0.5, w < -hi, "d {d:e} w {w:e} hi {hi:e}");
            }
        }
    }

    /// Random weights with exact ties (`w / s == ±0.5` with `eps = 0`) and zeros.
    fn tricky(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            let h = crate::rng::hash2(seed, (i * cols + j) as u64);
            match h % 8 {
                0 => 0.0,
                1 => 0.5,
                2 => -0.5,
                3 => 1.0,
                4 => -0.0,
                _ => crate::rng::uniform_f32(seed, (i * cols + j) as u64) * 2.0 - 1.0,
            }
        })
    }

    #[test]
    fn every_level_equals_the_scalar_reference() {
        let levels = cpu::levels_for_test("quantize / quantize_pack_2bit / scales");
        let sizes = [0usize, 1, 3, 4, 5, 31, 32, 33, 63, 64, 65, 255, 256, 257];
        let grans = [
            Granularity::PerTensor,
            Granularity::PerRow,
            Granularity::PerGroup(4),
            Granularity::PerGroup(7),
            Granularity::PerGroup(32),
            Granularity::PerGroup(36),
            Granularity::PerGroup(64),
            Granularity::PerGroup(128),
        ];
        for &cols in &sizes {
            for rows in [0usize, 1, 3] {
                let w = tricky(rows, cols, (rows * 1000 + cols) as u64);
                for g in grans {
                    for m in [QuantMethod::AbsMean, QuantMethod::AbsMax] {
                        for (thr, eps) in [(None, 0.0), (None, 1e-5), (Some(0.7), 1e-5)] {
                            let c = QuantConfig {
                                method: m,
                                granularity: g,
                                threshold: thr,
                                eps,
                            };
                            let want = quantize_at(CpuLevel::Scalar, w.view(), &c).unwrap();
                            let (wp, ws) =
                                quantize_pack_2bit_at(CpuLevel::Scalar, w.view(), &c).unwrap();
                            assert_eq!(wp, pack::pack_2bit(want.values.view()).unwrap());
                            for &l in &levels {
                                let tag = format!("{l} {rows}x{cols} {g:?} {m:?} {thr:?} {eps}");
                                let got = quantize_at(l, w.view(), &c).unwrap();
                                assert_eq!(got, want, "{tag}");
                                let (p, s) = quantize_pack_2bit_at(l, w.view(), &c).unwrap();
                                assert_eq!(p, wp, "{tag}");
                                assert_eq!(s, ws, "{tag}");
                                assert_eq!(
                                    s,
                                    compute_scales_at(l, w.as_slice().unwrap(), rows, cols, &c)
                                        .unwrap(),
                                    "{tag}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_level_abs_statistics_agree() {
        let levels = cpu::levels_for_test("abs_sum / abs_max");
        for n in (0..130).chain([255, 256, 257, 1000, 4097]) {
            let xs: Vec<f32> = (0..n)
                .map(|i| (crate::rng::uniform_f32(6, i as u64) - 0.5) * 1e3)
                .collect();
            for &l in &levels {
                assert_eq!(abs_sum_at(l, &xs).to_bits(), abs_sum_scalar(&xs).to_bits());
                assert_eq!(abs_max_at(l, &xs), abs_max(&xs), "n {n} {l}");
                if n > 0 {
                    let mut bad = xs.clone();
                    bad[n / 2] = f32::NAN;
                    assert!(abs_max_at(l, &bad).is_nan(), "n {n} {l}");
                    bad[n / 2] = f32::NEG_INFINITY;
                    assert!(abs_max_at(l, &bad).is_infinite(), "n {n} {l}");
                }
            }
        }
    }

    #[test]
    fn every_level_reports_nonfinite_input() {
        for l in cpu::levels_for_test("quantize_pack_2bit non-finite") {
            for bad in [f32::NAN, f32::INFINITY] {
                let mut w = tricky(3, 100, 4);
                w[[2, 37]] = bad;
                for g in [
                    Granularity::PerTensor,
                    Granularity::PerRow,
                    Granularity::PerGroup(32),
                ] {
                    for m in [QuantMethod::AbsMean, QuantMethod::AbsMax] {
                        let c = QuantConfig {
                            method: m,
                            granularity: g,
                            ..QuantConfig::default()
                        };
                        let e = quantize_pack_2bit_at(l, w.view(), &c).unwrap_err();
                        assert_eq!(
                            e,
                            Error::NonFinite {
                                arg: "weights",
                                index: 237
                            }
                        );
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
