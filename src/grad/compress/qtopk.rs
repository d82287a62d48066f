//! Quantized top-k: the `k` largest-magnitude coordinates, each sent as a
//! Golomb-Rice coded position, a sign and a `v`-bit magnitude code (`v` in
//! 0..=4) indexing `2^v` magnitude levels that travel with the payload.
//!
//! Why: at 32x a top-k payload that spends 64 bits on each kept coordinate
//! keeps 1 in 64 of them. A Rice-coded position costs about `log2(n/k) + 2`
//! bits, so with a sign and 2 magnitude bits the same bytes carry about 1 in 8
//! coordinates (1 in 29 at 100x); error feedback returns the quantization error
//! to the next step. On the char-LM experiment this trains far better than
//! exact top-k at the same wire size (see BENCHMARKS.md). With `v = 0` it is
//! sparse ternary compression (Sattler et al. 2019): `±μ`, one magnitude.
//!
//! Levels: the kept magnitudes lie in `[τ, m]` (the k-th largest and the
//! largest); bin `c` holds those with `τ (m/τ)^(c/L) <= |x| < τ (m/τ)^((c+1)/L)`
//! (`L = 2^v`, the last bin closed), and its level is the mean magnitude of
//! the bin's members (the least-squares value for that assignment), or the
//! bin's geometric centre when it is empty.
//!
//! Body layout (after the payload header, all little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | `4 L` | the levels, f32, finite and `>= 0` |
//! | `stream_bytes(dim, k, r, v)` | the bit stream, least significant bit first |
//!
//! Each kept index `i_j` (strictly increasing) is coded from its gap
//! `g_j = i_j - i_{j-1} - 1` (with `i_{-1} = -1`): `g_j >> r` one-bits, a zero
//! bit, the low `r` bits of `g_j`, a sign bit (1 = negative), then the `v`-bit
//! level code. Because `sum g_j <= dim - k`, the stream never needs more than
//! `k (r + 2 + v) + ((dim - k) >> r)` bits, so its length is fixed by
//! `(dim, k, r, v)` and every worker sends the same number of bytes; unused
//! bits are zero.

use super::topk;
use crate::cpu::{self, CpuLevel, Kernel};
use crate::{Error, Result};

/// Largest magnitude-code width.
pub const MAX_VALUE_BITS: usize = 4;
/// Default magnitude-code width (the best of 0..=4 on the char-LM experiment).
pub const DEFAULT_VALUE_BITS: usize = 2;

/// Largest Rice parameter.
pub const MAX_RICE: usize = 31;

/// Bits of the stream's upper bound for `k` entries with Rice parameter `r`
/// and `v`-bit codes.
fn stream_bits(dim: usize, k: usize, r: usize, v: usize) -> Option<usize> {
    let k_bits = k.checked_mul(r + 2 + v)?;
    k_bits.checked_add(dim.checked_sub(k)? >> r)
}

/// Bytes of the bit stream (see the module docs); `None` if `k > dim` or on
/// overflow.
pub fn stream_bytes(dim: usize, k: usize, r: usize, v: usize) -> Option<usize> {
    Some(stream_bits(dim, k, r, v)?.div_ceil(8))
}

/// Body bytes: the `2^v` levels plus the stream.
pub fn body_bytes(dim: usize, k: usize, r: usize, v: usize) -> Option<usize> {
    stream_bytes(dim, k, r, v)?.checked_add(4 << v)
}

/// The header's `b` parameter: `r | v << 8`.
pub fn pack_b(r: usize, v: usize) -> usize {
    r | v << 8
}

/// `(r, v)` from the header's `b`, if both are in range.
pub fn unpack_b(b: usize) -> Option<(usize, usize)> {
    let (r, v) = (b & 0xFF, b >> 8);
    (r <= MAX_RICE && v <= MAX_VALUE_BITS).then_some((r, v))
}

/// `(k, r)` with the most kept coordinates whose body (with `v`-bit codes)
/// fits in `floor(4 dim / ratio)` bytes (at least `k = 1`, `r` the best for
/// that `k`).
pub fn params_for_ratio(dim: usize, ratio: f64, v: usize) -> (usize, usize) {
    let budget = ((4 * dim) as f64 / ratio).floor() as usize;
    let mut best = (0usize, 0usize);
    for r in 0..=MAX_RICE.min(usize::BITS as usize - 1) {
        // body_bytes is nondecreasing in k: binary search the largest that fits.
        let (mut lo, mut hi) = (0usize, dim);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            match body_bytes(dim, mid, r, v) {
                Some(b) if b <= budget => lo = mid,
                _ => hi = mid - 1,
            }
        }
        if lo > best.0 {
            best = (lo, r);
        }
    }
    if best.0 == 0 {
        // Even one entry does not fit the budget: keep one anyway (the ratio
        // is then below the target, as for top-k's `k >= 1`).
        let r = (0..=MAX_RICE)
            .min_by_key(|&r| body_bytes(dim, 1, r, v).unwrap_or(usize::MAX))
            .unwrap_or(0);
        best = (1.min(dim), r);
    }
    best
}

/// Compresses `x`: returns `(levels, stream)`; the kept indices are the
/// top-k (ties broken by the lower index, as [`topk::top_k_indices`]).
/// Errors: `r` or `v` out of range, `k > x.len()`, a NaN or infinity in `x`
/// (named `grad`).
pub fn compress(x: &[f32], k: usize, r: usize, v: usize) -> Result<(Vec<f32>, Vec<u8>)> {
    compress_level(x, k, r, v, cpu::active())
}

/// [`compress`] with the kernels of `level` (the same bytes at every level).
pub fn compress_level(
    x: &[f32],
    k: usize,
    r: usize,
    v: usize,
    level: CpuLevel,
) -> Result<(Vec<f32>, Vec<u8>)> {
    compress_kept(x, k, r, v, level).map(|(levels, stream, _, _)| (levels, stream))
}

/// [`compress`], also returning the kept indices and their level codes (what
/// [`decode_entries`] would recover from the stream), for error feedback.
pub(crate) type Kept = (Vec<f32>, Vec<u8>, Vec<u32>, Vec<u8>);

/// See [`Kept`].
pub(crate) fn compress_kept(
    x: &[f32],
    k: usize,
    r: usize,
    v: usize,
    level: CpuLevel,
) -> Result<Kept> {
    if r > MAX_RICE {
        return Err(Error::invalid(
            "r",
            format!("Rice parameter {r} > {MAX_RICE}"),
        ));
    }
    if v > MAX_VALUE_BITS {
        return Err(Error::invalid(
            "value_bits",
            format!("{v} > {MAX_VALUE_BITS}"),
        ));
    }
    // The fused path declines a non-finite input (it sees the largest
    // magnitude anyway); the reference path needs the check.
    if let Some(kept) = compress_fused(x, k, r, v, topk::kernel_at(level)) {
        return Ok(kept);
    }
    crate::check_finite(x, "grad")?;
    let idx = topk::top_k_indices_level(x, k, level)?;
    let nl = 1usize << v;
    // Bin edges, log-uniform in [tau, m]: code = number of edges <= |x|.
    let (tau, m) = idx.iter().fold((f32::INFINITY, 0f32), |(lo, hi), &i| {
        let a = x[i as usize].abs();
        (lo.min(a), hi.max(a))
    });
    let edges = bin_edges(k, v, tau, m);
    let len = stream_bytes(x.len(), k, r, v).ok_or_else(|| Error::invalid("k", "too large"))?;
    let kern = topk::kernel_at(level);
    if !matches!(kern, Kernel::Scalar) && x.len() <= u32::MAX as usize {
        // SIMD levels: the fused path's coding of the kept entries (the same
        // bytes as the scalar loop below, which stays the reference).
        let run = |nlog: usize| match nlog {
            0 => encode_kept::<1>(x, kern, &idx, tau.to_bits(), &edges, r, len),
            1 => encode_kept::<2>(x, kern, &idx, tau.to_bits(), &edges, r, len),
            2 => encode_kept::<4>(x, kern, &idx, tau.to_bits(), &edges, r, len),
            3 => encode_kept::<8>(x, kern, &idx, tau.to_bits(), &edges, r, len),
            _ => encode_kept::<16>(x, kern, &idx, tau.to_bits(), &edges, r, len),
        };
        let (sum, cnt, codes, stream) = run(v);
        let levels = bin_levels(nl, &sum, &cnt, &edges, tau, m);
        return Ok((levels, stream, idx, codes));
    }
    let mut w = BitWriter::new(len);
    // One pass over the kept entries: code, bin sums, the coded entry.
    let (sum, cnt, codes) = match v {
        0 => encode_entries::<1>(x, &idx, &edges, r, &mut w),
        1 => encode_entries::<2>(x, &idx, &edges, r, &mut w),
        2 => encode_entries::<4>(x, &idx, &edges, r, &mut w),
        3 => encode_entries::<8>(x, &idx, &edges, r, &mut w),
        _ => encode_entries::<16>(x, &idx, &edges, r, &mut w),
    };
    let levels = bin_levels(nl, &sum, &cnt, &edges, tau, m);
    Ok((levels, w.finish(), idx, codes))
}

/// Bin edges, log-uniform in `[tau, m]` (`tau`, `m`: the smallest and the
/// largest kept magnitude): code = number of edges `<= |x|`. None when
/// every code is 0.
fn bin_edges(k: usize, v: usize, tau: f32, m: f32) -> Vec<f32> {
    let nl = 1usize << v;
    if k == 0 || v == 0 || m == 0.0 {
        Vec::new()
    } else {
        let lo = (tau as f64).max(m as f64 * 1e-30);
        let ratio = m as f64 / lo;
        (1..nl)
            .map(|j| (lo * ratio.powf(j as f64 / nl as f64)) as f32)
            .collect()
    }
}

/// Levels: bin means (f64 sums), empty bins their geometric centre.
fn bin_levels(nl: usize, sum: &[f64], cnt: &[usize], edges: &[f32], tau: f32, m: f32) -> Vec<f32> {
    (0..nl)
        .map(|c| {
            if cnt[c] > 0 {
                (sum[c] / cnt[c] as f64) as f32
            } else if edges.is_empty() {
                0.0
            } else {
                let lo = if c == 0 { tau } else { edges[c - 1] };
                let hi = if c == nl - 1 { m } else { edges[c] };
                ((lo as f64) * (hi as f64)).sqrt() as f32
            }
        })
        .collect()
}

/// Elements per block of the fused pass: the block's kept indices are
/// left-packed, then coded while the block is still in L1.
const FUSED_BLOCK: usize = 2048;

/// The SIMD-level encoder for large inputs: the k-th largest magnitude from
/// [`topk::bracket_kth`] (one pass, which also yields the largest), then
/// one fused pass that selects the kept entries block by block (ties at the
/// k-th largest by ascending index, as [`topk::top_k_indices`]) and codes
/// them with a branch-free bit writer. The same kept set, codes, bin sums
/// (f64, index order) and bytes as the reference path; `None` (take the
/// reference path) at the scalar level, for small inputs, when the
/// bracket misses, or when `x` holds a non-finite value.
fn compress_fused(x: &[f32], k: usize, r: usize, v: usize, kern: Kernel) -> Option<Kept> {
    let n = x.len();
    if n > u32::MAX as usize || k == 0 || k >= n {
        return None;
    }
    let len = stream_bytes(n, k, r, v)?;
    let (kth, max) = topk::bracket_kth(kern, x, k)?;
    if max >= 0x7F80_0000 {
        return None;
    }
    let (tau, m) = (f32::from_bits(kth.tau), f32::from_bits(max));
    let edges = bin_edges(k, v, tau, m);
    let ties = k - kth.above;
    let run = |nlog: usize| match nlog {
        0 => encode_fused::<1>(x, kern, kth.tau, ties, k, &edges, r, len),
        1 => encode_fused::<2>(x, kern, kth.tau, ties, k, &edges, r, len),
        2 => encode_fused::<4>(x, kern, kth.tau, ties, k, &edges, r, len),
        3 => encode_fused::<8>(x, kern, kth.tau, ties, k, &edges, r, len),
        _ => encode_fused::<16>(x, kern, kth.tau, ties, k, &edges, r, len),
    };
    let (sum, cnt, idx, codes, stream) = run(v);
    debug_assert_eq!(idx.len(), k);
    let levels = bin_levels(1 << v, &sum, &cnt, &edges, tau, m);
    Some((levels, stream, idx, codes))
}

/// Result of [`encode_fused`]: bin sums and counts, kept indices, codes,
/// the stream.
type Fused = ([f64; 16], [usize; 16], Vec<u32>, Vec<u8>, Vec<u8>);

/// See [`compress_fused`]: `tau` the k-th largest magnitude (bits), `ties`
/// how many entries at `tau` are kept (the first by index).
///
/// Block by block: the candidates (magnitude `>= tau`) are left-packed, their
/// codes and magnitudes computed eight at a time ([`code_block`]), the ties
/// past the first `ties` dropped (only in a block that holds one), and the
/// entries written while the block is still in L1. The bin sums come last,
/// from the magnitudes ([`bin_sums`]).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn encode_fused<const NL: usize>(
    x: &[f32],
    kern: Kernel,
    tau: u32,
    mut ties: usize,
    k: usize,
    edges: &[f32],
    r: usize,
    len: usize,
) -> Fused {
    let v = NL.trailing_zeros() as usize;
    let mut e = [f32::INFINITY; 16];
    e[..edges.len()].copy_from_slice(edges);
    // Before a block's ties are dropped at most k entries are kept, so a
    // block's candidates end below k + FUSED_BLOCK.
    let cap = k + FUSED_BLOCK;
    let mut idx: Vec<u32> = Vec::with_capacity(cap);
    let mut codes = vec![0u8; cap];
    let mut vals = vec![0u32; cap];
    let mut w = FastWriter::new(len);
    let mut prev: i64 = -1;
    let mut words = vec![0u32; FUSED_BLOCK];
    let mut nbits = vec![0u8; FUSED_BLOCK];
    for (b, xb) in x.chunks(FUSED_BLOCK).enumerate() {
        let base = b * FUSED_BLOCK;
        let start = idx.len();
        topk::select_ge_at(kern, xb, base as u32, tau, &mut idx);
        let end = idx.len();
        let has_tie = code_block::<NL>(
            kern,
            xb,
            base as u32,
            tau,
            &e,
            &idx[start..end],
            &mut codes[start..end],
            &mut vals[start..end],
        );
        let mut keep = end;
        if has_tie {
            keep = start;
            for j in start..end {
                if vals[j] & 0x7FFF_FFFF == tau {
                    if ties == 0 {
                        continue;
                    }
                    ties -= 1;
                }
                idx[keep] = idx[j];
                codes[keep] = codes[j];
                vals[keep] = vals[j];
                keep += 1;
            }
            idx.truncate(keep);
        }
        // Each entry as one word of at most 32 bits (0 bits: longer, written
        // field by field), two words a write when they fit.
        let nb = keep - start;
        entry_words(
            kern,
            &idx[start..keep],
            &codes[start..keep],
            &vals[start..keep],
            prev as u32,
            r,
            v,
            &mut words[..nb],
            &mut nbits[..nb],
        );
        put_words(
            &mut w,
            prev,
            &idx[start..keep],
            &codes[start..keep],
            &vals[start..keep],
            &words[..nb],
            &nbits[..nb],
            r,
            v,
        );
        if keep > start {
            prev = idx[keep - 1] as i64;
        }
    }
    codes.truncate(idx.len());
    vals.truncate(idx.len());
    let (sum, cnt) = bin_sums::<NL>(&vals, &codes, edges, tau);
    (sum, cnt, idx, codes, w.finish())
}

/// Writes the entries `idx` (ascending; `prev` the index before the first,
/// -1 for none) from their [`entry_words`], two words a write when they fit
/// in 56 bits; an entry longer than 32 bits (`nbits` 0) field by field.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn put_words(
    w: &mut FastWriter,
    prev: i64,
    idx: &[u32],
    codes: &[u8],
    vals: &[u32],
    words: &[u32],
    nbits: &[u8],
    r: usize,
    v: usize,
) {
    let nb = words.len();
    let mut j = 0;
    while j < nb {
        let (w0, n0) = (words[j] as u64, nbits[j] as usize);
        if j + 1 < nb && n0 > 0 && nbits[j + 1] > 0 {
            let (w1, n1) = (words[j + 1] as u64, nbits[j + 1] as usize);
            if n0 + n1 <= 56 {
                w.put(w0 | w1 << n0, n0 + n1);
                j += 2;
                continue;
            }
        }
        if n0 > 0 {
            w.put(w0, n0);
        } else {
            let p = if j == 0 { prev } else { idx[j - 1] as i64 };
            let neg = (vals[j] >> 31) as u64;
            write_entry(
                w,
                (idx[j] as i64 - p - 1) as u64,
                r,
                v,
                neg,
                codes[j] as u64,
            );
        }
        j += 1;
    }
}

/// The reference path's coding at the SIMD levels: the kept entries `idx`
/// (ascending) of `x`, `tau` the smallest kept magnitude (bits), with
/// [`code_block`], [`entry_words`], [`put_words`] and [`bin_sums`] on the
/// whole input (small: below the bracket's minimum, or where the bracket
/// missed). Returns the bin sums and counts, the codes and the stream.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn encode_kept<const NL: usize>(
    x: &[f32],
    kern: Kernel,
    idx: &[u32],
    tau: u32,
    edges: &[f32],
    r: usize,
    len: usize,
) -> ([f64; 16], [usize; 16], Vec<u8>, Vec<u8>) {
    let v = NL.trailing_zeros() as usize;
    let k = idx.len();
    let mut e = [f32::INFINITY; 16];
    e[..edges.len()].copy_from_slice(edges);
    let (mut codes, mut vals) = (vec![0u8; k], vec![0u32; k]);
    code_block::<NL>(kern, x, 0, tau, &e, idx, &mut codes, &mut vals);
    let (mut words, mut nbits) = (vec![0u32; k], vec![0u8; k]);
    entry_words(
        kern,
        idx,
        &codes,
        &vals,
        u32::MAX,
        r,
        v,
        &mut words,
        &mut nbits,
    );
    let mut w = FastWriter::new(len);
    put_words(&mut w, -1, idx, &codes, &vals, &words, &nbits, r, v);
    let (sum, cnt) = bin_sums::<NL>(&vals, &codes, edges, tau);
    (sum, cnt, codes, w.finish())
}

/// Codes (`codes`) and f32 bits (`vals`) of the block `xb`'s entries
/// `idx` (indices in `x`; the block starts at `base`); `e` the bin edges
/// padded with infinities. Returns whether any magnitude equals `tau`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn code_block<const NL: usize>(
    kern: Kernel,
    xb: &[f32],
    base: u32,
    tau: u32,
    e: &[f32; 16],
    idx: &[u32],
    codes: &mut [u8],
    vals: &mut [u32],
) -> bool {
    assert!(codes.len() == idx.len() && vals.len() == idx.len());
    match kern {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the kernel is picked only after AVX2 was detected; the
        // lengths are equal (asserted) and every index is in the block.
        Kernel::Avx2 | Kernel::Avx512 => unsafe {
            code_block_avx2::<NL>(xb, base, tau, e, idx, codes, vals)
        },
        Kernel::Scalar => code_block_scalar::<NL>(xb, base, tau, e, idx, codes, vals),
    }
}

fn code_block_scalar<const NL: usize>(
    xb: &[f32],
    base: u32,
    tau: u32,
    e: &[f32; 16],
    idx: &[u32],
    codes: &mut [u8],
    vals: &mut [u32],
) -> bool {
    let mut tie = false;
    for ((&i, c), m) in idx.iter().zip(codes.iter_mut()).zip(vals.iter_mut()) {
        let raw = xb[(i - base) as usize].to_bits();
        let bits = raw & 0x7FFF_FFFF;
        let a = f32::from_bits(bits);
        *c = e[..NL - 1].iter().filter(|&&ej| ej <= a).count() as u8;
        *m = raw;
        tie |= bits == tau;
    }
    tie
}

/// [`code_block_scalar`] eight entries at a time: a gather, one compare per
/// edge, the codes narrowed to bytes.
///
/// # Safety
/// The CPU must support AVX2; `codes` and `vals` are as long as `idx`, and
/// every `idx[j] - base` indexes `xb`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn code_block_avx2<const NL: usize>(
    xb: &[f32],
    base: u32,
    tau: u32,
    e: &[f32; 16],
    idx: &[u32],
    codes: &mut [u8],
    vals: &mut [u32],
) -> bool {
    use std::arch::x86_64::*;
    let n = idx.len();
    let absm = _mm256_set1_epi32(0x7FFF_FFFF);
    let basev = _mm256_set1_epi32(base as i32);
    let tauv = _mm256_set1_epi32(tau as i32);
    let mut ev = [_mm256_setzero_ps(); 16];
    for t in 0..NL - 1 {
        ev[t] = _mm256_set1_ps(e[t]);
    }
    let mut tie = _mm256_setzero_si256();
    let mut j = 0;
    while j + 8 <= n {
        // SAFETY: j + 8 <= n for idx, codes and vals; the gathered offsets
        // index xb (the caller's contract).
        unsafe {
            let iv = _mm256_sub_epi32(
                _mm256_loadu_si256(idx.as_ptr().add(j) as *const __m256i),
                basev,
            );
            let xv = _mm256_i32gather_epi32::<4>(xb.as_ptr() as *const i32, iv);
            let m = _mm256_and_si256(xv, absm);
            let mf = _mm256_castsi256_ps(m);
            _mm256_storeu_si256(vals.as_mut_ptr().add(j) as *mut __m256i, xv);
            let mut c = _mm256_setzero_si256();
            for et in &ev[..NL - 1] {
                // all ones (-1) where the edge is <= the magnitude
                c = _mm256_sub_epi32(c, _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(*et, mf)));
            }
            tie = _mm256_or_si256(tie, _mm256_cmpeq_epi32(m, tauv));
            // codes 0..15 to bytes: c0..c3 and c4..c7 lead their 128-bit lanes
            let c16 = _mm256_packs_epi32(c, c);
            let c8 = _mm256_packus_epi16(c16, c16);
            let lo = _mm256_castsi256_si128(c8);
            let hi = _mm256_extracti128_si256::<1>(c8);
            _mm_storel_epi64(
                codes.as_mut_ptr().add(j) as *mut __m128i,
                _mm_unpacklo_epi32(lo, hi),
            );
        }
        j += 8;
    }
    let tie = _mm256_movemask_ps(_mm256_castsi256_ps(tie)) != 0;
    tie | code_block_scalar::<NL>(xb, base, tau, e, &idx[j..], &mut codes[j..], &mut vals[j..])
}

/// The coded form of entries `idx` (ascending; `prev` the index before the
/// first, `u32::MAX` for none): `words[j]` holds entry `j`'s bits as
/// [`write_entry`] writes them in one piece and `nbits[j]` their number, or
/// 0 when the entry needs more than 32 bits.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn entry_words(
    kern: Kernel,
    idx: &[u32],
    codes: &[u8],
    vals: &[u32],
    prev: u32,
    r: usize,
    v: usize,
    words: &mut [u32],
    nbits: &mut [u8],
) {
    let n = idx.len();
    assert!(codes.len() == n && vals.len() == n && words.len() == n && nbits.len() == n);
    let done = match kern {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the kernel is picked only after AVX2 was detected; the
        // lengths are equal (asserted).
        Kernel::Avx2 | Kernel::Avx512 => unsafe {
            entry_words_avx2(idx, codes, vals, prev, r, v, words, nbits)
        },
        Kernel::Scalar => 0,
    };
    let mut p = if done == 0 { prev } else { idx[done - 1] };
    for j in done..n {
        let g = idx[j].wrapping_sub(p).wrapping_sub(1) as u64;
        p = idx[j];
        let q = g >> r;
        let nb = q as usize + r + 2 + v;
        if nb <= 32 {
            words[j] = (((1u64 << q) - 1)
                | (g & ((1u64 << r) - 1)) << (q + 1)
                | ((vals[j] >> 31) as u64) << (q as usize + 1 + r)
                | (codes[j] as u64) << (q as usize + 2 + r)) as u32;
            nbits[j] = nb as u8;
        } else {
            nbits[j] = 0;
        }
    }
}

/// [`entry_words`] eight entries at a time (variable shifts); returns how
/// many entries it did (a multiple of 8).
///
/// # Safety
/// The CPU must support AVX2; all slices are `idx.len()` long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn entry_words_avx2(
    idx: &[u32],
    codes: &[u8],
    vals: &[u32],
    prev: u32,
    r: usize,
    v: usize,
    words: &mut [u32],
    nbits: &mut [u8],
) -> usize {
    use std::arch::x86_64::*;
    let n = idx.len();
    let one = _mm256_set1_epi32(1);
    let rv = _mm256_set1_epi32(r as i32);
    let rmask = _mm256_set1_epi32(((1u64 << r) - 1) as i32);
    let fixed = _mm256_set1_epi32((r + 2 + v) as i32);
    let limit = _mm256_set1_epi32(33);
    let shift_prev = _mm256_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6);
    let mut p = _mm256_set1_epi32(prev as i32);
    let mut j = 0;
    while j + 8 <= n {
        // SAFETY: j + 8 <= n for every slice.
        unsafe {
            let cur = _mm256_loadu_si256(idx.as_ptr().add(j) as *const __m256i);
            // the previous index of each lane
            let before = _mm256_blend_epi32::<1>(_mm256_permutevar8x32_epi32(cur, shift_prev), p);
            let g = _mm256_sub_epi32(_mm256_sub_epi32(cur, before), one);
            let q = _mm256_srlv_epi32(g, rv);
            let nb = _mm256_add_epi32(q, fixed);
            let fits = _mm256_cmpgt_epi32(limit, nb);
            let q1 = _mm256_add_epi32(q, one);
            let q1r = _mm256_add_epi32(q1, rv);
            let neg =
                _mm256_srli_epi32::<31>(_mm256_loadu_si256(vals.as_ptr().add(j) as *const __m256i));
            let c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(codes.as_ptr().add(j) as *const __m128i));
            let w = _mm256_or_si256(
                _mm256_or_si256(
                    _mm256_sub_epi32(_mm256_sllv_epi32(one, q), one),
                    _mm256_sllv_epi32(_mm256_and_si256(g, rmask), q1),
                ),
                _mm256_or_si256(
                    _mm256_sllv_epi32(neg, q1r),
                    _mm256_sllv_epi32(c, _mm256_add_epi32(q1r, one)),
                ),
            );
            _mm256_storeu_si256(words.as_mut_ptr().add(j) as *mut __m256i, w);
            // nbits (0 where the entry does not fit) narrowed to bytes
            let nbm = _mm256_and_si256(nb, fits);
            let n16 = _mm256_packs_epi32(nbm, nbm);
            let n8 = _mm256_packus_epi16(n16, n16);
            _mm_storel_epi64(
                nbits.as_mut_ptr().add(j) as *mut __m128i,
                _mm_unpacklo_epi32(
                    _mm256_castsi256_si128(n8),
                    _mm256_extracti128_si256::<1>(n8),
                ),
            );
            p = _mm256_set1_epi32(idx[j + 7] as i32);
        }
        j += 8;
    }
    j
}

/// Interleaved copies of the bin sums in [`bin_sums`].
const LANES: usize = 4;

/// Each bin's count and magnitude sum (`mags`: f32 bits, signs ignored), with the bits of
/// adding its magnitudes in index order in f64 (the reference path's sums).
///
/// The sum is taken over `LANES` interleaved partial sums, which is the same:
/// the magnitudes of bin `c` lie in `[lo, hi]` (its edges; `tau` and the
/// largest for the outer bins), so all are multiples of `u`, the spacing of
/// f32 at `lo`. Every partial sum, in any order, is then a multiple of `u`
/// no larger than `cnt * hi`; when that is below `2^52 u` it is an f64,
/// every addition is exact and the order does not matter. A bin outside
/// that bound (a huge spread of magnitudes or count) is summed again in
/// index order.
fn bin_sums<const NL: usize>(
    mags: &[u32],
    codes: &[u8],
    edges: &[f32],
    tau: u32,
) -> ([f64; 16], [usize; 16]) {
    let mut sums = [[0f64; NL]; LANES];
    let mut cnts = [[0u32; NL]; LANES];
    let mut mc = mags.chunks_exact(LANES);
    let mut cc = codes.chunks_exact(LANES);
    for (m4, c4) in (&mut mc).zip(&mut cc) {
        for l in 0..LANES {
            let c = c4[l] as usize & (NL - 1);
            sums[l][c] += f32::from_bits(m4[l] & 0x7FFF_FFFF) as f64;
            cnts[l][c] += 1;
        }
    }
    for (l, (&m, &c)) in mc.remainder().iter().zip(cc.remainder()).enumerate() {
        let c = c as usize & (NL - 1);
        sums[l][c] += f32::from_bits(m & 0x7FFF_FFFF) as f64;
        cnts[l][c] += 1;
    }
    let max = mags.iter().map(|&m| m & 0x7FFF_FFFF).max().unwrap_or(0);
    let (mut sum, mut cnt) = ([0f64; 16], [0usize; 16]);
    for c in 0..NL {
        cnt[c] = cnts.iter().map(|l| l[c] as usize).sum();
        if cnt[c] == 0 {
            continue;
        }
        let lo = if c == 0 { tau } else { edges[c - 1].to_bits() };
        let hi = if c + 1 < NL && c < edges.len() {
            edges[c].to_bits()
        } else {
            max
        };
        // spacing of f32 at lo: 2^(E - 150) for exponent field E (2^-149
        // for subnormals and zero)
        let u = 2f64.powi(((lo >> 23) as i32).max(1) - 150);
        sum[c] = if (cnt[c] as f64) * (f32::from_bits(hi) as f64) < u * 2f64.powi(52) {
            sums.iter().fold(0.0, |s, l| s + l[c])
        } else {
            mags.iter()
                .zip(codes)
                .filter(|&(_, &cc)| cc as usize == c)
                .fold(0.0, |s, (&m, _)| s + f32::from_bits(m & 0x7FFF_FFFF) as f64)
        };
    }
    (sum, cnt)
}

/// Where coded entries go (the two bit writers).
trait BitSink {
    /// Appends the low `n` (<= 32) bits of `v`.
    fn put(&mut self, v: u64, n: usize);
    /// Appends `q` one-bits.
    fn ones(&mut self, q: u64);
}

/// Writes one entry: the gap `g` (`g >> r` ones and a zero, then its low `r`
/// bits), the sign bit `neg` and the `v`-bit code `c`; one write when the
/// entry fits in 32 bits.
#[inline(always)]
fn write_entry<W: BitSink>(w: &mut W, g: u64, r: usize, v: usize, neg: u64, c: u64) {
    let q = g >> r;
    let rmask = (1u64 << r) - 1;
    let nbits = q as usize + r + 2 + v;
    if nbits <= 32 {
        let word = ((1u64 << q) - 1)
            | (g & rmask) << (q + 1)
            | neg << (q as usize + 1 + r)
            | c << (q as usize + 2 + r);
        w.put(word, nbits);
    } else {
        w.ones(q);
        w.put(0, 1);
        if r > 0 {
            w.put(g & rmask, r);
        }
        w.put(neg, 1);
        if v > 0 {
            w.put(c, v);
        }
    }
}

/// A bit writer without a branch per write: every write stores the whole
/// 64-bit accumulator at the current byte and advances by the bytes it
/// completed (the buffer keeps 8 bytes of slack, zero, dropped at the end).
struct FastWriter {
    buf: Vec<u8>,
    len: usize,
    pos: usize,
    acc: u64,
    n: usize,
}

impl BitSink for FastWriter {
    #[inline(always)]
    fn put(&mut self, v: u64, n: usize) {
        FastWriter::put(self, v, n)
    }
    #[inline(always)]
    fn ones(&mut self, q: u64) {
        FastWriter::ones(self, q)
    }
}

impl FastWriter {
    fn new(len: usize) -> Self {
        FastWriter {
            buf: vec![0u8; len + 8],
            len,
            pos: 0,
            acc: 0,
            n: 0,
        }
    }
    /// Appends the low `n` (<= 56) bits of `v` (fewer than 8 bits wait
    /// between calls).
    #[inline(always)]
    fn put(&mut self, v: u64, n: usize) {
        debug_assert!(n <= 56 && v >> n == 0 && self.n < 8);
        self.acc |= v << self.n;
        self.n += n;
        self.buf[self.pos..self.pos + 8].copy_from_slice(&self.acc.to_le_bytes());
        let nb = self.n >> 3;
        self.pos += nb;
        self.acc >>= 8 * nb;
        self.n &= 7;
    }
    #[inline]
    fn ones(&mut self, mut q: u64) {
        while q >= 32 {
            self.put(0xFFFF_FFFF, 32);
            q -= 32;
        }
        if q > 0 {
            self.put((1u64 << q) - 1, q as usize);
        }
    }
    fn finish(mut self) -> Vec<u8> {
        debug_assert!(self.pos + self.n.div_ceil(8) <= self.len);
        self.buf.truncate(self.len);
        self.buf
    }
}

/// Codes the kept entries `idx` of `x` into `w` with `NL = 2^v` levels
/// (`edges`: the `NL - 1` bin edges, or none when every code is 0); returns
/// each bin's magnitude sum (f64, in index order) and count, and the codes.
///
/// Each entry goes out as one write of up to 32 bits when it fits
/// (`q` ones, a zero, `r` low gap bits, the sign, `v` code bits), and the bin
/// sums live in `NL` registers (adding 0.0 to the other bins leaves them
/// exact), so consecutive entries of one bin do not wait on a store.
#[inline(always)]
fn encode_entries<const NL: usize>(
    x: &[f32],
    idx: &[u32],
    edges: &[f32],
    r: usize,
    w: &mut BitWriter,
) -> ([f64; 16], [usize; 16], Vec<u8>) {
    let v = NL.trailing_zeros() as usize;
    let mut e = [f32::INFINITY; 16];
    e[..edges.len()].copy_from_slice(edges);
    let mut sum = [0f64; NL];
    let mut cnt = [0usize; NL];
    let mut codes = Vec::with_capacity(idx.len());
    let mut prev: i64 = -1;
    for &i in idx {
        let xv = x[i as usize];
        let a = xv.abs();
        let mut c = 0usize;
        for &ej in &e[..NL - 1] {
            c += (ej <= a) as usize;
        }
        for j in 0..NL {
            let hit = c == j;
            sum[j] += if hit { a as f64 } else { 0.0 };
            cnt[j] += hit as usize;
        }
        codes.push(c as u8);
        let g = (i as i64 - prev - 1) as u64;
        prev = i as i64;
        write_entry(w, g, r, v, xv.is_sign_negative() as u64, c as u64);
    }
    let (mut s16, mut c16) = ([0f64; 16], [0usize; 16]);
    s16[..NL].copy_from_slice(&sum);
    c16[..NL].copy_from_slice(&cnt);
    (s16, c16, codes)
}

/// Calls `f(index, negative, code)` for each coded entry, after validating
/// the whole stream (exactly `k` entries, indices `< dim`, zero padding).
/// Errors are [`Error::InvalidData`] naming `what`.
pub fn decode_entries(
    dim: usize,
    k: usize,
    r: usize,
    v: usize,
    stream: &[u8],
    what: &'static str,
    f: impl FnMut(usize, bool, usize),
) -> Result<()> {
    decode_entries_with::<true>(dim, k, r, v, stream, what, f)
}

/// [`decode_entries`]; `FAST = false` reads every field through the checked
/// bit reader (the reference the one-read fast path is tested against).
fn decode_entries_with<const FAST: bool>(
    dim: usize,
    k: usize,
    r: usize,
    v: usize,
    stream: &[u8],
    what: &'static str,
    mut f: impl FnMut(usize, bool, usize),
) -> Result<()> {
    let bad = |m: String| Error::data(what, m);
    if stream_bytes(dim, k, r, v) != Some(stream.len()) {
        return Err(bad(format!(
            "stream of {} bytes does not match dim {dim}, k {k}, r {r}, v {v}",
            stream.len()
        )));
    }
    let mut rd = BitReader::new(stream);
    let mut next: usize = 0; // smallest index the next entry may take
    let mut j = 0usize;
    while j < k {
        // Fast path: as many whole entries as lie in the 57 bits of one
        // 64-bit read (far from the end of the stream, short gaps); an entry
        // that does not fit takes the checked path, which accepts and
        // rejects exactly the same streams.
        if FAST && rd.pos + 64 <= rd.total {
            let mut w = rd.peek();
            let mut used = 0usize;
            while j < k {
                let q = (!w).trailing_zeros() as usize;
                let len = q + 2 + r + v;
                if used + len > 57 || q > dim {
                    break;
                }
                let rest = w >> (q + 1);
                let g = ((q as u64) << r) | (rest & ((1u64 << r) - 1));
                let neg = (rest >> r) & 1;
                let code = (rest >> (r + 1)) as usize & ((1usize << v) - 1);
                w >>= len;
                used += len;
                // no overflow: next <= dim and g < 2^57
                let i = next as u64 + g;
                if i >= dim as u64 {
                    return Err(bad(format!("entry {j}: index past dim {dim}")));
                }
                f(i as usize, neg == 1, code);
                next = i as usize + 1;
                j += 1;
            }
            rd.pos += used;
            if used > 0 {
                continue;
            }
        }
        let trunc = || bad(format!("entry {j}: truncated"));
        let q = rd
            .unary(dim as u64)
            .ok_or_else(|| bad(format!("entry {j}: truncated or overlong gap")))?;
        let low = rd.bits(r).ok_or_else(trunc)?;
        let neg = rd.bits(1).ok_or_else(trunc)?;
        let code = rd.bits(v).ok_or_else(trunc)?;
        let g = (q << r) | low;
        let i = (next as u64).checked_add(g).filter(|&i| i < dim as u64);
        let Some(i) = i else {
            return Err(bad(format!("entry {j}: index past dim {dim}")));
        };
        f(i as usize, neg == 1, code as usize);
        next = i as usize + 1;
        j += 1;
    }
    if !rd.rest_is_zero() {
        return Err(bad("nonzero padding bits after the last entry".into()));
    }
    Ok(())
}

/// Decodes into `out` (`dim` floats): `±levels[code]` at the coded
/// positions, 0 elsewhere.
pub fn decompress_into(
    levels: &[f32],
    k: usize,
    r: usize,
    stream: &[u8],
    out: &mut [f32],
) -> Result<()> {
    let v = levels.len().trailing_zeros() as usize;
    out.fill(0.0);
    decode_entries(out.len(), k, r, v, stream, "payload", |i, neg, c| {
        out[i] = with_sign(levels[c], neg);
    })
}

/// `-l` when `neg`, else `l`, without a branch (the signs of kept entries
/// are random): the same bits as the negation, which flips the sign bit.
#[inline(always)]
pub(crate) fn with_sign(l: f32, neg: bool) -> f32 {
    f32::from_bits(l.to_bits() ^ ((neg as u32) << 31))
}

struct BitWriter {
    buf: Vec<u8>,
    len: usize,
    acc: u64,
    n: usize,
}

impl BitSink for BitWriter {
    #[inline(always)]
    fn put(&mut self, v: u64, n: usize) {
        self.bits(v, n)
    }
    #[inline(always)]
    fn ones(&mut self, q: u64) {
        BitWriter::ones(self, q)
    }
}

impl BitWriter {
    /// A writer whose output is padded with zero bits to `len` bytes.
    fn new(len: usize) -> Self {
        BitWriter {
            buf: Vec::with_capacity(len),
            len,
            acc: 0,
            n: 0,
        }
    }
    /// Appends the low `n` (<= 32) bits of `v`. Invariant: fewer than 32
    /// bits wait in `acc` between calls, so `acc` never overflows.
    #[inline]
    fn bits(&mut self, v: u64, n: usize) {
        debug_assert!(n <= 32 && v >> n == 0 && self.n < 32);
        self.acc |= v << self.n;
        self.n += n;
        if self.n >= 32 {
            self.buf.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.n -= 32;
        }
    }
    #[inline]
    fn ones(&mut self, mut q: u64) {
        while q >= 32 {
            self.bits(0xFFFF_FFFF, 32);
            q -= 32;
        }
        if q > 0 {
            self.bits((1u64 << q) - 1, q as usize);
        }
    }
    fn finish(mut self) -> Vec<u8> {
        let len = self.len;
        let tail = self.n.div_ceil(8);
        self.buf
            .extend_from_slice(&(self.acc as u32).to_le_bytes()[..tail]);
        debug_assert!(self.buf.len() <= len);
        self.buf.resize(len, 0);
        self.buf
    }
}

struct BitReader<'a> {
    s: &'a [u8],
    pos: usize,   // bit position
    total: usize, // bits in s
}

impl<'a> BitReader<'a> {
    fn new(s: &'a [u8]) -> Self {
        BitReader {
            s,
            pos: 0,
            total: s.len() * 8,
        }
    }
    /// The next (up to) 57 bits from `pos`, least significant first; bits
    /// past the end read as zero.
    #[inline(always)]
    fn peek(&self) -> u64 {
        let (byte, off) = (self.pos / 8, self.pos % 8);
        let w = match self.s.get(byte..byte + 8) {
            Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
            None => {
                let mut buf = [0u8; 8];
                let rest = &self.s[byte.min(self.s.len())..];
                buf[..rest.len()].copy_from_slice(rest);
                u64::from_le_bytes(buf)
            }
        };
        w >> off
    }
    /// `n` (<= 57) bits, least significant first; `None` past the end.
    #[inline(always)]
    fn bits(&mut self, n: usize) -> Option<u64> {
        if n == 0 {
            return Some(0);
        }
        if self.pos + n > self.total {
            return None;
        }
        let v = self.peek() & ((1u64 << n) - 1);
        self.pos += n;
        Some(v)
    }
    /// Counts one-bits up to the terminating zero (consumed); `None` past the
    /// end or beyond `max` ones.
    #[inline(always)]
    fn unary(&mut self, max: u64) -> Option<u64> {
        let mut q = 0u64;
        loop {
            let valid = (self.total - self.pos).min(56);
            if valid == 0 {
                return None;
            }
            let ones = (!self.peek()).trailing_zeros() as usize;
            if ones < valid {
                q += ones as u64;
                self.pos += ones + 1;
                return (q <= max).then_some(q);
            }
            q += valid as u64;
            self.pos += valid;
            if q > max {
                return None;
            }
        }
    }
    fn rest_is_zero(&self) -> bool {
        let (byte, off) = (self.pos / 8, self.pos % 8);
        if off != 0 && self.s[byte] >> off != 0 {
            return false;
        }
        let from = byte + (off != 0) as usize;
        self.s[from.min(self.s.len())..].iter().all(|&b| b == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward reference: top-k, codes by comparing log positions,
    /// levels as bin means.
    fn reference(x: &[f32], k: usize, v: usize) -> Vec<f32> {
        let idx = topk::top_k_indices(x, k).unwrap();
        let mut out = vec![0.0f32; x.len()];
        if k == 0 {
            return out;
        }
        let nl = 1usize << v;
        let mags: Vec<f32> = idx.iter().map(|&i| x[i as usize].abs()).collect();
        let tau = mags.iter().cloned().fold(f32::INFINITY, f32::min);
        let m = mags.iter().cloned().fold(0.0, f32::max);
        let code = |a: f32| -> usize {
            if v == 0 || m == 0.0 {
                return 0;
            }
            let lo = (tau as f64).max(m as f64 * 1e-30);
            (1..nl)
                .filter(|&j| ((lo * (m as f64 / lo).powf(j as f64 / nl as f64)) as f32) <= a)
                .count()
        };
        let mut sum = vec![0f64; nl];
        let mut cnt = vec![0usize; nl];
        for &a in &mags {
            sum[code(a)] += a as f64;
            cnt[code(a)] += 1;
        }
        for &i in &idx {
            let a = x[i as usize];
            let c = code(a.abs());
            let l = (sum[c] / cnt[c] as f64) as f32;
            out[i as usize] = if a.is_sign_negative() { -l } else { l };
        }
        out
    }

    fn data(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let u = crate::rng::uniform_f32(seed, i as u64) - 0.5;
                u * u * u * 8.0 // heavy-ish tails, many distinct magnitudes
            })
            .collect()
    }

    #[test]
    fn round_trips_against_the_reference() {
        for n in [1usize, 2, 3, 31, 32, 33, 255, 256, 257, 1000, 65_537] {
            let x = data(n, n as u64 + 7);
            for k in [0, 1, n / 7, n / 2, n] {
                for r in [0usize, 1, 3, 12, 31] {
                    for v in 0..=MAX_VALUE_BITS {
                        let (levels, s) = compress(&x, k, r, v).unwrap();
                        assert_eq!(levels.len(), 1 << v);
                        assert_eq!(s.len(), stream_bytes(n, k, r, v).unwrap());
                        let mut out = vec![7.0; n];
                        decompress_into(&levels, k, r, &s, &mut out).unwrap();
                        assert_eq!(out, reference(&x, k, v), "n {n} k {k} r {r} v {v}");
                    }
                }
            }
        }
    }

    #[test]
    fn wide_bins_match_the_index_order_sums() {
        // Magnitudes over 2^-40..2^40 with many per bin: the fused path's
        // partial sums are not exact there, so it must sum those bins again
        // in index order (the reference's bits). Also at every edge value.
        for n in [20_000usize, 65_537] {
            let x: Vec<f32> = (0..n)
                .map(|i| {
                    let u = crate::rng::uniform_f32(91, i as u64);
                    let e = (crate::rng::uniform_f32(92, i as u64) * 80.0) as i32 - 40;
                    (1.0 + u) * 2f32.powi(e) * if i % 3 == 0 { -1.0 } else { 1.0 }
                })
                .collect();
            for k in [n / 3, n - 1] {
                for v in 0..=MAX_VALUE_BITS {
                    let (levels, s) = compress(&x, k, 4, v).unwrap();
                    let mut out = vec![0.0; n];
                    decompress_into(&levels, k, 4, &s, &mut out).unwrap();
                    assert_eq!(out, reference(&x, k, v), "n {n} k {k} v {v}");
                }
            }
        }
    }

    #[test]
    fn bin_sums_fall_back_to_index_order_when_order_matters() {
        // 2^60 then 520 ones: in index order each one is lost to rounding
        // (f64 spacing at 2^60 is 256), while lane partial sums of ~130
        // ones would survive. The exactness bound fails, so the index order
        // is kept. Sign bits are ignored.
        let mut m: Vec<u32> = vec![(2f32).powi(60).to_bits()];
        m.extend((0..520).map(|i| if i % 2 == 0 { 1.0f32 } else { -1.0 }.to_bits()));
        let codes = vec![0u8; m.len()];
        let want = m
            .iter()
            .fold(0f64, |s, &b| s + f32::from_bits(b & 0x7FFF_FFFF) as f64);
        assert_eq!(want, 2f64.powi(60));
        let (sum, cnt) = bin_sums::<1>(&m, &codes, &[], 1f32.to_bits());
        assert_eq!((sum[0], cnt[0]), (want, 521));
        // Within the bound the lanes' sum is the index-order sum.
        let m: Vec<u32> = (0..1001)
            .map(|i| (1.0 + i as f32 / 1024.0).to_bits())
            .collect();
        let want = m.iter().fold(0f64, |s, &b| s + f32::from_bits(b) as f64);
        let (sum, _) = bin_sums::<1>(&m, &vec![0; 1001], &[], 1f32.to_bits());
        assert_eq!(sum[0], want);
    }

    #[test]
    fn non_finite_inputs_are_rejected_on_both_paths() {
        // small inputs take the reference path, large ones the fused path
        for n in [100usize, 70_000] {
            for bad in [f32::NAN, f32::INFINITY, -f32::INFINITY] {
                for at in [0, n / 2, n - 1] {
                    let mut x = data(n, 5);
                    x[at] = bad;
                    let err = compress(&x, n / 8, 3, 2).unwrap_err().to_string();
                    assert!(err.contains("grad"), "{err}");
                }
            }
        }
    }

    #[test]
    fn more_bits_never_increase_the_error() {
        let x = data(20_000, 3);
        let k = 2500;
        let err = |v| {
            let (l, s) = compress(&x, k, 3, v).unwrap();
            let mut out = vec![0.0; x.len()];
            decompress_into(&l, k, 3, &s, &mut out).unwrap();
            x.iter()
                .zip(&out)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
        };
        let e: Vec<f64> = (0..=MAX_VALUE_BITS).map(err).collect();
        for w in e.windows(2) {
            assert!(w[1] <= w[0] * 1.0001, "{e:?}");
        }
        // v = 4 is close to exact top-k on the kept set.
        let exact: f64 = {
            let idx = topk::top_k_indices(&x, k).unwrap();
            let total: f64 = x.iter().map(|&a| (a as f64).powi(2)).sum();
            total
                - idx
                    .iter()
                    .map(|&i| (x[i as usize] as f64).powi(2))
                    .sum::<f64>()
        };
        assert!(e[4] < exact * 1.05, "{} vs {exact}", e[4]);
    }

    #[test]
    fn worst_case_gaps_fit_the_fixed_length() {
        // Entries bunched at the end: one maximal gap first.
        for (n, k) in [(1000usize, 10usize), (4096, 1), (777, 777), (100, 0)] {
            let x: Vec<f32> = (0..n)
                .map(|i| if i >= n - k { -2.0 - i as f32 } else { 0.5 })
                .collect();
            for r in 0..=12 {
                for v in [0, 2, 4] {
                    let (l, s) = compress(&x, k, r, v).unwrap();
                    let mut out = vec![0.0; n];
                    decompress_into(&l, k, r, &s, &mut out).unwrap();
                    assert_eq!(out, reference(&x, k, v));
                }
            }
        }
    }

    #[test]
    fn params_fill_the_budget_and_beat_topk() {
        for (n, ratio) in [
            (278_000usize, 32.0),
            (278_000, 100.0),
            (1_000_000, 10.0),
            (5000, 32.0),
        ] {
            for v in 0..=MAX_VALUE_BITS {
                let (k, r) = params_for_ratio(n, ratio, v);
                let body = body_bytes(n, k, r, v).unwrap();
                assert!(body as f64 <= 4.0 * n as f64 / ratio, "n {n} ratio {ratio}");
                if k < n {
                    assert!(body_bytes(n, k + 1, r, v).unwrap() as f64 > 4.0 * n as f64 / ratio);
                }
                let topk_k = topk::k_for_ratio(n, ratio);
                assert!(
                    k > 2 * topk_k,
                    "n {n} ratio {ratio} v {v}: k {k} vs top-k {topk_k}"
                );
            }
        }
        assert_eq!(params_for_ratio(3, 1000.0, 2).0, 1);
        assert_eq!(unpack_b(pack_b(31, 4)), Some((31, 4)));
        assert_eq!(unpack_b(pack_b(32, 0)), None);
        assert_eq!(unpack_b(pack_b(0, 5)), None);
    }

    /// What [`decode_entries_with`] reports: the entries, or the error text.
    fn decoded<const FAST: bool>(
        n: usize,
        k: usize,
        r: usize,
        v: usize,
        s: &[u8],
    ) -> std::result::Result<Vec<(usize, bool, usize)>, String> {
        let mut e = Vec::new();
        decode_entries_with::<FAST>(n, k, r, v, s, "s", |i, neg, c| e.push((i, neg, c)))
            .map(|_| e)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn fast_reader_matches_the_checked_reader() {
        // Valid streams (short and long gaps, every r and v, streams shorter
        // and longer than one 64-bit read) and random or bit-flipped ones:
        // the same entries, or the same error.
        let mut st = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = || {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            st
        };
        for n in [1usize, 5, 64, 65, 300, 4099, 70_000] {
            let x = data(n, n as u64 + 1);
            for k in [0, 1, n / 50, n / 7, n] {
                for r in [0usize, 2, 5, 13, 31] {
                    for v in [0usize, 2, 4] {
                        let (_, s) = compress(&x, k, r, v).unwrap();
                        let want = decoded::<false>(n, k, r, v, &s);
                        assert!(want.is_ok());
                        assert_eq!(
                            decoded::<true>(n, k, r, v, &s),
                            want,
                            "n {n} k {k} r {r} v {v}"
                        );
                        for _ in 0..4 {
                            let mut p = s.clone();
                            if !p.is_empty() {
                                let b = (rnd() as usize) % p.len();
                                p[b] ^= 1 << (rnd() % 8);
                            }
                            assert_eq!(
                                decoded::<true>(n, k, r, v, &p),
                                decoded::<false>(n, k, r, v, &p)
                            );
                        }
                        let p: Vec<u8> = (0..s.len()).map(|_| rnd() as u8).collect();
                        assert_eq!(
                            decoded::<true>(n, k, r, v, &p),
                            decoded::<false>(n, k, r, v, &p)
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn corrupt_streams_are_rejected() {
        let n = 500;
        let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32) - 50.0).collect();
        let (k, r, v) = (40, 3, 2);
        let (l, s) = compress(&x, k, r, v).unwrap();
        let mut out = vec![0.0; n];
        // Wrong length.
        assert!(decompress_into(&l, k, r, &s[..s.len() - 1], &mut out).is_err());
        // All ones: a gap that runs past dim.
        assert!(decompress_into(&l, k, r, &vec![0xFF; s.len()], &mut out).is_err());
        // Nonzero padding (the last byte's top bit is padding here).
        let mut p = s.clone();
        *p.last_mut().unwrap() |= 0x80;
        assert!(decompress_into(&l, k, r, &p, &mut out).is_err());
        // Every single-bit flip is either rejected or decodes to k valid entries.
        for byte in 0..s.len() {
            for bit in 0..8 {
                let mut p = s.clone();
                p[byte] ^= 1 << bit;
                let mut cnt = 0;
                if decode_entries(n, k, r, v, &p, "s", |i, _, c| {
                    assert!(i < n && c < 4);
                    cnt += 1
                })
                .is_ok()
                {
                    assert_eq!(cnt, k);
                }
            }
        }
    }
}
