//! Causal grouped-query attention over the KV cache, one layer at a time.
//!
//! The query heads that share a KV head (a GQA group) are served by one
//! pass over that head's keys and values: [`kernels::scores`] computes the
//! scores of up to [`HEADS`] heads per key row and [`kernels::weighted_sum`]
//! adds up to [`HEADS`] weighted value rows per pass, so the cache is read
//! once per group instead of once per query head. The softmax is streaming
//! (running maximum and sum per head, blocks of [`BLOCK`] positions, f32).
//!
//! Work is split into tasks of (token, KV head, group of up to [`HEADS`]
//! query heads); when there are too few of them for the threads (decoding
//! one token has as many tasks as KV heads), each task's positions are
//! split further into ranges whose partial results (maximum, sum, weighted
//! values) are merged afterwards, as in flash-decoding.

use super::kernels::{self, Row, HEADS};
use super::kv_cache::KvCache;
use crate::cpu::CpuLevel;
use crate::Result;

/// Positions per block of the streaming softmax.
pub const BLOCK: usize = 64;

/// Fewest positions a split range gets.
const MIN_SPLIT: usize = 128;

/// f32 values of one task's partial result: `HEADS` maxima, `HEADS` sums,
/// `HEADS · hd` weighted values.
fn part_len(hd: usize) -> usize {
    2 * HEADS + HEADS * hd
}

/// The partial attention of `g <= HEADS` query heads (`q`: `g·hd` values)
/// over positions `lo..hi` of one KV head: per head the running maximum
/// `m`, the sum `l` of `e^{s-m}` and the unnormalized `Σ e^{s-m}·v`, in
/// `part` (`part_len(hd)` values).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_partial(
    lvl: CpuLevel,
    q: &[f32],
    g: usize,
    hd: usize,
    keys: Row,
    values: Row,
    (lo, hi): (usize, usize),
    scale: f32,
    part: &mut [f32],
) {
    let (ml, acc) = part.split_at_mut(2 * HEADS);
    let (m, l) = ml.split_at_mut(HEADS);
    m.fill(f32::NEG_INFINITY);
    l.fill(0.0);
    acc.fill(0.0);
    let mut s = [0f32; BLOCK * HEADS];
    let mut p0 = lo;
    while p0 < hi {
        let n = (hi - p0).min(BLOCK);
        let s = &mut s[..n * HEADS];
        kernels::scores(lvl, keys.slice(p0 * hd, (p0 + n) * hd), q, g, hd, scale, s);
        for j in 0..g {
            let bm = s
                .iter()
                .skip(j)
                .step_by(HEADS)
                .fold(f32::NEG_INFINITY, |a, &v| a.max(v));
            if bm > m[j] {
                let c = (m[j] - bm).exp();
                if c != 1.0 {
                    for o in &mut acc[j * hd..(j + 1) * hd] {
                        *o *= c;
                    }
                    l[j] *= c;
                }
                m[j] = bm;
            }
            for v in s.iter_mut().skip(j).step_by(HEADS) {
                *v -= m[j];
            }
        }
        kernels::exp_nonpositive(lvl, s);
        for (j, lj) in l.iter_mut().enumerate().take(g) {
            *lj += s.iter().skip(j).step_by(HEADS).sum::<f32>();
        }
        kernels::weighted_sum(
            lvl,
            values.slice(p0 * hd, (p0 + n) * hd),
            s,
            g,
            hd,
            &mut acc[..g * hd],
        );
        p0 += n;
    }
}

/// Merges the partial results of head `j` of `parts` into `out` (`hd`
/// values): `Σ e^{m_i-M}·acc_i / Σ e^{m_i-M}·l_i`.
fn merge<'a>(parts: impl Iterator<Item = &'a [f32]> + Clone, j: usize, hd: usize, out: &mut [f32]) {
    let mx = parts.clone().fold(f32::NEG_INFINITY, |a, p| a.max(p[j]));
    out.fill(0.0);
    let mut l = 0f32;
    for p in parts {
        if p[j] == f32::NEG_INFINITY {
            continue; // an empty range
        }
        let c = (p[j] - mx).exp();
        l += c * p[HEADS + j];
        let acc = &p[2 * HEADS + j * hd..2 * HEADS + (j + 1) * hd];
        for (o, &a) in out.iter_mut().zip(acc) {
            *o += c * a;
        }
    }
    let inv = 1.0 / l;
    for o in out {
        *o *= inv;
    }
}

/// One query row of [`attention`]: its KV-cache sequence and the number of
/// positions it attends to (its own position + 1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Query {
    pub seq: usize,
    pub len: usize,
}

/// Shapes of [`attention`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    /// Query heads.
    pub nh: usize,
    /// KV heads (`nh` a multiple of it).
    pub nkv: usize,
    /// Head dimension.
    pub hd: usize,
}

/// `out[r, head] = softmax(q[r, head]·Kᵀ·scale)·V` for every query row `r`
/// (row `r` of `q` starts at `r·q_stride`, its heads side by side) and
/// every head, over layer `layer` of `cache`; `out` is `[rows, nh·hd]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    lvl: CpuLevel,
    cache: &KvCache,
    layer: usize,
    rows: &[Query],
    q: &[f32],
    q_stride: usize,
    shape: Heads,
    scale: f32,
    out: &mut [f32],
) -> Result<()> {
    let Heads { nh, nkv, hd } = shape;
    let groups = nh / nkv;
    let gc = groups.div_ceil(HEADS);
    let base = rows.len() * nkv * gc;
    let threads = crate::parallel::num_threads();
    let longest = rows.iter().map(|r| r.len).max().unwrap_or(0);
    let splits = if base >= 4 * threads {
        1
    } else {
        (4 * threads)
            .div_ceil(base.max(1))
            .min(longest.div_ceil(MIN_SPLIT))
            .max(1)
    };
    let pl = part_len(hd);
    let mut parts = crate::error::try_zeroed::<f32>(
        crate::checked_mul(base * splits, pl, "attention buffer")?,
        "attention buffer",
    )?;
    crate::parallel::for_each_chunk_mut(&mut parts, pl, |i, part| {
        let sp = i % splits;
        let rest = i / splits;
        let (c, rest) = (rest % gc, rest / gc);
        let (kvh, r) = (rest % nkv, rest / nkv);
        let row = rows[r];
        let (lo, hi) = (row.len * sp / splits, row.len * (sp + 1) / splits);
        let h0 = kvh * groups + c * HEADS;
        let g = (groups - c * HEADS).min(HEADS);
        let qr = &q[r * q_stride + h0 * hd..r * q_stride + (h0 + g) * hd];
        attend_partial(
            lvl,
            qr,
            g,
            hd,
            cache.keys(layer, row.seq, kvh, row.len),
            cache.values(layer, row.seq, kvh, row.len),
            (lo, hi),
            scale,
            part,
        );
    });
    let h = nh * hd;
    for (t, task) in parts.chunks_exact(splits * pl).enumerate() {
        let (c, rest) = (t % gc, t / gc);
        let (kvh, r) = (rest % nkv, rest / nkv);
        let h0 = kvh * groups + c * HEADS;
        let g = (groups - c * HEADS).min(HEADS);
        for j in 0..g {
            let o = r * h + (h0 + j) * hd;
            merge(task.chunks_exact(pl), j, hd, &mut out[o..o + hd]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::kv_cache::{CacheDtype, KvCacheShape};

    /// The levels these kernels have (scalar, AVX2) that this CPU runs.
    fn levels(what: &str) -> Vec<CpuLevel> {
        crate::cpu::levels_for_test(what)
            .into_iter()
            .filter(|l| matches!(l, CpuLevel::Scalar | CpuLevel::Avx2))
            .collect()
    }

    /// softmax(q·Kᵀ·scale)·V in f64 from the definition.
    fn reference(q: &[f32], k: &[f32], v: &[f32], hd: usize, scale: f32) -> Vec<f64> {
        let len = k.len() / hd;
        let s: Vec<f64> = (0..len)
            .map(|p| {
                (0..hd)
                    .map(|i| q[i] as f64 * k[p * hd + i] as f64)
                    .sum::<f64>()
                    * scale as f64
            })
            .collect();
        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
        (0..hd)
            .map(|i| {
                (0..len)
                    .map(|p| (s[p] - m).exp() / z * v[p * hd + i] as f64)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn exp_is_within_two_ulp_and_flushes_below_the_threshold() {
        let levels = levels("infer exp");
        let xs: Vec<f32> = (0..20011)
            .map(|i| -90.0 * i as f32 / 20010.0)
            .chain([
                0.0,
                -0.0,
                -1e-30,
                -87.3,
                -87.336,
                -87.34,
                -88.0,
                -1e4,
                f32::NEG_INFINITY,
            ])
            .collect();
        for &lvl in &levels {
            for n in [0usize, 1, 7, 8, 9, 33] {
                let mut y: Vec<f32> = xs.iter().take(n).map(|&x| x * 0.1).collect();
                let want: Vec<f32> = y.iter().map(|&x| x.exp()).collect();
                exp_nonpositive_checked(lvl, &mut y, &want);
            }
            let mut y = xs.clone();
            exp_nonpositive_checked(
                lvl,
                &mut y,
                &xs.iter().map(|&x| x.exp()).collect::<Vec<_>>(),
            );
        }

        fn exp_nonpositive_checked(lvl: CpuLevel, y: &mut [f32], want: &[f32]) {
            let x = y.to_vec();
            kernels::exp_nonpositive(lvl, y);
            for ((&xi, &yi), &wi) in x.iter().zip(y.iter()).zip(want) {
                if xi < kernels::EXP_FLUSH {
                    assert_eq!(yi, 0.0, "{lvl:?} e^{xi}");
                    continue;
                }
                let exact = (xi as f64).exp();
                let ulp = (f32::EPSILON as f64) * exact;
                assert!(
                    (yi as f64 - exact).abs() <= 2.0 * ulp,
                    "{lvl:?} e^{xi} = {yi}, exact {exact}, f32::exp {wi}"
                );
            }
        }
    }

    #[test]
    fn grouped_split_attention_matches_the_definition() {
        let levels = levels("infer attention");
        for (nh, nkv, hd) in [
            (1usize, 1usize, 8usize),
            (4, 2, 16),
            (20, 5, 24),
            (7, 1, 9),
            (6, 3, 3),
        ] {
            for dtype in [CacheDtype::F32, CacheDtype::F16, CacheDtype::Bf16] {
                let shape = KvCacheShape {
                    layers: 1,
                    batch: 2,
                    kv_heads: nkv,
                    max_seq_len: 700,
                    head_dim: hd,
                };
                let mut cache = KvCache::new(shape, dtype).unwrap();
                let kvd = nkv * hd;
                let (mut kk, mut vv) = (vec![0f32; kvd], vec![0f32; kvd]);
                for seq in 0..2 {
                    for pos in 0..700 {
                        for i in 0..kvd {
                            let u = (seq * 700 + pos) * kvd + i;
                            kk[i] = crate::rng::uniform_f32(11, u as u64) * 6.0 - 3.0;
                            vv[i] = crate::rng::uniform_f32(12, u as u64) - 0.5;
                        }
                        cache.write(0, seq, pos, &kk, &vv);
                    }
                }
                // read back what the cache stores (rounded to its dtype)
                let stored = |seq: usize, kvh: usize, len: usize, keys: bool| -> Vec<f32> {
                    let r = if keys {
                        cache.keys(0, seq, kvh, len)
                    } else {
                        cache.values(0, seq, kvh, len)
                    };
                    (0..len * hd).map(|i| r.get(i)).collect()
                };
                let rows = [
                    Query { seq: 1, len: 1 },
                    Query { seq: 0, len: 65 },
                    Query { seq: 1, len: 700 },
                    Query { seq: 0, len: 129 },
                ];
                for take in [1usize, 2, 4] {
                    let rows = &rows[4 - take..];
                    let stride = nh * hd + 5;
                    let q: Vec<f32> = (0..take * stride)
                        .map(|i| crate::rng::uniform_f32(13, i as u64) * 2.0 - 1.0)
                        .collect();
                    for &lvl in &levels {
                        for threads in [1usize, 2, 3] {
                            crate::parallel::set_num_threads(threads);
                            let mut out = vec![f32::NAN; take * nh * hd];
                            attention(
                                lvl,
                                &cache,
                                0,
                                rows,
                                &q,
                                stride,
                                Heads { nh, nkv, hd },
                                0.3,
                                &mut out,
                            )
                            .unwrap();
                            for (r, row) in rows.iter().enumerate() {
                                for head in 0..nh {
                                    let kvh = head / (nh / nkv);
                                    let want = reference(
                                        &q[r * stride + head * hd..r * stride + (head + 1) * hd],
                                        &stored(row.seq, kvh, row.len, true),
                                        &stored(row.seq, kvh, row.len, false),
                                        hd,
                                        0.3,
                                    );
                                    for (i, w) in want.iter().enumerate() {
                                        let got = out[r * nh * hd + head * hd + i] as f64;
                                        assert!(
                                            (got - w).abs() < 2e-5,
                                            "{lvl:?} {dtype:?} nh {nh} nkv {nkv} hd {hd} row {r} head {head}: {got} vs {w}"
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        crate::parallel::set_num_threads(0);
    }
}
