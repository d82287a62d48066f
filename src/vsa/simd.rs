//! Popcount kernels beside their scalar reference, picked at run time.
//!
//! * [`Level::Scalar`]: portable Rust (`count_ones`), the reference.
//! * [`Level::Popcnt`]: the same code compiled with the `popcnt` feature
//!   (x86-64 baseline has no popcount instruction).
//! * [`Level::Avx512`]: AVX-512F + VPOPCNTDQ, 8 words per step with masked
//!   tail loads.
//!
//! Every level returns exactly the same integers; the tests run each level
//! the machine has against the scalar code.

use std::sync::OnceLock;

/// A CPU feature level for the VSA kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// Portable scalar code.
    Scalar,
    /// Scalar code with the hardware `popcnt` instruction.
    Popcnt,
    /// AVX-512F + AVX-512 VPOPCNTDQ.
    Avx512,
}

/// Every level this CPU supports, lowest first (always starts with `Scalar`).
pub fn available_levels() -> Vec<Level> {
    #[allow(unused_mut)] // only x86_64 adds levels
    let mut v = vec![Level::Scalar];
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("popcnt") {
            v.push(Level::Popcnt);
        }
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
        {
            v.push(Level::Avx512);
        }
    }
    v
}

/// The best level of this CPU (detected once). `TRITTER_VSA_LEVEL=scalar|popcnt`
/// caps it (for benchmarks and debugging; a level the CPU lacks is never used).
pub fn best_level() -> Level {
    static BEST: OnceLock<Level> = OnceLock::new();
    *BEST.get_or_init(|| {
        let best = *available_levels().last().expect("scalar is always there");
        match std::env::var("TRITTER_VSA_LEVEL").as_deref() {
            Ok("scalar") => Level::Scalar,
            Ok("popcnt") => best.min(Level::Popcnt),
            _ => best,
        }
    })
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

/// `(agree, disagree)` of `a = (ap, am)` and `b = (bp, bm)` at `level`
/// (falls back to scalar for a level this CPU lacks). Slices must have equal
/// lengths (panics otherwise).
pub fn counts_at(level: Level, ap: &[u64], am: &[u64], bp: &[u64], bm: &[u64]) -> (u64, u64) {
    assert!(am.len() == ap.len() && bp.len() == ap.len() && bm.len() == ap.len());
    #[cfg(target_arch = "x86_64")]
    {
        let avail = available_levels_cached();
        // SAFETY: each kernel runs only if the CPU reported its features.
        match level {
            Level::Avx512 if avail >= Level::Avx512 => {
                return unsafe { counts_avx512(ap, am, bp, bm) }
            }
            Level::Popcnt | Level::Avx512 if avail >= Level::Popcnt => {
                return unsafe { counts_popcnt(ap, am, bp, bm) }
            }
            _ => {}
        }
    }
    let _ = level;
    counts_generic(ap, am, bp, bm)
}

/// As [`counts_at`] for a bipolar `b` given by its plus plane `bp` only.
pub fn counts_bipolar_at(level: Level, ap: &[u64], am: &[u64], bp: &[u64]) -> (u64, u64) {
    assert!(am.len() == ap.len() && bp.len() == ap.len());
    #[cfg(target_arch = "x86_64")]
    {
        let avail = available_levels_cached();
        // SAFETY: as in counts_at.
        match level {
            Level::Avx512 if avail >= Level::Avx512 => {
                return unsafe { counts_bipolar_avx512(ap, am, bp) }
            }
            Level::Popcnt | Level::Avx512 if avail >= Level::Popcnt => {
                return unsafe { counts_bipolar_popcnt(ap, am, bp) }
            }
            _ => {}
        }
    }
    let _ = level;
    counts_bipolar_generic(ap, am, bp)
}

/// The highest level the CPU supports (ignores `TRITTER_VSA_LEVEL`).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn available_levels_cached() -> Level {
    static AVAIL: OnceLock<Level> = OnceLock::new();
    *AVAIL.get_or_init(|| *available_levels().last().expect("scalar"))
}

/// `(agree, disagree)` at the best level.
#[inline]
pub fn counts(ap: &[u64], am: &[u64], bp: &[u64], bm: &[u64]) -> (u64, u64) {
    counts_at(best_level(), ap, am, bp, bm)
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
    let w = rows.w;
    for i in range {
        let rp = &rows.plus[i * w..(i + 1) * w];
        let (a, d) = if rows.bipolar[i] {
            bip(qp, qm, rp)
        } else {
            full(qp, qm, rp, &rows.minus[i * w..(i + 1) * w])
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

/// Calls `f(i, agree, disagree)` for every row `i` in `range` against the query
/// planes `(qp, qm)`, with the kernels of `level` (scalar if the CPU lacks it).
pub fn scan_rows_at<F: FnMut(usize, u64, u64)>(
    level: Level,
    qp: &[u64],
    qm: &[u64],
    rows: Rows,
    range: std::ops::Range<usize>,
    f: F,
) {
    assert!(qp.len() == rows.w && qm.len() == rows.w);
    assert!(range.end * rows.w <= rows.plus.len() && range.end * rows.w <= rows.minus.len());
    assert!(range.end <= rows.bipolar.len());
    #[cfg(target_arch = "x86_64")]
    {
        let avail = available_levels_cached();
        // SAFETY: each kernel runs only if the CPU reported its features.
        match level {
            Level::Avx512 if avail >= Level::Avx512 => {
                return unsafe { scan_avx512(qp, qm, rows, range, f) }
            }
            Level::Popcnt | Level::Avx512 if avail >= Level::Popcnt => {
                return unsafe { scan_popcnt(qp, qm, rows, range, f) }
            }
            _ => {}
        }
    }
    let _ = level;
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
