//! C entry points for ternary quantization, packing and the ternary matrix.

use std::ffi::c_void;

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

use super::args::{self, elems};
use super::dlpack::{self, tritter_dl_tensor_t};
use super::handle;
use super::status::{guard, tritter_status_t};
use crate::cuda::{self, DeviceMatrix, Dtype};
use crate::ternary::matmul::ComputeFormat;
use crate::ternary::pack::{self, PackedLayout};
use crate::ternary::quant::{self, QuantConfig, QuantMethod};
use crate::ternary::{ActivationMode, Granularity, TernaryMatrix};
use crate::{Error, Result};

/// `method`: AbsMean (BitNet b1.58, `s = mean|w|`).
pub const TRITTER_QUANT_ABSMEAN: u32 = 0;
/// `method`: AbsMax (`s = max|w|`).
pub const TRITTER_QUANT_ABSMAX: u32 = 1;
/// `granularity`: one scale for the whole matrix.
pub const TRITTER_GRANULARITY_PER_TENSOR: u32 = 0;
/// `granularity`: one scale per output row.
pub const TRITTER_GRANULARITY_PER_ROW: u32 = 1;
/// `granularity`: one scale per `group_size` weights along each row.
pub const TRITTER_GRANULARITY_PER_GROUP: u32 = 2;
/// `layout`: canonical 2-bit (4 trits a byte; codes 00 = 0, 01 = +1, 10 = -1).
pub const TRITTER_LAYOUT_2BIT: u32 = 0;
/// `layout`: base-3 (5 trits a byte, `Σ (t_i + 1) 3^i`).
pub const TRITTER_LAYOUT_BASE3: u32 = 1;
/// `compute_format`: the 2-bit kernel layout (default; fastest).
pub const TRITTER_COMPUTE_2BIT: u32 = 0;
/// `compute_format`: the base-3 kernel layout (1.6 bits a weight in the kernels' copy).
pub const TRITTER_COMPUTE_BASE3: u32 = 1;
/// `act_mode`: f32 activations.
pub const TRITTER_ACT_F32: u32 = 0;
/// `act_mode`: int8 per-token absmax activations (W1.58A8).
pub const TRITTER_ACT_INT8: u32 = 1;

super::status::c_constants!(QuantMethod, QuantMethod::ALL, {
    QuantMethod::AbsMean => TRITTER_QUANT_ABSMEAN,
    QuantMethod::AbsMax => TRITTER_QUANT_ABSMAX,
});
super::status::c_constants!(
    Granularity,
    &[Granularity::PerTensor, Granularity::PerRow, Granularity::PerGroup(1)],
    {
        Granularity::PerTensor => TRITTER_GRANULARITY_PER_TENSOR,
        Granularity::PerRow => TRITTER_GRANULARITY_PER_ROW,
        Granularity::PerGroup(_) => TRITTER_GRANULARITY_PER_GROUP,
    }
);
super::status::c_constants!(PackedLayout, PackedLayout::ALL, {
    PackedLayout::TwoBit => TRITTER_LAYOUT_2BIT,
    PackedLayout::Base3 => TRITTER_LAYOUT_BASE3,
});
super::status::c_constants!(ComputeFormat, ComputeFormat::ALL, {
    ComputeFormat::TwoBit => TRITTER_COMPUTE_2BIT,
    ComputeFormat::Base3 => TRITTER_COMPUTE_BASE3,
});
super::status::c_constants!(ActivationMode, ActivationMode::ALL, {
    ActivationMode::F32 => TRITTER_ACT_F32,
    ActivationMode::Int8 => TRITTER_ACT_INT8,
});

/// Quantization settings. Get defaults from [`tritter_quant_config_default`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tritter_quant_config_t {
    /// `TRITTER_QUANT_*`.
    pub method: u32,
    /// `TRITTER_GRANULARITY_*`.
    pub granularity: u32,
    /// Weights per group for `TRITTER_GRANULARITY_PER_GROUP` (> 0); ignored otherwise.
    pub group_size: usize,
    /// If true, `|w| <= threshold_factor * s` becomes 0 and the rest `sign(w)`.
    pub use_threshold: bool,
    /// Threshold factor (finite, >= 0) when `use_threshold`.
    pub threshold_factor: f32,
    /// Added to the scale before dividing (finite, >= 0; default 1e-5).
    pub eps: f32,
}

/// Facts about a [`tritter_ternary_matrix_t`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tritter_matrix_info_t {
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// `TRITTER_GRANULARITY_*`.
    pub granularity: u32,
    /// Group size (per-group) or `cols` (otherwise).
    pub group_size: usize,
    /// Number of scales (`scale_rows * groups_per_row`).
    pub num_scales: usize,
    /// Scales per row (1 unless per-group).
    pub groups_per_row: usize,
    /// Bytes of the 2-bit export.
    pub packed_bytes_2bit: usize,
    /// Bytes of the base-3 export.
    pub packed_bytes_base3: usize,
    /// Bytes the matrix holds: its one copy of the weights (the kernels'
    /// compute layout, padded to whole tiles and K blocks) + scales. Exports
    /// are decoded from it on demand.
    pub memory_bytes: usize,
    /// `TRITTER_COMPUTE_*`: the private layout the kernels read.
    pub compute_format: u32,
}

/// A quantized ternary weight matrix `[rows, cols]` = `[out_features,
/// in_features]`: packed trits, scales, granularity.
///
/// Owns its memory; free with [`tritter_ternary_matrix_free`]. Immutable after
/// creation: one handle may be used by any number of threads at once.
pub struct tritter_ternary_matrix_t(pub(crate) TernaryMatrix);

impl tritter_ternary_matrix_t {
    /// The matrix a handle owns (for the other FFI modules).
    pub(crate) fn inner(&self) -> &TernaryMatrix {
        &self.0
    }
}

impl From<&QuantConfig> for tritter_quant_config_t {
    fn from(c: &QuantConfig) -> Self {
        tritter_quant_config_t {
            method: c.method.code(),
            granularity: c.granularity.code(),
            group_size: match c.granularity {
                Granularity::PerGroup(g) => g,
                _ => 0,
            },
            use_threshold: c.threshold.is_some(),
            threshold_factor: c.threshold.unwrap_or(0.0),
            eps: c.eps,
        }
    }
}

pub(crate) fn to_config(c: Option<&tritter_quant_config_t>) -> Result<QuantConfig> {
    let Some(c) = c else {
        return Ok(QuantConfig::default());
    };
    let cfg = QuantConfig {
        method: QuantMethod::from_code(c.method)?,
        granularity: Granularity::from_code(c.granularity, c.group_size)?,
        threshold: if c.use_threshold {
            Some(c.threshold_factor)
        } else {
            None
        },
        eps: c.eps,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Writes the default configuration (AbsMean, per row, no threshold, eps 1e-5).
///
/// # Safety
/// `config_out` must be valid for writing one `tritter_quant_config_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_quant_config_default(
    config_out: *mut tritter_quant_config_t,
) -> tritter_status_t {
    guard(|| unsafe { args::write(config_out, (&QuantConfig::default()).into(), "config_out") })
}

/// Number of scales for a `rows x cols` matrix with the given granularity.
///
/// # Safety
/// `num_scales_out` must be valid for writing one `size_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_num_scales(
    granularity: u32,
    group_size: usize,
    rows: usize,
    cols: usize,
    num_scales_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let g = Granularity::from_code(granularity, group_size)?;
        elems(rows, cols, "rows * cols")?;
        unsafe { args::write(num_scales_out, g.num_scales(rows, cols), "num_scales_out") }
    })
}

/// Bytes needed to pack `rows x cols` trits in `layout` (`TRITTER_LAYOUT_*`).
///
/// # Safety
/// `size_out` must be valid for writing one `size_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_packed_size(
    rows: usize,
    cols: usize,
    layout: u32,
    size_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let l = PackedLayout::from_code(layout)?;
        elems(rows, cols, "rows * cols")?;
        unsafe { args::write(size_out, pack::packed_len(rows, cols, l)?, "size_out") }
    })
}

/// Quantizes row-major f32 `weights` `[rows, cols]` to ternary values and scales.
///
/// `config` may be NULL (defaults). `ternary_out` receives `rows * cols` int8
/// values in {-1, 0, 1}; `scales_out` receives `tritter_num_scales(...)` floats.
/// Errors: NULL pointers, non-finite weights (`TRITTER_ERR_NON_FINITE`),
/// buffers too small, invalid config fields.
///
/// # Safety
/// Each pointer must be NULL or valid for its stated length; outputs must not
/// overlap inputs.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_quantize_f32(
    weights: *const f32,
    rows: usize,
    cols: usize,
    config: *const tritter_quant_config_t,
    ternary_out: *mut i8,
    ternary_len: usize,
    scales_out: *mut f32,
    scales_len: usize,
) -> tritter_status_t {
    guard(|| {
        let n = elems(rows, cols, "rows * cols")?;
        let cfg = to_config(unsafe { args::optional(config, "config")? })?;
        let w = unsafe { args::slice(weights, n, "weights")? };
        let t = unsafe { args::out_slice(ternary_out, ternary_len, n, "ternary_out")? };
        let ns = cfg.granularity.num_scales(rows, cols);
        let s = unsafe { args::out_slice(scales_out, scales_len, ns, "scales_out")? };
        let q = quant::quantize(
            ArrayView2::from_shape((rows, cols), w).expect("length checked"),
            &cfg,
        )?;
        t.copy_from_slice(q.values.as_slice().expect("contiguous"));
        s.copy_from_slice(q.scales.as_slice().expect("contiguous"));
        Ok(())
    })
}

/// Packs `rows x cols` trits (each in {-1, 0, 1}) into `layout`.
/// `out_len` must be at least `tritter_packed_size(rows, cols, layout)`.
///
/// # Safety
/// Each pointer must be NULL or valid for its stated length.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_pack(
    ternary: *const i8,
    rows: usize,
    cols: usize,
    layout: u32,
    packed_out: *mut u8,
    packed_len: usize,
) -> tritter_status_t {
    guard(|| {
        let l = PackedLayout::from_code(layout)?;
        let n = elems(rows, cols, "rows * cols")?;
        let t = unsafe { args::slice(ternary, n, "ternary")? };
        let need = pack::packed_len(rows, cols, l)?;
        let out = unsafe { args::out_slice(packed_out, packed_len, need, "packed_out")? };
        let v = ArrayView2::from_shape((rows, cols), t).expect("length checked");
        let bytes = match l {
            PackedLayout::TwoBit => pack::pack_2bit(v)?,
            PackedLayout::Base3 => pack::pack_base3(v)?,
        };
        out.copy_from_slice(&bytes);
        Ok(())
    })
}

/// Unpacks `packed_len` bytes of `layout` into `rows x cols` trits. Every
/// byte is validated: invalid codes, non-zero padding or a wrong length give
/// `TRITTER_ERR_INVALID_DATA` / `TRITTER_ERR_SHAPE_MISMATCH`.
///
/// # Safety
/// Each pointer must be NULL or valid for its stated length.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_unpack(
    packed: *const u8,
    packed_len: usize,
    rows: usize,
    cols: usize,
    layout: u32,
    ternary_out: *mut i8,
    ternary_len: usize,
) -> tritter_status_t {
    guard(|| {
        let l = PackedLayout::from_code(layout)?;
        let n = elems(rows, cols, "rows * cols")?;
        let p = unsafe { args::slice(packed, packed_len, "packed")? };
        let out = unsafe { args::out_slice(ternary_out, ternary_len, n, "ternary_out")? };
        let t = match l {
            PackedLayout::TwoBit => pack::unpack_2bit(p, rows, cols)?,
            PackedLayout::Base3 => pack::unpack_base3(p, rows, cols)?,
        };
        out.copy_from_slice(t.as_slice().expect("contiguous"));
        Ok(())
    })
}

/// Int8 per-token absmax quantization of `x` `[batch, dim]`:
/// `s = 127 / max(max|x|, 1e-5)`, `q = clamp(round(x * s), -128, 127)`.
/// Writes `batch * dim` values to `q_out` and `batch` scales to `scales_out`.
///
/// # Safety
/// Each pointer must be NULL or valid for its stated length.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_quantize_activations_i8(
    x: *const f32,
    batch: usize,
    dim: usize,
    q_out: *mut i8,
    q_len: usize,
    scales_out: *mut f32,
    scales_len: usize,
) -> tritter_status_t {
    guard(|| {
        let n = elems(batch, dim, "batch * dim")?;
        let xs = unsafe { args::slice(x, n, "x")? };
        let q = unsafe { args::out_slice(q_out, q_len, n, "q_out")? };
        let s = unsafe { args::out_slice(scales_out, scales_len, batch, "scales_out")? };
        let (qa, sa) = quant::quantize_activations_i8(
            ArrayView2::from_shape((batch, dim), xs).expect("length checked"),
        )?;
        q.copy_from_slice(qa.as_slice().expect("contiguous"));
        s.copy_from_slice(sa.as_slice().expect("contiguous"));
        Ok(())
    })
}

/// Quantizes and packs row-major f32 `weights` `[rows, cols]` into a new matrix.
/// `config` may be NULL (defaults). On success `*matrix_out` owns a new handle.
///
/// # Safety
/// `weights` must be NULL or valid for `rows * cols` floats; `matrix_out` valid
/// for writing one pointer.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_from_f32(
    weights: *const f32,
    rows: usize,
    cols: usize,
    config: *const tritter_quant_config_t,
    matrix_out: *mut *mut tritter_ternary_matrix_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(matrix_out, "matrix_out")?;
        let n = elems(rows, cols, "rows * cols")?;
        let cfg = to_config(unsafe { args::optional(config, "config")? })?;
        let w = unsafe { args::slice(weights, n, "weights")? };
        let m = TernaryMatrix::from_f32(
            ArrayView2::from_shape((rows, cols), w).expect("length checked"),
            &cfg,
        )?;
        unsafe { handle::store(matrix_out, tritter_ternary_matrix_t(m), "matrix_out") }
    })
}

/// Like [`tritter_ternary_matrix_from_f32`] from a 2-D float32 DLPack tensor:
/// host memory (any non-negative strides), or CUDA memory (unit stride along
/// rows), which is quantized on its GPU, bit-identically, and copied back
/// (the call waits for the GPU). A strided or broadcast (stride 0) host view
/// is copied: its logical size, not the memory behind it, sets the
/// allocation (`TRITTER_ERR_OUT_OF_MEMORY` / `TRITTER_ERR_SIZE_OVERFLOW`
/// naming `weights` when refused).
///
/// # Safety
/// `weights` must be NULL or a valid tensor; `matrix_out` valid for writing.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_from_dlpack(
    weights: *const tritter_dl_tensor_t,
    config: *const tritter_quant_config_t,
    matrix_out: *mut *mut tritter_ternary_matrix_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(matrix_out, "matrix_out")?;
        let cfg = to_config(unsafe { args::optional(config, "config")? })?;
        let dev = dlpack::common_device(&[(
            unsafe { dlpack::device_of(weights, "weights")? },
            "weights",
        )])?;
        let m = match dev {
            None => {
                TernaryMatrix::from_f32(unsafe { dlpack::view2::<f32>(weights, "weights")? }, &cfg)?
            }
            Some(d) => {
                let w = unsafe { dlpack::cuda_matrix(weights, "weights", &[Dtype::F32], false)? };
                quantize_on_device(w, &cfg, d)?
            }
        };
        unsafe { handle::store(matrix_out, tritter_ternary_matrix_t(m), "matrix_out") }
    })
}

/// Quantizes device weights on their GPU and builds the (host) matrix from
/// the packed result, bit-identical to [`TernaryMatrix::from_f32`].
fn quantize_on_device(w: DeviceMatrix, cfg: &QuantConfig, device: i32) -> Result<TernaryMatrix> {
    let (rows, cols) = (w.rows, w.cols);
    let rb = pack::row_bytes(cols, PackedLayout::TwoBit);
    let ns = cfg.granularity.num_scales(rows, cols);
    let pb = cuda::Buffer::zeroed(device, elems(rows, rb, "weights")?)?;
    let sb = cuda::Buffer::zeroed(device, elems(ns, 4, "weights")?)?;
    // SAFETY: w was validated by cuda_matrix; the buffers are ours.
    unsafe {
        cuda::quantize_pack_2bit(
            w,
            cfg,
            pb.matrix(rows, rb, Dtype::U8)?,
            sb.vector(ns, Dtype::F32)?,
            cuda::Stream::DEFAULT,
        )?
    };
    let packed: Vec<u8> = pb.to_vec()?;
    let scales: Vec<f32> = sb.to_vec()?;
    TernaryMatrix::from_parts(rows, cols, cfg.granularity, scales, packed)
}

/// Builds a matrix from already-ternary values `[rows, cols]` (each in
/// {-1, 0, 1}) and `num_scales` scales laid out as `tritter_num_scales`
/// describes (row-major `[scale_rows, groups_per_row]`, all finite).
///
/// # Safety
/// Each pointer must be NULL or valid for its stated length.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_from_ternary(
    ternary: *const i8,
    rows: usize,
    cols: usize,
    scales: *const f32,
    num_scales: usize,
    granularity: u32,
    group_size: usize,
    matrix_out: *mut *mut tritter_ternary_matrix_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(matrix_out, "matrix_out")?;
        let g = Granularity::from_code(granularity, group_size)?;
        let n = elems(rows, cols, "rows * cols")?;
        let t = unsafe { args::slice(ternary, n, "ternary")? };
        let s = unsafe { args::slice(scales, num_scales, "scales")? };
        let m = TernaryMatrix::from_ternary(
            ArrayView2::from_shape((rows, cols), t).expect("length checked"),
            s,
            g,
        )?;
        unsafe { handle::store(matrix_out, tritter_ternary_matrix_t(m), "matrix_out") }
    })
}

/// Builds a matrix from packed bytes in `layout` plus scales. Every byte is
/// validated (length, invalid codes, padding): corrupt input is an error.
///
/// # Safety
/// Each pointer must be NULL or valid for its stated length.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_from_packed(
    packed: *const u8,
    packed_len: usize,
    rows: usize,
    cols: usize,
    layout: u32,
    scales: *const f32,
    num_scales: usize,
    granularity: u32,
    group_size: usize,
    matrix_out: *mut *mut tritter_ternary_matrix_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(matrix_out, "matrix_out")?;
        let l = PackedLayout::from_code(layout)?;
        let g = Granularity::from_code(granularity, group_size)?;
        elems(rows, cols, "rows * cols")?;
        let p = unsafe { args::slice(packed, packed_len, "packed")? };
        let s = unsafe { args::slice(scales, num_scales, "scales")? };
        let m = TernaryMatrix::from_packed(p, rows, cols, l, s, g)?;
        unsafe { handle::store(matrix_out, tritter_ternary_matrix_t(m), "matrix_out") }
    })
}

/// A new matrix with the same weights and scales whose kernels read the
/// `compute_format` layout (`TRITTER_COMPUTE_2BIT` or `TRITTER_COMPUTE_BASE3`).
/// Results are identical for int8 activations and within the documented f32
/// tolerance otherwise; the base-3 layout trades speed for memory traffic.
/// `matrix` is not modified; `*matrix_out` owns a new handle.
///
/// # Safety
/// `matrix` must be NULL or live; `matrix_out` valid for writing one pointer.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_with_compute_format(
    matrix: *const tritter_ternary_matrix_t,
    compute_format: u32,
    matrix_out: *mut *mut tritter_ternary_matrix_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(matrix_out, "matrix_out")?;
        let m = &unsafe { handle::get(matrix, "matrix")? }.0;
        let f = ComputeFormat::from_code(compute_format)?;
        let copy = m.try_with_compute_format(f)?;
        unsafe { handle::store(matrix_out, tritter_ternary_matrix_t(copy), "matrix_out") }
    })
}

/// Frees a matrix; NULL is a no-op.
///
/// # Safety
/// `matrix` must be NULL or a live handle not used again afterwards.
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_free(matrix: *mut tritter_ternary_matrix_t) {
    super::status::guard_value((), || unsafe { handle::free(matrix) });
}

/// Writes facts about `matrix` (shape, granularity, sizes) to `*info_out`.
///
/// # Safety
/// `matrix` must be NULL or live; `info_out` valid for writing.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_info(
    matrix: *const tritter_ternary_matrix_t,
    info_out: *mut tritter_matrix_info_t,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(matrix, "matrix")? }.0;
        let (_, gpr) = m.granularity().scale_shape(m.rows(), m.cols());
        let info = tritter_matrix_info_t {
            rows: m.rows(),
            cols: m.cols(),
            granularity: m.granularity().code(),
            group_size: m.granularity().group_len(m.cols()),
            num_scales: m.scales().len(),
            groups_per_row: gpr,
            packed_bytes_2bit: pack::packed_len(m.rows(), m.cols(), PackedLayout::TwoBit)?,
            packed_bytes_base3: pack::packed_len(m.rows(), m.cols(), PackedLayout::Base3)?,
            memory_bytes: m.memory_bytes(),
            compute_format: m.compute_format().code(),
        };
        unsafe { args::write(info_out, info, "info_out") }
    })
}

/// Exports the weights in `layout`; `out_len >= info.packed_bytes_*`.
///
/// # Safety
/// `matrix` must be NULL or live; `packed_out` valid for `packed_len` bytes.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_export_packed(
    matrix: *const tritter_ternary_matrix_t,
    layout: u32,
    packed_out: *mut u8,
    packed_len: usize,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(matrix, "matrix")? }.0;
        let l = PackedLayout::from_code(layout)?;
        let need = pack::packed_len(m.rows(), m.cols(), l)?;
        let out = unsafe { args::out_slice(packed_out, packed_len, need, "packed_out")? };
        m.write_packed(l, out)
    })
}

/// Copies the scales (`info.num_scales` floats, row-major).
///
/// # Safety
/// `matrix` must be NULL or live; `scales_out` valid for `scales_len` floats.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_scales(
    matrix: *const tritter_ternary_matrix_t,
    scales_out: *mut f32,
    scales_len: usize,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(matrix, "matrix")? }.0;
        let out =
            unsafe { args::out_slice(scales_out, scales_len, m.scales().len(), "scales_out")? };
        out.copy_from_slice(m.scales());
        Ok(())
    })
}

/// Writes the ternary values (`rows * cols` int8, row-major).
///
/// # Safety
/// `matrix` must be NULL or live; `ternary_out` valid for `ternary_len` bytes.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_to_ternary(
    matrix: *const tritter_ternary_matrix_t,
    ternary_out: *mut i8,
    ternary_len: usize,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(matrix, "matrix")? }.0;
        let out = unsafe {
            args::out_slice(ternary_out, ternary_len, m.rows() * m.cols(), "ternary_out")?
        };
        m.write_ternary(out)
    })
}

/// Writes the dequantized weights `t * s` (`rows * cols` floats, row-major).
///
/// # Safety
/// `matrix` must be NULL or live; `weights_out` valid for `weights_len` floats.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_to_f32(
    matrix: *const tritter_ternary_matrix_t,
    weights_out: *mut f32,
    weights_len: usize,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(matrix, "matrix")? }.0;
        let out = unsafe {
            args::out_slice(weights_out, weights_len, m.rows() * m.cols(), "weights_out")?
        };
        m.write_f32(out)
    })
}

/// `y = x · Wᵀ (+ bias)` on row-major buffers: `x` is `[batch, in_features]`
/// (`in_features` must equal the matrix's `cols`), `y` receives
/// `[batch, rows]`. No bias is `(bias, bias_len) = (NULL, 0)`; otherwise
/// `bias_len` must equal `rows` (`TRITTER_ERR_SHAPE_MISMATCH` naming
/// `bias_len`) and `bias` be non-NULL (`TRITTER_ERR_NULL_POINTER`). `x` and
/// `bias` must be finite (`TRITTER_ERR_NON_FINITE` naming them).
/// `act_mode` is `TRITTER_ACT_F32` or `TRITTER_ACT_INT8`.
///
/// # Safety
/// `matrix` must be NULL or live; pointers valid for their lengths; `y` must
/// not overlap the inputs.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_matmul(
    matrix: *const tritter_ternary_matrix_t,
    x: *const f32,
    batch: usize,
    in_features: usize,
    bias: *const f32,
    bias_len: usize,
    act_mode: u32,
    y_out: *mut f32,
    y_len: usize,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(matrix, "matrix")? }.0;
        let mode = ActivationMode::from_code(act_mode)?;
        if in_features != m.cols() {
            return Err(Error::shape(
                "in_features",
                format!("{in_features} != the matrix's in_features {}", m.cols()),
            ));
        }
        let n = elems(batch, in_features, "batch * in_features")?;
        let xs = unsafe { args::slice(x, n, "x")? };
        let b = if bias.is_null() && bias_len == 0 {
            None
        } else {
            if bias_len != m.rows() {
                return Err(Error::shape(
                    "bias_len",
                    format!("{bias_len} != out_features {}", m.rows()),
                ));
            }
            Some(ArrayView1::from(unsafe {
                args::slice(bias, bias_len, "bias")?
            }))
        };
        let ny = elems(batch, m.rows(), "batch * out_features")?;
        let y = unsafe { args::out_slice(y_out, y_len, ny, "y_out")? };
        let xv = ArrayView2::from_shape((batch, in_features), xs).expect("length checked");
        let yv = ArrayViewMut2::from_shape((batch, m.rows()), y).expect("length checked");
        m.matmul_into(xv, b, mode, yv)
    })
}

/// `y = x · Wᵀ (+ bias)` on DLPack tensors: `x` float32 `[batch, cols]`,
/// `bias` NULL or float32 `[rows]`, `y` float32 `[batch, rows]` (written);
/// host `x` and `bias` finite (`TRITTER_ERR_NON_FINITE`).
/// Host tensors: any non-negative strides. CUDA tensors run on the GPU on
/// the legacy default stream; see
/// [`tritter_ternary_matrix_matmul_dlpack_stream`] for the rules.
///
/// # Safety
/// `matrix` must be NULL or live; tensors NULL or valid; `y` must not overlap inputs.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_matmul_dlpack(
    matrix: *const tritter_ternary_matrix_t,
    x: *const tritter_dl_tensor_t,
    bias: *const tritter_dl_tensor_t,
    act_mode: u32,
    y: *const tritter_dl_tensor_t,
) -> tritter_status_t {
    unsafe {
        tritter_ternary_matrix_matmul_dlpack_stream(
            matrix,
            x,
            bias,
            act_mode,
            y,
            std::ptr::null_mut(),
        )
    }
}

/// [`tritter_ternary_matrix_matmul_dlpack`] with a CUDA stream for CUDA
/// tensors: the work is queued on `stream` (a `cudaStream_t`, e.g.
/// PyTorch's `torch.cuda.current_stream().cuda_stream`; NULL = the legacy
/// default stream) and the call returns without waiting for it. Ignored for
/// host tensors.
///
/// Routing by the tensors' device: host tensors run the CPU kernels; CUDA
/// tensors (all on one device) run the GPU kernels, with `x` float32,
/// bfloat16 or float16, `y` float32, bfloat16 or float16 (rounded to
/// nearest even), `bias` NULL or float32, each with unit stride along its
/// last dimension. The matrix's weights are uploaded to that device on first
/// use (synchronously; see [`tritter_ternary_matrix_to_device`]). Mixed
/// devices are `TRITTER_ERR_UNSUPPORTED_DEVICE`; CUDA tensors without a
/// usable GPU (or in a build without the `cuda` feature) are
/// `TRITTER_ERR_CUDA_UNAVAILABLE`. `TRITTER_ACT_INT8` results are identical
/// to the CPU's; float results are within the CPU kernels' documented bound.
/// Per-group scales on the GPU need `group_size % 32 == 0`. GPU inputs are
/// not scanned for NaN/inf (they propagate).
///
/// # Safety
/// As [`tritter_ternary_matrix_matmul_dlpack`]; CUDA tensors must stay valid
/// until the queued work completes; `stream` must be NULL or a live stream
/// of the tensors' device.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_matmul_dlpack_stream(
    matrix: *const tritter_ternary_matrix_t,
    x: *const tritter_dl_tensor_t,
    bias: *const tritter_dl_tensor_t,
    act_mode: u32,
    y: *const tritter_dl_tensor_t,
    stream: *mut c_void,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(matrix, "matrix")? }.0;
        let mode = ActivationMode::from_code(act_mode)?;
        let mut devs = vec![
            (unsafe { dlpack::device_of(x, "x")? }, "x"),
            (unsafe { dlpack::device_of(y, "y")? }, "y"),
        ];
        if !bias.is_null() {
            devs.push((unsafe { dlpack::device_of(bias, "bias")? }, "bias"));
        }
        if dlpack::common_device(&devs)?.is_some() {
            let floats = [Dtype::F32, Dtype::Bf16, Dtype::F16];
            let xv = unsafe { dlpack::cuda_matrix(x, "x", &floats, false)? };
            let yv = unsafe { dlpack::cuda_matrix(y, "y", &floats, true)? };
            let bv = if bias.is_null() {
                None
            } else {
                Some(unsafe { dlpack::cuda_vector(bias, "bias", &[Dtype::F32], Some(1), false)? })
            };
            // SAFETY: the views were validated from the caller's tensors.
            return unsafe {
                cuda::ternary_matmul(m, xv, bv, mode, yv, cuda::Stream(stream as usize))
            };
        }
        let xv = unsafe { dlpack::view2::<f32>(x, "x")? };
        let bv = if bias.is_null() {
            None
        } else {
            Some(unsafe { dlpack::view1::<f32>(bias, "bias")? })
        };
        let yv = unsafe { dlpack::view2_mut::<f32>(y, "y")? };
        m.matmul_into(xv, bv, mode, yv)
    })
}

/// Uploads the matrix's weights to CUDA device `device` in the GPU
/// kernels' layout, once (later calls are no-ops; GPU matmuls would upload
/// on first use). The copy lives as long as the handle. Errors:
/// `TRITTER_ERR_CUDA_UNAVAILABLE`, `TRITTER_ERR_UNSUPPORTED_DEVICE` (no such
/// device), `TRITTER_ERR_CUDA` (out of device memory).
///
/// # Safety
/// `matrix` must be NULL or live.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_to_device(
    matrix: *const tritter_ternary_matrix_t,
    device: i32,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(matrix, "matrix")? }.0;
        m.to_device(device)
    })
}

/// Quantizes a 2-D float32 tensor `weights` `[rows, cols]` and packs it in
/// the canonical 2-bit layout: `packed_out` uint8 `[rows, ceil(cols / 4)]`
/// and `scales_out` float32 `[tritter_num_scales(...)]` (both written).
/// `config` may be NULL (defaults). Host tensors run on the CPU, CUDA
/// tensors (all on one device, contiguous outputs) on the GPU, bit for bit
/// the same; the GPU call waits for its result (it reports non-finite
/// weights as the CPU does). `stream`: as in
/// [`tritter_ternary_matrix_matmul_dlpack_stream`].
///
/// # Safety
/// Tensors must be NULL or valid; outputs must not overlap `weights`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_quantize_pack_dlpack(
    weights: *const tritter_dl_tensor_t,
    config: *const tritter_quant_config_t,
    packed_out: *const tritter_dl_tensor_t,
    scales_out: *const tritter_dl_tensor_t,
    stream: *mut c_void,
) -> tritter_status_t {
    guard(|| {
        let cfg = to_config(unsafe { args::optional(config, "config")? })?;
        let devs = [
            (unsafe { dlpack::device_of(weights, "weights")? }, "weights"),
            (
                unsafe { dlpack::device_of(packed_out, "packed_out")? },
                "packed_out",
            ),
            (
                unsafe { dlpack::device_of(scales_out, "scales_out")? },
                "scales_out",
            ),
        ];
        if dlpack::common_device(&devs)?.is_some() {
            let w = unsafe { dlpack::cuda_matrix(weights, "weights", &[Dtype::F32], false)? };
            let p = unsafe { dlpack::cuda_matrix(packed_out, "packed_out", &[Dtype::U8], true)? };
            let s = unsafe {
                dlpack::cuda_vector(scales_out, "scales_out", &[Dtype::F32], Some(1), true)?
            };
            // SAFETY: validated views of the caller's tensors.
            return unsafe {
                cuda::quantize_pack_2bit(w, &cfg, p, s, cuda::Stream(stream as usize))
            };
        }
        let w = unsafe { dlpack::view2::<f32>(weights, "weights")? };
        let (rows, cols) = w.dim();
        let mut p = unsafe { dlpack::view2_mut::<u8>(packed_out, "packed_out")? };
        let mut s = unsafe { dlpack::view1_mut::<f32>(scales_out, "scales_out")? };
        let rb = pack::row_bytes(cols, PackedLayout::TwoBit);
        if p.dim() != (rows, rb) {
            return Err(Error::shape(
                "packed_out",
                format!("packed_out is {:?}, expected [{rows}, {rb}]", p.shape()),
            ));
        }
        let ns = cfg.granularity.num_scales(rows, cols);
        if s.len() != ns {
            return Err(Error::shape(
                "scales_out",
                format!("{} scales, expected {ns}", s.len()),
            ));
        }
        let (bytes, scales) = quant::quantize_pack_2bit(w, &cfg)?;
        if rb > 0 {
            for (mut dst, src) in p.rows_mut().into_iter().zip(bytes.chunks(rb)) {
                dst.iter_mut().zip(src).for_each(|(d, v)| *d = *v);
            }
        }
        s.iter_mut().zip(&scales).for_each(|(d, v)| *d = *v);
        Ok(())
    })
}

/// Int8 per-token absmax quantization (as
/// [`tritter_quantize_activations_i8`]) on DLPack tensors: `x` `[batch,
/// dim]` (float32; on the GPU also bfloat16/float16), `q_out` int8 `[batch,
/// dim]` and `scales_out` float32 `[batch]` (written). Host tensors run on
/// the CPU; CUDA tensors on the GPU, queued on `stream`, bit-identical on
/// finite input (a GPU row holding NaN/inf gets scale NaN instead of an
/// error).
///
/// # Safety
/// Tensors must be NULL or valid; outputs must not overlap `x`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_quantize_activations_i8_dlpack(
    x: *const tritter_dl_tensor_t,
    q_out: *const tritter_dl_tensor_t,
    scales_out: *const tritter_dl_tensor_t,
    stream: *mut c_void,
) -> tritter_status_t {
    guard(|| {
        let devs = [
            (unsafe { dlpack::device_of(x, "x")? }, "x"),
            (unsafe { dlpack::device_of(q_out, "q_out")? }, "q_out"),
            (
                unsafe { dlpack::device_of(scales_out, "scales_out")? },
                "scales_out",
            ),
        ];
        if dlpack::common_device(&devs)?.is_some() {
            let floats = [Dtype::F32, Dtype::Bf16, Dtype::F16];
            let xv = unsafe { dlpack::cuda_matrix(x, "x", &floats, false)? };
            let q = unsafe { dlpack::cuda_matrix(q_out, "q_out", &[Dtype::I8], true)? };
            let s = unsafe {
                dlpack::cuda_vector(scales_out, "scales_out", &[Dtype::F32], Some(1), true)?
            };
            // SAFETY: validated views of the caller's tensors.
            return unsafe {
                cuda::quantize_activations_i8(xv, q, s, cuda::Stream(stream as usize))
            };
        }
        let xv = unsafe { dlpack::view2::<f32>(x, "x")? };
        let mut q = unsafe { dlpack::view2_mut::<i8>(q_out, "q_out")? };
        let mut s = unsafe { dlpack::view1_mut::<f32>(scales_out, "scales_out")? };
        if q.dim() != xv.dim() {
            return Err(Error::shape(
                "q_out",
                format!("q_out is {:?}, x is {:?}", q.shape(), xv.shape()),
            ));
        }
        if s.len() != xv.nrows() {
            return Err(Error::shape(
                "scales_out",
                format!("{} scales for {} rows", s.len(), xv.nrows()),
            ));
        }
        let (qa, sa) = quant::quantize_activations_i8(xv)?;
        q.assign(&qa);
        s.assign(&sa);
        Ok(())
    })
}
