//! Ternary stochastic quantization (TernGrad, Wen et al. 2017), packed at
//! 2 bits a coordinate plus one f32 scale per block.
//!
//! For block `B` with scale `s = max_{i∈B} |g_i|`, coordinate `i` becomes
//! `t_i = sign(g_i) · Bernoulli(|g_i| / s)` and decodes to `s · t_i`, so
//! `E[s t_i] = g_i` (unbiased) and `Var[s t_i] = s |g_i| - g_i²`. The Bernoulli
//! draw compares a 24-bit uniform with `|g_i| · 2^24 / s`, so the probability
//! is exact up to `2^-23` (the f32 rounding of that product).
//!
//! Random bits: block `b` takes a key `k = rng::hash2(seed, b)`; element `j`
//! of the block uses the top 24 bits of `fmix32(j · 0x9E3779B9 + k)` (the
//! MurmurHash3 finalizer), so every bit is a pure function of
//! `(seed, index)`. Codes use the crate's canonical 2-bit layout (`00 = 0`,
//! `01 = +1`, `10 = -1`, 4 codes a byte from the low bits up; element `i` is
//! in byte `i / 4`); `11` is invalid and rejected on decode.

use rayon::prelude::*;

use crate::cpu::{self, CpuLevel, Kernel};
use crate::{rng, Error, Result};

/// Default coordinates per scale (2.125 bits a coordinate: 15.06x).
pub const DEFAULT_BLOCK: usize = 256;
/// Largest block.
pub const MAX_BLOCK: usize = 1 << 20;
/// Blocks per parallel task (fixed; results never depend on threads).
const TASK_ELEMS: usize = 1 << 16;

/// Checks a block size: a multiple of 4 in `4..=MAX_BLOCK`.
pub fn check_block(block: usize) -> Result<()> {
    if !(4..=MAX_BLOCK).contains(&block) || !block.is_multiple_of(4) {
        return Err(Error::invalid(
            "block",
            format!("must be a multiple of 4 in 4..={MAX_BLOCK}, got {block}"),
        ));
    }
    Ok(())
}

/// Number of scales for `n` coordinates.
pub fn num_blocks(n: usize, block: usize) -> usize {
    n.div_ceil(block)
}

/// Packed bytes for `n` coordinates.
pub fn packed_len(n: usize) -> usize {
    n.div_ceil(4)
}

#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^ (h >> 16)
}

/// The 24-bit uniform integer of element `j` of a block with key `k`.
#[inline(always)]
pub fn uniform24(k: u32, j: u32) -> u32 {
    fmix32(j.wrapping_mul(0x9E37_79B9).wrapping_add(k)) >> 8
}

/// Key of block `b`.
#[inline(always)]
pub fn block_key(seed: u64, b: usize) -> u32 {
    rng::hash2(seed, b as u64) as u32
}

/// Quantizes one block (`g.len() <= block`, a multiple of 4 except for the
/// last block) into `out` (`ceil(g.len()/4)` bytes); returns the scale.
#[inline(always)]
fn block_impl(g: &[f32], key: u32, out: &mut [u8]) -> f32 {
    // Integer max of |g| bits: orders like the magnitudes, and NaN/inf
    // (exponent all ones) come out above every finite value.
    let s = f32::from_bits(g.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7FFF_FFFF)));
    if !s.is_finite() {
        return s;
    }
    if s == 0.0 {
        out.fill(0);
        return 0.0;
    }
    // p = |g| / s is computed as (|g| · pre) · (2^24 / (s · pre)); pre = 2^64
    // only when 2^24 / s would overflow (s < ~5e-32). Scaling by a power of
    // two is exact, so the threshold is the same as |g| · 2^24 / s would be.
    let pre = if (16_777_216.0f32 / s).is_finite() {
        1.0f32
    } else {
        18_446_744_073_709_551_616.0f32
    };
    let inv = 16_777_216.0f32 / (s * pre);
    let mut codes = [0u8; 64];
    let mut gch = g.chunks_exact(64);
    let mut c = 0u32;
    for (gc, oc) in (&mut gch).zip(out.chunks_exact_mut(16)) {
        let gc: &[f32; 64] = gc.try_into().expect("64");
        codes_into(gc, key, c * 64, pre, inv, &mut codes);
        pack_codes(&codes, oc);
        c += 1;
    }
    let gt = gch.remainder();
    if !gt.is_empty() {
        codes = [0u8; 64];
        codes_into_tail(gt, key, c * 64, pre, inv, &mut codes);
        pack_codes(&codes, &mut out[16 * c as usize..]);
    }
    s
}

#[inline(always)]
fn code_of(v: f32, r: u32, pre: f32, inv: f32) -> u8 {
    let bits = v.to_bits();
    let a = f32::from_bits(bits & 0x7FFF_FFFF);
    let nz = ((r as f32) < (a * pre) * inv) as u32;
    let neg = bits >> 31;
    (nz + (nz & neg)) as u8
}

#[inline(always)]
fn codes_into(g: &[f32; 64], key: u32, base: u32, pre: f32, inv: f32, codes: &mut [u8; 64]) {
    for j in 0..64 {
        codes[j] = code_of(g[j], uniform24(key, base + j as u32), pre, inv);
    }
}

#[inline(always)]
fn codes_into_tail(g: &[f32], key: u32, base: u32, pre: f32, inv: f32, codes: &mut [u8; 64]) {
    for (j, &v) in g.iter().enumerate() {
        codes[j] = code_of(v, uniform24(key, base + j as u32), pre, inv);
    }
}

#[inline(always)]
fn pack_codes(codes: &[u8; 64], out: &mut [u8]) {
    for (b, o) in out.iter_mut().enumerate() {
        let w = u32::from_le_bytes([
            codes[4 * b],
            codes[4 * b + 1],
            codes[4 * b + 2],
            codes[4 * b + 3],
        ]);
        *o = (w | w >> 6 | w >> 12 | w >> 18) as u8;
    }
}

/// The quantizer kernel run for a requested level (the best at or below it
/// that the CPU supports; all give identical output).
fn kernel(level: CpuLevel) -> Kernel {
    Kernel::pick(level, true)
}

/// Quantizes `g` blockwise into `scales` (`num_blocks`) and `packed`
/// (`packed_len`), seeded.
fn quantize_blocks(
    g: &[f32],
    block: usize,
    seed: u64,
    block0: usize,
    scales: &mut [f32],
    packed: &mut [u8],
    k: Kernel,
) {
    for (b, ((gb, sb), pb)) in g
        .chunks(block)
        .zip(scales.iter_mut())
        .zip(packed.chunks_mut(block / 4))
        .enumerate()
    {
        let key = block_key(seed, block0 + b);
        *sb = match k {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the kernel is picked only after detection.
            Kernel::Avx512 => unsafe { block_avx512(gb, key, pb) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 => unsafe { block_avx2(gb, key, pb) },
            Kernel::Scalar => block_impl(gb, key, pb),
        };
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi2")]
unsafe fn block_avx512(g: &[f32], key: u32, out: &mut [u8]) -> f32 {
    if !g.len().is_multiple_of(64) {
        // only a short last block (or blocks under 64): the AVX2 body
        // SAFETY: AVX-512 implies AVX2; out holds ceil(g.len() / 4) bytes.
        return unsafe { block_avx2(g, key, out) };
    }
    // SAFETY: the features are enabled; g.len() is a multiple of 64 and out
    // holds g.len() / 4 bytes (the caller's contract).
    unsafe { block_avx512_64(g, key, out) }
}

/// [`block_impl`] for blocks of whole 64-element groups, with explicit
/// AVX-512: the hash of 16 indices a vector, the threshold compare and the
/// sign as mask registers, and the 2-bit codes built by interleaving the two
/// masks' bits with `pdep` (code 1 = bit 2e, code 2 = bit 2e + 1).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi2")]
unsafe fn block_avx512_64(g: &[f32], key: u32, out: &mut [u8]) -> f32 {
    use std::arch::x86_64::*;
    let n = g.len();
    let gp = g.as_ptr();
    // SAFETY (whole body): every load reads gp[i..i + 16] with i + 16 <= n,
    // every store writes out[16 c..16 c + 16] with 16 c + 16 <= n / 4.
    unsafe {
        let absm = _mm512_set1_epi32(0x7FFF_FFFF);
        let mut mx = _mm512_setzero_si512();
        let mut i = 0;
        while i < n {
            let v = _mm512_and_si512(_mm512_loadu_si512(gp.add(i) as *const _), absm);
            mx = _mm512_max_epu32(mx, v);
            i += 16;
        }
        let s = f32::from_bits(_mm512_reduce_max_epu32(mx));
        if !s.is_finite() {
            return s;
        }
        if s == 0.0 {
            out[..n / 4].fill(0);
            return 0.0;
        }
        let pre = if (16_777_216.0f32 / s).is_finite() {
            1.0f32
        } else {
            18_446_744_073_709_551_616.0f32
        };
        let inv = _mm512_set1_ps(16_777_216.0f32 / (s * pre));
        let prev = _mm512_set1_ps(pre);
        let golden = _mm512_set1_epi32(0x9E37_79B9u32 as i32);
        let kv = _mm512_set1_epi32(key as i32);
        let m1 = _mm512_set1_epi32(0x85EB_CA6Bu32 as i32);
        let m2 = _mm512_set1_epi32(0xC2B2_AE35u32 as i32);
        let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let op = out.as_mut_ptr();
        for c in 0..n / 64 {
            let mut lo = 0u64;
            let mut hi = 0u64;
            for v in 0..4 {
                let e = 64 * c + 16 * v;
                let x = _mm512_loadu_ps(gp.add(e));
                // uniform24(key, j) for j = e..e + 16
                let j = _mm512_add_epi32(_mm512_set1_epi32(e as i32), lane);
                let mut h = _mm512_add_epi32(_mm512_mullo_epi32(j, golden), kv);
                h = _mm512_xor_si512(h, _mm512_srli_epi32::<16>(h));
                h = _mm512_mullo_epi32(h, m1);
                h = _mm512_xor_si512(h, _mm512_srli_epi32::<13>(h));
                h = _mm512_mullo_epi32(h, m2);
                h = _mm512_xor_si512(h, _mm512_srli_epi32::<16>(h));
                let r = _mm512_cvtepi32_ps(_mm512_srli_epi32::<8>(h));
                // (|x| · pre) · inv, as the generic body rounds it
                let a = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), absm));
                let t = _mm512_mul_ps(_mm512_mul_ps(a, prev), inv);
                let nz = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(r, t) as u64;
                let neg = _mm512_movepi32_mask(_mm512_castps_si512(x)) as u64;
                lo |= (nz & !neg) << (16 * v);
                hi |= (nz & neg) << (16 * v);
            }
            let w0 = _pdep_u64(lo, 0x5555_5555_5555_5555) | _pdep_u64(hi, 0xAAAA_AAAA_AAAA_AAAA);
            let w1 = _pdep_u64(lo >> 32, 0x5555_5555_5555_5555)
                | _pdep_u64(hi >> 32, 0xAAAA_AAAA_AAAA_AAAA);
            std::ptr::copy_nonoverlapping(w0.to_le_bytes().as_ptr(), op.add(16 * c), 8);
            std::ptr::copy_nonoverlapping(w1.to_le_bytes().as_ptr(), op.add(16 * c + 8), 8);
        }
        s
    }
}

/// How far ahead (bytes) the AVX2 quantizer prefetches the input while it
/// takes a block's maximum. On the Zen 3 VM this was tuned on, a software
/// prefetch 2-8 KiB ahead made the 10M-f32 stream 1.01-1.17x faster than
/// the hardware prefetcher alone (interleaved medians, load 3; 8 KiB was
/// 1.08x and 1.17x in two runs).
#[cfg(target_arch = "x86_64")]
const PREFETCH: usize = 8192;

/// [`block_impl`] with explicit AVX2, designed for it: the hash of 8 indices
/// a vector (`j · golden` advanced by an add, two `vpmulld` per vector), the
/// threshold compare and the sign as lane masks, and the 2-bit codes of 16
/// elements read out with one `movemask` (no `pdep`, which is microcoded on
/// AMD before Zen 3). Any block length; a partial last vector is loaded
/// masked (zeros quantize to code 0).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block_avx2(g: &[f32], key: u32, out: &mut [u8]) -> f32 {
    use std::arch::x86_64::*;
    let n = g.len();
    assert!(out.len() >= n.div_ceil(4));
    let gp = g.as_ptr();
    // SAFETY (whole body): full loads read gp[i..i + 8] with i + 8 <= n,
    // masked loads only lanes inside g; stores write out[i / 4..] within
    // ceil(n / 4) bytes.
    unsafe {
        let absm = _mm256_set1_epi32(0x7FFF_FFFF);
        let mut mx = [_mm256_setzero_si256(); 2];
        let mut i = 0;
        while i + 16 <= n {
            // One prefetch per 64 bytes, PREFETCH bytes ahead (the next
            // blocks; a prefetch never faults, so it may point past g).
            _mm_prefetch::<_MM_HINT_T0>((gp.wrapping_add(i) as *const i8).wrapping_add(PREFETCH));
            let a = _mm256_loadu_si256(gp.add(i) as *const __m256i);
            let b = _mm256_loadu_si256(gp.add(i + 8) as *const __m256i);
            mx[0] = _mm256_max_epu32(mx[0], _mm256_and_si256(a, absm));
            mx[1] = _mm256_max_epu32(mx[1], _mm256_and_si256(b, absm));
            i += 16;
        }
        let m = _mm256_max_epu32(mx[0], mx[1]);
        let m = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m));
        let m = _mm_max_epu32(m, _mm_shuffle_epi32::<0x4E>(m));
        let m = _mm_max_epu32(m, _mm_shuffle_epi32::<0xB1>(m));
        let mut smax = _mm_cvtsi128_si32(m) as u32;
        for v in &g[i..] {
            smax = smax.max(v.to_bits() & 0x7FFF_FFFF);
        }
        let s = f32::from_bits(smax);
        if !s.is_finite() {
            return s;
        }
        if s == 0.0 {
            out[..n.div_ceil(4)].fill(0);
            return 0.0;
        }
        let pre = if (16_777_216.0f32 / s).is_finite() {
            1.0f32
        } else {
            18_446_744_073_709_551_616.0f32
        };
        let inv = 16_777_216.0f32 / (s * pre);
        if pre == 1.0 {
            codes_avx2::<false>(g, key, 1.0, inv, out);
        } else {
            codes_avx2::<true>(g, key, pre, inv, out);
        }
        s
    }
}

/// The codes of a block with scale inputs `pre`, `inv` (see [`block_impl`]);
/// `SCALED` multiplies `|x|` by `pre` first (`pre = 1` is left out: exact).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn codes_avx2<const SCALED: bool>(g: &[f32], key: u32, pre: f32, inv: f32, out: &mut [u8]) {
    use std::arch::x86_64::*;
    let n = g.len();
    let gp = g.as_ptr();
    let k = Consts {
        inv: _mm256_set1_ps(inv),
        pre: _mm256_set1_ps(pre),
        key: _mm256_set1_epi32(key as i32),
        m1: _mm256_set1_epi32(0x85EB_CA6Bu32 as i32),
        m2: _mm256_set1_epi32(0xC2B2_AE35u32 as i32),
        absm: _mm256_set1_epi32(0x7FFF_FFFF),
        lo16: _mm256_set1_epi32(0xFFFF),
    };
    let golden = 0x9E37_79B9u32;
    // j · golden for the 8 lanes of the next vector; + 8 · golden a step.
    let mut jg = _mm256_mullo_epi32(
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        _mm256_set1_epi32(golden as i32),
    );
    let step = _mm256_set1_epi32(golden.wrapping_mul(8) as i32);
    let op = out.as_mut_ptr();
    let mut i = 0;
    // SAFETY: loads read gp[i..i + 16] with i + 16 <= n (masked past n in
    // the tail); stores write out[i / 4..] within ceil(n / 4) bytes (the
    // caller's contract).
    unsafe {
        while i + 16 <= n {
            let x0 = _mm256_loadu_ps(gp.add(i));
            let x1 = _mm256_loadu_ps(gp.add(i + 8));
            let p0 = codes8::<SCALED>(x0, jg, &k);
            jg = _mm256_add_epi32(jg, step);
            let p1 = codes8::<SCALED>(x1, jg, &k);
            jg = _mm256_add_epi32(jg, step);
            std::ptr::write_unaligned(op.add(i / 4) as *mut u32, codes16(p0, p1).to_le());
            i += 16;
        }
        if i < n {
            let (x0, x1) = load16_masked(g, i);
            let p0 = codes8::<SCALED>(x0, jg, &k);
            jg = _mm256_add_epi32(jg, step);
            let p1 = codes8::<SCALED>(x1, jg, &k);
            let bits = codes16(p0, p1).to_le_bytes();
            for (j, &byte) in bits[..(n - i).div_ceil(4)].iter().enumerate() {
                *op.add(i / 4 + j) = byte;
            }
        }
    }
}

/// Broadcast constants of [`codes8`].
#[cfg(target_arch = "x86_64")]
struct Consts {
    inv: std::arch::x86_64::__m256,
    pre: std::arch::x86_64::__m256,
    key: std::arch::x86_64::__m256i,
    m1: std::arch::x86_64::__m256i,
    m2: std::arch::x86_64::__m256i,
    absm: std::arch::x86_64::__m256i,
    lo16: std::arch::x86_64::__m256i,
}

/// The 2-bit codes of 16 elements from two [`codes8`] results: a saturating
/// pack leaves each element's `+1` and `-1` masks in adjacent bytes and
/// `movemask` reads them out (element `e` at bits `2e`, `2e + 1`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn codes16(p0: std::arch::x86_64::__m256i, p1: std::arch::x86_64::__m256i) -> u32 {
    use std::arch::x86_64::*;
    // packs interleaves the halves: [e0-3, e8-11 | e4-7, e12-15].
    let b = _mm256_permute4x64_epi64::<0xD8>(_mm256_packs_epi16(p0, p1));
    _mm256_movemask_epi8(b) as u32
}

/// Loads elements `i..i + 16` of `g` (zeros past its end) as two vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load16_masked(
    g: &[f32],
    i: usize,
) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    let n = g.len() - i;
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n.min(8) as i32), idx);
    let m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(n.saturating_sub(8) as i32), idx);
    // SAFETY: only lanes < n past i (inside g) are read; a fully masked
    // load reads nothing (and its address is at most one past the end + 7).
    unsafe {
        let p = g.as_ptr().add(i);
        (
            _mm256_maskload_ps(p, m0),
            _mm256_maskload_ps(p.wrapping_add(8), m1),
        )
    }
}

/// Codes of 8 elements `x` (hash inputs `jg = j · golden`): per 32-bit
/// lane, the `+1` mask in the low half and the `-1` mask in the high half
/// (for [`codes16`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn codes8<const SCALED: bool>(
    x: std::arch::x86_64::__m256,
    jg: std::arch::x86_64::__m256i,
    k: &Consts,
) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    // uniform24(key, j) = fmix32(j · golden + key) >> 8
    let mut h = _mm256_add_epi32(jg, k.key);
    h = _mm256_xor_si256(h, _mm256_srli_epi32::<16>(h));
    h = _mm256_mullo_epi32(h, k.m1);
    h = _mm256_xor_si256(h, _mm256_srli_epi32::<13>(h));
    h = _mm256_mullo_epi32(h, k.m2);
    h = _mm256_xor_si256(h, _mm256_srli_epi32::<16>(h));
    let r = _mm256_cvtepi32_ps(_mm256_srli_epi32::<8>(h));
    // (|x| · pre) · inv, rounded as the scalar body rounds it
    let xi = _mm256_castps_si256(x);
    let mut a = _mm256_castsi256_ps(_mm256_and_si256(xi, k.absm));
    if SCALED {
        a = _mm256_mul_ps(a, k.pre);
    }
    let nz = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(r, _mm256_mul_ps(a, k.inv)));
    // low half: nz & !neg (+1); high half: nz & neg (-1)
    let neg = _mm256_srai_epi32::<31>(xi);
    _mm256_and_si256(nz, _mm256_xor_si256(neg, k.lo16))
}

/// Quantizes `g` into `scales` (`num_blocks(n, block)` floats) and `packed`
/// (`packed_len(n)` bytes) with the given level. Errors: bad block, wrong
/// buffer lengths, non-finite input (named `grad`).
pub fn quantize_into_level(
    g: &[f32],
    block: usize,
    seed: u64,
    scales: &mut [f32],
    packed: &mut [u8],
    level: CpuLevel,
) -> Result<()> {
    let level = kernel(level);
    check_block(block)?;
    let n = g.len();
    if scales.len() != num_blocks(n, block) {
        return Err(Error::shape(
            "scales",
            format!("need {} scales, got {}", num_blocks(n, block), scales.len()),
        ));
    }
    if packed.len() != packed_len(n) {
        return Err(Error::shape(
            "packed",
            format!("need {} bytes, got {}", packed_len(n), packed.len()),
        ));
    }
    // Blocks per task: a whole number of blocks near TASK_ELEMS.
    let bpt = (TASK_ELEMS / block).max(1);
    let te = bpt * block;
    if n <= te {
        quantize_blocks(g, block, seed, 0, scales, packed, level);
    } else {
        crate::parallel::install(|| {
            g.par_chunks(te)
                .zip(scales.par_chunks_mut(bpt))
                .zip(packed.par_chunks_mut(te / 4))
                .enumerate()
                .for_each(|(t, ((gt, st), pt))| {
                    quantize_blocks(gt, block, seed, t * bpt, st, pt, level)
                })
        });
    }
    // A non-finite input makes its block's scale non-finite; only then scan
    // for the index.
    if scales.iter().any(|s| !s.is_finite()) {
        crate::check_finite(g, "grad")?;
    }
    Ok(())
}

/// [`quantize_into_level`] at the active CPU level ([`crate::cpu::active`]).
pub fn quantize_into(
    g: &[f32],
    block: usize,
    seed: u64,
    scales: &mut [f32],
    packed: &mut [u8],
) -> Result<()> {
    quantize_into_level(g, block, seed, scales, packed, cpu::active())
}

/// Quantizes `g`; returns `(scales, packed)`.
pub fn quantize(g: &[f32], block: usize, seed: u64) -> Result<(Vec<f32>, Vec<u8>)> {
    check_block(block)?;
    let mut s = crate::try_zeroed(num_blocks(g.len(), block), "grad")?;
    let mut p = crate::try_zeroed(packed_len(g.len()), "grad")?;
    quantize_into(g, block, seed, &mut s, &mut p)?;
    Ok((s, p))
}

/// Checks that `packed` holds no `11` code and zero padding past `n`.
pub fn validate_packed(packed: &[u8], n: usize, arg: &'static str) -> Result<()> {
    if packed.len() != packed_len(n) {
        return Err(Error::shape(
            arg,
            format!(
                "need {} bytes for {n} codes, got {}",
                packed_len(n),
                packed.len()
            ),
        ));
    }
    let bad = packed.iter().fold(0u8, |a, &b| a | (b & (b >> 1) & 0x55));
    if bad != 0 {
        let i = packed
            .iter()
            .position(|&b| b & (b >> 1) & 0x55 != 0)
            .unwrap_or(0);
        return Err(Error::data(
            arg,
            format!("invalid 2-bit code 11 in byte {i}"),
        ));
    }
    if !n.is_multiple_of(4) {
        let last = packed[packed.len() - 1];
        if last >> (2 * (n % 4)) != 0 {
            return Err(Error::data(arg, "non-zero padding codes in the last byte"));
        }
    }
    Ok(())
}

const LUT: [[f32; 4]; 256] = {
    let mut t = [[0.0f32; 4]; 256];
    let mut b = 0;
    while b < 256 {
        let mut j = 0;
        while j < 4 {
            t[b][j] = match (b >> (2 * j)) & 3 {
                1 => 1.0,
                2 => -1.0,
                _ => 0.0,
            };
            j += 1;
        }
        b += 1;
    }
    t
};

/// Decodes `s · t` into `out` (`n = out.len()` coordinates), adding
/// `alpha · value` to `out` when `accumulate`, overwriting otherwise.
/// Validates the codes first (see [`validate_packed`]).
pub fn dequantize_into(
    scales: &[f32],
    packed: &[u8],
    block: usize,
    out: &mut [f32],
    accumulate: Option<f32>,
) -> Result<()> {
    check_block(block)?;
    let n = out.len();
    if scales.len() != num_blocks(n, block) {
        return Err(Error::shape(
            "scales",
            format!("need {} scales, got {}", num_blocks(n, block), scales.len()),
        ));
    }
    validate_packed(packed, n, "packed")?;
    crate::check_finite(scales, "scales")?;
    crate::parallel::install(|| {
        out.par_chunks_mut(block)
            .zip(packed.par_chunks(block / 4))
            .zip(scales.par_iter())
            .with_min_len((TASK_ELEMS / block).max(1))
            .for_each(|((ob, pb), &s)| {
                for (o4, &byte) in ob.chunks_mut(4).zip(pb) {
                    let t = &LUT[byte as usize];
                    for (o, &tv) in o4.iter_mut().zip(t) {
                        match accumulate {
                            None => *o = s * tv,
                            Some(a) => *o += a * (s * tv),
                        }
                    }
                }
            })
    });
    Ok(())
}

/// Trit of coordinate `i` from packed codes (no validation).
#[inline]
pub fn trit(packed: &[u8], i: usize) -> i8 {
    match (packed[i / 4] >> (2 * (i % 4))) & 3 {
        1 => 1,
        2 => -1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| (rng::uniform_f32(seed, i as u64) - 0.5) * if i % 7 == 0 { 8.0 } else { 1.0 })
            .collect()
    }

    /// Straightforward reference from the module's definition.
    fn reference(g: &[f32], block: usize, seed: u64) -> (Vec<f32>, Vec<i8>) {
        let mut s = vec![];
        let mut t = vec![];
        for (b, gb) in g.chunks(block).enumerate() {
            let sc = gb.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            s.push(sc);
            let key = block_key(seed, b);
            for (j, &v) in gb.iter().enumerate() {
                if sc == 0.0 {
                    t.push(0);
                    continue;
                }
                let r = uniform24(key, j as u32) as f32;
                let nz = r < v.abs() * (16_777_216.0 / sc);
                t.push(if !nz {
                    0
                } else if v < 0.0 || (v == 0.0 && v.is_sign_negative()) {
                    -1
                } else {
                    1
                });
            }
        }
        (s, t)
    }

    #[test]
    fn every_level_matches_reference_on_boundary_sizes() {
        let levels = cpu::levels_for_test("ternary stochastic quantization");
        for n in [
            0usize, 1, 3, 4, 5, 31, 32, 33, 255, 256, 257, 1000, 70_001, 300_000,
        ] {
            for block in [4usize, 8, 256, 1024] {
                let g = data(n, n as u64);
                let (rs, rt) = reference(&g, block, 42);
                for &lv in &levels {
                    let mut s = vec![0.0; num_blocks(n, block)];
                    let mut p = vec![0u8; packed_len(n)];
                    quantize_into_level(&g, block, 42, &mut s, &mut p, lv).unwrap();
                    assert_eq!(s, rs, "n {n} block {block} {lv:?}");
                    let t: Vec<i8> = (0..n).map(|i| trit(&p, i)).collect();
                    assert_eq!(t, rt, "n {n} block {block} {lv:?}");
                    validate_packed(&p, n, "packed").unwrap();
                }
            }
        }
    }

    #[test]
    fn unbiased_with_variance_bound() {
        // Over T seeds the mean decode of coordinate i has variance
        // (s|g_i| - g_i²)/T; check every coordinate at 5 sd and the summed
        // squared error against its expectation Σ (s|g_i| - g_i²) at ±10%.
        let n = 512;
        let g = data(n, 5);
        let block = 128;
        let trials = 2000u64;
        let mut mean = vec![0.0f64; n];
        let mut sq_err = 0.0f64;
        let mut out = vec![0.0f32; n];
        for s in 0..trials {
            let (sc, p) = quantize(&g, block, 1000 + s).unwrap();
            dequantize_into(&sc, &p, block, &mut out, None).unwrap();
            for i in 0..n {
                mean[i] += out[i] as f64 / trials as f64;
                sq_err += ((out[i] - g[i]) as f64).powi(2) / trials as f64;
            }
        }
        let mut expect = 0.0f64;
        for (b, gb) in g.chunks(block).enumerate() {
            let sc = gb.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
            for (j, &v) in gb.iter().enumerate() {
                let var = sc * (v as f64).abs() - (v as f64).powi(2);
                expect += var;
                let i = b * block + j;
                let sd = (var / trials as f64).sqrt();
                assert!((mean[i] - v as f64).abs() <= 5.0 * sd + 1e-6, "coord {i}");
            }
        }
        assert!((sq_err / expect - 1.0).abs() < 0.1, "{sq_err} vs {expect}");
    }

    #[test]
    fn tiny_scales_keep_exact_probabilities() {
        // s = 1e-35: 2^24 / s overflows f32, the exact pre-scaling path is
        // used; elements equal to the block max are kept with probability
        // 1 - 2^-24 at most, elements of half the max about half the time.
        let mut g = vec![1e-35f32; 8];
        g.extend(std::iter::repeat_n(0.5e-35f32, 4000));
        let (s, p) = quantize(&g, 4096, 1).unwrap();
        assert_eq!(s[0], 1e-35);
        assert!((0..8).all(|i| trit(&p, i) == 1));
        let kept = (8..4008).filter(|&i| trit(&p, i) == 1).count() as f64;
        assert!(
            (kept / 4000.0 - 0.5).abs() < 5.0 * 0.5 / 4000f64.sqrt(),
            "{kept}"
        );
    }

    #[test]
    fn every_level_matches_scalar_on_tiny_and_signed_scales() {
        let levels = cpu::levels_for_test("ternary stochastic quantization (scales)");
        // whole 64-element groups (the explicit AVX-512 body), including the
        // pre-scaled path (2^24 / s overflows) and -0.0 / negative values
        for scale in [1e-35f32, 3e-39, 1.0, 7e30] {
            for n in [5usize, 33, 64, 100, 128, 256, 1000, 1024, 4096 + 64] {
                let mut g: Vec<f32> = data(n, 5).iter().map(|v| v * scale).collect();
                g[1] = -0.0;
                g[2] = 0.0;
                for block in [4usize, 12, 64, 100, 256, 1024] {
                    let mut s0 = vec![0.0; num_blocks(n, block)];
                    let mut p0 = vec![0u8; packed_len(n)];
                    quantize_into_level(&g, block, 9, &mut s0, &mut p0, CpuLevel::Scalar).unwrap();
                    for &lv in &levels {
                        let mut s1 = vec![0.0; num_blocks(n, block)];
                        let mut p1 = vec![0u8; packed_len(n)];
                        quantize_into_level(&g, block, 9, &mut s1, &mut p1, lv).unwrap();
                        assert_eq!(s1, s0, "scale {scale} n {n} block {block} {lv:?}");
                        assert_eq!(p1, p0, "scale {scale} n {n} block {block} {lv:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn parallel_independent_of_threads() {
        let g = data(1 << 20 | 13, 3);
        let a = quantize(&g, 256, 9).unwrap();
        for th in [1, 2, 3] {
            crate::parallel::set_num_threads(th);
            assert_eq!(quantize(&g, 256, 9).unwrap(), a);
        }
        crate::parallel::set_num_threads(0);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(quantize(&[1.0], 3, 0).is_err());
        assert!(quantize(&[1.0], 0, 0).is_err());
        let mut g = vec![1.0f32; 600];
        g[300] = f32::NAN;
        assert_eq!(
            quantize(&g, 256, 0),
            Err(Error::NonFinite {
                arg: "grad",
                index: 300
            })
        );
        g[300] = f32::NEG_INFINITY;
        assert_eq!(
            quantize(&g, 256, 0),
            Err(Error::NonFinite {
                arg: "grad",
                index: 300
            })
        );
        let mut out = vec![0.0f32; 5];
        assert!(dequantize_into(&[1.0, 1.0], &[0b11, 0], 4, &mut out, None).is_err());
        assert!(dequantize_into(&[1.0, 1.0], &[0, 0b0100], 4, &mut out, None).is_err()); // padding
        assert!(dequantize_into(&[1.0], &[0, 0], 4, &mut out, None).is_err());
        dequantize_into(&[2.0, 3.0], &[0b1001, 0b01], 4, &mut out, None).unwrap();
        assert_eq!(out, [2.0, -2.0, 0.0, 0.0, 3.0]);
    }
}
