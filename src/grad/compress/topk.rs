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
    let mut mags: Vec<u32> = x.iter().map(|v| v.to_bits() & 0x7FFF_FFFF).collect();
    let (_, &mut tau, _) = mags.select_nth_unstable_by(n - k, |a, b| a.cmp(b));
    // Everything above tau, then ties at tau by ascending index.
    let above = x
        .iter()
        .filter(|v| (v.to_bits() & 0x7FFF_FFFF) > tau)
        .count();
    let mut ties = k - above;
    let mut out = Vec::with_capacity(k);
    for (i, v) in x.iter().enumerate() {
        let m = v.to_bits() & 0x7FFF_FFFF;
        if m > tau {
            out.push(i as u32);
        } else if m == tau && ties > 0 {
            ties -= 1;
            out.push(i as u32);
        }
    }
    debug_assert_eq!(out.len(), k);
    Ok(out)
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
        assert_eq!(k_for_ratio(1000, 32.0), 15);
        assert_eq!(k_for_ratio(10, 100.0), 1);
    }
}
