//! The plan of one matmul call: the shapes, the K ranges each kernel call
//! covers (scale groups cut into chunks), the activations' row stride, and
//! whether the work is split over threads. Built once per call by the
//! [driver](super::driver); every strategy reads it.

use super::kernels::{kernels, Kernels};
use super::layout::{ComputeFormat, ComputeLayout, TILE_ROWS};
use super::ActivationMode;
use crate::cpu::CpuLevel;
use crate::ternary::TernaryMatrix;

/// Longest K range (in blocks) one kernel call covers; keeps every i32 lane
/// of every kernel exact (see the bounds in the kernel docs).
pub(crate) const MAX_CHUNK_BLOCKS: usize = 1024;

/// Elements added to every row stride of activations and decoded codes.
pub(crate) const KPAD: usize = 64;

/// One kernel call's K range: blocks `kb0..kb0 + n` of scale group `g`
/// (`last`: the group's last range), reading activations at `xo` of each
/// batch row of the prepared activations.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Range {
    pub g: usize,
    pub kb0: usize,
    pub n: usize,
    pub last: bool,
    pub xo: usize,
}

/// Everything a strategy needs to know about one call.
pub(crate) struct Plan<'a> {
    /// The level's kernels.
    pub k: Kernels,
    pub level: CpuLevel,
    /// The [`train`](super::train) tiles may run (benches turn them off to
    /// time the kernels they replace).
    pub train: bool,
    pub m: &'a TernaryMatrix,
    pub lay: &'a ComputeLayout,
    pub mode: ActivationMode,
    pub format: ComputeFormat,
    pub batch: usize,
    pub rows: usize,
    pub cols: usize,
    /// Weights per K block (256 two-bit, 320 base-3).
    pub bk: usize,
    /// Scale group length along K and number of groups.
    pub glen: usize,
    pub ngroups: usize,
    /// K blocks per row and padded K.
    pub nkb: usize,
    pub kp: usize,
    pub ntiles: usize,
    /// Kernel calls along K, in group order.
    pub ranges: Vec<Range>,
    /// Scale groups fall on K block boundaries (or there is one group):
    /// the activations are used in place (`xo = kb0 * bk`).
    pub aligned: bool,
    /// Row stride of the prepared activations (`kp` when aligned, else the
    /// total length of the ranges; plus [`KPAD`]).
    pub kx: usize,
    /// The crate pool's thread count.
    pub threads: usize,
    /// Run on the caller only (one thread, or too little work to pay for
    /// waking helpers; the same arithmetic either way).
    pub inline: bool,
}

impl<'a> Plan<'a> {
    /// The plan of `y = x · Wᵀ` for `batch` activation rows at `level`, or
    /// `None` where the level has no kernels (scalar) or there is nothing
    /// for them to do (no rows, no batch, `cols == 0`): the reference runs.
    /// `max_chunk` (clamped to `1..=MAX_CHUNK_BLOCKS`) bounds the K blocks
    /// of one kernel call; tests lower it to exercise chunk combining.
    pub fn new(
        level: CpuLevel,
        m: &'a TernaryMatrix,
        batch: usize,
        mode: ActivationMode,
        max_chunk: usize,
    ) -> Option<Self> {
        let max_chunk = max_chunk.clamp(1, MAX_CHUNK_BLOCKS);
        let (rows, cols) = (m.rows(), m.cols());
        if batch == 0 || rows == 0 || cols == 0 {
            return None;
        }
        let k = kernels(level)?;
        let lay = m.compute_layout();
        let format = lay.format();
        let bk = format.block_k();
        let glen = m.granularity().group_len(cols).max(1);
        let ngroups = cols.div_ceil(glen);
        let nkb = lay.nkb();
        let kp = lay.kp();
        let aligned = ngroups == 1 || glen.is_multiple_of(bk);
        let mut ranges = Vec::new();
        let mut xo = 0;
        for g in 0..ngroups {
            let (s, e) = if ngroups == 1 {
                (0, nkb)
            } else {
                (g * glen / bk, ((g + 1) * glen).min(cols).div_ceil(bk))
            };
            let mut kb = s;
            while kb < e {
                let n = (e - kb).min(max_chunk);
                ranges.push(Range {
                    g,
                    kb0: kb,
                    n,
                    last: kb + n == e,
                    xo: if aligned { kb * bk } else { xo },
                });
                xo += n * bk;
                kb += n;
            }
        }
        // + 64: rows of a power-of-two length would all map to the same L1
        // sets (the 4 KiB aliasing that made batch-64 int8 10x slower)
        let kx = if aligned { kp } else { xo } + KPAD;
        let threads = crate::parallel::num_threads();
        let inline = threads == 1 || (rows * kp * batch) < (1 << 18);
        Some(Plan {
            k,
            level,
            train: true,
            m,
            lay,
            mode,
            format,
            batch,
            rows,
            cols,
            bk,
            glen,
            ngroups,
            nkb,
            kp,
            ntiles: lay.ntiles(),
            ranges,
            aligned,
            kx,
            threads,
            inline,
        })
    }

    /// Scale of row `o` (0 for the padding rows of the last tile), group `g`.
    #[inline]
    pub fn scale(&self, o: usize, g: usize) -> f32 {
        if o < self.rows {
            self.m.scale(o, g)
        } else {
            0.0
        }
    }

    /// Floats of the accumulator a tile owns (`batch * TILE_ROWS`).
    pub fn tile_out(&self) -> usize {
        self.batch * TILE_ROWS
    }

    /// Fewest tiles a rayon task takes (4 tasks a thread).
    pub fn min_tiles(&self) -> usize {
        self.ntiles.div_ceil(self.threads * 4).max(1)
    }

    /// Copies one row of `cols` values into `dst` (`kx` values) in range
    /// order: in place when aligned, else each range's K blocks with the
    /// values outside its group zeroed (a block shared by two groups is
    /// multiplied once for each).
    pub fn spread<T: Copy + Default>(&self, src: &[T], dst: &mut [T]) {
        if self.aligned {
            dst[..src.len()].copy_from_slice(src);
            return;
        }
        let bk = self.bk;
        for r in &self.ranges {
            let (lo, hi) = (r.g * self.glen, ((r.g + 1) * self.glen).min(src.len()));
            for j in 0..r.n * bk {
                let kk = r.kb0 * bk + j;
                dst[r.xo + j] = if kk >= lo && kk < hi {
                    src[kk]
                } else {
                    T::default()
                };
            }
        }
    }
}

/// Chunks a thread of the low-latency fork-join (batch-1 kernels) gets.
const FJ_CHUNKS: usize = 16;

/// Tiles per fork-join chunk: small chunks (FJ_CHUNKS a thread) keep the
/// end-of-job imbalance short.
pub(crate) fn fj_tiles_per_chunk(ntiles: usize, threads: usize) -> usize {
    ntiles.div_ceil(threads * FJ_CHUNKS).max(1)
}
