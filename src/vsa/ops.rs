//! Operations on packed hypervectors: bind/unbind as plane logic, permute as
//! a bit rotation, similarity from popcounts. Each equals the [`dense`](super::dense)
//! reference exactly.

use super::packed::{last_word_mask, packed_words, plane_words, validate_words, PackedHv};
use super::simd;
use super::{Algebra, Metric};
use crate::cpu::{self, CpuLevel};
use crate::{Error, Result};
use std::mem::MaybeUninit;

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
    out: &mut [MaybeUninit<u64>],
    swap_b: bool,
    f: impl Fn(u64, u64, u64, u64) -> (u64, u64),
) {
    let w = a.len() / 2;
    let (ap, am) = a.split_at(w);
    let (bp, bm) = b[..2 * w].split_at(w);
    let (bp, bm) = if swap_b { (bm, bp) } else { (bp, bm) };
    let (op, om) = out[..2 * w].split_at_mut(w);
    // Zipped iterators: no bounds checks, so the loop vectorizes.
    let ins = ap.iter().zip(am).zip(bp.iter().zip(bm));
    for ((o_p, o_m), ((&a_p, &a_m), (&b_p, &b_m))) in op.iter_mut().zip(om).zip(ins) {
        let (p, m) = f(a_p, a_m, b_p, b_m);
        o_p.write(p);
        o_m.write(m);
    }
}

#[inline(always)]
fn bind_generic(
    a: &[u64],
    b: &[u64],
    algebra: Algebra,
    unbind: bool,
    out: &mut [MaybeUninit<u64>],
) {
    match algebra {
        Algebra::Map => planes_generic(a, b, out, false, map_word),
        // Modular unbind adds -b: the planes of b swapped.
        Algebra::Modular => planes_generic(a, b, out, unbind, mod3_word),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn bind_avx512(
    a: &[u64],
    b: &[u64],
    algebra: Algebra,
    unbind: bool,
    out: &mut [MaybeUninit<u64>],
) {
    bind_generic(a, b, algebra, unbind, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bind_avx2(
    a: &[u64],
    b: &[u64],
    algebra: Algebra,
    unbind: bool,
    out: &mut [MaybeUninit<u64>],
) {
    bind_generic(a, b, algebra, unbind, out)
}

/// Writes every one of the first `a.len()` words of `out`, with the plane
/// logic compiled for the best vector width at or below the active level.
fn bind_dispatch(
    a: &[u64],
    b: &[u64],
    algebra: Algebra,
    unbind: bool,
    out: &mut [MaybeUninit<u64>],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let level = cpu::active();
        if cpu::runs(CpuLevel::Avx512, level) {
            // SAFETY: the CPU reported AVX-512F.
            return unsafe { bind_avx512(a, b, algebra, unbind, out) };
        }
        if cpu::runs(CpuLevel::Avx2, level) {
            // SAFETY: the CPU reported AVX2.
            return unsafe { bind_avx2(a, b, algebra, unbind, out) };
        }
    }
    bind_generic(a, b, algebra, unbind, out)
}

/// Views initialized words as possibly-uninitialized ones for writing.
fn as_uninit(out: &mut [u64]) -> &mut [MaybeUninit<u64>] {
    // SAFETY: MaybeUninit<u64> has u64's layout, and the kernels only ever
    // store initialized values through the view.
    unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), out.len()) }
}

/// A vector of `n` words filled by `fill`, which must write all `n` of them:
/// no zeroing pass before the kernel overwrites everything anyway.
fn new_words(n: usize, fill: impl FnOnce(&mut [MaybeUninit<u64>])) -> Vec<u64> {
    let mut v = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: `fill` initialized the first n elements (the callers' kernels
    // write every word of their output).
    unsafe { v.set_len(n) };
    v
}

/// Bind on raw packed words (`a`, `b`, `out` each `2 ceil(dim/64)` words,
/// already validated). Padding stays zero: every output bit needs an input bit
/// (the modular `!(a+ | a-)` terms are ANDed with a bit of `b`, and vice versa).
pub fn bind_words(a: &[u64], b: &[u64], algebra: Algebra, out: &mut [u64]) {
    bind_dispatch(a, b, algebra, false, as_uninit(out))
}

/// Unbind on raw packed words: MAP = bind; modular = bind with `-b`
/// (the planes of `b` swapped).
pub fn unbind_words(c: &[u64], b: &[u64], algebra: Algebra, out: &mut [u64]) {
    bind_dispatch(c, b, algebra, true, as_uninit(out))
}

/// `bind(a, b)` in `algebra` (see the module docs). Errors: different dims.
pub fn bind(a: &PackedHv, b: &PackedHv, algebra: Algebra) -> Result<PackedHv> {
    same_dim(a, b)?;
    let out = new_words(a.words().len(), |o| {
        bind_dispatch(a.words(), b.words(), algebra, false, o)
    });
    Ok(PackedHv::from_words_unchecked(a.dim(), out))
}

/// `unbind(c, b)` in `algebra`: MAP `c * b`; modular `c - b (mod 3)`.
pub fn unbind(c: &PackedHv, b: &PackedHv, algebra: Algebra) -> Result<PackedHv> {
    same_dim(c, b)?;
    let out = new_words(c.words().len(), |o| {
        bind_dispatch(c.words(), b.words(), algebra, true, o)
    });
    Ok(PackedHv::from_words_unchecked(c.dim(), out))
}

/// `-a` (the planes swapped).
pub fn negate(a: &PackedHv) -> PackedHv {
    let w = plane_words(a.dim());
    let mut out = a.words()[w..].to_vec();
    out.extend_from_slice(&a.words()[..w]);
    PackedHv::from_words_unchecked(a.dim(), out)
}

/// Fills `dst` with consecutive 64-bit windows of `src` starting at bit
/// `start`: `dst[i]` = bits `[start + 64 i, start + 64 i + 64)`. Every bit read
/// must lie in `src` (the caller splits the output where the source wraps).
#[inline(always)]
fn shifted_copy(src: &[u64], start: usize, dst: &mut [MaybeUninit<u64>]) {
    let (w0, off) = (start / 64, start % 64);
    if off == 0 {
        for (d, &s) in dst.iter_mut().zip(&src[w0..]) {
            d.write(s);
        }
    } else {
        let lo = &src[w0..w0 + dst.len()];
        let hi = &src[w0 + 1..w0 + 1 + dst.len()];
        for ((d, &l), &h) in dst.iter_mut().zip(lo).zip(hi) {
            d.write((l >> off) | (h << (64 - off)));
        }
    }
}

/// Bits `[start, start + len)` of a plane (`len <= 64`, `start + len` within
/// the plane's valid bits), as the low bits of a word.
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

/// Rotates one plane of `dim` bits: output bit `j` = input bit `(j + s0) mod dim`.
/// The full output words before the source wraps past `dim` (run 1) and after
/// it (run 2) are funnel shifts of two source words; the seam word and the
/// partial last word go bit range by bit range.
fn rotate_plane(dim: usize, src: &[u64], s0: usize, dst: &mut [MaybeUninit<u64>]) {
    let w = dst.len();
    let full = dim / 64; // output words with 64 valid bits
    let word = |ow: usize| {
        let len = (dim - 64 * ow).min(64);
        extract_cyclic(src, dim, (s0 + 64 * ow) % dim, len)
    };
    // Run 1: output words [0, n1) read source bits [s0, s0 + 64 n1) <= dim.
    let n1 = ((dim - s0) / 64).min(full);
    shifted_copy(src, s0, &mut dst[..n1]);
    if n1 == w {
        return;
    }
    dst[n1].write(word(n1));
    // Run 2: s0 + 64 (n1 + 1) > dim, so these read [s0 + 64 ow - dim, ...) < s0.
    if n1 + 1 < full {
        shifted_copy(src, s0 + 64 * (n1 + 1) - dim, &mut dst[n1 + 1..full]);
    }
    if full < w && full > n1 {
        dst[full].write(word(full));
    }
}

/// Permute on raw words: `out[(i + k) mod dim] = a[i]`, i.e. output bit `j`
/// is input bit `(j - k) mod dim`.
pub fn permute_words(dim: usize, a: &[u64], k: i64, out: &mut [u64]) {
    permute_into(dim, a, k, as_uninit(out))
}

fn permute_into(dim: usize, a: &[u64], k: i64, out: &mut [MaybeUninit<u64>]) {
    if dim == 0 {
        return;
    }
    let w = plane_words(dim);
    let k = k.rem_euclid(dim as i64) as usize;
    let s0 = (dim - k) % dim; // source bit of output bit 0
    let (op, om) = out[..2 * w].split_at_mut(w);
    rotate_plane(dim, &a[..w], s0, op);
    rotate_plane(dim, &a[w..2 * w], s0, om);
}

/// Cyclic shift by `k`: `out[(i + k) mod dim] = a[i]` (any `k`, negative
/// shifts left).
pub fn permute(a: &PackedHv, k: i64) -> PackedHv {
    let out = new_words(packed_words(a.dim()), |o| {
        permute_into(a.dim(), a.words(), k, o)
    });
    PackedHv::from_words_unchecked(a.dim(), out)
}

/// The inverse of [`permute`] by `k` (a shift by `-k`).
pub fn inverse_permute(a: &PackedHv, k: i64) -> PackedHv {
    let d = a.dim().max(1) as i64;
    permute(a, -(k.rem_euclid(d)))
}

/// `(agree, disagree, nnz(a), nnz(b))` of two valid packed word buffers of the
/// same dim, at `level`.
pub fn pair_counts_at(level: CpuLevel, a: &[u64], b: &[u64]) -> (u64, u64, u64, u64) {
    let w = a.len() / 2;
    let (ap, am) = a.split_at(w);
    let (bp, bm) = b.split_at(w);
    simd::counts4_at(level, ap, am, bp, bm)
}

/// Similarity of raw words (validated, same dim) by `metric`, at `level`.
pub fn similarity_words_at(level: CpuLevel, a: &[u64], b: &[u64], metric: Metric) -> f64 {
    let (agree, dis, na, nb) = pair_counts_at(level, a, b);
    metric.score(agree, dis, na, nb)
}

/// Similarity by `metric` (dot, cosine, or Hamming distance). Errors: different dims.
pub fn similarity(a: &PackedHv, b: &PackedHv, metric: Metric) -> Result<f64> {
    same_dim(a, b)?;
    Ok(similarity_words_at(
        cpu::active(),
        a.words(),
        b.words(),
        metric,
    ))
}

/// `Σ a_i b_i`. Errors: different dims.
pub fn dot(a: &PackedHv, b: &PackedHv) -> Result<i64> {
    same_dim(a, b)?;
    let (agree, dis, _, _) = pair_counts_at(cpu::active(), a.words(), b.words());
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
    if !rows.len().is_multiple_of(stride) {
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
    let level = cpu::active();
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
