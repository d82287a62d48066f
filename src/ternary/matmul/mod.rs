//! Ternary matmul `Y = X · Wᵀ (+ bias)`.
//!
//! * [`reference`]: the scalar definition every fast kernel must equal.
//! * [`gemm`]: the dispatcher the [`TernaryMatrix`](super::TernaryMatrix) uses.
//!
//! # Definition
//!
//! With `W` of shape `[rows, cols]` split into scale groups (see
//! [`Granularity`](super::Granularity)), `t[o,k]` in {-1, 0, 1}, scales `s[o,g]`:
//!
//! * **F32 activations**: `y[b,o] = Σ_g s[o,g] · (Σ_{k∈g} t[o,k] · x[b,k]) + bias[o]`;
//!   the inner sum uses only additions and subtractions. Fast kernels may sum
//!   in another order; they match the reference within
//!   `cols · 2⁻²³ · Σ_g |s[o,g]| Σ_{k∈g} |x[b,k]|` (f32 summation bound).
//! * **Int8 activations** (W1.58A8): each row of `X` is quantized with
//!   [`quantize_activations_i8`](super::quant::quantize_activations_i8) to
//!   `(q[b,·], a[b])`; then
//!   `y[b,o] = (Σ_g s[o,g] · (Σ_{k∈g} t[o,k] · q[b,k])) / a[b] + bias[o]`,
//!   the inner sums exact in i32 and the group sum in f32 in group order,
//!   so every kernel is bit-identical to the reference.

pub mod reference;

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

use super::TernaryMatrix;
use crate::{Error, Result};

/// How activations enter the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivationMode {
    /// f32 activations; additions and subtractions only.
    F32,
    /// Int8 per-token absmax activations (BitNet W1.58A8); integer dot products.
    Int8,
}

impl ActivationMode {
    /// From the C code (0 f32, 1 int8).
    pub fn from_code(code: u32) -> Result<Self> {
        match code {
            0 => Ok(ActivationMode::F32),
            1 => Ok(ActivationMode::Int8),
            c => Err(Error::invalid(
                "act_mode",
                format!("unknown activation mode {c} (0 f32, 1 int8)"),
            )),
        }
    }
}

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

/// `y = x · Wᵀ (+ bias)` with the fastest kernel available.
pub fn gemm(
    m: &TernaryMatrix,
    x: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
    mode: ActivationMode,
    y: ArrayViewMut2<f32>,
) -> Result<()> {
    check_shapes(m, &x, bias.as_ref(), &y)?;
    crate::check_finite_view(&x, "x")?;
    reference::gemm(m, x, bias, mode, y);
    Ok(())
}
