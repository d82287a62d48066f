//! Ternary weights: quantization ([`quant`]), interchange layouts ([`pack`]),
//! matmul ([`matmul`]) and the weight-matrix object ([`TernaryMatrix`]).
//!
//! Conventions: a weight matrix is `[out_features, in_features]` = `[rows, cols]`
//! (nn.Linear); activations are `[batch, in_features]`; `Y = X · Wᵀ (+ bias)`.

pub mod matmul;
pub mod matrix;
pub mod pack;
pub mod quant;

pub use matmul::ActivationMode;
pub use matrix::TernaryMatrix;
pub use pack::PackedLayout;
pub use quant::{QuantConfig, QuantMethod};

use crate::{Error, Result};

/// How many weights share one scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// One scale for the whole matrix (BitNet b1.58).
    PerTensor,
    /// One scale per output row.
    PerRow,
    /// One scale per group of `g` consecutive weights along the input
    /// dimension of each row; the last group of a row may be shorter.
    PerGroup(usize),
}

impl Granularity {
    /// Validates the group size (`PerGroup(0)` is invalid).
    pub fn validate(self) -> Result<Self> {
        match self {
            Granularity::PerGroup(0) => Err(Error::invalid(
                "group_size",
                "must be > 0 for per-group scales",
            )),
            g => Ok(g),
        }
    }

    /// Scale-array shape `(scale_rows, groups_per_row)` for a `rows x cols` matrix.
    pub fn scale_shape(self, rows: usize, cols: usize) -> (usize, usize) {
        match self {
            Granularity::PerTensor => (1, 1),
            Granularity::PerRow => (rows, 1),
            Granularity::PerGroup(g) => (rows, cols.div_ceil(g.max(1)).max(1)),
        }
    }

    /// Number of scales for a `rows x cols` matrix.
    pub fn num_scales(self, rows: usize, cols: usize) -> usize {
        let (a, b) = self.scale_shape(rows, cols);
        a * b
    }

    /// Weights per group along the input dimension (`cols` unless per-group).
    pub fn group_len(self, cols: usize) -> usize {
        match self {
            Granularity::PerGroup(g) => g,
            _ => cols.max(1),
        }
    }

    /// C code of the granularity kind (0 tensor, 1 row, 2 group).
    pub const fn code(self) -> u32 {
        match self {
            Granularity::PerTensor => 0,
            Granularity::PerRow => 1,
            Granularity::PerGroup(_) => 2,
        }
    }

    /// Granularity from its C code (the inverse of [`Granularity::code`]) and group size.
    pub fn from_code(code: u32, group_size: usize) -> Result<Self> {
        [
            Granularity::PerTensor,
            Granularity::PerRow,
            Granularity::PerGroup(group_size),
        ]
        .into_iter()
        .find(|g| g.code() == code)
        .ok_or_else(|| {
            Error::invalid(
                "granularity",
                format!("unknown granularity code {code} (0 tensor, 1 row, 2 group)"),
            )
        })?
        .validate()
    }
}
