//! Per-element kernels of the phase trainer.
//!
//! Every predictor's output is a fixed linear combination `p = Σ_i c_i h_i`
//! of the history buffers `h_i` (one buffer per recorded step, f32 or bf16),
//! so the kernels run across elements: eight elements per AVX2 vector, one
//! pass over the history. Two kernels:
//!
//! * [`combine`]: `out = Σ_i c_i h_i` (a predicted gradient);
//! * [`dots`]: the dot products `Σ_e h_i[e]·g[e]` of every source with one
//!   vector `g` of the same type, and `Σ_e g[e]²` (the trainer's check on
//!   every backward pass works from these and a Gram matrix of the history;
//!   see the parent module).
//!
//! # Arithmetic (identical at every CPU level)
//! [`combine`] accumulates `p` in f32 in source order, `p ← p + c_i·h_i`
//! with a separate multiply and add (no FMA), starting from 0.
//!
//! [`dots`] keeps the sums in eight f32 lanes per source; the lanes are
//! added in f64 in lane order. f32 history: a separate f32 multiply and add
//! (no FMA); element `e` goes to lane `e mod 8`, in increasing `e`. bf16
//! history (`g` then is bf16 too): a fused multiply-add, i.e. one rounding of
//! `acc + h·g` (the product of two bf16 values has 16 significant bits, so
//! the scalar reference gets the same single rounding from f64 arithmetic);
//! the first `⌊len/16⌋·16` elements go in groups of 16 (one AVX2 load),
//! lane `j` getting element `16q + 2j` and then `16q + 2j + 1` of group `q`
//! (the two bf16 halves of 32-bit word `j`), the rest element `e` to lane
//! `e mod 8`, in increasing `e`.
//!
//! The scalar reference does exactly this, so every level gives the same
//! bits; callers sum blocks of elements in f64 in a fixed order, so results
//! do not depend on the thread count either. The f32 lane sums carry a
//! relative rounding error of about `√(len/8) · 2^-24` (at most
//! `len/8 · 2^-24`) of the sum of `|h_i[e] g[e]|`.

use crate::cpu::CpuLevel;

/// Lanes of the partial sums (one AVX2 vector of f32).
const LANES: usize = 8;

/// Most sources one pass of [`dots`] accumulates (one vector of lanes each).
const GROUP: usize = 8;

/// A history element: f32, or bf16 kept as its bit pattern.
pub trait Slot: Copy + Default + Send + Sync + 'static {
    /// Whether the element is bf16 (`u16` bits).
    const BF16: bool;
    /// The value as f32 (exact).
    fn load(self) -> f32;
    /// Writes `src` into `dst` (equal lengths; bf16 rounds to nearest even).
    fn store(dst: &mut [Self], src: &[f32]);
    /// `src` as this type, exactly as [`Slot::store`] would write it: `src`
    /// itself for f32; for bf16 rounded into `buf` (as long as `src`).
    fn stage<'a>(src: &'a [f32], buf: &'a mut [Self]) -> &'a [Self];
    /// What `dots(level, srcs, Self::stage(g, buf), out)` returns, with
    /// `buf` written as [`Slot::stage`] writes it (for bf16 in one pass
    /// that rounds `g` in registers; see [`dots_staged`]).
    fn stage_dots(
        level: CpuLevel,
        srcs: &[&[Self]],
        g: &[f32],
        buf: &mut [Self],
        out: &mut [f64],
    ) -> f64;
}

impl Slot for f32 {
    const BF16: bool = false;
    #[inline(always)]
    fn load(self) -> f32 {
        self
    }
    fn store(dst: &mut [f32], src: &[f32]) {
        dst.copy_from_slice(src);
    }
    fn stage<'a>(src: &'a [f32], _buf: &'a mut [f32]) -> &'a [f32] {
        src
    }
    fn stage_dots(
        level: CpuLevel,
        srcs: &[&[f32]],
        g: &[f32],
        _buf: &mut [f32],
        out: &mut [f64],
    ) -> f64 {
        dots(level, srcs, g, out)
    }
}

impl Slot for u16 {
    const BF16: bool = true;
    #[inline(always)]
    fn load(self) -> f32 {
        f32::from_bits((self as u32) << 16)
    }
    fn store(dst: &mut [u16], src: &[f32]) {
        crate::precision::convert::f32_to_bf16(src, dst).expect("equal lengths");
    }
    fn stage<'a>(src: &'a [f32], buf: &'a mut [u16]) -> &'a [u16] {
        // The common case has no NaN: round without the NaN fix-up and only
        // redo the block with it when a NaN was seen (same bits either way).
        if !round_bf16_no_nan(crate::cpu::active(), src, buf) {
            Self::store(buf, src);
        }
        buf
    }
    fn stage_dots(
        level: CpuLevel,
        srcs: &[&[u16]],
        g: &[f32],
        buf: &mut [u16],
        out: &mut [f64],
    ) -> f64 {
        dots_staged(level, srcs, g, buf, out)
    }
}

/// Rounds `src` to bf16 bits in `dst` (nearest even, as
/// [`crate::precision::convert::f32_to_bf16`]) and returns `true`, unless
/// `src` holds a NaN: then `false`, and `dst` is unspecified (the rounding
/// skips the NaN fix-up, one compare-and-or instead of a blend).
fn round_bf16_no_nan(level: CpuLevel, src: &[f32], dst: &mut [u16]) -> bool {
    assert_eq!(src.len(), dst.len(), "equal lengths");
    let mut i = 0;
    let mut ok = true;
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::runs(CpuLevel::Avx2, level) {
        // SAFETY: AVX2 checked; equal lengths.
        let (done, nan) =
            unsafe { crate::precision::convert::x86::f32_to_bf16_head::<false>(src, dst) };
        i = done;
        ok = !nan;
    }
    let _ = level;
    for (d, &x) in dst[i..].iter_mut().zip(&src[i..]) {
        ok &= !x.is_nan();
        *d = crate::precision::convert::f32_to_bf16_bits(x);
    }
    ok
}

/// Per-lane f32 partial sums of one [`dots`] pass.
#[derive(Debug, Clone, Copy, Default)]
struct Lanes {
    acc: [[f32; LANES]; GROUP],
    gg: [f32; LANES],
}

/// The f32 lanes added in f64, in lane order.
fn reduce(l: &[f32; LANES]) -> f64 {
    l.iter().fold(0.0f64, |a, &x| a + x as f64)
}

/// Whether the AVX2 kernels may run at `level` on this CPU.
fn use_avx2(level: CpuLevel) -> bool {
    cfg!(target_arch = "x86_64")
        && CpuLevel::Avx2.allowed_under(level)
        && CpuLevel::Avx2.is_supported()
}

/// The kernel level [`combine`] and [`dots`] actually run at `level`
/// (`Avx2` for AVX2 and above where supported, else `Scalar`).
pub fn kernel_level(level: CpuLevel) -> CpuLevel {
    if use_avx2(level) {
        CpuLevel::Avx2
    } else {
        CpuLevel::Scalar
    }
}

fn check_shapes<T>(srcs: &[&[T]], coef: &[f32], n: usize) {
    assert_eq!(coef.len(), srcs.len(), "one coefficient per source");
    assert!(
        srcs.iter().all(|s| s.len() == n),
        "sources of unequal length"
    );
}

/// `out[e] = Σ_i coef[i] · srcs[i][e]` (f32, in source order; see the module
/// docs). Panics if the lengths disagree.
pub fn combine<T: Slot>(level: CpuLevel, srcs: &[&[T]], coef: &[f32], out: &mut [f32]) {
    check_shapes(srcs, coef, out.len());
    let mut start = 0;
    #[cfg(target_arch = "x86_64")]
    if use_avx2(level) {
        // SAFETY: AVX2 checked; lengths checked above.
        start = unsafe { x86::combine(srcs, coef, out) };
    }
    let _ = level;
    combine_scalar(srcs, coef, out, start);
}

fn combine_scalar<T: Slot>(srcs: &[&[T]], coef: &[f32], out: &mut [f32], start: usize) {
    for (e, o) in out.iter_mut().enumerate().skip(start) {
        let mut p = 0.0f32;
        for (s, &c) in srcs.iter().zip(coef) {
            p += c * s[e].load();
        }
        *o = p;
    }
}

/// `out[i] = Σ_e srcs[i][e] · g[e]` for every source, and returns
/// `Σ_e g[e]²` (f32 products and lane sums, lanes added in f64; see the
/// module docs for the lane order). Sources are taken eight at a time, one
/// pass over `g` each. Panics if the lengths disagree.
pub fn dots<T: Slot>(level: CpuLevel, srcs: &[&[T]], g: &[T], out: &mut [f64]) -> f64 {
    assert_eq!(out.len(), srcs.len(), "one output per source");
    assert!(
        srcs.iter().all(|s| s.len() == g.len()),
        "sources of unequal length"
    );
    let mut gg = None;
    let mut i = 0;
    // At least one pass (for Σ g² when there is no source).
    while i < srcs.len() || gg.is_none() {
        let grp = &srcs[i..(i + GROUP).min(srcs.len())];
        let mut lanes = Lanes::default();
        let mut start = 0;
        #[cfg(target_arch = "x86_64")]
        if use_avx2(level) {
            // SAFETY: AVX2 checked (the level includes FMA); lengths checked
            // above; grp.len() <= GROUP.
            start = unsafe {
                match grp.len() {
                    0 => x86::dots::<T, 0>(grp, g, &mut lanes),
                    1 => x86::dots::<T, 1>(grp, g, &mut lanes),
                    2 => x86::dots::<T, 2>(grp, g, &mut lanes),
                    3 => x86::dots::<T, 3>(grp, g, &mut lanes),
                    4 => x86::dots::<T, 4>(grp, g, &mut lanes),
                    5 => x86::dots::<T, 5>(grp, g, &mut lanes),
                    6 => x86::dots::<T, 6>(grp, g, &mut lanes),
                    7 => x86::dots::<T, 7>(grp, g, &mut lanes),
                    _ => x86::dots::<T, 8>(grp, g, &mut lanes),
                }
            };
        }
        let _ = level;
        dots_scalar(grp, g, start, &mut lanes);
        for (o, l) in out[i..i + grp.len()].iter_mut().zip(&lanes.acc) {
            *o = reduce(l);
        }
        gg.get_or_insert(reduce(&lanes.gg));
        i += grp.len();
    }
    gg.unwrap_or(0.0)
}

/// [`dots`] of bf16 sources with `g` rounded to bf16 as it will be stored:
/// writes `staged` exactly as `<u16 as Slot>::stage(g, staged)` does and
/// returns exactly what `dots(level, srcs, staged, out)` then returns (same
/// bits). With AVX2 the rounding runs inside the pass over the first eight
/// sources: sixteen gradient values are loaded as f32, rounded in
/// registers, stored to `staged` and used from there for every source's
/// multiply-add (no separate staging pass, no re-read). A NaN in `g` (the
/// fast rounding skips the NaN fix-up) redoes the whole call the staged
/// way. Panics if the lengths disagree.
pub fn dots_staged(
    level: CpuLevel,
    srcs: &[&[u16]],
    g: &[f32],
    staged: &mut [u16],
    out: &mut [f64],
) -> f64 {
    assert_eq!(out.len(), srcs.len(), "one output per source");
    assert_eq!(staged.len(), g.len(), "equal lengths");
    assert!(
        srcs.iter().all(|s| s.len() == g.len()),
        "sources of unequal length"
    );
    #[cfg(target_arch = "x86_64")]
    if use_avx2(level) {
        let k = srcs.len().min(GROUP);
        let grp = &srcs[..k];
        let mut lanes = Lanes::default();
        // SAFETY: AVX2 checked (the level includes FMA); lengths checked
        // above; grp.len() <= GROUP.
        let (start, nan) = unsafe {
            match k {
                0 => x86::dots_staged::<0>(grp, g, staged, &mut lanes),
                1 => x86::dots_staged::<1>(grp, g, staged, &mut lanes),
                2 => x86::dots_staged::<2>(grp, g, staged, &mut lanes),
                3 => x86::dots_staged::<3>(grp, g, staged, &mut lanes),
                4 => x86::dots_staged::<4>(grp, g, staged, &mut lanes),
                5 => x86::dots_staged::<5>(grp, g, staged, &mut lanes),
                6 => x86::dots_staged::<6>(grp, g, staged, &mut lanes),
                7 => x86::dots_staged::<7>(grp, g, staged, &mut lanes),
                _ => x86::dots_staged::<8>(grp, g, staged, &mut lanes),
            }
        };
        if !nan {
            // The tail (under 16 elements) as `stage` rounds it (the exact
            // scalar rounding, NaN fix-up included), then as `dots` sums it.
            for (d, &x) in staged[start..].iter_mut().zip(&g[start..]) {
                *d = crate::precision::convert::f32_to_bf16_bits(x);
            }
            dots_scalar(grp, staged, start, &mut lanes);
            for (o, l) in out[..k].iter_mut().zip(&lanes.acc) {
                *o = reduce(l);
            }
            if srcs.len() > k {
                // Further groups read the staged values (their Σ g² is
                // the same; the first pass's is returned, as `dots` does).
                dots(level, &srcs[k..], staged, &mut out[k..]);
            }
            return reduce(&lanes.gg);
        }
    }
    dots(level, srcs, <u16 as Slot>::stage(g, staged), out)
}

/// The reference of [`dots`] for at most [`GROUP`] sources, from element
/// `start` (0, or where the AVX2 kernel stopped: a multiple of 16 for bf16).
fn dots_scalar<T: Slot>(srcs: &[&[T]], g: &[T], start: usize, l: &mut Lanes) {
    let n = g.len();
    // f32: a rounded product, then a rounded sum. bf16: `acc + h·g` rounded
    // once, as the AVX2 FMA does (the f64 product is exact, and so is the
    // f64 sum whenever it matters for the f32 rounding).
    let madd = |acc: f32, h: f32, g: f32| -> f32 {
        if T::BF16 {
            (acc as f64 + h as f64 * g as f64) as f32
        } else {
            acc + h * g
        }
    };
    let mut add = |x: usize, j: usize| {
        let gv = g[x].load();
        for (acc, s) in l.acc.iter_mut().zip(srcs) {
            acc[j] = madd(acc[j], s[x].load(), gv);
        }
        l.gg[j] = madd(l.gg[j], gv, gv);
    };
    let mut e = start;
    if T::BF16 {
        debug_assert!(start.is_multiple_of(16) || start >= n / 16 * 16);
        // Groups of 16: lane j gets 2j, then 2j + 1.
        while e + 16 <= n {
            for j in 0..LANES {
                add(e + 2 * j, j);
                add(e + 2 * j + 1, j);
            }
            e += 16;
        }
    }
    for x in e..n {
        add(x, x % LANES);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Lanes, Slot};
    use std::arch::x86_64::*;

    /// Eight history values at `p` as f32.
    macro_rules! load8 {
        ($t:ty, $p:expr) => {
            if <$t as Slot>::BF16 {
                let h = _mm_loadu_si128($p as *const __m128i);
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            } else {
                _mm256_loadu_ps($p as *const f32)
            }
        };
    }

    /// Writes the combination for the first `len / 16 * 16` elements and
    /// returns that count.
    ///
    /// # Safety
    /// AVX2; every source as long as `out`; `coef.len() == srcs.len()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn combine<T: Slot>(srcs: &[&[T]], coef: &[f32], out: &mut [f32]) -> usize {
        let n = out.len();
        let k = srcs.len();
        let mut e = 0;
        if T::BF16 {
            // Sixteen bf16 values per load: each 32-bit word holds elements
            // 2j (low half) and 2j+1 (high half), so a shift gives the even
            // elements as f32 and a mask the odd ones (two operations for
            // sixteen values instead of four). Each element's arithmetic is
            // the same as below; the two halves are interleaved back before
            // the store.
            // SAFETY: as below.
            unsafe {
                let himask = _mm256_set1_epi32(0xFFFF_0000u32 as i32);
                // 32 elements a step: four independent add chains (one chain
                // of k dependent adds per vector bounds a 16-element step).
                while e + 32 <= n {
                    let z = _mm256_setzero_ps();
                    let (mut e0, mut o0, mut e1, mut o1) = (z, z, z, z);
                    for i in 0..k {
                        let c = _mm256_set1_ps(*coef.get_unchecked(i));
                        let s = srcs.get_unchecked(i).as_ptr().add(e);
                        let w0 = _mm256_loadu_si256(s as *const __m256i);
                        let w1 = _mm256_loadu_si256(s.add(16) as *const __m256i);
                        let lo0 = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w0));
                        let hi0 = _mm256_castsi256_ps(_mm256_and_si256(w0, himask));
                        let lo1 = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w1));
                        let hi1 = _mm256_castsi256_ps(_mm256_and_si256(w1, himask));
                        e0 = _mm256_add_ps(e0, _mm256_mul_ps(c, lo0));
                        o0 = _mm256_add_ps(o0, _mm256_mul_ps(c, hi0));
                        e1 = _mm256_add_ps(e1, _mm256_mul_ps(c, lo1));
                        o1 = _mm256_add_ps(o1, _mm256_mul_ps(c, hi1));
                    }
                    let o = out.as_mut_ptr().add(e);
                    for (j, (ev, od)) in [(e0, o0), (e1, o1)].into_iter().enumerate() {
                        let l = _mm256_unpacklo_ps(ev, od);
                        let h = _mm256_unpackhi_ps(ev, od);
                        _mm256_storeu_ps(o.add(16 * j), _mm256_permute2f128_ps::<0x20>(l, h));
                        _mm256_storeu_ps(o.add(16 * j + 8), _mm256_permute2f128_ps::<0x31>(l, h));
                    }
                    e += 32;
                }
                while e + 16 <= n {
                    let mut ev = _mm256_setzero_ps();
                    let mut od = _mm256_setzero_ps();
                    for i in 0..k {
                        let c = _mm256_set1_ps(*coef.get_unchecked(i));
                        let s = srcs.get_unchecked(i).as_ptr().add(e);
                        let w = _mm256_loadu_si256(s as *const __m256i);
                        let lo = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w));
                        let hi = _mm256_castsi256_ps(_mm256_and_si256(w, himask));
                        ev = _mm256_add_ps(ev, _mm256_mul_ps(c, lo));
                        od = _mm256_add_ps(od, _mm256_mul_ps(c, hi));
                    }
                    // [0 1 2 3 | 8 9 10 11] and [4 5 6 7 | 12 13 14 15]
                    let l = _mm256_unpacklo_ps(ev, od);
                    let h = _mm256_unpackhi_ps(ev, od);
                    _mm256_storeu_ps(
                        out.as_mut_ptr().add(e),
                        _mm256_permute2f128_ps::<0x20>(l, h),
                    );
                    _mm256_storeu_ps(
                        out.as_mut_ptr().add(e + 8),
                        _mm256_permute2f128_ps::<0x31>(l, h),
                    );
                    e += 16;
                }
            }
            return e;
        }
        while e + 32 <= n {
            // SAFETY: e + 32 <= n = every source's length; i < k = coef.len().
            unsafe {
                let z = _mm256_setzero_ps();
                let (mut a, mut b, mut c2, mut d) = (z, z, z, z);
                for i in 0..k {
                    let c = _mm256_set1_ps(*coef.get_unchecked(i));
                    let s = srcs.get_unchecked(i).as_ptr().add(e);
                    a = _mm256_add_ps(a, _mm256_mul_ps(c, load8!(T, s)));
                    b = _mm256_add_ps(b, _mm256_mul_ps(c, load8!(T, s.add(8))));
                    c2 = _mm256_add_ps(c2, _mm256_mul_ps(c, load8!(T, s.add(16))));
                    d = _mm256_add_ps(d, _mm256_mul_ps(c, load8!(T, s.add(24))));
                }
                let o = out.as_mut_ptr().add(e);
                _mm256_storeu_ps(o, a);
                _mm256_storeu_ps(o.add(8), b);
                _mm256_storeu_ps(o.add(16), c2);
                _mm256_storeu_ps(o.add(24), d);
            }
            e += 32;
        }
        while e + 16 <= n {
            // SAFETY: e + 16 <= n = every source's length; i < k = coef.len().
            unsafe {
                let mut a = _mm256_setzero_ps();
                let mut b = _mm256_setzero_ps();
                for i in 0..k {
                    let c = _mm256_set1_ps(*coef.get_unchecked(i));
                    let s = srcs.get_unchecked(i).as_ptr().add(e);
                    a = _mm256_add_ps(a, _mm256_mul_ps(c, load8!(T, s)));
                    b = _mm256_add_ps(b, _mm256_mul_ps(c, load8!(T, s.add(8))));
                }
                _mm256_storeu_ps(out.as_mut_ptr().add(e), a);
                _mm256_storeu_ps(out.as_mut_ptr().add(e + 8), b);
            }
            e += 16;
        }
        e
    }

    /// Accumulates the dot products of the `S` sources with `g` (and
    /// `g·g`) for the first `len / 8 * 8` elements into `lanes` and returns
    /// that count (see the module docs for the lane order).
    ///
    /// # Safety
    /// AVX2 and FMA; `srcs.len() == S <= 8`; every source as long as `g`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dots<T: Slot, const S: usize>(
        srcs: &[&[T]],
        g: &[T],
        lanes: &mut Lanes,
    ) -> usize {
        let n = g.len();
        let z = _mm256_setzero_ps();
        let mut acc = [z; S];
        let mut gg = z;
        let p: [*const T; S] = std::array::from_fn(|i| srcs[i].as_ptr());
        let gp = g.as_ptr();
        let mut e = 0;
        // SAFETY (all loops): e + 16 (or 8) <= n = every source's length.
        unsafe {
            if T::BF16 {
                // 16 values a load: 32-bit word j holds elements 2j (low
                // half) and 2j + 1 (high half); masking the low half gives
                // the exact f32 of 2j + 1, shifting it up that of 2j.
                let hi = _mm256_castsi256_ps(_mm256_set1_epi32(-65536)); // 0xffff_0000
                let split = |x: __m256i| {
                    (
                        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(x)),
                        _mm256_and_ps(_mm256_castsi256_ps(x), hi),
                    )
                };
                while e + 16 <= n {
                    let (g0, g1) = split(_mm256_loadu_si256(gp.add(e) as *const __m256i));
                    for i in 0..S {
                        let (h0, h1) = split(_mm256_loadu_si256(p[i].add(e) as *const __m256i));
                        acc[i] = _mm256_fmadd_ps(h0, g0, acc[i]);
                        acc[i] = _mm256_fmadd_ps(h1, g1, acc[i]);
                    }
                    gg = _mm256_fmadd_ps(g0, g0, gg);
                    gg = _mm256_fmadd_ps(g1, g1, gg);
                    e += 16;
                }
                if e + 8 <= n {
                    let gv = load8!(T, gp.add(e));
                    for i in 0..S {
                        acc[i] = _mm256_fmadd_ps(load8!(T, p[i].add(e)), gv, acc[i]);
                    }
                    gg = _mm256_fmadd_ps(gv, gv, gg);
                    e += 8;
                }
            }
            while e + 8 <= n {
                let gv = load8!(T, gp.add(e));
                for i in 0..S {
                    acc[i] = _mm256_add_ps(acc[i], _mm256_mul_ps(load8!(T, p[i].add(e)), gv));
                }
                gg = _mm256_add_ps(gg, _mm256_mul_ps(gv, gv));
                e += 8;
            }
            // SAFETY: each destination is an [f32; 8].
            for (l, a) in lanes.acc.iter_mut().zip(acc) {
                _mm256_storeu_ps(l.as_mut_ptr(), a);
            }
            _mm256_storeu_ps(lanes.gg.as_mut_ptr(), gg);
        }
        e
    }

    /// [`dots`] for bf16 sources with the gradient given as f32: rounds
    /// the first `len / 16 * 16` values of `g` to bf16 into `staged` (the
    /// arithmetic of `precision::convert`, without the NaN fix-up) and
    /// accumulates exactly what [`dots`] accumulates from those staged
    /// values. Returns `(that count, whether g held a NaN there)`; after a
    /// NaN, `staged` and `lanes` are unspecified.
    ///
    /// # Safety
    /// AVX2 and FMA; `srcs.len() == S <= 8`; every source and `staged` as
    /// long as `g`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dots_staged<const S: usize>(
        srcs: &[&[u16]],
        g: &[f32],
        staged: &mut [u16],
        lanes: &mut Lanes,
    ) -> (usize, bool) {
        use crate::precision::convert::x86::{bf16_pack16, bf16_round8};
        let n = g.len();
        let z = _mm256_setzero_ps();
        let mut acc = [z; S];
        let mut gg = z;
        let mut seen = z;
        let p: [*const u16; S] = std::array::from_fn(|i| srcs[i].as_ptr());
        let gp = g.as_ptr();
        let sp = staged.as_mut_ptr();
        let hi = _mm256_castsi256_ps(_mm256_set1_epi32(-65536)); // 0xffff_0000
        let split = |x: __m256i| {
            (
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(x)),
                _mm256_and_ps(_mm256_castsi256_ps(x), hi),
            )
        };
        let mut e = 0;
        // SAFETY: e + 16 <= n = the length of every source and of `staged`.
        unsafe {
            while e + 16 <= n {
                let x0 = _mm256_loadu_ps(gp.add(e));
                let x1 = _mm256_loadu_ps(gp.add(e + 8));
                // Unordered: either value is NaN.
                seen = _mm256_or_ps(seen, _mm256_cmp_ps::<_CMP_UNORD_Q>(x0, x1));
                let w = bf16_pack16(
                    bf16_round8(_mm256_castps_si256(x0)),
                    bf16_round8(_mm256_castps_si256(x1)),
                );
                _mm256_storeu_si256(sp.add(e) as *mut __m256i, w);
                // From here as `dots` does with the staged values.
                let (g0, g1) = split(w);
                for i in 0..S {
                    let (h0, h1) = split(_mm256_loadu_si256(p[i].add(e) as *const __m256i));
                    acc[i] = _mm256_fmadd_ps(h0, g0, acc[i]);
                    acc[i] = _mm256_fmadd_ps(h1, g1, acc[i]);
                }
                gg = _mm256_fmadd_ps(g0, g0, gg);
                gg = _mm256_fmadd_ps(g1, g1, gg);
                e += 16;
            }
            // SAFETY: each destination is an [f32; 8].
            for (l, a) in lanes.acc.iter_mut().zip(acc) {
                _mm256_storeu_ps(l.as_mut_ptr(), a);
            }
            _mm256_storeu_ps(lanes.gg.as_mut_ptr(), gg);
        }
        (e, _mm256_movemask_ps(seen) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precision::convert::f32_to_bf16_bits;
    use crate::rng::uniform_f32;

    /// Boundary sizes (vector of 8, bf16 group of 16, trainer block of 4096)
    /// and a few seeded random ones.
    fn sizes() -> Vec<usize> {
        let mut v = vec![
            0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 32, 33, 255, 256, 257, 4095, 4096,
            4097,
        ];
        v.extend((0..4).map(|i| (uniform_f32(4242, i) * 3000.0) as usize));
        v
    }

    fn levels() -> Vec<CpuLevel> {
        let run = crate::cpu::supported_levels();
        eprintln!(
            "predict kernels: levels run {:?} (kernel {:?}); skipped {:?}",
            run,
            run.iter().map(|&l| kernel_level(l)).collect::<Vec<_>>(),
            crate::cpu::unsupported_levels()
        );
        run
    }

    fn data(seed: u64, n: usize, k: usize) -> (Vec<Vec<f32>>, Vec<f32>) {
        let h = (0..k)
            .map(|i| {
                (0..n)
                    .map(|e| uniform_f32(seed * 977 + i as u64, e as u64) * 4.0 - 2.0)
                    .collect()
            })
            .collect();
        let g = (0..n)
            .map(|e| uniform_f32(seed * 991 + 500, e as u64) * 3.0 - 1.5)
            .collect();
        (h, g)
    }

    fn bf16(v: &[f32]) -> Vec<u16> {
        v.iter().map(|&x| f32_to_bf16_bits(x)).collect()
    }

    #[test]
    fn staged_bf16_equals_the_exact_rounding() {
        // Ties, carries into the exponent, infinities, subnormals and NaNs
        // of every kind (a NaN must be reported, whatever `dst` then holds).
        let special = [
            0.0f32,
            -0.0,
            1.0,
            f32::from_bits(0x3f80_8000), // tie, even: down
            f32::from_bits(0x3f81_8000), // tie, odd: up
            f32::from_bits(0x7f7f_ffff), // rounds to inf
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::from_bits(1),
            f32::from_bits(0x8000_8000),
        ];
        let nans = [
            0x7fc0_0000u32,
            0x7f80_0001,
            0x7fff_ffff,
            0xffff_ffff,
            0xff80_0001,
        ];
        for (level, n) in levels()
            .into_iter()
            .flat_map(|l| sizes().into_iter().map(move |n| (l, n)))
        {
            let x: Vec<f32> = (0..n)
                .map(|e| {
                    if e % 7 == 3 {
                        special[e % special.len()]
                    } else {
                        uniform_f32(9, e as u64) * 6.0 - 3.0
                    }
                })
                .collect();
            let mut want = vec![0u16; n];
            crate::precision::convert::f32_to_bf16(&x, &mut want).unwrap();
            let mut got = vec![0u16; n];
            assert!(round_bf16_no_nan(level, &x, &mut got), "n {n}");
            assert_eq!(got, want, "{level:?} n {n}");
            let mut staged = vec![0u16; n];
            assert_eq!(<u16 as Slot>::stage(&x, &mut staged), &want[..]);
            for (j, &bits) in nans.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let mut y = x.clone();
                y[(j * 7919) % n] = f32::from_bits(bits);
                assert!(
                    !round_bf16_no_nan(level, &y, &mut got),
                    "{level:?} n {n} nan {bits:#x}"
                );
                crate::precision::convert::f32_to_bf16(&y, &mut want).unwrap();
                assert_eq!(<u16 as Slot>::stage(&y, &mut staged), &want[..]);
            }
        }
    }

    #[test]
    fn combine_equals_the_reference_at_every_level() {
        for level in levels() {
            for (case, n) in sizes().into_iter().enumerate() {
                for k in [1usize, 2, 3, 8, 17] {
                    let (h, _) = data(case as u64 * 31 + k as u64, n, k);
                    let hb: Vec<Vec<u16>> = h.iter().map(|v| bf16(v)).collect();
                    let coef: Vec<f32> = (0..k)
                        .map(|i| uniform_f32(77 + case as u64, i as u64) * 2.0 - 0.7)
                        .collect();
                    let srcs: Vec<&[f32]> = h.iter().map(|v| v.as_slice()).collect();
                    let srcb: Vec<&[u16]> = hb.iter().map(|v| v.as_slice()).collect();
                    // Bit-exact against the scalar reference (same arithmetic).
                    let mut out = vec![f32::NAN; n];
                    let mut want = vec![0f32; n];
                    combine(level, &srcs, &coef, &mut out);
                    combine_scalar(&srcs, &coef, &mut want, 0);
                    assert_eq!(out, want, "{level:?} n {n} k {k}");
                    combine(level, &srcb, &coef, &mut out);
                    combine_scalar(&srcb, &coef, &mut want, 0);
                    assert_eq!(out, want, "bf16 {level:?} n {n} k {k}");
                }
            }
        }
    }

    /// Checks `dots` at `level` against the scalar reference (bits) and, with
    /// `bound`, the f64 definitions (within the rounding bound).
    fn check_dots<T: Slot>(level: CpuLevel, h: &[Vec<T>], g: &[T], what: &str, bound: bool) {
        let n = g.len();
        let srcs: Vec<&[T]> = h.iter().map(|v| v.as_slice()).collect();
        let mut got = vec![f64::NAN; h.len()];
        let gg = dots(level, &srcs, g, &mut got);
        // The scalar reference, eight sources a pass.
        let mut want = vec![0.0; h.len()];
        let mut want_gg = None;
        for (c, o) in srcs.chunks(GROUP).zip(want.chunks_mut(GROUP)) {
            let mut l = Lanes::default();
            dots_scalar(c, g, 0, &mut l);
            for (o, a) in o.iter_mut().zip(&l.acc) {
                *o = reduce(a);
            }
            want_gg.get_or_insert(reduce(&l.gg));
        }
        let want_gg = want_gg.unwrap_or_else(|| {
            let mut l = Lanes::default();
            dots_scalar::<T>(&[], g, 0, &mut l);
            reduce(&l.gg)
        });
        // The same bits (any NaN counts as the same: overflowed sums).
        let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        for (a, b) in got.iter().zip(&want) {
            assert!(
                same(*a, *b),
                "{what} {level:?} n {n} k {}: {got:?} vs {want:?}",
                h.len()
            );
        }
        assert!(
            same(gg, want_gg),
            "{what} gg {level:?} n {n}: {gg} vs {want_gg}"
        );
        if !bound {
            return;
        }
        // Recursive f32 summation of n/8 products a lane: |error| <=
        // (n/8 + 2) 2^-24 Σ|h g| (to first order), plus the subnormal spacing.
        let bound = |x: &[T]| {
            let exact: f64 = x
                .iter()
                .zip(g)
                .map(|(a, b)| a.load() as f64 * b.load() as f64)
                .sum();
            let mag: f64 = x
                .iter()
                .zip(g)
                .map(|(a, b)| (a.load() as f64 * b.load() as f64).abs())
                .sum();
            let sub = (n as f64 + 1.0) * 2f64.powi(-149);
            (exact, (n as f64 / 8.0 + 2.0) * 2f64.powi(-24) * mag + sub)
        };
        for (i, x) in h.iter().enumerate() {
            let (exact, tol) = bound(x);
            assert!(
                (got[i] - exact).abs() <= tol,
                "{what} n {n} src {i}: {} vs {exact}",
                got[i]
            );
        }
        let (exact, tol) = bound(g);
        assert!(
            (gg - exact).abs() <= tol,
            "{what} n {n} gg: {gg} vs {exact}"
        );
    }

    #[test]
    fn dots_equal_the_reference_at_every_level() {
        for level in levels() {
            for (case, n) in sizes().into_iter().enumerate() {
                for k in [0usize, 1, 2, 3, 7, 8, 9, 17] {
                    // Ordinary values; products in the subnormal range (where
                    // an FMA and a rounded product differ); sums that overflow.
                    for (scale, bound) in [(1.0f32, true), (3e-22, true), (2e19, false)] {
                        let (mut h, mut g) = data(case as u64 * 37 + k as u64, n, k);
                        h.iter_mut().flatten().for_each(|x| *x *= scale);
                        g.iter_mut().for_each(|x| *x *= scale);
                        check_dots(level, &h, &g, &format!("f32 x{scale}"), bound);
                        let hb: Vec<Vec<u16>> = h.iter().map(|v| bf16(v)).collect();
                        check_dots(level, &hb, &bf16(&g), &format!("bf16 x{scale}"), bound);
                    }
                }
            }
        }
    }

    #[test]
    fn dots_staged_equals_staging_then_dots() {
        // The fused pass (rounding in registers) against the two-pass
        // reference `stage` then `dots`: the same staged bits and the same
        // sums, with ties, carries into the exponent, values that round to
        // infinity, infinities, subnormals, and (in some cases) a NaN.
        let special = [
            f32::from_bits(0x3f80_8000), // tie, even: down
            f32::from_bits(0x3f81_8000), // tie, odd: up
            f32::from_bits(0x3fff_ffff), // carry into the exponent
            f32::from_bits(0x7f7f_ffff), // rounds to inf
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::from_bits(1),
            f32::from_bits(0x8000_8000),
            f32::from_bits(0x0001_8000), // subnormal tie, odd: up
            -0.0,
        ];
        let nans = [0x7fc0_0000u32, 0x7f80_0001, 0xffff_ffff, 0xff80_0001];
        let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        for level in levels() {
            for (case, n) in sizes().into_iter().enumerate() {
                for k in [0usize, 1, 2, 3, 7, 8, 9, 17] {
                    let seed = case as u64 * 41 + k as u64;
                    let (h, mut g) = data(seed, n, k);
                    // mode 0: ordinary values; 1: specials every 5th
                    // element; 2: specials and one NaN.
                    for mode in 0..3 {
                        if mode >= 1 {
                            for (e, x) in g.iter_mut().enumerate() {
                                if (e + case) % 5 == 2 {
                                    *x = special[(e / 5 + k) % special.len()];
                                }
                            }
                        }
                        if mode == 2 && n > 0 {
                            let at = (uniform_f32(seed, 7) * n as f32) as usize % n;
                            g[at] = f32::from_bits(nans[(case + k) % nans.len()]);
                        }
                        let hb: Vec<Vec<u16>> = h.iter().map(|v| bf16(v)).collect();
                        let srcs: Vec<&[u16]> = hb.iter().map(|v| v.as_slice()).collect();
                        let mut want_st = vec![0u16; n];
                        let mut want = vec![f64::NAN; k];
                        let want_gg = dots(
                            level,
                            &srcs,
                            <u16 as Slot>::stage(&g, &mut want_st),
                            &mut want,
                        );
                        let mut st = vec![0x5555u16; n];
                        let mut got = vec![f64::NAN; k];
                        let gg = dots_staged(level, &srcs, &g, &mut st, &mut got);
                        let what = format!("{level:?} n {n} k {k} mode {mode}");
                        assert_eq!(st, want_st, "staged {what}");
                        assert!(same(gg, want_gg), "gg {what}: {gg} vs {want_gg}");
                        for (a, b) in got.iter().zip(&want) {
                            assert!(same(*a, *b), "{what}: {got:?} vs {want:?}");
                        }
                        // The f32 slot's fused form is plain `dots`.
                        let s32: Vec<&[f32]> = h.iter().map(|v| v.as_slice()).collect();
                        let mut a = vec![0.0; k];
                        let mut b = vec![0.0; k];
                        let x = <f32 as Slot>::stage_dots(level, &s32, &g, &mut [], &mut a);
                        let y = dots(level, &s32, &g, &mut b);
                        assert!(same(x, y) && a.iter().zip(&b).all(|(p, q)| same(*p, *q)));
                    }
                }
            }
        }
    }

    #[test]
    fn bf16_lane_order_is_the_documented_one() {
        // One non-zero element at a time: it must land in the documented lane.
        let n = 40;
        for x in 0..n {
            let mut g = vec![0u16; n];
            g[x] = f32_to_bf16_bits(1.0);
            let mut l = Lanes::default();
            dots_scalar::<u16>(&[], &g, 0, &mut l);
            let lane = l.gg.iter().position(|&v| v == 1.0).unwrap();
            let want = if x < 32 { (x % 16) / 2 } else { x % 8 };
            assert_eq!(lane, want, "element {x}");
            #[cfg(target_arch = "x86_64")]
            if use_avx2(CpuLevel::Avx2) {
                let mut a = Lanes::default();
                // SAFETY: AVX2 (with FMA: the AVX2 level includes it) checked; no source.
                let done = unsafe { x86::dots::<u16, 0>(&[], &g, &mut a) };
                dots_scalar::<u16>(&[], &g, done, &mut a);
                assert_eq!(a.gg, l.gg, "element {x}");
            }
        }
    }
}
