//! Operations on packed hypervectors: bind/unbind as plane logic, permute as
//! a bit rotation, similarity from popcounts. Each equals the [`dense`](super::dense)
//! reference exactly.

use super::packed::{last_word_mask, packed_words, plane_words, validate_words, PackedHv};
use super::simd::{self, Level};
use super::{Algebra, Metric};
use crate::{Error, Result};

fn same_dim(a: &PackedHv, b: &PackedHv) -> Result<()> {
    if a.dim() != b.dim() {
        return Err(Error::shape(
            "b",
            format!("dim {} != dim of a {}", b.dim(), a.dim()),
        ));
    }
    Ok(())
}

/// MAP product of one word pair of planes: `(c+, c-)`.
#[inline(always)]
fn map_word(ap: u64, am: u64, bp: u64, bm: u64) -> (u64, u64) {
    ((ap & bp) | (am & bm), (ap & bm) | (am & bp))
}

/// Balanced ternary sum mod 3 of one word pair of planes: `(c+, c-)`.
/// +1 results: (+1, 0), (0, +1), (-1, -1); -1 results: (-1, 0), (0, -1), (+1, +1).
#[inline(always)]
fn mod3_word(ap: u64, am: u64, bp: u64, bm: u64) -> (u64, u64) {
    let (az, bz) = (!(ap | am), !(bp | bm));
    (
        (ap & bz) | (bp & az) | (am & bm),
        (am & bz) | (bm & az) | (ap & bp),
    )
}

#[inline(always)]
fn planes_generic(
    a: &[u64],
    b: &[u64],
    out: &mut [u64],
    swap_b: bool,
    f: impl Fn(u64, u64, u64, u64) -> (u64, u64),
) {
    let w = a.len() / 2;
    let (ap, am) = a.split_at(w);
    let (bp, bm) = b[..2 * w].split_at(w);
    let (bp, bm) = if swap_b { (bm, bp) } else { (bp, bm) };
    let (op, om) = out[..2 * w].split_at_mut(w);
    for i in 0..w {
        let (p, m) = f(ap[i], am[i], bp[i], bm[i]);
        op[i] = p;
        om[i] = m;
    }
}

#[inline(always)]
fn bind_generic(a: &[u64], b: &[u64], algebra: Algebra, unbind: bool, out: &mut [u64]) {
    match algebra {
        Algebra::Map => planes_generic(a, b, out, false, map_word),
        // Modular unbind adds -b: the planes of b swapped.
        Algebra::Modular => planes_generic(a, b, out, unbind, mod3_word),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn bind_avx512(a: &[u64], b: &[u64], algebra: Algebra, unbind: bool, out: &mut [u64]) {
    bind_generic(a, b, algebra, unbind, out)
}

fn bind_dispatch(a: &[u64], b: &[u64], algebra: Algebra, unbind: bool, out: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if simd::best_level() == Level::Avx512 {
        // SAFETY: best_level is Avx512 only if the CPU reported AVX-512F.
        return unsafe { bind_avx512(a, b, algebra, unbind, out) };
    }
    bind_generic(a, b, algebra, unbind, out)
}

/// Bind on raw packed words (`a`, `b`, `out` each `2 ceil(dim/64)` words,
/// already validated). Padding stays zero: every output bit needs an input bit
/// (the modular `!(a+ | a-)` terms are ANDed with a bit of `b`, and vice versa).
pub fn bind_words(a: &[u64], b: &[u64], algebra: Algebra, out: &mut [u64]) {
    bind_dispatch(a, b, algebra, false, out)
}

/// Unbind on raw packed words: MAP = bind; modular = bind with `-b`
/// (the planes of `b` swapped).
pub fn unbind_words(c: &[u64], b: &[u64], algebra: Algebra, out: &mut [u64]) {
    bind_dispatch(c, b, algebra, true, out)
}

/// `bind(a, b)` in `algebra` (see the module docs). Errors: different dims.
pub fn bind(a: &PackedHv, b: &PackedHv, algebra: Algebra) -> Result<PackedHv> {
    same_dim(a, b)?;
    let mut out = vec![0u64; a.words().len()];
    bind_words(a.words(), b.words(), algebra, &mut out);
    Ok(PackedHv::from_words_unchecked(a.dim(), out))
}

/// `unbind(c, b)` in `algebra`: MAP `c * b`; modular `c - b (mod 3)`.
pub fn unbind(c: &PackedHv, b: &PackedHv, algebra: Algebra) -> Result<PackedHv> {
    same_dim(c, b)?;
    let mut out = vec![0u64; c.words().len()];
    unbind_words(c.words(), b.words(), algebra, &mut out);
    Ok(PackedHv::from_words_unchecked(c.dim(), out))
}

/// `-a` (the planes swapped).
pub fn negate(a: &PackedHv) -> PackedHv {
    let w = plane_words(a.dim());
    let mut out = a.words()[w..].to_vec();
    out.extend_from_slice(&a.words()[..w]);
    PackedHv::from_words_unchecked(a.dim(), out)
}

/// Bits `[start, start + len)` of a plane of `dim` bits (`start + len <= dim`,
/// `len <= 64`), as the low bits of a word.
#[inline]
fn extract(plane: &[u64], start: usize, len: usize) -> u64 {
    if len == 0 {
        return 0;
    }
    let (w, off) = (start / 64, start % 64);
    let mut v = plane[w] >> off;
    if off != 0 && w + 1 < plane.len() {
        v |= plane[w + 1] << (64 - off);
    }
    if len < 64 {
        v &= (1u64 << len) - 1;
    }
    v
}

/// Bits `[start, start + len)` of a cyclic plane of `dim` bits (wrapping).
#[inline]
fn extract_cyclic(plane: &[u64], dim: usize, start: usize, len: usize) -> u64 {
    if start + len <= dim {
        extract(plane, start, len)
    } else {
        let first = dim - start;
        extract(plane, start, first) | (extract(plane, 0, len - first) << first)
    }
}

/// Permute on raw words: `out[(i + k) mod dim] = a[i]`, i.e. output bit `j`
/// is input bit `(j - k) mod dim`.
pub fn permute_words(dim: usize, a: &[u64], k: i64, out: &mut [u64]) {
    if dim == 0 {
        return;
    }
    let w = plane_words(dim);
    let k = k.rem_euclid(dim as i64) as usize;
    for plane in 0..2 {
        let src = &a[plane * w..(plane + 1) * w];
        let dst = &mut out[plane * w..(plane + 1) * w];
        let mut start = (dim - k) % dim; // source bit of output bit j0, advanced by 64 a word
        for (ow, d) in dst.iter_mut().enumerate() {
            let len = (dim - ow * 64).min(64);
            *d = extract_cyclic(src, dim, start, len);
            start += 64;
            while start >= dim {
                start -= dim;
            }
        }
    }
}

/// Cyclic shift by `k`: `out[(i + k) mod dim] = a[i]` (any `k`, negative
/// shifts left).
pub fn permute(a: &PackedHv, k: i64) -> PackedHv {
    let mut out = vec![0u64; packed_words(a.dim())];
    permute_words(a.dim(), a.words(), k, &mut out);
    PackedHv::from_words_unchecked(a.dim(), out)
}

/// The inverse of [`permute`] by `k` (a shift by `-k`).
pub fn inverse_permute(a: &PackedHv, k: i64) -> PackedHv {
    let d = a.dim().max(1) as i64;
    permute(a, -(k.rem_euclid(d)))
}

/// `(agree, disagree, nnz(a), nnz(b))` of two valid packed word buffers of the
/// same dim, at `level`.
pub fn pair_counts_at(level: Level, a: &[u64], b: &[u64]) -> (u64, u64, u64, u64) {
    let w = a.len() / 2;
    let (ap, am) = a.split_at(w);
    let (bp, bm) = b.split_at(w);
    let (agree, dis) = simd::counts_at(level, ap, am, bp, bm);
    let na = a.iter().map(|x| x.count_ones() as u64).sum();
    let nb = b.iter().map(|x| x.count_ones() as u64).sum();
    (agree, dis, na, nb)
}

/// Similarity of raw words (validated, same dim) by `metric`, at `level`.
pub fn similarity_words_at(level: Level, a: &[u64], b: &[u64], metric: Metric) -> f64 {
    let (agree, dis, na, nb) = pair_counts_at(level, a, b);
    metric.score(agree, dis, na, nb)
}

/// Similarity by `metric` (dot, cosine, or Hamming distance). Errors: different dims.
pub fn similarity(a: &PackedHv, b: &PackedHv, metric: Metric) -> Result<f64> {
    same_dim(a, b)?;
    Ok(similarity_words_at(
        simd::best_level(),
        a.words(),
        b.words(),
        metric,
    ))
}

/// `Σ a_i b_i`. Errors: different dims.
pub fn dot(a: &PackedHv, b: &PackedHv) -> Result<i64> {
    same_dim(a, b)?;
    let (agree, dis, _, _) = pair_counts_at(simd::best_level(), a.words(), b.words());
    Ok(agree as i64 - dis as i64)
}

/// Cosine similarity (0 if either vector is all zero). Errors: different dims.
pub fn cosine(a: &PackedHv, b: &PackedHv) -> Result<f64> {
    similarity(a, b, Metric::Cosine)
}

/// Number of differing trits. Errors: different dims.
pub fn hamming(a: &PackedHv, b: &PackedHv) -> Result<u64> {
    similarity(a, b, Metric::Hamming).map(|d| d as u64)
}

/// One-vs-many similarity: `rows` holds `n` packed vectors of `dim` trits back
/// to back (`n * 2 ceil(dim/64)` words); writes `n` scores to `out`. Every row
/// is validated (errors name `rows`); rows are scored in parallel blocks, each
/// score independent of the thread count.
pub fn similarity_many(
    query: &PackedHv,
    rows: &[u64],
    metric: Metric,
    out: &mut [f64],
) -> Result<()> {
    let dim = query.dim();
    let stride = packed_words(dim);
    if stride == 0 {
        if !rows.is_empty() {
            return Err(Error::shape("rows", "dim 0 vectors have no words"));
        }
        out.iter_mut().for_each(|o| *o = 0.0);
        return Ok(());
    }
    if rows.len() % stride != 0 {
        return Err(Error::shape(
            "rows",
            format!(
                "{} words is not a multiple of {stride} words per vector",
                rows.len()
            ),
        ));
    }
    let n = rows.len() / stride;
    if out.len() != n {
        return Err(Error::shape(
            "out",
            format!("{} scores for {n} rows", out.len()),
        ));
    }
    for (i, r) in rows.chunks_exact(stride).enumerate() {
        validate_words(dim, r, "rows").map_err(|e| match e {
            Error::InvalidData { arg, msg } => Error::data(arg, format!("row {i}: {msg}")),
            e => e,
        })?;
    }
    let level = simd::best_level();
    let q = query.words();
    use rayon::prelude::*;
    crate::parallel::install(|| {
        out.par_chunks_mut(256)
            .zip(rows.par_chunks(256 * stride))
            .for_each(|(o, r)| {
                for (oi, row) in o.iter_mut().zip(r.chunks_exact(stride)) {
                    *oi = similarity_words_at(level, q, row, metric);
                }
            })
    });
    Ok(())
}

/// Mask of valid bits in plane word `i` of a `dim`-trit vector.
#[inline]
pub fn word_mask(dim: usize, i: usize) -> u64 {
    if i + 1 == plane_words(dim) {
        last_word_mask(dim)
    } else {
        !0
    }
}
