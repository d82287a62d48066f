//! Batch-1 strategies on the packed tiles (no decoded copy), split over the
//! low-latency fork-join in chunks of tiles:
//!
//! * [`run_i8`]: int8 activations, one multi-tile kernel call a K range and
//!   chunk of tiles.
//! * [`run_digits`]: f32 activations split into three int8 digits
//!   ([`Digits`]), the int8 kernels over three activation rows at once.
//!
//! Both accumulate each row's exact integer sums over the ranges of a scale
//! group, then add `s[o,g] · part` in group order, as the reference does.

use super::acts::{Acts, Digits};
use super::layout::TILE_ROWS;
use super::plan::{fj_tiles_per_chunk, Plan};

/// Tiles a kernel call covers at most (its i32 output lives on the stack).
const SUB: usize = 32;

/// Runs `f(i, chunk)` over the fork-join chunks of `acc` (`per` tiles each),
/// or on the caller alone when the plan says so.
fn for_chunks(p: &Plan, acc: &mut [f32], per: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let len = per * p.tile_out();
    if p.inline {
        for (i, c) in acc.chunks_mut(len).enumerate() {
            f(i, c);
        }
    } else {
        crate::parallel::for_each_chunk_mut(acc, len, f);
    }
}

/// Int8, batch 1: `acc[o] = Σ_g s[o,g] · (Σ_{k∈g} c·q − Σ_{k∈g} q)`.
pub(crate) fn run_i8(p: &Plan, acts: &Acts, acc: &mut [f32]) {
    let Acts::I8 { q, qsum, .. } = acts else {
        unreachable!("run_i8 needs int8 activations")
    };
    debug_assert_eq!(p.batch, 1);
    let multi = p.k.gemv_n(p.format);
    let single = p.k.gemv_tiles(p.format);
    assert!(multi.is_some() || single.is_some(), "no gemv kernel");
    let tb = p.lay.tile_bytes();
    let qs_all = q.as_slice();
    // one scale a row (per row, or per group with a single group), or one in all
    let row_scales = match (p.m.granularity(), p.ngroups) {
        (crate::ternary::Granularity::PerTensor, _) => None,
        (_, 1) => Some(p.m.scales()),
        _ => None,
    };
    let per = fj_tiles_per_chunk(p.ntiles, p.threads);
    for_chunks(p, acc, per, |i, c| {
        let mut raw = [0i32; SUB * TILE_ROWS];
        let mut ip = [0i32; SUB * TILE_ROWS];
        for (j, cs) in c.chunks_mut(SUB * TILE_ROWS).enumerate() {
            let t0 = i * per + j * SUB;
            let nt = cs.len() / TILE_ROWS;
            let o0 = t0 * TILE_ROWS;
            // padding rows of the last tile stay 0
            let live = p.rows.saturating_sub(o0).min(nt * TILE_ROWS);
            for rg in &p.ranges {
                let w = p.lay.tiles(t0, nt)[rg.kb0 * TILE_ROWS * 64..].as_ptr();
                // SAFETY: the level is supported; tiles t0..t0 + nt exist, each
                // holds nkb >= kb0 + n blocks (tile stride tb); q holds
                // kx >= xo + n * bk values.
                unsafe {
                    let qr = qs_all.as_ptr().add(rg.xo);
                    match multi {
                        Some(f) => f(w, tb, &[qr; 3], 1, rg.n, nt, raw.as_mut_ptr()),
                        None => {
                            (single.expect("gemv kernel"))(w, tb, qr, rg.n, nt, raw.as_mut_ptr())
                        }
                    }
                }
                if !rg.last {
                    for (a, &v) in ip.iter_mut().zip(&raw[..nt * TILE_ROWS]) {
                        *a = a.wrapping_add(v);
                    }
                    continue;
                }
                let qs = qsum[rg.g];
                let part = |r: usize| ip[r].wrapping_add(raw[r]).wrapping_sub(qs) as f32;
                match row_scales {
                    Some(sc) => {
                        for (r, (o, &sv)) in cs.iter_mut().zip(&sc[o0..o0 + live]).enumerate() {
                            *o += sv * part(r);
                        }
                    }
                    None => {
                        for (r, o) in cs[..live].iter_mut().enumerate() {
                            *o += p.m.scale(o0 + r, rg.g) * part(r);
                        }
                    }
                }
                ip[..nt * TILE_ROWS].fill(0);
            }
        }
    });
}

/// f32 by digits, any batch (one pass over the weights a batch row):
/// `acc[t][b][r] = Σ_g s[o,g] · part` with `part` the exact
/// `Σ_{k∈g} t·x̃` of the digit-rounded activations `x̃`, rounded once to f32.
pub(crate) fn run_digits(p: &Plan, acts: &Acts, acc: &mut [f32]) {
    let Acts::Digits(Digits { d, inv, dsum }) = acts else {
        unreachable!("run_digits needs digit activations")
    };
    let f = p.k.gemv_n(p.format).expect("gemv_n kernel");
    let tb = p.lay.tile_bytes();
    let (kx, ng, batch) = (p.kx, p.ngroups, p.batch);
    let ds_all = d.as_slice();
    let per = fj_tiles_per_chunk(p.ntiles, p.threads);
    for_chunks(p, acc, per, |i, c| {
        let mut raw = [0i32; SUB * TILE_ROWS * 3];
        let mut sum = [[0i64; 3]; SUB * TILE_ROWS];
        for (j, cs) in c.chunks_mut(SUB * TILE_ROWS * batch).enumerate() {
            let t0 = i * per + j * SUB;
            let nt = cs.len() / (TILE_ROWS * batch);
            for b in 0..batch {
                for rg in &p.ranges {
                    let w = p.lay.tiles(t0, nt)[rg.kb0 * TILE_ROWS * 64..].as_ptr();
                    // SAFETY: as in run_i8; each digit row holds kx >= xo + n * bk.
                    unsafe {
                        let row = |i: usize| ds_all.as_ptr().add((b * 3 + i) * kx + rg.xo);
                        f(
                            w,
                            tb,
                            &[row(0), row(1), row(2)],
                            3,
                            rg.n,
                            nt,
                            raw.as_mut_ptr(),
                        );
                    }
                    for (s, r3) in sum.iter_mut().zip(raw.chunks_exact(3)).take(nt * TILE_ROWS) {
                        for i in 0..3 {
                            s[i] += r3[i] as i64;
                        }
                    }
                    if !rg.last {
                        continue;
                    }
                    let ds = &dsum[(b * ng + rg.g) * 3..][..3];
                    let iv = inv[b * ng + rg.g];
                    for (r, s) in sum.iter_mut().enumerate().take(nt * TILE_ROWS) {
                        let tsum = 65536 * (s[0] - ds[0]) + 256 * (s[1] - ds[1]) + (s[2] - ds[2]);
                        let part = (tsum as f64 * iv) as f32;
                        let (t, rr) = (r / TILE_ROWS, r % TILE_ROWS);
                        let o = (t0 + t) * TILE_ROWS + rr;
                        cs[(t * batch + b) * TILE_ROWS + rr] += p.scale(o, rg.g) * part;
                        *s = [0; 3];
                    }
                }
            }
        }
    });
}
