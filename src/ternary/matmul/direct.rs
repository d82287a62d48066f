//! f32 activations by the direct kernels on the packed tile (any batch, two
//! batch rows a call), split over the low-latency fork-join.

use super::acts::Acts;
use super::layout::{BLOCK_BYTES, TILE_ROWS};
use super::plan::{fj_tiles_per_chunk, Plan};

/// Batch rows per cache block for f32 activations.
const BATCH_BLOCK_F32: usize = 16;

/// `acc[t][b][r] += Σ_g s[o,g] · part` from the direct f32 kernel.
pub(crate) fn run(p: &Plan, acts: &Acts, acc: &mut [f32]) {
    let Acts::F32 { x } = acts else {
        unreachable!("direct::run needs permuted f32 activations")
    };
    let f = p.k.gemv_f32(p.format).expect("direct f32 kernel");
    const TB: usize = TILE_ROWS * BLOCK_BYTES;
    let (kx, tile_out) = (p.kx, p.tile_out());
    let mut b0 = 0;
    while b0 < p.batch {
        let b1 = (b0 + BATCH_BLOCK_F32).min(p.batch);
        let body = |t: usize, out: &mut [f32]| {
            let tile = p.lay.tile(t).as_ptr();
            let o0 = t * TILE_ROWS;
            let mut b = b0;
            while b < b1 {
                let nb = (b1 - b).min(2);
                let xp = |i: usize| x.as_slice()[(b + i.min(nb - 1)) * kx..].as_ptr();
                // f32 partial sums of the current group
                let mut fp = [[0f32; 2]; TILE_ROWS];
                for rg in &p.ranges {
                    // SAFETY: level supported; the tile holds nkb blocks and
                    // each x row kx >= xo + n * bk values.
                    let raw = unsafe {
                        f(
                            tile.add(rg.kb0 * TB),
                            &[xp(0).add(rg.xo), xp(1).add(rg.xo)],
                            nb,
                            rg.n,
                        )
                    };
                    for r in 0..TILE_ROWS {
                        for bi in 0..nb {
                            fp[r][bi] += raw[r][bi];
                            if rg.last {
                                out[(b + bi) * TILE_ROWS + r] += p.scale(o0 + r, rg.g) * fp[r][bi];
                                fp[r][bi] = 0.0;
                            }
                        }
                    }
                }
                b += nb;
            }
        };
        if p.inline {
            for (t, out) in acc.chunks_mut(tile_out).enumerate() {
                body(t, out);
            }
        } else {
            let per = fj_tiles_per_chunk(p.ntiles, p.threads);
            crate::parallel::for_each_chunk_mut(acc, per * tile_out, |i, c| {
                for (j, out) in c.chunks_mut(tile_out).enumerate() {
                    body(i * per + j, out);
                }
            });
        }
        b0 = b1;
    }
}
