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

type Lanes = [u64; LANES];

/// Adds the bit vector `carry` (weight `2^from`) into the bit-sliced counter `cnt`.
#[inline(always)]
fn ripple(cnt: &mut [Lanes], from: usize, mut carry: Lanes) {
    for c in cnt.iter_mut().skip(from) {
        for j in 0..LANES {
            let t = c[j] & carry[j];
            c[j] ^= carry[j];
            carry[j] = t;
        }
    }
}

/// Full adder per bit: `(a + b + c) = sum + 2 carry`.
#[inline(always)]
fn full_add(a: u64, b: u64, c: u64) -> (u64, u64) {
    (a ^ b ^ c, (a & b) | (c & (a ^ b)))
}

/// Adds four bit vectors (weight 1) into `cnt` with a carry-save tree: two full
/// adders at level 0, one at level 1, then one ripple from level 2 (about a
/// quarter of the work of four ripples). Needs `cnt.len() >= 2`.
#[inline(always)]
fn add4(cnt: &mut [Lanes], x: [&Lanes; 4]) {
    let mut k3 = [0u64; LANES];
    for j in 0..LANES {
        let (s, k1) = full_add(cnt[0][j], x[0][j], x[1][j]);
        let (s, k2) = full_add(s, x[2][j], x[3][j]);
        cnt[0][j] = s;
        let (s1, c) = full_add(cnt[1][j], k1, k2);
        cnt[1][j] = s1;
        k3[j] = c;
    }
    ripple(cnt, 2, k3);
}

/// Loads 8 words from `plane` at `c0` (zero-padded past `lanes`).
#[inline(always)]
fn load(plane: &[u64], c0: usize, lanes: usize) -> Lanes {
    if lanes == LANES {
        return plane[c0..c0 + LANES].try_into().expect("8 words");
    }
    let mut v = [0u64; LANES];
    for (d, s) in v.iter_mut().zip(&plane[c0..c0 + lanes]) {
        *d = *s;
    }
    v
}

/// The bit-sliced kernel over raw rows (each `2W` words, validated). Rows are
/// streamed in order, four at a time; the counters of all blocks (`2 * ceil(W/8)
/// * l` vectors of 8 words, 18 KiB for n = 100 at dim 10,000) stay in L1.
#[inline(always)]
fn bundle_bitsliced_generic(dim: usize, rows: &[&[u64]], tv: Option<&[u64]>, out: &mut [u64]) {
    let w = plane_words(dim);
    let n = rows.len();
    // Counters need l bits with n < 2^l; at least 2 for the carry-save tree.
    let l = ((usize::BITS - n.leading_zeros()) as usize).max(2);
    let nb = w.div_ceil(LANES);
    let mut pcs = vec![[0u64; LANES]; nb * l];
    let mut mcs = vec![[0u64; LANES]; nb * l];
    let mut quads = rows.chunks_exact(4);
    for q in &mut quads {
        for (blk, (pc, mc)) in pcs
            .chunks_exact_mut(l)
            .zip(mcs.chunks_exact_mut(l))
            .enumerate()
        {
            let c0 = blk * LANES;
            let lanes = (w - c0).min(LANES);
            let p = [0, 1, 2, 3].map(|i| load(q[i], c0, lanes));
            let m = [0, 1, 2, 3].map(|i| load(q[i], w + c0, lanes));
            add4(pc, [&p[0], &p[1], &p[2], &p[3]]);
            add4(mc, [&m[0], &m[1], &m[2], &m[3]]);
        }
    }
    for r in quads.remainder() {
        for (blk, (pc, mc)) in pcs
            .chunks_exact_mut(l)
            .zip(mcs.chunks_exact_mut(l))
            .enumerate()
        {
            let c0 = blk * LANES;
            let lanes = (w - c0).min(LANES);
            ripple(pc, 0, load(r, c0, lanes));
            ripple(mc, 0, load(r, w + c0, lanes));
        }
    }
    for (blk, (pc, mc)) in pcs.chunks_exact(l).zip(mcs.chunks_exact(l)).enumerate() {
        let c0 = blk * LANES;
        let lanes = (w - c0).min(LANES);
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
    }
}

/// The same algorithm with explicit AVX-512 intrinsics: full adders and
/// majorities are single `vpternlogq`s, partial blocks use masked loads.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn bundle_bitsliced_avx512(
    dim: usize,
    rows: &[&[u64]],
    tv: Option<&[u64]>,
    out: &mut [u64],
) {
    use std::arch::x86_64::*;
    let w = plane_words(dim);
    let n = rows.len();
    let l = ((usize::BITS - n.leading_zeros()) as usize).max(2);
    let nb = w.div_ceil(LANES);
    let zero = _mm512_setzero_si512();
    let mut cnt = vec![zero; 2 * nb * l]; // [plane][block][level]
    for r in rows {
        assert!(r.len() >= 2 * w);
    }
    let mask = |blk: usize| -> __mmask8 {
        let lanes = (w - blk * LANES).min(LANES);
        ((1u32 << lanes) - 1) as __mmask8
    };
    // SAFETY (loads): lane j of block blk reads word blk*8 + j < w of a plane
    // (masked off otherwise) of a row with at least 2w words.
    let mut quads = rows.chunks_exact(4);
    for q in &mut quads {
        for blk in 0..nb {
            let k = mask(blk);
            for plane in 0..2 {
                let off = plane * w + blk * LANES;
                let x = [0, 1, 2, 3].map(|i| unsafe {
                    _mm512_maskz_loadu_epi64(k, q[i].as_ptr().add(off) as *const i64)
                });
                let c = &mut cnt[(plane * nb + blk) * l..(plane * nb + blk + 1) * l];
                let s1 = _mm512_ternarylogic_epi64::<0x96>(c[0], x[0], x[1]);
                let k1 = _mm512_ternarylogic_epi64::<0xE8>(c[0], x[0], x[1]);
                c[0] = _mm512_ternarylogic_epi64::<0x96>(s1, x[2], x[3]);
                let k2 = _mm512_ternarylogic_epi64::<0xE8>(s1, x[2], x[3]);
                let c1 = c[1];
                c[1] = _mm512_ternarylogic_epi64::<0x96>(c1, k1, k2);
                let mut carry = _mm512_ternarylogic_epi64::<0xE8>(c1, k1, k2);
                for cl in c.iter_mut().skip(2) {
                    let v = *cl;
                    *cl = _mm512_xor_si512(v, carry);
                    carry = _mm512_and_si512(v, carry);
                }
            }
        }
    }
    for r in quads.remainder() {
        for blk in 0..nb {
            let k = mask(blk);
            for plane in 0..2 {
                let off = plane * w + blk * LANES;
                let mut carry =
                    unsafe { _mm512_maskz_loadu_epi64(k, r.as_ptr().add(off) as *const i64) };
                for cl in cnt[(plane * nb + blk) * l..(plane * nb + blk + 1) * l].iter_mut() {
                    let v = *cl;
                    *cl = _mm512_xor_si512(v, carry);
                    carry = _mm512_and_si512(v, carry);
                }
            }
        }
    }
    for blk in 0..nb {
        let (pc, mc) = (
            &cnt[blk * l..(blk + 1) * l],
            &cnt[(nb + blk) * l..(nb + blk + 1) * l],
        );
        let (mut gt, mut lt, mut eq) = (zero, zero, _mm512_set1_epi64(-1));
        for b in (0..l).rev() {
            let (x, y) = (pc[b], mc[b]);
            // gt |= eq & x & !y; lt |= eq & !x & y; eq &= !(x ^ y)
            gt = _mm512_or_si512(gt, _mm512_and_si512(eq, _mm512_andnot_si512(y, x)));
            lt = _mm512_or_si512(lt, _mm512_and_si512(eq, _mm512_andnot_si512(x, y)));
            eq = _mm512_andnot_si512(_mm512_xor_si512(x, y), eq);
        }
        let (mut g, mut t, mut e) = ([0u64; LANES], [0u64; LANES], [0u64; LANES]);
        // SAFETY: unaligned stores into 8-word arrays.
        unsafe {
            _mm512_storeu_epi64(g.as_mut_ptr() as *mut i64, gt);
            _mm512_storeu_epi64(t.as_mut_ptr() as *mut i64, lt);
            _mm512_storeu_epi64(e.as_mut_ptr() as *mut i64, eq);
        }
        let c0 = blk * LANES;
        for j in 0..(w - c0).min(LANES) {
            let i = c0 + j;
            let m_ = if i + 1 == w { last_word_mask(dim) } else { !0 };
            let (mut p, mut m) = (g[j], t[j]);
            apply_tie(&mut p, &mut m, e[j] & m_, tv.map(|tt| (tt[i], tt[w + i])));
            out[i] = p & m_;
            out[w + i] = m & m_;
        }
    }
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

fn tie_vector(dim: usize, tie: TieRule) -> Result<Option<PackedHv>> {
    Ok(match tie {
        TieRule::Zero => None,
        // (density 1 is valid: the only error is a refused allocation)
        TieRule::Random(seed) => Some(PackedHv::random(dim, seed, 1.0)?),
    })
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
    // PackedHv is valid by construction: no need to re-validate every word.
    let words = bundle_rows_unchecked(dim, &rows, weights, tie)?;
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
    // (The weights' length is checked by bundle_rows_unchecked.)
    for (k, r) in rows.iter().enumerate() {
        validate_words(dim, r, "vectors").map_err(|e| match e {
            Error::InvalidData { arg, msg } => Error::data(arg, format!("vector {k}: {msg}")),
            Error::ShapeMismatch { arg, msg } => Error::shape(arg, format!("vector {k}: {msg}")),
            e => e,
        })?;
    }
    bundle_rows_unchecked(dim, rows, weights, tie)
}

fn bundle_rows_unchecked(
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
    let tv = tie_vector(dim, tie)?;
    let mut out = crate::try_zeroed(packed_words(dim), "dim")?;
    match weights {
        None => bundle_bitsliced_at(
            best_level(),
            dim,
            rows,
            tv.as_ref().map(|t| t.words()),
            &mut out,
        ),
        Some(w) => {
            let mut acc = BundleAccumulator::new(dim)?;
            for (r, &wk) in rows.iter().zip(w) {
                acc.add_words_unchecked(r, wk)?;
            }
            out = acc.finish(tie).into_words();
        }
    }
    Ok(out)
}

/// `counts[i] += weight * x_i` for the packed vector `words` (no multiply:
/// `weight` is masked in by each plane bit, so it vectorizes without AVX-512DQ).
#[inline(always)]
fn accumulate_generic(counts: &mut [i64], words: &[u64], weight: i64) {
    let w = plane_words(counts.len());
    for (wi, c) in counts.chunks_mut(64).enumerate() {
        let (p, m) = (words[wi], words[w + wi]);
        if p | m == 0 {
            continue;
        }
        for (j, cj) in c.iter_mut().enumerate() {
            let pb = ((p >> j) & 1) as i64;
            let mb = ((m >> j) & 1) as i64;
            *cj += (weight & -pb) - (weight & -mb);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn accumulate_avx512(counts: &mut [i64], words: &[u64], weight: i64) {
    accumulate_generic(counts, words, weight)
}

/// [`BundleAccumulator`]'s inner loop at `level` (`Avx512` compiles the same
/// code with 512-bit vectors).
pub fn accumulate_at(level: Level, counts: &mut [i64], words: &[u64], weight: i64) {
    #[cfg(target_arch = "x86_64")]
    if level == Level::Avx512 && available_levels().contains(&Level::Avx512) {
        // SAFETY: the CPU reported AVX-512F.
        return unsafe { accumulate_avx512(counts, words, weight) };
    }
    let _ = level;
    accumulate_generic(counts, words, weight)
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
    /// An empty accumulator for `dim` trits (8 bytes a trit). Errors:
    /// [`Error::OutOfMemory`] /
    /// [`Error::SizeOverflow`] naming `dim`.
    pub fn new(dim: usize) -> Result<Self> {
        Ok(BundleAccumulator {
            dim,
            counts: crate::try_zeroed(dim, "dim")?,
            total_abs: 0,
            added: 0,
        })
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
        accumulate_at(best_level(), &mut self.counts, words, weight as i64);
        Ok(())
    }

    /// `sign(counts)` with `tie` at zero counts. The accumulator is unchanged.
    pub fn finish(&self, tie: TieRule) -> PackedHv {
        let dim = self.dim;
        let w = plane_words(dim);
        // (sized like the counters, which exist: a refusal unwinds with the
        // error, which the C boundary reports as TRITTER_ERR_OUT_OF_MEMORY)
        let tv = tie_vector(dim, tie).unwrap_or_else(|e| std::panic::panic_any(e));
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
