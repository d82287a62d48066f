//! The seed's quantization functions over [`crate::ternary::quant`].

use ndarray::{Array2, ArrayView2};

use super::ternary::PackedTernary;
use crate::ternary::{quant, Granularity, QuantMethod, TernaryMatrix};
use crate::Result;

/// The seed's `QuantizeConfig`: the library's [`crate::ternary::QuantConfig`]
/// (method, granularity, optional threshold, eps). [`quantize_absmean`] and
/// [`quantize_absmax`] override its `method`.
pub type QuantizeConfig = crate::ternary::QuantConfig;

/// Ternary values with their scales, as the seed returned them.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizationResult {
    /// `[rows, cols]` values in {-1, 0, +1}.
    pub values: Array2<i8>,
    /// Scales, row-major over [`Granularity::scale_shape`].
    pub scales: Vec<f32>,
    /// `(rows, cols)` = `(out_features, in_features)`.
    pub shape: (usize, usize),
    /// How many weights share a scale.
    pub granularity: Granularity,
}

impl QuantizationResult {
    /// Packs the values 4 a byte (the canonical 2-bit layout).
    pub fn to_packed(&self) -> Result<PackedTernary> {
        Ok(PackedTernary::from(self.to_matrix()?))
    }

    /// The library's weight object (packed, with its compute layout).
    pub fn to_matrix(&self) -> Result<TernaryMatrix> {
        TernaryMatrix::from_ternary(self.values.view(), &self.scales, self.granularity)
    }

    /// `values * scale` as f32 (what the quantized weights stand for).
    pub fn dequantize(&self) -> Result<Array2<f32>> {
        Ok(self.to_matrix()?.to_f32())
    }
}

fn quantize_with(
    w: ArrayView2<f32>,
    cfg: &QuantizeConfig,
    method: QuantMethod,
) -> Result<QuantizationResult> {
    let cfg = QuantizeConfig { method, ..*cfg };
    let q = quant::quantize(w, &cfg)?;
    Ok(QuantizationResult {
        shape: w.dim(),
        scales: q.scales.iter().copied().collect(),
        values: q.values,
        granularity: q.granularity,
    })
}

/// BitNet b1.58 AbsMean quantization: `s = mean|w|` per `cfg.granularity`,
/// `t = clamp(round(w / (s + eps)), -1, 1)` (or `cfg.threshold`'s rule).
/// Errors: non-finite weights, a bad group size.
pub fn quantize_absmean(w: ArrayView2<f32>, cfg: &QuantizeConfig) -> Result<QuantizationResult> {
    quantize_with(w, cfg, QuantMethod::AbsMean)
}

/// AbsMax quantization: `s = max|w|` per `cfg.granularity`.
pub fn quantize_absmax(w: ArrayView2<f32>, cfg: &QuantizeConfig) -> Result<QuantizationResult> {
    quantize_with(w, cfg, QuantMethod::AbsMax)
}
