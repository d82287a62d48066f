//! Top-k sparsification: the `k` largest-magnitude coordinates, sent as
//! `k` u32 indices plus `k` f32 values (8 bytes a coordinate, counted in the
//! wire size).

use crate::{Error, Result};

/// Indices (ascending) of the `k` largest `|x_i|`; among equal magnitudes the
/// lower index wins, so the choice is deterministic. O(n) expected
/// (`select_nth_unstable`). Errors: `k > x.len()`, `x.len() > u32::MAX`.
pub fn top_k_indices(x: &[f32], k: usize) -> Result<Vec<u32>> {
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
    let Kth { tau, above, eq } = match sampled_floor(x, k) {
        // Every coordinate with magnitude >= the k-th largest is a candidate:
        // select among the candidates only.
        Some(mut cand) => kth_of(&mut cand, k, 0),
        None if n >= 1 << 16 => histogram_kth(x, k),
        None => {
            let mut mags: Vec<u32> = x.iter().map(mag).collect();
            kth_of(&mut mags, k, 0)
        }
    };
    // Every index with magnitude >= tau, branch-free (the kept fraction is
    // often 5-15%: a branch per element mispredicts), ...
    let mut out = vec![0u32; above + eq + 1];
    let mut w = 0usize;
    for (i, v) in x.iter().enumerate() {
        out[w] = i as u32;
        w += (mag(v) >= tau) as usize;
    }
    debug_assert_eq!(w, above + eq);
    out.truncate(w);
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

/// The k-th largest magnitude and how many magnitudes lie above it and at it.
struct Kth {
    tau: u32,
    above: usize,
    eq: usize,
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
fn sampled_floor(x: &[f32], k: usize) -> Option<Vec<u32>> {
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
    let cand: Vec<u32> = x
        .iter()
        .map(|v| v.to_bits() & 0x7FFF_FFFF)
        .filter(|&m| m >= t)
        .collect();
    (cand.len() >= k).then_some(cand)
}

/// The k-th largest magnitude (as ordered bits) by a radix pass: a
/// histogram of the top 12 bits of every magnitude finds the bin holding the
/// k-th largest, then a selection among that bin's members alone. Two reads
/// of `x` and no O(n) buffer, for any `k` (1 <= k < n).
fn histogram_kth(x: &[f32], k: usize) -> Kth {
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
    let mut members: Vec<u32> = x
        .iter()
        .map(mag)
        .filter(|&m| (m >> SHIFT) as usize == bin)
        .collect();
    // The k-th largest overall is the (k - above)-th largest in this bin.
    kth_of(&mut members, k - above, above)
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
            assert!(sampled_floor(&x, k).is_some(), "n {n} k {k}");
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
            assert!(sampled_floor(&x, k).is_none() || k <= n / 16);
            assert_eq!(top_k_indices(&x, k).unwrap(), naive(&x, k), "n {n} k {k}");
        }
        assert_eq!(k_for_ratio(1000, 32.0), 15);
        assert_eq!(k_for_ratio(10, 100.0), 1);
    }
}
