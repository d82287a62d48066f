//! [`DenseMatrix`]: the embedding table and `lm_head`, kept in the
//! checkpoint's float dtype (f32, f16 or bf16: no widened copy) or, on
//! request, as int8 with one scale per row.
//!
//! `y = x · Wᵀ` runs on the crate's low-latency fork-join over blocks of
//! rows, each row a [`kernels::dot`] in f32 (int8 rows: `s_r · Σ q·x`), so a
//! batch-1 product reads every weight byte once. Several tokens share one
//! pass over each row (four at a time).

use super::kernels::{self, Row};
use crate::precision::convert::{bf16_bits_to_f32, f16_bits_to_f32};
use crate::{Error, Result};

/// Storage of a [`DenseMatrix`].
#[derive(Debug, Clone, PartialEq)]
pub enum DenseData {
    /// f32 values.
    F32(Vec<f32>),
    /// IEEE half bits.
    F16(Vec<u16>),
    /// bfloat16 bits.
    Bf16(Vec<u16>),
    /// int8 values with one f32 scale per row (`w ≈ s_r · q`).
    I8 {
        /// `rows · cols` values.
        q: Vec<i8>,
        /// `rows` scales.
        scales: Vec<f32>,
    },
}

/// A dense row-major `[rows, cols]` matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseMatrix {
    rows: usize,
    cols: usize,
    data: DenseData,
}

/// Rows per work item of the fork-join.
const BLOCK_ROWS: usize = 64;

impl DenseMatrix {
    /// From storage; its length must be `rows · cols` (scales: `rows`), and
    /// float values finite.
    pub fn new(rows: usize, cols: usize, data: DenseData) -> Result<Self> {
        let n = crate::checked_mul(rows, cols, "rows * cols")?;
        let len = match &data {
            DenseData::F32(v) => v.len(),
            DenseData::F16(v) | DenseData::Bf16(v) => v.len(),
            DenseData::I8 { q, scales } => {
                if scales.len() != rows {
                    return Err(Error::shape(
                        "scales",
                        format!("{} scales for {rows} rows", scales.len()),
                    ));
                }
                crate::check_finite(scales, "scales")?;
                q.len()
            }
        };
        if len != n {
            return Err(Error::shape(
                "data",
                format!("{len} values for a {rows} x {cols} matrix"),
            ));
        }
        let m = DenseMatrix { rows, cols, data };
        m.check_finite()?;
        Ok(m)
    }

    fn check_finite(&self) -> Result<()> {
        let bad = match &self.data {
            DenseData::F32(v) => v.iter().position(|x| !x.is_finite()),
            // exponent all ones = inf or NaN
            DenseData::F16(v) => v.iter().position(|&h| h & 0x7c00 == 0x7c00),
            DenseData::Bf16(v) => v.iter().position(|&h| h & 0x7f80 == 0x7f80),
            DenseData::I8 { .. } => None,
        };
        match bad {
            Some(index) => Err(Error::NonFinite {
                arg: "weights",
                index,
            }),
            None => Ok(()),
        }
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// The storage.
    pub fn data(&self) -> &DenseData {
        &self.data
    }
    /// `"f32"`, `"f16"`, `"bf16"` or `"int8"`.
    pub fn dtype_name(&self) -> &'static str {
        match self.data {
            DenseData::F32(_) => "f32",
            DenseData::F16(_) => "f16",
            DenseData::Bf16(_) => "bf16",
            DenseData::I8 { .. } => "int8",
        }
    }
    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        match &self.data {
            DenseData::F32(v) => 4 * v.len(),
            DenseData::F16(v) | DenseData::Bf16(v) => 2 * v.len(),
            DenseData::I8 { q, scales } => q.len() + 4 * scales.len(),
        }
    }

    /// Row `r` as stored, and its scale (1 unless int8).
    #[inline]
    pub fn row(&self, r: usize) -> (Row<'_>, f32) {
        let s = r * self.cols..(r + 1) * self.cols;
        match &self.data {
            DenseData::F32(v) => (Row::F32(&v[s]), 1.0),
            DenseData::F16(v) => (Row::F16(&v[s]), 1.0),
            DenseData::Bf16(v) => (Row::Bf16(&v[s]), 1.0),
            DenseData::I8 { q, scales } => (Row::I8(&q[s]), scales[r]),
        }
    }

    /// Rows `r..r + 4` as stored (side by side) and their scales.
    #[inline]
    fn rows4(&self, r: usize) -> (Row<'_>, [f32; 4]) {
        let s = r * self.cols..(r + 4) * self.cols;
        match &self.data {
            DenseData::F32(v) => (Row::F32(&v[s]), [1.0; 4]),
            DenseData::F16(v) => (Row::F16(&v[s]), [1.0; 4]),
            DenseData::Bf16(v) => (Row::Bf16(&v[s]), [1.0; 4]),
            DenseData::I8 { q, scales } => (
                Row::I8(&q[s]),
                [scales[r], scales[r + 1], scales[r + 2], scales[r + 3]],
            ),
        }
    }

    /// Row `r` widened to f32 into `out` (`cols` values; the embedding lookup).
    pub fn row_f32(&self, r: usize, out: &mut [f32]) {
        let s = r * self.cols..(r + 1) * self.cols;
        match &self.data {
            DenseData::F32(v) => out.copy_from_slice(&v[s]),
            DenseData::F16(v) => {
                for (o, &h) in out.iter_mut().zip(&v[s]) {
                    *o = f16_bits_to_f32(h);
                }
            }
            DenseData::Bf16(v) => {
                for (o, &h) in out.iter_mut().zip(&v[s]) {
                    *o = bf16_bits_to_f32(h);
                }
            }
            DenseData::I8 { q, scales } => {
                for (o, &b) in out.iter_mut().zip(&q[s]) {
                    *o = scales[r] * b as f32;
                }
            }
        }
    }

    /// The same matrix as int8 with one scale per row: `s_r = max_k |w_rk| / 127`,
    /// `q = round_half_even(w / s_r)` (an all-zero row gets `s_r = 0`, `q = 0`).
    pub fn to_int8(&self) -> Result<DenseMatrix> {
        if let DenseData::I8 { .. } = self.data {
            return Ok(self.clone());
        }
        let n = self.rows * self.cols;
        let mut q: Vec<i8> = Vec::new();
        q.try_reserve_exact(n)
            .map_err(|_| super::alloc_error("lm_head int8", n))?;
        let mut scales = Vec::with_capacity(self.rows);
        let mut buf = vec![0f32; self.cols];
        for r in 0..self.rows {
            self.row_f32(r, &mut buf);
            let amax = buf.iter().fold(0f32, |a, v| a.max(v.abs()));
            let s = amax / 127.0;
            scales.push(s);
            let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
            q.extend(
                buf.iter()
                    .map(|v| (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8),
            );
        }
        Ok(DenseMatrix {
            rows: self.rows,
            cols: self.cols,
            data: DenseData::I8 { q, scales },
        })
    }

    /// `y = x · Wᵀ` for `x` `[n, cols]` into `y` `[n, rows]` (row-major).
    ///
    /// # Panics
    /// If the slice lengths are not `n · cols` and `n · rows`.
    pub fn matmul(&self, x: &[f32], n: usize, y: &mut [f32]) -> Result<()> {
        assert_eq!(x.len(), n * self.cols, "dense matmul: x length");
        assert_eq!(y.len(), n * self.rows, "dense matmul: y length");
        if n == 0 || self.rows == 0 {
            return Ok(());
        }
        if n == 1 {
            crate::parallel::for_each_chunk_mut(y, BLOCK_ROWS, |b, ys| {
                let r0 = b * BLOCK_ROWS;
                let mut j = 0;
                while j + 4 <= ys.len() {
                    let (rows, s) = self.rows4(r0 + j);
                    let v = kernels::dot_rows4(rows, x);
                    for k in 0..4 {
                        ys[j + k] = s[k] * v[k];
                    }
                    j += 4;
                }
                for (jj, o) in ys.iter_mut().enumerate().skip(j) {
                    let (row, s) = self.row(r0 + jj);
                    *o = s * kernels::dot(row, x);
                }
            });
            return Ok(());
        }
        // Several tokens: a [rows, n] result, block by block, then transposed.
        let total = n * self.rows;
        let mut yt: Vec<f32> = Vec::new();
        yt.try_reserve_exact(total)
            .map_err(|_| super::alloc_error("logits", total * 4))?;
        yt.resize(total, 0.0);
        let c = self.cols;
        crate::parallel::for_each_chunk_mut(&mut yt, BLOCK_ROWS * n, |b, out| {
            let r0 = b * BLOCK_ROWS;
            for (j, orow) in out.chunks_mut(n).enumerate() {
                let (row, s) = self.row(r0 + j);
                let mut t = 0;
                while t + 4 <= n {
                    let xs = [
                        &x[t * c..(t + 1) * c],
                        &x[(t + 1) * c..(t + 2) * c],
                        &x[(t + 2) * c..(t + 3) * c],
                        &x[(t + 3) * c..(t + 4) * c],
                    ];
                    let v = kernels::dot4(row, xs);
                    for (k, vv) in v.into_iter().enumerate() {
                        orow[t + k] = s * vv;
                    }
                    t += 4;
                }
                for (tt, o) in orow.iter_mut().enumerate().skip(t) {
                    *o = s * kernels::dot(row, &x[tt * c..(tt + 1) * c]);
                }
            }
        });
        for r in 0..self.rows {
            for t in 0..n {
                y[t * self.rows + r] = yt[r * n + t];
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precision::convert::{f32_to_bf16_bits, f32_to_f16_bits};

    #[test]
    fn matmul_equals_f64_reference_every_dtype() {
        for &(rows, cols) in &[(1usize, 1usize), (3, 5), (65, 33), (130, 257)] {
            let w: Vec<f32> = (0..rows * cols)
                .map(|i| crate::rng::uniform_f32(1, i as u64) - 0.5)
                .collect();
            let mats = [
                DenseMatrix::new(rows, cols, DenseData::F32(w.clone())).unwrap(),
                DenseMatrix::new(
                    rows,
                    cols,
                    DenseData::F16(w.iter().map(|&v| f32_to_f16_bits(v)).collect()),
                )
                .unwrap(),
                DenseMatrix::new(
                    rows,
                    cols,
                    DenseData::Bf16(w.iter().map(|&v| f32_to_bf16_bits(v)).collect()),
                )
                .unwrap(),
            ];
            let i8m = mats[0].to_int8().unwrap();
            for n in [1usize, 2, 5] {
                let x: Vec<f32> = (0..n * cols)
                    .map(|i| crate::rng::uniform_f32(2, i as u64) - 0.5)
                    .collect();
                for m in mats.iter().chain([&i8m]) {
                    let mut y = vec![0f32; n * rows];
                    m.matmul(&x, n, &mut y).unwrap();
                    let mut wr = vec![0f32; cols];
                    for r in 0..rows {
                        m.row_f32(r, &mut wr);
                        for t in 0..n {
                            let e: f64 = (0..cols)
                                .map(|k| wr[k] as f64 * x[t * cols + k] as f64)
                                .sum();
                            let mag: f64 = (0..cols)
                                .map(|k| (wr[k] as f64 * x[t * cols + k] as f64).abs())
                                .sum();
                            let got = y[t * rows + r] as f64;
                            assert!(
                                (got - e).abs() <= (cols as f64 + 2.0) * 1.2e-7 * mag + 1e-30,
                                "{} {rows}x{cols} n={n}: {got} vs {e}",
                                m.dtype_name()
                            );
                        }
                    }
                }
                // int8 is close to the f32 matrix: |Δw| <= s/2 per weight
                let mut y32 = vec![0f32; n * rows];
                let mut y8 = vec![0f32; n * rows];
                mats[0].matmul(&x, n, &mut y32).unwrap();
                i8m.matmul(&x, n, &mut y8).unwrap();
                if let DenseData::I8 { scales, .. } = i8m.data() {
                    for r in 0..rows {
                        for t in 0..n {
                            let xs: f32 = x[t * cols..(t + 1) * cols].iter().map(|v| v.abs()).sum();
                            let bound = scales[r] / 2.0 * xs * 1.001 + 1e-6;
                            assert!((y32[t * rows + r] - y8[t * rows + r]).abs() <= bound);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn validates() {
        assert!(matches!(
            DenseMatrix::new(2, 2, DenseData::F32(vec![0.0; 3])),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            DenseMatrix::new(1, 2, DenseData::Bf16(vec![0, 0x7f80])),
            Err(Error::NonFinite { index: 1, .. })
        ));
    }
}
