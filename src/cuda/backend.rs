//! The backend of a `cuda` build: argument checks, device copies of the
//! weights, scratch memory and the launches of the kernels in `cuda/*.cu`.
//! The stub (`stub.rs`) has the same API.

use std::ffi::c_void;
use std::sync::{Arc, Mutex, MutexGuard};

use super::driver::{self, Alloc, Device};
use super::layout::{self, Dims};
use super::{DeviceCopy, DeviceMatrix, DeviceVector, Dtype, Stream};
use crate::ternary::pack::{row_bytes, PackedLayout};
use crate::ternary::quant::{QuantConfig, QuantMethod};
use crate::ternary::{ActivationMode, Granularity, TernaryMatrix};
use crate::{Error, Result};

/// Why no kernel can run here (`None` when they can).
pub fn unavailable_reason() -> Option<String> {
    driver::unavailable_reason()
}

/// Number of CUDA devices that can run the kernels.
pub fn device_count() -> usize {
    driver::device_count()
}

/// Name, compute capability and multiprocessor count of `device`.
pub fn describe(device: i32) -> Result<String> {
    let d = driver::device(device)?;
    Ok(format!(
        "{} (sm_{}{}, {} SMs)",
        d.name, d.cc.0, d.cc.1, d.sm_count
    ))
}

/// Waits for all work queued on `device` (surfaces asynchronous kernel errors).
pub fn synchronize(device: i32) -> Result<()> {
    let d = driver::device(device)?;
    let _c = d.enter()?;
    driver::sync_context()
}

fn bytes_of<T: DeviceCopy>(s: &[T]) -> &[u8] {
    // SAFETY: DeviceCopy types are plain data without padding.
    unsafe { std::slice::from_raw_parts(s.as_ptr() as *const u8, std::mem::size_of_val(s)) }
}

fn bytes_of_mut<T: DeviceCopy>(s: &mut [T]) -> &mut [u8] {
    // SAFETY: as above, and every bit pattern is a valid T.
    unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut u8, std::mem::size_of_val(s)) }
}

// ------------------------------------------------------------ weights

/// One device's copy of a matrix: the layout of [`layout`] and the scales.
pub(crate) struct DeviceWeights {
    w: Alloc,
    scales: Alloc,
    dims: Dims,
}

/// The device copies of a [`TernaryMatrix`]'s weights, one per device,
/// made on first use. Clones share the copies (the weights are immutable).
#[derive(Default)]
pub struct DeviceCache {
    slots: Mutex<Vec<(i32, Arc<DeviceWeights>)>>,
}

impl Clone for DeviceCache {
    fn clone(&self) -> Self {
        DeviceCache {
            slots: Mutex::new(self.lock().clone()),
        }
    }
}

impl std::fmt::Debug for DeviceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCache")
            .field("devices", &self.devices())
            .finish()
    }
}

impl DeviceCache {
    fn lock(&self) -> MutexGuard<'_, Vec<(i32, Arc<DeviceWeights>)>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Devices holding a copy.
    pub fn devices(&self) -> Vec<i32> {
        self.lock().iter().map(|(d, _)| *d).collect()
    }

    fn get(&self, m: &TernaryMatrix, dev: &'static Device) -> Result<Arc<DeviceWeights>> {
        let mut slots = self.lock();
        if let Some((_, w)) = slots.iter().find(|(d, _)| *d == dev.ordinal) {
            return Ok(w.clone());
        }
        let w = Arc::new(upload_weights(m, dev)?);
        slots.push((dev.ordinal, w.clone()));
        Ok(w)
    }
}

fn upload_weights(m: &TernaryMatrix, dev: &'static Device) -> Result<DeviceWeights> {
    let dims = Dims::new(m.rows(), m.cols());
    let words = layout::build(m);
    let _cur = dev.enter()?;
    let w = Alloc::persistent(dev, words.len() * 4)?;
    driver::htod(w.ptr, bytes_of(&words))?;
    let scales = Alloc::persistent(dev, m.scales().len() * 4)?;
    driver::htod(scales.ptr, bytes_of(m.scales()))?;
    Ok(DeviceWeights { w, scales, dims })
}

/// Uploads `m`'s weights to `device` (once; see [`TernaryMatrix::to_device`]).
pub fn upload(m: &TernaryMatrix, device: i32) -> Result<()> {
    let dev = driver::device(device)?;
    m.device_cache().get(m, dev).map(|_| ())
}

// ------------------------------------------------------------- checks

fn want_dtype(d: Dtype, ok: &[Dtype], name: &'static str) -> Result<()> {
    if ok.contains(&d) {
        return Ok(());
    }
    let names: Vec<&str> = ok.iter().map(|d| d.name()).collect();
    Err(Error::UnsupportedDtype {
        arg: name,
        msg: format!("expected {}, got {}", names.join(" or "), d.name()),
    })
}

fn same_device(a: i32, b: i32, name: &'static str, first: &str) -> Result<()> {
    if a == b {
        return Ok(());
    }
    Err(Error::UnsupportedDevice {
        arg: name,
        msg: format!("on CUDA device {b}, `{first}` on device {a}"),
    })
}

fn check_matrix(dev: &Device, m: &DeviceMatrix, name: &'static str) -> Result<()> {
    if m.rows > 1 && m.ld < m.cols {
        return Err(Error::invalid(
            name,
            format!("row stride {} < {} columns", m.ld, m.cols),
        ));
    }
    dev.check_range(m.ptr, m.extent_bytes()?, name)
}

fn check_vector(dev: &Device, v: &DeviceVector, name: &'static str) -> Result<()> {
    let bytes = v
        .len
        .checked_mul(v.dtype.size())
        .ok_or_else(|| Error::overflow(name, "vector size overflows"))?;
    dev.check_range(v.ptr, bytes, name)
}

fn to_i32(v: usize, name: &'static str) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::overflow(name, format!("{v} exceeds the kernels' 2^31 limit")))
}

fn grid_1d(items: usize, per_block: usize, cap: usize) -> u32 {
    items.div_ceil(per_block).clamp(1, cap.max(1)) as u32
}

/// Argument pointers for cuLaunchKernel.
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        [$(&$v as *const _ as *mut c_void),*]
    };
}

// ------------------------------------------------------------- matmul

/// `TmmParams` of `cuda/ternary_matmul.cu`, field for field.
#[repr(C)]
#[derive(Clone, Copy)]
struct TmmParams {
    w: u64,
    scales: u64,
    x: u64,
    xsum: u64,
    xscale: u64,
    bias: u64,
    y: u64,
    ldy: i64,
    rows: i32,
    cols: i32,
    tokens: i32,
    tok_pad: i32,
    kp: i32,
    nsb: i32,
    used_row_tiles: i32,
    gkind: i32,
    group_len: i32,
    ngroups: i32,
    parts: i32,
    ydtype: i32,
    split: i32,
    pad_: i32,
}

/// Tokens up to which the small-batch kernel runs (its block column).
const SMALL_TOKENS: usize = 32;
const GEMM_ROW_TILES: usize = 8;

fn dtype_code(d: Dtype) -> i32 {
    match d {
        Dtype::F32 => 0,
        Dtype::Bf16 => 1,
        _ => 2,
    }
}

fn align256(v: usize) -> usize {
    v.div_ceil(256) * 256
}

/// `y = x · Wᵀ (+ bias)` on the GPU, queued on `stream`.
///
/// * `x`: `[batch, m.cols()]` of f32, bf16 or f16; `y`: `[batch, m.rows()]`
///   of f32, bf16 or f16 (written, rounded to nearest even); `bias`: `None`
///   or `m.rows()` f32. All on one device.
/// * [`ActivationMode::Int8`]: each row of `x` is quantized as
///   [`quantize_activations_i8`] does; the result is bit-identical to the
///   CPU reference given the same (widened) activations.
/// * [`ActivationMode::F32`]: tensor-core products of the exact weights with
///   bf16/f16 activations (f32 activations are split into three bf16 parts
///   whose sum is the value to 2⁻²⁴ relative), f32 accumulation; within the
///   CPU's documented bound `cols · 2⁻²³ · Σ_g |s| Σ |x|`.
/// * Per-group scales need `group_size % 32 == 0` (or one group a row).
/// * Inputs are not scanned for NaN/inf (that would need a host
///   synchronization): they propagate into `y`.
///
/// The weights are uploaded to the device on first use (synchronously).
///
/// # Safety
/// Every view must describe live device memory that stays valid until the
/// queued work completes; `y` must not overlap the inputs.
pub unsafe fn ternary_matmul(
    m: &TernaryMatrix,
    x: DeviceMatrix,
    bias: Option<DeviceVector>,
    mode: ActivationMode,
    y: DeviceMatrix,
    stream: Stream,
) -> Result<()> {
    let floats = [Dtype::F32, Dtype::Bf16, Dtype::F16];
    want_dtype(x.dtype, &floats, "x")?;
    want_dtype(y.dtype, &floats, "y")?;
    if x.cols != m.cols() {
        return Err(Error::shape(
            "x",
            format!(
                "x has {} columns, the matrix has in_features = {}",
                x.cols,
                m.cols()
            ),
        ));
    }
    if (y.rows, y.cols) != (x.rows, m.rows()) {
        return Err(Error::shape(
            "y",
            format!(
                "y is [{}, {}], expected [{}, {}]",
                y.rows,
                y.cols,
                x.rows,
                m.rows()
            ),
        ));
    }
    same_device(x.device, y.device, "y", "x")?;
    if let Some(b) = &bias {
        want_dtype(b.dtype, &[Dtype::F32], "bias")?;
        if b.len != m.rows() {
            return Err(Error::shape(
                "bias",
                format!("bias has {} elements, out_features = {}", b.len, m.rows()),
            ));
        }
        same_device(x.device, b.device, "bias", "x")?;
    }
    let (rows, cols, tokens) = (m.rows(), m.cols(), x.rows);
    let (gkind, group_len, ngroups) = match m.granularity() {
        Granularity::PerTensor => (0, cols, 1),
        Granularity::PerRow => (1, cols, 1),
        Granularity::PerGroup(g) => {
            let ng = cols.div_ceil(g).max(1);
            if ng == 1 {
                (1, cols, 1) // one group a row: the per-row scale layout
            } else if g % 32 != 0 {
                return Err(Error::invalid(
                    "matrix",
                    format!(
                        "the CUDA matmul needs per-group scales with group_size % 32 == 0, got {g}"
                    ),
                ));
            } else {
                (2, g, ng)
            }
        }
    };
    let dev = driver::device(x.device)?;
    let _cur = dev.enter()?;
    check_matrix(dev, &x, "x")?;
    check_matrix(dev, &y, "y")?;
    if let Some(b) = &bias {
        check_vector(dev, b, "bias")?;
    }
    if tokens == 0 || rows == 0 {
        return Ok(());
    }
    let wts = m.device_cache().get(m, dev)?;
    let dims = wts.dims;
    let kp = dims.kp();
    let grouped = gkind == 2;
    let gemm = !grouped && tokens > SMALL_TOKENS;
    let tok_pad = if gemm {
        tokens.div_ceil(layout::TOKENS_GEMM) * layout::TOKENS_GEMM
    } else {
        tokens.div_ceil(layout::TOKENS_SMALL) * layout::TOKENS_SMALL
    };
    let (kmode, parts) = match (mode, x.dtype) {
        (ActivationMode::Int8, _) => ("i8", 1usize),
        (ActivationMode::F32, Dtype::F32) => ("bf16", 3),
        (ActivationMode::F32, Dtype::Bf16) => ("bf16", 1),
        (ActivationMode::F32, _) => ("f16", 1),
    };
    for (v, n) in [
        (rows, "rows"),
        (cols, "cols"),
        (tok_pad, "batch"),
        (kp, "cols"),
    ] {
        to_i32(v, n)?;
    }
    if (!gemm && tok_pad.div_ceil(SMALL_TOKENS) > 65535) || (gemm && tok_pad / 128 > 65535) {
        return Err(Error::overflow(
            "x",
            format!("batch {tokens} is too large for one launch"),
        ));
    }
    let plane = tok_pad
        .checked_mul(kp)
        .ok_or_else(|| Error::overflow("x", "activation scratch overflows"))?;
    // Scratch: int8 q | sum(q) per group | scale per token, or the half planes.
    let (q_off, sum_off, scale_off, total) = if kmode == "i8" {
        let s = align256(plane);
        let c = s + align256(tok_pad * ngroups * 4);
        (0, s, c, c + align256(tokens * 4))
    } else {
        (0, 0, 0, plane * parts * 2)
    };
    let scratch = Alloc::scratch(dev, total, stream)?;
    let sp = scratch.ptr;

    // 1. Activations.
    let (xptr, ldx, tokens_i, cols_i, kp_i, tok_pad_i) = (
        x.ptr,
        x.ld as i64,
        tokens as i32,
        cols as i32,
        kp as i32,
        tok_pad as i32,
    );
    if kmode == "i8" {
        let smem = ngroups * 4;
        if smem > 96 << 10 {
            return Err(Error::invalid(
                "matrix",
                format!("{ngroups} scale groups a row is more than the CUDA kernels take (24576)"),
            ));
        }
        let name = match x.dtype {
            Dtype::F32 => "act_quant_i8_f32",
            Dtype::Bf16 => "act_quant_i8_bf16",
            _ => "act_quant_i8_f16",
        };
        let f = dev.func(name, smem)?;
        let (q, ldq, xs, xsum) = (
            sp + q_off as u64,
            kp as i64,
            sp + scale_off as u64,
            sp + sum_off as u64,
        );
        let (glen, ng) = (
            if grouped { group_len } else { kp.max(1) } as i32,
            ngroups as i32,
        );
        let mut a = args![xptr, ldx, tokens_i, cols_i, kp_i, q, ldq, xs, xsum, glen, ng];
        unsafe { dev.launch(f, (tok_pad as u32, 1, 1), 256, smem, stream, &mut a, name)? };
    } else {
        let name = match x.dtype {
            Dtype::F32 => "act_prep_f32",
            Dtype::Bf16 => "act_prep_bf16",
            _ => "act_prep_f16",
        };
        let f = dev.func(name, 0)?;
        let out = sp;
        let mut a = args![xptr, ldx, tokens_i, cols_i, tok_pad_i, kp_i, out];
        let grid = grid_1d(plane, 256, dev.sm_count as usize * 16);
        unsafe { dev.launch(f, (grid, 1, 1), 256, 0, stream, &mut a, name)? };
    }

    // 2. The product.
    let nrg = dims.used_row_tiles().div_ceil(2);
    let grid_y = tok_pad.div_ceil(SMALL_TOKENS);
    let split = if (grouped && kmode == "i8") || nrg * grid_y >= 8 * dev.sm_count as usize {
        1
    } else {
        4
    };
    let mut p = TmmParams {
        w: wts.w.ptr,
        scales: wts.scales.ptr,
        x: sp,
        xsum: sp + sum_off as u64,
        xscale: sp + scale_off as u64,
        bias: bias.map_or(0, |b| b.ptr),
        y: y.ptr,
        ldy: y.ld as i64,
        rows: rows as i32,
        cols: cols as i32,
        tokens: tokens as i32,
        tok_pad: tok_pad as i32,
        kp: kp as i32,
        nsb: dims.superblocks as i32,
        used_row_tiles: dims.used_row_tiles() as i32,
        gkind,
        group_len: group_len as i32,
        ngroups: ngroups as i32,
        parts: parts as i32,
        ydtype: dtype_code(y.dtype),
        split,
        pad_: 0,
    };
    let mut a = [&mut p as *mut TmmParams as *mut c_void];
    if gemm {
        let name = match kmode {
            "i8" => "tmm_gemm_i8",
            "bf16" => "tmm_gemm_bf16",
            _ => "tmm_gemm_f16",
        };
        let esz = if kmode == "i8" { 1 } else { 2 };
        let smem = 2 * 128 * (128 * esz + 16);
        let f = dev.func(name, smem)?;
        let grid = (
            (dims.row_tiles / GEMM_ROW_TILES) as u32,
            (tok_pad / 128) as u32,
            1,
        );
        unsafe { dev.launch(f, grid, 256, smem, stream, &mut a, name)? };
    } else {
        let name = match kmode {
            "i8" => "tmm_small_i8",
            "bf16" => "tmm_small_bf16",
            _ => "tmm_small_f16",
        };
        let f = dev.func(name, 0)?;
        let gx = if split == 1 { nrg.div_ceil(4) } else { nrg };
        unsafe {
            dev.launch(
                f,
                (gx as u32, grid_y as u32, 1),
                128,
                0,
                stream,
                &mut a,
                name,
            )?
        };
    }
    drop(scratch); // freed in stream order after the kernels
    Ok(())
}

// --------------------------------------------------------- quantization

/// Quantizes f32 weights `w` (`[rows, cols]`) with `cfg` and packs them in
/// the canonical 2-bit layout into `packed` (`uint8 [rows, ceil(cols/4)]`,
/// contiguous) and `scales` (`cfg.granularity.num_scales(rows, cols)` f32),
/// bit-identical to [`crate::ternary::quant::quantize_pack_2bit`].
///
/// Synchronous: it waits for the scale pass to report non-finite weights
/// ([`Error::NonFinite`] naming `weights` with the first flat index, as the
/// CPU does).
///
/// # Safety
/// Every view must describe live device memory; outputs must not overlap `w`.
pub unsafe fn quantize_pack_2bit(
    w: DeviceMatrix,
    cfg: &QuantConfig,
    packed: DeviceMatrix,
    scales: DeviceVector,
    stream: Stream,
) -> Result<()> {
    cfg.validate()?;
    want_dtype(w.dtype, &[Dtype::F32], "weights")?;
    want_dtype(packed.dtype, &[Dtype::U8], "packed")?;
    want_dtype(scales.dtype, &[Dtype::F32], "scales")?;
    let (rows, cols) = (w.rows, w.cols);
    let rb = row_bytes(cols, PackedLayout::TwoBit);
    if (packed.rows, packed.cols) != (rows, rb) {
        return Err(Error::shape(
            "packed",
            format!(
                "packed is [{}, {}], expected [{rows}, {rb}]",
                packed.rows, packed.cols
            ),
        ));
    }
    if packed.rows > 1 && packed.ld != packed.cols {
        return Err(Error::invalid("packed", "must be contiguous"));
    }
    let ns = cfg.granularity.num_scales(rows, cols);
    if scales.len != ns {
        return Err(Error::shape(
            "scales",
            format!(
                "{:?} on {rows}x{cols} needs {ns} scales, got {}",
                cfg.granularity, scales.len
            ),
        ));
    }
    same_device(w.device, packed.device, "packed", "weights")?;
    same_device(w.device, scales.device, "scales", "weights")?;
    let dev = driver::device(w.device)?;
    let _cur = dev.enter()?;
    check_matrix(dev, &w, "weights")?;
    check_matrix(dev, &packed, "packed")?;
    check_vector(dev, &scales, "scales")?;
    if rows == 0 || cols == 0 {
        driver::memset(scales.ptr, 0, ns * 4, stream)?;
        return Ok(());
    }
    let (gkind, glen, ngroups) = match cfg.granularity {
        Granularity::PerTensor => (0i32, cols, 1usize),
        Granularity::PerRow => (1, cols, 1),
        Granularity::PerGroup(g) => (2, g, cols.div_ceil(g)),
    };
    for (v, n) in [(rows, "rows"), (cols, "cols"), (ngroups, "group_size")] {
        to_i32(v, n)?;
    }
    let halfwarps = rows
        .checked_mul(ngroups)
        .and_then(|v| v.checked_mul(16))
        .filter(|&v| v / 256 < u32::MAX as usize)
        .ok_or_else(|| Error::overflow("weights", "too many scale groups for one launch"))?;
    let scratch = Alloc::scratch(dev, align256(rows * 8) + 8, stream)?;
    let (row_stat, bad) = (scratch.ptr, scratch.ptr + align256(rows * 8) as u64);
    driver::memset(bad, 0xff, 8, stream)?;
    let method = match cfg.method {
        QuantMethod::AbsMean => 0i32,
        QuantMethod::AbsMax => 1,
    };
    let (wp, ldw, rows_i, cols_i, glen_i, ng_i) = (
        w.ptr,
        w.ld as i64,
        rows as i32,
        cols as i32,
        glen.min(i32::MAX as usize) as i32,
        ngroups as i32,
    );
    let sp = scales.ptr;
    let f = dev.func("quant_scales", 0)?;
    let mut a = args![wp, ldw, rows_i, cols_i, glen_i, ng_i, method, gkind, sp, row_stat, bad];
    let grid = halfwarps.div_ceil(256) as u32;
    unsafe { dev.launch(f, (grid, 1, 1), 256, 0, stream, &mut a, "quant_scales")? };
    let mut first = [0u64; 1];
    driver::dtoh(bytes_of_mut(&mut first), bad, stream)?;
    if first[0] != u64::MAX {
        return Err(Error::NonFinite {
            arg: "weights",
            index: first[0] as usize,
        });
    }
    if gkind == 0 {
        let f = dev.func("quant_scale_tensor", 0)?;
        let mut a = args![row_stat, rows_i, cols_i, method, sp];
        unsafe { dev.launch(f, (1, 1, 1), 32, 0, stream, &mut a, "quant_scale_tensor")? };
    }
    let (use_thr, thr) = match cfg.threshold {
        Some(t) => (1i32, t),
        None => (0, 0.0f32),
    };
    let (eps, out, rb_i) = (cfg.eps, packed.ptr, to_i32(rb, "cols")?);
    let f = dev.func("quant_pack", 0)?;
    let mut a =
        args![wp, ldw, rows_i, cols_i, glen_i, ng_i, gkind, sp, use_thr, thr, eps, out, rb_i];
    let grid = grid_1d(rows * rb, 256, dev.sm_count as usize * 32);
    unsafe { dev.launch(f, (grid, 1, 1), 256, 0, stream, &mut a, "quant_pack")? };
    drop(scratch);
    Ok(())
}

/// Int8 per-token absmax quantization of `x` (`[batch, dim]` f32, bf16 or
/// f16) into `q` (`int8 [batch, dim]`) and `scales` (`batch` f32), as
/// [`crate::ternary::quant::quantize_activations_i8`] does, bit for bit, on
/// finite input. A row holding NaN or inf gets scale NaN (no error: the
/// check would need a host synchronization).
///
/// # Safety
/// Every view must describe live device memory; outputs must not overlap `x`.
pub unsafe fn quantize_activations_i8(
    x: DeviceMatrix,
    q: DeviceMatrix,
    scales: DeviceVector,
    stream: Stream,
) -> Result<()> {
    want_dtype(x.dtype, &[Dtype::F32, Dtype::Bf16, Dtype::F16], "x")?;
    want_dtype(q.dtype, &[Dtype::I8], "q")?;
    want_dtype(scales.dtype, &[Dtype::F32], "scales")?;
    if (q.rows, q.cols) != (x.rows, x.cols) {
        return Err(Error::shape(
            "q",
            format!(
                "q is [{}, {}], x is [{}, {}]",
                q.rows, q.cols, x.rows, x.cols
            ),
        ));
    }
    if scales.len != x.rows {
        return Err(Error::shape(
            "scales",
            format!("{} scales for {} rows", scales.len, x.rows),
        ));
    }
    same_device(x.device, q.device, "q", "x")?;
    same_device(x.device, scales.device, "scales", "x")?;
    let dev = driver::device(x.device)?;
    let _cur = dev.enter()?;
    check_matrix(dev, &x, "x")?;
    check_matrix(dev, &q, "q")?;
    check_vector(dev, &scales, "scales")?;
    if x.rows == 0 {
        return Ok(());
    }
    let name = match x.dtype {
        Dtype::F32 => "act_quant_i8_f32",
        Dtype::Bf16 => "act_quant_i8_bf16",
        _ => "act_quant_i8_f16",
    };
    let f = dev.func(name, 0)?;
    let (xp, ldx, b, d) = (
        x.ptr,
        x.ld as i64,
        to_i32(x.rows, "x")?,
        to_i32(x.cols, "x")?,
    );
    let (qp, ldq, sp, nul, glen, ng) = (q.ptr, q.ld as i64, scales.ptr, 0u64, d.max(1), 1i32);
    let mut a = args![xp, ldx, b, d, d, qp, ldq, sp, nul, glen, ng];
    if x.rows > 65535 * 1024 {
        return Err(Error::overflow("x", "too many rows for one launch"));
    }
    unsafe { dev.launch(f, (x.rows as u32, 1, 1), 256, 0, stream, &mut a, name) }
}

// ---------------------------------------------------------- conversion

/// Converts `src` into `dst` (f32 → bf16/f16, or bf16/f16 → f32; equal
/// lengths), bit-identical to [`crate::precision::convert`].
///
/// # Safety
/// Both views must describe live device memory that does not overlap.
pub unsafe fn convert(src: DeviceVector, dst: DeviceVector, stream: Stream) -> Result<()> {
    let name = match (src.dtype, dst.dtype) {
        (Dtype::F32, Dtype::Bf16) => "cvt_f32_to_bf16",
        (Dtype::F32, Dtype::F16) => "cvt_f32_to_f16",
        (Dtype::Bf16, Dtype::F32) => "cvt_bf16_to_f32",
        (Dtype::F16, Dtype::F32) => "cvt_f16_to_f32",
        (s, d) => {
            return Err(Error::UnsupportedDtype {
                arg: "dst",
                msg: format!(
                    "converts float32 to bfloat16/float16 and back, not {} to {}",
                    s.name(),
                    d.name()
                ),
            })
        }
    };
    if src.len != dst.len {
        return Err(Error::shape(
            "dst",
            format!("{} elements, src has {}", dst.len, src.len),
        ));
    }
    same_device(src.device, dst.device, "dst", "src")?;
    let dev = driver::device(src.device)?;
    let _cur = dev.enter()?;
    check_vector(dev, &src, "src")?;
    check_vector(dev, &dst, "dst")?;
    if src.len == 0 {
        return Ok(());
    }
    let f = dev.func(name, 0)?;
    let vec = (src.ptr.is_multiple_of(16) && dst.ptr.is_multiple_of(16)) as i32;
    let (s, d, n) = (src.ptr, dst.ptr, src.len as i64);
    let mut a = args![s, d, n, vec];
    let per = if vec == 1 { 8 } else { 1 };
    let grid = grid_1d(src.len.div_ceil(per), 256, dev.sm_count as usize * 32);
    unsafe { dev.launch(f, (grid, 1, 1), 256, 0, stream, &mut a, name) }
}

// ------------------------------------------------------- gradients, VSA

/// TernGrad quantization of `g` (f32, `n` elements) in blocks of `block`
/// (a multiple of 4) into `scales` (`ceil(n / block)` f32) and `packed`
/// (`ceil(n / 4)` bytes), bit-identical to
/// [`crate::grad::compress::ternary::quantize`] with the same `seed`. A
/// block holding NaN/inf gets a non-finite scale and zero codes (the CPU
/// returns an error; checking here would need a host synchronization).
///
/// # Safety
/// Every view must describe live device memory; outputs must not overlap `g`.
pub unsafe fn ternary_stochastic_quantize(
    g: DeviceVector,
    block: usize,
    seed: u64,
    scales: DeviceVector,
    packed: DeviceVector,
    stream: Stream,
) -> Result<()> {
    use crate::grad::compress::ternary::{check_block, num_blocks, packed_len};
    check_block(block)?;
    want_dtype(g.dtype, &[Dtype::F32], "grad")?;
    want_dtype(scales.dtype, &[Dtype::F32], "scales")?;
    want_dtype(packed.dtype, &[Dtype::U8], "packed")?;
    let n = g.len;
    if scales.len != num_blocks(n, block) {
        return Err(Error::shape(
            "scales",
            format!("need {} scales, got {}", num_blocks(n, block), scales.len),
        ));
    }
    if packed.len != packed_len(n) {
        return Err(Error::shape(
            "packed",
            format!("need {} bytes, got {}", packed_len(n), packed.len),
        ));
    }
    same_device(g.device, scales.device, "scales", "grad")?;
    same_device(g.device, packed.device, "packed", "grad")?;
    let dev = driver::device(g.device)?;
    let _cur = dev.enter()?;
    check_vector(dev, &g, "grad")?;
    check_vector(dev, &scales, "scales")?;
    check_vector(dev, &packed, "packed")?;
    if n == 0 {
        return Ok(());
    }
    let f = dev.func("terngrad_quantize", 0)?;
    let (gp, nn, blk, sd, sp, pp) = (g.ptr, n as i64, block as i32, seed, scales.ptr, packed.ptr);
    let mut a = args![gp, nn, blk, sd, sp, pp];
    let warps = num_blocks(n, block);
    let grid = u32::try_from(warps.div_ceil(8))
        .map_err(|_| Error::overflow("grad", "too many blocks for one launch"))?;
    unsafe { dev.launch(f, (grid, 1, 1), 256, 0, stream, &mut a, "terngrad_quantize") }
}

fn hv_words(dim: usize) -> usize {
    crate::vsa::packed::packed_words(dim)
}

/// Bind (or unbind) packed hypervectors of `dim` trits: `a` is `[n, words]`
/// uint64, `b` `[1, words]` (one key for every row) or `[n, words]`, `out`
/// `[n, words]`, with `words = 2 ceil(dim / 64)` (contiguous rows). Bit-
/// identical to [`crate::vsa::ops::bind_words`] / `unbind_words` on valid
/// vectors; inputs are not validated on the GPU (invalid words give
/// unspecified words).
///
/// # Safety
/// Every view must describe live device memory; `out` must not overlap `b`.
pub unsafe fn hv_bind(
    a: DeviceMatrix,
    b: DeviceMatrix,
    dim: usize,
    algebra: crate::vsa::Algebra,
    unbind: bool,
    out: DeviceMatrix,
    stream: Stream,
) -> Result<()> {
    let words = hv_words(dim);
    for (m, name) in [(&a, "a"), (&b, "b"), (&out, "out")] {
        want_dtype(m.dtype, &[Dtype::U64], name)?;
        if m.cols != words {
            return Err(Error::shape(
                name,
                format!(
                    "a packed vector of dim {dim} has {words} words, got {}",
                    m.cols
                ),
            ));
        }
        if m.rows > 1 && m.ld != words {
            return Err(Error::invalid(name, "rows must be contiguous"));
        }
    }
    if out.rows != a.rows || (b.rows != 1 && b.rows != a.rows) {
        return Err(Error::shape(
            "b",
            format!(
                "a has {} rows, b {} (1 or the same), out {}",
                a.rows, b.rows, out.rows
            ),
        ));
    }
    same_device(a.device, b.device, "b", "a")?;
    same_device(a.device, out.device, "out", "a")?;
    let dev = driver::device(a.device)?;
    let _cur = dev.enter()?;
    check_matrix(dev, &a, "a")?;
    check_matrix(dev, &b, "b")?;
    check_matrix(dev, &out, "out")?;
    if a.rows == 0 || words == 0 {
        return Ok(());
    }
    let w = words / 2;
    let f = dev.func("hv_bind", 0)?;
    let (ap, bp, op, n, wi) = (a.ptr, b.ptr, out.ptr, a.rows as i64, to_i32(w, "dim")?);
    let bs = if b.rows == 1 { 0i64 } else { words as i64 };
    let (modular, unb) = (
        matches!(algebra, crate::vsa::Algebra::Modular) as i32,
        unbind as i32,
    );
    let mut args = args![ap, bp, op, n, wi, bs, modular, unb];
    let grid = grid_1d(a.rows * w, 256, dev.sm_count as usize * 32);
    unsafe { dev.launch(f, (grid, 1, 1), 256, 0, stream, &mut args, "hv_bind") }
}

/// Scores `query` (`words` uint64) against each row of `rows` (`[n, words]`
/// uint64, contiguous) by `metric` into `out` (`n` f64), bit-identical to
/// [`crate::vsa::ops::similarity_many`] on valid vectors (not validated on
/// the GPU).
///
/// # Safety
/// Every view must describe live device memory; `out` must not overlap the inputs.
pub unsafe fn hv_similarity_many(
    query: DeviceVector,
    rows: DeviceMatrix,
    dim: usize,
    metric: crate::vsa::Metric,
    out: DeviceVector,
    stream: Stream,
) -> Result<()> {
    let words = hv_words(dim);
    want_dtype(query.dtype, &[Dtype::U64], "query")?;
    want_dtype(rows.dtype, &[Dtype::U64], "rows")?;
    want_dtype(out.dtype, &[Dtype::F64], "scores")?;
    if query.len != words {
        return Err(Error::shape(
            "query",
            format!(
                "a packed vector of dim {dim} has {words} words, got {}",
                query.len
            ),
        ));
    }
    if rows.cols != words || (rows.rows > 1 && rows.ld != words) {
        return Err(Error::shape(
            "rows",
            format!(
                "rows must be contiguous [n, {words}], got [{}, {}]",
                rows.rows, rows.cols
            ),
        ));
    }
    if out.len != rows.rows {
        return Err(Error::shape(
            "scores",
            format!("{} scores for {} rows", out.len, rows.rows),
        ));
    }
    same_device(query.device, rows.device, "rows", "query")?;
    same_device(query.device, out.device, "scores", "query")?;
    let dev = driver::device(query.device)?;
    let _cur = dev.enter()?;
    check_vector(dev, &query, "query")?;
    check_matrix(dev, &rows, "rows")?;
    check_vector(dev, &out, "scores")?;
    if rows.rows == 0 {
        return Ok(());
    }
    if words == 0 {
        return Err(Error::shape("rows", "dim 0 vectors have no words"));
    }
    let code = match metric {
        crate::vsa::Metric::Dot => 0i32,
        crate::vsa::Metric::Cosine => 1,
        crate::vsa::Metric::Hamming => 2,
    };
    let f = dev.func("hv_similarity_many", 0)?;
    let (qp, rp, n, w, op) = (
        query.ptr,
        rows.ptr,
        rows.rows as i64,
        to_i32(words / 2, "dim")?,
        out.ptr,
    );
    let mut args = args![qp, rp, n, w, code, op];
    let grid = u32::try_from(rows.rows.div_ceil(8))
        .map_err(|_| Error::overflow("rows", "too many rows for one launch"))?;
    unsafe {
        dev.launch(
            f,
            (grid, 1, 1),
            256,
            0,
            stream,
            &mut args,
            "hv_similarity_many",
        )
    }
}

// -------------------------------------------------------------- buffers

/// Device memory owned by Rust code (freed on drop after a device-wide
/// synchronization).
pub struct Buffer {
    a: Alloc,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Buffer({} bytes on CUDA device {})",
            self.a.bytes, self.a.dev.ordinal
        )
    }
}

impl Buffer {
    /// `bytes` zeroed bytes on `device`.
    pub fn zeroed(device: i32, bytes: usize) -> Result<Buffer> {
        let dev = driver::device(device)?;
        let _c = dev.enter()?;
        let a = Alloc::persistent(dev, bytes)?;
        driver::memset(a.ptr, 0, bytes, Stream::DEFAULT)?;
        driver::sync_context()?;
        Ok(Buffer { a })
    }
    /// A copy of `data` on `device`.
    pub fn from_slice<T: DeviceCopy>(device: i32, data: &[T]) -> Result<Buffer> {
        let dev = driver::device(device)?;
        let _c = dev.enter()?;
        let a = Alloc::persistent(dev, std::mem::size_of_val(data))?;
        driver::htod(a.ptr, bytes_of(data))?;
        Ok(Buffer { a })
    }
    /// The contents as `T`s (waits for all work on the device first).
    pub fn to_vec<T: DeviceCopy>(&self) -> Result<Vec<T>> {
        let mut v = vec![T::default(); self.a.bytes / std::mem::size_of::<T>()];
        let _c = self.a.dev.enter()?;
        driver::sync_context()?;
        driver::dtoh(bytes_of_mut(&mut v), self.a.ptr, Stream::DEFAULT)?;
        Ok(v)
    }
    /// Overwrites the start of the buffer with `data`.
    pub fn copy_from_slice<T: DeviceCopy>(&self, data: &[T]) -> Result<()> {
        let n = std::mem::size_of_val(data);
        if n > self.a.bytes {
            return Err(Error::BufferTooSmall {
                arg: "data",
                needed: n,
                got: self.a.bytes,
            });
        }
        let _c = self.a.dev.enter()?;
        driver::sync_context()?;
        driver::htod(self.a.ptr, bytes_of(data))
    }
    /// Device address.
    pub fn ptr(&self) -> u64 {
        self.a.ptr
    }
    /// Device ordinal.
    pub fn device(&self) -> i32 {
        self.a.dev.ordinal
    }
    /// Size in bytes.
    pub fn len_bytes(&self) -> usize {
        self.a.bytes
    }
    /// A `rows x cols` row-major view of `dtype` elements.
    pub fn matrix(&self, rows: usize, cols: usize, dtype: Dtype) -> Result<DeviceMatrix> {
        let need = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(|| Error::overflow("rows * cols", "overflows"))?;
        if need > self.a.bytes {
            return Err(Error::BufferTooSmall {
                arg: "buffer",
                needed: need,
                got: self.a.bytes,
            });
        }
        Ok(DeviceMatrix {
            ptr: self.a.ptr,
            rows,
            cols,
            ld: cols,
            dtype,
            device: self.device(),
        })
    }
    /// A `len`-element view of `dtype` elements.
    pub fn vector(&self, len: usize, dtype: Dtype) -> Result<DeviceVector> {
        let need = len
            .checked_mul(dtype.size())
            .ok_or_else(|| Error::overflow("len", "overflows"))?;
        if need > self.a.bytes {
            return Err(Error::BufferTooSmall {
                arg: "buffer",
                needed: need,
                got: self.a.bytes,
            });
        }
        Ok(DeviceVector {
            ptr: self.a.ptr,
            len,
            dtype,
            device: self.device(),
        })
    }
}
