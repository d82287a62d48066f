//! Ternary matmul `Y = X · Wᵀ (+ bias)`.
//!
//! * [`reference`](mod@reference): the scalar definition every fast kernel must equal.
//! * [`layout`]: the compute layout (2-bit bit planes or base-3 fixed point,
//!   row tiles, padded K) built once per matrix.
//! * `x86` (AVX2, AVX-512BW, AVX-512 VNNI) and `neon` kernels, driven by
//!   `fast` (rayon over row tiles, cache blocks over the batch).
//! * [`gemm`]: the dispatcher the [`TernaryMatrix`] uses;
//!   it picks the best [`Level`] the CPU has at run time (`TRITTER_CPU_LEVEL`
//!   = `scalar`/`avx2`/`avx512`/`avx512vnni` forces a supported one).
//!
//! The SIMD kernels cover every shape, both activation modes and every scale
//! granularity. Per-group scales whose group length is not a multiple of the
//! K block (256 weights for the 2-bit compute format, 320 for base-3) run on
//! copies of the activations masked to each group, so a K block that two
//! groups share is multiplied once per group (about `1 + block / group_len`
//! times the work of aligned groups).
//! f32 activations use direct kernels on the packed tiles at every batch size
//! (AVX2, AVX-512; both compute formats); int8 uses direct kernels at batch 1
//! and decoded codes otherwise. The f32 kernels never multiply a weight:
//! 2-bit on AVX-512 looks up `t₁·x₁ + t₂·x₂` for each pair of weights in a
//! 16-entry table built per call from the activations (`vpermps`, 16 output
//! rows a register); the others add or subtract each activation under a mask
//! (AVX-512) or a blend (AVX2). Cost at 4096², batch 1, one thread on the
//! AVX-512 development machine: about 4x the int8 kernel for 2-bit, 11x for
//! base-3 (see BENCHMARKS.md); int8 stays the fast mode.
//! On aarch64 the NEON kernels work on codes decoded by scalar code (no
//! direct kernels yet).
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

mod fast;
pub mod layout;
#[cfg(target_arch = "aarch64")]
mod neon;
pub mod reference;
#[cfg(test)]
mod tests;
pub mod train;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use layout::ComputeFormat;

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

/// A CPU instruction-set level with its own kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// The scalar reference kernel (always available).
    Scalar,
    /// AVX2 (`maddubs` for int8).
    Avx2,
    /// AVX-512 F + BW (`maddubs` for int8, mask registers for f32).
    Avx512,
    /// AVX-512 F + BW + VNNI (`vpdpbusd` for int8).
    Avx512Vnni,
    /// aarch64 NEON.
    Neon,
}

impl Level {
    /// Every level, slowest first.
    pub const ALL: [Level; 5] = [
        Level::Scalar,
        Level::Avx2,
        Level::Avx512,
        Level::Avx512Vnni,
        Level::Neon,
    ];

    /// Whether this CPU can run the level.
    pub fn is_supported(self) -> bool {
        match self {
            Level::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => {
                is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
            }
            #[cfg(target_arch = "x86_64")]
            Level::Avx512Vnni => {
                Level::Avx512.is_supported() && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Level::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The level's name (`scalar`, `avx2`, `avx512`, `avx512vnni`, `neon`).
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
            Level::Avx512Vnni => "avx512vnni",
            Level::Neon => "neon",
        }
    }

    /// The best supported level, or the one named by `TRITTER_CPU_LEVEL` if
    /// set and supported (read once).
    pub fn best() -> Level {
        static BEST: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let forced = std::env::var("TRITTER_CPU_LEVEL").ok().and_then(|v| {
                Level::ALL
                    .into_iter()
                    .find(|l| l.name() == v.trim() && l.is_supported())
            });
            forced.unwrap_or_else(|| {
                Level::ALL
                    .into_iter()
                    .rev()
                    .find(|l| l.is_supported())
                    .unwrap_or(Level::Scalar)
            })
        })
    }
}

/// `y = x · Wᵀ (+ bias)` with the fastest kernel available ([`Level::best`]).
pub fn gemm(
    m: &TernaryMatrix,
    x: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
    mode: ActivationMode,
    y: ArrayViewMut2<f32>,
) -> Result<()> {
    gemm_with_level(m, x, bias, mode, y, Level::best())
}

/// As [`gemm`] with the kernels of a given `level` (for tests and benches).
///
/// Errors: shape mismatches, non-finite `x`, and [`Error::InvalidArgument`]
/// (naming `level`) if this CPU lacks the level.
pub fn gemm_with_level(
    m: &TernaryMatrix,
    x: ArrayView2<f32>,
    bias: Option<ArrayView1<f32>>,
    mode: ActivationMode,
    y: ArrayViewMut2<f32>,
    level: Level,
) -> Result<()> {
    check_shapes(m, &x, bias.as_ref(), &y)?;
    crate::check_finite_view(&x, "x")?;
    if !level.is_supported() {
        return Err(Error::invalid(
            "level",
            format!("this CPU does not support {}", level.name()),
        ));
    }
    if train::handles(m, x.nrows(), mode, level) {
        return train::gemm_matrix(m, x, bias, y, level);
    }
    fast::gemm(level, m, x, bias, mode, y, fast::MAX_CHUNK_BLOCKS);
    Ok(())
}

/// The weight-read floor of a batch-1 call: reads every byte of `m`'s
/// compute copy once, split over the threads exactly as the batch-1 kernels
/// split it, and returns a checksum (so the reads cannot be optimized away).
/// Benches divide a GEMV's time by this one's, measured in the same run on
/// the same matrices, instead of assuming a bandwidth.
#[doc(hidden)]
pub fn read_floor_probe(m: &TernaryMatrix) -> u64 {
    fast::read_floor_probe(m)
}
