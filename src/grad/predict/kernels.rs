//! Per-element kernels of the phase trainer.
//!
//! Every predictor's output is a fixed linear combination `p = Σ_i c_i h_i`
//! of the history buffers `h_i` (one buffer per recorded step, f32 or bf16),
//! so the kernels run across elements: eight elements per AVX2 vector, one
//! pass over the history. Two kernels:
//!
//! * [`combine`]: `out = Σ_i c_i h_i` (a predicted gradient);
//! * [`measure`]: for up to three coefficient sets at once, the sums
//!   `Σ (p_m − g)²`, `Σ p_m g`, `Σ p_m²` and `Σ g²` against a real gradient
//!   `g` (the trainer's error check on every backward pass).
//!
//! # Arithmetic (identical at every CPU level)
//! `p` is accumulated in f32 in history order, `p ← p + c_i·h_i` with a
//! separate multiply and add (no FMA), starting from 0. The sums are kept in
//! eight f32 lanes (element `e` goes to lane `e mod 8`, in increasing `e`) and
//! the lanes are added in f64 in lane order. The scalar reference does exactly
//! this, so every level gives the same bits; callers sum blocks of elements
//! in f64 in a fixed order, so results do not depend on the thread count
//! either. The f32 lane sums carry a relative rounding error of about
//! `len/8 · 2^-24` per block: negligible for error statistics.

use crate::cpu::CpuLevel;

/// Most coefficient sets [`measure`] evaluates in one pass.
const MAX_COMBOS: usize = 3;

/// Lanes of the partial sums (one AVX2 vector of f32).
const LANES: usize = 8;

/// A history element: f32, or bf16 kept as its bit pattern.
pub trait Slot: Copy + Default + Send + Sync + 'static {
    /// Whether the element is bf16 (`u16` bits).
    const BF16: bool;
    /// The value as f32 (exact).
    fn load(self) -> f32;
    /// Writes `src` into `dst` (equal lengths; bf16 rounds to nearest even).
    fn store(dst: &mut [Self], src: &[f32]);
}

impl Slot for f32 {
    const BF16: bool = false;
    #[inline(always)]
    fn load(self) -> f32 {
        self
    }
    fn store(dst: &mut [f32], src: &[f32]) {
        dst.copy_from_slice(src);
    }
}

impl Slot for u16 {
    const BF16: bool = true;
    #[inline(always)]
    fn load(self) -> f32 {
        f32::from_bits((self as u32) << 16)
    }
    fn store(dst: &mut [u16], src: &[f32]) {
        crate::precision::convert::f32_to_bf16(src, dst).expect("equal lengths");
    }
}

/// The sums [`measure`] returns (f64; entries past the number of coefficient
/// sets are 0).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    /// `Σ (p_m − g)²` per coefficient set.
    pub err: [f64; 3],
    /// `Σ p_m g`.
    pub dot: [f64; 3],
    /// `Σ p_m²`.
    pub pp: [f64; 3],
    /// `Σ g²`.
    pub gg: f64,
}

impl Sums {
    /// Adds `o` field by field (callers add blocks in a fixed order).
    pub fn add(&mut self, o: &Sums) {
        for m in 0..MAX_COMBOS {
            self.err[m] += o.err[m];
            self.dot[m] += o.dot[m];
            self.pp[m] += o.pp[m];
        }
        self.gg += o.gg;
    }
}

/// Per-lane f32 partial sums.
#[derive(Debug, Clone, Copy, Default)]
struct Lanes {
    err: [[f32; LANES]; MAX_COMBOS],
    dot: [[f32; LANES]; MAX_COMBOS],
    pp: [[f32; LANES]; MAX_COMBOS],
    gg: [f32; LANES],
}

impl Lanes {
    fn reduce(&self) -> Sums {
        let sum = |l: &[f32; LANES]| l.iter().fold(0.0f64, |a, &x| a + x as f64);
        let mut s = Sums {
            gg: sum(&self.gg),
            ..Default::default()
        };
        for m in 0..MAX_COMBOS {
            s.err[m] = sum(&self.err[m]);
            s.dot[m] = sum(&self.dot[m]);
            s.pp[m] = sum(&self.pp[m]);
        }
        s
    }
}

/// Whether the AVX2 kernels may run at `level` on this CPU.
fn use_avx2(level: CpuLevel) -> bool {
    cfg!(target_arch = "x86_64")
        && CpuLevel::Avx2.allowed_under(level)
        && CpuLevel::Avx2.is_supported()
}

/// The kernel level [`combine`] and [`measure`] actually run at `level`
/// (`Avx2` for AVX2 and above where supported, else `Scalar`).
pub fn kernel_level(level: CpuLevel) -> CpuLevel {
    if use_avx2(level) {
        CpuLevel::Avx2
    } else {
        CpuLevel::Scalar
    }
}

fn check_shapes<T>(srcs: &[&[T]], coef: &[f32], m: usize, n: usize) {
    assert!(m <= MAX_COMBOS, "at most {MAX_COMBOS} coefficient sets");
    assert_eq!(
        coef.len(),
        m * srcs.len(),
        "one coefficient per set and source"
    );
    assert!(
        srcs.iter().all(|s| s.len() == n),
        "sources of unequal length"
    );
}

/// `out[e] = Σ_i coef[i] · srcs[i][e]` (f32, in source order; see the module
/// docs). Panics if the lengths disagree.
pub fn combine<T: Slot>(level: CpuLevel, srcs: &[&[T]], coef: &[f32], out: &mut [f32]) {
    check_shapes(srcs, coef, 1, out.len());
    let mut start = 0;
    #[cfg(target_arch = "x86_64")]
    if use_avx2(level) {
        // SAFETY: AVX2 checked; lengths checked above.
        start = unsafe { x86::combine(srcs, coef, out) };
    }
    let _ = level;
    combine_scalar(srcs, coef, out, start);
}

fn combine_scalar<T: Slot>(srcs: &[&[T]], coef: &[f32], out: &mut [f32], start: usize) {
    for (e, o) in out.iter_mut().enumerate().skip(start) {
        let mut p = 0.0f32;
        for (s, &c) in srcs.iter().zip(coef) {
            p += c * s[e].load();
        }
        *o = p;
    }
}

/// For each of the `m` coefficient sets (`coef` is `m` rows of
/// `srcs.len()`), the prediction `p_m = Σ_i coef[m][i] · srcs[i]` compared
/// with `g`; returns the sums (see [`Sums`]). With `unit0 = Some(u)`, set 0
/// is the source `u` itself (`p_0 = srcs[u]`, its coefficients are ignored):
/// the last-gradient predictor costs no arithmetic. Panics if the lengths
/// disagree, `m > 3`, or `u` is out of range.
pub fn measure<T: Slot>(
    level: CpuLevel,
    srcs: &[&[T]],
    coef: &[f32],
    m: usize,
    unit0: Option<usize>,
    g: &[f32],
) -> Sums {
    check_shapes(srcs, coef, m, g.len());
    let unit0 = unit0.filter(|_| m > 0);
    assert!(
        unit0.is_none_or(|u| u < srcs.len()),
        "unit source out of range"
    );
    let mut lanes = Lanes::default();
    let mut start = 0;
    #[cfg(target_arch = "x86_64")]
    if use_avx2(level) {
        // SAFETY: AVX2 checked; lengths and the unit source checked above.
        start = unsafe {
            match (m, unit0) {
                (0, _) => 0,
                (1, None) => x86::measure::<T, 1, false>(srcs, coef, 0, g, &mut lanes),
                (2, None) => x86::measure::<T, 2, false>(srcs, coef, 0, g, &mut lanes),
                (_, None) => x86::measure::<T, 3, false>(srcs, coef, 0, g, &mut lanes),
                (1, Some(u)) => x86::measure::<T, 1, true>(srcs, coef, u, g, &mut lanes),
                (2, Some(u)) => x86::measure::<T, 2, true>(srcs, coef, u, g, &mut lanes),
                (_, Some(u)) => x86::measure::<T, 3, true>(srcs, coef, u, g, &mut lanes),
            }
        };
    }
    let _ = level;
    measure_scalar(srcs, coef, m, unit0, g, start, &mut lanes);
    lanes.reduce()
}

fn measure_scalar<T: Slot>(
    srcs: &[&[T]],
    coef: &[f32],
    m: usize,
    unit0: Option<usize>,
    g: &[f32],
    start: usize,
    l: &mut Lanes,
) {
    let k = srcs.len();
    for (e, &ge) in g.iter().enumerate().skip(start) {
        let j = e % LANES;
        for q in 0..m {
            let p = match unit0 {
                Some(u) if q == 0 => srcs[u][e].load(),
                _ => {
                    let mut p = 0.0f32;
                    for (s, &c) in srcs.iter().zip(&coef[q * k..(q + 1) * k]) {
                        p += c * s[e].load();
                    }
                    p
                }
            };
            let d = p - ge;
            l.err[q][j] += d * d;
            l.dot[q][j] += p * ge;
            l.pp[q][j] += p * p;
        }
        l.gg[j] += ge * ge;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Lanes, Slot};
    use std::arch::x86_64::*;

    /// Eight history values at `p` as f32.
    macro_rules! load8 {
        ($t:ty, $p:expr) => {
            if <$t as Slot>::BF16 {
                let h = _mm_loadu_si128($p as *const __m128i);
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            } else {
                _mm256_loadu_ps($p as *const f32)
            }
        };
    }

    /// Writes the combination for the first `len / 16 * 16` elements and
    /// returns that count.
    ///
    /// # Safety
    /// AVX2; every source as long as `out`; `coef.len() == srcs.len()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn combine<T: Slot>(srcs: &[&[T]], coef: &[f32], out: &mut [f32]) -> usize {
        let n = out.len();
        let k = srcs.len();
        let mut e = 0;
        while e + 16 <= n {
            // SAFETY: e + 16 <= n = every source's length; i < k = coef.len().
            unsafe {
                let mut a = _mm256_setzero_ps();
                let mut b = _mm256_setzero_ps();
                for i in 0..k {
                    let c = _mm256_set1_ps(*coef.get_unchecked(i));
                    let s = srcs.get_unchecked(i).as_ptr().add(e);
                    a = _mm256_add_ps(a, _mm256_mul_ps(c, load8!(T, s)));
                    b = _mm256_add_ps(b, _mm256_mul_ps(c, load8!(T, s.add(8))));
                }
                _mm256_storeu_ps(out.as_mut_ptr().add(e), a);
                _mm256_storeu_ps(out.as_mut_ptr().add(e + 8), b);
            }
            e += 16;
        }
        e
    }

    /// Accumulates the first `len / 8 * 8` elements into `lanes` and returns
    /// that count. With `UNIT`, set 0 is source `u` itself.
    ///
    /// # Safety
    /// AVX2; every source as long as `g`; `coef.len() == M * srcs.len()`;
    /// `u < srcs.len()` if `UNIT`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn measure<T: Slot, const M: usize, const UNIT: bool>(
        srcs: &[&[T]],
        coef: &[f32],
        u: usize,
        g: &[f32],
        lanes: &mut Lanes,
    ) -> usize {
        let n = g.len();
        let k = srcs.len();
        let z = _mm256_setzero_ps();
        let (mut err, mut dot, mut pp) = ([z; M], [z; M], [z; M]);
        let mut gg = z;
        let first = if UNIT { 1 } else { 0 };
        let mut e = 0;
        // The predictions of V consecutive vectors (8 V elements) as V
        // independent chains, so that several are in flight at once (one
        // chain of 8 dependent adds per set left the loop latency-bound);
        // their sums then go into the lanes vector by vector, in element
        // order, exactly as one vector a step would.
        macro_rules! step {
            ($v:expr) => {{
                const V: usize = $v;
                let mut p = [[z; M]; V];
                for i in 0..k {
                    let s = srcs.get_unchecked(i).as_ptr().add(e);
                    let h: [__m256; V] = std::array::from_fn(|v| load8!(T, s.add(8 * v)));
                    for q in first..M {
                        let c = _mm256_set1_ps(*coef.get_unchecked(q * k + i));
                        for v in 0..V {
                            p[v][q] = _mm256_add_ps(p[v][q], _mm256_mul_ps(c, h[v]));
                        }
                    }
                }
                for (v, pv) in p.iter_mut().enumerate() {
                    if UNIT {
                        pv[0] = load8!(T, srcs.get_unchecked(u).as_ptr().add(e + 8 * v));
                    }
                    let gv = _mm256_loadu_ps(g.as_ptr().add(e + 8 * v));
                    for q in 0..M {
                        let d = _mm256_sub_ps(pv[q], gv);
                        err[q] = _mm256_add_ps(err[q], _mm256_mul_ps(d, d));
                        dot[q] = _mm256_add_ps(dot[q], _mm256_mul_ps(pv[q], gv));
                        pp[q] = _mm256_add_ps(pp[q], _mm256_mul_ps(pv[q], pv[q]));
                    }
                    gg = _mm256_add_ps(gg, _mm256_mul_ps(gv, gv));
                }
                e += 8 * V;
            }};
        }
        // SAFETY (both loops): e + 8 V <= n = every source's length;
        // q * k + i < M * k; u < k.
        while e + 16 <= n {
            unsafe { step!(2) }
        }
        while e + 8 <= n {
            unsafe { step!(1) }
        }
        // SAFETY: each destination is an [f32; 8].
        unsafe {
            for q in 0..M {
                _mm256_storeu_ps(lanes.err[q].as_mut_ptr(), err[q]);
                _mm256_storeu_ps(lanes.dot[q].as_mut_ptr(), dot[q]);
                _mm256_storeu_ps(lanes.pp[q].as_mut_ptr(), pp[q]);
            }
            _mm256_storeu_ps(lanes.gg.as_mut_ptr(), gg);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::uniform_f32;

    const SIZES: [usize; 16] = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 255, 257];

    fn levels() -> Vec<CpuLevel> {
        let run = crate::cpu::supported_levels();
        eprintln!(
            "predict kernels: levels run {:?} (kernel {:?}); skipped {:?}",
            run,
            run.iter().map(|&l| kernel_level(l)).collect::<Vec<_>>(),
            crate::cpu::unsupported_levels()
        );
        run
    }

    fn data(seed: u64, n: usize, k: usize) -> (Vec<Vec<f32>>, Vec<f32>) {
        let h = (0..k)
            .map(|i| {
                (0..n)
                    .map(|e| uniform_f32(seed * 977 + i as u64, e as u64) * 4.0 - 2.0)
                    .collect()
            })
            .collect();
        let g = (0..n)
            .map(|e| uniform_f32(seed * 991 + 500, e as u64) * 3.0 - 1.5)
            .collect();
        (h, g)
    }

    /// The plain f64 definitions the kernels approximate.
    fn reference(h: &[Vec<f32>], coef: &[f32], m: usize, g: &[f32]) -> (Vec<Vec<f64>>, [f64; 4]) {
        let k = h.len();
        let p: Vec<Vec<f64>> = (0..m)
            .map(|q| {
                (0..g.len())
                    .map(|e| {
                        (0..k)
                            .map(|i| coef[q * k + i] as f64 * h[i][e] as f64)
                            .sum()
                    })
                    .collect()
            })
            .collect();
        let gg = g.iter().map(|&x| x as f64 * x as f64).sum();
        (p, [gg, 0.0, 0.0, 0.0])
    }

    #[test]
    fn combine_and_measure_equal_the_reference_at_every_level() {
        for level in levels() {
            for (case, &n) in SIZES.iter().enumerate() {
                for k in [1usize, 2, 3, 8, 17] {
                    let (h, g) = data(case as u64 * 31 + k as u64, n, k);
                    let hb: Vec<Vec<u16>> = h
                        .iter()
                        .map(|v| {
                            v.iter()
                                .map(|&x| crate::precision::convert::f32_to_bf16_bits(x))
                                .collect()
                        })
                        .collect();
                    let coef: Vec<f32> = (0..MAX_COMBOS * k)
                        .map(|i| uniform_f32(77 + case as u64, i as u64) * 2.0 - 0.7)
                        .collect();
                    let srcs: Vec<&[f32]> = h.iter().map(|v| v.as_slice()).collect();
                    let srcb: Vec<&[u16]> = hb.iter().map(|v| v.as_slice()).collect();
                    // Bit-exact against the scalar reference (same arithmetic).
                    let mut out = vec![f32::NAN; n];
                    let mut want = vec![0f32; n];
                    combine(level, &srcs, &coef[..k], &mut out);
                    combine_scalar(&srcs, &coef[..k], &mut want, 0);
                    assert_eq!(out, want, "{level:?} n {n} k {k}");
                    combine(level, &srcb, &coef[..k], &mut out);
                    combine_scalar(&srcb, &coef[..k], &mut want, 0);
                    assert_eq!(out, want, "bf16 {level:?} n {n} k {k}");
                    for m in 0..=MAX_COMBOS {
                        for unit in [None, Some(k - 1), Some(k / 2)] {
                            let mut c = coef[..m * k].to_vec();
                            if let (Some(u), true) = (unit, m > 0) {
                                // What the unit row means: coefficients e_u.
                                c[..k]
                                    .iter_mut()
                                    .enumerate()
                                    .for_each(|(i, x)| *x = (i == u) as u8 as f32);
                            }
                            let c = &c[..];
                            let got = measure(level, &srcs, c, m, unit, &g);
                            let mut l = Lanes::default();
                            measure_scalar(&srcs, c, m, unit.filter(|_| m > 0), &g, 0, &mut l);
                            assert_eq!(got, l.reduce(), "{level:?} n {n} k {k} m {m} {unit:?}");
                            let gotb = measure(level, &srcb, c, m, unit, &g);
                            let mut l = Lanes::default();
                            measure_scalar(&srcb, c, m, unit.filter(|_| m > 0), &g, 0, &mut l);
                            assert_eq!(
                                gotb,
                                l.reduce(),
                                "bf16 {level:?} n {n} k {k} m {m} {unit:?}"
                            );
                            // Against the f64 definitions, within the f32 rounding bound:
                            // each p has k products (|c h| <= 2.6), so |Δp| <= 2k·2^-24·Σ|c h|.
                            let (p, [gg, ..]) = reference(&h, c, m, &g);
                            let tol =
                                |x: f64, scale: f64| (x.abs() + scale) * 1e-5 * (k as f64 + 2.0);
                            assert!((got.gg - gg).abs() <= tol(gg, 0.0), "{} {}", got.gg, gg);
                            for (q, pq) in p.iter().enumerate().take(m) {
                                let err: f64 = pq
                                    .iter()
                                    .zip(&g)
                                    .map(|(a, &b)| (a - b as f64).powi(2))
                                    .sum();
                                let dot: f64 = pq.iter().zip(&g).map(|(a, &b)| a * b as f64).sum();
                                let pp: f64 = pq.iter().map(|a| a * a).sum();
                                let scale = n as f64 * 10.0 * k as f64;
                                assert!(
                                    (got.err[q] - err).abs() <= tol(err, scale),
                                    "err {} {}",
                                    got.err[q],
                                    err
                                );
                                assert!(
                                    (got.dot[q] - dot).abs() <= tol(dot, scale),
                                    "dot {} {}",
                                    got.dot[q],
                                    dot
                                );
                                assert!(
                                    (got.pp[q] - pp).abs() <= tol(pp, scale),
                                    "pp {} {}",
                                    got.pp[q],
                                    pp
                                );
                            }
                            for q in m..MAX_COMBOS {
                                assert_eq!((got.err[q], got.dot[q], got.pp[q]), (0.0, 0.0, 0.0));
                            }
                        }
                    }
                    // The measured prediction is exactly what combine writes.
                    if n > 0 {
                        let mut p = vec![0f32; n];
                        combine(level, &srcs, &coef[..k], &mut p);
                        let s = measure(level, &srcs, &coef[..k], 1, None, &p);
                        assert_eq!(s.err[0], 0.0);
                    }
                }
            }
        }
    }
}
