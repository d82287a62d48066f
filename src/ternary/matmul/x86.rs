//! x86-64 kernels (AVX-512BW, AVX-512 VNNI; AVX2 decoders and f32
//! kernels) over the compute layout. The AVX2 int8 kernels are in `avx2`.
//!
//! All kernels work on one tile of [`TILE_ROWS`] rows. Int8 kernels return the
//! exact `Σ_k c[r,k] · q[k]` with codes `c = t + 1` in {0, 1, 2} (the offset
//! trick: `u8 x i8` products, the caller subtracts `Σ_k q[k]`). No int16
//! intermediate can saturate: a `maddubs` pair is at most
//! `2 · 128 · 128 = 32768` in magnitude for plane-scaled codes (`c · 4^i <= 128`)
//! and `2 · 2 · 128` for plain codes, and is widened to i32 before any sum
//! that could exceed that (plain codes: four pairs summed, `<= 2048`).
//! i32 lanes cannot overflow for the chunk lengths the driver passes
//! (`MAX_CHUNK_BLOCKS`).
//!
//! # Safety
//! Every function requires the CPU features it is compiled for, and pointers
//! valid for the lengths documented on it (the strategies the `driver` runs guarantee
//! both).

#![allow(clippy::missing_safety_doc)]
// Kernel bodies are intrinsics and pointer arithmetic throughout; the
// contract is stated once, above, for the whole module.
#![allow(unsafe_op_in_unsafe_fn)]
// The AVX-512 intrinsics are stable since Rust 1.89; Cargo.toml's
// rust-version (1.80) predates them and should be raised to 1.89.
#![allow(clippy::incompatible_msrv)]

use std::arch::x86_64::*;

use super::layout::{BLOCK_BYTES, TILE_ROWS};

const TB: usize = TILE_ROWS * BLOCK_BYTES; // bytes of one K block of a tile

#[inline(always)]
unsafe fn ld512(p: *const u8) -> __m512i {
    _mm512_loadu_si512(p as *const __m512i)
}
#[inline(always)]
unsafe fn ld256(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

#[inline(always)]
unsafe fn hsum256_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

// ---------------------------------------------------------------- 2-bit GEMV, int8

/// `Σ c·q` for the 4 rows of a 2-bit tile over `nkb` K blocks.
/// `w`: `nkb * 256` tile bytes; `q`: `nkb * 256` activations.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
pub unsafe fn i8_gemv_2bit_vnni(w: *const u8, q: *const i8, nkb: usize) -> [i32; 4] {
    let m = [
        _mm512_set1_epi8(0x03),
        _mm512_set1_epi8(0x0C),
        _mm512_set1_epi8(0x30),
        _mm512_set1_epi8(0xC0u8 as i8),
    ];
    let z = _mm512_setzero_si512();
    // acc[r][i]: plane i of row r, codes scaled by 4^i.
    let mut acc = [[z; 4]; 4];
    for kb in 0..nkb {
        let qb = q.add(kb * 256) as *const u8;
        let a = [
            ld512(qb),
            ld512(qb.add(64)),
            ld512(qb.add(128)),
            ld512(qb.add(192)),
        ];
        let wb = w.add(kb * TB);
        for (r, accr) in acc.iter_mut().enumerate() {
            let v = ld512(wb.add(r * BLOCK_BYTES));
            for i in 0..4 {
                accr[i] = _mm512_dpbusd_epi32(accr[i], _mm512_and_si512(v, m[i]), a[i]);
            }
        }
    }
    // Each lane of plane i is a multiple of 4^i: the shifts are exact.
    // (No closures in kernels: they do not inherit the target features, and
    // their intrinsics would be calls.)
    let mut rows = [z; 4];
    for (row, a) in rows.iter_mut().zip(acc.iter()) {
        *row = _mm512_add_epi32(
            _mm512_add_epi32(a[0], _mm512_srai_epi32::<2>(a[1])),
            _mm512_add_epi32(_mm512_srai_epi32::<4>(a[2]), _mm512_srai_epi32::<6>(a[3])),
        );
    }
    reduce4_512(rows)
}

/// The four lane sums of four vectors, in order (i32 adds wrap, as the
/// caller's sums do).
#[inline(always)]
unsafe fn reduce4_512(v: [__m512i; 4]) -> [i32; 4] {
    let mut h = [_mm256_setzero_si256(); 4];
    for (hi, x) in h.iter_mut().zip(v.iter()) {
        *hi = _mm256_add_epi32(
            _mm512_castsi512_si256(*x),
            _mm512_extracti64x4_epi64::<1>(*x),
        );
    }
    let a = _mm256_hadd_epi32(h[0], h[1]);
    let b = _mm256_hadd_epi32(h[2], h[3]);
    let c = _mm256_hadd_epi32(a, b);
    let s = _mm_add_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256::<1>(c));
    let mut out = [0i32; 4];
    _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, s);
    out
}

/// Runs a 4-row tile kernel over `ntiles` consecutive tiles of `tile_bytes`
/// bytes each (one call per chunk of tiles: no per-tile call overhead),
/// writing row sums to `out[4 t + r]`.
macro_rules! tiles_kernel {
    ($name:ident, $inner:ident, $feat:literal) => {
        #[target_feature(enable = $feat)]
        pub unsafe fn $name(
            w: *const u8,
            tile_bytes: usize,
            q: *const i8,
            nkb: usize,
            ntiles: usize,
            out: *mut i32,
        ) {
            for t in 0..ntiles {
                let r = $inner(w.add(t * tile_bytes), q, nkb);
                std::ptr::copy_nonoverlapping(r.as_ptr(), out.add(4 * t), 4);
            }
        }
    };
}
tiles_kernel!(
    i8_gemv_2bit_vnni_tiles,
    i8_gemv_2bit_vnni,
    "avx512f,avx512bw,avx512vnni"
);
tiles_kernel!(
    i8_gemv_2bit_avx512_tiles,
    i8_gemv_2bit_avx512,
    "avx512f,avx512bw"
);
tiles_kernel!(
    i8_gemv_base3_vnni_tiles,
    i8_gemv_base3_vnni,
    "avx512f,avx512bw,avx512vnni"
);

/// As [`i8_gemv_2bit_vnni`] with `maddubs` (AVX-512BW without VNNI).
#[target_feature(enable = "avx512f,avx512bw")]
#[inline]
pub unsafe fn i8_gemv_2bit_avx512(w: *const u8, q: *const i8, nkb: usize) -> [i32; 4] {
    let m3 = _mm512_set1_epi8(3);
    let ones = _mm512_set1_epi16(1);
    let mut acc = [_mm512_setzero_si512(); 4];
    for kb in 0..nkb {
        let qb = q.add(kb * 256) as *const u8;
        let a = [
            ld512(qb),
            ld512(qb.add(64)),
            ld512(qb.add(128)),
            ld512(qb.add(192)),
        ];
        let wb = w.add(kb * TB);
        for (r, accr) in acc.iter_mut().enumerate() {
            let v = ld512(wb.add(r * BLOCK_BYTES));
            let c0 = _mm512_and_si512(v, m3);
            let c1 = _mm512_and_si512(_mm512_srli_epi16::<2>(v), m3);
            let c2 = _mm512_and_si512(_mm512_srli_epi16::<4>(v), m3);
            let c3 = _mm512_and_si512(_mm512_srli_epi16::<6>(v), m3);
            // Each maddubs lane is <= 2*2*128 = 512 in magnitude; four sum to <= 2048.
            let p = _mm512_add_epi16(
                _mm512_add_epi16(
                    _mm512_maddubs_epi16(c0, a[0]),
                    _mm512_maddubs_epi16(c1, a[1]),
                ),
                _mm512_add_epi16(
                    _mm512_maddubs_epi16(c2, a[2]),
                    _mm512_maddubs_epi16(c3, a[3]),
                ),
            );
            *accr = _mm512_add_epi32(*accr, _mm512_madd_epi16(p, ones));
        }
    }
    [
        _mm512_reduce_add_epi32(acc[0]),
        _mm512_reduce_add_epi32(acc[1]),
        _mm512_reduce_add_epi32(acc[2]),
        _mm512_reduce_add_epi32(acc[3]),
    ]
}

// ---------------------------------------------------------------- base-3 GEMV, int8

/// `Σ c·q` for the 4 rows of a base-3 tile over `nkb` K blocks of 320.
///
/// With `n_i = 3^i n mod 256`, digit `d_i = (3 n_i - n_{i+1}) / 256` exactly,
/// so `Σ d_i q = (3 Σ n_i q - Σ n_{i+1} q) / 256`: two `vpdpbusd` a digit and
/// no per-digit extraction. Each lane's `3A - B` is a multiple of 256.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
pub unsafe fn i8_gemv_base3_vnni(w: *const u8, q: *const i8, nkb: usize) -> [i32; 4] {
    let z = _mm512_setzero_si512();
    let mut acc_a = [z; 4];
    let mut acc_b = [z; 4];
    for kb in 0..nkb {
        let qb = q.add(kb * 320) as *const u8;
        let a = [
            ld512(qb),
            ld512(qb.add(64)),
            ld512(qb.add(128)),
            ld512(qb.add(192)),
            ld512(qb.add(256)),
        ];
        let wb = w.add(kb * TB);
        for r in 0..4 {
            let mut n = ld512(wb.add(r * BLOCK_BYTES));
            for ai in a.iter() {
                let n3 = _mm512_add_epi8(_mm512_add_epi8(n, n), n);
                acc_a[r] = _mm512_dpbusd_epi32(acc_a[r], n, *ai);
                acc_b[r] = _mm512_dpbusd_epi32(acc_b[r], n3, *ai);
                n = n3;
            }
        }
    }
    let mut out = [0i32; 4];
    for r in 0..4 {
        let a3 = _mm512_add_epi32(_mm512_add_epi32(acc_a[r], acc_a[r]), acc_a[r]);
        out[r] = _mm512_reduce_add_epi32(_mm512_srai_epi32::<8>(_mm512_sub_epi32(a3, acc_b[r])));
    }
    out
}

// ---------------------------------------------------------------- decoders

/// Decodes a 2-bit tile (`nkb` blocks) into codes: row `r` at `out + r * kp`.
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn decode_2bit_avx512(w: *const u8, nkb: usize, out: *mut u8, kp: usize) {
    let m3 = _mm512_set1_epi8(3);
    for kb in 0..nkb {
        for r in 0..TILE_ROWS {
            let v = ld512(w.add(kb * TB + r * BLOCK_BYTES));
            let d = out.add(r * kp + kb * 256) as *mut __m512i;
            _mm512_storeu_si512(d, _mm512_and_si512(v, m3));
            _mm512_storeu_si512(d.add(1), _mm512_and_si512(_mm512_srli_epi16::<2>(v), m3));
            _mm512_storeu_si512(d.add(2), _mm512_and_si512(_mm512_srli_epi16::<4>(v), m3));
            _mm512_storeu_si512(d.add(3), _mm512_and_si512(_mm512_srli_epi16::<6>(v), m3));
        }
    }
}

/// As [`decode_2bit_avx512`] with AVX2.
#[target_feature(enable = "avx2")]
pub unsafe fn decode_2bit_avx2(w: *const u8, nkb: usize, out: *mut u8, kp: usize) {
    let m3 = _mm256_set1_epi8(3);
    for kb in 0..nkb {
        for r in 0..TILE_ROWS {
            for h in 0..2 {
                let v = ld256(w.add(kb * TB + r * BLOCK_BYTES + 32 * h));
                let d = out.add(r * kp + kb * 256 + 32 * h);
                _mm256_storeu_si256(d as *mut __m256i, _mm256_and_si256(v, m3));
                let c1 = _mm256_and_si256(_mm256_srli_epi16::<2>(v), m3);
                _mm256_storeu_si256(d.add(64) as *mut __m256i, c1);
                let c2 = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m3);
                _mm256_storeu_si256(d.add(128) as *mut __m256i, c2);
                let c3 = _mm256_and_si256(_mm256_srli_epi16::<6>(v), m3);
                _mm256_storeu_si256(d.add(192) as *mut __m256i, c3);
            }
        }
    }
}

/// Decodes a base-3 tile: digit `floor(3 n / 256)` = `(n >= 86) + (n >= 171)`.
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn decode_base3_avx512(w: *const u8, nkb: usize, out: *mut u8, kp: usize) {
    let t1 = _mm512_set1_epi8(86);
    let t2 = _mm512_set1_epi8(171u8 as i8);
    let one = _mm512_set1_epi8(1);
    for kb in 0..nkb {
        for r in 0..TILE_ROWS {
            let mut n = ld512(w.add(kb * TB + r * BLOCK_BYTES));
            let d = out.add(r * kp + kb * 320);
            for i in 0..5 {
                let d1 = _mm512_maskz_mov_epi8(_mm512_cmpge_epu8_mask(n, t1), one);
                let dd = _mm512_mask_add_epi8(d1, _mm512_cmpge_epu8_mask(n, t2), d1, one);
                _mm512_storeu_si512(d.add(64 * i) as *mut __m512i, dd);
                n = _mm512_add_epi8(_mm512_add_epi8(n, n), n);
            }
        }
    }
}

/// As [`decode_base3_avx512`] with AVX2 (unsigned `>=` through `max_epu8`).
#[target_feature(enable = "avx2")]
pub unsafe fn decode_base3_avx2(w: *const u8, nkb: usize, out: *mut u8, kp: usize) {
    let t1 = _mm256_set1_epi8(86);
    let t2 = _mm256_set1_epi8(171u8 as i8);
    for kb in 0..nkb {
        for r in 0..TILE_ROWS {
            for h in 0..2 {
                let mut n = ld256(w.add(kb * TB + r * BLOCK_BYTES + 32 * h));
                let d = out.add(r * kp + kb * 320 + 32 * h);
                for i in 0..5 {
                    let ge1 = _mm256_cmpeq_epi8(_mm256_max_epu8(n, t1), n);
                    let ge2 = _mm256_cmpeq_epi8(_mm256_max_epu8(n, t2), n);
                    // masks are -1 where true: digit = -(ge1 + ge2)
                    let dd = _mm256_sub_epi8(_mm256_setzero_si256(), _mm256_add_epi8(ge1, ge2));
                    _mm256_storeu_si256(d.add(64 * i) as *mut __m256i, dd);
                    n = _mm256_add_epi8(_mm256_add_epi8(n, n), n);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- GEMM on decoded codes, int8

/// `out[r][b] = Σ_{k<len} c[r][k] q[b][k]` for 4 decoded rows and `NB` batch
/// rows; `len` a multiple of 64.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn i8_gemm_vnni_nb<const NB: usize>(
    w: &[*const u8; 4],
    q: &[*const i8; 4],
    len: usize,
) -> [[i32; 4]; 4] {
    let z = _mm512_setzero_si512();
    let mut acc = [[z; NB]; 4];
    let mut k = 0;
    while k < len {
        let wv = [
            ld512(w[0].add(k)),
            ld512(w[1].add(k)),
            ld512(w[2].add(k)),
            ld512(w[3].add(k)),
        ];
        for b in 0..NB {
            let a = ld512(q[b].add(k) as *const u8);
            for r in 0..4 {
                acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], wv[r], a);
            }
        }
        k += 64;
    }
    let mut out = [[0i32; 4]; 4];
    for r in 0..4 {
        for b in 0..NB {
            out[r][b] = _mm512_reduce_add_epi32(acc[r][b]);
        }
    }
    out
}

/// Dispatches [`i8_gemm_vnni_nb`] on `nb` in 1..=4.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn i8_gemm_vnni(
    w: &[*const u8; 4],
    q: &[*const i8; 4],
    nb: usize,
    len: usize,
) -> [[i32; 4]; 4] {
    match nb {
        1 => i8_gemm_vnni_nb::<1>(w, q, len),
        2 => i8_gemm_vnni_nb::<2>(w, q, len),
        3 => i8_gemm_vnni_nb::<3>(w, q, len),
        _ => i8_gemm_vnni_nb::<4>(w, q, len),
    }
}

#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn i8_gemm_avx512_nb<const NB: usize>(
    w: &[*const u8; 4],
    q: &[*const i8; 4],
    len: usize,
) -> [[i32; 4]; 4] {
    let z = _mm512_setzero_si512();
    let ones = _mm512_set1_epi16(1);
    let mut acc = [[z; NB]; 4];
    let mut k = 0;
    while k < len {
        let wv = [
            ld512(w[0].add(k)),
            ld512(w[1].add(k)),
            ld512(w[2].add(k)),
            ld512(w[3].add(k)),
        ];
        for b in 0..NB {
            let a = ld512(q[b].add(k) as *const u8);
            for r in 0..4 {
                // lanes <= 2*2*128 = 512: no saturation
                let p = _mm512_madd_epi16(_mm512_maddubs_epi16(wv[r], a), ones);
                acc[r][b] = _mm512_add_epi32(acc[r][b], p);
            }
        }
        k += 64;
    }
    let mut out = [[0i32; 4]; 4];
    for r in 0..4 {
        for b in 0..NB {
            out[r][b] = _mm512_reduce_add_epi32(acc[r][b]);
        }
    }
    out
}

/// Dispatches [`i8_gemm_avx512_nb`] on `nb` in 1..=4.
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn i8_gemm_avx512(
    w: &[*const u8; 4],
    q: &[*const i8; 4],
    nb: usize,
    len: usize,
) -> [[i32; 4]; 4] {
    match nb {
        1 => i8_gemm_avx512_nb::<1>(w, q, len),
        2 => i8_gemm_avx512_nb::<2>(w, q, len),
        3 => i8_gemm_avx512_nb::<3>(w, q, len),
        _ => i8_gemm_avx512_nb::<4>(w, q, len),
    }
}

// ---------------------------------------------------------------- f32 activations

/// Direct f32 kernels: `Σ_k t[r,k] · x[b,k]` for the 4 rows of a packed tile
/// and `nb` (1 or 2) batch rows, adds and subtracts only, over `nkb` K blocks.
///
/// The activations are permuted per K block (see `acts::permute_f32`):
/// position `(4 i + m) · 16 + L` holds `x[64 i + 4 L + m]`, so that dword lane
/// `L` of a row's 64 block bytes holds, at bit offset `8 m`, the code (2-bit:
/// bits `8 m + 2 i ..`, plane `i`; base-3: digit `i` decoded to a byte) of the
/// weight whose activation sits in lane `L` of vector `4 i + m`. Each lane
/// then needs one mask test (AVX-512) or two blends (AVX2), no shuffles.
///
/// `x[b]`: `nkb * block_k` permuted f32 (only `x[..nb]` is read).
/// Each lane sums the `+x` and the `-x` of its weights separately in K order
/// (AVX-512) or one running `±x|0` sum (AVX2); the lanes are then reduced in a
/// fixed tree, so a batch row's result does not depend on `nb`.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn f32_gemv_avx512_nb<const NB: usize, const BASE3: bool>(
    w: *const u8,
    x: &[*const f32; 2],
    nkb: usize,
) -> [[f32; 2]; 4] {
    let z = _mm512_setzero_ps();
    let mut pos = [[z; NB]; 4];
    let mut neg = [[z; NB]; 4];
    let (bk, planes) = if BASE3 { (320, 5) } else { (256, 4) };
    let t1 = _mm512_set1_epi8(86);
    let t2 = _mm512_set1_epi8(171u8 as i8);
    let one = _mm512_set1_epi8(1);
    for kb in 0..nkb {
        let wb = w.add(kb * TB);
        let mut v = [
            ld512(wb),
            ld512(wb.add(64)),
            ld512(wb.add(128)),
            ld512(wb.add(192)),
        ];
        for i in 0..planes {
            // codes of plane / digit i at bit offset `sh` of every byte
            let (d, sh) = if BASE3 {
                let mut d = v;
                for r in 0..4 {
                    let d1 = _mm512_maskz_mov_epi8(_mm512_cmpge_epu8_mask(v[r], t1), one);
                    d[r] = _mm512_mask_add_epi8(d1, _mm512_cmpge_epu8_mask(v[r], t2), d1, one);
                    v[r] = _mm512_add_epi8(_mm512_add_epi8(v[r], v[r]), v[r]);
                }
                (d, 0)
            } else {
                (v, 2 * i)
            };
            for m in 0..4 {
                let s = 8 * m + sh;
                let hi = _mm512_set1_epi32(2 << s); // c = 2: t = +1
                let both = _mm512_set1_epi32(3 << s); // c = 0: t = -1
                let mut xs = [z; NB];
                for (b, xv) in xs.iter_mut().enumerate() {
                    *xv = _mm512_loadu_ps(x[b].add(kb * bk + (4 * i + m) * 16));
                }
                for r in 0..4 {
                    let pm = _mm512_test_epi32_mask(d[r], hi);
                    let nm = _mm512_testn_epi32_mask(d[r], both);
                    for b in 0..NB {
                        pos[r][b] = _mm512_mask_add_ps(pos[r][b], pm, pos[r][b], xs[b]);
                        neg[r][b] = _mm512_mask_add_ps(neg[r][b], nm, neg[r][b], xs[b]);
                    }
                }
            }
        }
    }
    let mut out = [[0f32; 2]; 4];
    for r in 0..4 {
        for b in 0..NB {
            out[r][b] = _mm512_reduce_add_ps(_mm512_sub_ps(pos[r][b], neg[r][b]));
        }
    }
    out
}

/// Direct f32 kernel, 2-bit tile, AVX-512 (see [`f32_gemv_avx512_nb`]).
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn f32_gemv_2bit_avx512(
    w: *const u8,
    x: &[*const f32; 2],
    nb: usize,
    nkb: usize,
) -> [[f32; 2]; 4] {
    match nb {
        1 => f32_gemv_avx512_nb::<1, false>(w, x, nkb),
        _ => f32_gemv_avx512_nb::<2, false>(w, x, nkb),
    }
}

/// Direct f32 kernel, base-3 tile, AVX-512 (see [`f32_gemv_avx512_nb`]).
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn f32_gemv_base3_avx512(
    w: *const u8,
    x: &[*const f32; 2],
    nb: usize,
    nkb: usize,
) -> [[f32; 2]; 4] {
    match nb {
        1 => f32_gemv_avx512_nb::<1, true>(w, x, nkb),
        _ => f32_gemv_avx512_nb::<2, true>(w, x, nkb),
    }
}

/// AVX2 twin of [`f32_gemv_avx512_nb`] for one batch row: each 64-byte row
/// block in two 32-byte halves (lanes `L` 0..8 and 8..16 of the permuted
/// vectors). The code bits are moved to the sign bit and select, with
/// `blendv`, among `x`, `-x` and `0`; one running sum a lane.
#[target_feature(enable = "avx2")]
unsafe fn f32_gemv_avx2_1<const BASE3: bool>(w: *const u8, x: *const f32, nkb: usize) -> [f32; 4] {
    let zf = _mm256_setzero_ps();
    let sign = _mm256_set1_ps(-0.0);
    let mut acc = [zf; 4];
    let (bk, planes) = if BASE3 { (320, 5) } else { (256, 4) };
    let t1 = _mm256_set1_epi8(86);
    let t2 = _mm256_set1_epi8(171u8 as i8);
    for kb in 0..nkb {
        for h in 0..2 {
            let wb = w.add(kb * TB + 32 * h);
            let mut n = [
                ld256(wb),
                ld256(wb.add(64)),
                ld256(wb.add(128)),
                ld256(wb.add(192)),
            ];
            for i in 0..planes {
                // lo[r] / hi[r]: sign bit of dword lane = the "t = 0" / "t = +1"
                // flag of byte m = 3 (shifted left by 8 for each lower m)
                let mut lo = n;
                let mut hi = n;
                for r in 0..4 {
                    if BASE3 {
                        let ge1 = _mm256_cmpeq_epi8(_mm256_max_epu8(n[r], t1), n[r]);
                        let ge2 = _mm256_cmpeq_epi8(_mm256_max_epu8(n[r], t2), n[r]);
                        lo[r] = _mm256_andnot_si256(ge2, ge1); // digit 1
                        hi[r] = ge2; // digit 2
                        n[r] = _mm256_add_epi8(_mm256_add_epi8(n[r], n[r]), n[r]);
                    } else {
                        // code bits 2i (low) and 2i+1 (high) of byte 3 to bit 31
                        lo[r] = _mm256_sll_epi32(n[r], _mm_cvtsi32_si128(7 - 2 * i as i32));
                        hi[r] = _mm256_sll_epi32(n[r], _mm_cvtsi32_si128(6 - 2 * i as i32));
                    }
                }
                for mm in 0..4 {
                    let m = 3 - mm;
                    let xv = _mm256_loadu_ps(x.add(kb * bk + (4 * i + m) * 16 + 8 * h));
                    let nx = _mm256_xor_ps(xv, sign);
                    for r in 0..4 {
                        let l = _mm256_castsi256_ps(lo[r]);
                        let hh = _mm256_castsi256_ps(hi[r]);
                        let v = _mm256_blendv_ps(_mm256_blendv_ps(nx, zf, l), xv, hh);
                        acc[r] = _mm256_add_ps(acc[r], v);
                        lo[r] = _mm256_slli_epi32::<8>(lo[r]);
                        hi[r] = _mm256_slli_epi32::<8>(hi[r]);
                    }
                }
            }
        }
    }
    [
        hsum256_ps(acc[0]),
        hsum256_ps(acc[1]),
        hsum256_ps(acc[2]),
        hsum256_ps(acc[3]),
    ]
}

/// Direct f32 kernel, 2-bit tile, AVX2 (see [`f32_gemv_avx2_1`]).
#[target_feature(enable = "avx2")]
pub unsafe fn f32_gemv_2bit_avx2(
    w: *const u8,
    x: &[*const f32; 2],
    nb: usize,
    nkb: usize,
) -> [[f32; 2]; 4] {
    let mut out = [[0f32; 2]; 4];
    for b in 0..nb.min(2) {
        let o = f32_gemv_avx2_1::<false>(w, x[b], nkb);
        for r in 0..4 {
            out[r][b] = o[r];
        }
    }
    out
}

/// Direct f32 kernel, base-3 tile, AVX2 (see [`f32_gemv_avx2_1`]).
#[target_feature(enable = "avx2")]
pub unsafe fn f32_gemv_base3_avx2(
    w: *const u8,
    x: &[*const f32; 2],
    nb: usize,
    nkb: usize,
) -> [[f32; 2]; 4] {
    let mut out = [[0f32; 2]; 4];
    for b in 0..nb.min(2) {
        let o = f32_gemv_avx2_1::<true>(w, x[b], nkb);
        for r in 0..4 {
            out[r][b] = o[r];
        }
    }
    out
}

/// `Σ t·x` for 4 decoded rows of codes over `len` (multiple of 64) columns.
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn f32_bytes_avx512(w: &[*const u8; 4], x: *const f32, len: usize) -> [f32; 4] {
    let z = _mm512_setzero_ps();
    let two = _mm512_set1_epi8(2);
    let mut pos = [z; 4];
    let mut neg = [z; 4];
    let mut k = 0;
    while k < len {
        let xs = [
            _mm512_loadu_ps(x.add(k)),
            _mm512_loadu_ps(x.add(k + 16)),
            _mm512_loadu_ps(x.add(k + 32)),
            _mm512_loadu_ps(x.add(k + 48)),
        ];
        for r in 0..4 {
            let v = ld512(w[r].add(k));
            let pm = _mm512_cmpeq_epi8_mask(v, two);
            let nm = _mm512_testn_epi8_mask(v, v);
            for (mi, xm) in xs.iter().enumerate() {
                pos[r] = _mm512_mask_add_ps(pos[r], (pm >> (16 * mi)) as u16, pos[r], *xm);
                neg[r] = _mm512_mask_add_ps(neg[r], (nm >> (16 * mi)) as u16, neg[r], *xm);
            }
        }
        k += 64;
    }
    let mut out = [0f32; 4];
    for r in 0..4 {
        out[r] = _mm512_reduce_add_ps(_mm512_sub_ps(pos[r], neg[r]));
    }
    out
}

/// As [`f32_bytes_avx512`] with AVX2: codes widened to i32 lanes, compared,
/// and the activations masked in (bitwise and) before adding.
#[target_feature(enable = "avx2")]
pub unsafe fn f32_bytes_avx2(w: &[*const u8; 4], x: *const f32, len: usize) -> [f32; 4] {
    let z = _mm256_setzero_ps();
    let two = _mm256_set1_epi32(2);
    let zero = _mm256_setzero_si256();
    let mut pos = [z; 4];
    let mut neg = [z; 4];
    let mut k = 0;
    while k < len {
        for s in 0..8 {
            let kk = k + 8 * s;
            let xv = _mm256_loadu_ps(x.add(kk));
            for r in 0..4 {
                let c = _mm256_cvtepu8_epi32(_mm_loadl_epi64(w[r].add(kk) as *const __m128i));
                let pm = _mm256_castsi256_ps(_mm256_cmpeq_epi32(c, two));
                let nm = _mm256_castsi256_ps(_mm256_cmpeq_epi32(c, zero));
                pos[r] = _mm256_add_ps(pos[r], _mm256_and_ps(pm, xv));
                neg[r] = _mm256_add_ps(neg[r], _mm256_and_ps(nm, xv));
            }
        }
        k += 64;
    }
    let mut out = [0f32; 4];
    for r in 0..4 {
        out[r] = hsum256_ps(_mm256_sub_ps(pos[r], neg[r]));
    }
    out
}

// ---------------------------------------------------------------- activation quantization

/// `max |x|` (exact: max does not depend on order).
#[target_feature(enable = "avx512f")]
pub unsafe fn abs_max_avx512(x: &[f32]) -> f32 {
    let mut m = _mm512_setzero_ps();
    let mut ch = x.chunks_exact(16);
    for c in &mut ch {
        m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(c.as_ptr())));
    }
    let mut r = _mm512_reduce_max_ps(m);
    for v in ch.remainder() {
        r = r.max(v.abs());
    }
    r
}

/// `q = clamp(round_half_even(x * s), -128, 127)`, bit-identical to
/// [`quantize_act_row`](crate::ternary::quant::quantize_act_row).
#[target_feature(enable = "avx512f")]
pub unsafe fn quantize_act_avx512(x: &[f32], s: f32, q: &mut [i8]) {
    let sv = _mm512_set1_ps(s);
    let lo = _mm512_set1_ps(-128.0);
    let hi = _mm512_set1_ps(127.0);
    let n = x.len() / 16 * 16;
    let mut i = 0;
    while i < n {
        let v = _mm512_mul_ps(_mm512_loadu_ps(x.as_ptr().add(i)), sv);
        let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
        let c = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
        let iv = _mm512_cvtps_epi32(c);
        _mm_storeu_si128(
            q.as_mut_ptr().add(i) as *mut __m128i,
            _mm512_cvtepi32_epi8(iv),
        );
        i += 16;
    }
    crate::ternary::quant::quantize_act_row(&x[n..], s, &mut q[n..x.len()]);
}

// ---------------------------------------------------------------- f32 activations, lookup tables

/// Transposes 16 rows of 16 dwords: `out[j]` lane `R` = `r[R]` lane `j`.
#[inline(always)]
unsafe fn transpose16(r: &[__m512i; 16]) -> [__m512i; 16] {
    let z = _mm512_setzero_si512();
    let mut a = [z; 16];
    for k in 0..8 {
        a[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        a[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    // b[4g + c], 128-bit lane l: rows 4g..4g+3 of dword 4l + c
    let mut b = [z; 16];
    for g in 0..4 {
        let (a0, a1, a2, a3) = (a[4 * g], a[4 * g + 1], a[4 * g + 2], a[4 * g + 3]);
        b[4 * g] = _mm512_unpacklo_epi64(a0, a2);
        b[4 * g + 1] = _mm512_unpackhi_epi64(a0, a2);
        b[4 * g + 2] = _mm512_unpacklo_epi64(a1, a3);
        b[4 * g + 3] = _mm512_unpackhi_epi64(a1, a3);
    }
    let mut out = [z; 16];
    for c in 0..4 {
        let c0 = _mm512_shuffle_i32x4::<0x44>(b[c], b[4 + c]);
        let c1 = _mm512_shuffle_i32x4::<0xEE>(b[c], b[4 + c]);
        let c2 = _mm512_shuffle_i32x4::<0x44>(b[8 + c], b[12 + c]);
        let c3 = _mm512_shuffle_i32x4::<0xEE>(b[8 + c], b[12 + c]);
        out[c] = _mm512_shuffle_i32x4::<0x88>(c0, c2);
        out[4 + c] = _mm512_shuffle_i32x4::<0xDD>(c0, c2);
        out[8 + c] = _mm512_shuffle_i32x4::<0x88>(c1, c3);
        out[12 + c] = _mm512_shuffle_i32x4::<0xDD>(c1, c3);
    }
    out
}

/// `Σ_k t[R,k] · x[k]` for the 16 rows of 4 consecutive 2-bit tiles (row
/// `R = 4 q + r`: row `r` of `tiles[q]`, each pointer at the first of `nkb`
/// blocks), one output row a lane, by table lookup: no per-weight add.
///
/// The 16 rows' dword `j` of a block (codes of weights `64 i + 4 j + m`) are
/// transposed into one register; nibble `n = 2 m + h` of a lane is the pair
/// of codes `(c[64·2h + 4j + m], c[64·(2h+1) + 4j + m])`, and `vpermps`
/// picks `t₁·x₁ + t₂·x₂` from the pair's 16-entry table
/// (`lut + ((kb · 16 + j) · 8 + n) · 16`, entry `c₁ + 4 c₂`; see
/// `acts::build_lut_2bit`). Four running sums a lane (by `n mod 4`), added
/// in a fixed order at the end.
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn f32_lut_2bit_avx512(
    tiles: &[*const u8; 4],
    lut: *const f32,
    nkb: usize,
) -> [f32; 16] {
    let mut acc = [_mm512_setzero_ps(); 4];
    for kb in 0..nkb {
        let mut r = [_mm512_setzero_si512(); 16];
        for (q, t) in tiles.iter().enumerate() {
            for rr in 0..4 {
                r[4 * q + rr] = ld512(t.add(kb * TB + rr * BLOCK_BYTES));
            }
        }
        let tr = transpose16(&r);
        let lb = lut.add(kb * 16 * 8 * 16);
        for (j, &v) in tr.iter().enumerate() {
            let mut u = v;
            for n in 0..8 {
                let tab = _mm512_loadu_ps(lb.add((j * 8 + n) * 16));
                let val = _mm512_permutexvar_ps(u, tab);
                acc[n % 4] = _mm512_add_ps(acc[n % 4], val);
                u = _mm512_srli_epi32::<4>(u);
            }
        }
    }
    let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let mut out = [0f32; 16];
    _mm512_storeu_ps(out.as_mut_ptr(), s);
    out
}
