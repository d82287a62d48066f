//! Activations against tiles decoded to one code byte a weight (int8 at
//! batch > 1, and f32 where a level has no direct kernel): each task decodes
//! its tile once per batch block into scratch and runs the GEMM kernel over
//! the block, 4 batch rows a call. Rayon over tiles.

use rayon::prelude::*;

use super::acts::Acts;
use super::layout::TILE_ROWS;
use super::plan::{Plan, KPAD};

/// Batch rows per cache block (int8: 64 x 4096 codes = 256 KiB, fits L2).
const BATCH_BLOCK_I8: usize = 64;
/// Batch rows per cache block for f32 activations.
const BATCH_BLOCK_F32: usize = 16;

/// `acc[t][b][r] += Σ_g s[o,g] · part` on decoded codes.
pub(crate) fn run(p: &Plan, acts: &Acts, acc: &mut [f32]) {
    let bblock = match acts {
        Acts::I8 { .. } => BATCH_BLOCK_I8,
        _ => BATCH_BLOCK_F32,
    };
    let decode = p.k.decode(p.format);
    let (kx, bk, ng, nkb) = (p.kx, p.bk, p.ngroups, p.nkb);
    // row stride of the decoded codes (padded like the activations)
    let kp = p.kp + KPAD;
    let tile_out = p.tile_out();
    let mut b0 = 0;
    while b0 < p.batch {
        let b1 = (b0 + bblock).min(p.batch);
        let init = || vec![0u8; TILE_ROWS * kp + 64];
        let body = |scratch: &mut Vec<u8>, (t, out): (usize, &mut [f32])| {
            let tile = p.lay.tile(t).as_ptr();
            let o0 = t * TILE_ROWS;
            // SAFETY: level supported; scratch holds TILE_ROWS * kp bytes.
            unsafe { decode(tile, nkb, scratch.as_mut_ptr(), kp) };
            let wp = |r: usize, k0: usize| scratch[r * kp + k0..].as_ptr();
            let mut b = b0;
            while b < b1 {
                let nb = (b1 - b).min(4);
                let mut ip = [[0i32; 4]; TILE_ROWS];
                let mut fp = [[0f32; 4]; TILE_ROWS];
                for rg in &p.ranges {
                    let (k0, len, g) = (rg.kb0 * bk, rg.n * bk, rg.g);
                    let w = [wp(0, k0), wp(1, k0), wp(2, k0), wp(3, k0)];
                    match acts {
                        Acts::I8 { q, qsum, .. } => {
                            let qp = |i: usize| {
                                q.as_slice()[(b + i.min(nb - 1)) * kx + rg.xo..].as_ptr()
                            };
                            // SAFETY: pointers cover len values each.
                            let raw = unsafe {
                                (p.k.gemm_i8)(&w, &[qp(0), qp(1), qp(2), qp(3)], nb, len)
                            };
                            for (bi, bo) in (b..b + nb).enumerate() {
                                for r in 0..TILE_ROWS {
                                    ip[r][bi] = ip[r][bi].wrapping_add(raw[r][bi]);
                                    if rg.last {
                                        let qs = qsum[bo * ng + g];
                                        let part = ip[r][bi].wrapping_sub(qs);
                                        out[bo * TILE_ROWS + r] += p.scale(o0 + r, g) * part as f32;
                                        ip[r][bi] = 0;
                                    }
                                }
                            }
                        }
                        Acts::F32 { x } => {
                            for (bi, bo) in (b..b + nb).enumerate() {
                                let xp = x.as_slice()[bo * kx + rg.xo..].as_ptr();
                                // SAFETY: pointers cover len values each.
                                let raw = unsafe { (p.k.bytes_f32)(&w, xp, len) };
                                for r in 0..TILE_ROWS {
                                    fp[r][bi] += raw[r];
                                    if rg.last {
                                        out[bo * TILE_ROWS + r] += p.scale(o0 + r, g) * fp[r][bi];
                                        fp[r][bi] = 0.0;
                                    }
                                }
                            }
                        }
                        Acts::Digits(_) => unreachable!("digits run on the gemv strategy"),
                    }
                }
                b += nb;
            }
        };
        if p.inline {
            let mut scratch = init();
            for (t, out) in acc.chunks_mut(tile_out).enumerate() {
                body(&mut scratch, (t, out));
            }
        } else {
            let min_tiles = p.min_tiles();
            crate::parallel::install(|| {
                acc.par_chunks_mut(tile_out)
                    .enumerate()
                    .with_min_len(min_tiles)
                    .for_each_init(init, body)
            });
        }
        b0 = b1;
    }
}
