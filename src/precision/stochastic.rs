//! Seeded stochastic rounding f32 -> bf16.
//!
//! Element `i` adds 16 uniform random bits to the low half of the f32 pattern
//! and truncates: it rounds away from zero with probability equal to the
//! fraction of the bf16 ulp it lies past the value below, so the result is
//! unbiased (`E[round(x)] = x`) for every finite `x` whose neighbours are
//! finite. Values past the largest bf16 round to ±inf with that same
//! probability; NaN and ±inf convert as in round-to-nearest.
//!
//! The random bits of element `i` are bits `16 (j mod 4) ..` of
//! `rng::hash2(seed, j / 4)` with `j = offset + i`, so the result is a pure
//! function of `(seed, offset + i, x)`: identical for any chunking and thread
//! count, and a long tensor can be rounded in pieces by passing each piece's
//! offset.
//!
//! Kernels: a scalar reference and, at the `avx2` level of [`crate::cpu`],
//! an explicit AVX2 kernel (four hash words per register, i.e. 16 elements
//! a step; the same bits as the reference at every level).

use rayon::prelude::*;

use super::convert::f32_to_bf16_bits;
use crate::cpu::{self, CpuLevel};
use crate::rng::hash2;
use crate::{Error, Result};

/// Stochastic rounding of one value with the 16 random bits `r`.
#[inline(always)]
pub fn stochastic_bf16_bits(x: f32, r: u16) -> u16 {
    let b = x.to_bits();
    if b & 0x7fff_ffff >= 0x7f80_0000 {
        return f32_to_bf16_bits(x);
    }
    (b.wrapping_add(r as u32) >> 16) as u16
}

const BLOCK: usize = 1 << 16; // a multiple of 4: blocks share no random word

/// Rounds `src` to bf16 bit patterns in `dst` stochastically (see the module
/// docs); `offset` is the global index of `src[0]`.
///
/// Errors: `dst` of a different length than `src` (ShapeMismatch); `offset +
/// len` overflowing u64 (SizeOverflow).
pub fn f32_to_bf16_stochastic(src: &[f32], dst: &mut [u16], seed: u64, offset: u64) -> Result<()> {
    f32_to_bf16_stochastic_level(src, dst, seed, offset, cpu::active())
}

/// [`f32_to_bf16_stochastic`] with the kernels `level` allows (the same bits
/// at every level; a level this CPU lacks runs the best one it has below).
pub fn f32_to_bf16_stochastic_level(
    src: &[f32],
    dst: &mut [u16],
    seed: u64,
    offset: u64,
    level: CpuLevel,
) -> Result<()> {
    if dst.len() != src.len() {
        return Err(Error::shape(
            "dst",
            format!("dst has {} elements, src has {}", dst.len(), src.len()),
        ));
    }
    offset
        .checked_add(src.len() as u64)
        .ok_or_else(|| Error::overflow("offset", "offset + len overflows u64"))?;
    let simd = cfg!(target_arch = "x86_64") && cpu::runs(CpuLevel::Avx2, level);
    let kernel = |base: u64, s: &[f32], d: &mut [u16]| {
        if simd {
            kernel_avx2(seed, base, s, d)
        } else {
            kernel_scalar(seed, base, s, d)
        }
    };
    if src.len() < 2 * BLOCK {
        kernel(offset, src, dst);
    } else {
        crate::parallel::install(|| {
            src.par_chunks(BLOCK)
                .zip(dst.par_chunks_mut(BLOCK))
                .enumerate()
                .for_each(|(c, (s, d))| kernel(offset + (c * BLOCK) as u64, s, d));
        });
    }
    Ok(())
}

/// The reference: element `k` of `s` has global index `base + k`.
fn kernel_scalar(seed: u64, base: u64, s: &[f32], d: &mut [u16]) {
    // One hash word feeds four consecutive elements.
    let mut word_idx = u64::MAX;
    let mut word = 0u64;
    for (k, (o, &x)) in d.iter_mut().zip(s).enumerate() {
        let j = base + k as u64;
        if j / 4 != word_idx {
            word_idx = j / 4;
            word = hash2(seed, word_idx);
        }
        *o = stochastic_bf16_bits(x, (word >> (16 * (j % 4))) as u16);
    }
}

/// The scalar reference up to the first index that starts a hash word, the
/// AVX2 kernel over whole 16-element steps, the reference for the rest.
fn kernel_avx2(seed: u64, base: u64, s: &[f32], d: &mut [u16]) {
    let head = (((4 - base % 4) % 4) as usize).min(s.len());
    kernel_scalar(seed, base, &s[..head], &mut d[..head]);
    #[allow(unused_mut)]
    let mut done = head;
    #[cfg(target_arch = "x86_64")]
    {
        let n = (s.len() - head) / 16 * 16;
        // SAFETY: reached only where `cpu::runs(Avx2, ..)` holds (see the
        // caller); both slices hold `n` elements from `head`.
        unsafe {
            avx2::steps(
                crate::rng::stream_base(seed),
                (base + head as u64) / 4,
                &s[head..head + n],
                &mut d[head..head + n],
            )
        };
        done += n;
    }
    kernel_scalar(seed, base + done as u64, &s[done..], &mut d[done..]);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `z · c` (low 64 bits) per 64-bit lane; `cs` is `c` with the dwords
    /// of each lane swapped (AVX2 has no 64-bit multiply: `z_lo c_lo` is one
    /// `vpmuludq`, the two cross terms one `vpmulld` and a dword swap).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn mul64(z: __m256i, c: u64) -> __m256i {
        let lo = _mm256_mul_epu32(z, _mm256_set1_epi64x(c as i64));
        let t = _mm256_mullo_epi32(z, _mm256_set1_epi64x(c.rotate_left(32) as i64));
        let cross = _mm256_add_epi32(t, _mm256_shuffle_epi32::<0xB1>(t));
        _mm256_add_epi64(lo, _mm256_slli_epi64::<32>(cross))
    }

    /// [`crate::rng::mix64`] per 64-bit lane.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn mix64(mut z: __m256i) -> __m256i {
        z = _mm256_xor_si256(z, _mm256_srli_epi64::<30>(z));
        z = mul64(z, 0xBF58_476D_1CE4_E5B9);
        z = _mm256_xor_si256(z, _mm256_srli_epi64::<27>(z));
        z = mul64(z, 0x94D0_49BB_1331_11EB);
        _mm256_xor_si256(z, _mm256_srli_epi64::<31>(z))
    }

    /// 8 elements: `(b + r) >> 16`, or round-to-nearest's bits for ±inf and
    /// NaN (`b >> 16`, NaN with the quiet bit `0x40`).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn round8(b: __m256i, r: __m256i) -> __m256i {
        let abs = _mm256_and_si256(b, _mm256_set1_epi32(0x7fff_ffff));
        let special = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f7f_ffff));
        let nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f80_0000));
        let sto = _mm256_srli_epi32::<16>(_mm256_add_epi32(b, r));
        let rne = _mm256_or_si256(
            _mm256_srli_epi32::<16>(b),
            _mm256_and_si256(nan, _mm256_set1_epi32(0x40)),
        );
        _mm256_blendv_epi8(sto, rne, special)
    }

    /// Elements of hash words `w0, w0 + 1, ..` of the stream whose
    /// [`crate::rng::stream_base`] is `sb`, 16 (four words) a step.
    ///
    /// # Safety
    /// The CPU must support AVX2; `s.len() == d.len()`, a multiple of 16.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn steps(sb: u64, w0: u64, s: &[f32], d: &mut [u16]) {
        debug_assert!(s.len() == d.len() && s.len().is_multiple_of(16));
        let st = crate::rng::INDEX_STEP;
        let z0 = |w: u64| sb.wrapping_add(w0.wrapping_add(w).wrapping_mul(st)) as i64;
        let mut z = _mm256_setr_epi64x(z0(0), z0(1), z0(2), z0(3));
        let step = _mm256_set1_epi64x(st.wrapping_mul(4) as i64);
        for (sc, dc) in s.chunks_exact(16).zip(d.chunks_exact_mut(16)) {
            // 16 random u16 in element order (word w's bits 16k: element 4w + k)
            let r = mix64(z);
            z = _mm256_add_epi64(z, step);
            let r0 = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(r));
            let r1 = _mm256_cvtepu16_epi32(_mm256_extracti128_si256::<1>(r));
            // SAFETY: sc and dc hold 16 elements; unaligned loads/stores.
            unsafe {
                let b0 = _mm256_loadu_si256(sc.as_ptr() as *const __m256i);
                let b1 = _mm256_loadu_si256(sc.as_ptr().add(8) as *const __m256i);
                // packus works per 128-bit lane: a permute restores the order.
                let p = _mm256_packus_epi32(round8(b0, r0), round8(b1, r1));
                let p = _mm256_permute4x64_epi64::<0b11_01_10_00>(p);
                _mm256_storeu_si256(dc.as_mut_ptr() as *mut __m256i, p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::convert::bf16_bits_to_f32;
    use super::*;

    #[test]
    fn result_is_a_neighbour_and_unbiased() {
        // x sits a fraction p of an ulp above the bf16 value below it.
        for &(x, p) in &[
            (1.0f32 + 0.25 * 2f32.powi(-7), 0.25f64),
            (-3.0f32 - 0.75 * 2f32.powi(-6), 0.75),
            (1e-30f32, f64::NAN),
        ] {
            let lo_bits = (x.to_bits() >> 16) as u16;
            let (lo, hi) = (bf16_bits_to_f32(lo_bits), bf16_bits_to_f32(lo_bits + 1));
            let n = 100_000usize;
            let src = vec![x; n];
            let mut dst = vec![0u16; n];
            f32_to_bf16_stochastic(&src, &mut dst, 11, 0).unwrap();
            let mut ups = 0usize;
            let mut sum = 0f64;
            for &h in &dst {
                assert!(h == lo_bits || h == lo_bits + 1, "{h:#x} not a neighbour");
                ups += (h != lo_bits) as usize;
                sum += bf16_bits_to_f32(h) as f64;
            }
            // Bernoulli(q) count: sd sqrt(n q (1-q)); 6 sd bound.
            let q = ((x as f64 - lo as f64) / (hi as f64 - lo as f64)).abs();
            if !p.is_nan() {
                assert!((q - p).abs() < 1e-12);
            }
            let sd = (n as f64 * q * (1.0 - q)).sqrt();
            assert!(
                (ups as f64 - n as f64 * q).abs() < 6.0 * sd + 1.0,
                "ups {ups}, q {q}"
            );
            let mean = sum / n as f64;
            let ulp = (hi as f64 - lo as f64).abs();
            assert!(
                (mean - x as f64).abs() < 6.0 * ulp * (q * (1.0 - q) / n as f64).sqrt() + 1e-300
            );
        }
    }

    #[test]
    fn exact_values_and_specials_are_kept() {
        let src = [
            1.0f32,
            -2.5,
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        let mut dst = [0u16; 7];
        f32_to_bf16_stochastic(&src, &mut dst, 3, 0).unwrap();
        assert_eq!(&dst[..6], &[0x3f80, 0xc020, 0x0000, 0x8000, 0x7f80, 0xff80]);
        assert!(bf16_bits_to_f32(dst[6]).is_nan());
    }

    #[test]
    fn pure_function_of_seed_and_index() {
        let n = 3 * BLOCK + 7;
        let src: Vec<f32> = (0..n).map(|i| (i as f32).sin() * 3.3).collect();
        let mut whole = vec![0u16; n];
        f32_to_bf16_stochastic(&src, &mut whole, 77, 0).unwrap();
        // In odd-sized pieces, with offsets.
        let mut pieces = vec![0u16; n];
        let mut start = 0;
        for len in [5usize, 1, 70_001, 9, n] {
            let end = (start + len).min(n);
            f32_to_bf16_stochastic(&src[start..end], &mut pieces[start..end], 77, start as u64)
                .unwrap();
            start = end;
            if start == n {
                break;
            }
        }
        assert_eq!(whole, pieces);
        let mut other = vec![0u16; n];
        f32_to_bf16_stochastic(&src, &mut other, 78, 0).unwrap();
        assert_ne!(whole, other);
    }

    #[test]
    fn every_level_equals_the_scalar_reference() {
        let levels = cpu::levels_for_test("precision stochastic bf16");
        let sizes = [
            0usize, 1, 3, 4, 5, 15, 16, 17, 19, 31, 32, 33, 255, 256, 257, 1000,
        ];
        let specials = [
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xffc1_2345),
            f32::MAX,
            -f32::MAX,
            0.0,
            -0.0,
            f32::from_bits(1),
            f32::from_bits(0x7f7f_8000),
        ];
        for &n in sizes.iter().chain([2 * BLOCK + 21].iter()) {
            let src: Vec<f32> = (0..n)
                .map(|i| match crate::rng::hash2(5, i as u64) % 7 {
                    0 => specials[i % specials.len()],
                    _ => (crate::rng::uniform_f32(6, i as u64) - 0.5) * 1e3,
                })
                .collect();
            for offset in [0u64, 1, 2, 3, 5, u64::MAX / 2] {
                let mut want = vec![0u16; n];
                kernel_scalar(9, offset, &src, &mut want);
                for &l in &levels {
                    let mut got = vec![0u16; n];
                    f32_to_bf16_stochastic_level(&src, &mut got, 9, offset, l).unwrap();
                    assert_eq!(got, want, "{l} n={n} offset={offset}");
                }
            }
        }
    }
}
