//! The seed's `PackedTernary`, `matmul` and `dot` over
//! [`crate::ternary::TernaryMatrix`] and [`crate::vsa`].

use ndarray::{Array2, ArrayView1, ArrayView2};

use crate::ternary::{ActivationMode, Granularity, PackedLayout, TernaryMatrix};
use crate::vsa::PackedHv;
use crate::{Error, Result};

/// Packed ternary weights with their scales and shape (the seed's type).
///
/// It holds a [`TernaryMatrix`], so the kernels' compute layout is built
/// once, when the value is made, not on every [`matmul`] (the seed
/// re-packed on every call). The interchange bytes ([`PackedTernary::data`])
/// are the canonical 2-bit layout: 4 trits a byte, trit `j` at bits
/// `2j..2j+1`, `00 = 0`, `01 = +1`, `10 = -1`, rows padded to whole bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedTernary {
    matrix: TernaryMatrix,
}

impl PackedTernary {
    /// From canonical 2-bit bytes (validated: length, codes, padding),
    /// scales of `granularity`'s shape and `shape = (rows, cols)`.
    pub fn from_parts(
        data: &[u8],
        scales: &[f32],
        shape: (usize, usize),
        granularity: Granularity,
    ) -> Result<Self> {
        let matrix = TernaryMatrix::from_packed(
            data,
            shape.0,
            shape.1,
            PackedLayout::TwoBit,
            scales,
            granularity,
        )?;
        Ok(PackedTernary { matrix })
    }

    /// The canonical 2-bit bytes (`rows * ceil(cols / 4)`).
    pub fn data(&self) -> Vec<u8> {
        self.matrix.packed_2bit()
    }

    /// The scales, row-major over [`Granularity::scale_shape`].
    pub fn scales(&self) -> &[f32] {
        self.matrix.scales()
    }

    /// `(rows, cols)` = `(out_features, in_features)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.matrix.rows(), self.matrix.cols())
    }

    /// The scales' granularity.
    pub fn granularity(&self) -> Granularity {
        self.matrix.granularity()
    }

    /// Bytes held (compute layout + scales).
    pub fn memory_bytes(&self) -> usize {
        self.matrix.memory_bytes()
    }

    /// The weight object the rest of the library takes.
    pub fn matrix(&self) -> &TernaryMatrix {
        &self.matrix
    }

    /// Unwraps the weight object.
    pub fn into_matrix(self) -> TernaryMatrix {
        self.matrix
    }

    /// `values * scale` as f32.
    pub fn unpack(&self) -> Array2<f32> {
        self.matrix.to_f32()
    }
}

impl From<TernaryMatrix> for PackedTernary {
    fn from(matrix: TernaryMatrix) -> Self {
        PackedTernary { matrix }
    }
}

impl From<PackedTernary> for TernaryMatrix {
    fn from(p: PackedTernary) -> Self {
        p.matrix
    }
}

/// `input · Wᵀ (+ bias)` with f32 activations: `input` is `[batch, cols]`,
/// the result `[batch, rows]` (nn.Linear). [`matmul_with`] picks the
/// activation mode (int8 per-token is BitNet's W1.58A8).
pub fn matmul(
    input: ArrayView2<f32>,
    weights: &PackedTernary,
    bias: Option<ArrayView1<f32>>,
) -> Result<Array2<f32>> {
    matmul_with(input, weights, bias, ActivationMode::F32)
}

/// [`matmul`] with a chosen activation mode.
pub fn matmul_with(
    input: ArrayView2<f32>,
    weights: &PackedTernary,
    bias: Option<ArrayView1<f32>>,
    mode: ActivationMode,
) -> Result<Array2<f32>> {
    weights.matrix.matmul(input, bias, mode)
}

/// The inner product `Σ a_i b_i` of two ternary vectors (each entry in
/// {-1, 0, +1}), computed on bit-sliced packed vectors with popcounts
/// ([`crate::vsa::ops::dot`]). Errors: different lengths, an entry outside
/// {-1, 0, +1}.
pub fn dot(a: &[i8], b: &[i8]) -> Result<i64> {
    if a.len() != b.len() {
        return Err(Error::shape(
            "b",
            format!("a has {} entries, b has {}", a.len(), b.len()),
        ));
    }
    let pa = PackedHv::from_trits(a)?;
    let pb = PackedHv::from_trits(b)?;
    crate::vsa::ops::dot(&pa, &pb)
}
