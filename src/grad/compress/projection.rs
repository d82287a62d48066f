//! Sparse ternary random projection, generated on the fly and applied
//! blockwise (the seeds' `compress_gradients_vsa`, made linear-time and
//! unbiased).
//!
//! `y = P g` with `P` of shape `[m, n]`: the input is split into
//! `nb = ceil(n / BLOCK_IN)` equal blocks (`[b n / nb, (b+1) n / nb)`) and the
//! output into `nb` equal blocks (`[b m / nb, (b+1) m / nb)`, so `m >= nb`);
//! column `i` of input block `b` has [`NNZ`] entries `±1/√NNZ` at rows of output
//! block `b`, row and sign drawn from `rng::hash2(seed, i · NNZ + t)` (row by
//! multiply-shift of the high 32 bits, sign from bit 0). Entries are ternary
//! (`{-1, 0, +1}` up to the common scale), and `P` is never stored: projection
//! and its transpose cost `O(n · NNZ)`.
//!
//! Decompression is `ĝ = Pᵀ y`. Over the random draw, `E[PᵀP] = I` (each
//! column has squared norm 1 in expectation: two entries that land on one
//! row add with independent signs; distinct columns are uncorrelated by their
//! signs), so `E[ĝ] = g`: unbiased. Its variance is about `(n/m) ‖g‖²` in
//! total, which is why a projection alone gives cosine ≈ `1/√(1 + n/m)`
//! (≈ 0.3 at 10x); it is kept for compatibility, not recommended.

use rayon::prelude::*;

use crate::{rng, Error, Result};

/// Input coordinates per block (the last blocks may differ by one).
pub const BLOCK_IN: usize = 4096;
/// Non-zeros per column.
pub const NNZ: usize = 2;
const SCALE: f32 = std::f32::consts::FRAC_1_SQRT_2; // 1/√NNZ

/// The projection geometry for `dim` inputs and `m` outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Projection {
    dim: usize,
    m: usize,
    seed: u64,
}

/// Output length for a kept fraction `ratio` of `dim`: `max(nb, round(ratio · dim))`.
pub fn output_len(dim: usize, ratio: f64) -> Result<usize> {
    if !(ratio.is_finite() && ratio > 0.0 && ratio <= 1.0) {
        return Err(Error::invalid(
            "ratio",
            format!("must be in (0, 1], got {ratio}"),
        ));
    }
    let nb = dim.div_ceil(BLOCK_IN);
    Ok(((dim as f64 * ratio).round() as usize).max(nb).max(1))
}

impl Projection {
    /// Errors: `dim` zero, `m` below the block count or above `dim`.
    pub fn new(dim: usize, m: usize, seed: u64) -> Result<Self> {
        if dim == 0 {
            return Err(Error::invalid("dim", "must be > 0"));
        }
        let nb = dim.div_ceil(BLOCK_IN);
        if m < nb || m > dim || m > u32::MAX as usize {
            return Err(Error::invalid(
                "m",
                format!("must be in {nb}..={dim} for dim {dim}, got {m}"),
            ));
        }
        Ok(Projection { dim, m, seed })
    }
    /// Input length.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Output length.
    pub fn m(&self) -> usize {
        self.m
    }
    fn blocks(&self) -> usize {
        self.dim.div_ceil(BLOCK_IN)
    }
    #[inline]
    fn range(len: usize, nb: usize, b: usize) -> (usize, usize) {
        (b * len / nb, (b + 1) * len / nb)
    }

    /// `y = P g`. Errors: lengths, non-finite `g`; a projection that
    /// overflows f32 or exceeds `±f32::MAX / NNZ` (so [`Self::unproject`]
    /// could not decode it) is [`Error::InvalidArgument`] naming `grad`.
    pub fn project(&self, g: &[f32], y: &mut [f32]) -> Result<()> {
        if g.len() != self.dim {
            return Err(Error::shape(
                "grad",
                format!("expected {} elements, got {}", self.dim, g.len()),
            ));
        }
        if y.len() != self.m {
            return Err(Error::shape(
                "out",
                format!("expected {} elements, got {}", self.m, y.len()),
            ));
        }
        crate::check_finite(g, "grad")?;
        let nb = self.blocks();
        // Output blocks are disjoint: split y by block and fill each in parallel.
        let mut outs: Vec<&mut [f32]> = Vec::with_capacity(nb);
        let mut rest = &mut *y;
        for b in 0..nb {
            let (lo, hi) = Self::range(self.m, nb, b);
            let (head, tail) = rest.split_at_mut(hi - lo);
            outs.push(head);
            rest = tail;
        }
        let seed = self.seed;
        crate::parallel::install(|| {
            outs.into_par_iter()
                .enumerate()
                .with_min_len(16)
                .for_each(|(b, yb)| {
                    yb.fill(0.0);
                    let (lo, hi) = Self::range(self.dim, nb, b);
                    let mb = yb.len() as u64;
                    for (i, &v) in g[lo..hi].iter().enumerate().map(|(j, v)| (lo + j, v)) {
                        let sv = v * SCALE;
                        for t in 0..NNZ {
                            let h = rng::hash2(seed, (i * NNZ + t) as u64);
                            let r = (((h >> 32) * mb) >> 32) as usize;
                            yb[r] += if h & 1 == 1 { -sv } else { sv };
                        }
                    }
                })
        });
        if let Some(i) = y
            .iter()
            .position(|v| v.is_nan() || v.abs() > f32::MAX / NNZ as f32)
        {
            return Err(Error::invalid(
                "grad",
                format!("its projection overflows at output {i} (values too large)"),
            ));
        }
        Ok(())
    }

    /// `ĝ = Pᵀ y` (unbiased estimate of `g`; finite). Errors: lengths,
    /// non-finite `y` ([`Error::NonFinite`]), a value beyond
    /// `±f32::MAX / NNZ` whose sum could overflow ([`Error::InvalidArgument`];
    /// both name `compressed`).
    pub fn unproject(&self, y: &[f32], g: &mut [f32]) -> Result<()> {
        if y.len() != self.m {
            return Err(Error::shape(
                "compressed",
                format!("expected {} elements, got {}", self.m, y.len()),
            ));
        }
        if g.len() != self.dim {
            return Err(Error::shape(
                "out",
                format!("expected {} elements, got {}", self.dim, g.len()),
            ));
        }
        crate::check_finite(y, "compressed")?;
        if let Some(i) = y.iter().position(|v| v.abs() > f32::MAX / NNZ as f32) {
            return Err(Error::invalid(
                "compressed",
                format!(
                    "value {:e} at index {i} is beyond ±f32::MAX/{NNZ}: its decode would overflow",
                    y[i]
                ),
            ));
        }
        let nb = self.blocks();
        let seed = self.seed;
        let mut outs: Vec<&mut [f32]> = Vec::with_capacity(nb);
        let mut rest = g;
        for b in 0..nb {
            let (lo, hi) = Self::range(self.dim, nb, b);
            let (head, tail) = rest.split_at_mut(hi - lo);
            outs.push(head);
            rest = tail;
        }
        crate::parallel::install(|| {
            outs.into_par_iter()
                .enumerate()
                .with_min_len(16)
                .for_each(|(b, gb)| {
                    let (lo, _) = Self::range(self.dim, nb, b);
                    let (ylo, yhi) = Self::range(self.m, nb, b);
                    let yb = &y[ylo..yhi];
                    let mb = yb.len() as u64;
                    for (j, o) in gb.iter_mut().enumerate() {
                        let i = lo + j;
                        let mut acc = 0.0f32;
                        for t in 0..NNZ {
                            let h = rng::hash2(seed, (i * NNZ + t) as u64);
                            let r = (((h >> 32) * mb) >> 32) as usize;
                            acc += if h & 1 == 1 { -yb[r] } else { yb[r] };
                        }
                        *o = acc * SCALE;
                    }
                })
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_dense_matrix_and_transpose() {
        // Build P densely from the definition for a small case (two blocks).
        let dim = 5000;
        let m = 700;
        let p = Projection::new(dim, m, 3).unwrap();
        let nb = 2;
        let mut dense = vec![0.0f64; m * dim];
        for b in 0..nb {
            let (lo, hi) = (b * dim / nb, (b + 1) * dim / nb);
            let (ylo, yhi) = (b * m / nb, (b + 1) * m / nb);
            for i in lo..hi {
                for t in 0..NNZ {
                    let h = rng::hash2(3, (i * NNZ + t) as u64);
                    let r = ylo + (((h >> 32) * (yhi - ylo) as u64) >> 32) as usize;
                    dense[r * dim + i] += if h & 1 == 1 {
                        -0.5f64.sqrt()
                    } else {
                        0.5f64.sqrt()
                    };
                }
            }
        }
        let g: Vec<f32> = (0..dim)
            .map(|i| rng::uniform_f32(1, i as u64) - 0.5)
            .collect();
        let mut y = vec![0.0; m];
        p.project(&g, &mut y).unwrap();
        for r in 0..m {
            let want: f64 = (0..dim).map(|i| dense[r * dim + i] * g[i] as f64).sum();
            assert!((y[r] as f64 - want).abs() < 1e-4);
        }
        let mut back = vec![0.0; dim];
        p.unproject(&y, &mut back).unwrap();
        for i in (0..dim).step_by(7) {
            let want: f64 = (0..m).map(|r| dense[r * dim + i] * y[r] as f64).sum();
            assert!((back[i] as f64 - want).abs() < 1e-4);
        }
    }

    #[test]
    fn unbiased_over_seeds() {
        // ĝ_0 - g_0 = Σ_{j≠0} c_j g_j (plus a zero-mean self term) with
        // E = 0 and Var ≤ 2 ‖g‖² / m_b per seed (each of the NNZ² row pairs
        // collides with probability 1/m_b). 5 sd bound over 600 seeds.
        let dim = 1000;
        let m = 100;
        let g: Vec<f32> = (0..dim)
            .map(|i| rng::uniform_f32(2, i as u64) - 0.5)
            .collect();
        let norm2: f64 = g.iter().map(|&v| (v as f64).powi(2)).sum();
        let trials = 600;
        let mut mean = 0.0f64;
        for s in 0..trials {
            let p = Projection::new(dim, m, 500 + s).unwrap();
            let mut y = vec![0.0; m];
            p.project(&g, &mut y).unwrap();
            let mut back = vec![0.0; dim];
            p.unproject(&y, &mut back).unwrap();
            mean += (back[0] - g[0]) as f64 / trials as f64;
        }
        let sd = (2.0 * norm2 / m as f64 / trials as f64).sqrt();
        assert!(mean.abs() < 5.0 * sd, "{mean} vs sd {sd}");
    }

    #[test]
    fn sizes_and_errors() {
        assert_eq!(output_len(1_000_000, 0.1).unwrap(), 100_000);
        assert_eq!(output_len(10, 0.01).unwrap(), 1);
        assert!(output_len(10, 0.0).is_err());
        assert!(output_len(10, 1.5).is_err());
        assert!(Projection::new(10_000, 2, 0).is_err()); // 3 blocks
        assert!(Projection::new(10, 11, 0).is_err());
        let p = Projection::new(10, 5, 0).unwrap();
        assert!(p.project(&[0.0; 9], &mut [0.0; 5]).is_err());
        assert!(p.unproject(&[0.0; 4], &mut [0.0; 10]).is_err());
    }
}
