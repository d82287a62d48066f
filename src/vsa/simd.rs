//! Popcount kernels beside their scalar reference, picked at run time from
//! the crate's one CPU level ([`crate::cpu`]; `TRITTER_CPU_LEVEL` caps it).
//!
//! * Scalar (`CpuLevel::Scalar`): portable Rust (`count_ones`), the reference.
//! * AVX2 (`CpuLevel::Avx2`): popcounts of 256-bit vectors by nibble table
//!   lookup (`vpshufb`), byte counts summed by `vpsadbw` every 31 vectors;
//!   an item-memory scan takes the rows one at a time in storage order with
//!   a software prefetch a few KiB ahead, and a bipolar row needs one
//!   popcount a vector (`disagree = nnz(query) - agree`). Short vectors
//!   (< 8 words) use the `popcnt` instruction.
//! * AVX-512 (`CpuLevel::Avx512` with VPOPCNTDQ): 8 words a step with masked
//!   tail loads. Without VPOPCNTDQ an AVX-512 CPU runs the AVX2 kernels.
//!
//! Every level returns exactly the same integers; the tests run each level
//! the machine has against the scalar code.

use crate::cpu::{self, CpuLevel, Kernel};

/// The popcount kernels that run for a requested level (AVX-512 needs
/// VPOPCNTDQ; without it an AVX-512 CPU runs the AVX2 kernels).
pub(crate) fn kernel(level: CpuLevel) -> Kernel {
    Kernel::pick(level, cpu::features().avx512vpopcntdq)
}

/// Counts over a pair of packed vectors `a = (ap, am)`, `b = (bp, bm)` (all four
/// slices the same length): `(agree, disagree)` = positions where both are
/// non-zero and equal / opposite.
#[inline(always)]
fn counts_generic(ap: &[u64], am: &[u64], bp: &[u64], bm: &[u64]) -> (u64, u64) {
    let n = ap.len();
    let (am, bp, bm) = (&am[..n], &bp[..n], &bm[..n]);
    let (mut agree, mut dis) = (0u64, 0u64);
    for i in 0..n {
        agree += ((ap[i] & bp[i]) | (am[i] & bm[i])).count_ones() as u64;
        dis += ((ap[i] & bm[i]) | (am[i] & bp[i])).count_ones() as u64;
    }
    (agree, dis)
}

/// As [`counts_generic`] for a bipolar `b` given by its plus plane only
/// (`bm = !bp` inside `dim`; `a`'s padding bits are zero, so no mask is needed).
#[inline(always)]
fn counts_bipolar_generic(ap: &[u64], am: &[u64], bp: &[u64]) -> (u64, u64) {
    let n = ap.len();
    let (am, bp) = (&am[..n], &bp[..n]);
    let (mut agree, mut dis) = (0u64, 0u64);
    for i in 0..n {
        agree += ((ap[i] & bp[i]) | (am[i] & !bp[i])).count_ones() as u64;
        dis += ((ap[i] & !bp[i]) | (am[i] & bp[i])).count_ones() as u64;
    }
    (agree, dis)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn counts_popcnt(ap: &[u64], am: &[u64], bp: &[u64], bm: &[u64]) -> (u64, u64) {
    counts_generic(ap, am, bp, bm)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn counts_bipolar_popcnt(ap: &[u64], am: &[u64], bp: &[u64]) -> (u64, u64) {
    counts_bipolar_generic(ap, am, bp)
}

/// The AVX2 kernels: nibble-table popcounts over 256-bit vectors.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Vectors whose byte counts (at most 8 a byte each) fit a byte: 31.
    const FLUSH: usize = 31;

    /// Constants of the nibble popcount.
    #[derive(Clone, Copy)]
    pub(super) struct Pop {
        lut: __m256i,
        low: __m256i,
    }

    impl Pop {
        #[target_feature(enable = "avx2")]
        #[inline]
        pub(super) fn new() -> Pop {
            Pop {
                lut: _mm256_setr_epi8(
                    0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                    2, 3, 2, 3, 3, 4,
                ),
                low: _mm256_set1_epi8(0x0F),
            }
        }

        /// Per-byte popcounts of `v` (each 0..=8).
        #[target_feature(enable = "avx2")]
        #[inline]
        pub(super) fn bytes(self, v: __m256i) -> __m256i {
            let lo = _mm256_and_si256(v, self.low);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), self.low);
            _mm256_add_epi8(
                _mm256_shuffle_epi8(self.lut, lo),
                _mm256_shuffle_epi8(self.lut, hi),
            )
        }
    }

    /// Sum of the bytes of `acc` into the four u64 lanes of `tot`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn flush(tot: __m256i, acc: __m256i) -> __m256i {
        _mm256_add_epi64(tot, _mm256_sad_epu8(acc, _mm256_setzero_si256()))
    }

    /// Horizontal sum of four u64 lanes.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn hsum(v: __m256i) -> u64 {
        let s = _mm_add_epi64(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        (_mm_cvtsi128_si64(s) + _mm_extract_epi64::<1>(s)) as u64
    }

    /// Loads words `4j..4j + 4` at `p` (`FULL`), or the first of them
    /// selected by `tail` (zeros elsewhere).
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn load<const FULL: bool>(p: *const u64, j: usize, tail: __m256i) -> __m256i {
        // SAFETY: the caller guarantees the words read exist.
        unsafe {
            if FULL {
                _mm256_loadu_si256(p.add(4 * j) as *const __m256i)
            } else {
                _mm256_maskload_epi64(p.add(4 * j) as *const i64, tail)
            }
        }
    }

    /// Mask of the first `rem` (< 4) of 4 u64 lanes.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn tail_mask(rem: usize) -> __m256i {
        _mm256_cmpgt_epi64(
            _mm256_set1_epi64x(rem as i64),
            _mm256_setr_epi64x(0, 1, 2, 3),
        )
    }

    /// Hints the cache to fetch the byte `PF` past word `4j` of `p` (no-op
    /// for `PF == 0`). A prefetch never faults, so the address may lie past
    /// the slice (it is formed with wrapping arithmetic, never dereferenced).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn prefetch<const PF: usize>(p: *const u64, j: usize) {
        if PF > 0 {
            _mm_prefetch::<_MM_HINT_T0>((p.wrapping_add(4 * j) as *const i8).wrapping_add(PF));
        }
    }

    /// `Σ_j popcount(v(j))` over the `w / 4` whole vectors and, if `w % 4`
    /// words are left, the masked partial one: `v(j, full, tail)` returns
    /// the vector to count at word `4j` (`full`: all 4 words, else only
    /// those `tail` selects). Prefetches `PF` bytes ahead in `stream`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn popcount_words<const PF: usize>(
        stream: &[u64],
        w: usize,
        v: impl Fn(usize, bool, __m256i) -> __m256i,
    ) -> u64 {
        let pop = Pop::new();
        let nv = w / 4;
        let tail = tail_mask(w % 4);
        let zero = _mm256_setzero_si256();
        let (mut tot, mut acc) = (zero, zero);
        let mut left = FLUSH;
        for j in 0..nv {
            prefetch::<PF>(stream.as_ptr(), j);
            acc = _mm256_add_epi8(acc, pop.bytes(v(j, true, tail)));
            left -= 1;
            if left == 0 {
                tot = flush(tot, acc);
                acc = zero;
                left = FLUSH;
            }
        }
        if !w.is_multiple_of(4) {
            acc = _mm256_add_epi8(acc, pop.bytes(v(nv, false, tail)));
        }
        hsum(flush(tot, acc))
    }

    /// `agree` of the query `(qp, qm)` against a bipolar row given by its
    /// plus plane `b` (`(qp & b) | (qm & !b)` popcounts; `disagree` is
    /// `nnz(q) - agree`). Every slice holds `w` words. `PF > 0` prefetches
    /// `PF` bytes ahead in `b`'s buffer (the next rows of an item memory).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn agree_bipolar<const PF: usize>(qp: &[u64], qm: &[u64], b: &[u64]) -> u64 {
        let w = qp.len();
        assert!(qm.len() == w && b.len() == w);
        // SAFETY: whole vectors read words 4j..4j+4 <= w; the partial one
        // masks the words past w.
        unsafe {
            popcount_words::<PF>(b, w, |j, full, tail| {
                let (a, m, b) = if full {
                    (
                        load::<true>(qp.as_ptr(), j, tail),
                        load::<true>(qm.as_ptr(), j, tail),
                        load::<true>(b.as_ptr(), j, tail),
                    )
                } else {
                    (
                        load::<false>(qp.as_ptr(), j, tail),
                        load::<false>(qm.as_ptr(), j, tail),
                        load::<false>(b.as_ptr(), j, tail),
                    )
                };
                _mm256_or_si256(_mm256_and_si256(a, b), _mm256_andnot_si256(b, m))
            })
        }
    }

    /// `popcount(qp ^ b)` over `w` words: the disagreements of a bipolar
    /// query (plus plane `qp`) with a bipolar row (plus plane `b`); both
    /// planes are zero past the dimension, so the xor is too. One load, one
    /// xor and a popcount a vector (against three logic ops and three loads
    /// in [`agree_bipolar`]). `PF` as there.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn disagree_bipolar<const PF: usize>(qp: &[u64], b: &[u64]) -> u64 {
        let w = qp.len();
        assert!(b.len() == w);
        // SAFETY: as in agree_bipolar.
        unsafe {
            popcount_words::<PF>(b, w, |j, full, tail| {
                if full {
                    _mm256_xor_si256(
                        load::<true>(qp.as_ptr(), j, tail),
                        load::<true>(b.as_ptr(), j, tail),
                    )
                } else {
                    _mm256_xor_si256(
                        load::<false>(qp.as_ptr(), j, tail),
                        load::<false>(b.as_ptr(), j, tail),
                    )
                }
            })
        }
    }

    /// One vector step of [`counts_row`]: byte counts of `(same, opposite)`.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn counts_step<const FULL: bool>(
        q: (&[u64], &[u64]),
        bp: &[u64],
        bm: &[u64],
        j: usize,
        tail: __m256i,
        pop: Pop,
    ) -> (__m256i, __m256i) {
        // SAFETY: the caller guarantees words 4j.. exist (all 4 if FULL).
        unsafe {
            let a = load::<FULL>(q.0.as_ptr(), j, tail);
            let m = load::<FULL>(q.1.as_ptr(), j, tail);
            let bp = load::<FULL>(bp.as_ptr(), j, tail);
            let bm = load::<FULL>(bm.as_ptr(), j, tail);
            let same = _mm256_or_si256(_mm256_and_si256(a, bp), _mm256_and_si256(m, bm));
            let opp = _mm256_or_si256(_mm256_and_si256(a, bm), _mm256_and_si256(m, bp));
            (pop.bytes(same), pop.bytes(opp))
        }
    }

    /// `(agree, disagree)` of the query `(qp, qm)` against one row with both
    /// planes. Every slice holds `w` words. `PF > 0` prefetches `PF` bytes
    /// ahead in both planes' buffers (the next rows of an item memory).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn counts_row<const PF: usize>(
        qp: &[u64],
        qm: &[u64],
        bp: &[u64],
        bm: &[u64],
    ) -> (u64, u64) {
        let w = qp.len();
        assert!(qm.len() == w && bp.len() == w && bm.len() == w);
        let pop = Pop::new();
        let nv = w / 4;
        let tail = tail_mask(w % 4);
        let zero = _mm256_setzero_si256();
        let (mut ta, mut td, mut aa, mut ad) = (zero, zero, zero, zero);
        // SAFETY: as in agree_bipolar.
        unsafe {
            let mut left = FLUSH;
            for j in 0..nv {
                prefetch::<PF>(bp.as_ptr(), j);
                prefetch::<PF>(bm.as_ptr(), j);
                let (s, o) = counts_step::<true>((qp, qm), bp, bm, j, tail, pop);
                aa = _mm256_add_epi8(aa, s);
                ad = _mm256_add_epi8(ad, o);
                left -= 1;
                if left == 0 {
                    ta = flush(ta, aa);
                    td = flush(td, ad);
                    aa = zero;
                    ad = zero;
                    left = FLUSH;
                }
            }
            if !w.is_multiple_of(4) {
                let (s, o) = counts_step::<false>((qp, qm), bp, bm, nv, tail, pop);
                aa = _mm256_add_epi8(aa, s);
                ad = _mm256_add_epi8(ad, o);
            }
        }
        (hsum(flush(ta, aa)), hsum(flush(td, ad)))
    }

    /// `(agree, disagree, nnz(a), nnz(b))` of one pair of vectors (`w`
    /// words a plane): four popcounts a vector step.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn counts4(ap: &[u64], am: &[u64], bp: &[u64], bm: &[u64]) -> [u64; 4] {
        let w = ap.len();
        assert!(am.len() == w && bp.len() == w && bm.len() == w);
        let pop = Pop::new();
        let nv = w.div_ceil(4);
        let tail = tail_mask(if w.is_multiple_of(4) { 4 } else { w % 4 });
        let zero = _mm256_setzero_si256();
        let (mut tot, mut acc) = ([zero; 4], [zero; 4]);
        let mut left = FLUSH;
        for j in 0..nv {
            // SAFETY: whole vectors read words 4j..4j+4 <= w; the last one
            // masks the words past w (all 4 lanes kept when w % 4 == 0).
            let (a, m, b, c) = unsafe {
                if 4 * j + 4 <= w {
                    (
                        load::<true>(ap.as_ptr(), j, tail),
                        load::<true>(am.as_ptr(), j, tail),
                        load::<true>(bp.as_ptr(), j, tail),
                        load::<true>(bm.as_ptr(), j, tail),
                    )
                } else {
                    (
                        load::<false>(ap.as_ptr(), j, tail),
                        load::<false>(am.as_ptr(), j, tail),
                        load::<false>(bp.as_ptr(), j, tail),
                        load::<false>(bm.as_ptr(), j, tail),
                    )
                }
            };
            let same = _mm256_or_si256(_mm256_and_si256(a, b), _mm256_and_si256(m, c));
            let opp = _mm256_or_si256(_mm256_and_si256(a, c), _mm256_and_si256(m, b));
            acc[0] = _mm256_add_epi8(acc[0], pop.bytes(same));
            acc[1] = _mm256_add_epi8(acc[1], pop.bytes(opp));
            acc[2] = _mm256_add_epi8(acc[2], pop.bytes(_mm256_or_si256(a, m)));
            acc[3] = _mm256_add_epi8(acc[3], pop.bytes(_mm256_or_si256(b, c)));
            left -= 1;
            if left == 0 {
                for r in 0..4 {
                    tot[r] = flush(tot[r], acc[r]);
                    acc[r] = zero;
                }
                left = FLUSH;
            }
        }
        let mut out = [0u64; 4];
        for r in 0..4 {
            out[r] = hsum(flush(tot[r], acc[r]));
        }
        out
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
#[inline]
unsafe fn counts_avx512(ap: &[u64], am: &[u64], bp: &[u64], bm: &[u64]) -> (u64, u64) {
    use std::arch::x86_64::*;
    let n = ap.len();
    assert!(am.len() >= n && bp.len() >= n && bm.len() >= n);
    let (pap, pam, pbp, pbm) = (
        ap.as_ptr() as *const i64,
        am.as_ptr() as *const i64,
        bp.as_ptr() as *const i64,
        bm.as_ptr() as *const i64,
    );
    let mut agree = _mm512_setzero_si512();
    let mut dis = _mm512_setzero_si512();
    let mut i = 0;
    // SAFETY: every load reads words [i, i + 8) < n, or masks lanes >= n.
    unsafe {
        while i + 8 <= n {
            let a_p = _mm512_loadu_epi64(pap.add(i));
            let a_m = _mm512_loadu_epi64(pam.add(i));
            let b_p = _mm512_loadu_epi64(pbp.add(i));
            let b_m = _mm512_loadu_epi64(pbm.add(i));
            let same = _mm512_or_si512(_mm512_and_si512(a_p, b_p), _mm512_and_si512(a_m, b_m));
            let opp = _mm512_or_si512(_mm512_and_si512(a_p, b_m), _mm512_and_si512(a_m, b_p));
            agree = _mm512_add_epi64(agree, _mm512_popcnt_epi64(same));
            dis = _mm512_add_epi64(dis, _mm512_popcnt_epi64(opp));
            i += 8;
        }
        if i < n {
            let k: __mmask8 = ((1u32 << (n - i)) - 1) as __mmask8;
            let a_p = _mm512_maskz_loadu_epi64(k, pap.add(i));
            let a_m = _mm512_maskz_loadu_epi64(k, pam.add(i));
            let b_p = _mm512_maskz_loadu_epi64(k, pbp.add(i));
            let b_m = _mm512_maskz_loadu_epi64(k, pbm.add(i));
            let same = _mm512_or_si512(_mm512_and_si512(a_p, b_p), _mm512_and_si512(a_m, b_m));
            let opp = _mm512_or_si512(_mm512_and_si512(a_p, b_m), _mm512_and_si512(a_m, b_p));
            agree = _mm512_add_epi64(agree, _mm512_popcnt_epi64(same));
            dis = _mm512_add_epi64(dis, _mm512_popcnt_epi64(opp));
        }
    }
    (
        _mm512_reduce_add_epi64(agree) as u64,
        _mm512_reduce_add_epi64(dis) as u64,
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
#[inline]
unsafe fn counts_bipolar_avx512(ap: &[u64], am: &[u64], bp: &[u64]) -> (u64, u64) {
    use std::arch::x86_64::*;
    let n = ap.len();
    assert!(am.len() >= n && bp.len() >= n);
    let (pap, pam, pbp) = (
        ap.as_ptr() as *const i64,
        am.as_ptr() as *const i64,
        bp.as_ptr() as *const i64,
    );
    let mut agree = _mm512_setzero_si512();
    let mut dis = _mm512_setzero_si512();
    let mut i = 0;
    // SAFETY: as in counts_avx512. Masked-off lanes of a are zero, so !b_p there is harmless.
    unsafe {
        while i + 8 <= n {
            let a_p = _mm512_loadu_epi64(pap.add(i));
            let a_m = _mm512_loadu_epi64(pam.add(i));
            let b_p = _mm512_loadu_epi64(pbp.add(i));
            // same = (a_p & b_p) | (a_m & !b_p); opp = (a_p & !b_p) | (a_m & b_p)
            let same = _mm512_or_si512(_mm512_and_si512(a_p, b_p), _mm512_andnot_si512(b_p, a_m));
            let opp = _mm512_or_si512(_mm512_andnot_si512(b_p, a_p), _mm512_and_si512(a_m, b_p));
            agree = _mm512_add_epi64(agree, _mm512_popcnt_epi64(same));
            dis = _mm512_add_epi64(dis, _mm512_popcnt_epi64(opp));
            i += 8;
        }
        if i < n {
            let k: __mmask8 = ((1u32 << (n - i)) - 1) as __mmask8;
            let a_p = _mm512_maskz_loadu_epi64(k, pap.add(i));
            let a_m = _mm512_maskz_loadu_epi64(k, pam.add(i));
            let b_p = _mm512_maskz_loadu_epi64(k, pbp.add(i));
            let same = _mm512_or_si512(_mm512_and_si512(a_p, b_p), _mm512_andnot_si512(b_p, a_m));
            let opp = _mm512_or_si512(_mm512_andnot_si512(b_p, a_p), _mm512_and_si512(a_m, b_p));
            agree = _mm512_add_epi64(agree, _mm512_popcnt_epi64(same));
            dis = _mm512_add_epi64(dis, _mm512_popcnt_epi64(opp));
        }
    }
    (
        _mm512_reduce_add_epi64(agree) as u64,
        _mm512_reduce_add_epi64(dis) as u64,
    )
}

/// Below this many words a plane, the AVX2 level uses `popcnt` (the vector
/// kernels' setup and reductions cost more than they save).
#[cfg(target_arch = "x86_64")]
const AVX2_MIN_WORDS: usize = 8;

/// `(agree, disagree)` of `a = (ap, am)` and `b = (bp, bm)` with the kernels
/// of `level` (the best this CPU has at or below it). Slices must have equal
/// lengths (panics otherwise).
pub fn counts_at(level: CpuLevel, ap: &[u64], am: &[u64], bp: &[u64], bm: &[u64]) -> (u64, u64) {
    assert!(am.len() == ap.len() && bp.len() == ap.len() && bm.len() == ap.len());
    match kernel(level) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: each kernel is picked only if the CPU reported its features.
        Kernel::Avx512 => unsafe { counts_avx512(ap, am, bp, bm) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if ap.len() < AVX2_MIN_WORDS => unsafe { counts_popcnt(ap, am, bp, bm) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { avx2::counts_row::<0>(ap, am, bp, bm) },
        Kernel::Scalar => counts_generic(ap, am, bp, bm),
    }
}

/// As [`counts_at`] for a bipolar `b` given by its plus plane `bp` only.
pub fn counts_bipolar_at(level: CpuLevel, ap: &[u64], am: &[u64], bp: &[u64]) -> (u64, u64) {
    assert!(am.len() == ap.len() && bp.len() == ap.len());
    match kernel(level) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: each kernel is picked only if the CPU reported its features.
        Kernel::Avx512 => unsafe { counts_bipolar_avx512(ap, am, bp) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if ap.len() < AVX2_MIN_WORDS => unsafe { counts_bipolar_popcnt(ap, am, bp) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => {
            let agree = unsafe { avx2::agree_bipolar::<0>(ap, am, bp) };
            (agree, nnz(ap) + nnz(am) - agree)
        }
        Kernel::Scalar => counts_bipolar_generic(ap, am, bp),
    }
}

/// `(agree, disagree, nnz(a), nnz(b))` of `a = (ap, am)` and `b = (bp, bm)`
/// with the kernels of `level` (`a`, `b` valid: planes disjoint).
pub fn counts4_at(
    level: CpuLevel,
    ap: &[u64],
    am: &[u64],
    bp: &[u64],
    bm: &[u64],
) -> (u64, u64, u64, u64) {
    assert!(am.len() == ap.len() && bp.len() == ap.len() && bm.len() == ap.len());
    #[cfg(target_arch = "x86_64")]
    if kernel(level) == Kernel::Avx2 && ap.len() >= AVX2_MIN_WORDS {
        // SAFETY: the AVX2 kernel is picked only if the CPU has AVX2.
        let [a, d, na, nb] = unsafe { avx2::counts4(ap, am, bp, bm) };
        return (a, d, na, nb);
    }
    let (a, d) = counts_at(level, ap, am, bp, bm);
    (a, d, nnz(ap) + nnz(am), nnz(bp) + nnz(bm))
}

fn nnz(p: &[u64]) -> u64 {
    p.iter().map(|x| x.count_ones() as u64).sum()
}

/// `(agree, disagree)` at the active level.
#[inline]
pub fn counts(ap: &[u64], am: &[u64], bp: &[u64], bm: &[u64]) -> (u64, u64) {
    counts_at(cpu::active(), ap, am, bp, bm)
}

/// Row store of an item memory: `plus` and `minus` planes of every row back to
/// back (`w` words a row), and each row's bipolar flag (then `minus` is not read).
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    /// Plus planes, `len * w` words.
    pub plus: &'a [u64],
    /// Minus planes, `len * w` words.
    pub minus: &'a [u64],
    /// Per-row flag: every trit non-zero.
    pub bipolar: &'a [bool],
    /// Words per plane.
    pub w: usize,
}

impl<'a> Rows<'a> {
    fn plus(&self, i: usize) -> &'a [u64] {
        &self.plus[i * self.w..(i + 1) * self.w]
    }
    fn minus(&self, i: usize) -> &'a [u64] {
        &self.minus[i * self.w..(i + 1) * self.w]
    }
}

#[inline(always)]
fn scan_generic<F: FnMut(usize, u64, u64)>(
    qp: &[u64],
    qm: &[u64],
    rows: Rows,
    range: std::ops::Range<usize>,
    mut f: F,
    full: impl Fn(&[u64], &[u64], &[u64], &[u64]) -> (u64, u64),
    bip: impl Fn(&[u64], &[u64], &[u64]) -> (u64, u64),
) {
    for i in range {
        let (a, d) = if rows.bipolar[i] {
            bip(qp, qm, rows.plus(i))
        } else {
            full(qp, qm, rows.plus(i), rows.minus(i))
        };
        f(i, a, d);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
unsafe fn scan_avx512<F: FnMut(usize, u64, u64)>(
    qp: &[u64],
    qm: &[u64],
    rows: Rows,
    range: std::ops::Range<usize>,
    f: F,
) {
    // SAFETY (both closures): this function only runs on CPUs with these features.
    scan_generic(
        qp,
        qm,
        rows,
        range,
        f,
        |a, b, c, d| unsafe { counts_avx512(a, b, c, d) },
        |a, b, c| unsafe { counts_bipolar_avx512(a, b, c) },
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn scan_popcnt<F: FnMut(usize, u64, u64)>(
    qp: &[u64],
    qm: &[u64],
    rows: Rows,
    range: std::ops::Range<usize>,
    f: F,
) {
    scan_generic(
        qp,
        qm,
        rows,
        range,
        f,
        counts_generic,
        counts_bipolar_generic,
    )
}

/// How far ahead (bytes) the AVX2 item-memory scan prefetches in the row
/// planes. Rows are scanned one at a time, in storage order, so the planes
/// stream sequentially; on the Zen 3 this was tuned on, the hardware
/// prefetcher alone left the scan at about half the speed reached with a
/// software prefetch 2-8 KiB ahead (and passes over 2 or 4 rows at once,
/// which interleave several short streams, were slower still).
#[cfg(target_arch = "x86_64")]
const SCAN_PREFETCH: usize = 4096;

/// The AVX2 scan: one row at a time (a bipolar row needs one popcount a
/// vector), prefetching [`SCAN_PREFETCH`] bytes ahead in the planes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn scan_avx2<F: FnMut(usize, u64, u64)>(
    qp: &[u64],
    qm: &[u64],
    rows: Rows,
    range: std::ops::Range<usize>,
    mut f: F,
) {
    let nq = nnz(qp) + nnz(qm);
    // A bipolar query (every trit non-zero) against a bipolar row disagrees
    // exactly where the plus planes differ: the valid bits are those of any
    // bipolar row (`plus | minus`), so the query is bipolar iff its planes
    // are disjoint and cover them.
    let qbip = range.clone().find(|&i| rows.bipolar[i]).is_some_and(|i0| {
        let (vp, vm) = (rows.plus(i0), rows.minus(i0));
        (0..rows.w).all(|j| qp[j] & qm[j] == 0 && qp[j] | qm[j] == vp[j] | vm[j])
    });
    for i in range {
        // SAFETY (all calls): AVX2 and POPCNT are enabled here; every
        // slice holds rows.w words (Rows::plus/minus).
        if rows.bipolar[i] && qbip {
            let d = unsafe { avx2::disagree_bipolar::<SCAN_PREFETCH>(qp, rows.plus(i)) };
            f(i, nq - d, d);
        } else if rows.bipolar[i] {
            let a = unsafe { avx2::agree_bipolar::<SCAN_PREFETCH>(qp, qm, rows.plus(i)) };
            f(i, a, nq - a);
        } else {
            let (a, d) =
                unsafe { avx2::counts_row::<SCAN_PREFETCH>(qp, qm, rows.plus(i), rows.minus(i)) };
            f(i, a, d);
        }
    }
}

/// Calls `f(i, agree, disagree)` for every row `i` in `range` against the query
/// planes `(qp, qm)`, with the kernels of `level` (the best this CPU has at
/// or below it).
pub fn scan_rows_at<F: FnMut(usize, u64, u64)>(
    level: CpuLevel,
    qp: &[u64],
    qm: &[u64],
    rows: Rows,
    range: std::ops::Range<usize>,
    f: F,
) {
    assert!(qp.len() == rows.w && qm.len() == rows.w);
    assert!(range.end * rows.w <= rows.plus.len() && range.end * rows.w <= rows.minus.len());
    assert!(range.end <= rows.bipolar.len());
    match kernel(level) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: each kernel is picked only if the CPU reported its features.
        Kernel::Avx512 => unsafe { scan_avx512(qp, qm, rows, range, f) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if rows.w < AVX2_MIN_WORDS => unsafe { scan_popcnt(qp, qm, rows, range, f) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { scan_avx2(qp, qm, rows, range, f) },
        Kernel::Scalar => scan_generic(
            qp,
            qm,
            rows,
            range,
            f,
            counts_generic,
            counts_bipolar_generic,
        ),
    }
}
