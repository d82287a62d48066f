//! Top-k sparsification: the `k` largest-magnitude coordinates, sent as
//! `k` u32 indices plus `k` f32 values (8 bytes a coordinate, counted in the
//! wire size).

use crate::cpu::{self, CpuLevel, Kernel};
use crate::{Error, Result};

/// The kernels run for a requested level (identical results at every
/// level; no AVX-512 kernel: an AVX-512 CPU runs the AVX2 one).
fn kernel(level: CpuLevel) -> Kernel {
    Kernel::pick(level, false)
}

/// Indices (ascending) of the `k` largest `|x_i|`; among equal magnitudes the
/// lower index wins, so the choice is deterministic. O(n) expected
/// (`select_nth_unstable`). Errors: `k > x.len()`, `x.len() > u32::MAX`.
pub fn top_k_indices(x: &[f32], k: usize) -> Result<Vec<u32>> {
    top_k_indices_level(x, k, cpu::active())
}

/// [`top_k_indices`] with the kernels of `level` (the same indices at every
/// level).
pub fn top_k_indices_level(x: &[f32], k: usize, level: CpuLevel) -> Result<Vec<u32>> {
    let kern = kernel(level);
    let n = x.len();
    if k > n {
        return Err(Error::invalid("k", format!("k = {k} exceeds length {n}")));
    }
    if n > u32::MAX as usize {
        return Err(Error::invalid("x", "length exceeds 2^32 - 1"));
    }
    if k == 0 {
        return Ok(Vec::new());
    }
    if k == n {
        return Ok((0..n as u32).collect());
    }
    // Magnitudes as ordered integers (|x| bits order like the floats for
    // non-negative finite values; NaN never reaches here).
    let mag = |v: &f32| v.to_bits() & 0x7FFF_FFFF;
    // tau = the k-th largest magnitude, with the counts of magnitudes above
    // it and equal to it (from the selection's candidates: no extra pass).
    let Kth { tau, above, eq } = match bracket_kth(kern, x, k) {
        Some((kth, _)) => kth,
        None => kth_unbracketed(kern, x, k),
    };
    // Every index with magnitude >= tau (branch-free: the kept fraction is
    // often 5-15%, a branch per element mispredicts), ...
    let mut out = Vec::with_capacity(above + eq + PACK_SLACK);
    select_ge(kern, x, tau, above + eq, &mut out);
    debug_assert_eq!(out.len(), above + eq);
    // ... then only the first (k - above) ties at tau, by ascending index.
    let mut excess = above + eq - k;
    if excess > 0 {
        let mut j = out.len();
        while excess > 0 {
            j -= 1;
            if mag(&x[out[j] as usize]) == tau {
                out[j] = u32::MAX;
                excess -= 1;
            }
        }
        out.retain(|&i| i != u32::MAX);
    }
    debug_assert_eq!(out.len(), k);
    Ok(out)
}

/// The k-th largest magnitude without [`bracket_kth`]: from the sampled
/// floor's candidates, a radix histogram, or a selection over everything.
fn kth_unbracketed(kern: Kernel, x: &[f32], k: usize) -> Kth {
    let n = x.len();
    let mag = |v: &f32| v.to_bits() & 0x7FFF_FFFF;
    match sampled_floor(kern, x, k) {
        // Every coordinate with magnitude >= the k-th largest is a candidate:
        // select among the candidates only.
        Some(mut cand) => kth_of(&mut cand, k, 0),
        None if n >= 1 << 16 => histogram_kth(kern, x, k),
        None => {
            let mut mags: Vec<u32> = x.iter().map(mag).collect();
            kth_of(&mut mags, k, 0)
        }
    }
}

/// The k-th largest magnitude and how many magnitudes lie above it and at it.
pub(crate) struct Kth {
    /// The k-th largest magnitude (`|x|` bits).
    pub tau: u32,
    /// Magnitudes above `tau`.
    pub above: usize,
    /// Magnitudes equal to `tau`.
    pub eq: usize,
}

/// Largest sample of [`bracket_kth`].
const BRACKET_SAMPLE: usize = 32_768;
/// Inputs at least this long take [`bracket_kth`] first.
pub(crate) const BRACKET_MIN: usize = 1 << 13;

/// Sample size of [`bracket_kth`] for `n` elements: about `(1.5 n)^(2/3)`,
/// 1024 to [`BRACKET_SAMPLE`]. The two selections cost about the sample
/// size plus the bracket's members, about `9 sqrt(p (1 - p) / S) n`: this
/// balances them (2.6k samples and 3% of the input at `n` = 2^18).
pub(crate) fn bracket_sample(n: usize) -> usize {
    ((1.5 * n as f64).cbrt().powi(2) as usize).clamp(1024, BRACKET_SAMPLE)
}

/// For inputs of at least [`BRACKET_MIN`] (and `0 < k < n`): two thresholds
/// `lo <= hi` from a fixed hashed sample of magnitudes (deterministic) that
/// bracket the k-th largest with high probability (the sample ranks 4.5
/// standard deviations plus 2 either side of the expected one), then one
/// pass that counts the magnitudes above `hi`, collects those in `lo..=hi`
/// and takes the largest; the k-th largest is selected among the collected
/// ones alone. Returns it with the largest magnitude, or `None` when the
/// bracket missed (then the caller takes another path). Exact whenever it
/// returns: the collected ones are exactly those in `lo..=hi`, fewer than
/// `k` lie above `hi` and at least `k` at or above `lo`.
pub(crate) fn bracket_kth(kern: Kernel, x: &[f32], k: usize) -> Option<(Kth, u32)> {
    let n = x.len();
    // The scalar level keeps the unbracketed reference paths.
    if n < BRACKET_MIN || k == 0 || k >= n || matches!(kern, Kernel::Scalar) {
        return None;
    }
    let s_len = bracket_sample(n);
    let mut s: Vec<u32> = (0..s_len as u64)
        .map(|j| {
            let i = ((crate::rng::hash2(0x7095_A3D1, j) >> 32) * n as u64) >> 32;
            x[i as usize].to_bits() & 0x7FFF_FFFF
        })
        .collect();
    let p = k as f64 / n as f64;
    let e = p * s_len as f64;
    let margin = 4.5 * (s_len as f64 * p * (1.0 - p)).sqrt() + 2.0;
    // ranks from the top (1 = the sample's largest)
    let r_lo = (e + margin).ceil() as usize;
    let r_hi = (e - margin).floor();
    let lo = if r_lo >= s_len {
        0
    } else {
        *s.select_nth_unstable(s_len - r_lo).1
    };
    let hi = if r_hi < 1.0 {
        u32::MAX
    } else {
        // above lo's position the slice holds the larger values
        let r_hi = r_hi as usize;
        *s.select_nth_unstable(s_len - r_hi).1
    };
    let mut members = Vec::new();
    let (above0, max) = bracket_pass(kern, x, lo, hi, &mut members);
    if above0 >= k || above0 + members.len() < k {
        return None;
    }
    Some((kth_of(&mut members, k - above0, above0), max))
}

/// Appends to `out` the magnitudes in `lo..=hi` (index order); returns how
/// many magnitudes exceed `hi` and the largest magnitude.
fn bracket_pass(kern: Kernel, x: &[f32], lo: u32, hi: u32, out: &mut Vec<u32>) -> (usize, u32) {
    match kern {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the kernel is picked only after AVX2 was detected (and
        // this domain asks for no AVX-512 kernel; AVX-512 implies AVX2).
        Kernel::Avx2 | Kernel::Avx512 => unsafe { bracket_avx2(x, lo, hi, out) },
        Kernel::Scalar => {
            let (mut above, mut mx) = (0usize, 0u32);
            for v in x {
                let m = v.to_bits() & 0x7FFF_FFFF;
                mx = mx.max(m);
                above += (m > hi) as usize;
                if (lo..=hi).contains(&m) {
                    out.push(m);
                }
            }
            (above, mx)
        }
    }
}

/// Appends to `out` every index `base + i` with `|x_i|` bits `>= tau`,
/// ascending, with the kernels of `level` (`out` needs no spare capacity).
pub(crate) fn select_ge_at(kern: Kernel, x: &[f32], base: u32, tau: u32, out: &mut Vec<u32>) {
    match kern {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in select_ge.
        Kernel::Avx2 | Kernel::Avx512 => unsafe { pack_avx2::<true>(x, base, tau, u32::MAX, out) },
        Kernel::Scalar => out.extend(
            x.iter()
                .enumerate()
                .filter(|(_, v)| (v.to_bits() & 0x7FFF_FFFF) >= tau)
                .map(|(i, _)| base + i as u32),
        ),
    }
}

/// The kernel of `level` for this domain.
pub(crate) fn kernel_at(level: CpuLevel) -> Kernel {
    kernel(level)
}

/// The `r`-th largest of `m` (`1 <= r <= m.len()`), given `above0` larger
/// values outside `m`.
fn kth_of(m: &mut [u32], r: usize, above0: usize) -> Kth {
    let c = m.len();
    let tau = *m.select_nth_unstable(c - r).1;
    let (mut above, mut eq) = (above0, 0);
    for &v in m.iter() {
        above += (v > tau) as usize;
        eq += (v == tau) as usize;
    }
    Kth { tau, above, eq }
}

/// For large inputs, the magnitudes of all coordinates at or above a
/// threshold taken from a fixed hashed sample (so the result is
/// deterministic), chosen to keep about `2k + 64` expected candidates; `None`
/// when the input is small or the sample's threshold leaves fewer than `k`
/// candidates (then the caller selects over everything). Exactness does not
/// depend on the sample: the candidates are exactly the coordinates with
/// magnitude >= the threshold, and there are at least `k` of them, so the
/// k-th largest among them is the k-th largest overall.
fn sampled_floor(kern: Kernel, x: &[f32], k: usize) -> Option<Vec<u32>> {
    let n = x.len();
    const SAMPLE: usize = 8192;
    if n < 16 * SAMPLE || k > n / 16 {
        return None;
    }
    // Hashed (not strided) positions, so periodic structure cannot bias it.
    let mut s: Vec<u32> = (0..SAMPLE as u64)
        .map(|j| {
            let i = ((crate::rng::hash2(0x7095_A3D1, j) >> 32) * n as u64) >> 32;
            x[i as usize].to_bits() & 0x7FFF_FFFF
        })
        .collect();
    // Sample rank for a ~(2k + 64)/n upper fraction.
    let want = ((2 * k + 64) as f64 / n as f64 * SAMPLE as f64).ceil() as usize;
    let r = want.clamp(1, SAMPLE - 1);
    let t = *s.select_nth_unstable(SAMPLE - r).1;
    let mut cand = Vec::new();
    collect_mags(kern, x, t, u32::MAX, &mut cand);
    (cand.len() >= k).then_some(cand)
}

/// The k-th largest magnitude (as ordered bits) by a radix pass: a
/// histogram of the top 12 bits of every magnitude finds the bin holding the
/// k-th largest, then a selection among that bin's members alone. Two reads
/// of `x` and no O(n) buffer, for any `k` (1 <= k < n).
fn histogram_kth(kern: Kernel, x: &[f32], k: usize) -> Kth {
    const BITS: u32 = 12; // of the 31 magnitude bits: exponent + 4 mantissa bits
    const SHIFT: u32 = 31 - BITS;
    let mag = |v: &f32| v.to_bits() & 0x7FFF_FFFF;
    // Four interleaved histograms (64 KiB in all): consecutive elements that
    // share a bin do not wait on each other's increments.
    let mut h4 = vec![[0u32; 4]; 1 << BITS];
    let mut ch = x.chunks_exact(4);
    for c in &mut ch {
        for (j, v) in c.iter().enumerate() {
            h4[(mag(v) >> SHIFT) as usize][j] += 1;
        }
    }
    for v in ch.remainder() {
        h4[(mag(v) >> SHIFT) as usize][0] += 1;
    }
    let hist: Vec<usize> = h4
        .iter()
        .map(|h| h.iter().map(|&c| c as usize).sum())
        .collect();
    // Walk from the top bin down until k magnitudes are covered.
    let (mut above, mut bin) = (0usize, hist.len() - 1);
    while above + hist[bin] < k {
        above += hist[bin];
        bin -= 1;
    }
    let lo = (bin as u32) << SHIFT;
    let mut members = Vec::with_capacity(hist[bin] + PACK_SLACK);
    collect_mags(kern, x, lo, lo | ((1 << SHIFT) - 1), &mut members);
    // The k-th largest overall is the (k - above)-th largest in this bin.
    kth_of(&mut members, k - above, above)
}

/// Spare capacity the AVX2 left-pack stores need (each writes 8 lanes).
const PACK_SLACK: usize = 8;

/// Appends to `out` every index `i` with `|x_i|` bits `>= tau`, ascending;
/// `count` is how many there are.
fn select_ge(kern: Kernel, x: &[f32], tau: u32, count: usize, out: &mut Vec<u32>) {
    match kern {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the kernel is picked only after AVX2 was detected (and
        // this domain asks for no AVX-512 kernel; AVX-512 implies AVX2).
        Kernel::Avx2 | Kernel::Avx512 => unsafe { pack_avx2::<true>(x, 0, tau, u32::MAX, out) },
        Kernel::Scalar => {
            // Branch-free: write every index, advance only past kept ones.
            let start = out.len();
            out.resize(start + count + 1, 0);
            let mut w = start;
            for (i, v) in x.iter().enumerate() {
                out[w] = i as u32;
                w += ((v.to_bits() & 0x7FFF_FFFF) >= tau) as usize;
            }
            out.truncate(w);
        }
    }
}

/// Appends to `out` the magnitudes (`|x_i|` bits) in `lo..=hi`, in index order.
fn collect_mags(kern: Kernel, x: &[f32], lo: u32, hi: u32, out: &mut Vec<u32>) {
    match kern {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the kernel is picked only after AVX2 was detected (and
        // this domain asks for no AVX-512 kernel; AVX-512 implies AVX2).
        Kernel::Avx2 | Kernel::Avx512 => unsafe { pack_avx2::<false>(x, 0, lo, hi, out) },
        Kernel::Scalar => out.extend(
            x.iter()
                .map(|v| v.to_bits() & 0x7FFF_FFFF)
                .filter(|&m| (lo..=hi).contains(&m)),
        ),
    }
}

/// For each 8-bit lane mask, the lanes that are set, packed low (8 lane
/// numbers a mask, one byte each; unused lanes 0).
#[cfg(target_arch = "x86_64")]
static PACK_LUT: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut m = 0;
    while m < 256 {
        let (mut v, mut j, mut w) = (0u64, 0, 0);
        while j < 8 {
            if m & (1 << j) != 0 {
                v |= (j as u64) << (8 * w);
                w += 1;
            }
            j += 1;
        }
        t[m] = v;
        m += 1;
    }
    t
};

/// The AVX2 left-pack behind [`select_ge`] (`INDICES`: append the indices
/// of magnitudes `>= lo`) and [`collect_mags`] (append the magnitudes in
/// `lo..=hi`): 8 elements a step, the kept lanes moved to the front by a
/// `vpermd` from [`PACK_LUT`] and stored whole (the store runs past the kept
/// lanes into spare capacity; the length advances by the kept count).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn pack_avx2<const INDICES: bool>(
    x: &[f32],
    base: u32,
    lo: u32,
    hi: u32,
    out: &mut Vec<u32>,
) {
    use std::arch::x86_64::*;
    let n = x.len();
    let full = n / 8 * 8;
    out.reserve(PACK_SLACK);
    let absm = _mm256_set1_epi32(0x7FFF_FFFF);
    // Magnitudes are < 2^31, so signed compares order them; flip to compare
    // against bounds up to u32::MAX.
    let lo1 = _mm256_set1_epi32(lo as i32 ^ i32::MIN);
    let hi1 = _mm256_set1_epi32(hi as i32 ^ i32::MIN);
    let flip = _mm256_set1_epi32(i32::MIN);
    let mut idx = _mm256_add_epi32(
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        _mm256_set1_epi32(base as i32),
    );
    let eight = _mm256_set1_epi32(8);
    let mut w = out.len();
    let mut p = out.as_mut_ptr();
    // SAFETY: loads read x[i..i + 8] with i + 8 <= full <= n; each store
    // writes 8 u32 at w, and w + 8 <= capacity (checked before each step).
    unsafe {
        for i in (0..full).step_by(8) {
            if w + 8 > out.capacity() {
                out.set_len(w);
                out.reserve(out.capacity().max(64));
                p = out.as_mut_ptr();
            }
            let m = _mm256_and_si256(
                _mm256_loadu_si256(x.as_ptr().add(i) as *const __m256i),
                absm,
            );
            let mf = _mm256_xor_si256(m, flip);
            // keep = m >= lo && m <= hi  ==  !(lo > m) && !(m > hi)
            let out_of = _mm256_or_si256(_mm256_cmpgt_epi32(lo1, mf), _mm256_cmpgt_epi32(mf, hi1));
            let keep = !(_mm256_movemask_ps(_mm256_castsi256_ps(out_of)) as u32) & 0xFF;
            let perm = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(PACK_LUT[keep as usize] as i64));
            let v = if INDICES { idx } else { m };
            _mm256_storeu_si256(
                p.add(w) as *mut __m256i,
                _mm256_permutevar8x32_epi32(v, perm),
            );
            w += keep.count_ones() as usize;
            idx = _mm256_add_epi32(idx, eight);
        }
        out.set_len(w);
    }
    for (i, v) in x.iter().enumerate().skip(full) {
        let m = v.to_bits() & 0x7FFF_FFFF;
        if (lo..=hi).contains(&m) {
            out.push(if INDICES { base + i as u32 } else { m });
        }
    }
}

/// [`bracket_pass`] with AVX2: [`pack_avx2`]'s left-pack of the magnitudes
/// in `lo..=hi`, plus a count of those above `hi` and a running maximum.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn bracket_avx2(x: &[f32], lo: u32, hi: u32, out: &mut Vec<u32>) -> (usize, u32) {
    use std::arch::x86_64::*;
    let n = x.len();
    let full = n / 8 * 8;
    out.reserve(PACK_SLACK);
    let absm = _mm256_set1_epi32(0x7FFF_FFFF);
    let lo1 = _mm256_set1_epi32(lo as i32 ^ i32::MIN);
    let hi1 = _mm256_set1_epi32(hi as i32 ^ i32::MIN);
    let flip = _mm256_set1_epi32(i32::MIN);
    let mut mx = _mm256_setzero_si256();
    let mut above = 0usize;
    let mut w = out.len();
    let mut p = out.as_mut_ptr();
    // SAFETY: loads read x[i..i + 8] with i + 8 <= full <= n; each store
    // writes 8 u32 at w, and w + 8 <= capacity (checked before each step).
    unsafe {
        for i in (0..full).step_by(8) {
            if w + 8 > out.capacity() {
                out.set_len(w);
                out.reserve(out.capacity().max(64));
                p = out.as_mut_ptr();
            }
            let m = _mm256_and_si256(
                _mm256_loadu_si256(x.as_ptr().add(i) as *const __m256i),
                absm,
            );
            mx = _mm256_max_epu32(mx, m);
            let mf = _mm256_xor_si256(m, flip);
            let gt = _mm256_cmpgt_epi32(mf, hi1);
            let out_of = _mm256_or_si256(_mm256_cmpgt_epi32(lo1, mf), gt);
            above += (_mm256_movemask_ps(_mm256_castsi256_ps(gt)) as u32).count_ones() as usize;
            let keep = !(_mm256_movemask_ps(_mm256_castsi256_ps(out_of)) as u32) & 0xFF;
            let perm = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(PACK_LUT[keep as usize] as i64));
            _mm256_storeu_si256(
                p.add(w) as *mut __m256i,
                _mm256_permutevar8x32_epi32(m, perm),
            );
            w += keep.count_ones() as usize;
        }
        out.set_len(w);
        let mut lanes = [0u32; 8];
        _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, mx);
        let mut mxs = lanes.iter().copied().max().unwrap_or(0);
        for v in &x[full..] {
            let m = v.to_bits() & 0x7FFF_FFFF;
            mxs = mxs.max(m);
            above += (m > hi) as usize;
            if (lo..=hi).contains(&m) {
                out.push(m);
            }
        }
        (above, mxs)
    }
}

/// `k` for a target compression `ratio` over `n` f32 coordinates at 8 bytes a
/// kept coordinate: `max(1, floor(n / (2 ratio)))`, capped at `n`.
pub fn k_for_ratio(n: usize, ratio: f64) -> usize {
    (((n as f64) / (2.0 * ratio)).floor() as usize).clamp(1, n.max(1))
}

/// Top-k of `x`: (indices ascending, values).
pub fn top_k(x: &[f32], k: usize) -> Result<(Vec<u32>, Vec<f32>)> {
    let idx = top_k_indices(x, k)?;
    let vals = idx.iter().map(|&i| x[i as usize]).collect();
    Ok((idx, vals))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], k: usize) -> Vec<u32> {
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_by(|&a, &b| x[b].abs().total_cmp(&x[a].abs()).then(a.cmp(&b)));
        let mut v: Vec<u32> = order[..k].iter().map(|&i| i as u32).collect();
        v.sort();
        v
    }

    #[test]
    fn matches_sort_reference_with_ties() {
        for n in [1usize, 3, 4, 5, 31, 32, 33, 255, 256, 257, 1000] {
            let x: Vec<f32> = (0..n)
                .map(|i| (((i * 37) % 11) as f32 - 5.0) * if i % 3 == 0 { -1.0 } else { 1.0 })
                .collect();
            for k in [0, 1, n / 3, n / 2, n] {
                assert_eq!(top_k_indices(&x, k).unwrap(), naive(&x, k), "n {n} k {k}");
            }
        }
        assert!(top_k_indices(&[1.0], 2).is_err());
        // Large inputs take the sampled path: same result as the sort.
        for (n, k) in [(200_000usize, 100usize), (300_001, 3000), (131_072, 1)] {
            let x: Vec<f32> = (0..n)
                .map(|i| {
                    let u = crate::rng::uniform_f32(n as u64, i as u64) - 0.5;
                    if i % 1000 == 0 {
                        u * 10.0
                    } else {
                        (u * 64.0).round() / 64.0
                    }
                })
                .collect();
            assert!(
                sampled_floor(Kernel::Scalar, &x, k).is_some(),
                "n {n} k {k}"
            );
            assert_eq!(top_k_indices(&x, k).unwrap(), naive(&x, k), "n {n} k {k}");
        }
        // Large k: the histogram path (many ties, one dominant bin, signs mixed).
        for (n, k) in [
            (70_000usize, 20_000usize),
            (65_536, 65_535),
            (100_000, 1),
            (300_001, 150_000),
        ] {
            let x: Vec<f32> = (0..n)
                .map(|i| {
                    let u = crate::rng::uniform_f32(n as u64 + 1, i as u64) - 0.5;
                    if i % 7 == 0 {
                        0.25
                    } else if i % 5 == 0 {
                        -u * 1e-3
                    } else {
                        u
                    }
                })
                .collect();
            assert!(sampled_floor(Kernel::Scalar, &x, k).is_none() || k <= n / 16);
            assert_eq!(top_k_indices(&x, k).unwrap(), naive(&x, k), "n {n} k {k}");
        }
        // The bracket: large inputs, against the sort, hit and (when the
        // sample positions carry all the large values) missed.
        let n = BRACKET_MIN + 5;
        let mut x: Vec<f32> = (0..n)
            .map(|i| ((crate::rng::uniform_f32(9, i as u64) - 0.5) * 16.0).round() / 16.0)
            .collect();
        let avx2 = crate::cpu::CpuLevel::Avx2.allowed_under(crate::cpu::detected());
        for k in [1, 77, n / 9, n - 1] {
            assert!(bracket_kth(Kernel::Scalar, &x, k).is_none());
            #[cfg(target_arch = "x86_64")]
            if avx2 {
                assert!(bracket_kth(Kernel::Avx2, &x, k).is_some(), "n {n} k {k}");
            }
            assert_eq!(top_k_indices(&x, k).unwrap(), naive(&x, k), "n {n} k {k}");
        }
        for j in 0..bracket_sample(n) as u64 {
            let i = ((crate::rng::hash2(0x7095_A3D1, j) >> 32) * n as u64) >> 32;
            x[i as usize] = 100.0;
        }
        let k = n / 7;
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            assert!(bracket_kth(Kernel::Avx2, &x, k).is_none());
        }
        assert_eq!(top_k_indices(&x, k).unwrap(), naive(&x, k));
        assert_eq!(k_for_ratio(1000, 32.0), 15);
        assert_eq!(k_for_ratio(10, 100.0), 1);
    }
}
