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
    }

    #[derive(Clone, Copy)]
    pub struct H16<'a>(pub &'a [u16]);
    #[derive(Clone, Copy)]
    pub struct B16<'a>(pub &'a [u16]);

    impl Src for &[f32] {
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
