//! f32 activations on 2-bit tiles by pair-table lookup (AVX-512): 16 rows
//! (4 tiles) a task, one batch row after the other.

use super::acts::{Acts, LUT};
use super::layout::{BLOCK_BYTES, TILE_ROWS};
use super::plan::Plan;

/// `acc[t][b][r] += Σ_g s[o,g] · part` from the lookup kernel.
pub(crate) fn run(p: &Plan, acts: &Acts, acc: &mut [f32]) {
    let Acts::F32 { x } = acts else {
        unreachable!("lut::run needs f32 tables")
    };
    let f = p.k.lut_f32_2bit.expect("lut kernel");
    const GT: usize = 4;
    const TB: usize = TILE_ROWS * BLOCK_BYTES;
    let xs = x.as_slice();
    let ls = p.kx * LUT / 2; // table floats a batch row
    let tile_out = p.tile_out();
    let ntiles = p.ntiles;
    let body = |(grp, out): (usize, &mut [f32])| {
        let t0 = grp * GT;
        let nt = (ntiles - t0).min(GT);
        // missing tiles of the last group read tile t0 (results dropped)
        let tp: [*const u8; GT] =
            std::array::from_fn(|q| p.lay.tile(t0 + if q < nt { q } else { 0 }).as_ptr());
        for b in 0..p.batch {
            let mut fp = [0f32; GT * TILE_ROWS];
            for rg in &p.ranges {
                let tiles = tp.map(|t| t.wrapping_add(rg.kb0 * TB));
                // SAFETY: level supported; each tile holds nkb >= kb0 + n
                // blocks; the batch row's tables hold (xo + n * 256) * 8 floats.
                let raw = unsafe { f(&tiles, xs[b * ls + rg.xo * LUT / 2..].as_ptr(), rg.n) };
                for (q, tout) in out.chunks_mut(tile_out).enumerate().take(nt) {
                    for r in 0..TILE_ROWS {
                        let i = q * TILE_ROWS + r;
                        fp[i] += raw[i];
                        if rg.last {
                            tout[b * TILE_ROWS + r] +=
                                p.scale((t0 + q) * TILE_ROWS + r, rg.g) * fp[i];
                            fp[i] = 0.0;
                        }
                    }
                }
            }
        }
    };
    if p.inline {
        acc.chunks_mut(GT * tile_out).enumerate().for_each(body);
    } else {
        let min_groups = p.min_tiles().div_ceil(GT);
        crate::parallel::for_each_chunk_mut(acc, min_groups * GT * tile_out, |i, c| {
            for (j, out) in c.chunks_mut(GT * tile_out).enumerate() {
                body((i * min_groups + j, out));
            }
        });
    }
}
