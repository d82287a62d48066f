//! Training-path ternary GEMMs: dense f32 tiles decoded from 2-bit codes,
//! multiplied by a register-blocked FMA micro-kernel.
//!
//! Two products, both for batches of activations (`batch >= 2`; any batch is
//! accepted):
//!
//! * [`linear`]: `y = x · Wᵀ (+ bias)`, `x` `[batch, cols]`, `y` `[batch, rows]`;
//! * [`linear_grad_input`]: `dx = dy · W`, `dy` `[batch, rows]`,
//!   `dx` `[batch, cols]` (the input gradient of a linear layer), without
//!   ever holding `W` in float: only one tile of it at a time.
//!
//! `W` is `[rows, cols]` ternary with scales of any [`Granularity`]
//! ([`TernaryWeights`]): either canonical 2-bit bytes (what
//! `quant::quantize_pack_2bit` produces: the training path quantizes into it
//! once a step) or a [`TernaryMatrix`]'s 2-bit compute layout (the matmul
//! dispatcher sends f32 products at batch >= 4 here, on AVX2).
//! Activations and outputs are f32 or bf16 ([`ActIn`], [`ActOut`]).
//!
//! # Method
//!
//! A block of `W` (`MC x 256` for the forward, `PC x 256` for the input
//! gradient) is decoded into f32 values `s · t` (the scale folded in: `t` is
//! -1, 0 or 1, so `s · t` is exact) with a table lookup (`vpermps` on the
//! 2-bit codes), then a 6 x 16 micro-kernel multiplies it with packed
//! activations: 12 ymm accumulators, two vector loads and six broadcasts a
//! step, each product added by one FMA. The forward computes `yᵀ` tiles
//! (the vector runs over 16 batch rows, the broadcasts over 6 weight rows);
//! the input gradient computes `dx` tiles directly (the vector runs over 16
//! columns of a decoded weight row, the broadcasts over 6 rows of `dy`).
//! Each weight is decoded once a call; tasks split the output rows (forward)
//! or output columns (input gradient) over the crate pool, and every output
//! element is summed by one task in a fixed order, so results do not depend
//! on the thread count.
//!
//! # Error bound
//!
//! Every output is a sum of exact-input products accumulated by FMA in a
//! fixed order (`k` ascending), so (Higham, dot products)
//! `|y - y_exact| <= n · 2⁻²⁴ · Σ |s · t · x| (+ 2⁻²⁴ |y| for the bias add)`
//! with `n` the contraction length (`cols` forward, `rows` backward). This is
//! within the bound the parent module documents for f32 activations. bf16
//! inputs are widened exactly; bf16 outputs are the f32 result rounded to
//! nearest-even once.
//!
//! Non-finite activations are not rejected here (the matrix dispatcher checks
//! before calling): they propagate as in any float GEMM, so `inf · 0` from a
//! zero weight gives NaN where the reference (which skips zero weights) does
//! not. Int8 activation mode ([`ActivationMode::Int8`]) multiplies the
//! fake-quantized activations `q / a` (the rule of
//! [`quantize_act_row`](crate::ternary::quant::quantize_act_row)) in f32,
//! which is what BitNet training computes; the int8 inference kernels compute
//! `(Σ s·t·q) / a` instead (equal in exact arithmetic).

use half::bf16;
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use super::layout::{ComputeFormat, ComputeLayout, BLOCK_BYTES, TILE_ROWS};
use super::ActivationMode;
use crate::cpu::CpuLevel;
use crate::ternary::pack::{row_bytes, PackedLayout};
use crate::ternary::quant::{self, QuantConfig, QuantMethod};
use crate::ternary::{Granularity, TernaryMatrix};
use crate::{Error, Result};

/// Rows of a micro-kernel tile (broadcast operand).
const MR: usize = 6;
/// Columns of a micro-kernel tile (two 8-lane vectors).
const NR: usize = 16;
/// Weights decoded a row per block (one 2-bit compute-layout K block).
const KB: usize = 256;
/// Weight rows a forward task decodes and multiplies (a multiple of `MR`
/// and of `TILE_ROWS`): 96 x 256 f32 = 96 KiB, L2-resident.
const MC: usize = 96;
/// Weight rows a grad-input contraction block decodes: 256 x 256 f32.
const PC: usize = 256;

/// The smallest batch the matrix dispatcher sends to [`gemm_matrix`]: below
/// it, most of each 16-row panel would be padding.
pub(crate) const MIN_BATCH: usize = 4;

/// Where the 2-bit codes of a [`TernaryWeights`] live.
#[derive(Clone, Copy)]
enum Codes<'a> {
    /// Canonical 2-bit rows (`00` 0, `01` +1, `10` -1; `11` invalid), `row_bytes` a row.
    Canonical { bytes: &'a [u8], row_bytes: usize },
    /// A matrix's 2-bit compute layout (codes `t + 1` in bit planes).
    Planes(&'a ComputeLayout),
}

/// Borrowed ternary weights `[rows, cols]` with their scales, as the
/// training kernels read them.
#[derive(Clone, Copy)]
pub struct TernaryWeights<'a> {
    codes: Codes<'a>,
    rows: usize,
    cols: usize,
    scales: &'a [f32],
    granularity: Granularity,
}

impl<'a> TernaryWeights<'a> {
    /// Canonical 2-bit bytes (`rows * ceil(cols / 4)`, see the crate's
    /// format docs) with `granularity.num_scales(rows, cols)` finite scales,
    /// row-major `[scale_rows, groups_per_row]`.
    ///
    /// Errors: wrong byte or scale counts, non-finite scales, `PerGroup(0)`.
    /// The bytes themselves are checked by the kernels as they decode them
    /// (an invalid code `11` fails the call with [`Error::InvalidData`]).
    pub fn canonical(
        bytes: &'a [u8],
        rows: usize,
        cols: usize,
        scales: &'a [f32],
        granularity: Granularity,
    ) -> Result<Self> {
        let granularity = granularity.validate()?;
        let rb = row_bytes(cols, PackedLayout::TwoBit);
        let need = crate::checked_mul(rows, rb, "packed")?;
        if bytes.len() != need {
            return Err(Error::shape(
                "packed",
                format!(
                    "{rows}x{cols} weights need {need} bytes ({rows} rows of {rb}), got {}",
                    bytes.len()
                ),
            ));
        }
        let ns = granularity.num_scales(rows, cols);
        if scales.len() != ns {
            let (a, b) = granularity.scale_shape(rows, cols);
            return Err(Error::shape(
                "scales",
                format!(
                    "{granularity:?} on {rows}x{cols} needs {ns} scales ([{a}, {b}]), got {}",
                    scales.len()
                ),
            ));
        }
        crate::check_finite(scales, "scales")?;
        Ok(TernaryWeights {
            codes: Codes::Canonical {
                bytes,
                row_bytes: rb,
            },
            rows,
            cols,
            scales,
            granularity,
        })
    }

    /// The weights of `m` if its compute format is the 2-bit one.
    pub fn of_matrix(m: &'a TernaryMatrix) -> Option<Self> {
        let lay = m.compute_layout();
        (lay.format() == ComputeFormat::TwoBit).then_some(TernaryWeights {
            codes: Codes::Planes(lay),
            rows: m.rows(),
            cols: m.cols(),
            scales: m.scales(),
            granularity: m.granularity(),
        })
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    fn glen(&self) -> usize {
        self.granularity.group_len(self.cols).max(1)
    }

    fn scale(&self, r: usize, g: usize) -> f32 {
        match self.granularity {
            Granularity::PerTensor => self.scales[0],
            _ => {
                let ng = self.cols.div_ceil(self.glen()).max(1);
                self.scales[r * ng + g]
            }
        }
    }

    /// Writes `out[i · ld + j] = s · t` of weight `(r0 + i, k0 + j)` for
    /// `i < nr`, `j < kc`, and zeros for `j` in `kc..kw` and for rows past
    /// `rows`. `k0` is a multiple of [`KB`], `kc <= KB`, `k0 + kc <= cols`,
    /// `kw <= ld`. Returns whether an invalid code was seen.
    #[allow(clippy::too_many_arguments)]
    fn decode(
        &self,
        simd: bool,
        r0: usize,
        nr: usize,
        k0: usize,
        kc: usize,
        kw: usize,
        out: &mut [f32],
        ld: usize,
    ) -> bool {
        debug_assert!(k0.is_multiple_of(KB) && kc <= KB && k0 + kc <= self.cols && kw <= ld);
        let glen = self.glen();
        let (g0, g1) = if kc == 0 {
            (0, 0)
        } else {
            (k0 / glen, (k0 + kc - 1) / glen)
        };
        let mut bad = false;
        for i in 0..nr {
            let r = r0 + i;
            // The rows of a block are a stride apart in memory: fetch a few
            // rows ahead (the hardware prefetcher does not follow).
            if r + PREFETCH_ROWS < self.rows {
                self.prefetch(r + PREFETCH_ROWS, k0);
            }
            let row = &mut out[i * ld..i * ld + kw];
            if r >= self.rows {
                row.fill(0.0);
                continue;
            }
            // One scale over the whole range: fold it into the table.
            let s = if g0 == g1 { self.scale(r, g0) } else { 1.0 };
            match self.codes {
                Codes::Canonical { bytes, row_bytes } => {
                    let src = &bytes[r * row_bytes + k0 / 4..r * row_bytes + (k0 + kc).div_ceil(4)];
                    bad |= bad_codes(src);
                    decode_canonical(simd, src, kc, s, &mut row[..kc]);
                }
                Codes::Planes(lay) => {
                    let tile = lay.tile(r / TILE_ROWS);
                    let off = ((k0 / KB) * TILE_ROWS + r % TILE_ROWS) * BLOCK_BYTES;
                    decode_planes(simd, &tile[off..off + BLOCK_BYTES], kc, s, &mut row[..kc]);
                }
            }
            if g0 != g1 {
                for g in g0..=g1 {
                    let (a, b) = ((g * glen).max(k0) - k0, ((g + 1) * glen).min(k0 + kc) - k0);
                    let s = self.scale(r, g);
                    row[a..b].iter_mut().for_each(|v| *v *= s);
                }
            }
            row[kc..].fill(0.0);
        }
        bad
    }
}

/// Rows ahead [`TernaryWeights::decode`] prefetches.
const PREFETCH_ROWS: usize = 8;

impl TernaryWeights<'_> {
    /// Hints the cache to load the codes of row `r` from column `k0` (one
    /// 64-byte block row).
    #[inline(always)]
    fn prefetch(&self, r: usize, k0: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            let p = match self.codes {
                Codes::Canonical { bytes, row_bytes } => bytes[r * row_bytes + k0 / 4..].as_ptr(),
                Codes::Planes(lay) => {
                    let off = ((k0 / KB) * TILE_ROWS + r % TILE_ROWS) * BLOCK_BYTES;
                    lay.tile(r / TILE_ROWS)[off..].as_ptr()
                }
            };
            // SAFETY: a prefetch never faults; p points into the weights.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p as *const i8,
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (r, k0);
    }
}

/// Whether `bytes` hold the invalid canonical code `11` anywhere.
fn bad_codes(bytes: &[u8]) -> bool {
    let mut acc = 0u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        acc |= w & (w >> 1);
    }
    for &b in chunks.remainder() {
        acc |= (b & (b >> 1)) as u64;
    }
    acc & 0x5555_5555_5555_5555 != 0
}

/// `t` of canonical code `c`: `00` 0, `01` +1, `10` -1, `11` (invalid) 0.
const CANON_T: [f32; 4] = [0.0, 1.0, -1.0, 0.0];

/// Decodes the first `out.len()` weights of canonical bytes `src`, times `s`.
fn decode_canonical(simd: bool, src: &[u8], kc: usize, s: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only set for levels with AVX2 + FMA; src holds
        // ceil(kc / 4) bytes and out kc floats.
        unsafe { x86::decode_canonical(src.as_ptr(), kc, s, out.as_mut_ptr()) };
        return;
    }
    let _ = simd;
    for (k, o) in out.iter_mut().enumerate().take(kc) {
        *o = CANON_T[((src[k / 4] >> (2 * (k % 4))) & 3) as usize] * s;
    }
}

/// Decodes the first `kc` weights of one 64-byte compute-layout block row
/// (weight `64 i + j` is bits `2i..2i+1` of byte `j`, code `t + 1`), times `s`.
fn decode_planes(simd: bool, block: &[u8], kc: usize, s: f32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: AVX2 + FMA (see `simd`); block holds 64 bytes, out kc floats.
        unsafe { x86::decode_planes(block.as_ptr(), kc, s, out.as_mut_ptr()) };
        return;
    }
    let _ = simd;
    for (k, o) in out.iter_mut().enumerate().take(kc) {
        let c = (block[k % 64] >> (2 * (k / 64))) & 3;
        *o = (c as f32 - 1.0) * s;
    }
}

/// Activations entering a product.
#[derive(Clone, Copy)]
pub enum ActIn<'a> {
    /// f32.
    F32(ArrayView2<'a, f32>),
    /// bf16 (widened exactly to f32).
    Bf16(ArrayView2<'a, bf16>),
}

impl ActIn<'_> {
    fn dim(&self) -> (usize, usize) {
        match self {
            ActIn::F32(a) => a.dim(),
            ActIn::Bf16(a) => a.dim(),
        }
    }
    /// Row `b` as f32 into `buf` (`ncols` values).
    fn row_into(&self, b: usize, buf: &mut [f32]) {
        match self {
            ActIn::F32(a) => {
                let r = a.row(b);
                match r.as_slice() {
                    Some(s) => buf.copy_from_slice(s),
                    None => buf.iter_mut().zip(r.iter()).for_each(|(d, &v)| *d = v),
                }
            }
            ActIn::Bf16(a) => buf
                .iter_mut()
                .zip(a.row(b).iter())
                .for_each(|(d, &v)| *d = v.to_f32()),
        }
    }
}

/// Output of a product.
pub enum ActOut<'a> {
    /// f32.
    F32(ArrayViewMut2<'a, f32>),
    /// bf16 (the f32 result rounded to nearest-even).
    Bf16(ArrayViewMut2<'a, bf16>),
}

impl ActOut<'_> {
    fn dim(&self) -> (usize, usize) {
        match self {
            ActOut::F32(a) => a.dim(),
            ActOut::Bf16(a) => a.dim(),
        }
    }
    /// Writes row `b` from `f(j)` for every column `j`.
    fn fill_row(&mut self, b: usize, f: impl Fn(usize) -> f32) {
        match self {
            ActOut::F32(a) => a
                .row_mut(b)
                .iter_mut()
                .enumerate()
                .for_each(|(j, d)| *d = f(j)),
            ActOut::Bf16(a) => a.row_mut(b).iter_mut().enumerate().for_each(|(j, d)| {
                *d = bf16::from_bits(crate::precision::convert::f32_to_bf16_bits(f(j)))
            }),
        }
    }
}

/// Work (multiply-adds, or weights quantized) below which a call runs on
/// the calling thread: handing out tasks costs tens of microseconds, and
/// far more when the machine is oversubscribed.
const INLINE_WORK: usize = 1 << 21;

/// `body` over the chunks of `v` (`chunk` elements each, with their index):
/// on the crate pool, or in order on this thread when `work` is small.
fn for_chunks<T: Send>(
    v: &mut [T],
    chunk: usize,
    work: usize,
    body: impl Fn((usize, &mut [T])) + Sync + Send,
) {
    if work < INLINE_WORK || v.len() <= chunk {
        v.chunks_mut(chunk.max(1)).enumerate().for_each(body);
    } else {
        crate::parallel::install(|| v.par_chunks_mut(chunk.max(1)).enumerate().for_each(body));
    }
}

/// Whether a level runs the AVX2 + FMA kernels (else the portable ones).
fn simd_at(level: CpuLevel) -> bool {
    cfg!(target_arch = "x86_64") && CpuLevel::Avx2.allowed_under(level) && level.is_supported()
}

fn check_level(level: CpuLevel) -> Result<()> {
    if !level.is_supported() {
        return Err(Error::invalid(
            "level",
            format!("this CPU does not support {}", level.name()),
        ));
    }
    Ok(())
}

/// A zeroed buffer of `n` floats; a size the caller chose that cannot be
/// allocated is an error, not an abort.
fn zeroed(n: usize, what: &'static str) -> Result<Vec<f32>> {
    crate::error::try_zeroed(n, what)
}

/// One micro-kernel call: `c[i][j] (+)= Σ_p a[i·rs + p·CS] · b[p·ldb + j]`
/// for `i < MR`, `j < NR`, `p < kc`.
type Micro = unsafe fn(usize, *const f32, usize, *const f32, usize, *mut f32, usize, bool);

fn micro_for<const CS: usize>(simd: bool) -> Micro {
    #[cfg(target_arch = "x86_64")]
    if simd {
        return x86::micro::<CS>;
    }
    let _ = simd;
    micro_scalar::<CS>
}

/// Portable micro-kernel (the scalar level's); same contract as the AVX2 one.
///
/// # Safety
/// `a` valid for reads at `i·rs + p·CS`, `b` at `p·ldb + j`, `c` for
/// reads/writes at `i·ldc + j` (`i < MR`, `j < NR`, `p < kc`).
#[allow(clippy::too_many_arguments)]
unsafe fn micro_scalar<const CS: usize>(
    kc: usize,
    a: *const f32,
    rs: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
) {
    let mut acc = [[0f32; NR]; MR];
    // SAFETY: the caller's contract covers every offset used.
    unsafe {
        if accumulate {
            for (i, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = *c.add(i * ldc + j);
                }
            }
        }
        for p in 0..kc {
            let bp = b.add(p * ldb);
            for (i, row) in acc.iter_mut().enumerate() {
                let av = *a.add(i * rs + p * CS);
                for (j, v) in row.iter_mut().enumerate() {
                    *v = av.mul_add(*bp.add(j), *v);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                *c.add(i * ldc + j) = *v;
            }
        }
    }
}

fn check_linear_shapes(
    w: &TernaryWeights,
    x: (usize, usize),
    bias: Option<&ArrayView1<f32>>,
    y: (usize, usize),
) -> Result<()> {
    if x.1 != w.cols {
        return Err(Error::shape(
            "x",
            format!("x has {} columns, in_features = {}", x.1, w.cols),
        ));
    }
    if let Some(b) = bias {
        if b.len() != w.rows {
            return Err(Error::shape(
                "bias",
                format!("bias has {} elements, out_features = {}", b.len(), w.rows),
            ));
        }
    }
    if y != (x.0, w.rows) {
        return Err(Error::shape(
            "y",
            format!("y is [{}, {}], expected [{}, {}]", y.0, y.1, x.0, w.rows),
        ));
    }
    Ok(())
}

/// `y = x · Wᵀ (+ bias)` (see the module docs), f32 or bf16 in and out, at
/// `level` (its AVX2 kernels from `avx2` up, the portable ones below).
///
/// `mode` [`ActivationMode::Int8`] multiplies the per-token int8
/// fake-quantized activations (BitNet W1.58A8 training).
///
/// Errors: shape mismatches (naming `x`, `bias`, `y`), an unsupported
/// `level`, invalid codes in canonical bytes ([`Error::InvalidData`] naming
/// `packed`; `y` is then unspecified), scratch memory that cannot be
/// allocated.
pub fn linear(
    w: &TernaryWeights,
    x: ActIn,
    bias: Option<ArrayView1<f32>>,
    mode: ActivationMode,
    mut y: ActOut,
    level: CpuLevel,
) -> Result<()> {
    check_linear_shapes(w, x.dim(), bias.as_ref(), y.dim())?;
    check_level(level)?;
    let (batch, cols) = x.dim();
    let rows = w.rows;
    if batch == 0 || rows == 0 {
        return Ok(());
    }
    let simd = simd_at(level);
    let npanels = batch.div_ceil(NR);
    let xp = pack_x(&x, mode, npanels, simd)?;
    let nblocks = rows.div_ceil(MC);
    let blk = npanels * MC * NR;
    let mut ct = zeroed(crate::checked_mul(nblocks, blk, "y")?, "y")?;
    let micro = micro_for::<1>(simd);
    let bad = std::sync::atomic::AtomicBool::new(false);
    let body = |(mb, out): (usize, &mut [f32])| {
        let mut abuf = vec![0f32; MC * KB];
        let r0 = mb * MC;
        let live = (rows - r0).min(MC).div_ceil(MR);
        let mut k0 = 0;
        while k0 < cols {
            let kc = KB.min(cols - k0);
            if w.decode(simd, r0, MC, k0, kc, kc, &mut abuf, KB) {
                bad.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            for p in 0..npanels {
                let bp = xp[(p * cols + k0) * NR..].as_ptr();
                for s in 0..live {
                    let c = out[(p * MC + s * MR) * NR..].as_mut_ptr();
                    // SAFETY: abuf holds MC x KB floats (rows s·MR..+MR,
                    // columns < kc); the panel holds (cols - k0) x NR floats
                    // from bp; the tile holds MR x NR floats at stride NR.
                    unsafe { micro(kc, abuf[s * MR * KB..].as_ptr(), KB, bp, NR, c, NR, k0 > 0) };
                }
            }
            k0 += kc;
        }
    };
    for_chunks(
        &mut ct,
        blk,
        batch.saturating_mul(rows).saturating_mul(cols),
        body,
    );
    if bad.into_inner() {
        return Err(Error::data(
            "packed",
            "packed weights contain the invalid code 11",
        ));
    }
    // ---- epilogue: transpose the yᵀ tiles, add the bias, convert
    for b in 0..batch {
        let (p, j) = (b / NR, b % NR);
        y.fill_row(b, |n| {
            let v = ct[((n / MC) * npanels + p) * MC * NR + (n % MC) * NR + j];
            v + bias.as_ref().map_or(0.0, |bv| bv[n])
        });
    }
    Ok(())
}

/// Packs the activations as `[panel][k][NR]` (16 batch rows a panel, zeros
/// past the batch), fake-quantized to int8 levels in [`ActivationMode::Int8`].
fn pack_x(x: &ActIn, mode: ActivationMode, npanels: usize, simd: bool) -> Result<Vec<f32>> {
    let (batch, cols) = x.dim();
    let mut xp = zeroed(crate::checked_mul(npanels * NR, cols, "x")?, "x")?;
    if cols == 0 {
        return Ok(xp);
    }
    let body = |(p, out): (usize, &mut [f32])| {
        let mut row = vec![0f32; cols];
        let mut q = vec![0i8; cols];
        for j in 0..NR.min(batch - p * NR) {
            x.row_into(p * NR + j, &mut row);
            if mode == ActivationMode::Int8 {
                fake_quant_row(simd, &mut row, &mut q);
            }
            for (k, &v) in row.iter().enumerate() {
                out[k * NR + j] = v;
            }
        }
    };
    for_chunks(
        &mut xp,
        cols * NR,
        batch.saturating_mul(cols).saturating_mul(64),
        body,
    );
    Ok(xp)
}

/// `x ← q / a` with BitNet's per-token int8 rule (`quant::act_scale`,
/// `quant::quantize_act_row`); with `simd` (AVX2 + FMA) eight lanes at a
/// time, bit-identical (tested): the scalar rule rounds through a libm call
/// per element, which made int8-mode training GEMMs at small widths 2-3x
/// slower than f32 mode.
fn fake_quant_row(simd: bool, x: &mut [f32], q: &mut [i8]) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only set for levels with AVX2 + FMA.
        unsafe { x86::fake_quant(x) };
        return;
    }
    let _ = simd;
    let a = quant::act_scale(x);
    quant::quantize_act_row(x, a, q);
    for (v, &qi) in x.iter_mut().zip(q.iter()) {
        *v = qi as f32 / a;
    }
}

/// `dx = dy · W` (the input gradient of `y = x · Wᵀ`), f32 or bf16 in and
/// out, at `level`. `dy` is `[batch, rows]`, `dx` `[batch, cols]`.
///
/// Errors: shape mismatches (naming `dy`, `dx`), an unsupported `level`,
/// invalid codes in canonical bytes ([`Error::InvalidData`] naming `packed`),
/// scratch memory that cannot be allocated.
pub fn linear_grad_input(
    w: &TernaryWeights,
    dy: ActIn,
    mut dx: ActOut,
    level: CpuLevel,
) -> Result<()> {
    let (batch, n) = dy.dim();
    if n != w.rows {
        return Err(Error::shape(
            "dy",
            format!("dy has {n} columns, out_features = {}", w.rows),
        ));
    }
    if dx.dim() != (batch, w.cols) {
        let (a, b) = dx.dim();
        return Err(Error::shape(
            "dx",
            format!("dx is [{a}, {b}], expected [{batch}, {}]", w.cols),
        ));
    }
    check_level(level)?;
    let cols = w.cols;
    if batch == 0 || cols == 0 {
        return Ok(());
    }
    let simd = simd_at(level);
    let nsl = batch.div_ceil(MR);
    // dy packed as [sliver][n][MR]: the broadcasts of one tile are contiguous.
    let mut dyp = zeroed(crate::checked_mul(nsl * MR, n, "dy")?, "dy")?;
    if n > 0 {
        for_chunks(
            &mut dyp,
            n * MR,
            batch.saturating_mul(n).saturating_mul(64),
            |(s, out)| {
                let mut row = vec![0f32; n];
                for i in 0..MR.min(batch - s * MR) {
                    dy.row_into(s * MR + i, &mut row);
                    for (p, &v) in row.iter().enumerate() {
                        out[p * MR + i] = v;
                    }
                }
            },
        );
    }
    let nkb = cols.div_ceil(KB);
    let blk = nsl * MR * KB;
    let mut cacc = zeroed(crate::checked_mul(nkb, blk, "dx")?, "dx")?;
    let micro = micro_for::<MR>(simd);
    let bad = std::sync::atomic::AtomicBool::new(false);
    let body = |(kb, out): (usize, &mut [f32])| {
        let mut wbuf = vec![0f32; PC * KB];
        let k0 = kb * KB;
        let kc = KB.min(cols - k0);
        let strips = kc.div_ceil(NR);
        let mut p0 = 0;
        while p0 < n {
            let pc = PC.min(n - p0);
            if w.decode(simd, p0, pc, k0, kc, strips * NR, &mut wbuf, KB) {
                bad.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            for jr in 0..strips {
                for s in 0..nsl {
                    let a = dyp[(s * n + p0) * MR..].as_ptr();
                    let c = out[s * MR * KB + jr * NR..].as_mut_ptr();
                    // SAFETY: the sliver holds (n - p0) x MR floats from a;
                    // wbuf holds pc rows of KB floats (columns < strips·NR
                    // written); the tile lies in this task's block.
                    unsafe { micro(pc, a, 1, wbuf[jr * NR..].as_ptr(), KB, c, KB, p0 > 0) };
                }
            }
            p0 += pc;
        }
    };
    for_chunks(
        &mut cacc,
        blk,
        batch.saturating_mul(n).saturating_mul(cols),
        body,
    );
    if bad.into_inner() {
        return Err(Error::data(
            "packed",
            "packed weights contain the invalid code 11",
        ));
    }
    for b in 0..batch {
        dx.fill_row(b, |k| cacc[(k / KB) * blk + b * KB + k % KB]);
    }
    Ok(())
}

/// Quantizes `w` (`[rows, cols]`, any strides) straight into canonical
/// 2-bit bytes (`rows * ceil(cols / 4)`) and scales: the training path does
/// this once a step. Bit-identical to
/// [`quant::quantize_pack_2bit`] (tested), which it calls except on AVX2
/// machines without AVX-512 (where the library's fused kernel is scalar):
/// there whole 32-weight chunks of a scale group are divided, compared and
/// packed eight lanes at a time (`vdivps`, `vcmpps`, `pdep`).
///
/// Errors: as [`quant::quantize_pack_2bit`] (non-finite weights name
/// `weights`; invalid config fields).
pub fn quantize_pack_2bit(
    w: ArrayView2<f32>,
    cfg: &QuantConfig,
    level: CpuLevel,
) -> Result<(Vec<u8>, Vec<f32>)> {
    let (rows, cols) = w.dim();
    let glen = cfg.granularity.group_len(cols).max(1);
    let avx512 = crate::cpu::features().avx512f && CpuLevel::Avx512.allowed_under(level);
    if !simd_at(level) || avx512 || !(glen >= cols || glen.is_multiple_of(32)) {
        return quant::quantize_pack_2bit(w, cfg);
    }
    cfg.validate()?;
    let data = match w.to_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(crate::error::try_collect(
            rows * cols,
            w.iter().copied(),
            "weights",
        )?),
    };
    let ngroups = if cols == 0 { 1 } else { cols.div_ceil(glen) };
    // Per tensor: every row's statistic first. Per row / group: each row's
    // scales are computed right before it is quantized (the row is then
    // still in L1), in the library's summation order.
    let per_tensor = cfg.granularity == Granularity::PerTensor;
    let mut scales = if per_tensor || cols == 0 {
        if cols > 0 && rows > 0 {
            let per_row: Vec<f64> = if rows * cols < INLINE_WORK {
                data.chunks(cols)
                    .map(|r| group_stat(r, cfg.method))
                    .collect()
            } else {
                crate::parallel::install(|| {
                    data.par_chunks(cols)
                        .map(|r| group_stat(r, cfg.method))
                        .collect()
                })
            };
            vec![match cfg.method {
                QuantMethod::AbsMean => {
                    (per_row.iter().sum::<f64>() / (rows as f64 * cols as f64)) as f32
                }
                QuantMethod::AbsMax => per_row.iter().fold(0f64, |m, &v| m.max(v)) as f32,
            }]
        } else {
            quant::compute_scales(&data, rows, cols, cfg)?
        }
    } else {
        zeroed(crate::checked_mul(rows, ngroups, "weights")?, "weights")?
    };
    let rb = row_bytes(cols, PackedLayout::TwoBit);
    let mut packed: Vec<u8> =
        crate::error::try_zeroed(crate::checked_mul(rows, rb, "weights")?, "weights")?;
    let nonfinite = std::sync::atomic::AtomicBool::new(false);
    if cols > 0 {
        let s0 = scales.first().copied().unwrap_or(0.0);
        let srow = if per_tensor { 0 } else { ngroups };
        let mut dummy = zeroed(if per_tensor { rows } else { 0 }, "weights")?;
        let sc: &mut [f32] = if per_tensor { &mut dummy } else { &mut scales };
        // g indexes the group's K range as well as srow
        #[allow(clippy::needless_range_loop)]
        let row = |((out, src), srow): ((&mut [u8], &[f32]), &mut [f32])| {
            let mut bad = false;
            for g in 0..ngroups {
                let (k0, k1) = (g * glen, ((g + 1) * glen).min(cols));
                let s = if per_tensor {
                    s0
                } else {
                    let v = group_stat(&src[k0..k1], cfg.method);
                    srow[g] = match cfg.method {
                        QuantMethod::AbsMean => (v / (k1 - k0) as f64) as f32,
                        QuantMethod::AbsMax => v as f32,
                    };
                    srow[g]
                };
                // (divisor, bound): t = +1 iff w / d > b, -1 iff < -b
                let (d, b) = match cfg.threshold {
                    Some(f) => (1.0, f * s),
                    None => (s + cfg.eps, 0.5),
                };
                #[cfg(target_arch = "x86_64")]
                let n32 = {
                    let n32 = (k1 - k0) / 32 * 32;
                    // SAFETY: simd_at checked AVX2 + FMA (+ BMI2, part of
                    // the avx2 level); k0 is a multiple of 32 (glen is, or
                    // there is one group), so the chunk starts on a byte.
                    bad |= unsafe {
                        x86::quantize_pack(
                            &src[k0..k0 + n32],
                            &mut out[k0 / 4..(k0 + n32) / 4],
                            d,
                            b,
                            cfg.threshold.is_some(),
                        )
                    };
                    n32
                };
                #[cfg(not(target_arch = "x86_64"))]
                let n32 = 0;
                for k in k0 + n32..k1 {
                    let v = src[k];
                    let q = if cfg.threshold.is_some() { v } else { v / d };
                    let code = if q > b {
                        1u8
                    } else if q < -b {
                        2
                    } else {
                        0
                    };
                    out[k / 4] |= code << (2 * (k % 4));
                    bad |= !v.is_finite();
                }
            }
            if bad {
                nonfinite.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        };
        if rows * cols < INLINE_WORK {
            packed
                .chunks_mut(rb)
                .zip(data.chunks(cols))
                .zip(sc.chunks_mut(srow.max(1)))
                .for_each(row);
        } else {
            crate::parallel::install(|| {
                packed
                    .par_chunks_mut(rb)
                    .zip(data.par_chunks(cols))
                    .zip(sc.par_chunks_mut(srow.max(1)))
                    .for_each(row)
            });
        }
    }
    if nonfinite.into_inner() || !scales.iter().all(|s| s.is_finite()) {
        crate::check_finite(&data, "weights")?;
    }
    Ok((packed, scales))
}

/// `quant`'s group statistic (`abs_sum`: 16 f32 lanes, lane `i` taking
/// elements `i, i + 16, ...`, lanes added in f64 in order; or `abs_max`),
/// with AVX2: bit-identical (the same lanes in two registers; max is exact).
fn group_stat(xs: &[f32], method: QuantMethod) -> f64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: only reached from quantize_pack_2bit's AVX2 path.
    unsafe {
        match method {
            QuantMethod::AbsMean => x86::abs_sum(xs),
            QuantMethod::AbsMax => x86::abs_max(xs) as f64,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    match method {
        QuantMethod::AbsMean => quant::abs_sum(xs),
        QuantMethod::AbsMax => quant::abs_max(xs) as f64,
    }
}

/// Whether the matrix dispatcher should send this product to
/// [`gemm_matrix`]: f32 activations, batch >= [`MIN_BATCH`], the 2-bit
/// compute format, and a level with the SIMD kernels.
pub(crate) fn handles(
    m: &TernaryMatrix,
    batch: usize,
    mode: ActivationMode,
    level: CpuLevel,
) -> bool {
    mode == ActivationMode::F32
        && batch >= MIN_BATCH
        && m.compute_format() == ComputeFormat::TwoBit
        && simd_at(level)
}

/// The dispatcher's entry: [`linear`] on a matrix (shapes already checked).
pub(crate) fn gemm_matrix(
    m: &TernaryMatrix,
    x: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
    y: ArrayViewMut2<f32>,
    level: CpuLevel,
) -> Result<()> {
    let w = TernaryWeights::of_matrix(m).ok_or_else(|| {
        Error::invalid(
            "matrix",
            "the training kernels read the 2-bit compute format",
        )
    })?;
    linear(
        &w,
        ActIn::F32(x),
        bias,
        ActivationMode::F32,
        ActOut::F32(y),
        level,
    )
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// Canonical 2-bit decode, 8 weights a step: the two bytes of 8 codes
    /// broadcast, shifted per lane, looked up in `[0, s, -s, 0]` (the table
    /// repeats, so the bit above each code is ignored by `vpermps`).
    ///
    /// # Safety
    /// AVX2 + FMA; `src` holds `ceil(kc / 4)` bytes, `out` `kc` floats.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn decode_canonical(src: *const u8, kc: usize, s: f32, out: *mut f32) {
        let table = _mm256_setr_ps(0.0, s, -s, 0.0, 0.0, s, -s, 0.0);
        let shifts = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        let n8 = kc / 8;
        // SAFETY: chunk c reads bytes 2c, 2c + 1 < ceil(kc / 4) and writes
        // floats 8c..8c + 8 <= kc.
        unsafe {
            for c in 0..n8 {
                let v = (src.add(2 * c) as *const u16).read_unaligned() as i32;
                let idx = _mm256_srlv_epi32(_mm256_set1_epi32(v), shifts);
                _mm256_storeu_ps(out.add(8 * c), _mm256_permutevar8x32_ps(table, idx));
            }
            let t = [0.0, s, -s, 0.0];
            for k in n8 * 8..kc {
                *out.add(k) = t[((*src.add(k / 4) >> (2 * (k % 4))) & 3) as usize];
            }
        }
    }

    /// Compute-layout (bit plane) decode: plane `i` of bytes `j..j + 8`
    /// gives weights `64 i + j..`, codes `t + 1` looked up in `[-s, 0, s, 0]`.
    ///
    /// # Safety
    /// AVX2 + FMA; `block` holds 64 bytes, `out` `kc <= 256` floats.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn decode_planes(block: *const u8, kc: usize, s: f32, out: *mut f32) {
        let table = _mm256_setr_ps(-s, 0.0, s, 0.0, -s, 0.0, s, 0.0);
        // SAFETY: reads stay within the 64-byte block, writes below kc.
        unsafe {
            for i in 0..4 {
                let sh = _mm_cvtsi32_si128(2 * i as i32);
                for j in (0..64).step_by(8) {
                    let k = 64 * i + j;
                    if k + 8 <= kc {
                        let bytes = _mm_loadl_epi64(block.add(j) as *const __m128i);
                        let idx = _mm256_srl_epi32(_mm256_cvtepu8_epi32(bytes), sh);
                        _mm256_storeu_ps(out.add(k), _mm256_permutevar8x32_ps(table, idx));
                    } else {
                        for kk in k..kc.min(k + 8) {
                            let c = (*block.add(kk % 64) >> (2 * i)) & 3;
                            *out.add(kk) = (c as f32 - 1.0) * s;
                        }
                    }
                }
            }
        }
    }

    /// Weights ahead the quantizer's streams prefetch: 4 KiB (on Zen 3 the
    /// hardware prefetcher alone leaves a single stream well below the
    /// read bandwidth, as it did for the GEMV).
    const PREFETCH_FLOATS: usize = 1024;

    /// Hints the cache to load the line `PREFETCH_FLOATS` after `p` (which
    /// may lie past the slice: a prefetch never faults).
    #[inline(always)]
    fn prefetch_ahead(p: *const f32) {
        // SAFETY: a prefetch of any address is harmless; wrapping_add
        // computes the address without an in-bounds requirement.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_FLOATS) as *const i8) };
    }

    /// `quant::abs_sum` (see `group_stat`).
    ///
    /// # Safety
    /// AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn abs_sum(xs: &[f32]) -> f64 {
        let absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let (mut a, mut b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut chunks = xs.chunks_exact(16);
        for c in &mut chunks {
            prefetch_ahead(c.as_ptr());
            // SAFETY: c holds 16 floats.
            unsafe {
                a = _mm256_add_ps(a, _mm256_and_ps(_mm256_loadu_ps(c.as_ptr()), absmask));
                b = _mm256_add_ps(
                    b,
                    _mm256_and_ps(_mm256_loadu_ps(c.as_ptr().add(8)), absmask),
                );
            }
        }
        let mut lanes = [0f32; 16];
        // SAFETY: lanes holds 16 floats.
        unsafe {
            _mm256_storeu_ps(lanes.as_mut_ptr(), a);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), b);
        }
        for (l, v) in lanes.iter_mut().zip(chunks.remainder()) {
            *l += v.abs();
        }
        lanes.iter().map(|&v| v as f64).sum()
    }

    /// `quant::abs_max`: max |x|, NaN ignored (as `f32::max`), 0 when empty.
    ///
    /// # Safety
    /// AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn abs_max(xs: &[f32]) -> f32 {
        let absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let (mut a, mut b) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut chunks = xs.chunks_exact(16);
        for c in &mut chunks {
            prefetch_ahead(c.as_ptr());
            // SAFETY: c holds 16 floats. `max(v, acc)` returns acc when v is NaN.
            unsafe {
                a = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(c.as_ptr()), absmask), a);
                b = _mm256_max_ps(
                    _mm256_and_ps(_mm256_loadu_ps(c.as_ptr().add(8)), absmask),
                    b,
                );
            }
        }
        let mut lanes = [0f32; 8];
        // SAFETY: lanes holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_max_ps(a, b)) };
        let m = lanes.iter().fold(0f32, |m, &v| m.max(v));
        chunks.remainder().iter().fold(m, |m, v| m.max(v.abs()))
    }

    /// `fake_quant_row`'s rule in place: `a = 127 / max(max|x|, 1e-5)`,
    /// `x ← clamp(round_ties_even(x·a), -128, 127) / a`, a NaN product
    /// giving 0 (as the scalar `as i8`) and `-0` giving `+0` (the scalar
    /// path goes through an integer).
    ///
    /// # Safety
    /// AVX2 + FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fake_quant(x: &mut [f32]) {
        // SAFETY: AVX2 (the caller's contract).
        let a = 127.0 / unsafe { abs_max(x) }.max(1e-5);
        let (av, lo, hi, zero) = (
            _mm256_set1_ps(a),
            _mm256_set1_ps(-128.0),
            _mm256_set1_ps(127.0),
            _mm256_setzero_ps(),
        );
        let mut chunks = x.chunks_exact_mut(8);
        for c in &mut chunks {
            // SAFETY: c holds 8 floats.
            unsafe {
                let p = _mm256_mul_ps(_mm256_loadu_ps(c.as_ptr()), av);
                let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(p);
                // NaN -> 0, then -0 -> +0
                let r = _mm256_add_ps(_mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(r, r)), zero);
                let r = _mm256_max_ps(_mm256_min_ps(r, hi), lo);
                _mm256_storeu_ps(c.as_mut_ptr(), _mm256_div_ps(r, av));
            }
        }
        for v in chunks.into_remainder() {
            let q = (*v * a).round_ties_even().clamp(-128.0, 127.0) as i8;
            *v = q as f32 / a;
        }
    }

    /// Quantizes and packs `src` (a multiple of 32 weights) into `dst`
    /// (`src.len() / 4` bytes): `q = w / d` (or `w` with a threshold),
    /// `t = +1` iff `q > b`, `-1` iff `q < -b` (ordered compares: NaN gives
    /// 0, as the scalar rule). Returns whether any weight was not finite.
    ///
    /// # Safety
    /// AVX2 + FMA + BMI2.
    #[target_feature(enable = "avx2,fma,bmi2")]
    pub(super) unsafe fn quantize_pack(
        src: &[f32],
        dst: &mut [u8],
        d: f32,
        b: f32,
        threshold: bool,
    ) -> bool {
        const EVEN: u64 = 0x5555_5555_5555_5555;
        let (dv, hi, lo) = (_mm256_set1_ps(d), _mm256_set1_ps(b), _mm256_set1_ps(-b));
        let absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let max = _mm256_set1_ps(f32::MAX);
        let mut bad = _mm256_setzero_ps();
        for (s, o) in src.chunks_exact(32).zip(dst.chunks_exact_mut(8)) {
            prefetch_ahead(s.as_ptr());
            prefetch_ahead(s.as_ptr().wrapping_add(16));
            let (mut p, mut n) = (0u64, 0u64);
            for i in 0..4 {
                // SAFETY: s holds 32 floats.
                let w = unsafe { _mm256_loadu_ps(s.as_ptr().add(8 * i)) };
                bad = _mm256_or_ps(
                    bad,
                    _mm256_cmp_ps::<_CMP_NLE_UQ>(_mm256_and_ps(w, absmask), max),
                );
                let q = if threshold { w } else { _mm256_div_ps(w, dv) };
                p |= (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(q, hi)) as u64) << (8 * i);
                n |= (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(q, lo)) as u64) << (8 * i);
            }
            // +1 -> code 01 (even bit), -1 -> code 10 (odd bit), weight e at bits 2e
            let v = _pdep_u64(p, EVEN) | _pdep_u64(n, EVEN << 1);
            o.copy_from_slice(&v.to_le_bytes());
        }
        _mm256_movemask_ps(bad) != 0
    }

    /// The 6 x 16 FMA micro-kernel: `c[i][j] (+)= Σ_p a[i·rs + p·CS] · b[p·ldb + j]`.
    ///
    /// # Safety
    /// AVX2 + FMA; `a` valid for reads at `i·rs + p·CS`, `b` at
    /// `p·ldb + j`, `c` for reads/writes at `i·ldc + j`
    /// (`i < MR`, `j < NR`, `p < kc`).
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn micro<const CS: usize>(
        kc: usize,
        a: *const f32,
        rs: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
    ) {
        const { assert!(MR == 6 && NR == 16) };
        // SAFETY: the caller's contract covers every offset used.
        unsafe {
            let ld = |i: usize, h: usize| {
                if accumulate {
                    _mm256_loadu_ps(c.add(i * ldc + 8 * h))
                } else {
                    _mm256_setzero_ps()
                }
            };
            let (mut c00, mut c01) = (ld(0, 0), ld(0, 1));
            let (mut c10, mut c11) = (ld(1, 0), ld(1, 1));
            let (mut c20, mut c21) = (ld(2, 0), ld(2, 1));
            let (mut c30, mut c31) = (ld(3, 0), ld(3, 1));
            let (mut c40, mut c41) = (ld(4, 0), ld(4, 1));
            let (mut c50, mut c51) = (ld(5, 0), ld(5, 1));
            let (mut ap, mut bp) = (a, b);
            for _ in 0..kc {
                let b0 = _mm256_loadu_ps(bp);
                let b1 = _mm256_loadu_ps(bp.add(8));
                let a0 = _mm256_broadcast_ss(&*ap);
                c00 = _mm256_fmadd_ps(a0, b0, c00);
                c01 = _mm256_fmadd_ps(a0, b1, c01);
                let a1 = _mm256_broadcast_ss(&*ap.add(rs));
                c10 = _mm256_fmadd_ps(a1, b0, c10);
                c11 = _mm256_fmadd_ps(a1, b1, c11);
                let a2 = _mm256_broadcast_ss(&*ap.add(2 * rs));
                c20 = _mm256_fmadd_ps(a2, b0, c20);
                c21 = _mm256_fmadd_ps(a2, b1, c21);
                let a3 = _mm256_broadcast_ss(&*ap.add(3 * rs));
                c30 = _mm256_fmadd_ps(a3, b0, c30);
                c31 = _mm256_fmadd_ps(a3, b1, c31);
                let a4 = _mm256_broadcast_ss(&*ap.add(4 * rs));
                c40 = _mm256_fmadd_ps(a4, b0, c40);
                c41 = _mm256_fmadd_ps(a4, b1, c41);
                let a5 = _mm256_broadcast_ss(&*ap.add(5 * rs));
                c50 = _mm256_fmadd_ps(a5, b0, c50);
                c51 = _mm256_fmadd_ps(a5, b1, c51);
                ap = ap.add(CS);
                bp = bp.add(ldb);
            }
            let st = |i: usize, v0: __m256, v1: __m256| {
                _mm256_storeu_ps(c.add(i * ldc), v0);
                _mm256_storeu_ps(c.add(i * ldc + 8), v1);
            };
            st(0, c00, c01);
            st(1, c10, c11);
            st(2, c20, c21);
            st(3, c30, c31);
            st(4, c40, c41);
            st(5, c50, c51);
        }
    }
}

#[cfg(test)]
mod tests;
