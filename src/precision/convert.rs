//! f32 <-> bf16 and f32 <-> f16 slice conversion, round-to-nearest-even.
//!
//! Half-precision values travel as their raw `u16` bit patterns (the C ABI
//! and NumPy/ml_dtypes see the same bits).
//!
//! # Rounding and special values
//! * Narrowing (f32 -> bf16/f16) rounds to nearest, ties to even. Values too
//!   large for the format become ±inf; f16 underflow produces correctly
//!   rounded subnormals and signed zeros. These results equal ml_dtypes /
//!   NumPy bit for bit.
//! * NaN narrowing keeps the sign and the top payload bits and sets the quiet
//!   bit (bf16: `(x >> 16) | 0x0040`; f16: `sign | 0x7e00 | (mantissa >> 13)`),
//!   which is what x86 hardware (`vcvtps2ph`, `vcvtneps2bf16`) does. ml_dtypes
//!   returns a canonical quiet NaN for bf16 and NumPy keeps signalling NaNs
//!   signalling for f16, so NaN *payloads* may differ from theirs; NaN-ness
//!   and sign never do.
//! * Widening bf16 -> f32 is exact (a 16-bit shift; NaN payloads kept as is).
//!   Widening f16 -> f32 is exact for every non-NaN; a NaN keeps sign and
//!   payload and gets the quiet bit set (as `vcvtph2ps` does), so signalling
//!   f16 NaNs (0x7c01..=0x7dff) become quiet f32 NaNs where NumPy keeps them
//!   signalling.
//!
//! # Kernels
//! Each direction has a scalar reference ([`Level::Scalar`]) and, on x86-64,
//! a SIMD kernel picked at run time: AVX2 integer rounding for bf16 (memory
//! bound; equal to the scalar reference bit for bit including NaNs) and F16C
//! (`vcvtps2ph` / `vcvtph2ps`) for f16. Long slices are split into fixed
//! blocks on the crate's thread pool; results do not depend on the thread count.
//! The SIMD kernels belong to the `avx2` level of [`crate::cpu`]: a cap of
//! `TRITTER_CPU_LEVEL=scalar` selects the scalar reference.

use rayon::prelude::*;

use crate::cpu::{self, CpuLevel};
use crate::{Error, Result};

/// A conversion kernel. [`Level::best`] is the one the active CPU level allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Portable scalar reference.
    Scalar,
    /// x86-64 AVX2 (bf16) and F16C + AVX (f16).
    Avx2,
}

impl Level {
    /// The kernel the crate's active CPU level allows ([`crate::cpu::active`],
    /// capped by `TRITTER_CPU_LEVEL`): [`Level::Avx2`] from the `avx2` level
    /// up (x86-64-v3 includes F16C), else [`Level::Scalar`].
    pub fn best() -> Level {
        if cpu::runs(CpuLevel::Avx2, cpu::active()) {
            Level::Avx2
        } else {
            Level::Scalar
        }
    }

    /// Every kernel this CPU can run (for tests and benches), whatever the
    /// active level.
    pub fn available() -> Vec<Level> {
        let mut v = vec![Level::Scalar];
        if CpuLevel::Avx2.is_supported() {
            v.push(Level::Avx2);
        }
        v
    }
}

// ---------------------------------------------------------------------------
// Scalar reference
// ---------------------------------------------------------------------------

/// f32 -> bf16 bits, round to nearest even (NaN: quiet, sign and payload top kept).
#[inline(always)]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if b & 0x7fff_ffff > 0x7f80_0000 {
        return ((b >> 16) | 0x0040) as u16;
    }
    // Adding 0x7fff plus the lowest kept bit rounds ties to even; a carry
    // into the exponent is the correct rounding (up to inf at the top).
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// bf16 bits -> f32 (exact).
#[inline(always)]
pub fn bf16_bits_to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// f32 -> f16 bits, round to nearest even, with subnormals and overflow to inf.
#[inline]
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = b & 0x7fff_ffff;
    if a >= 0x7f80_0000 {
        if a == 0x7f80_0000 {
            return sign | 0x7c00;
        }
        return sign | 0x7e00 | ((a >> 13) & 0x3ff) as u16;
    }
    // 65520 = halfway between 65504 (max f16, odd mantissa) and 65536: ties to inf.
    if a >= 0x477f_f000 {
        return sign | 0x7c00;
    }
    let e = a >> 23;
    if e < 113 {
        // Result is subnormal (or zero) in units of 2^-24: m * 2^(e - 150 + 24).
        if e < 102 {
            return sign; // below 2^-25: rounds to zero (2^-25 itself ties to 0 too)
        }
        let m = (a & 0x7f_ffff) | 0x80_0000;
        let s = 126 - e; // 14..=24
        let q = m >> s;
        let rem = m & ((1 << s) - 1);
        let half = 1 << (s - 1);
        let up = (rem > half || (rem == half && q & 1 == 1)) as u32;
        return sign | (q + up) as u16;
    }
    // Normal: rebias the exponent (127 -> 15) and drop 13 mantissa bits.
    let h = (a - (112 << 23)) >> 13;
    let rem = a & 0x1fff;
    let up = (rem > 0x1000 || (rem == 0x1000 && h & 1 == 1)) as u32;
    sign | (h + up) as u16
}

/// f16 bits -> f32 (exact; NaNs get the quiet bit, see the module docs).
#[inline]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let e = ((h >> 10) & 0x1f) as u32;
    let m = (h & 0x3ff) as u32;
    let bits = if e == 0 {
        if m == 0 {
            sign
        } else {
            // Subnormal m * 2^-24: normalize so the leading 1 sits at bit 10.
            let shift = m.leading_zeros() - 21; // 1..=10
            let mm = (m << shift) & 0x3ff;
            let ee = 113 - shift; // biased f32 exponent of 2^(-14 - shift)
            sign | (ee << 23) | (mm << 13)
        }
    } else if e == 31 {
        if m == 0 {
            sign | 0x7f80_0000
        } else {
            sign | 0x7fc0_0000 | (m << 13)
        }
    } else {
        sign | ((e + 112) << 23) | (m << 13)
    };
    f32::from_bits(bits)
}

// ---------------------------------------------------------------------------
// SIMD kernels (x86-64)
// ---------------------------------------------------------------------------

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2; `src.len() == dst.len()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn f32_to_bf16(src: &[f32], dst: &mut [u16]) {
        let n = src.len().min(dst.len());
        // SAFETY: AVX2 (this function's contract); equal lengths.
        let (i, _) = unsafe { f32_to_bf16_head::<true>(src, dst) };
        for j in i..n {
            dst[j] = super::f32_to_bf16_bits(src[j]);
        }
    }

    /// Rounds the first `len / 16 * 16` elements to bf16 bits (nearest
    /// even) and returns `(that count, whether any was NaN)`. `FIX_NAN`:
    /// NaNs become quiet NaNs as [`super::f32_to_bf16_bits`] makes them;
    /// without it their output is unspecified (callers that reject NaN
    /// anyway save the blend and redo the slice when the flag is set).
    ///
    /// # Safety
    /// The CPU must support AVX2; `src.len() == dst.len()`.
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn f32_to_bf16_head<const FIX_NAN: bool>(
        src: &[f32],
        dst: &mut [u16],
    ) -> (usize, bool) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        let abs = _mm256_set1_epi32(0x7fff_ffff);
        let inf = _mm256_set1_epi32(0x7f80_0000);
        let quiet = _mm256_set1_epi32(0x0040);
        let mut seen = _mm256_setzero_si256();
        while i + 16 <= n {
            // SAFETY: i + 16 <= n, unaligned loads/stores.
            unsafe {
                let mut outs = [_mm256_setzero_si256(); 2];
                for (k, o) in outs.iter_mut().enumerate() {
                    let b = _mm256_loadu_si256(src.as_ptr().add(i + 8 * k) as *const __m256i);
                    let rounded = bf16_round8(b);
                    let nan = _mm256_cmpgt_epi32(_mm256_and_si256(b, abs), inf);
                    *o = if FIX_NAN {
                        let qn = _mm256_or_si256(_mm256_srli_epi32::<16>(b), quiet);
                        _mm256_blendv_epi8(rounded, qn, nan)
                    } else {
                        seen = _mm256_or_si256(seen, nan);
                        rounded
                    };
                }
                let ordered = bf16_pack16(outs[0], outs[1]);
                _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, ordered);
            }
            i += 16;
        }
        (i, _mm256_testz_si256(seen, seen) == 0)
    }

    /// Eight f32 (as bits) rounded to bf16, nearest even, each in the low
    /// half of its 32-bit lane (the arithmetic of
    /// [`super::f32_to_bf16_bits`] for every non-NaN value; a NaN's output
    /// is unspecified).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) fn bf16_round8(b: __m256i) -> __m256i {
        let odd = _mm256_and_si256(_mm256_srli_epi32::<16>(b), _mm256_set1_epi32(1));
        let bias = _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd);
        _mm256_srli_epi32::<16>(_mm256_add_epi32(b, bias))
    }

    /// Two vectors of [`bf16_round8`] output (elements 0-7 and 8-15) as
    /// sixteen bf16 values in element order.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) fn bf16_pack16(lo: __m256i, hi: __m256i) -> __m256i {
        // packus works per 128-bit lane: fix the order with a permute.
        _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(lo, hi))
    }

    /// # Safety
    /// The CPU must support AVX2; `src.len() == dst.len()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn bf16_to_f32(src: &[u16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
                let w = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
                _mm256_storeu_si256(dst.as_mut_ptr().add(i) as *mut __m256i, w);
            }
            i += 8;
        }
        for j in i..n {
            dst[j] = super::bf16_bits_to_f32(src[j]);
        }
    }

    /// # Safety
    /// The CPU must support F16C and AVX; `src.len() == dst.len()`.
    #[target_feature(enable = "avx,f16c")]
    pub unsafe fn f32_to_f16(src: &[f32], dst: &mut [u16]) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                let x = _mm256_loadu_ps(src.as_ptr().add(i));
                let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(x);
                _mm_storeu_si128(dst.as_mut_ptr().add(i) as *mut __m128i, h);
            }
            i += 8;
        }
        for j in i..n {
            dst[j] = super::f32_to_f16_bits(src[j]);
        }
    }

    /// # Safety
    /// The CPU must support F16C and AVX; `src.len() == dst.len()`.
    #[target_feature(enable = "avx,f16c")]
    pub unsafe fn f16_to_f32(src: &[u16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n.
            unsafe {
                let h = _mm_loadu_si128(src.as_ptr().add(i) as *const __m128i);
                _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
            }
            i += 8;
        }
        for j in i..n {
            dst[j] = super::f16_bits_to_f32(src[j]);
        }
    }
}

// ---------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------

/// Elements per parallel block; slices shorter than two blocks run on the
/// calling thread.
const BLOCK: usize = 1 << 16;

fn check_len(src: usize, dst: usize) -> Result<()> {
    if dst != src {
        return Err(Error::shape(
            "dst",
            format!("dst has {dst} elements, src has {src}"),
        ));
    }
    Ok(())
}

fn check_level(level: Level) -> Result<()> {
    if level == Level::Avx2 && !CpuLevel::Avx2.is_supported() {
        return Err(Error::invalid(
            "level",
            "AVX2/F16C is not available on this CPU",
        ));
    }
    Ok(())
}

fn run<S: Sync, D: Send>(src: &[S], dst: &mut [D], kernel: impl Fn(&[S], &mut [D]) + Sync) {
    if src.len() < 2 * BLOCK {
        kernel(src, dst);
    } else {
        crate::parallel::install(|| {
            src.par_chunks(BLOCK)
                .zip(dst.par_chunks_mut(BLOCK))
                .for_each(|(s, d)| kernel(s, d));
        });
    }
}

macro_rules! converter {
    ($name:ident, $with:ident, $s:ty, $d:ty, $scalar:path, $simd:ident, $doc:literal) => {
        #[doc = $doc]
        ///
        /// Errors: `dst` of a different length than `src` (ShapeMismatch).
        pub fn $name(src: &[$s], dst: &mut [$d]) -> Result<()> {
            $with(Level::best(), src, dst)
        }

        #[doc = $doc]
        ///
        /// With an explicit kernel (for tests and benches). Errors: as the
        /// plain version, and a `level` the CPU lacks (InvalidArgument).
        pub fn $with(level: Level, src: &[$s], dst: &mut [$d]) -> Result<()> {
            check_len(src.len(), dst.len())?;
            check_level(level)?;
            match level {
                Level::Scalar => run(src, dst, |s, d| {
                    for (o, &x) in d.iter_mut().zip(s) {
                        *o = $scalar(x);
                    }
                }),
                Level::Avx2 => {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: check_level verified the CPU features; lengths are equal.
                    run(src, dst, |s, d| unsafe { x86::$simd(s, d) });
                    #[cfg(not(target_arch = "x86_64"))]
                    unreachable!("check_level rejects Avx2 off x86-64");
                }
            }
            Ok(())
        }
    };
}

converter!(
    f32_to_bf16,
    f32_to_bf16_with,
    f32,
    u16,
    f32_to_bf16_bits,
    f32_to_bf16,
    "Converts f32 to bf16 bit patterns, round to nearest even."
);
converter!(
    bf16_to_f32,
    bf16_to_f32_with,
    u16,
    f32,
    bf16_bits_to_f32,
    bf16_to_f32,
    "Converts bf16 bit patterns to f32 (exact)."
);
converter!(
    f32_to_f16,
    f32_to_f16_with,
    f32,
    u16,
    f32_to_f16_bits,
    f32_to_f16,
    "Converts f32 to IEEE binary16 bit patterns, round to nearest even."
);
converter!(
    f16_to_f32,
    f16_to_f32_with,
    u16,
    f32,
    f16_bits_to_f32,
    f16_to_f32,
    "Converts IEEE binary16 bit patterns to f32 (exact; NaNs quieted)."
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::hash2;

    /// Exact rational value of a finite f32 as f64 (always exact).
    fn exact(x: f32) -> f64 {
        x as f64
    }

    /// Reference narrowing by brute force: the nearest of the two neighbours
    /// in the target format (found by widening candidates), ties to even.
    fn nearest(x: f32, widen: fn(u16) -> f32, max_finite: u16, inf: u16) -> u16 {
        let sign = if x.is_sign_negative() { 0x8000 } else { 0 };
        let a = exact(x).abs();
        // Binary search over the monotone positive bit patterns 0..=max_finite.
        let (mut lo, mut hi) = (0u16, max_finite);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            if (widen(mid) as f64) <= a {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let below = lo;
        let vb = widen(below) as f64;
        if vb == a {
            return sign | below;
        }
        let above_val = if below == max_finite {
            // The overflow threshold: one more ulp past max (round-to-inf point).
            2.0 * widen(max_finite) as f64 - widen(max_finite - 1) as f64
        } else {
            widen(below + 1) as f64
        };
        let above = if below == max_finite { inf } else { below + 1 };
        let (db, da) = (a - vb, above_val - a);
        let pick = if db < da {
            below
        } else if da < db {
            above
        } else if below & 1 == 0 {
            below
        } else {
            above
        };
        sign | pick
    }

    fn samples() -> Vec<f32> {
        let mut v: Vec<f32> = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            f32::EPSILON,
            65504.0,
            65519.99,
            65520.0,
            65536.0,
            5.960_464_5e-8,
            2.980_232_2e-8,
            2.980_232_3e-8,
            6.103_515_6e-5,
            1e-10,
            f32::from_bits(1),
            f32::from_bits(0x7f7f_8000),
            f32::from_bits(0x7f7f_7fff),
            f32::from_bits(0x3f80_8000),
            f32::from_bits(0x3f81_8000),
        ];
        for i in 0..200_000u64 {
            v.push(f32::from_bits(hash2(5, i) as u32));
        }
        v.retain(|x| !x.is_nan() && !x.is_infinite());
        v
    }

    #[test]
    fn scalar_bf16_matches_brute_force() {
        for x in samples() {
            let want = nearest(x, bf16_bits_to_f32, 0x7f7f, 0x7f80);
            assert_eq!(f32_to_bf16_bits(x), want, "x = {x:e} ({:#x})", x.to_bits());
        }
    }

    #[test]
    fn scalar_f16_matches_brute_force() {
        for x in samples() {
            let want = nearest(x, f16_bits_to_f32, 0x7bff, 0x7c00);
            assert_eq!(f32_to_f16_bits(x), want, "x = {x:e} ({:#x})", x.to_bits());
        }
    }

    #[test]
    fn widening_is_exact_and_roundtrips() {
        for h in 0..=u16::MAX {
            let f = f16_bits_to_f32(h);
            let b = bf16_bits_to_f32(h);
            if f.is_nan() {
                assert_eq!(h & 0x7c00, 0x7c00);
                assert_eq!(f32_to_f16_bits(f), h | 0x0200, "f16 NaN {h:#x}");
            } else {
                assert_eq!(f32_to_f16_bits(f), h, "f16 {h:#x}");
                // Independent value check: sign * 2^e * (1 + m/1024) or subnormal.
                let e = ((h >> 10) & 0x1f) as i32;
                let m = (h & 0x3ff) as f64;
                let mag = if e == 0 {
                    m * 2f64.powi(-24)
                } else if e == 31 {
                    f64::INFINITY
                } else {
                    (1.0 + m / 1024.0) * 2f64.powi(e - 15)
                };
                let want = if h & 0x8000 != 0 { -mag } else { mag };
                assert_eq!(f as f64, want, "f16 {h:#x}");
                assert_eq!(f.is_sign_negative(), h & 0x8000 != 0);
            }
            if b.is_nan() {
                assert_eq!(b.to_bits(), (h as u32) << 16);
                assert_eq!(f32_to_bf16_bits(b), h | 0x0040);
            } else {
                assert_eq!(f32_to_bf16_bits(b), h, "bf16 {h:#x}");
            }
        }
    }

    #[test]
    fn specials() {
        assert_eq!(f32_to_bf16_bits(f32::INFINITY), 0x7f80);
        assert_eq!(f32_to_bf16_bits(f32::NEG_INFINITY), 0xff80);
        assert_eq!(f32_to_bf16_bits(f32::MAX), 0x7f80); // rounds up to inf
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0xff81_2345)), 0xffc1);
        assert_eq!(f32_to_f16_bits(f32::INFINITY), 0x7c00);
        assert_eq!(f32_to_f16_bits(65520.0), 0x7c00);
        assert_eq!(f32_to_f16_bits(65519.996), 0x7bff);
        assert_eq!(f32_to_f16_bits(-0.0), 0x8000);
        assert_eq!(f32_to_f16_bits(2f32.powi(-25)), 0x0000); // tie to even (0)
        assert_eq!(f32_to_f16_bits(3.0 * 2f32.powi(-25)), 0x0002); // tie to even (2)
        assert_eq!(f32_to_f16_bits(f32::from_bits(0x7f80_0001)), 0x7e00);
        assert_eq!(f32_to_f16_bits(f32::from_bits(0xffc0_2000)), 0xfe01);
        assert_eq!(f16_bits_to_f32(0x7c01).to_bits(), 0x7fc0_2000);
    }

    fn patterns(n: usize, seed: u64) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n as u64)
            .map(|i| f32::from_bits(hash2(seed, i) as u32))
            .collect();
        // Sprinkle specials and values near the rounding boundaries.
        for (i, x) in v.iter_mut().enumerate().step_by(7) {
            *x = [
                f32::NAN,
                -f32::NAN,
                f32::INFINITY,
                -0.0,
                65520.0,
                f32::from_bits(0x3f80_8000),
                f32::from_bits(0x7f80_0001),
                1e-7,
            ][i % 8];
        }
        v
    }

    #[test]
    fn simd_equals_scalar_on_boundary_sizes() {
        let sizes = [
            0usize, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 255, 256, 257,
        ];
        // the `avx2` crate level names these kernels; print what ran
        let ran = cpu::levels_for_test("precision f32 <-> bf16/f16");
        assert_eq!(
            Level::available().len(),
            1 + ran.contains(&CpuLevel::Avx2) as usize
        );
        for &n in sizes.iter().chain([3 * BLOCK + 5].iter()) {
            let src = patterns(n, n as u64);
            let halfs: Vec<u16> = (0..n as u64).map(|i| hash2(9, i) as u16).collect();
            for level in Level::available() {
                let (mut a, mut b) = (vec![0u16; n], vec![0u16; n]);
                f32_to_bf16_with(Level::Scalar, &src, &mut a).unwrap();
                f32_to_bf16_with(level, &src, &mut b).unwrap();
                assert_eq!(a, b, "bf16 narrow n={n} {level:?}");
                f32_to_f16_with(Level::Scalar, &src, &mut a).unwrap();
                f32_to_f16_with(level, &src, &mut b).unwrap();
                assert_eq!(a, b, "f16 narrow n={n} {level:?}");
                let (mut fa, mut fb) = (vec![0f32; n], vec![0f32; n]);
                bf16_to_f32_with(Level::Scalar, &halfs, &mut fa).unwrap();
                bf16_to_f32_with(level, &halfs, &mut fb).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fa), bits(&fb), "bf16 widen n={n} {level:?}");
                f16_to_f32_with(Level::Scalar, &halfs, &mut fa).unwrap();
                f16_to_f32_with(level, &halfs, &mut fb).unwrap();
                assert_eq!(bits(&fa), bits(&fb), "f16 widen n={n} {level:?}");
            }
        }
    }

    #[test]
    fn length_mismatch_is_an_error() {
        let mut d = [0u16; 3];
        let e = f32_to_bf16(&[1.0, 2.0], &mut d).unwrap_err();
        assert!(matches!(e, Error::ShapeMismatch { arg: "dst", .. }));
    }
}
