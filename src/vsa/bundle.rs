//! Bundle (element-wise weighted sum, then sign with a tie rule) and the
//! streaming [`BundleAccumulator`].
//!
//! Unweighted bundles of packed vectors use bit-sliced counters: for each
//! block of 8 plane words, the number of +1 and of -1 votes per trit is kept
//! as `L = bits(n)` bit planes and incremented with a ripple-carry adder
//! (`L` AND/XOR pairs per input word), then the two counts are compared
//! bit-serially from the top bit. Weighted bundles and the accumulator use
//! `i64` counters. All paths compute the exact integer sum, so they agree
//! with the dense reference bit for bit.

use super::packed::{last_word_mask, packed_words, plane_words, validate_words, PackedHv};
use super::simd::{available_levels, best_level, Level};
use super::TieRule;
use crate::{Error, Result};

const LANES: usize = 8;

/// Tie rule applied to the words of a result: `(p, m)` are the result planes,
/// `tie` the positions (within `dim`) where the sum is 0, `tv` the tie vector's
/// planes for that word (if any).
#[inline(always)]
fn apply_tie(p: &mut u64, m: &mut u64, tie: u64, tv: Option<(u64, u64)>) {
    if let Some((tp, tm)) = tv {
        *p |= tie & tp;
        *m |= tie & tm;
    }
}

/// The bit-sliced kernel over raw rows (each `2W` words, validated).
#[inline(always)]
fn bundle_bitsliced_generic(dim: usize, rows: &[&[u64]], tv: Option<&[u64]>, out: &mut [u64]) {
    let w = plane_words(dim);
    let n = rows.len();
    let l = (usize::BITS - n.leading_zeros()) as usize; // n < 2^l
    let l = l.max(1);
    let mut pc = vec![[0u64; LANES]; l];
    let mut mc = vec![[0u64; LANES]; l];
    let mut c0 = 0;
    while c0 < w {
        let lanes = (w - c0).min(LANES);
        for c in pc.iter_mut().chain(mc.iter_mut()) {
            *c = [0; LANES];
        }
        for r in rows {
            let mut cp = [0u64; LANES];
            let mut cm = [0u64; LANES];
            cp[..lanes].copy_from_slice(&r[c0..c0 + lanes]);
            cm[..lanes].copy_from_slice(&r[w + c0..w + c0 + lanes]);
            for (pl, ml) in pc.iter_mut().zip(mc.iter_mut()) {
                for j in 0..LANES {
                    let tp = pl[j] & cp[j];
                    pl[j] ^= cp[j];
                    cp[j] = tp;
                    let tm = ml[j] & cm[j];
                    ml[j] ^= cm[j];
                    cm[j] = tm;
                }
            }
        }
        // Compare the counts from the most significant bit down.
        let mut gt = [0u64; LANES];
        let mut lt = [0u64; LANES];
        let mut eq = [!0u64; LANES];
        for b in (0..l).rev() {
            for j in 0..LANES {
                let (x, y) = (pc[b][j], mc[b][j]);
                gt[j] |= eq[j] & x & !y;
                lt[j] |= eq[j] & !x & y;
                eq[j] &= !(x ^ y);
            }
        }
        for j in 0..lanes {
            let i = c0 + j;
            let mask = if i + 1 == w { last_word_mask(dim) } else { !0 };
            let (mut p, mut m) = (gt[j], lt[j]);
            apply_tie(&mut p, &mut m, eq[j] & mask, tv.map(|t| (t[i], t[w + i])));
            out[i] = p & mask;
            out[w + i] = m & mask;
        }
        c0 += LANES;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn bundle_bitsliced_avx512(
    dim: usize,
    rows: &[&[u64]],
    tv: Option<&[u64]>,
    out: &mut [u64],
) {
    bundle_bitsliced_generic(dim, rows, tv, out)
}

/// The unweighted bit-sliced bundle at `level` (`Avx512` compiles the same
/// code with 512-bit vectors; lower levels run the portable build).
pub fn bundle_bitsliced_at(
    level: Level,
    dim: usize,
    rows: &[&[u64]],
    tv: Option<&[u64]>,
    out: &mut [u64],
) {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx512 && available_levels().contains(&Level::Avx512) {
        // SAFETY: the CPU reported AVX-512F.
        return unsafe { bundle_bitsliced_avx512(dim, rows, tv, out) };
    }
    let _ = (level, available_levels);
    bundle_bitsliced_generic(dim, rows, tv, out)
}

fn tie_vector(dim: usize, tie: TieRule) -> Option<PackedHv> {
    match tie {
        TieRule::Zero => None,
        TieRule::Random(seed) => {
            Some(PackedHv::random(dim, seed, 1.0).expect("density 1 is valid"))
        }
    }
}

/// Bundles `vectors` (each of `dim` trits) with optional integer `weights`
/// (one per vector; default 1): `sign(Σ w_k x_k)` with `tie` at zero sums.
/// `n = 0` gives the all-tie result. Errors: a vector of another dim, a
/// weights length different from the number of vectors.
pub fn bundle(
    dim: usize,
    vectors: &[&PackedHv],
    weights: Option<&[i32]>,
    tie: TieRule,
) -> Result<PackedHv> {
    for (k, v) in vectors.iter().enumerate() {
        if v.dim() != dim {
            return Err(Error::shape(
                "vectors",
                format!("vector {k} has dim {} != {dim}", v.dim()),
            ));
        }
    }
    let rows: Vec<&[u64]> = vectors.iter().map(|v| v.words()).collect();
    let words = bundle_rows(dim, &rows, weights, tie)?;
    Ok(PackedHv::from_words_unchecked(dim, words))
}

/// Bundles raw packed rows (each `2 ceil(dim/64)` words; validated here,
/// errors name `vectors`). See [`bundle`].
pub fn bundle_rows(
    dim: usize,
    rows: &[&[u64]],
    weights: Option<&[i32]>,
    tie: TieRule,
) -> Result<Vec<u64>> {
    if let Some(w) = weights {
        if w.len() != rows.len() {
            return Err(Error::shape(
                "weights",
                format!("{} weights for {} vectors", w.len(), rows.len()),
            ));
        }
    }
    for (k, r) in rows.iter().enumerate() {
        validate_words(dim, r, "vectors").map_err(|e| match e {
            Error::InvalidData { arg, msg } => Error::data(arg, format!("vector {k}: {msg}")),
            Error::ShapeMismatch { arg, msg } => Error::shape(arg, format!("vector {k}: {msg}")),
            e => e,
        })?;
    }
    let tv = tie_vector(dim, tie);
    let mut out = vec![0u64; packed_words(dim)];
    match weights {
        None => bundle_bitsliced_at(
            best_level(),
            dim,
            rows,
            tv.as_ref().map(|t| t.words()),
            &mut out,
        ),
        Some(w) => {
            let mut acc = BundleAccumulator::new(dim);
            for (r, &wk) in rows.iter().zip(w) {
                acc.add_words_unchecked(r, wk)?;
            }
            out = acc.finish(tie).into_words();
        }
    }
    Ok(out)
}

/// Streaming bundle: adds vectors one at a time into `i64` counters (one per
/// trit), so many vectors can be bundled without holding them all.
/// `finish` gives exactly [`bundle`] of everything added so far.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleAccumulator {
    dim: usize,
    counts: Vec<i64>,
    /// `Σ |w_k|` so far: bounds every `|count|`, checked against `i64::MAX`.
    total_abs: u64,
    added: u64,
}

impl BundleAccumulator {
    /// An empty accumulator for `dim` trits.
    pub fn new(dim: usize) -> Self {
        BundleAccumulator {
            dim,
            counts: vec![0; dim],
            total_abs: 0,
            added: 0,
        }
    }

    /// Number of trits.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of vectors added since creation or the last reset.
    pub fn len(&self) -> u64 {
        self.added
    }

    /// True if nothing was added.
    pub fn is_empty(&self) -> bool {
        self.added == 0
    }

    /// The per-trit sums `Σ w_k x_{k,i}`.
    pub fn counts(&self) -> &[i64] {
        &self.counts
    }

    /// Back to empty.
    pub fn reset(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total_abs = 0;
        self.added = 0;
    }

    /// Adds `weight * v`. Errors: another dim (`vector`); a weight that would
    /// let a counter exceed `i64` (`weight`, practically unreachable).
    pub fn add(&mut self, v: &PackedHv, weight: i32) -> Result<()> {
        if v.dim() != self.dim {
            return Err(Error::shape(
                "vector",
                format!("dim {} != the accumulator's dim {}", v.dim(), self.dim),
            ));
        }
        self.add_words_unchecked(v.words(), weight)
    }

    /// Adds `weight *` a raw packed vector (validated; errors name `vector`).
    pub fn add_words(&mut self, words: &[u64], weight: i32) -> Result<()> {
        validate_words(self.dim, words, "vector")?;
        self.add_words_unchecked(words, weight)
    }

    pub(crate) fn add_words_unchecked(&mut self, words: &[u64], weight: i32) -> Result<()> {
        let t = self
            .total_abs
            .checked_add(weight.unsigned_abs() as u64)
            .filter(|&t| t <= i64::MAX as u64)
            .ok_or_else(|| Error::invalid("weight", "the accumulated |weights| overflow i64"))?;
        self.total_abs = t;
        self.added += 1;
        let w = plane_words(self.dim);
        let wt = weight as i64;
        for (wi, c) in self.counts.chunks_mut(64).enumerate() {
            let (p, m) = (words[wi], words[w + wi]);
            if p | m == 0 {
                continue;
            }
            for (j, cj) in c.iter_mut().enumerate() {
                let x = ((p >> j) & 1) as i64 - ((m >> j) & 1) as i64;
                *cj += wt * x;
            }
        }
        Ok(())
    }

    /// `sign(counts)` with `tie` at zero counts. The accumulator is unchanged.
    pub fn finish(&self, tie: TieRule) -> PackedHv {
        let dim = self.dim;
        let w = plane_words(dim);
        let tv = tie_vector(dim, tie);
        let mut out = vec![0u64; 2 * w];
        for (wi, c) in self.counts.chunks(64).enumerate() {
            let (mut p, mut m, mut z) = (0u64, 0u64, 0u64);
            for (j, &cj) in c.iter().enumerate() {
                p |= ((cj > 0) as u64) << j;
                m |= ((cj < 0) as u64) << j;
                z |= ((cj == 0) as u64) << j;
            }
            apply_tie(
                &mut p,
                &mut m,
                z,
                tv.as_ref().map(|t| (t.words()[wi], t.words()[w + wi])),
            );
            out[wi] = p;
            out[w + wi] = m;
        }
        PackedHv::from_words_unchecked(dim, out)
    }
}
