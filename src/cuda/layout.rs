//! The device compute layout of a ternary matrix and the activation layouts
//! the CUDA matmul kernels read (`cuda/ternary_matmul.cu`). Pure host code,
//! built and tested in every build (with or without the `cuda` feature):
//! the tests below emulate the tensor-core fragment mapping of PTX's
//! `mma.sync` on the CPU and check that the kernels' decode formulas
//! reproduce the weights, so the index arithmetic is proved without a GPU.
//!
//! # Weights
//!
//! One 2-bit field per weight, `c = t & 3` (`+1 -> 01`, `-1 -> 11`,
//! `0 -> 00`). Rows are padded to a whole number of [`BLOCK_ROWS`] and
//! `cols` to a whole number of [`SUPER_K`] with `t = 0`. The matrix is a
//! sequence of *row tiles* of 16 rows; a row tile is a sequence of
//! *superblocks* of 128 columns; a superblock is 512 bytes: 32 lanes x 4
//! words, lane `L` holding 16 bytes (one coalesced 16-byte load per lane, 512
//! contiguous bytes per warp). Word `q` of lane `L = 4 g + t` covers the
//! 32-column block `q` of the superblock as the A fragment of one
//! `mma.m16n8k32` int8 instruction: the weight of row `g + 8 (r & 1)`,
//! column `16 (r >> 1) + 4 t + j` (within the block) sits at bit `2 r + 8 j`
//! (`r`, `j` in 0..4).
//!
//! * int8 decode: register `r` = `((W >> 2r) & 0x03030303) ^ 0x02020202`
//!   holds `t + 2` (1, 2 or 3) in byte `j` (one shift, one LOP3); the kernel
//!   subtracts `2 Σ_k q[k]` (precomputed per token and scale group).
//! * bf16/f16 decode: for k16 step `s` and A register `ρ` of
//!   `mma.m16n8k16`, with `r = 2 s + (ρ & 1)` and `o = 2 r + 8 (ρ >> 1)`,
//!   `(W << (14 - o)) & 0xC000C000` is a pair of halves each `±2.0` or `0`
//!   (0x4000 is 2.0 in both bf16 and f16; the sign bit is the code's high
//!   bit): the products `2 t x` are exact, the kernel halves the sum.
//!   Register `ρ`'s low half is column `4 t + (ρ >> 1)`, its high half
//!   column `4 t + (ρ >> 1) + 2` of the step's 16 columns.
//!
//! # Activations
//!
//! * int8 (`[rows_padded][kp]`, natural order): the B fragment of lane
//!   `(g, t)` is the two 32-bit words at columns `4 t` and `16 + 4 t` of
//!   token `g`'s 32-column block.
//! * bf16/f16 (`[parts][rows_padded][kp]`): within each 16-column chunk
//!   the values are stored permuted, `stored[i] = x[perm16(i)]`, so that the
//!   B fragment of lane `(g, t)` is the two 32-bit words at positions `2 t`
//!   and `8 + 2 t` (what `ldmatrix` hands out), matching the A decode above.

use crate::ternary::TernaryMatrix;

/// Rows of one MMA row tile.
pub const ROW_TILE: usize = 16;
/// Columns of one superblock (16 bytes a lane, 512 bytes a row tile).
pub const SUPER_K: usize = 128;
/// Rows are padded to a multiple of this (the GEMM kernel's block rows).
pub const BLOCK_ROWS: usize = 128;
/// u32 words in one superblock of one row tile.
pub const SUPER_WORDS: usize = 128;

/// Sizes of the device copy of a `rows x cols` matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Logical rows.
    pub rows: usize,
    /// Logical columns.
    pub cols: usize,
    /// Row tiles stored (rows padded to [`BLOCK_ROWS`]) / 16.
    pub row_tiles: usize,
    /// Superblocks per row tile (`cols` padded to [`SUPER_K`]) .
    pub superblocks: usize,
}

impl Dims {
    /// The layout's sizes for a `rows x cols` matrix.
    pub fn new(rows: usize, cols: usize) -> Dims {
        Dims {
            rows,
            cols,
            row_tiles: rows.div_ceil(BLOCK_ROWS) * (BLOCK_ROWS / ROW_TILE),
            superblocks: cols.div_ceil(SUPER_K),
        }
    }
    /// Padded columns.
    pub fn kp(&self) -> usize {
        self.superblocks * SUPER_K
    }
    /// Row tiles holding real rows.
    pub fn used_row_tiles(&self) -> usize {
        self.rows.div_ceil(ROW_TILE)
    }
    /// u32 words of the whole layout.
    pub fn words(&self) -> usize {
        self.row_tiles * self.superblocks * SUPER_WORDS
    }
}

/// Word index and bit offset of weight `(row, k)`.
#[inline]
pub fn position(d: &Dims, row: usize, k: usize) -> (usize, u32) {
    let (rt, rr) = (row / ROW_TILE, row % ROW_TILE);
    let (rowhalf, g) = (rr / 8, rr % 8);
    let (sb, q, kk) = (k / SUPER_K, (k % SUPER_K) / 32, k % 32);
    let (s, t, j) = (kk / 16, (kk % 16) / 4, kk % 4);
    let r = 2 * s + rowhalf;
    let lane = 4 * g + t;
    (
        ((rt * d.superblocks + sb) * 32 + lane) * 4 + q,
        (2 * r + 8 * j) as u32,
    )
}

/// The 2-bit field of a trit.
#[inline]
pub fn code(t: i8) -> u32 {
    (t as i32 as u32) & 3
}

/// Builds the device layout of `m` (host memory; uploaded once).
pub fn build(m: &TernaryMatrix) -> Vec<u32> {
    use rayon::prelude::*;
    let d = Dims::new(m.rows(), m.cols());
    let mut words = vec![0u32; d.words()];
    if d.words() == 0 {
        return words;
    }
    let tile_words = d.superblocks * SUPER_WORDS;
    crate::parallel::install(|| {
        words
            .par_chunks_mut(tile_words)
            .enumerate()
            .for_each(|(rt, tile)| {
                let mut trits = vec![0i8; d.cols];
                for rr in 0..ROW_TILE {
                    let row = rt * ROW_TILE + rr;
                    if row >= d.rows {
                        break;
                    }
                    m.row_ternary(row, &mut trits);
                    for (k, &t) in trits.iter().enumerate() {
                        if t != 0 {
                            let (w, bit) = position(&d, row, k);
                            tile[w - rt * tile_words] |= code(t) << bit;
                        }
                    }
                }
            })
    });
    words
}

/// Column of the 16-column chunk stored at position `i` of the bf16/f16
/// activation layout (`stored[i] = x[perm16(i)]`).
#[inline]
pub const fn perm16(i: usize) -> usize {
    4 * ((i % 8) / 2) + (i / 8) + 2 * (i % 2)
}

/// Activation tokens are padded to a multiple of this for the small-batch
/// kernel (one `n8` MMA tile) ...
pub const TOKENS_SMALL: usize = 8;
/// ... and of this for the GEMM kernel (its block columns).
pub const TOKENS_GEMM: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ternary::Granularity;
    use ndarray::Array2;

    fn trits(rows: usize, cols: usize, seed: u64) -> Array2<i8> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            (crate::rng::hash2(seed, (i * cols + j) as u64) % 3) as i8 - 1
        })
    }

    fn matrix(t: &Array2<i8>) -> TernaryMatrix {
        let s = vec![1.0; t.nrows()];
        TernaryMatrix::from_ternary(t.view(), &s, Granularity::PerRow).unwrap()
    }

    /// Trit of a field (the inverse of `code`).
    fn trit(c: u32) -> i8 {
        match c {
            0 => 0,
            1 => 1,
            3 => -1,
            _ => panic!("invalid field {c}"),
        }
    }

    #[test]
    fn perm16_is_a_permutation() {
        let mut seen = [false; 16];
        for i in 0..16 {
            assert!(!seen[perm16(i)]);
            seen[perm16(i)] = true;
        }
    }

    #[test]
    fn every_weight_has_its_own_field_and_padding_is_zero() {
        for &(rows, cols) in &[
            (1usize, 1usize),
            (17, 129),
            (33, 300),
            (128, 128),
            (129, 257),
        ] {
            let t = trits(rows, cols, 3);
            let d = Dims::new(rows, cols);
            let w = build(&matrix(&t));
            assert_eq!(w.len(), d.words());
            let mut used = vec![0u32; w.len()];
            for r in 0..rows {
                for k in 0..cols {
                    let (i, b) = position(&d, r, k);
                    assert_eq!(used[i] >> b & 3, 0, "field used twice");
                    used[i] |= 3 << b;
                    assert_eq!(trit(w[i] >> b & 3), t[[r, k]], "({r}, {k})");
                }
            }
            for (i, (&x, &u)) in w.iter().zip(&used).enumerate() {
                assert_eq!(x & !u, 0, "padding bits set in word {i}");
            }
        }
    }

    // ---- PTX fragment semantics (from the PTX ISA's mma.m16n8k32 / k16 figures) ----

    /// `mma.m16n8k32` .s8 A (row-major): register `r`, byte `j` of lane
    /// `(g, t)` is element `(row, col)`.
    fn a_i8(g: usize, t: usize, r: usize, j: usize) -> (usize, usize) {
        (g + 8 * (r & 1), 4 * t + j + 16 * (r >> 1))
    }
    /// `mma.m16n8k32` .s8 B (col): register `i` (0, 1), byte `j` of lane `(g, t)`.
    fn b_i8(g: usize, t: usize, i: usize, j: usize) -> (usize, usize) {
        (4 * t + j + 16 * i, g) // (k, n)
    }
    /// `mma.m16n8k16` .bf16 A: register `rho`, half `h`.
    fn a_h(g: usize, t: usize, rho: usize, h: usize) -> (usize, usize) {
        (g + 8 * (rho & 1), 2 * t + h + 8 * (rho >> 1))
    }
    /// `mma.m16n8k16` .bf16 B: register `i` (0, 1), half `h`.
    fn b_h(g: usize, t: usize, i: usize, h: usize) -> (usize, usize) {
        (2 * t + h + 8 * i, g)
    }

    /// The int8 path: decode as the kernel does, multiply as `mma` does, and
    /// compare with `Σ t q`.
    #[test]
    #[allow(clippy::needless_range_loop)]
    fn int8_fragments_reproduce_the_product() {
        let (rows, cols, ntok) = (37usize, 300usize, 8usize);
        let t = trits(rows, cols, 5);
        let d = Dims::new(rows, cols);
        let w = build(&matrix(&t));
        let kp = d.kp();
        // q[n][k], zero-padded, natural order.
        let q: Vec<i8> = (0..ntok * kp)
            .map(|i| {
                if i % kp < cols {
                    (crate::rng::hash2(9, i as u64) % 255) as i32 as i8
                } else {
                    0
                }
            })
            .collect();
        for rt in 0..d.used_row_tiles() {
            let mut dacc = [[0i32; 8]; 16];
            for sb in 0..d.superblocks {
                for qb in 0..4 {
                    let k0 = sb * SUPER_K + qb * 32;
                    let mut a = [[0i32; 32]; 16];
                    let mut b = [[0i32; 8]; 32];
                    for lane in 0..32 {
                        let (g, tt) = (lane / 4, lane % 4);
                        let word = w[((rt * d.superblocks + sb) * 32 + lane) * 4 + qb];
                        for r in 0..4 {
                            let reg = ((word >> (2 * r)) & 0x0303_0303) ^ 0x0202_0202;
                            for j in 0..4 {
                                let (m, k) = a_i8(g, tt, r, j);
                                a[m][k] = (reg >> (8 * j) & 0xff) as i8 as i32;
                            }
                        }
                        // The kernel's B loads: words at columns 4t and 16 + 4t.
                        for i in 0..2 {
                            let base = g * kp + k0 + 16 * i + 4 * tt;
                            for j in 0..4 {
                                let (k, n) = b_i8(g, tt, i, j);
                                b[k][n] = q[base + j] as i32;
                            }
                        }
                    }
                    for (m, dm) in dacc.iter_mut().enumerate() {
                        for (n, dmn) in dm.iter_mut().enumerate() {
                            *dmn += (0..32).map(|k| a[m][k] * b[k][n]).sum::<i32>();
                        }
                    }
                }
            }
            for m in 0..16 {
                let row = rt * 16 + m;
                for n in 0..ntok {
                    let sq: i32 = (0..kp).map(|k| q[n * kp + k] as i32).sum();
                    let got = dacc[m][n] - 2 * sq;
                    let want: i32 = if row < rows {
                        (0..cols)
                            .map(|k| t[[row, k]] as i32 * q[n * kp + k] as i32)
                            .sum()
                    } else {
                        0
                    };
                    assert_eq!(got, want, "row {row} token {n}");
                }
            }
        }
    }

    /// The bf16/f16 path: the A decode gives `±2`/0 halves, the permuted
    /// activation storage gives matching B fragments.
    #[test]
    #[allow(clippy::needless_range_loop)]
    fn half_fragments_reproduce_the_product() {
        let (rows, cols, ntok) = (20usize, 200usize, 8usize);
        let t = trits(rows, cols, 6);
        let d = Dims::new(rows, cols);
        let w = build(&matrix(&t));
        let kp = d.kp();
        // Small integers: every product and sum is exact in f64.
        let x: Vec<f64> = (0..ntok * kp)
            .map(|i| {
                let k = i % kp;
                if k < cols {
                    (crate::rng::hash2(4, i as u64) % 19) as f64 - 9.0
                } else {
                    0.0
                }
            })
            .collect();
        let stored: Vec<f64> = (0..ntok * kp)
            .map(|i| {
                let (n, k) = (i / kp, i % kp);
                x[n * kp + (k / 16) * 16 + perm16(k % 16)]
            })
            .collect();
        let half = |bits: u32| -> f64 {
            match bits {
                0 => 0.0,
                0x4000 => 2.0,
                0xC000 => -2.0,
                _ => panic!("bad half {bits:#x}"),
            }
        };
        for rt in 0..d.used_row_tiles() {
            let mut dacc = [[0f64; 8]; 16];
            for sb in 0..d.superblocks {
                for qb in 0..4 {
                    for s in 0..2 {
                        let k0 = sb * SUPER_K + qb * 32 + 16 * s;
                        let mut a = [[0f64; 16]; 16];
                        let mut b = [[0f64; 8]; 16];
                        for lane in 0..32 {
                            let (g, tt) = (lane / 4, lane % 4);
                            let word = w[((rt * d.superblocks + sb) * 32 + lane) * 4 + qb];
                            for rho in 0..4 {
                                let r = 2 * s + (rho & 1);
                                let o = 2 * r + 8 * (rho >> 1);
                                let reg = (word << (14 - o)) & 0xC000_C000;
                                for h in 0..2 {
                                    let (m, k) = a_h(g, tt, rho, h);
                                    a[m][k] = half(reg >> (16 * h) & 0xffff);
                                }
                            }
                            for i in 0..2 {
                                let pos = g * kp + k0 + 8 * i + 2 * tt;
                                for h in 0..2 {
                                    let (k, n) = b_h(g, tt, i, h);
                                    b[k][n] = stored[pos + h];
                                }
                            }
                        }
                        for (m, dm) in dacc.iter_mut().enumerate() {
                            for (n, dmn) in dm.iter_mut().enumerate() {
                                *dmn += (0..16).map(|k| a[m][k] * b[k][n]).sum::<f64>();
                            }
                        }
                    }
                }
            }
            for m in 0..16 {
                let row = rt * 16 + m;
                for n in 0..ntok {
                    let want: f64 = if row < rows {
                        (0..cols).map(|k| t[[row, k]] as f64 * x[n * kp + k]).sum()
                    } else {
                        0.0
                    };
                    assert_eq!(dacc[m][n], 2.0 * want, "row {row} token {n}");
                }
            }
        }
    }
}
