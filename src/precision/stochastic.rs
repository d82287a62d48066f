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

use rayon::prelude::*;

use super::convert::f32_to_bf16_bits;
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
    if dst.len() != src.len() {
        return Err(Error::shape(
            "dst",
            format!("dst has {} elements, src has {}", dst.len(), src.len()),
        ));
    }
    offset
        .checked_add(src.len() as u64)
        .ok_or_else(|| Error::overflow("offset", "offset + len overflows u64"))?;
    let kernel = |base: u64, s: &[f32], d: &mut [u16]| {
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
}
