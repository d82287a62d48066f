//! Sparse ternary compression: the `k` largest-magnitude coordinates become
//! `±μ` with one scale `μ` (the mean of their magnitudes, the least-squares
//! scale for fixed signs), and their positions are Golomb–Rice coded.
//! Sattler et al., "Robust and communication-efficient federated learning from
//! non-IID data" (2019) call this sparse ternary compression (STC).
//!
//! Why: at 32x a top-k payload that spends 64 bits on each kept coordinate
//! keeps 1 in 64 of them. Rice-coded positions cost about `log2(n/k) + 2` bits
//! and a sign one more, so the same bytes carry about 1 in 6 coordinates (1 in
//! 25 at 100x); error feedback returns the magnitude error to the next step.
//!
//! Body layout (after the payload header, all little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 4 | `μ`, f32, finite and `>= 0` |
//! | `stream_bytes(dim, k, r)` | the bit stream, least significant bit first |
//!
//! Each kept index `i_j` (strictly increasing) is coded from its gap
//! `g_j = i_j - i_{j-1} - 1` (with `i_{-1} = -1`): `g_j >> r` one-bits, a zero
//! bit, the low `r` bits of `g_j`, then a sign bit (1 = negative). Because
//! `sum g_j <= dim - k`, the stream never needs more than
//! `k (r + 2) + ((dim - k) >> r)` bits, so its length is fixed by `(dim, k, r)`
//! and every worker sends the same number of bytes; unused bits are zero.

use super::topk;
use crate::{Error, Result};

/// Largest Rice parameter.
pub const MAX_RICE: usize = 31;

/// Bits of the stream's upper bound for `k` entries with Rice parameter `r`.
fn stream_bits(dim: usize, k: usize, r: usize) -> Option<usize> {
    let k_bits = k.checked_mul(r + 2)?;
    k_bits.checked_add(dim.checked_sub(k)? >> r)
}

/// Bytes of the bit stream (see the module docs); `None` if `k > dim` or on
/// overflow.
pub fn stream_bytes(dim: usize, k: usize, r: usize) -> Option<usize> {
    Some(stream_bits(dim, k, r)?.div_ceil(8))
}

/// Body bytes: the scale plus the stream.
pub fn body_bytes(dim: usize, k: usize, r: usize) -> Option<usize> {
    stream_bytes(dim, k, r)?.checked_add(4)
}

/// `(k, r)` with the most kept coordinates whose body fits in
/// `floor(4 dim / ratio)` bytes (at least `k = 1`, `r` the best for that `k`).
pub fn params_for_ratio(dim: usize, ratio: f64) -> (usize, usize) {
    let budget = ((4 * dim) as f64 / ratio).floor() as usize;
    let mut best = (0usize, 0usize);
    for r in 0..=MAX_RICE.min(usize::BITS as usize - 1) {
        // body_bytes is nondecreasing in k: binary search the largest that fits.
        let (mut lo, mut hi) = (0usize, dim);
        while lo < hi {
            let mid = lo + (hi - lo).div_ceil(2);
            match body_bytes(dim, mid, r) {
                Some(b) if b <= budget => lo = mid,
                _ => hi = mid - 1,
            }
        }
        if lo > best.0 {
            best = (lo, r);
        }
    }
    if best.0 == 0 {
        // Even one entry does not fit the budget: keep one anyway (the ratio
        // is then below the target, as for top-k's `k >= 1`).
        let r = (0..=MAX_RICE)
            .min_by_key(|&r| body_bytes(dim, 1, r).unwrap_or(usize::MAX))
            .unwrap_or(0);
        best = (1.min(dim), r);
    }
    best
}

/// Compresses `x`: returns `(μ, stream)`; the kept indices are the top-k
/// (ties broken by the lower index, as [`topk::top_k_indices`]).
pub fn compress(x: &[f32], k: usize, r: usize) -> Result<(f32, Vec<u8>)> {
    if r > MAX_RICE {
        return Err(Error::invalid(
            "r",
            format!("Rice parameter {r} > {MAX_RICE}"),
        ));
    }
    let idx = topk::top_k_indices(x, k)?;
    let sum: f64 = idx.iter().map(|&i| x[i as usize].abs() as f64).sum();
    let mu = if k == 0 { 0.0 } else { (sum / k as f64) as f32 };
    let len = stream_bytes(x.len(), k, r).ok_or_else(|| Error::invalid("k", "too large"))?;
    let mut w = BitWriter::new(len);
    let mut prev: i64 = -1;
    for &i in &idx {
        let g = (i as i64 - prev - 1) as u64;
        prev = i as i64;
        w.ones(g >> r);
        w.bits(0, 1);
        if r > 0 {
            w.bits(g & ((1u64 << r) - 1), r);
        }
        w.bits(x[i as usize].is_sign_negative() as u64, 1);
    }
    Ok((mu, w.finish()))
}

/// Calls `f(index, negative)` for each coded entry, after validating the
/// whole stream (exactly `k` entries, indices `< dim`, zero padding). Errors
/// are [`Error::InvalidData`] naming `what`.
pub fn decode_entries(
    dim: usize,
    k: usize,
    r: usize,
    stream: &[u8],
    what: &'static str,
    mut f: impl FnMut(usize, bool),
) -> Result<()> {
    let bad = |m: String| Error::data(what, m);
    if stream_bytes(dim, k, r) != Some(stream.len()) {
        return Err(bad(format!(
            "stream of {} bytes does not match dim {dim}, k {k}, r {r}",
            stream.len()
        )));
    }
    let mut rd = BitReader::new(stream);
    let mut next: usize = 0; // smallest index the next entry may take
    for j in 0..k {
        let q = rd
            .unary(dim as u64)
            .ok_or_else(|| bad(format!("entry {j}: truncated or overlong gap")))?;
        let low = if r > 0 {
            rd.bits(r)
                .ok_or_else(|| bad(format!("entry {j}: truncated")))?
        } else {
            0
        };
        let neg = rd
            .bits(1)
            .ok_or_else(|| bad(format!("entry {j}: truncated")))?;
        let g = (q << r) | low;
        let i = (next as u64).checked_add(g).filter(|&i| i < dim as u64);
        let Some(i) = i else {
            return Err(bad(format!("entry {j}: index past dim {dim}")));
        };
        f(i as usize, neg == 1);
        next = i as usize + 1;
    }
    if !rd.rest_is_zero() {
        return Err(bad("nonzero padding bits after the last entry".into()));
    }
    Ok(())
}

/// Decodes into `out` (`dim` floats): `±μ` at the coded positions, 0 elsewhere.
pub fn decompress_into(mu: f32, k: usize, r: usize, stream: &[u8], out: &mut [f32]) -> Result<()> {
    out.fill(0.0);
    decode_entries(out.len(), k, r, stream, "payload", |i, neg| {
        out[i] = if neg { -mu } else { mu };
    })
}

struct BitWriter {
    buf: Vec<u8>,
    len: usize,
    acc: u64,
    n: usize,
}

impl BitWriter {
    /// A writer whose output is padded with zero bits to `len` bytes.
    fn new(len: usize) -> Self {
        BitWriter {
            buf: Vec::with_capacity(len),
            len,
            acc: 0,
            n: 0,
        }
    }
    /// Appends the low `n` (<= 57) bits of `v`.
    #[inline]
    fn bits(&mut self, v: u64, n: usize) {
        debug_assert!(n <= 57 && (n == 64 || v >> n == 0));
        self.acc |= v << self.n;
        self.n += n;
        while self.n >= 8 {
            self.buf.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    #[inline]
    fn ones(&mut self, mut q: u64) {
        while q >= 32 {
            self.bits(0xFFFF_FFFF, 32);
            q -= 32;
        }
        if q > 0 {
            self.bits((1u64 << q) - 1, q as usize);
        }
    }
    fn finish(mut self) -> Vec<u8> {
        let len = self.len;
        if self.n > 0 {
            self.buf.push(self.acc as u8);
        }
        debug_assert!(self.buf.len() <= len);
        self.buf.resize(len, 0);
        self.buf
    }
}

struct BitReader<'a> {
    s: &'a [u8],
    pos: usize, // bit position
}

impl<'a> BitReader<'a> {
    fn new(s: &'a [u8]) -> Self {
        BitReader { s, pos: 0 }
    }
    #[inline]
    fn bit(&mut self) -> Option<u64> {
        let b = *self.s.get(self.pos / 8)?;
        let v = (b >> (self.pos % 8)) & 1;
        self.pos += 1;
        Some(v as u64)
    }
    /// `n` bits, least significant first.
    #[inline]
    fn bits(&mut self, n: usize) -> Option<u64> {
        let mut v = 0u64;
        for j in 0..n {
            v |= self.bit()? << j;
        }
        Some(v)
    }
    /// Counts one-bits up to the terminating zero; `None` past the end or
    /// beyond `max` ones.
    #[inline]
    fn unary(&mut self, max: u64) -> Option<u64> {
        let mut q = 0u64;
        loop {
            // Fast path: a whole byte of ones at a byte boundary.
            if self.pos % 8 == 0 && *self.s.get(self.pos / 8)? == 0xFF {
                q += 8;
                self.pos += 8;
            } else if self.bit()? == 1 {
                q += 1;
            } else {
                return Some(q);
            }
            if q > max {
                return None;
            }
        }
    }
    fn rest_is_zero(&self) -> bool {
        let (byte, off) = (self.pos / 8, self.pos % 8);
        if off != 0 && self.s[byte] >> off != 0 {
            return false;
        }
        let from = byte + (off != 0) as usize;
        self.s[from.min(self.s.len())..].iter().all(|&b| b == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], k: usize) -> Vec<f32> {
        let idx = topk::top_k_indices(x, k).unwrap();
        let mu = idx.iter().map(|&i| x[i as usize].abs() as f64).sum::<f64>() / k.max(1) as f64;
        let mut out = vec![0.0f32; x.len()];
        for &i in &idx {
            out[i as usize] = if x[i as usize] < 0.0 {
                -(mu as f32)
            } else {
                mu as f32
            };
        }
        out
    }

    #[test]
    fn round_trips_against_the_dense_reference() {
        for n in [1usize, 2, 3, 31, 32, 33, 255, 256, 257, 1000, 65_537] {
            let x: Vec<f32> = (0..n)
                .map(|i| crate::rng::uniform_f32(n as u64 + 7, i as u64) - 0.5)
                .collect();
            for k in [0, 1, n / 7, n / 2, n] {
                for r in [0usize, 1, 3, 7, 12, 31] {
                    let (mu, s) = compress(&x, k, r).unwrap();
                    assert_eq!(s.len(), stream_bytes(n, k, r).unwrap());
                    let mut out = vec![7.0; n];
                    decompress_into(mu, k, r, &s, &mut out).unwrap();
                    assert_eq!(out, reference(&x, k), "n {n} k {k} r {r}");
                }
            }
        }
    }

    #[test]
    fn worst_case_gaps_fit_the_fixed_length() {
        // Entries bunched at the end: one maximal gap first.
        for (n, k) in [(1000usize, 10usize), (4096, 1), (777, 777), (100, 0)] {
            let x: Vec<f32> = (0..n)
                .map(|i| if i >= n - k { -2.0 } else { 0.5 })
                .collect();
            for r in 0..=12 {
                let (mu, s) = compress(&x, k, r).unwrap();
                let mut out = vec![0.0; n];
                decompress_into(mu, k, r, &s, &mut out).unwrap();
                assert_eq!(out, reference(&x, k));
            }
        }
    }

    #[test]
    fn params_fill_the_budget_and_beat_topk() {
        for (n, ratio) in [
            (278_000usize, 32.0),
            (278_000, 100.0),
            (1_000_000, 10.0),
            (5000, 32.0),
        ] {
            let (k, r) = params_for_ratio(n, ratio);
            let body = body_bytes(n, k, r).unwrap();
            assert!(body as f64 <= 4.0 * n as f64 / ratio, "n {n} ratio {ratio}");
            // The largest k for this r (at 10x every coordinate fits: k = n).
            if k < n {
                assert!(body_bytes(n, k + 1, r).unwrap() as f64 > 4.0 * n as f64 / ratio);
            }
            let topk_k = topk::k_for_ratio(n, ratio);
            assert!(
                k > 4 * topk_k,
                "n {n} ratio {ratio}: k {k} vs top-k {topk_k}"
            );
        }
        assert_eq!(params_for_ratio(3, 1000.0).0, 1);
    }

    #[test]
    fn corrupt_streams_are_rejected() {
        let n = 500;
        let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32) - 50.0).collect();
        let (k, r) = (40, 3);
        let (mu, s) = compress(&x, k, r).unwrap();
        let mut out = vec![0.0; n];
        // Wrong length.
        assert!(decompress_into(mu, k, r, &s[..s.len() - 1], &mut out).is_err());
        // All ones: a gap that runs past dim.
        assert!(decompress_into(mu, k, r, &vec![0xFF; s.len()], &mut out).is_err());
        // Nonzero padding (the last byte's top bit is padding here).
        let used = {
            let mut c = 0usize;
            decode_entries(n, k, r, &s, "s", |_, _| c += 1).unwrap();
            c
        };
        assert_eq!(used, k);
        let mut p = s.clone();
        *p.last_mut().unwrap() |= 0x80;
        assert!(decompress_into(mu, k, r, &p, &mut out).is_err());
        // Every single-bit flip is either rejected or decodes to k valid entries.
        for byte in 0..s.len() {
            for bit in 0..8 {
                let mut p = s.clone();
                p[byte] ^= 1 << bit;
                let mut cnt = 0;
                if decode_entries(n, k, r, &p, "s", |i, _| {
                    assert!(i < n);
                    cnt += 1
                })
                .is_ok()
                {
                    assert_eq!(cnt, k);
                }
            }
        }
    }
}
