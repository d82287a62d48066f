//! C entry points for the training path: quantize straight into the
//! canonical 2-bit layout, and the two products a linear layer's training
//! step needs on packed weights (`y = x · Wᵀ + b`, `dx = dy · W`), f32 or
//! bf16 activations, all on DLPack tensors (no copies on the caller's side).

use half::bf16;
use ndarray::{ArrayView1, ArrayView2};

use super::dlpack::{self, tritter_dl_tensor_t, TRITTER_DL_BFLOAT, TRITTER_DL_FLOAT};
use super::handle;
use super::status::{guard, tritter_status_t};
use super::ternary::{tritter_quant_config_t, tritter_ternary_matrix_t};
use crate::ternary::matmul::train::{self, ActIn, ActOut, TernaryWeights};
use crate::ternary::quant::{QuantConfig, QuantMethod};
use crate::ternary::{ActivationMode, Granularity};
use crate::{Error, Result};

fn to_config(c: Option<&tritter_quant_config_t>) -> Result<QuantConfig> {
    let Some(c) = c else {
        return Ok(QuantConfig::default());
    };
    let cfg = QuantConfig {
        method: QuantMethod::from_code(c.method)?,
        granularity: Granularity::from_code(c.granularity, c.group_size)?,
        threshold: c.use_threshold.then_some(c.threshold_factor),
        eps: c.eps,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The element type of a tensor argument that may be float32 or bfloat16.
fn is_bf16(t: *const tritter_dl_tensor_t, name: &'static str) -> Result<bool> {
    // SAFETY: the exports' contract: `t` is NULL or a valid tensor.
    let t = unsafe { t.as_ref() }.ok_or(Error::NullPointer(name))?;
    match (t.dtype.code, t.dtype.bits) {
        (TRITTER_DL_FLOAT, 32) => Ok(false),
        (TRITTER_DL_BFLOAT, 16) => Ok(true),
        (c, b) => Err(Error::UnsupportedDtype {
            arg: name,
            msg: format!("expected float32 or bfloat16, got type code {c} with {b} bits"),
        }),
    }
}

/// # Safety
/// `t` NULL or a valid tensor whose data stays valid for `'a`.
unsafe fn act_in<'a>(t: *const tritter_dl_tensor_t, name: &'static str) -> Result<ActIn<'a>> {
    Ok(if is_bf16(t, name)? {
        ActIn::Bf16(unsafe { dlpack::view2::<bf16>(t, name)? })
    } else {
        ActIn::F32(unsafe { dlpack::view2::<f32>(t, name)? })
    })
}

/// # Safety
/// As [`act_in`], and the data not aliased by any other argument.
unsafe fn act_out<'a>(t: *const tritter_dl_tensor_t, name: &'static str) -> Result<ActOut<'a>> {
    Ok(if is_bf16(t, name)? {
        ActOut::Bf16(unsafe { dlpack::view2_mut::<bf16>(t, name)? })
    } else {
        ActOut::F32(unsafe { dlpack::view2_mut::<f32>(t, name)? })
    })
}

/// Packed canonical bytes and scales as borrowed weights. `packed` must be
/// C-contiguous uint8 `[rows, ceil(cols / 4)]`; `scales` float32
/// `[scale_rows, groups_per_row]` (any strides: copied into `buf`).
///
/// # Safety
/// Tensors NULL or valid for `'a`.
unsafe fn weights<'a>(
    packed: *const tritter_dl_tensor_t,
    cols: usize,
    scales: *const tritter_dl_tensor_t,
    granularity: u32,
    group_size: usize,
    buf: &'a mut Vec<f32>,
) -> Result<TernaryWeights<'a>> {
    let g = Granularity::from_code(granularity, group_size)?;
    let p: ArrayView2<'a, u8> = unsafe { dlpack::view2::<u8>(packed, "packed")? };
    let rows = p.nrows();
    let rb = cols.div_ceil(4);
    if p.ncols() != rb {
        return Err(Error::shape(
            "packed",
            format!(
                "packed has {} bytes a row, {cols} columns need {rb}",
                p.ncols()
            ),
        ));
    }
    let bytes = p.to_slice().ok_or_else(|| {
        Error::invalid("packed", "packed weights must be C-contiguous (row-major)")
    })?;
    let s = unsafe { dlpack::view2::<f32>(scales, "scales")? };
    let (sr, sg) = g.scale_shape(rows, cols);
    if s.dim() != (sr, sg) {
        return Err(Error::shape(
            "scales",
            format!(
                "scales are {:?}, {g:?} on {rows}x{cols} needs [{sr}, {sg}]",
                s.shape()
            ),
        ));
    }
    buf.clear();
    crate::error::try_reserve(buf, s.len(), "scales")?;
    buf.extend(s.iter().copied());
    TernaryWeights::canonical(bytes, rows, cols, buf, g)
}

/// Quantizes float32 `weights` `[rows, cols]` (any strides) straight into
/// the canonical 2-bit layout: `packed_out` uint8 `[rows, ceil(cols / 4)]`
/// (C-contiguous), `scales_out` float32 `[scale_rows, groups_per_row]` (see
/// `tritter_num_scales`). `config` may be NULL (defaults). Results equal
/// `tritter_quantize_f32` followed by `tritter_pack`.
///
/// Errors: non-finite weights (`TRITTER_ERR_NON_FINITE`), wrong shapes or
/// dtypes of the outputs, invalid config fields, CUDA tensors
/// (`TRITTER_ERR_CUDA_UNAVAILABLE` without the CUDA backend).
///
/// # Safety
/// Tensors NULL or valid; outputs not overlapping the input or each other.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_quantize_pack_2bit_dlpack(
    weights: *const tritter_dl_tensor_t,
    config: *const tritter_quant_config_t,
    packed_out: *const tritter_dl_tensor_t,
    scales_out: *const tritter_dl_tensor_t,
) -> tritter_status_t {
    guard(|| {
        let cfg = to_config(unsafe { super::args::optional(config, "config")? })?;
        let w = unsafe { dlpack::view2::<f32>(weights, "weights")? };
        let (rows, cols) = w.dim();
        let mut p = unsafe { dlpack::view2_mut::<u8>(packed_out, "packed_out")? };
        if p.dim() != (rows, cols.div_ceil(4)) {
            return Err(Error::shape(
                "packed_out",
                format!(
                    "packed_out is {:?}, expected [{rows}, {}]",
                    p.shape(),
                    cols.div_ceil(4)
                ),
            ));
        }
        let mut s = unsafe { dlpack::view2_mut::<f32>(scales_out, "scales_out")? };
        let (sr, sg) = cfg.granularity.scale_shape(rows, cols);
        if s.dim() != (sr, sg) {
            return Err(Error::shape(
                "scales_out",
                format!("scales_out is {:?}, expected [{sr}, {sg}]", s.shape()),
            ));
        }
        let (bytes, scales) = train::quantize_pack_2bit(w, &cfg, crate::cpu::active())?;
        match p.as_slice_mut() {
            Some(d) => d.copy_from_slice(&bytes),
            None => p.iter_mut().zip(bytes.iter()).for_each(|(d, &b)| *d = b),
        }
        s.iter_mut().zip(scales.iter()).for_each(|(d, &v)| *d = v);
        Ok(())
    })
}

/// `y = x · Wᵀ (+ bias)` with `W` given as canonical 2-bit bytes:
/// `packed` uint8 `[rows, ceil(cols / 4)]` (C-contiguous), `scales` float32
/// `[scale_rows, groups_per_row]` of `granularity` / `group_size`
/// (`TRITTER_GRANULARITY_*`), `x` float32 or bfloat16 `[batch, cols]`,
/// `bias` NULL or float32 `[rows]`, `y` float32 or bfloat16 `[batch, rows]`
/// (written). Any non-negative strides for `x`, `bias`, `y`.
/// `act_mode` `TRITTER_ACT_INT8` multiplies the per-token int8
/// fake-quantized activations (BitNet training); `TRITTER_ACT_F32` the
/// activations as given. Products are within `cols · 2⁻²⁴ · Σ|s·t·x|` of
/// the exact value; non-finite activations propagate (not an error).
///
/// Errors: shapes, dtypes, an invalid code `11` in `packed`
/// (`TRITTER_ERR_INVALID_DATA`; `y` is then unspecified), CUDA tensors.
///
/// # Safety
/// Tensors NULL (bias only) or valid; `y` not overlapping the inputs.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_linear_dlpack(
    packed: *const tritter_dl_tensor_t,
    cols: usize,
    scales: *const tritter_dl_tensor_t,
    granularity: u32,
    group_size: usize,
    x: *const tritter_dl_tensor_t,
    bias: *const tritter_dl_tensor_t,
    act_mode: u32,
    y: *const tritter_dl_tensor_t,
) -> tritter_status_t {
    guard(|| {
        let mode = ActivationMode::from_code(act_mode)?;
        let mut buf = Vec::new();
        let w = unsafe { weights(packed, cols, scales, granularity, group_size, &mut buf)? };
        let xv = unsafe { act_in(x, "x")? };
        let bv: Option<ArrayView1<f32>> = if bias.is_null() {
            None
        } else {
            Some(unsafe { dlpack::view1::<f32>(bias, "bias")? })
        };
        let yv = unsafe { act_out(y, "y")? };
        train::linear(&w, xv, bv, mode, yv, crate::cpu::active())
    })
}

/// `dx = dy · W` (the input gradient of `y = x · Wᵀ`) with `W` as in
/// [`tritter_ternary_linear_dlpack`]: `dy` float32 or bfloat16
/// `[batch, rows]`, `dx` float32 or bfloat16 `[batch, cols]` (written).
/// `W` is never expanded to floats (one decoded tile at a time).
///
/// Errors: shapes, dtypes, invalid codes (`TRITTER_ERR_INVALID_DATA`), CUDA
/// tensors.
///
/// # Safety
/// Tensors NULL or valid; `dx` not overlapping the inputs.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_linear_grad_input_dlpack(
    packed: *const tritter_dl_tensor_t,
    cols: usize,
    scales: *const tritter_dl_tensor_t,
    granularity: u32,
    group_size: usize,
    dy: *const tritter_dl_tensor_t,
    dx: *const tritter_dl_tensor_t,
) -> tritter_status_t {
    guard(|| {
        let mut buf = Vec::new();
        let w = unsafe { weights(packed, cols, scales, granularity, group_size, &mut buf)? };
        let d = unsafe { act_in(dy, "dy")? };
        let o = unsafe { act_out(dx, "dx")? };
        train::linear_grad_input(&w, d, o, crate::cpu::active())
    })
}

/// `dx = dy · W` for a matrix handle (2-bit compute format): `dy` float32 or
/// bfloat16 `[batch, rows]`, `dx` float32 or bfloat16 `[batch, cols]`.
///
/// Errors: shapes, dtypes, a base-3 compute format
/// (`TRITTER_ERR_INVALID_ARGUMENT` naming `matrix`), CUDA tensors.
///
/// # Safety
/// `matrix` NULL or live; tensors NULL or valid; `dx` not overlapping `dy`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_ternary_matrix_matmul_t_dlpack(
    matrix: *const tritter_ternary_matrix_t,
    dy: *const tritter_dl_tensor_t,
    dx: *const tritter_dl_tensor_t,
) -> tritter_status_t {
    guard(|| {
        let m = unsafe { handle::get(matrix, "matrix")? }.inner();
        let w = TernaryWeights::of_matrix(m).ok_or_else(|| {
            Error::invalid(
                "matrix",
                "the transposed product needs the 2-bit compute format",
            )
        })?;
        let d = unsafe { act_in(dy, "dy")? };
        let o = unsafe { act_out(dx, "dx")? };
        train::linear_grad_input(&w, d, o, crate::cpu::active())
    })
}
