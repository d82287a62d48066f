//! Small dense kernels of the decoder: dot products and `acc += a·v` over
//! rows stored as f32, f16, bf16 or int8, with f32 accumulation.
//!
//! They serve the attention over the KV cache (keys and values in the
//! cache's dtype) and the dense matrices (`lm_head`, int8 `lm_head`). Each
//! has a scalar reference and an AVX2 + FMA + F16C kernel picked at run time
//! through [`crate::cpu::active`]; the AVX2 kernels sum in 32 lanes, so they
//! equal the reference within the f32 summation bound
//! `n · 2⁻²³ · Σ|w·x|` (tested on boundary lengths).

use crate::cpu::{self, CpuLevel};
use crate::precision::convert::{bf16_bits_to_f32, f16_bits_to_f32};

/// A borrowed row of one storage dtype.
#[derive(Debug, Clone, Copy)]
pub enum Row<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// IEEE half bits.
    F16(&'a [u16]),
    /// bfloat16 bits.
    Bf16(&'a [u16]),
    /// int8 values (the caller applies the row scale).
    I8(&'a [i8]),
}

impl Row<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Row::F32(s) => s.len(),
            Row::F16(s) | Row::Bf16(s) => s.len(),
            Row::I8(s) => s.len(),
        }
    }

    /// Whether the row is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements `lo..hi`.
    #[inline]
    pub fn slice(&self, lo: usize, hi: usize) -> Self {
        match self {
            Row::F32(s) => Row::F32(&s[lo..hi]),
            Row::F16(s) => Row::F16(&s[lo..hi]),
            Row::Bf16(s) => Row::Bf16(&s[lo..hi]),
            Row::I8(s) => Row::I8(&s[lo..hi]),
        }
    }

    /// Element `i` as f32 (exact widening).
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        match self {
            Row::F32(s) => s[i],
            Row::F16(s) => f16_bits_to_f32(s[i]),
            Row::Bf16(s) => bf16_bits_to_f32(s[i]),
            Row::I8(s) => s[i] as f32,
        }
    }
}

/// Whether the AVX2 kernels may run (supported and allowed by `TRITTER_CPU_LEVEL`).
pub fn avx2_active() -> bool {
    CpuLevel::Avx2.is_supported() && CpuLevel::Avx2.allowed_under(cpu::active())
}

/// The kernel level [`dot`] and [`axpy`] use.
pub fn level() -> CpuLevel {
    if avx2_active() {
        CpuLevel::Avx2
    } else {
        CpuLevel::Scalar
    }
}

/// `Σ w[i]·x[i]` (`w.len() == x.len()`).
#[inline]
pub fn dot(w: Row, x: &[f32]) -> f32 {
    dot_with(level(), w, x)
}

/// `acc[i] += a · v[i]` (`acc.len() == v.len()`).
#[inline]
pub fn axpy(acc: &mut [f32], a: f32, v: Row) {
    axpy_with(level(), acc, a, v)
}

/// [`dot`] with an explicit level (tests).
///
/// # Panics
/// If the lengths differ or `level` is not supported.
pub fn dot_with(level: CpuLevel, w: Row, x: &[f32]) -> f32 {
    assert_eq!(w.len(), x.len(), "dot: length mismatch");
    #[cfg(target_arch = "x86_64")]
    if level == CpuLevel::Avx2 {
        assert!(CpuLevel::Avx2.is_supported());
        // SAFETY: features checked; lengths equal.
        return unsafe {
            match w {
                Row::F32(s) => x86::dot(s, x),
                Row::F16(s) => x86::dot(x86::H16(s), x),
                Row::Bf16(s) => x86::dot(x86::B16(s), x),
                Row::I8(s) => x86::dot(s, x),
            }
        };
    }
    let _ = level;
    (0..x.len()).map(|i| w.get(i) * x[i]).sum()
}

/// [`axpy`] with an explicit level (tests).
///
/// # Panics
/// If the lengths differ or `level` is not supported.
pub fn axpy_with(level: CpuLevel, acc: &mut [f32], a: f32, v: Row) {
    assert_eq!(acc.len(), v.len(), "axpy: length mismatch");
    #[cfg(target_arch = "x86_64")]
    if level == CpuLevel::Avx2 {
        assert!(CpuLevel::Avx2.is_supported());
        // SAFETY: features checked; lengths equal.
        unsafe {
            match v {
                Row::F32(s) => x86::axpy(acc, a, s),
                Row::F16(s) => x86::axpy(acc, a, x86::H16(s)),
                Row::Bf16(s) => x86::axpy(acc, a, x86::B16(s)),
                Row::I8(s) => x86::axpy(acc, a, s),
            }
        }
        return;
    }
    let _ = level;
    for (i, o) in acc.iter_mut().enumerate() {
        *o += a * v.get(i);
    }
}

/// Four dot products of one row `w` with four vectors (one pass over `w`;
/// the multi-token `lm_head`). Equal to four [`dot`] calls within the f32
/// summation bound.
pub fn dot4(w: Row, xs: [&[f32]; 4]) -> [f32; 4] {
    let lvl = level();
    #[cfg(target_arch = "x86_64")]
    if lvl == CpuLevel::Avx2 {
        for x in xs {
            assert_eq!(w.len(), x.len(), "dot4: length mismatch");
        }
        // SAFETY: features checked; lengths equal.
        return unsafe {
            match w {
                Row::F32(s) => x86::dot4(s, xs),
                Row::F16(s) => x86::dot4(x86::H16(s), xs),
                Row::Bf16(s) => x86::dot4(x86::B16(s), xs),
                Row::I8(s) => x86::dot4(s, xs),
            }
        };
    }
    xs.map(|x| dot_with(lvl, w, x))
}

/// Dot products of four consecutive rows with one vector: `w` holds the
/// rows side by side (`4 · x.len()` values). One pass over `x` for four
/// rows and four streams of weights in flight (the single-token `lm_head`).
/// Equal to four [`dot`] calls within the f32 summation bound.
///
/// # Panics
/// If `w.len() != 4 · x.len()`.
pub fn dot_rows4(w: Row, x: &[f32]) -> [f32; 4] {
    let n = x.len();
    assert_eq!(w.len(), 4 * n, "dot_rows4: length mismatch");
    let lvl = level();
    #[cfg(target_arch = "x86_64")]
    if lvl == CpuLevel::Avx2 {
        // SAFETY: features checked; lengths asserted.
        return unsafe {
            match w {
                Row::F32(s) => x86::dot_rows4(s, x),
                Row::F16(s) => x86::dot_rows4(x86::H16(s), x),
                Row::Bf16(s) => x86::dot_rows4(x86::B16(s), x),
                Row::I8(s) => x86::dot_rows4(s, x),
            }
        };
    }
    [0, 1, 2, 3].map(|k| dot_with(lvl, w.slice(k * n, (k + 1) * n), x))
}

/// Heads one pass of [`scores`] and [`weighted_sum`] serves (one KV row,
/// several query heads of a group).
pub const HEADS: usize = 4;

/// Attention scores of a block of positions for `g <= HEADS` query heads
/// that share the keys: `s[p·HEADS + j] = scale · Σ_d K[p][d] · q[j·hd + d]`
/// for `p < keys.len() / hd`, `j < g`; entries `j >= g` are set to 0.
/// One pass over the keys serves every head.
///
/// # Panics
/// If `keys.len()` is not a multiple of `hd`, `q` is shorter than `g·hd`,
/// `s` shorter than `HEADS · positions`, `g` is 0 or above [`HEADS`], or
/// `level` is not supported.
pub fn scores(
    level: CpuLevel,
    keys: Row,
    q: &[f32],
    g: usize,
    hd: usize,
    scale: f32,
    s: &mut [f32],
) {
    assert!(
        hd > 0 && keys.len().is_multiple_of(hd),
        "scores: keys not whole rows"
    );
    let n = keys.len() / hd;
    assert!((1..=HEADS).contains(&g) && q.len() >= g * hd && s.len() >= n * HEADS);
    #[cfg(target_arch = "x86_64")]
    if level == CpuLevel::Avx2 {
        assert!(CpuLevel::Avx2.is_supported());
        // SAFETY: features checked; bounds asserted above.
        unsafe {
            match keys {
                Row::F32(k) => x86::scores(k, q, g, hd, scale, s),
                Row::F16(k) => x86::scores(x86::H16(k), q, g, hd, scale, s),
                Row::Bf16(k) => x86::scores(x86::B16(k), q, g, hd, scale, s),
                Row::I8(k) => x86::scores(k, q, g, hd, scale, s),
            }
        }
        return;
    }
    let _ = level;
    for p in 0..n {
        for j in 0..HEADS {
            s[p * HEADS + j] = if j < g {
                (0..hd)
                    .map(|d| keys.get(p * hd + d) * q[j * hd + d])
                    .sum::<f32>()
                    * scale
            } else {
                0.0
            };
        }
    }
}

/// `out[j·hd + d] += Σ_p w[p·HEADS + j] · V[p][d]` for `j < g`, `d < hd`:
/// the weighted sum of a block of value rows for `g <= HEADS` heads, one
/// pass over the values.
///
/// # Panics
/// As [`scores`], with `out` shorter than `g·hd`.
pub fn weighted_sum(level: CpuLevel, values: Row, w: &[f32], g: usize, hd: usize, out: &mut [f32]) {
    assert!(
        hd > 0 && values.len().is_multiple_of(hd),
        "weighted_sum: values not whole rows"
    );
    let n = values.len() / hd;
    assert!((1..=HEADS).contains(&g) && out.len() >= g * hd && w.len() >= n * HEADS);
    #[cfg(target_arch = "x86_64")]
    if level == CpuLevel::Avx2 {
        assert!(CpuLevel::Avx2.is_supported());
        // SAFETY: features checked; bounds asserted above.
        unsafe {
            match values {
                Row::F32(v) => x86::weighted_sum(v, w, g, hd, out),
                Row::F16(v) => x86::weighted_sum(x86::H16(v), w, g, hd, out),
                Row::Bf16(v) => x86::weighted_sum(x86::B16(v), w, g, hd, out),
                Row::I8(v) => x86::weighted_sum(v, w, g, hd, out),
            }
        }
        return;
    }
    let _ = level;
    for p in 0..n {
        for j in 0..g {
            let a = w[p * HEADS + j];
            for d in 0..hd {
                out[j * hd + d] += a * values.get(p * hd + d);
            }
        }
    }
}

/// Below this, [`exp_nonpositive`] returns exactly 0 (`e^x` would be
/// subnormal: under 1.2·10⁻³⁸).
pub const EXP_FLUSH: f32 = -87.336_54;

/// `x[i] = e^{x[i]}` in place for `x[i] <= 0` (softmax weights after the
/// running maximum is subtracted); arguments below [`EXP_FLUSH`] give 0.
/// The AVX2 kernel is a degree-6 polynomial after reduction by ln 2, within
/// 2 ulp of the exact value (tested); the scalar level uses `f32::exp`.
pub fn exp_nonpositive(level: CpuLevel, x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if level == CpuLevel::Avx2 {
        assert!(CpuLevel::Avx2.is_supported());
        // SAFETY: features checked.
        unsafe { x86::exp_nonpositive(x) };
        return;
    }
    let _ = level;
    for v in x {
        *v = if *v < EXP_FLUSH { 0.0 } else { v.exp() };
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // tails index several slices at once
mod x86 {
    use std::arch::x86_64::*;

    /// A source of 8 f32 lanes at a time.
    pub trait Src: Copy {
        fn len(self) -> usize;
        fn scalar(self, i: usize) -> f32;
        /// # Safety
        /// AVX2/FMA/F16C present; `i + 8 <= len`.
        unsafe fn load8(self, i: usize) -> __m256;
        /// Address of element `i` (for software prefetch; never dereferenced).
        fn addr(self, i: usize) -> *const i8;
    }

    #[derive(Clone, Copy)]
    pub struct H16<'a>(pub &'a [u16]);
    #[derive(Clone, Copy)]
    pub struct B16<'a>(pub &'a [u16]);

    impl Src for &[f32] {
        #[inline(always)]
        fn addr(self, i: usize) -> *const i8 {
            self.as_ptr().wrapping_add(i) as *const i8
        }
        fn len(self) -> usize {
            <[f32]>::len(self)
        }
        fn scalar(self, i: usize) -> f32 {
            self[i]
        }
        #[inline(always)]
        unsafe fn load8(self, i: usize) -> __m256 {
            // SAFETY: caller guarantees bounds and features.
            unsafe { _mm256_loadu_ps(self.as_ptr().add(i)) }
        }
    }
    impl Src for H16<'_> {
        #[inline(always)]
        fn addr(self, i: usize) -> *const i8 {
            self.0.as_ptr().wrapping_add(i) as *const i8
        }
        fn len(self) -> usize {
            self.0.len()
        }
        fn scalar(self, i: usize) -> f32 {
            crate::precision::convert::f16_bits_to_f32(self.0[i])
        }
        #[inline(always)]
        unsafe fn load8(self, i: usize) -> __m256 {
            // SAFETY: caller guarantees bounds and features.
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(self.0.as_ptr().add(i) as *const __m128i)) }
        }
    }
    impl Src for B16<'_> {
        #[inline(always)]
        fn addr(self, i: usize) -> *const i8 {
            self.0.as_ptr().wrapping_add(i) as *const i8
        }
        fn len(self) -> usize {
            self.0.len()
        }
        fn scalar(self, i: usize) -> f32 {
            crate::precision::convert::bf16_bits_to_f32(self.0[i])
        }
        #[inline(always)]
        unsafe fn load8(self, i: usize) -> __m256 {
            // SAFETY: caller guarantees bounds and features.
            unsafe {
                let h = _mm_loadu_si128(self.0.as_ptr().add(i) as *const __m128i);
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            }
        }
    }
    impl Src for &[i8] {
        #[inline(always)]
        fn addr(self, i: usize) -> *const i8 {
            self.as_ptr().wrapping_add(i)
        }
        fn len(self) -> usize {
            <[i8]>::len(self)
        }
        fn scalar(self, i: usize) -> f32 {
            self[i] as f32
        }
        #[inline(always)]
        unsafe fn load8(self, i: usize) -> __m256 {
            // SAFETY: caller guarantees bounds and features.
            unsafe {
                let b = _mm_loadl_epi64(self.as_ptr().add(i) as *const __m128i);
                _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b))
            }
        }
    }

    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        // SAFETY: AVX present (callers are AVX2 functions).
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
            _mm_cvtss_f32(s)
        }
    }

    /// # Safety
    /// AVX2, FMA and F16C present; `w.len() == x.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot<S: Src>(w: S, x: &[f32]) -> f32 {
        let n = w.len();
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load is in bounds (i + 32 <= n, then i + 8 <= n).
        unsafe {
            while i + 32 <= n {
                for (k, a) in acc.iter_mut().enumerate() {
                    let xv = _mm256_loadu_ps(x.as_ptr().add(i + 8 * k));
                    *a = _mm256_fmadd_ps(w.load8(i + 8 * k), xv, *a);
                }
                i += 32;
            }
            while i + 8 <= n {
                let xv = _mm256_loadu_ps(x.as_ptr().add(i));
                acc[0] = _mm256_fmadd_ps(w.load8(i), xv, acc[0]);
                i += 8;
            }
            let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let mut t = hsum(s);
            for j in i..n {
                t += w.scalar(j) * x[j];
            }
            t
        }
    }

    /// # Safety
    /// As [`dot`], for every `xs[j]`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot4<S: Src>(w: S, xs: [&[f32]; 4]) -> [f32; 4] {
        let n = w.len();
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: i + 8 <= n for every load.
        unsafe {
            while i + 8 <= n {
                let wv = w.load8(i);
                for (a, x) in acc.iter_mut().zip(xs) {
                    *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.as_ptr().add(i)), *a);
                }
                i += 8;
            }
            let mut out = [0f32; 4];
            for ((o, a), x) in out.iter_mut().zip(acc).zip(xs) {
                *o = hsum(a);
                for j in i..n {
                    *o += w.scalar(j) * x[j];
                }
            }
            out
        }
    }

    /// Elements ahead of the current position that [`dot_rows4`] prefetches
    /// in each row stream.
    const PREFETCH_ELEMS: usize = 1024;

    /// # Safety
    /// AVX2/FMA/F16C present; `w.len() == 4 · x.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_rows4<S: Src>(w: S, x: &[f32]) -> [f32; 4] {
        let n = x.len();
        let mut a0 = [_mm256_setzero_ps(); 4];
        let mut a1 = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: row k occupies w[k·n..(k+1)·n]; every load is in bounds.
        unsafe {
            while i + 16 <= n {
                let x0 = _mm256_loadu_ps(x.as_ptr().add(i));
                let x1 = _mm256_loadu_ps(x.as_ptr().add(i + 8));
                // the hardware prefetcher alone leaves four short streams
                // well below the read floor on the machines measured. Near
                // the end of the rows the prefetch moves on to the same
                // position in the next four rows (the caller's next pass),
                // not into row k + 1, which its own stream is reading.
                let ahead = if i + PREFETCH_ELEMS < n {
                    i + PREFETCH_ELEMS
                } else {
                    i + PREFETCH_ELEMS + 3 * n
                };
                for k in 0..4 {
                    _mm_prefetch::<_MM_HINT_T0>(w.addr(k * n + ahead));
                }
                for k in 0..4 {
                    a0[k] = _mm256_fmadd_ps(w.load8(k * n + i), x0, a0[k]);
                    a1[k] = _mm256_fmadd_ps(w.load8(k * n + i + 8), x1, a1[k]);
                }
                i += 16;
            }
            if i + 8 <= n {
                let x0 = _mm256_loadu_ps(x.as_ptr().add(i));
                for k in 0..4 {
                    a0[k] = _mm256_fmadd_ps(w.load8(k * n + i), x0, a0[k]);
                }
                i += 8;
            }
            let mut out = [0f32; 4];
            for k in 0..4 {
                out[k] = hsum(_mm256_add_ps(a0[k], a1[k]));
                for j in i..n {
                    out[k] += w.scalar(k * n + j) * x[j];
                }
            }
            out
        }
    }

    /// # Safety
    /// AVX2, FMA and F16C present; `acc.len() == v.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn axpy<S: Src>(acc: &mut [f32], a: f32, v: S) {
        let n = v.len();
        let av = _mm256_set1_ps(a);
        let mut i = 0;
        // SAFETY: i + 8 <= n for every load and store.
        unsafe {
            while i + 8 <= n {
                let p = acc.as_mut_ptr().add(i);
                _mm256_storeu_ps(p, _mm256_fmadd_ps(av, v.load8(i), _mm256_loadu_ps(p)));
                i += 8;
            }
        }
        for j in i..n {
            acc[j] += a * v.scalar(j);
        }
    }

    /// # Safety
    /// AVX2/FMA/F16C present; bounds as asserted by `super::scores`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn scores<S: Src>(k: S, q: &[f32], g: usize, hd: usize, scale: f32, s: &mut [f32]) {
        // SAFETY: forwarded.
        unsafe {
            match g {
                1 => scores_g::<S, 1>(k, q, hd, scale, s),
                2 => scores_g::<S, 2>(k, q, hd, scale, s),
                3 => scores_g::<S, 3>(k, q, hd, scale, s),
                _ => scores_g::<S, 4>(k, q, hd, scale, s),
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scores_g<S: Src, const G: usize>(
        k: S,
        q: &[f32],
        hd: usize,
        scale: f32,
        s: &mut [f32],
    ) {
        let n = k.len() / hd;
        let qp = q.as_ptr();
        // SAFETY: row p occupies k[p·hd..(p+1)·hd]; q holds G·hd values; s
        // holds HEADS·n (asserted by the caller).
        unsafe {
            for p in 0..n {
                let base = p * hd;
                let mut a0 = [_mm256_setzero_ps(); G];
                let mut a1 = [_mm256_setzero_ps(); G];
                let mut d = 0;
                while d + 16 <= hd {
                    let k0 = k.load8(base + d);
                    let k1 = k.load8(base + d + 8);
                    for j in 0..G {
                        a0[j] = _mm256_fmadd_ps(k0, _mm256_loadu_ps(qp.add(j * hd + d)), a0[j]);
                        a1[j] = _mm256_fmadd_ps(k1, _mm256_loadu_ps(qp.add(j * hd + d + 8)), a1[j]);
                    }
                    d += 16;
                }
                if d + 8 <= hd {
                    let k0 = k.load8(base + d);
                    for j in 0..G {
                        a0[j] = _mm256_fmadd_ps(k0, _mm256_loadu_ps(qp.add(j * hd + d)), a0[j]);
                    }
                    d += 8;
                }
                let o = s.as_mut_ptr().add(p * super::HEADS);
                for j in 0..super::HEADS {
                    *o.add(j) = 0.0;
                }
                for j in 0..G {
                    let mut t = hsum(_mm256_add_ps(a0[j], a1[j]));
                    for dd in d..hd {
                        t += k.scalar(base + dd) * *qp.add(j * hd + dd);
                    }
                    *o.add(j) = t * scale;
                }
            }
        }
    }

    /// # Safety
    /// AVX2/FMA/F16C present; bounds as asserted by `super::weighted_sum`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn weighted_sum<S: Src>(v: S, w: &[f32], g: usize, hd: usize, out: &mut [f32]) {
        // SAFETY: forwarded.
        unsafe {
            match g {
                1 => wsum_g::<S, 1>(v, w, hd, out),
                2 => wsum_g::<S, 2>(v, w, hd, out),
                3 => wsum_g::<S, 3>(v, w, hd, out),
                _ => wsum_g::<S, 4>(v, w, hd, out),
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn wsum_g<S: Src, const G: usize>(v: S, w: &[f32], hd: usize, out: &mut [f32]) {
        let n = v.len() / hd;
        let (wp, op) = (w.as_ptr(), out.as_mut_ptr());
        const H: usize = super::HEADS;
        // Rows in order (two at a time), the G·hd sums in L1: the values
        // stream through once, front to back.
        // SAFETY: value row p occupies v[p·hd..(p+1)·hd]; w holds H·n
        // weights; out holds G·hd values (asserted by the caller).
        unsafe {
            let mut p = 0;
            while p + 2 <= n {
                let mut c0 = [_mm256_setzero_ps(); G];
                let mut c1 = [_mm256_setzero_ps(); G];
                for j in 0..G {
                    c0[j] = _mm256_broadcast_ss(&*wp.add(p * H + j));
                    c1[j] = _mm256_broadcast_ss(&*wp.add((p + 1) * H + j));
                }
                let mut d = 0;
                while d + 8 <= hd {
                    let v0 = v.load8(p * hd + d);
                    let v1 = v.load8((p + 1) * hd + d);
                    for j in 0..G {
                        let o = op.add(j * hd + d);
                        let a = _mm256_fmadd_ps(c0[j], v0, _mm256_loadu_ps(o));
                        _mm256_storeu_ps(o, _mm256_fmadd_ps(c1[j], v1, a));
                    }
                    d += 8;
                }
                for dd in d..hd {
                    for j in 0..G {
                        *op.add(j * hd + dd) += *wp.add(p * H + j) * v.scalar(p * hd + dd)
                            + *wp.add((p + 1) * H + j) * v.scalar((p + 1) * hd + dd);
                    }
                }
                p += 2;
            }
            if p < n {
                let mut d = 0;
                while d + 8 <= hd {
                    let v0 = v.load8(p * hd + d);
                    for j in 0..G {
                        let o = op.add(j * hd + d);
                        let c = _mm256_broadcast_ss(&*wp.add(p * H + j));
                        _mm256_storeu_ps(o, _mm256_fmadd_ps(c, v0, _mm256_loadu_ps(o)));
                    }
                    d += 8;
                }
                for dd in d..hd {
                    for j in 0..G {
                        *op.add(j * hd + dd) += *wp.add(p * H + j) * v.scalar(p * hd + dd);
                    }
                }
            }
        }
    }

    /// `e^x` of 8 lanes, `x <= 0`: reduction by ln 2 (split in two parts),
    /// a degree-6 polynomial, the power of two built in the exponent field;
    /// lanes below `EXP_FLUSH` give 0.
    #[inline(always)]
    unsafe fn exp8(x: __m256) -> __m256 {
        // SAFETY: AVX2/FMA present (callers are AVX2 functions).
        unsafe {
            let lo = _mm256_set1_ps(super::EXP_FLUSH);
            let flush = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
            let x = _mm256_max_ps(x, lo);
            let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            );
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), x);
            let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
            let mut y = _mm256_set1_ps(1.987_569_1e-4);
            for c in [
                1.398_199_9e-3,
                8.333_452e-3,
                4.166_579_6e-2,
                0.166_666_65,
                0.5,
            ] {
                y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c));
            }
            let y = _mm256_fmadd_ps(
                y,
                _mm256_mul_ps(r, r),
                _mm256_add_ps(r, _mm256_set1_ps(1.0)),
            );
            let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
                _mm256_cvtps_epi32(n),
                _mm256_set1_epi32(127),
            ));
            _mm256_andnot_ps(flush, _mm256_mul_ps(y, _mm256_castsi256_ps(e)))
        }
    }

    /// # Safety
    /// AVX2 and FMA present.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn exp_nonpositive(x: &mut [f32]) {
        let mut c = x.chunks_exact_mut(8);
        // SAFETY: each chunk holds 8 values; the tail goes through a padded copy.
        unsafe {
            for ch in &mut c {
                _mm256_storeu_ps(ch.as_mut_ptr(), exp8(_mm256_loadu_ps(ch.as_ptr())));
            }
            let t = c.into_remainder();
            if !t.is_empty() {
                let mut b = [0f32; 8];
                b[..t.len()].copy_from_slice(t);
                _mm256_storeu_ps(b.as_mut_ptr(), exp8(_mm256_loadu_ps(b.as_ptr())));
                let k = t.len();
                t.copy_from_slice(&b[..k]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precision::convert::{f32_to_bf16_bits, f32_to_f16_bits};

    const LENS: [usize; 14] = [0, 1, 3, 4, 5, 7, 8, 9, 31, 32, 33, 64, 255, 257];

    fn vals(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| crate::rng::uniform_f32(seed, i as u64) * 4.0 - 2.0)
            .collect()
    }

    #[test]
    fn every_level_matches_the_reference_on_boundary_lengths() {
        let levels: Vec<CpuLevel> = [CpuLevel::Scalar, CpuLevel::Avx2]
            .into_iter()
            .filter(|l| l.is_supported())
            .collect();
        eprintln!(
            "infer kernels: levels run {:?}; {}",
            levels,
            crate::cpu::describe()
        );
        for n in LENS {
            let w = vals(n, 1);
            let x = vals(n, 2);
            let h: Vec<u16> = w.iter().map(|&v| f32_to_f16_bits(v)).collect();
            let b: Vec<u16> = w.iter().map(|&v| f32_to_bf16_bits(v)).collect();
            let q: Vec<i8> = w.iter().map(|&v| (v * 60.0) as i8).collect();
            for row in [Row::F32(&w), Row::F16(&h), Row::Bf16(&b), Row::I8(&q)] {
                let exact: f64 = (0..n).map(|i| row.get(i) as f64 * x[i] as f64).sum();
                let mag: f64 = (0..n)
                    .map(|i| (row.get(i) as f64 * x[i] as f64).abs())
                    .sum();
                let bound = (n as f64 + 1.0) * f32::EPSILON as f64 * mag + 1e-30;
                for &l in &levels {
                    let d = dot_with(l, row, &x) as f64;
                    assert!((d - exact).abs() <= bound, "dot {l:?} n={n} {row:?}");
                    let mut acc = x.clone();
                    axpy_with(l, &mut acc, 0.75, row);
                    for i in 0..n {
                        let e = x[i] as f64 + 0.75 * row.get(i) as f64;
                        assert!(
                            (acc[i] as f64 - e).abs()
                                <= 2.0 * f32::EPSILON as f64 * e.abs().max(1.0)
                        );
                    }
                }
                let rows4: Vec<f32> = (0..4).flat_map(|_| (0..n).map(|i| row.get(i))).collect();
                let quad = dot_rows4(Row::F32(&rows4), &x);
                let wide = match row {
                    Row::F32(_) => quad,
                    Row::F16(s) => dot_rows4(Row::F16(&s.repeat(4)), &x),
                    Row::Bf16(s) => dot_rows4(Row::Bf16(&s.repeat(4)), &x),
                    Row::I8(s) => dot_rows4(Row::I8(&s.repeat(4)), &x),
                };
                for v in quad.into_iter().chain(wide) {
                    assert!((v as f64 - exact).abs() <= bound, "dot_rows4 n={n} {row:?}");
                }
                let x2 = vals(n, 3);
                let x3 = vals(n, 4);
                let x4 = vals(n, 5);
                let four = dot4(row, [&x, &x2, &x3, &x4]);
                for (j, xx) in [&x, &x2, &x3, &x4].into_iter().enumerate() {
                    let e: f64 = (0..n).map(|i| row.get(i) as f64 * xx[i] as f64).sum();
                    let m: f64 = (0..n)
                        .map(|i| (row.get(i) as f64 * xx[i] as f64).abs())
                        .sum();
                    assert!(
                        (four[j] as f64 - e).abs()
                            <= (n as f64 + 1.0) * f32::EPSILON as f64 * m + 1e-30,
                        "dot4 n={n}"
                    );
                }
            }
        }
    }
}
