//! The fast matmul driver: prepares activations, splits the work over row
//! tiles (rayon, the crate pool) and batch blocks, and calls one [`CpuLevel`]'s
//! kernels. Every output element is computed by one task in a fixed order,
//! so results do not depend on the thread count.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use super::layout::{Aligned, ComputeFormat, ComputeLayout, BLOCK_BYTES, TILE_ROWS};
use super::{reference, ActivationMode};
use crate::cpu::CpuLevel;
use crate::ternary::quant;
use crate::ternary::TernaryMatrix;

/// Longest K range (in blocks) one kernel call covers; keeps every i32 lane
/// of every kernel exact (see the bounds in the kernel docs).
pub(crate) const MAX_CHUNK_BLOCKS: usize = 1024;
/// Batch rows per cache block (int8: 64 x 4096 codes = 256 KiB, fits L2).
const BATCH_BLOCK_I8: usize = 64;
/// Batch rows per cache block for f32 activations.
const BATCH_BLOCK_F32: usize = 16;
/// Chunks a thread of the low-latency fork-join (batch-1 kernels) gets.
const FJ_CHUNKS: usize = 16;

/// Tiles per fork-join chunk: small chunks (FJ_CHUNKS a thread) keep the
/// end-of-job imbalance short.
fn fj_tiles_per_chunk(ntiles: usize, threads: usize) -> usize {
    ntiles.div_ceil(threads * FJ_CHUNKS).max(1)
}

#[cfg(test)]
pub(crate) type GemvI8Ptr = GemvI8;
#[cfg(test)]
pub(crate) type GemmI8Ptr = GemmI8;
#[cfg(test)]
pub(crate) type DecodePtr = Decode;
type GemvI8 = unsafe fn(*const u8, *const i8, usize) -> [i32; 4];
/// [`GemvI8`] over consecutive tiles: tile pointer, tile bytes, q, nkb, ntiles, out.
type GemvI8Tiles = unsafe fn(*const u8, usize, *const i8, usize, usize, *mut i32);
/// Direct f32 kernel: tile, permuted activations of up to 2 batch rows, nb, nkb.
type GemvF32 = unsafe fn(*const u8, &[*const f32; 2], usize, usize) -> [[f32; 2]; 4];
/// Lookup-table f32 kernel: 4 tiles, the tables of one batch row, nkb.
type LutF32 = unsafe fn(&[*const u8; 4], *const f32, usize) -> [f32; 16];
type Decode = unsafe fn(*const u8, usize, *mut u8, usize);
type GemmI8 = unsafe fn(&[*const u8; 4], &[*const i8; 4], usize, usize) -> [[i32; 4]; 4];
type BytesF32 = unsafe fn(&[*const u8; 4], *const f32, usize) -> [f32; 4];

/// One level's kernels.
struct Kernels {
    /// Direct batch-1 kernels on the packed tile (None: decode + `gemm_i8`).
    gemv_i8_2bit: Option<GemvI8>,
    gemv_i8_base3: Option<GemvI8>,
    gemv_i8_2bit_tiles: Option<GemvI8Tiles>,
    gemv_i8_base3_tiles: Option<GemvI8Tiles>,
    gemv_f32_2bit: Option<GemvF32>,
    gemv_f32_base3: Option<GemvF32>,
    /// f32, 2-bit, 16 rows by table lookup (preferred over `gemv_f32_2bit`).
    lut_f32_2bit: Option<LutF32>,
    decode_2bit: Decode,
    decode_base3: Decode,
    gemm_i8: GemmI8,
    bytes_f32: BytesF32,
    abs_max: fn(&[f32]) -> f32,
    quantize: fn(&[f32], f32, &mut [i8]),
}

fn abs_max_scalar(x: &[f32]) -> f32 {
    quant::abs_max(x)
}

#[cfg(target_arch = "x86_64")]
fn abs_max_avx512_(x: &[f32]) -> f32 {
    // SAFETY: only installed for levels that checked avx512f.
    unsafe { super::x86::abs_max_avx512(x) }
}
#[cfg(target_arch = "x86_64")]
fn quantize_avx512_(x: &[f32], s: f32, q: &mut [i8]) {
    // SAFETY: only installed for levels that checked avx512f.
    unsafe { super::x86::quantize_act_avx512(x, s, q) }
}

/// Scalar decoders with the SIMD decoders' signature (NEON uses them).
#[allow(dead_code)]
unsafe fn decode_scalar<const BASE3: bool>(w: *const u8, nkb: usize, out: *mut u8, kp: usize) {
    let bk = if BASE3 { 320 } else { 256 };
    // SAFETY: the caller passes a tile of nkb blocks and TILE_ROWS * kp out bytes.
    unsafe {
        for kb in 0..nkb {
            for r in 0..TILE_ROWS {
                for j in 0..BLOCK_BYTES {
                    let b = *w.add((kb * TILE_ROWS + r) * BLOCK_BYTES + j);
                    let d = out.add(r * kp + kb * bk + j);
                    if BASE3 {
                        for i in 0..5 {
                            *d.add(64 * i) = super::layout::base3_digit(b, i);
                        }
                    } else {
                        for i in 0..4 {
                            *d.add(64 * i) = (b >> (2 * i)) & 3;
                        }
                    }
                }
            }
        }
    }
}

fn kernels(level: CpuLevel) -> Option<Kernels> {
    match level {
        CpuLevel::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx2 => {
            use super::x86::*;
            Some(Kernels {
                gemv_i8_2bit: Some(i8_gemv_2bit_avx2),
                gemv_i8_base3: None,
                gemv_i8_2bit_tiles: Some(i8_gemv_2bit_avx2_tiles),
                gemv_i8_base3_tiles: None,
                gemv_f32_2bit: Some(f32_gemv_2bit_avx2),
                gemv_f32_base3: Some(f32_gemv_base3_avx2),
                lut_f32_2bit: None,
                decode_2bit: decode_2bit_avx2,
                decode_base3: decode_base3_avx2,
                gemm_i8: i8_gemm_avx2,
                bytes_f32: f32_bytes_avx2,
                abs_max: abs_max_scalar,
                quantize: quant::quantize_act_row,
            })
        }
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx512 => {
            use super::x86::*;
            Some(Kernels {
                gemv_i8_2bit: Some(i8_gemv_2bit_avx512),
                gemv_i8_base3: None,
                gemv_i8_2bit_tiles: Some(i8_gemv_2bit_avx512_tiles),
                gemv_i8_base3_tiles: None,
                gemv_f32_2bit: Some(f32_gemv_2bit_avx512),
                gemv_f32_base3: Some(f32_gemv_base3_avx512),
                lut_f32_2bit: Some(f32_lut_2bit_avx512),
                decode_2bit: decode_2bit_avx512,
                decode_base3: decode_base3_avx512,
                gemm_i8: i8_gemm_avx512,
                bytes_f32: f32_bytes_avx512,
                abs_max: abs_max_avx512_,
                quantize: quantize_avx512_,
            })
        }
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx512Vnni => {
            use super::x86::*;
            Some(Kernels {
                gemv_i8_2bit: Some(i8_gemv_2bit_vnni),
                gemv_i8_base3: Some(i8_gemv_base3_vnni),
                gemv_i8_2bit_tiles: Some(i8_gemv_2bit_vnni_tiles),
                gemv_i8_base3_tiles: Some(i8_gemv_base3_vnni_tiles),
                gemv_f32_2bit: Some(f32_gemv_2bit_avx512),
                gemv_f32_base3: Some(f32_gemv_base3_avx512),
                lut_f32_2bit: Some(f32_lut_2bit_avx512),
                decode_2bit: decode_2bit_avx512,
                decode_base3: decode_base3_avx512,
                gemm_i8: i8_gemm_vnni,
                bytes_f32: f32_bytes_avx512,
                abs_max: abs_max_avx512_,
                quantize: quantize_avx512_,
            })
        }
        #[cfg(target_arch = "aarch64")]
        CpuLevel::Neon => Some(Kernels {
            gemv_i8_2bit: None,
            gemv_i8_base3: None,
            gemv_i8_2bit_tiles: None,
            gemv_i8_base3_tiles: None,
            gemv_f32_2bit: None,
            gemv_f32_base3: None,
            lut_f32_2bit: None,
            decode_2bit: decode_scalar::<false>,
            decode_base3: decode_scalar::<true>,
            gemm_i8: super::neon::i8_gemm_neon,
            bytes_f32: super::neon::f32_bytes_neon,
            abs_max: abs_max_scalar,
            quantize: quant::quantize_act_row,
        }),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Prepared activations: batch row `b` at `b * kx`, in the order the
/// [`Range`]s read them (zeros in padding and outside a range's group).
enum Acts {
    I8 {
        q: Aligned<i8>,
        /// Per-token scale `a[b]`.
        a: Vec<f32>,
        /// `Σ_{k in group g} q[b,k]`, `[batch, ngroups]`.
        qsum: Vec<i32>,
    },
    /// f32 activations; in the direct kernels' order within each K block
    /// (see [`permute_f32`]) where the level has direct f32 kernels.
    F32 { x: Aligned<f32> },
}

/// One kernel call's K range: blocks `kb0..kb0 + n` of scale group `g`
/// (`last`: the group's last range), reading activations at `xo` of each
/// batch row of the prepared activations.
#[derive(Clone, Copy)]
struct Range {
    g: usize,
    kb0: usize,
    n: usize,
    last: bool,
    xo: usize,
}

/// Permutes one K block of `bk` (256 or 320) f32 activations into the order
/// of the direct f32 kernels: `dst[(4 i + m) · 16 + l] = src[64 i + 4 l + m]`.
fn permute_f32(src: &[f32], dst: &mut [f32]) {
    for (s, d) in src.chunks_exact(64).zip(dst.chunks_exact_mut(64)) {
        for m in 0..4 {
            for l in 0..16 {
                d[m * 16 + l] = s[4 * l + m];
            }
        }
    }
}

/// Entries per pair table of the lookup kernels (`x86::f32_lut_2bit_avx512`).
const LUT: usize = 16;

/// The pair tables of one 2-bit K block of 256 activations: table
/// `(16 j + 2 m + h)` (`j` 0..16, `m` 0..4, `h` 0..2) is for the pair
/// `x₁ = src[128 h + 4 j + m]`, `x₂ = src[128 h + 64 + 4 j + m]`; entry
/// `c₁ + 4 c₂` (codes `c = t + 1`) holds `t₁·x₁ + t₂·x₂` (one rounding; the
/// products are exact), the unused entries 0.
fn build_lut_2bit(src: &[f32], dst: &mut [f32]) {
    for j in 0..16 {
        for n in 0..8 {
            let (m, h) = (n / 2, n % 2);
            let x1 = src[128 * h + 4 * j + m];
            let x2 = src[128 * h + 64 + 4 * j + m];
            let d = &mut dst[(j * 8 + n) * LUT..][..LUT];
            d[0] = -x1 + -x2;
            d[1] = -x2;
            d[2] = x1 + -x2;
            d[3] = 0.0;
            d[4] = -x1;
            d[5] = 0.0;
            d[6] = x1;
            d[7] = 0.0;
            d[8] = -x1 + x2;
            d[9] = x2;
            d[10] = x1 + x2;
            d[11..].fill(0.0);
        }
    }
}

/// `y = x · Wᵀ (+ bias)` with `level`'s kernels (the level must be supported;
/// shapes and finiteness already checked). Falls back to the reference where
/// the kernels do not apply (scalar level, empty `cols`). Scale groups that
/// do not align with the K block are run on copies of the activations masked
/// to each group (a block shared by two groups is multiplied once for each).
/// `max_chunk` (clamped to `1..=MAX_CHUNK_BLOCKS`) bounds the K blocks of one
/// kernel call; tests lower it to exercise the chunk-combining path.
pub(crate) fn gemm(
    level: CpuLevel,
    m: &TernaryMatrix,
    x: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
    mode: ActivationMode,
    mut y: ArrayViewMut2<f32>,
    max_chunk: usize,
) {
    let max_chunk = max_chunk.clamp(1, MAX_CHUNK_BLOCKS);
    let (rows, cols) = (m.rows(), m.cols());
    let batch = x.nrows();
    if batch == 0 || rows == 0 {
        return;
    }
    let lay: &ComputeLayout = m.compute_layout();
    let bk = lay.format().block_k();
    let glen = m.granularity().group_len(cols).max(1);
    let ngroups = cols.div_ceil(glen);
    let k = match kernels(level) {
        Some(k) if cols > 0 => k,
        _ => return reference::gemm(m, x, bias, mode, y),
    };
    let nkb = lay.nkb();
    let kp = lay.kp();
    let aligned = ngroups == 1 || glen.is_multiple_of(bk);

    // ---- group / chunk ranges in K blocks
    let mut ranges: Vec<Range> = Vec::new();
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
            let o = if aligned { kb * bk } else { xo };
            ranges.push(Range {
                g,
                kb0: kb,
                n,
                last: kb + n == e,
                xo: o,
            });
            xo += n * bk;
            kb += n;
        }
    }
    // activation row stride
    let kx = if aligned { kp } else { xo };
    // Copies row `src` (cols values) into `dst` (kx values) in range order.
    fn spread<T: Copy + Default>(
        src: &[T],
        dst: &mut [T],
        ranges: &[Range],
        aligned: bool,
        bk: usize,
        glen: usize,
    ) {
        if aligned {
            dst[..src.len()].copy_from_slice(src);
            return;
        }
        for r in ranges {
            let (lo, hi) = (r.g * glen, ((r.g + 1) * glen).min(src.len()));
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

    let direct_f32 = match lay.format() {
        ComputeFormat::TwoBit => k.gemv_f32_2bit,
        ComputeFormat::Base3 => k.gemv_f32_base3,
    };

    let lut = match (mode, lay.format()) {
        (ActivationMode::F32, ComputeFormat::TwoBit) => k.lut_f32_2bit,
        _ => None,
    };

    // ---- activations
    let mut tmp = Vec::new();
    let acts = match mode {
        ActivationMode::Int8 => {
            let mut q = Aligned::<i8>::zeroed(batch * kx);
            let mut a = vec![0f32; batch];
            let mut qsum = vec![0i32; batch * ngroups];
            let mut qrow = vec![0i8; cols];
            let qs = q.as_mut_slice();
            for (b, xr) in x.rows().into_iter().enumerate() {
                let xs = match xr.as_slice() {
                    Some(s) => s,
                    None => {
                        tmp.clear();
                        tmp.extend(xr.iter().copied());
                        &tmp[..]
                    }
                };
                // The same scale as quant::act_scale (max is order-independent).
                a[b] = 127.0 / (k.abs_max)(xs).max(1e-5);
                (k.quantize)(xs, a[b], &mut qrow);
                for (g, gs) in qrow.chunks(glen).enumerate() {
                    qsum[b * ngroups + g] = gs.iter().map(|&v| v as i32).sum();
                }
                spread(
                    &qrow,
                    &mut qs[b * kx..(b + 1) * kx],
                    &ranges,
                    aligned,
                    bk,
                    glen,
                );
            }
            Acts::I8 { q, a, qsum }
        }
        ActivationMode::F32 if lut.is_some() => {
            let mut xb = Aligned::<f32>::zeroed(batch * kx * LUT / 2);
            let xs = xb.as_mut_slice();
            let mut row = vec![0f32; kx];
            for (b, xr) in x.rows().into_iter().enumerate() {
                let src = match xr.as_slice() {
                    Some(s) => s,
                    None => {
                        tmp.clear();
                        tmp.extend(xr.iter().copied());
                        &tmp[..]
                    }
                };
                row.fill(0.0);
                spread(src, &mut row, &ranges, aligned, bk, glen);
                let dst = &mut xs[b * kx * LUT / 2..(b + 1) * kx * LUT / 2];
                for (s, d) in row
                    .chunks_exact(256)
                    .zip(dst.chunks_exact_mut(256 * LUT / 2))
                {
                    build_lut_2bit(s, d);
                }
            }
            Acts::F32 { x: xb }
        }
        ActivationMode::F32 => {
            let permuted = direct_f32.is_some();
            let mut xb = Aligned::<f32>::zeroed(batch * kx);
            let xs = xb.as_mut_slice();
            let mut row = vec![0f32; kx];
            for (b, xr) in x.rows().into_iter().enumerate() {
                let src = match xr.as_slice() {
                    Some(s) => s,
                    None => {
                        tmp.clear();
                        tmp.extend(xr.iter().copied());
                        &tmp[..]
                    }
                };
                let dst = &mut xs[b * kx..(b + 1) * kx];
                if permuted {
                    row.fill(0.0);
                    spread(src, &mut row, &ranges, aligned, bk, glen);
                    for (s, d) in row.chunks_exact(bk).zip(dst.chunks_exact_mut(bk)) {
                        permute_f32(s, d);
                    }
                } else {
                    spread(src, dst, &ranges, aligned, bk, glen);
                }
            }
            Acts::F32 { x: xb }
        }
    };

    let ntiles = lay.ntiles();
    let threads = crate::parallel::num_threads();
    let min_tiles = ntiles.div_ceil(threads * 4).max(1);
    // One thread, or too little work to pay for waking the pool: run on the
    // caller (the same per-element arithmetic, so the same results).
    let inline = threads == 1 || (rows * kp * batch) < (1 << 18);
    // Direct kernels on the packed tile: int8 at batch 1, f32 at any batch.
    let direct = match mode {
        ActivationMode::Int8 => {
            batch == 1
                && match lay.format() {
                    ComputeFormat::TwoBit => k.gemv_i8_2bit.is_some(),
                    ComputeFormat::Base3 => k.gemv_i8_base3.is_some(),
                }
        }
        ActivationMode::F32 => direct_f32.is_some(),
    };
    let bblock = match mode {
        ActivationMode::Int8 => BATCH_BLOCK_I8,
        ActivationMode::F32 => BATCH_BLOCK_F32,
    };
    let decode = match lay.format() {
        ComputeFormat::TwoBit => k.decode_2bit,
        ComputeFormat::Base3 => k.decode_base3,
    };
    let scale = |o: usize, g: usize| if o < rows { m.scale(o, g) } else { 0.0 };
    const TB: usize = TILE_ROWS * BLOCK_BYTES;
    let o0 = |t: usize| t * TILE_ROWS;

    // acc[tile][b][r]: Σ_g s · part, in group order.
    let mut acc = vec![0f32; ntiles * batch * TILE_ROWS];
    let tile_out = batch * TILE_ROWS;
    if let (Some(f), Acts::F32 { x }) = (lut, &acts) {
        // 16 rows (4 tiles) a task, one batch row after the other.
        const GT: usize = 4;
        let xs = x.as_slice();
        let ls = kx * LUT / 2; // table floats a batch row
        let body = |(grp, out): (usize, &mut [f32])| {
            let t0 = grp * GT;
            let nt = (ntiles - t0).min(GT);
            // missing tiles of the last group read tile t0 (results dropped)
            let tp: [*const u8; GT] =
                std::array::from_fn(|q| lay.tile(t0 + if q < nt { q } else { 0 }).as_ptr());
            for b in 0..batch {
                let mut fp = [0f32; GT * TILE_ROWS];
                for rg in &ranges {
                    let tiles = tp.map(|p| p.wrapping_add(rg.kb0 * TB));
                    // SAFETY: level supported; each tile holds nkb >= kb0 + n
                    // blocks; the batch row's tables hold (xo + n * 256) * 8 floats.
                    let raw = unsafe { f(&tiles, xs[b * ls + rg.xo * LUT / 2..].as_ptr(), rg.n) };
                    for (q, tout) in out.chunks_mut(tile_out).enumerate().take(nt) {
                        for r in 0..TILE_ROWS {
                            let i = q * TILE_ROWS + r;
                            fp[i] += raw[i];
                            if rg.last {
                                tout[b * TILE_ROWS + r] += scale(o0(t0 + q) + r, rg.g) * fp[i];
                                fp[i] = 0.0;
                            }
                        }
                    }
                }
            }
        };
        if inline {
            acc.chunks_mut(GT * tile_out).enumerate().for_each(body);
        } else {
            let min_groups = min_tiles.div_ceil(GT);
            crate::parallel::for_each_chunk_mut(&mut acc, min_groups * GT * tile_out, |i, c| {
                for (j, out) in c.chunks_mut(GT * tile_out).enumerate() {
                    body((i * min_groups + j, out));
                }
            });
        }
    }
    // Batch-1 int8 with one K range (one scale group, K within one chunk):
    // the multi-tile kernels, one call per chunk of tiles.
    let tiles_i8 = match lay.format() {
        ComputeFormat::TwoBit => k.gemv_i8_2bit_tiles,
        ComputeFormat::Base3 => k.gemv_i8_base3_tiles,
    }
    .filter(|_| mode == ActivationMode::Int8 && batch == 1 && direct && ranges.len() == 1);
    if let (Some(ft), Acts::I8 { q, qsum, .. }) = (tiles_i8, &acts) {
        let tb = lay.tile_bytes();
        let q0 = qsum[0];
        // one scale a row (per row, or per group with a single group), or one in all
        let row_scales = match m.granularity() {
            crate::ternary::Granularity::PerTensor => None,
            _ => Some(m.scales()),
        };
        let per = fj_tiles_per_chunk(ntiles, threads);
        let run = |i: usize, c: &mut [f32]| {
            const SUB: usize = 32;
            let mut raw = [0i32; SUB * TILE_ROWS];
            for (j, cs) in c.chunks_mut(SUB * TILE_ROWS).enumerate() {
                let t0 = i * per + j * SUB;
                let nt = cs.len() / TILE_ROWS;
                // SAFETY: level supported; tiles t0..t0 + nt exist (cs is
                // their part of acc), each nkb blocks; q holds kx values.
                unsafe {
                    ft(
                        lay.tiles(t0, nt).as_ptr(),
                        tb,
                        q.as_slice().as_ptr(),
                        nkb,
                        nt,
                        raw.as_mut_ptr(),
                    )
                };
                // as the general path: 0 + s · (Σ c·q − Σ q); padding rows stay 0
                let o0 = t0 * TILE_ROWS;
                let live = rows.saturating_sub(o0).min(nt * TILE_ROWS);
                let raw = &raw[..live];
                match row_scales {
                    Some(sc) => {
                        for ((o, &v), &sv) in cs.iter_mut().zip(raw).zip(&sc[o0..o0 + live]) {
                            *o += sv * v.wrapping_sub(q0) as f32;
                        }
                    }
                    None => {
                        let sv = m.scale(0, 0);
                        for (o, &v) in cs.iter_mut().zip(raw) {
                            *o += sv * v.wrapping_sub(q0) as f32;
                        }
                    }
                }
            }
        };
        if inline {
            for (i, c) in acc.chunks_mut(per * tile_out).enumerate() {
                run(i, c);
            }
        } else {
            crate::parallel::for_each_chunk_mut(&mut acc, per * tile_out, run);
        }
    }
    let mut b0 = if lut.is_some() || tiles_i8.is_some() {
        batch
    } else {
        0
    };
    while b0 < batch {
        let b1 = (b0 + bblock).min(batch);
        let init = || vec![0u8; if direct { 0 } else { TILE_ROWS * kp + 64 }];
        let body = |scratch: &mut Vec<u8>, (t, out): (usize, &mut [f32])| {
            let tile = lay.tile(t).as_ptr();
            let o0 = t * TILE_ROWS;
            if direct {
                match &acts {
                    Acts::I8 { q, qsum, .. } => {
                        let f = match lay.format() {
                            ComputeFormat::TwoBit => k.gemv_i8_2bit,
                            ComputeFormat::Base3 => k.gemv_i8_base3,
                        }
                        .expect("direct kernel");
                        // i32 partial sums of the current group
                        let mut ip = [0i32; TILE_ROWS];
                        for rg in &ranges {
                            // SAFETY: level supported; the tile holds nkb
                            // blocks and q holds kx >= xo + n * bk values.
                            let raw = unsafe {
                                f(
                                    tile.add(rg.kb0 * TB),
                                    q.as_slice().as_ptr().add(rg.xo),
                                    rg.n,
                                )
                            };
                            for r in 0..TILE_ROWS {
                                ip[r] = ip[r].wrapping_add(raw[r]);
                                if rg.last {
                                    let part = ip[r].wrapping_sub(qsum[rg.g]);
                                    out[r] += scale(o0 + r, rg.g) * part as f32;
                                    ip[r] = 0;
                                }
                            }
                        }
                    }
                    Acts::F32 { x } => {
                        let f = direct_f32.expect("direct kernel");
                        let mut b = b0;
                        while b < b1 {
                            let nb = (b1 - b).min(2);
                            let xp = |i: usize| x.as_slice()[(b + i.min(nb - 1)) * kx..].as_ptr();
                            // f32 partial sums of the current group
                            let mut fp = [[0f32; 2]; TILE_ROWS];
                            for rg in &ranges {
                                // SAFETY: level supported; the tile holds nkb
                                // blocks and each x row kx >= xo + n * bk values.
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
                                            out[(b + bi) * TILE_ROWS + r] +=
                                                scale(o0 + r, rg.g) * fp[r][bi];
                                            fp[r][bi] = 0.0;
                                        }
                                    }
                                }
                            }
                            b += nb;
                        }
                    }
                }
                return;
            }
            // SAFETY: level supported; scratch holds TILE_ROWS * kp bytes.
            unsafe { decode(tile, nkb, scratch.as_mut_ptr(), kp) };
            let wp = |r: usize, k0: usize| scratch[r * kp + k0..].as_ptr();
            let mut b = b0;
            while b < b1 {
                let nb = (b1 - b).min(4);
                let mut ip = [[0i32; 4]; TILE_ROWS];
                let mut fp = [[0f32; 4]; TILE_ROWS];
                for rg in &ranges {
                    let (k0, len, g) = (rg.kb0 * bk, rg.n * bk, rg.g);
                    let w = [wp(0, k0), wp(1, k0), wp(2, k0), wp(3, k0)];
                    match &acts {
                        Acts::I8 { q, qsum, .. } => {
                            let qp = |i: usize| {
                                q.as_slice()[(b + i.min(nb - 1)) * kx + rg.xo..].as_ptr()
                            };
                            // SAFETY: pointers cover len values each.
                            let raw =
                                unsafe { (k.gemm_i8)(&w, &[qp(0), qp(1), qp(2), qp(3)], nb, len) };
                            for (bi, bo) in (b..b + nb).enumerate() {
                                for r in 0..TILE_ROWS {
                                    ip[r][bi] = ip[r][bi].wrapping_add(raw[r][bi]);
                                    if rg.last {
                                        let qs = qsum[bo * ngroups + g];
                                        let part = ip[r][bi].wrapping_sub(qs);
                                        out[bo * TILE_ROWS + r] += scale(o0 + r, g) * part as f32;
                                        ip[r][bi] = 0;
                                    }
                                }
                            }
                        }
                        Acts::F32 { x } => {
                            for (bi, bo) in (b..b + nb).enumerate() {
                                let xp = x.as_slice()[bo * kx + rg.xo..].as_ptr();
                                // SAFETY: pointers cover len values each.
                                let raw = unsafe { (k.bytes_f32)(&w, xp, len) };
                                for r in 0..TILE_ROWS {
                                    fp[r][bi] += raw[r];
                                    if rg.last {
                                        out[bo * TILE_ROWS + r] += scale(o0 + r, g) * fp[r][bi];
                                        fp[r][bi] = 0.0;
                                    }
                                }
                            }
                        }
                    }
                }
                b += nb;
            }
        };
        if inline {
            let mut scratch = init();
            for (t, out) in acc.chunks_mut(tile_out).enumerate() {
                body(&mut scratch, (t, out));
            }
        } else if direct {
            // Latency-bound (batch 1 / direct kernels): the spinning fork-join.
            // Small chunks (16 a thread) keep the end-of-job imbalance short.
            let per = fj_tiles_per_chunk(ntiles, threads);
            crate::parallel::for_each_chunk_mut(&mut acc, per * tile_out, |i, c| {
                let mut scratch = Vec::new();
                for (j, out) in c.chunks_mut(tile_out).enumerate() {
                    body(&mut scratch, (i * per + j, out));
                }
            });
        } else {
            crate::parallel::install(|| {
                acc.par_chunks_mut(tile_out)
                    .enumerate()
                    .with_min_len(min_tiles)
                    .for_each_init(init, body)
            });
        }
        b0 = b1;
    }

    // ---- epilogue, in the reference's order: (Σ_g s·part) [/ a] + bias
    if batch == 1 {
        // acc is in row order at batch 1
        let a = match &acts {
            Acts::I8 { a, .. } => Some(a[0]),
            Acts::F32 { .. } => None,
        };
        // separate passes (each vectorizes); the same roundings as one
        // expression, since every intermediate is stored as f32
        let acc = &mut acc[..rows];
        if let Some(a) = a {
            for v in acc.iter_mut() {
                *v /= a;
            }
        }
        if let Some(bv) = &bias {
            for (v, &b) in acc.iter_mut().zip(bv.iter()) {
                *v += b;
            }
        } else {
            // v + 0.0 (turns -0.0 into +0.0, as the general path does)
            for v in acc.iter_mut() {
                *v += 0.0;
            }
        }
        y.row_mut(0)
            .iter_mut()
            .zip(acc.iter())
            .for_each(|(yo, &v)| *yo = v);
        return;
    }
    for b in 0..batch {
        for o in 0..rows {
            let mut v = acc[(o / TILE_ROWS) * tile_out + b * TILE_ROWS + o % TILE_ROWS];
            if let Acts::I8 { a, .. } = &acts {
                v /= a[b];
            }
            y[[b, o]] = v + bias.as_ref().map_or(0.0, |bv| bv[o]);
        }
    }
}

/// See [`super::read_floor_probe`].
pub(crate) fn read_floor_probe(m: &TernaryMatrix) -> u64 {
    let lay = m.compute_layout();
    let ntiles = lay.ntiles();
    let tb = lay.tile_bytes();
    if ntiles == 0 || tb == 0 {
        return 0;
    }
    let threads = crate::parallel::num_threads();
    let per = fj_tiles_per_chunk(ntiles, threads);
    let mut sums = vec![0u64; ntiles.div_ceil(per)];
    crate::parallel::for_each_chunk_mut(&mut sums, 1, |i, out| {
        let t0 = i * per;
        let nt = per.min(ntiles - t0);
        let bytes = lay.tiles(t0, nt);
        let mut acc = [0u64; 8];
        for c in bytes.chunks_exact(64) {
            for (a, w) in acc.iter_mut().zip(c.chunks_exact(8)) {
                *a ^= u64::from_le_bytes(w.try_into().expect("8 bytes"));
            }
        }
        out[0] = acc.iter().fold(0, |x, &y| x ^ y);
    });
    sums.iter().fold(0, |x, &y| x ^ y)
}
