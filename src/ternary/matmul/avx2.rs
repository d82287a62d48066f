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

/// `v`, hidden from the optimizer (no instruction is emitted): keeps LLVM
/// from folding the digit recurrence `s·3, s·9, ...` of the base-3 kernels
/// into byte multiplies, which x86 lacks (5 ops each instead of 2 adds).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn opaque(mut v: __m256i) -> __m256i {
    std::arch::asm!("/* {0} */", inout(ymm_reg) v, options(pure, nomem, nostack, preserves_flags));
    v
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
            if r0 == 0 {
                // the first pass over the tile streams it (see tile_2bit_1)
                prefetch_block(w, kb);
            }
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

/// `Σ c·q` of the 4 rows of one 2-bit tile against one activation row; the
/// four activation vectors of a half block are loaded once into registers
/// and used by all 4 rows (2 loads a row vector instead of 5: about 10%
/// faster than [`rows_2bit`] on Zen 3).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_2bit_1(w: *const u8, q: *const i8, nkb: usize, out: *mut i32) {
    let m3 = _mm256_set1_epi8(3);
    let ones = _mm256_set1_epi16(1);
    let z = _mm256_setzero_si256();
    let mut acc = [z; 4];
    let mut k0 = 0;
    while k0 < nkb {
        let k1 = (k0 + FLUSH_2BIT).min(nkb);
        let mut a16 = [z; 4];
        for kb in k0..k1 {
            // the tile is one sequential stream (and the next tile follows
            // it); the hardware prefetcher alone leaves it below the read
            // floor on the machines measured
            prefetch_block(w, kb);
            for h in 0..2 {
                let qb = q.add(kb * 256 + 32 * h);
                let a = [ldq(qb), ldq(qb.add(64)), ldq(qb.add(128)), ldq(qb.add(192))];
                let wb = w.add(kb * TB + 32 * h);
                for (r, a16r) in a16.iter_mut().enumerate() {
                    let v = ld(wb.add(r * BLOCK_BYTES));
                    let c0 = _mm256_and_si256(v, m3);
                    let c1 = _mm256_and_si256(_mm256_srli_epi16::<2>(v), m3);
                    let c2 = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m3);
                    let c3 = _mm256_and_si256(_mm256_srli_epi16::<6>(v), m3);
                    let p = _mm256_add_epi16(
                        _mm256_add_epi16(
                            _mm256_maddubs_epi16(c0, a[0]),
                            _mm256_maddubs_epi16(c1, a[1]),
                        ),
                        _mm256_add_epi16(
                            _mm256_maddubs_epi16(c2, a[2]),
                            _mm256_maddubs_epi16(c3, a[3]),
                        ),
                    );
                    *a16r = _mm256_add_epi16(*a16r, p);
                }
            }
        }
        for (x, y) in acc.iter_mut().zip(a16.iter()) {
            *x = _mm256_add_epi32(*x, _mm256_madd_epi16(*y, ones));
        }
        k0 = k1;
    }
    let s = hsums(&acc);
    std::ptr::copy_nonoverlapping(s.as_ptr(), out, 4);
}

/// Bytes ahead of the current K block that the GEMV tiles prefetch.
const GEMV_PREFETCH: usize = 4096;

/// Prefetches the K block `GEMV_PREFETCH` bytes past block `kb` of a tile
/// stream (2-bit and base-3 blocks are both `TB` bytes). The address may
/// lie past the end of the weights: a prefetch never faults.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn prefetch_block(w: *const u8, kb: usize) {
    let pf = w.wrapping_add(kb * TB + GEMV_PREFETCH) as *const i8;
    for l in 0..TB / 64 {
        _mm_prefetch::<_MM_HINT_T0>(pf.wrapping_add(64 * l));
    }
}

/// One 2-bit tile: [`tile_2bit_1`] for one activation row, two rows at a
/// time for 2 or 3 (16 ymm registers).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_2bit<const NA: usize>(w: *const u8, q: &[*const i8; 3], nkb: usize, out: *mut i32) {
    if NA == 1 {
        tile_2bit_1(w, q[0], nkb, out);
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
            if r0 == 0 {
                prefetch_block(w, kb);
            }
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
                            s = opaque(_mm256_add_epi8(_mm256_add_epi8(s, s), s));
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

/// `Σ c·q` of the 4 rows of one base-3 tile against one activation row,
/// the five activation vectors of a half block in registers (see
/// [`tile_2bit_1`]).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_base3_1(w: *const u8, q: *const i8, nkb: usize, out: *mut i32) {
    let lo = _mm256_set1_epi8(-43);
    let hi = _mm256_set1_epi8(42);
    let flip = _mm256_set1_epi8(-128);
    let ones = _mm256_set1_epi16(1);
    let z = _mm256_setzero_si256();
    let mut acc = [z; 4];
    let mut k0 = 0;
    while k0 < nkb {
        let k1 = (k0 + FLUSH_BASE3).min(nkb);
        let mut a16 = [z; 4];
        for kb in k0..k1 {
            prefetch_block(w, kb);
            for h in 0..2 {
                let qb = q.add(kb * 320 + 32 * h);
                let a = [
                    ldq(qb),
                    ldq(qb.add(64)),
                    ldq(qb.add(128)),
                    ldq(qb.add(192)),
                    ldq(qb.add(256)),
                ];
                let wb = w.add(kb * TB + 32 * h);
                for (r, a16r) in a16.iter_mut().enumerate() {
                    let mut s = _mm256_xor_si256(ld(wb.add(r * BLOCK_BYTES)), flip);
                    let mut p = z;
                    for (d, ad) in a.iter().enumerate() {
                        let m = _mm256_add_epi8(_mm256_cmpgt_epi8(s, lo), _mm256_cmpgt_epi8(s, hi));
                        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(_mm256_abs_epi8(m), *ad));
                        if d < 4 {
                            s = opaque(_mm256_add_epi8(_mm256_add_epi8(s, s), s));
                        }
                    }
                    *a16r = _mm256_add_epi16(*a16r, p);
                }
            }
        }
        for (x, y) in acc.iter_mut().zip(a16.iter()) {
            *x = _mm256_add_epi32(*x, _mm256_madd_epi16(*y, ones));
        }
        k0 = k1;
    }
    let s = hsums(&acc);
    std::ptr::copy_nonoverlapping(s.as_ptr(), out, 4);
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn tile_base3<const NA: usize>(w: *const u8, q: &[*const i8; 3], nkb: usize, out: *mut i32) {
    if NA == 1 {
        tile_base3_1(w, q[0], nkb, out);
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

// ---------------------------------------------------------------- activation quantization

/// `max |x|` (exact: max does not depend on order).
#[target_feature(enable = "avx2")]
pub unsafe fn abs_max(x: &[f32]) -> f32 {
    let mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let mut m = [_mm256_setzero_ps(); 4];
    let mut ch = x.chunks_exact(32);
    for c in &mut ch {
        for (j, mj) in m.iter_mut().enumerate() {
            *mj = _mm256_max_ps(
                *mj,
                _mm256_and_ps(_mm256_loadu_ps(c.as_ptr().add(8 * j)), mask),
            );
        }
    }
    let v = _mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3]));
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), v);
    let mut r = lanes.iter().fold(0f32, |a, &b| a.max(b));
    for v in ch.remainder() {
        r = r.max(v.abs());
    }
    r
}

/// `q = clamp(round_half_even(x * s), -128, 127)`, bit-identical to
/// [`quantize_act_row`](crate::ternary::quant::quantize_act_row) (the same
/// single-precision product and rounding; the scalar version calls libm's
/// `rintf` once a value).
#[target_feature(enable = "avx2")]
pub unsafe fn quantize_act(x: &[f32], s: f32, q: &mut [i8]) {
    let sv = _mm256_set1_ps(s);
    let lo = _mm256_set1_ps(-128.0);
    let hi = _mm256_set1_ps(127.0);
    // packs interleave the 128-bit lanes; this puts the dwords back in order
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let n = x.len().min(q.len()) / 32 * 32;
    let mut i = 0;
    while i < n {
        let mut v = [_mm256_setzero_si256(); 4];
        for (j, vj) in v.iter_mut().enumerate() {
            let p = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i + 8 * j)), sv);
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(p);
            *vj = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
        }
        let a = _mm256_packs_epi32(v[0], v[1]);
        let b = _mm256_packs_epi32(v[2], v[3]);
        let c = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b), order);
        _mm256_storeu_si256(q.as_mut_ptr().add(i) as *mut __m256i, c);
        i += 32;
    }
    crate::ternary::quant::quantize_act_row(&x[n..], s, &mut q[n..x.len()]);
}
