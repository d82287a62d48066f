//! Counter-based randomness: every random value is a pure function of
//! `(seed, index)`, so results do not depend on thread count, chunking or device.
//!
//! The mixer is SplitMix64's finalizer (Steele, Lea & Flood 2014), which passes
//! BigCrush when fed a Weyl sequence; we feed it `seed * φ + index * c` for two
//! odd constants so that different seeds give unrelated streams.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const STREAM: u64 = 0xD1B5_4A32_D192_ED03;

/// SplitMix64 finalizer: a bijective 64-bit mixer.
#[inline(always)]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random 64-bit word number `index` of stream `seed`.
#[inline(always)]
pub fn hash2(seed: u64, index: u64) -> u64 {
    mix64(mix64(seed.wrapping_mul(GOLDEN) ^ STREAM).wrapping_add(index.wrapping_mul(GOLDEN)))
}

/// The per-stream constant of [`hash2`]: `hash2(seed, index) ==
/// mix64(stream_base(seed).wrapping_add(index.wrapping_mul(INDEX_STEP)))`,
/// for SIMD kernels that hash many indices of one stream.
#[inline]
pub fn stream_base(seed: u64) -> u64 {
    mix64(seed.wrapping_mul(GOLDEN) ^ STREAM)
}

/// The index multiplier of [`hash2`] (see [`stream_base`]).
pub const INDEX_STEP: u64 = GOLDEN;

/// Uniform `f32` in `[0, 1)` with 24 random bits, from `(seed, index)`.
#[inline(always)]
pub fn uniform_f32(seed: u64, index: u64) -> f32 {
    (hash2(seed, index) >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// Uniform `f64` in `[0, 1)` with 53 random bits, from `(seed, index)`.
#[inline(always)]
pub fn uniform_f64(seed: u64, index: u64) -> f64 {
    (hash2(seed, index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Derives an independent sub-seed (for a parameter, a row, a layer...).
#[inline]
pub fn derive(seed: u64, tag: u64) -> u64 {
    hash2(seed ^ 0x5851_F42D_4C95_7F2D, tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_distinct() {
        assert_eq!(hash2(1, 2), hash2(1, 2));
        assert_ne!(hash2(1, 2), hash2(2, 1));
        assert_ne!(hash2(0, 0), hash2(0, 1));
    }

    #[test]
    fn uniform_mean_and_bits() {
        // Mean of n uniforms has sd 1/sqrt(12 n); 6 sd bound.
        let n = 200_000u64;
        let s: f64 = (0..n).map(|i| uniform_f32(7, i) as f64).sum();
        let mean = s / n as f64;
        assert!(
            (mean - 0.5).abs() < 6.0 / (12.0 * n as f64).sqrt(),
            "mean {mean}"
        );
        // Each output bit is set about half the time.
        for bit in [0, 17, 40, 63] {
            let c = (0..n).filter(|&i| hash2(3, i) >> bit & 1 == 1).count() as f64;
            assert!((c / n as f64 - 0.5).abs() < 6.0 * 0.5 / (n as f64).sqrt());
        }
    }
}
