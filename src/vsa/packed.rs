//! Packed bit-sliced hypervectors: two `u64` bit planes (plus, minus), the
//! layout described in the [module docs](super).

use crate::{rng, Error, Result};

/// Words per bit plane for `dim` trits: `ceil(dim / 64)`.
#[inline]
pub fn plane_words(dim: usize) -> usize {
    dim.div_ceil(64)
}

/// Total `u64` words of one packed vector: `2 * ceil(dim / 64)`.
#[inline]
pub fn packed_words(dim: usize) -> usize {
    2 * plane_words(dim)
}

/// Mask of the valid bits of the last word of a plane (all ones if `dim` is a
/// multiple of 64; unused for `dim == 0`).
#[inline]
pub fn last_word_mask(dim: usize) -> u64 {
    match dim % 64 {
        0 => !0,
        r => (1u64 << r) - 1,
    }
}

/// Checks a density argument: finite and in [0, 1].
pub fn check_density(density: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&density) {
        return Err(Error::invalid(
            "density",
            format!("must be a finite number in [0, 1], got {density}"),
        ));
    }
    Ok(())
}

/// Trit `index` of `random(dim, seed, density)` (see the module docs): the one
/// definition every path uses.
#[inline(always)]
pub fn random_trit(seed: u64, density: f64, index: u64) -> i8 {
    let h = rng::hash2(seed, index);
    let u = (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    if u < density {
        if h & 1 == 0 {
            1
        } else {
            -1
        }
    } else {
        0
    }
}

/// Checks that `words` is a valid packed vector of `dim` trits: length
/// `2 ceil(dim/64)` (else a shape error), no trit with both bits set and no
/// padding bit set (else invalid data). Errors name `arg`.
pub fn validate_words(dim: usize, words: &[u64], arg: &'static str) -> Result<()> {
    let w = plane_words(dim);
    if words.len() != 2 * w {
        return Err(Error::shape(
            arg,
            format!(
                "a packed vector of dim {dim} has {} words, got {}",
                2 * w,
                words.len()
            ),
        ));
    }
    if w == 0 {
        return Ok(());
    }
    let (p, m) = words.split_at(w);
    // An OR-reduction vectorizes (a search with early exit does not); look for
    // the position only when there is something to report.
    let clash = p.iter().zip(m).fold(0u64, |acc, (a, b)| acc | (a & b));
    if clash != 0 {
        let i = p
            .iter()
            .zip(m)
            .position(|(a, b)| a & b != 0)
            .expect("a clash was found");
        let bit = (p[i] & m[i]).trailing_zeros() as usize;
        return Err(Error::data(
            arg,
            format!("trit {} has both its +1 and -1 bits set", i * 64 + bit),
        ));
    }
    let pad = !last_word_mask(dim);
    if (p[w - 1] | m[w - 1]) & pad != 0 {
        return Err(Error::data(
            arg,
            format!("padding bits past dim {dim} are not zero"),
        ));
    }
    Ok(())
}

/// A packed ternary hypervector (see the [module docs](super) for the layout).
/// Always valid: construction checks every word.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PackedHv {
    dim: usize,
    words: Vec<u64>,
}

impl PackedHv {
    /// The all-zero vector of `dim` trits.
    pub fn zeros(dim: usize) -> Self {
        PackedHv {
            dim,
            words: vec![0; packed_words(dim)],
        }
    }

    /// Takes ownership of packed words after [`validate_words`].
    pub fn from_words(dim: usize, words: Vec<u64>) -> Result<Self> {
        validate_words(dim, &words, "words")?;
        Ok(PackedHv { dim, words })
    }

    /// Internal: the caller guarantees validity.
    pub(crate) fn from_words_unchecked(dim: usize, words: Vec<u64>) -> Self {
        debug_assert!(validate_words(dim, &words, "words").is_ok());
        PackedHv { dim, words }
    }

    /// Packs trits (each in {-1, 0, 1}; anything else is invalid data).
    pub fn from_trits(trits: &[i8]) -> Result<Self> {
        let dim = trits.len();
        let w = plane_words(dim);
        let mut words = crate::try_zeroed(2 * w, "dim")?;
        for (wi, chunk) in trits.chunks(64).enumerate() {
            let (mut p, mut m) = (0u64, 0u64);
            for (j, &t) in chunk.iter().enumerate() {
                match t {
                    1 => p |= 1 << j,
                    -1 => m |= 1 << j,
                    0 => {}
                    v => {
                        return Err(Error::data(
                            "trits",
                            format!("value {v} at index {} is not in {{-1, 0, 1}}", wi * 64 + j),
                        ))
                    }
                }
            }
            words[wi] = p;
            words[w + wi] = m;
        }
        Ok(PackedHv { dim, words })
    }

    /// Unpacks to one `i8` per trit.
    pub fn to_trits(&self) -> Vec<i8> {
        let mut out = vec![0i8; self.dim];
        self.write_trits(&mut out);
        out
    }

    /// Unpacks into `out` (`out.len() == dim`).
    pub fn write_trits(&self, out: &mut [i8]) {
        assert_eq!(out.len(), self.dim, "write_trits: out.len() != dim");
        let (p, m) = (self.plus(), self.minus());
        for (wi, chunk) in out.chunks_mut(64).enumerate() {
            for (j, o) in chunk.iter_mut().enumerate() {
                *o = ((p[wi] >> j) & 1) as i8 - ((m[wi] >> j) & 1) as i8;
            }
        }
    }

    /// `random(dim, seed, density)` (see the module docs). Errors: `density`
    /// not a finite number in [0, 1].
    pub fn random(dim: usize, seed: u64, density: f64) -> Result<Self> {
        check_density(density)?;
        let w = plane_words(dim);
        let mut words = crate::try_zeroed(2 * w, "dim")?;
        for wi in 0..w {
            let (mut p, mut m) = (0u64, 0u64);
            let n = (dim - wi * 64).min(64);
            for j in 0..n {
                match random_trit(seed, density, (wi * 64 + j) as u64) {
                    1 => p |= 1 << j,
                    -1 => m |= 1 << j,
                    _ => {}
                }
            }
            words[wi] = p;
            words[w + wi] = m;
        }
        Ok(PackedHv { dim, words })
    }

    /// Number of trits.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// All `2 ceil(dim/64)` words (plus plane, then minus plane).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Consumes the vector, returning its words.
    pub fn into_words(self) -> Vec<u64> {
        self.words
    }

    /// The plus plane (`ceil(dim/64)` words).
    pub fn plus(&self) -> &[u64] {
        &self.words[..plane_words(self.dim)]
    }

    /// The minus plane (`ceil(dim/64)` words).
    pub fn minus(&self) -> &[u64] {
        &self.words[plane_words(self.dim)..]
    }

    /// Trit `i` (panics if `i >= dim`).
    pub fn get(&self, i: usize) -> i8 {
        assert!(i < self.dim, "index {i} out of range for dim {}", self.dim);
        let w = plane_words(self.dim);
        ((self.words[i / 64] >> (i % 64)) & 1) as i8
            - ((self.words[w + i / 64] >> (i % 64)) & 1) as i8
    }

    /// Number of non-zero trits.
    pub fn nnz(&self) -> u64 {
        self.words.iter().map(|w| w.count_ones() as u64).sum()
    }

    /// True if every trit is non-zero (`nnz == dim`).
    pub fn is_bipolar(&self) -> bool {
        self.nnz() == self.dim as u64
    }
}
