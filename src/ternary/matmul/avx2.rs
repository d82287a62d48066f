//! AVX2 int8 kernels designed for AVX2 (x86-64-v3: Haswell, Zen 1-3 and
//! every cloud instance without AVX-512).
//!
//! All return exact `Σ_k c[r,k] · q[k]` with codes `c = t + 1` in {0, 1, 2}
//! (the offset trick: the caller subtracts `Σ_k q[k]`) for any int8 `q`,
//! -128 included. `vpmaddubsw` multiplies the code bytes (unsigned) by the
//! activation bytes (signed) and adds pairs: each i16 lane is at most
//! `2 · 2 · 128 = 512` in magnitude (`[-512, 508]`), so an i16 accumulator
//! takes 64 such lanes before it must be widened (`[-32768, 32512]`): the
//! kernels sum 4 (2-bit) or 5 (base-3) planes a vector and widen every 8
//! (resp. 6) K blocks, every 64 steps on decoded codes, with `vpmaddwd` by
//! ones. Compared with widening every vector (the AVX-512BW kernels), this
//! saves two of the ~17 vector ops per 128 weights; there is no saturation
//! anywhere (bitnet.cpp's I2_S kernel keeps i16 sums over 4096 weights,
//! which can wrap).
//!
//! # Safety
//! Every function requires AVX2 and pointers valid for the lengths
//! documented on it (the driver's strategies guarantee both).

#![allow(clippy::missing_safety_doc)]
#![allow(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

use super::layout::{BLOCK_BYTES, TILE_ROWS};

/// Bytes of one K block of a tile.
const TB: usize = TILE_ROWS * BLOCK_BYTES;
/// 2-bit K blocks between i16 widenings: 8 blocks x 2 halves x 4 planes
/// = 64 `vpmaddubsw` lanes a row.
const FLUSH_2BIT: usize = 8;
/// Base-3 K blocks between widenings: 6 x 2 x 5 = 60 lanes.
const FLUSH_BASE3: usize = 6;

#[inline(always)]
unsafe fn ld(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

#[inline(always)]
unsafe fn ldq(p: *const i8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// Sums of the lanes of `N` vectors.
#[inline(always)]
unsafe fn hsums<const N: usize>(v: &[__m256i; N]) -> [i32; N] {
    let mut out = [0i32; N];
    for (o, x) in out.iter_mut().zip(v.iter()) {
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(*x),
            _mm256_extracti128_si256::<1>(*x),
        );
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        *o = _mm_cvtsi128_si32(s);
    }
    out
}

// ---------------------------------------------------------------- 2-bit GEMV

/// `Σ c·q` of rows `r0..r0 + R` of one 2-bit tile against `NA` activation
/// rows, over `nkb` K blocks; `out[(r0 + i) * NA + a]`.
///
/// Per 32 weight bytes (128 weights) of a row: one load, 3 shifts and 4 ands
/// (the four code planes), 4 `vpmaddubsw` per activation row with the
/// activations as memory operands (L1), 4 adds.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn rows_2bit<const R: usize, const NA: usize>(
    w: *const u8,
    q: &[*const i8; 3],
    nkb: usize,
    r0: usize,
    out: *mut i32,
) {
    let m3 = _mm256_set1_epi8(3);
    let ones = _mm256_set1_epi16(1);
    let z = _mm256_setzero_si256();
    let mut acc = [[z; NA]; R];
    let mut k0 = 0;
    while k0 < nkb {
        let k1 = (k0 + FLUSH_2BIT).min(nkb);
        let mut a16 = [[z; NA]; R];
        for kb in k0..k1 {
            for h in 0..2 {
                let wb = w.add(kb * TB + r0 * BLOCK_BYTES + 32 * h);
                for (i, ai) in a16.iter_mut().enumerate() {
                    let v = ld(wb.add(i * BLOCK_BYTES));
                    let c0 = _mm256_and_si256(v, m3);
                    let c1 = _mm256_and_si256(_mm256_srli_epi16::<2>(v), m3);
                    let c2 = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m3);
                    let c3 = _mm256_and_si256(_mm256_srli_epi16::<6>(v), m3);
                    for (a, acc16) in ai.iter_mut().enumerate() {
                        let qb = q[a].add(kb * 256 + 32 * h);
                        let p = _mm256_add_epi16(
                            _mm256_add_epi16(
                                _mm256_maddubs_epi16(c0, ldq(qb)),
                                _mm256_maddubs_epi16(c1, ldq(qb.add(64))),
                            ),
                            _mm256_add_epi16(
                                _mm256_maddubs_epi16(c2, ldq(qb.add(128))),
                                _mm256_maddubs_epi16(c3, ldq(qb.add(192))),
                            ),
                        );
                        *acc16 = _mm256_add_epi16(*acc16, p);
                    }
                }
            }
        }
        for (ar, a16r) in acc.iter_mut().zip(a16.iter()) {
            for (x, y) in ar.iter_mut().zip(a16r.iter()) {
                *x = _mm256_add_epi32(*x, _mm256_madd_epi16(*y, ones));
            }
        }
        k0 = k1;
    }
    for (i, ar) in acc.iter().enumerate() {
        let s = hsums(ar);
        for (a, v) in s.iter().enumerate() {
            *out.add((r0 + i) * NA + a) = *v;
        }
    }
}

/// One 2-bit tile: all 4 rows at once for one activation row, two rows at
/// a time for 2 or 3 (16 ymm registers).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_2bit<const NA: usize>(w: *const u8, q: &[*const i8; 3], nkb: usize, out: *mut i32) {
    if NA == 1 {
        rows_2bit::<4, NA>(w, q, nkb, 0, out);
    } else {
        rows_2bit::<2, NA>(w, q, nkb, 0, out);
        rows_2bit::<2, NA>(w, q, nkb, 2, out);
    }
}

/// `Σ c·q` for `ntiles` consecutive 2-bit tiles (`tile_bytes` apart, each
/// pointer at the first of `nkb` blocks) against `na` (1..=3) activation
/// rows of `nkb * 256` values; `out[(4 t + r) * na + a]`.
#[target_feature(enable = "avx2")]
pub unsafe fn i8_gemv_n_2bit(
    w: *const u8,
    tile_bytes: usize,
    q: &[*const i8; 3],
    na: usize,
    nkb: usize,
    ntiles: usize,
    out: *mut i32,
) {
    for t in 0..ntiles {
        let (wt, ot) = (w.add(t * tile_bytes), out.add(t * TILE_ROWS * na));
        match na {
            1 => tile_2bit::<1>(wt, q, nkb, ot),
            2 => tile_2bit::<2>(wt, q, nkb, ot),
            _ => tile_2bit::<3>(wt, q, nkb, ot),
        }
    }
}

// ---------------------------------------------------------------- base-3 GEMV

/// `Σ c·q` of rows `r0..r0 + R` of one base-3 tile (K blocks of 320) against
/// `NA` activation rows; `out[(r0 + i) * NA + a]`.
///
/// Digits without division: with `s = n ^ 0x80` (the byte as a signed
/// value), digit `i` is `(s_i > -43) + (s_i > 42)` (`n_i >= 86`,
/// `n_i >= 171`) and `s_{i+1} = 3 s_i` (mod 256), because `n ^ 0x80 = n +
/// 128` and `3 (n + 128) = 3 n + 128` (mod 256). Two compares give masks of
/// -1; `|m₁ + m₂|` is the digit. 6 ops a digit plane of 32 weights, against
/// 1.75 for the 2-bit planes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn rows_base3<const R: usize, const NA: usize>(
    w: *const u8,
    q: &[*const i8; 3],
    nkb: usize,
    r0: usize,
    out: *mut i32,
) {
    let lo = _mm256_set1_epi8(-43);
    let hi = _mm256_set1_epi8(42);
    let flip = _mm256_set1_epi8(-128);
    let ones = _mm256_set1_epi16(1);
    let z = _mm256_setzero_si256();
    let mut acc = [[z; NA]; R];
    let mut k0 = 0;
    while k0 < nkb {
        let k1 = (k0 + FLUSH_BASE3).min(nkb);
        let mut a16 = [[z; NA]; R];
        for kb in k0..k1 {
            for h in 0..2 {
                let wb = w.add(kb * TB + r0 * BLOCK_BYTES + 32 * h);
                for (i, ai) in a16.iter_mut().enumerate() {
                    let mut s = _mm256_xor_si256(ld(wb.add(i * BLOCK_BYTES)), flip);
                    for d in 0..5 {
                        let m = _mm256_add_epi8(_mm256_cmpgt_epi8(s, lo), _mm256_cmpgt_epi8(s, hi));
                        let c = _mm256_abs_epi8(m);
                        for (a, acc16) in ai.iter_mut().enumerate() {
                            let qb = q[a].add(kb * 320 + 64 * d + 32 * h);
                            *acc16 = _mm256_add_epi16(*acc16, _mm256_maddubs_epi16(c, ldq(qb)));
                        }
                        if d < 4 {
                            s = _mm256_add_epi8(_mm256_add_epi8(s, s), s);
                        }
                    }
                }
            }
        }
        for (ar, a16r) in acc.iter_mut().zip(a16.iter()) {
            for (x, y) in ar.iter_mut().zip(a16r.iter()) {
                *x = _mm256_add_epi32(*x, _mm256_madd_epi16(*y, ones));
            }
        }
        k0 = k1;
    }
    for (i, ar) in acc.iter().enumerate() {
        let s = hsums(ar);
        for (a, v) in s.iter().enumerate() {
            *out.add((r0 + i) * NA + a) = *v;
        }
    }
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_base3<const NA: usize>(w: *const u8, q: &[*const i8; 3], nkb: usize, out: *mut i32) {
    if NA == 1 {
        rows_base3::<4, NA>(w, q, nkb, 0, out);
    } else {
        rows_base3::<2, NA>(w, q, nkb, 0, out);
        rows_base3::<2, NA>(w, q, nkb, 2, out);
    }
}

/// As [`i8_gemv_n_2bit`] for base-3 tiles (activation rows of `nkb * 320`).
#[target_feature(enable = "avx2")]
pub unsafe fn i8_gemv_n_base3(
    w: *const u8,
    tile_bytes: usize,
    q: &[*const i8; 3],
    na: usize,
    nkb: usize,
    ntiles: usize,
    out: *mut i32,
) {
    for t in 0..ntiles {
        let (wt, ot) = (w.add(t * tile_bytes), out.add(t * TILE_ROWS * na));
        match na {
            1 => tile_base3::<1>(wt, q, nkb, ot),
            2 => tile_base3::<2>(wt, q, nkb, ot),
            _ => tile_base3::<3>(wt, q, nkb, ot),
        }
    }
}

// ---------------------------------------------------------------- GEMM on decoded codes

/// Steps of 32 codes between i16 widenings (64 `vpmaddubsw` lanes).
const FLUSH_GEMM: usize = 64;

/// `out[r][b] = Σ_{k<len} c[r][k] q[b][k]` for 4 decoded rows and `NB`
/// (1 or 2) batch rows: 8 i16 accumulators, 4 code and `NB` activation
/// loads per `4 NB` `vpmaddubsw`.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn gemm_nb<const NB: usize>(
    w: &[*const u8; 4],
    q: &[*const i8],
    len: usize,
) -> [[i32; NB]; 4] {
    let z = _mm256_setzero_si256();
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[z; NB]; 4];
    let mut k = 0;
    while k < len {
        let k1 = (k + 32 * FLUSH_GEMM).min(len);
        let mut a16 = [[z; NB]; 4];
        while k < k1 {
            let wv = [
                ld(w[0].add(k)),
                ld(w[1].add(k)),
                ld(w[2].add(k)),
                ld(w[3].add(k)),
            ];
            for b in 0..NB {
                let a = ldq(q[b].add(k));
                for r in 0..4 {
                    a16[r][b] = _mm256_add_epi16(a16[r][b], _mm256_maddubs_epi16(wv[r], a));
                }
            }
            k += 32;
        }
        for r in 0..4 {
            for b in 0..NB {
                acc[r][b] = _mm256_add_epi32(acc[r][b], _mm256_madd_epi16(a16[r][b], ones));
            }
        }
    }
    let mut out = [[0i32; NB]; 4];
    for r in 0..4 {
        out[r] = hsums(&acc[r]);
    }
    out
}

/// `out[r][b] = Σ_{k<len} c[r][k] q[b][k]` for 4 decoded rows and `nb`
/// (1..=4) batch rows, `len` a multiple of 32.
#[target_feature(enable = "avx2")]
pub unsafe fn i8_gemm(
    w: &[*const u8; 4],
    q: &[*const i8; 4],
    nb: usize,
    len: usize,
) -> [[i32; 4]; 4] {
    let mut out = [[0i32; 4]; 4];
    let mut b = 0;
    while b < nb {
        if nb - b >= 2 {
            let r = gemm_nb::<2>(w, &q[b..], len);
            for i in 0..4 {
                out[i][b] = r[i][0];
                out[i][b + 1] = r[i][1];
            }
            b += 2;
        } else {
            let r = gemm_nb::<1>(w, &q[b..], len);
            for i in 0..4 {
                out[i][b] = r[i][0];
            }
            b += 1;
        }
    }
    out
}
