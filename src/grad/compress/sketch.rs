//! Count sketch (Charikar, Chen & Farach-Colton 2002) and the FetchSGD
//! construction on top of it (Rothchild et al. 2020).
//!
//! A sketch of `g ∈ R^n` is a table `[rows, cols]`; coordinate `i` adds
//! `s_r(i) · g_i` to bucket `b_r(i)` of every row `r`, where bucket and sign come
//! from one counter-based hash `rng::hash2(derive(seed, r), i)` (bucket from the
//! high 32 bits by multiply-shift, sign from bit 0). The map `g -> S(g)` is
//! linear, so tables from several workers can be summed (allreduced) before
//! anything is recovered. Recovery estimates `g_i` as the median over rows of
//! `s_r(i) · T[r, b_r(i)]` (unbiased for one row; with several rows the median
//! trades a little bias for a much lighter tail).
//!
//! Cost: one hash and one scatter-add per coordinate and row, O(n · rows).
//! Large inputs are split into fixed chunks of [`CHUNK`] coordinates that are
//! sketched in parallel into private tables and summed in chunk order, so the
//! result does not depend on the thread count.

use rayon::prelude::*;

use super::topk::top_k_indices;
use crate::cpu::{self, CpuLevel, Kernel};
use crate::{rng, Error, Result};

/// Coordinates per parallel chunk (fixed, so results never depend on threads).
pub const CHUNK: usize = 1 << 22;
/// Largest number of rows.
pub const MAX_ROWS: usize = 15;

/// A count-sketch geometry: dimension, rows, columns and seed. Cheap to copy;
/// holds no table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountSketch {
    dim: usize,
    rows: usize,
    cols: usize,
    seed: u64,
}

#[inline(always)]
fn slot(row_seed: u64, i: usize, cols: usize) -> (usize, f32) {
    let h = rng::hash2(row_seed, i as u64);
    let b = (((h >> 32) * cols as u64) >> 32) as usize;
    let s = f32::from_bits(0x3F80_0000 | (((h & 1) as u32) << 31));
    (b, s)
}

impl CountSketch {
    /// A sketch of `dim`-vectors into `rows x cols` buckets. Errors: `rows` not
    /// in 1..=15, `cols` zero or above `u32::MAX`, `dim` zero.
    pub fn new(dim: usize, rows: usize, cols: usize, seed: u64) -> Result<Self> {
        if dim == 0 {
            return Err(Error::invalid("dim", "must be > 0"));
        }
        if rows == 0 || rows > MAX_ROWS {
            return Err(Error::invalid(
                "rows",
                format!("must be in 1..={MAX_ROWS}, got {rows}"),
            ));
        }
        if cols == 0 || cols > u32::MAX as usize {
            return Err(Error::invalid(
                "cols",
                format!("must be in 1..=2^32-1, got {cols}"),
            ));
        }
        crate::checked_mul(rows, cols, "rows * cols")?;
        Ok(CountSketch {
            dim,
            rows,
            cols,
            seed,
        })
    }

    /// The geometry whose table holds `dim / ratio` floats in total
    /// (`cols = max(1, floor(dim / (ratio · rows)))`).
    pub fn for_ratio(dim: usize, ratio: f64, rows: usize, seed: u64) -> Result<Self> {
        if !(ratio.is_finite() && ratio >= 1.0) {
            return Err(Error::invalid(
                "ratio",
                format!("must be >= 1, got {ratio}"),
            ));
        }
        if rows == 0 || rows > MAX_ROWS {
            return Err(Error::invalid(
                "rows",
                format!("must be in 1..={MAX_ROWS}, got {rows}"),
            ));
        }
        let cols = ((dim as f64 / (ratio * rows as f64)).floor() as usize).max(1);
        Self::new(dim, rows, cols.min(u32::MAX as usize), seed)
    }

    /// Dimension of the sketched vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Rows of the table.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Columns (buckets per row).
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Floats in a table (`rows * cols`).
    pub fn table_len(&self) -> usize {
        self.rows * self.cols
    }
    fn row_seed(&self, r: usize) -> u64 {
        rng::derive(self.seed, r as u64)
    }

    /// Bucket and sign (`±1.0`) of coordinate `i` in row `r`.
    pub fn bucket(&self, r: usize, i: usize) -> (usize, f32) {
        slot(self.row_seed(r), i, self.cols)
    }

    fn check_table(&self, t: &[f32], arg: &'static str) -> Result<()> {
        if t.len() != self.table_len() {
            return Err(Error::shape(
                arg,
                format!(
                    "table must hold rows * cols = {} floats, got {}",
                    self.table_len(),
                    t.len()
                ),
            ));
        }
        Ok(())
    }
    fn check_vec(&self, g: &[f32], arg: &'static str) -> Result<()> {
        if g.len() != self.dim {
            return Err(Error::shape(
                arg,
                format!("expected {} elements, got {}", self.dim, g.len()),
            ));
        }
        Ok(())
    }

    /// Sequential `table += S(g[off..])` for coordinates `off..off+g.len()`.
    fn add_range(&self, k: Kernel, g: &[f32], off: usize, table: &mut [f32]) {
        for r in 0..self.rows {
            let rs = self.row_seed(r);
            let row = &mut table[r * self.cols..(r + 1) * self.cols];
            let cols = self.cols;
            add_row(k, rs, cols, g, off, row);
        }
    }

    /// `table += S(g)`. Errors: wrong lengths, non-finite `g`.
    pub fn accumulate(&self, g: &[f32], table: &mut [f32]) -> Result<()> {
        self.accumulate_level(g, table, cpu::active())
    }

    /// [`Self::accumulate`] with the kernels of `level` (identical tables at
    /// every level).
    pub fn accumulate_level(&self, g: &[f32], table: &mut [f32], level: CpuLevel) -> Result<()> {
        let k = kernel(level);
        self.check_vec(g, "grad")?;
        self.check_table(table, "table")?;
        crate::check_finite(g, "grad")?;
        if g.len() <= CHUNK {
            self.add_range(k, g, 0, table);
            return Ok(());
        }
        // The fixed chunks' partial tables, added to `table` in chunk order
        // (so the result never depends on the thread count), computed in
        // waves of one chunk a thread into buffers reused across waves (no
        // per-chunk allocation and page faults).
        let threads = crate::parallel::num_threads().max(1);
        let chunks: Vec<&[f32]> = g.chunks(CHUNK).collect();
        let nb = threads.min(chunks.len());
        let mut bufs = crate::try_with_capacity(nb, "table")?;
        for _ in 0..nb {
            bufs.push(crate::try_zeroed::<f32>(self.table_len(), "table")?);
        }
        for (w, wave) in chunks.chunks(nb).enumerate() {
            let fill = |(j, (buf, gc)): (usize, (&mut Vec<f32>, &&[f32]))| {
                if w > 0 {
                    buf.fill(0.0);
                }
                self.add_range(k, gc, (w * nb + j) * CHUNK, buf);
            };
            if wave.len() == 1 {
                bufs.iter_mut().zip(wave).enumerate().take(1).for_each(fill);
            } else {
                crate::parallel::install(|| {
                    bufs.par_iter_mut()
                        .zip(wave.par_iter())
                        .enumerate()
                        .for_each(fill)
                });
            }
            for buf in &bufs[..wave.len()] {
                for (t, v) in table.iter_mut().zip(buf) {
                    *t += v;
                }
            }
        }
        Ok(())
    }

    /// `S(g)`: a new table `[rows * cols]`, row-major.
    pub fn sketch(&self, g: &[f32]) -> Result<Vec<f32>> {
        let mut t = crate::try_zeroed(self.table_len(), "table")?;
        self.accumulate(g, &mut t)?;
        Ok(t)
    }

    /// `table += alpha · S(x)` for the sparse vector `x[indices[j]] = values[j]`.
    pub fn accumulate_sparse(
        &self,
        indices: &[u32],
        values: &[f32],
        alpha: f32,
        table: &mut [f32],
    ) -> Result<()> {
        self.check_table(table, "table")?;
        if indices.len() != values.len() {
            return Err(Error::shape(
                "values",
                format!("{} values for {} indices", values.len(), indices.len()),
            ));
        }
        if let Some(&bad) = indices.iter().find(|&&i| i as usize >= self.dim) {
            return Err(Error::invalid(
                "indices",
                format!("index {bad} out of range for dim {}", self.dim),
            ));
        }
        for r in 0..self.rows {
            let rs = self.row_seed(r);
            let row = &mut table[r * self.cols..(r + 1) * self.cols];
            for (&i, &v) in indices.iter().zip(values) {
                let (b, s) = slot(rs, i as usize, self.cols);
                row[b] += alpha * (s * v);
            }
        }
        Ok(())
    }

    /// Estimate of coordinate `i` from `table` (median over rows).
    pub fn estimate_at(&self, table: &[f32], i: usize) -> f32 {
        let mut v = [0.0f32; MAX_ROWS];
        for (r, vr) in v.iter_mut().enumerate().take(self.rows) {
            let (b, s) = self.bucket(r, i);
            *vr = s * table[r * self.cols + b];
        }
        median(&mut v[..self.rows])
    }

    /// Dense estimate of every coordinate (median over rows) into `out`.
    pub fn estimate(&self, table: &[f32], out: &mut [f32]) -> Result<()> {
        self.estimate_level(table, out, cpu::active())
    }

    /// [`Self::estimate`] with the kernels of `level` (identical at every level).
    pub fn estimate_level(&self, table: &[f32], out: &mut [f32], level: CpuLevel) -> Result<()> {
        let k = kernel(level);
        self.check_table(table, "table")?;
        self.check_vec(out, "out")?;
        let seeds: Vec<u64> = (0..self.rows).map(|r| self.row_seed(r)).collect();
        let (rows, cols) = (self.rows, self.cols);
        crate::parallel::install(|| {
            out.par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(c, oc)| estimate_range(k, &seeds[..rows], cols, table, c * CHUNK, oc))
        });
        Ok(())
    }

    /// The `k` coordinates with the largest estimated magnitude (ties to the
    /// lower index), ascending, with their estimates.
    pub fn top_k(&self, table: &[f32], k: usize) -> Result<(Vec<u32>, Vec<f32>)> {
        let mut est = crate::try_zeroed(self.dim, "dim")?;
        self.estimate(table, &mut est)?;
        let idx = top_k_indices(&est, k)?;
        let vals = idx.iter().map(|&i| est[i as usize]).collect();
        Ok((idx, vals))
    }
}

#[inline(always)]
fn add_row_impl(rs: u64, cols: usize, g: &[f32], off: usize, row: &mut [f32]) {
    // Two passes per 256 coordinates: hashes (vectorizable) into small
    // buffers, then the scatter-add (sequential, in index order).
    const S: usize = 256;
    let mut bk = [0u32; S];
    let mut sv = [0.0f32; S];
    for (c, gc) in g.chunks(S).enumerate() {
        let base = (off + c * S) as u64;
        for (j, &v) in gc.iter().enumerate() {
            let h = rng::hash2(rs, base + j as u64);
            bk[j] = (((h >> 32) * cols as u64) >> 32) as u32;
            // s · v with s = ±1: flip the sign bit (exactly the product).
            sv[j] = f32::from_bits(v.to_bits() ^ (((h & 1) as u32) << 31));
        }
        for (&b, &v) in bk.iter().zip(&sv).take(gc.len()) {
            row[b as usize] += v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
unsafe fn add_row_avx512(rs: u64, cols: usize, g: &[f32], off: usize, row: &mut [f32]) {
    add_row_impl(rs, cols, g, off, row)
}

/// The kernels run for a requested level (the best at or below it that the
/// CPU supports; all give identical tables and estimates).
fn kernel(level: CpuLevel) -> Kernel {
    Kernel::pick(level, true)
}

fn add_row(k: Kernel, rs: u64, cols: usize, g: &[f32], off: usize, row: &mut [f32]) {
    match k {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the kernel is picked only after detection.
        Kernel::Avx512 => unsafe { add_row_avx512(rs, cols, g, off, row) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::Avx2 => unsafe { add_row_avx2(rs, cols, g, off, row) },
        Kernel::Scalar => add_row_impl(rs, cols, g, off, row),
    }
}

/// The count-sketch slot hash of 8 consecutive coordinates with explicit
/// AVX2, 4 coordinates a register. AVX2 has no 64-bit multiply: each
/// `mix64` product is three `vpmuludq`.
#[cfg(target_arch = "x86_64")]
mod slots {
    use std::arch::x86_64::*;

    /// Broadcast constants.
    pub(super) struct Hash {
        c1: __m256i,
        c1h: __m256i,
        c2: __m256i,
        c2h: __m256i,
        cols: __m256i,
        step: __m256i,
        order: __m256i,
    }

    impl Hash {
        /// Constants for a table row of `cols` buckets.
        #[target_feature(enable = "avx2")]
        pub(super) fn new(cols: usize) -> Hash {
            const C1: u64 = 0xBF58_476D_1CE4_E5B9;
            const C2: u64 = 0x94D0_49BB_1331_11EB;
            Hash {
                c1: _mm256_set1_epi64x(C1 as i64),
                c1h: _mm256_set1_epi64x(C1.rotate_left(32) as i64),
                c2: _mm256_set1_epi64x(C2 as i64),
                c2h: _mm256_set1_epi64x(C2.rotate_left(32) as i64),
                cols: _mm256_set1_epi64x(cols as i64),
                step: _mm256_set1_epi64x(crate::rng::INDEX_STEP.wrapping_mul(8) as i64),
                order: _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7),
            }
        }

        /// `z · c` (low 64 bits) per 64-bit lane; `cs` is `c` with the
        /// dwords of each lane swapped. `z_lo c_lo` is one `vpmuludq`; the
        /// cross terms only matter mod 2^32, so one `vpmulld` forms
        /// `z_lo c_hi` and `z_hi c_lo` side by side, and a dword swap adds them.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn mul64(z: __m256i, c: __m256i, cs: __m256i) -> __m256i {
            let lo = _mm256_mul_epu32(z, c);
            let t = _mm256_mullo_epi32(z, cs);
            let cross = _mm256_add_epi32(t, _mm256_shuffle_epi32::<0xB1>(t));
            _mm256_add_epi64(lo, _mm256_slli_epi64::<32>(cross))
        }

        /// SplitMix64's finalizer ([`crate::rng::mix64`]) per 64-bit lane.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn mix64(&self, mut z: __m256i) -> __m256i {
            z = _mm256_xor_si256(z, _mm256_srli_epi64::<30>(z));
            z = Self::mul64(z, self.c1, self.c1h);
            z = _mm256_xor_si256(z, _mm256_srli_epi64::<27>(z));
            z = Self::mul64(z, self.c2, self.c2h);
            _mm256_xor_si256(z, _mm256_srli_epi64::<31>(z))
        }

        /// Dwords `0, 2` (or `1, 3` with `HI`) of each 64-bit lane of `a`
        /// then of `b`, in lane order: `[a0 a1 a2 a3 b0 b1 b2 b3]`.
        #[target_feature(enable = "avx2")]
        #[inline]
        fn pick<const HI: bool>(&self, a: __m256i, b: __m256i) -> __m256i {
            let (a, b) = (_mm256_castsi256_ps(a), _mm256_castsi256_ps(b));
            let v = if HI {
                _mm256_shuffle_ps::<0b11_01_11_01>(a, b)
            } else {
                _mm256_shuffle_ps::<0b10_00_10_00>(a, b)
            };
            // [a0 a1 b0 b1 | a2 a3 b2 b3] -> [a0 a1 a2 a3 b0 b1 b2 b3]
            _mm256_permutevar8x32_epi32(_mm256_castps_si256(v), self.order)
        }

        /// Buckets and sign masks (bit 31) of the 8 coordinates whose hash
        /// inputs are `z0` (coordinates 0..4) and `z1` (4..8), as u32 lanes
        /// in coordinate order; advances `z0`, `z1` by 8 coordinates.
        #[target_feature(enable = "avx2")]
        #[inline]
        pub(super) fn next8(&self, z0: &mut __m256i, z1: &mut __m256i) -> (__m256i, __m256i) {
            let h0 = self.mix64(*z0);
            let h1 = self.mix64(*z1);
            *z0 = _mm256_add_epi64(*z0, self.step);
            *z1 = _mm256_add_epi64(*z1, self.step);
            // bucket = ((h >> 32) · cols) >> 32: the high dword of the product
            let b0 = _mm256_mul_epu32(_mm256_srli_epi64::<32>(h0), self.cols);
            let b1 = _mm256_mul_epu32(_mm256_srli_epi64::<32>(h1), self.cols);
            // sign = bit 0 of h, moved to bit 31 of the low dword
            let s0 = _mm256_slli_epi32::<31>(h0);
            let s1 = _mm256_slli_epi32::<31>(h1);
            (self.pick::<true>(b0, b1), self.pick::<false>(s0, s1))
        }

        /// The hash inputs `z0`, `z1` of coordinates `i..i + 8` of the stream
        /// with [`crate::rng::stream_base`] `base`.
        #[target_feature(enable = "avx2")]
        #[inline]
        pub(super) fn start(base: u64, i: u64) -> (__m256i, __m256i) {
            let z = |j: u64| base.wrapping_add((i + j).wrapping_mul(crate::rng::INDEX_STEP)) as i64;
            (
                _mm256_setr_epi64x(z(0), z(1), z(2), z(3)),
                _mm256_setr_epi64x(z(4), z(5), z(6), z(7)),
            )
        }
    }
}

/// [`add_row_impl`] with the slots from [`slots::Hash`]: the signed values
/// and buckets of 256 coordinates into stack buffers, then the scatter-add in
/// index order (the same additions in the same order: bit-identical).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_row_avx2(rs: u64, cols: usize, g: &[f32], off: usize, row: &mut [f32]) {
    use std::arch::x86_64::*;
    const S: usize = 256;
    let h = slots::Hash::new(cols);
    let (mut z0, mut z1) = slots::Hash::start(rng::stream_base(rs), off as u64);
    let mut bk = [0u32; S];
    let mut sv = [0.0f32; S];
    let full = g.len() / 8 * 8;
    for gc in g[..full].chunks(S) {
        for (j, x) in gc.chunks_exact(8).enumerate() {
            let (b, sg) = h.next8(&mut z0, &mut z1);
            // SAFETY: x holds 8 floats; 8 j + 8 <= S.
            unsafe {
                let v = _mm256_xor_si256(_mm256_loadu_si256(x.as_ptr() as *const __m256i), sg);
                _mm256_storeu_si256(bk.as_mut_ptr().add(8 * j) as *mut __m256i, b);
                _mm256_storeu_si256(sv.as_mut_ptr().add(8 * j) as *mut __m256i, v);
            }
        }
        assert!(row.len() >= cols);
        for (&b, &v) in bk.iter().zip(&sv).take(gc.len()) {
            // SAFETY: a bucket is ((h >> 32) · cols) >> 32 < cols <= row.len().
            // (Software prefetch of upcoming buckets measured slower.)
            unsafe { *row.get_unchecked_mut(b as usize) += v };
        }
    }
    // The last < 8 coordinates, scalar.
    add_row_impl(rs, cols, &g[full..], off + full, row);
}

#[inline(always)]
fn estimate_impl(seeds: &[u64], cols: usize, table: &[f32], off: usize, out: &mut [f32]) {
    // Per 256 coordinates: gather each row's signed bucket value (hashes
    // vectorize), then the median across rows.
    const S: usize = 256;
    let rows = seeds.len();
    let mut vals = [[0.0f32; S]; MAX_ROWS];
    for (c, oc) in out.chunks_mut(S).enumerate() {
        let base = (off + c * S) as u64;
        let m = oc.len();
        for (r, &rs) in seeds.iter().enumerate() {
            let row = &table[r * cols..(r + 1) * cols];
            for (j, v) in vals[r][..m].iter_mut().enumerate() {
                let h = rng::hash2(rs, base + j as u64);
                let b = (((h >> 32) * cols as u64) >> 32) as usize;
                *v = f32::from_bits(row[b].to_bits() ^ (((h & 1) as u32) << 31));
            }
        }
        median_rows(&vals[..rows], oc);
    }
}

/// `out[j]` = the median over rows of `vals[r][j]` (the first `out.len()`).
#[inline(always)]
fn median_rows(vals: &[[f32; 256]], out: &mut [f32]) {
    let m = out.len();
    match vals.len() {
        1 => out.copy_from_slice(&vals[0][..m]),
        3 => {
            let (v0, v1, v2) = (&vals[0], &vals[1], &vals[2]);
            for (j, o) in out.iter_mut().enumerate() {
                let (a, b, c) = (v0[j], v1[j], v2[j]);
                *o = a.max(b).min(a.min(b).max(c));
            }
        }
        rows => {
            let mut v = [0.0f32; MAX_ROWS];
            for (j, o) in out.iter_mut().enumerate() {
                for r in 0..rows {
                    v[r] = vals[r][j];
                }
                *o = median(&mut v[..rows]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
unsafe fn estimate_avx512(seeds: &[u64], cols: usize, table: &[f32], off: usize, out: &mut [f32]) {
    estimate_impl(seeds, cols, table, off, out)
}

/// [`estimate_impl`] with the slots from [`slots::Hash`] and the signed
/// bucket values fetched by `vpgatherdd` (8 a step); the same values and
/// the same median, so bit-identical.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn estimate_avx2(seeds: &[u64], cols: usize, table: &[f32], off: usize, out: &mut [f32]) {
    use std::arch::x86_64::*;
    const S: usize = 256;
    let rows = seeds.len();
    let full = out.len() / 8 * 8;
    if cols > i32::MAX as usize {
        // The gather's indices are signed 32-bit.
        return estimate_impl(seeds, cols, table, off, out);
    }
    let h = slots::Hash::new(cols);
    let mut vals = [[0.0f32; S]; MAX_ROWS];
    for (c, oc) in out[..full].chunks_mut(S).enumerate() {
        let i0 = (off + c * S) as u64;
        for (r, &rs) in seeds.iter().enumerate() {
            let row = &table[r * cols..(r + 1) * cols];
            let (mut z0, mut z1) = slots::Hash::start(rng::stream_base(rs), i0);
            for j in (0..oc.len()).step_by(8) {
                let (b, sg) = h.next8(&mut z0, &mut z1);
                // SAFETY: every bucket is < cols = row.len() (multiply-shift
                // of a 32-bit hash), and cols <= i32::MAX; j + 8 <= S.
                unsafe {
                    let v = _mm256_i32gather_epi32::<4>(row.as_ptr() as *const i32, b);
                    _mm256_storeu_si256(
                        vals[r].as_mut_ptr().add(j) as *mut __m256i,
                        _mm256_xor_si256(v, sg),
                    );
                }
            }
        }
        median_rows(&vals[..rows], oc);
    }
    estimate_impl(seeds, cols, table, off + full, &mut out[full..]);
}

fn estimate_range(
    k: Kernel,
    seeds: &[u64],
    cols: usize,
    table: &[f32],
    off: usize,
    out: &mut [f32],
) {
    match k {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the kernel is picked only after detection.
        Kernel::Avx512 => unsafe { estimate_avx512(seeds, cols, table, off, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Kernel::Avx2 => unsafe { estimate_avx2(seeds, cols, table, off, out) },
        Kernel::Scalar => estimate_impl(seeds, cols, table, off, out),
    }
}

/// Mean of two values that cannot overflow: `a/2 + b/2` (halving is exact
/// for normal numbers, so this is `(a + b) / 2` correctly rounded wherever
/// that sum is finite; at the edge of the range it stays finite).
#[inline]
fn mid(a: f32, b: f32) -> f32 {
    0.5 * a + 0.5 * b
}

/// Median of a short slice (mean of the two middle values for even lengths;
/// finite for finite inputs).
fn median(v: &mut [f32]) -> f32 {
    match v.len() {
        1 => v[0],
        2 => mid(v[0], v[1]),
        3 => {
            let (a, b, c) = (v[0], v[1], v[2]);
            a.max(b).min(a.min(b).max(c))
        }
        n => {
            v.sort_unstable_by(|a, b| a.total_cmp(b));
            if n % 2 == 1 {
                v[n / 2]
            } else {
                mid(v[n / 2 - 1], v[n / 2])
            }
        }
    }
}

/// FetchSGD state (Rothchild et al., ICML 2020, Algorithm 1), kept in sketch
/// space: momentum `S_u` and error `S_e`, each a `[rows, cols]` table.
///
/// One step, given the sum (or mean) `S_g` of the workers' sketches:
/// `S_u ← ρ S_u + S_g`; `S_e ← S_e + S_u`; `Δ ← top-k(unsketch(S_e))`
/// (median-of-rows estimates); then the buckets that `Δ`'s coordinates hash
/// to are zeroed in `S_e` and `S_u` in every row (error reset and momentum
/// stopping at the applied coordinates). Every rank that
/// feeds the same summed tables holds the same state and returns the same `Δ`,
/// so `Δ` never travels. The learning rate is left to the optimizer (for a
/// constant rate, scaling `S_e` by it commutes with everything above); use it
/// with momentum-free SGD, since the momentum lives here.
#[derive(Debug, Clone)]
pub struct FetchSgd {
    sketch: CountSketch,
    k: usize,
    momentum: f32,
    u: Vec<f32>,
    e: Vec<f32>,
    steps: u64,
}

impl FetchSgd {
    /// New state. Errors: `k` zero or above `dim`, `momentum` not in `[0, 1)`,
    /// tables that cannot be allocated ([`Error::OutOfMemory`] naming `cols`).
    pub fn new(sketch: CountSketch, k: usize, momentum: f32) -> Result<Self> {
        if k == 0 || k > sketch.dim() {
            return Err(Error::invalid(
                "k",
                format!("must be in 1..={}, got {k}", sketch.dim()),
            ));
        }
        if !(momentum.is_finite() && (0.0..1.0).contains(&momentum)) {
            return Err(Error::invalid(
                "momentum",
                format!("must be in [0, 1), got {momentum}"),
            ));
        }
        Ok(FetchSgd {
            sketch,
            k,
            momentum,
            u: crate::try_zeroed(sketch.table_len(), "cols")?,
            e: crate::try_zeroed(sketch.table_len(), "cols")?,
            steps: 0,
        })
    }
    /// The sketch geometry workers must use.
    pub fn sketch(&self) -> &CountSketch {
        &self.sketch
    }
    /// Coordinates applied per step.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Momentum `ρ`.
    pub fn momentum(&self) -> f32 {
        self.momentum
    }
    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }
    /// Momentum table `S_u`.
    pub fn momentum_table(&self) -> &[f32] {
        &self.u
    }
    /// Error table `S_e`.
    pub fn error_table(&self) -> &[f32] {
        &self.e
    }
    /// Zeroes the state.
    pub fn reset(&mut self) {
        self.u.fill(0.0);
        self.e.fill(0.0);
        self.steps = 0;
    }

    /// One step on the summed table; returns the sparse update `Δ` (indices
    /// ascending, values, all finite). Errors: wrong table length,
    /// non-finite values, and ([`Error::NonFinite`] naming `summed`) a table
    /// that would overflow the momentum or error table to ±inf; the state is
    /// unchanged on error.
    pub fn step(&mut self, summed: &[f32]) -> Result<(Vec<u32>, Vec<f32>)> {
        self.sketch.check_table(summed, "summed")?;
        crate::check_finite(summed, "summed")?;
        let rho = self.momentum;
        // First pass: would the new tables stay finite? (Checked before
        // anything changes; the decode of finite tables is finite.)
        if let Some(index) = self
            .u
            .iter()
            .zip(&self.e)
            .zip(summed)
            .position(|((&u, &e), &s)| {
                let u = rho * u + s;
                !(u.is_finite() && (e + u).is_finite())
            })
        {
            return Err(Error::NonFinite {
                arg: "summed",
                index,
            });
        }
        for ((u, e), &s) in self.u.iter_mut().zip(self.e.iter_mut()).zip(summed) {
            *u = rho * *u + s;
            *e += *u;
        }
        let (idx, vals) = self.sketch.top_k(&self.e, self.k)?;
        // Zero the buckets of the applied coordinates in every row (the
        // paper's "zero out the non-zero coordinates of Δ" in sketch space).
        // Subtracting S(Δ) instead overshoots when several applied
        // coordinates share a bucket (their estimates all equal that bucket)
        // and diverges on small sketches.
        for &i in &idx {
            for r in 0..self.sketch.rows {
                let (b, _) = self.sketch.bucket(r, i as usize);
                self.e[r * self.sketch.cols + b] = 0.0;
                self.u[r * self.sketch.cols + b] = 0.0;
            }
        }
        self.steps += 1;
        Ok((idx, vals))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn randn(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let a = rng::uniform_f64(seed, 2 * i as u64).max(1e-300);
                let b = rng::uniform_f64(seed, 2 * i as u64 + 1);
                ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
            })
            .collect()
    }

    #[test]
    fn matches_naive_definition() {
        let cs = CountSketch::new(1000, 3, 37, 9).unwrap();
        let g = randn(1000, 1);
        let t = cs.sketch(&g).unwrap();
        let mut want = vec![0.0f64; 3 * 37];
        for (i, &v) in g.iter().enumerate() {
            for r in 0..3 {
                let h = rng::hash2(rng::derive(9, r as u64), i as u64);
                let b = (((h >> 32) as u128 * 37) >> 32) as usize;
                let s = if h & 1 == 1 { -1.0 } else { 1.0 };
                want[r * 37 + b] += s * v as f64;
            }
        }
        for (a, b) in t.iter().zip(&want) {
            assert!((*a as f64 - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn linear_exact_on_integers() {
        // Integer-valued inputs with all partial sums < 2^24 are summed exactly
        // in f32, so linearity holds bit for bit.
        let n = 5000;
        let cs = CountSketch::new(n, 2, 301, 3).unwrap();
        let a: Vec<f32> = (0..n).map(|i| ((i * 7919) % 201) as f32 - 100.0).collect();
        let b: Vec<f32> = (0..n)
            .map(|i| ((i * 104_729) % 151) as f32 - 75.0)
            .collect();
        let ab: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let sa = cs.sketch(&a).unwrap();
        let sb = cs.sketch(&b).unwrap();
        let sab = cs.sketch(&ab).unwrap();
        for i in 0..sa.len() {
            assert_eq!(sa[i] + sb[i], sab[i]);
        }
    }

    #[test]
    fn linear_within_rounding_bound() {
        // Each bucket is a sequential f32 sum of m terms: its error is at most
        // (m - 1) u Σ|terms| (u = 2^-24), three sums here plus one addition.
        let n = 20_000;
        let cs = CountSketch::new(n, 3, 997, 5).unwrap();
        let a = randn(n, 10);
        let b = randn(n, 11);
        let ab: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let (sa, sb, sab) = (
            cs.sketch(&a).unwrap(),
            cs.sketch(&b).unwrap(),
            cs.sketch(&ab).unwrap(),
        );
        let mut count = vec![0usize; cs.table_len()];
        let mut mass = vec![0.0f64; cs.table_len()];
        for i in 0..n {
            for r in 0..3 {
                let (bk, _) = cs.bucket(r, i);
                count[r * 997 + bk] += 1;
                mass[r * 997 + bk] += (a[i].abs() + b[i].abs()) as f64 * 2.0;
            }
        }
        let u = 2f64.powi(-24);
        for i in 0..sa.len() {
            let bound = (count[i] as f64 + 1.0) * u * mass[i];
            let err = ((sa[i] + sb[i]) as f64 - sab[i] as f64).abs();
            assert!(err <= bound, "bucket {i}: {err} > {bound}");
        }
    }

    #[test]
    fn chunked_parallel_equals_sequential() {
        let n = CHUNK + 12345;
        let cs = CountSketch::new(n, 2, 1000, 77).unwrap();
        let g: Vec<f32> = (0..n).map(|i| ((i % 17) as f32) - 8.0).collect();
        let t = cs.sketch(&g).unwrap();
        let mut want = vec![0.0f32; cs.table_len()];
        cs.add_range(kernel(crate::cpu::active()), &g, 0, &mut want);
        assert_eq!(t, want); // integer sums: exact in any order
        for threads in [1, 2, 3] {
            crate::parallel::set_num_threads(threads);
            assert_eq!(cs.sketch(&g).unwrap(), t);
        }
        crate::parallel::set_num_threads(0);
    }

    #[test]
    fn chunk_waves_are_bit_identical_for_any_thread_count() {
        // 4 chunks: one wave of 4, two of 2, or 3 + 1; non-integer values, so
        // any change in the order of the partial sums would show
        let n = 3 * CHUNK + 5;
        let cs = CountSketch::new(n, 1, 4099, 5).unwrap();
        let g = randn(n, 8);
        let mut want = vec![0.0f32; cs.table_len()];
        for (c, gc) in g.chunks(CHUNK).enumerate() {
            let mut t = vec![0.0f32; cs.table_len()];
            cs.add_range(kernel(crate::cpu::active()), gc, c * CHUNK, &mut t);
            for (w, v) in want.iter_mut().zip(&t) {
                *w += v;
            }
        }
        for threads in [1, 2, 3, 4] {
            crate::parallel::set_num_threads(threads);
            let got = cs.sketch(&g).unwrap();
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "threads {threads}"
            );
        }
        crate::parallel::set_num_threads(0);
    }

    #[test]
    fn one_row_estimate_is_unbiased() {
        // With one row, ĝ_i = g_i + Σ_{j≠i, b(j)=b(i)} s(i)s(j) g_j: mean g_i
        // over seeds, variance Σ_{j≠i} g_j² / cols. Average over 400 seeds:
        // the mean of ĝ_0 - g_0 has sd sqrt(var / 400); 5 sd bound.
        let n = 2000;
        let g = randn(n, 3);
        let cols = 100;
        let var: f64 = g[1..].iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / cols as f64;
        let trials = 400;
        let mut sum = 0.0f64;
        let mut sq = 0.0f64;
        for s in 0..trials {
            let cs = CountSketch::new(n, 1, cols, 1000 + s).unwrap();
            let t = cs.sketch(&g).unwrap();
            let d = (cs.estimate_at(&t, 0) - g[0]) as f64;
            sum += d;
            sq += d * d;
        }
        let mean = sum / trials as f64;
        assert!(
            mean.abs() < 5.0 * (var / trials as f64).sqrt(),
            "mean {mean}"
        );
        let emp_var = sq / trials as f64 - mean * mean;
        assert!(
            emp_var < 1.5 * var && emp_var > 0.6 * var,
            "{emp_var} vs {var}"
        );
    }

    #[test]
    fn dense_estimate_equals_pointwise_median() {
        for rows in [1usize, 2, 3, 4, 5] {
            let n = 3000;
            let cs = CountSketch::new(n, rows, 101, 8).unwrap();
            let t = cs.sketch(&randn(n, rows as u64)).unwrap();
            let mut est = vec![0.0f32; n];
            cs.estimate(&t, &mut est).unwrap();
            for (i, &e) in est.iter().enumerate() {
                let mut v: Vec<f32> = (0..rows)
                    .map(|r| {
                        let (b, s) = cs.bucket(r, i);
                        s * t[r * 101 + b]
                    })
                    .collect();
                v.sort_by(|a, b| a.total_cmp(b));
                let med = if rows % 2 == 1 {
                    v[rows / 2]
                } else {
                    0.5 * (v[rows / 2 - 1] + v[rows / 2])
                };
                assert_eq!(e, med, "rows {rows} coord {i}");
                assert_eq!(cs.estimate_at(&t, i), med);
            }
        }
    }

    #[test]
    fn recovers_heavy_hitters() {
        let n = 100_000;
        let mut g: Vec<f32> = randn(n, 8).iter().map(|v| v * 0.01).collect();
        let heavy = [5usize, 777, 4242, 99_999, 50_000];
        for (j, &i) in heavy.iter().enumerate() {
            g[i] = 10.0 + j as f32;
        }
        let cs = CountSketch::new(n, 3, 2000, 1).unwrap();
        let t = cs.sketch(&g).unwrap();
        let (idx, vals) = cs.top_k(&t, 5).unwrap();
        let mut want: Vec<u32> = heavy.iter().map(|&i| i as u32).collect();
        want.sort();
        assert_eq!(idx, want);
        // Each bucket holds ~n/cols = 50 noise terms of sd 0.01: the row
        // estimate's noise has sd 0.01·√50 ≈ 0.071; 5 sd bound.
        let sd = 0.01 * (n as f32 / 2000.0).sqrt();
        for (&i, &v) in idx.iter().zip(&vals) {
            assert!((v - g[i as usize]).abs() < 5.0 * sd);
        }
    }

    #[test]
    fn fetchsgd_error_invariant_and_sparsity() {
        // S_e(t) = S_e(t-1) + S_u(t) with the buckets of Δ_t's support zeroed;
        // S_u(t) = ρ S_u(t-1) + S_g likewise zeroed; Δ_t = the top-k estimates.
        let n = 10_000;
        let cs = CountSketch::new(n, 3, 500, 4).unwrap();
        let mut f = FetchSgd::new(cs, 50, 0.9).unwrap();
        for step in 0..5 {
            let g = randn(n, 100 + step);
            let s = cs.sketch(&g).unwrap();
            let mut u: Vec<f32> = f
                .momentum_table()
                .iter()
                .zip(&s)
                .map(|(u, s)| 0.9 * u + s)
                .collect();
            let mut e: Vec<f32> = f.error_table().iter().zip(&u).map(|(e, u)| e + u).collect();
            let (want_idx, want_vals) = cs.top_k(&e, 50).unwrap();
            let (idx, vals) = f.step(&s).unwrap();
            assert_eq!((&idx, &vals), (&want_idx, &want_vals));
            assert!(idx.windows(2).all(|w| w[0] < w[1]));
            for &i in &idx {
                for r in 0..3 {
                    let (b, _) = cs.bucket(r, i as usize);
                    e[r * 500 + b] = 0.0;
                    u[r * 500 + b] = 0.0;
                }
            }
            assert_eq!(f.error_table(), &e[..]);
            assert_eq!(f.momentum_table(), &u[..]);
        }
        assert!(FetchSgd::new(cs, 0, 0.9).is_err());
        assert!(FetchSgd::new(cs, 10, 1.0).is_err());
        assert!(f.step(&[0.0; 3]).is_err());
    }

    #[test]
    fn rejects_bad_geometry() {
        assert!(CountSketch::new(0, 1, 1, 0).is_err());
        assert!(CountSketch::new(10, 0, 1, 0).is_err());
        assert!(CountSketch::new(10, 16, 1, 0).is_err());
        assert!(CountSketch::new(10, 1, 0, 0).is_err());
        assert!(CountSketch::for_ratio(10, 0.5, 1, 0).is_err());
        let cs = CountSketch::new(10, 1, 4, 0).unwrap();
        assert!(cs.sketch(&[0.0; 9]).is_err());
        let mut g = vec![0.0; 10];
        g[3] = f32::NAN;
        assert_eq!(
            cs.sketch(&g),
            Err(Error::NonFinite {
                arg: "grad",
                index: 3
            })
        );
    }

    #[test]
    fn non_finite_leaves_the_table_unchanged_at_every_level() {
        // Small rows, rows larger than L2, several chunks: the error names
        // the first non-finite index and the table keeps its values.
        let levels = crate::cpu::levels_for_test("count sketch non-finite input");
        for (n, cols) in [
            (5usize, 3usize),
            (1000, 64),
            (131_072, 65_537),
            (CHUNK + 9, 70_000),
        ] {
            for (at, bad) in [
                (n - 1, f32::NAN),
                (n / 2, f32::INFINITY),
                (0, f32::NEG_INFINITY),
            ] {
                let mut g: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
                g[at] = bad;
                let cs = CountSketch::new(n, 2, cols, 1).unwrap();
                for &l in &levels {
                    let mut t: Vec<f32> = (0..cs.table_len()).map(|i| i as f32).collect();
                    let before = t.clone();
                    assert_eq!(
                        cs.accumulate_level(&g, &mut t, l),
                        Err(Error::NonFinite {
                            arg: "grad",
                            index: at
                        }),
                        "n {n} at {at} {l}"
                    );
                    assert!(t == before, "n {n} at {at} {l}");
                }
            }
        }
    }
}
