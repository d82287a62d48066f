//! Ternary matmul `Y = X · Wᵀ (+ bias)`.
//!
//! * [`reference`](mod@reference): the scalar definition every fast kernel must equal.
//! * [`layout`]: the compute layout (2-bit bit planes or base-3 fixed point,
//!   row tiles, padded K) built once per matrix.
//! * `avx2` (int8 kernels designed for AVX2), `x86` (AVX-512BW, AVX-512
//!   VNNI, and AVX2 f32/decoder kernels) and `neon` kernels, driven by the
//!   `driver`: a plan, a strategy chosen from the mode, the batch and the
//!   level's kernels, activations prepared once, the strategy's execution
//!   (rayon or the low-latency fork-join over row tiles) and an epilogue.
//! * [`gemm`]: the dispatcher the [`TernaryMatrix`] uses; it runs the
//!   kernels of the crate's active [`CpuLevel`] ([`crate::cpu::active`]:
//!   the best level the CPU has, or the lower one `TRITTER_CPU_LEVEL` =
//!   `scalar`/`avx2`/`avx512`/`avx512vnni` names).
//!
//! The SIMD kernels cover every shape, both activation modes and every scale
//! granularity. Per-group scales whose group length is not a multiple of the
//! K block (256 weights for the 2-bit compute format, 320 for base-3) run on
//! copies of the activations masked to each group, so a K block that two
//! groups share is multiplied once per group (about `1 + block / group_len`
//! times the work of aligned groups).
//!
//! Strategies by level (batch 1 / batch > 1):
//!
//! | | int8 | f32 activations |
//! |---|---|---|
//! | AVX2 | multi-tile GEMV on the packed tiles / GEMM on decoded codes (`vpmaddubsw`, i16 sums) | three int8 digits through the int8 GEMV / from batch 4 (2-bit format) the [`train`] tiles (decoded `s·t` x FMA micro-kernel), else direct add-or-subtract kernels |
//! | AVX-512 | multi-tile GEMV (VNNI: both formats; BW: 2-bit) / decoded codes | pair tables + `vpermps` (2-bit), direct masked adds (base-3); from batch 4 (2-bit) the [`train`] tiles |
//!
//! Except the [`train`] tiles (which multiply decoded `s·t` by FMA), the
//! f32 kernels never multiply a weight by an activation in floating point. The AVX2 batch-1 path splits each scale group's activations into
//! three int8 digits, `x ≈ (65536 h + 256 m + l) / scale` with `scale =
//! 8355711 / max_g |x|` (24-bit fixed point relative to the group's largest
//! value), sums `t · digit` exactly in integers and rounds once; about 2x the
//! int8 GEMV's time. On aarch64 the NEON kernels work on codes decoded by
//! scalar code (no direct kernels yet).
//!
//! # Definition
//!
//! With `W` of shape `[rows, cols]` split into scale groups (see
//! [`Granularity`](super::Granularity)), `t[o,k]` in {-1, 0, 1}, scales `s[o,g]`:
//!
//! * **F32 activations**: `y[b,o] = Σ_g s[o,g] · (Σ_{k∈g} t[o,k] · x[b,k]) + bias[o]`;
//!   the inner sum uses only additions and subtractions. Fast kernels may sum
//!   in another order; they match the reference within
//!   `(cols + cols/256 + 3) · 2⁻²³ · (Σ_g |s[o,g]| Σ_{k∈g} |x[b,k]| + |bias[o]|)`:
//!   twice the f32 summation bound `cols · 2⁻²⁴ · Σ` (one for the
//!   reference's order, one for the kernel's), a few final roundings, and
//!   `cols/256` for the AVX2 digits, whose rounding moves each `x` by at most
//!   `max_g |x| / (2 · 8355711) = 1.004 · 2⁻²⁴ · max_g |x|`.
//! * **Int8 activations** (W1.58A8): each row of `X` is quantized with
//!   [`quantize_activations_i8`](super::quant::quantize_activations_i8) to
//!   `(q[b,·], a[b])`; then
//!   `y[b,o] = (Σ_g s[o,g] · (Σ_{k∈g} t[o,k] · q[b,k])) / a[b] + bias[o]`,
//!   the inner sums exact in i32 and the group sum in f32 in group order,
//!   so every kernel is bit-identical to the reference.

mod acts;
#[cfg(target_arch = "x86_64")]
mod avx2;
mod decoded;
mod direct;
mod driver;
mod epilogue;
mod gemv;
mod kernels;
pub mod layout;
mod lut;
#[cfg(target_arch = "aarch64")]
mod neon;
mod plan;
pub mod reference;
#[cfg(test)]
mod tests;
pub mod train;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use layout::ComputeFormat;

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

use super::TernaryMatrix;
use crate::cpu::CpuLevel;
use crate::{Error, Result};

/// How activations enter the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivationMode {
    /// f32 activations; additions and subtractions only.
    F32,
    /// Int8 per-token absmax activations (BitNet W1.58A8); integer dot products.
    Int8,
}

crate::c_codes!(ActivationMode, "act_mode", "activation mode" { F32 = 0 => "f32", Int8 = 1 => "int8" });

/// Checks the shapes of `x`, `bias`, `y` against `m`.
pub fn check_shapes(
    m: &TernaryMatrix,
    x: &ArrayView2<f32>,
    bias: Option<&ArrayView1<f32>>,
    y: &ArrayViewMut2<f32>,
) -> Result<()> {
    if x.ncols() != m.cols() {
        return Err(Error::shape(
            "x",
            format!(
                "x has {} columns, the matrix has in_features = {}",
                x.ncols(),
                m.cols()
            ),
        ));
    }
    if let Some(b) = bias {
        if b.len() != m.rows() {
            return Err(Error::shape(
                "bias",
                format!("bias has {} elements, out_features = {}", b.len(), m.rows()),
            ));
        }
    }
    if y.dim() != (x.nrows(), m.rows()) {
        return Err(Error::shape(
            "y",
            format!(
                "y is {:?}, expected [{}, {}]",
                y.shape(),
                x.nrows(),
                m.rows()
            ),
        ));
    }
    Ok(())
}

/// `y = x · Wᵀ (+ bias)` with the kernels of the crate's active CPU level
/// ([`crate::cpu::active`]; `TRITTER_CPU_LEVEL` caps it).
pub fn gemm(
    m: &TernaryMatrix,
    x: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
    mode: ActivationMode,
    y: ArrayViewMut2<f32>,
) -> Result<()> {
    gemm_with_level(m, x, bias, mode, y, crate::cpu::active())
}

/// As [`gemm`] with the kernels of a given `level` (for tests and benches).
/// A level without matmul kernels of its own (none today) would run the
/// best kernels below it.
///
/// Errors: shape mismatches, non-finite `x` or `bias` ([`Error::NonFinite`]:
/// one rule for every float input), and [`Error::InvalidArgument`] (naming
/// `level`) if this CPU lacks the level.
pub fn gemm_with_level(
    m: &TernaryMatrix,
    x: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
    mode: ActivationMode,
    y: ArrayViewMut2<f32>,
    level: CpuLevel,
) -> Result<()> {
    check_shapes(m, &x, bias.as_ref(), &y)?;
    crate::check_finite_view(&x, "x")?;
    if let Some(b) = &bias {
        if let Some(index) = b.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite { arg: "bias", index });
        }
    }
    if !level.is_supported() {
        return Err(Error::invalid(
            "level",
            format!("this CPU does not support {}", level.name()),
        ));
    }
    driver::gemm(level, m, x, bias, mode, y, driver::MAX_CHUNK_BLOCKS)
}

/// As [`gemm_with_level`] with the kernels the [`train`] tiles replace
/// (f32, 2-bit, batch >= 4): benches time both in one run.
#[doc(hidden)]
pub fn gemm_without_train(
    m: &TernaryMatrix,
    x: ArrayView2<f32>,
    mode: ActivationMode,
    y: ArrayViewMut2<f32>,
    level: CpuLevel,
) -> Result<()> {
    check_shapes(m, &x, None, &y)?;
    crate::check_finite_view(&x, "x")?;
    if !level.is_supported() {
        return Err(Error::invalid(
            "level",
            format!("this CPU does not support {}", level.name()),
        ));
    }
    driver::gemm_opts(level, m, x, None, mode, y, driver::MAX_CHUNK_BLOCKS, false)
}

/// The weight-read floor of a batch-1 call: reads every byte of `m`'s
/// compute copy once, split over the threads exactly as the batch-1 kernels
/// split it, and returns a checksum (so the reads cannot be optimized away).
/// Benches divide a GEMV's time by this one's, measured in the same run on
/// the same matrices, instead of assuming a bandwidth.
#[doc(hidden)]
pub fn read_floor_probe(m: &TernaryMatrix) -> u64 {
    driver::read_floor_probe(m)
}
