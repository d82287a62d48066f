//! [`TernaryMatrix`]: packed ternary weights with their scales.

use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut2};

use super::matmul::layout::{ComputeFormat, ComputeLayout};
use super::matmul::{self, ActivationMode};
use super::pack::{self, PackedLayout};
use super::quant::{self, QuantConfig};
use super::Granularity;
use crate::{Error, Result};

/// A `[rows, cols]` = `[out_features, in_features]` ternary weight matrix:
/// 2-bit packed trits, scales, granularity.
///
/// Immutable after creation, so a `&TernaryMatrix` may be used from many
/// threads at once (`Send + Sync`).
///
/// Besides the canonical bytes it holds a private compute copy of the weights
/// in a [`ComputeFormat`] (2-bit by default; see [`Self::with_compute_format`]),
/// built once here and read by the SIMD kernels. Equality compares the
/// logical matrix (shape, granularity, scales, trits), not the compute format.
#[derive(Debug, Clone)]
pub struct TernaryMatrix {
    rows: usize,
    cols: usize,
    granularity: Granularity,
    /// `scale_rows * groups_per_row` scales, row-major.
    scales: Vec<f32>,
    /// Canonical 2-bit layout, `rows * ceil(cols / 4)` bytes.
    packed: Vec<u8>,
    /// The kernels' copy (see [`ComputeLayout`]).
    compute: ComputeLayout,
}

impl PartialEq for TernaryMatrix {
    fn eq(&self, o: &Self) -> bool {
        self.rows == o.rows
            && self.cols == o.cols
            && self.granularity == o.granularity
            && self.scales == o.scales
            && self.packed == o.packed
    }
}

fn check_scales(scales: &[f32], g: Granularity, rows: usize, cols: usize) -> Result<()> {
    let n = g.num_scales(rows, cols);
    if scales.len() != n {
        let (a, b) = g.scale_shape(rows, cols);
        return Err(Error::shape(
            "scales",
            format!(
                "{g:?} on {rows}x{cols} needs {n} scales ([{a}, {b}]), got {}",
                scales.len()
            ),
        ));
    }
    crate::check_finite(scales, "scales")
}

impl TernaryMatrix {
    /// Quantizes f32 weights `[rows, cols]` and packs them.
    pub fn from_f32(w: ArrayView2<f32>, cfg: &QuantConfig) -> Result<Self> {
        let (rows, cols) = w.dim();
        let (packed, scales) = quant::quantize_pack_2bit(w, cfg)?;
        Ok(Self::assemble(rows, cols, cfg.granularity, scales, packed))
    }

    /// From ternary values (each in {-1, 0, 1}) and scales of `granularity`'s
    /// shape, flattened row-major.
    pub fn from_ternary(
        t: ArrayView2<i8>,
        scales: &[f32],
        granularity: Granularity,
    ) -> Result<Self> {
        let granularity = granularity.validate()?;
        let (rows, cols) = t.dim();
        check_scales(scales, granularity, rows, cols)?;
        let packed = pack::pack_2bit(t)?;
        Ok(Self::assemble(
            rows,
            cols,
            granularity,
            scales.to_vec(),
            packed,
        ))
    }

    /// From packed bytes in `layout` (validated: length, codes, padding).
    pub fn from_packed(
        bytes: &[u8],
        rows: usize,
        cols: usize,
        layout: PackedLayout,
        scales: &[f32],
        granularity: Granularity,
    ) -> Result<Self> {
        let granularity = granularity.validate()?;
        pack::packed_len(rows, cols, layout)?;
        check_scales(scales, granularity, rows, cols)?;
        let packed = match layout {
            PackedLayout::TwoBit => {
                pack::validate_2bit(bytes, rows, cols)?;
                bytes.to_vec()
            }
            PackedLayout::Base3 => pack::base3_to_2bit(bytes, rows, cols)?,
        };
        Ok(Self::assemble(
            rows,
            cols,
            granularity,
            scales.to_vec(),
            packed,
        ))
    }

    fn assemble(
        rows: usize,
        cols: usize,
        granularity: Granularity,
        scales: Vec<f32>,
        packed: Vec<u8>,
    ) -> Self {
        let compute = ComputeLayout::from_2bit(&packed, rows, cols, ComputeFormat::default());
        TernaryMatrix {
            rows,
            cols,
            granularity,
            scales,
            packed,
            compute,
        }
    }

    /// The same matrix with its compute copy rebuilt in `format`
    /// ([`ComputeFormat::Base3`]: 1.6 bits a weight, less memory traffic for
    /// batch-1 products). Results are unchanged: int8 products stay
    /// bit-identical, f32 products stay within the documented bound.
    pub fn with_compute_format(mut self, format: ComputeFormat) -> Self {
        if self.compute.format() != format {
            self.compute = ComputeLayout::from_2bit(&self.packed, self.rows, self.cols, format);
        }
        self
    }

    /// The compute format of the kernels' copy.
    pub fn compute_format(&self) -> ComputeFormat {
        self.compute.format()
    }

    /// The kernels' copy of the weights.
    pub(crate) fn compute_layout(&self) -> &ComputeLayout {
        &self.compute
    }

    /// Output features (rows).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Input features (columns).
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Scale granularity.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }
    /// All scales, row-major `[scale_rows, groups_per_row]`.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
    /// Scale of row `o`, group `g`.
    #[inline]
    pub fn scale(&self, o: usize, g: usize) -> f32 {
        match self.granularity {
            Granularity::PerTensor => self.scales[0],
            Granularity::PerRow => self.scales[o],
            Granularity::PerGroup(_) => {
                let (_, ng) = self.granularity.scale_shape(self.rows, self.cols);
                self.scales[o * ng + g]
            }
        }
    }
    /// The canonical 2-bit bytes.
    pub fn packed_2bit(&self) -> &[u8] {
        &self.packed
    }
    /// The weights in `layout`.
    pub fn to_packed(&self, layout: PackedLayout) -> Vec<u8> {
        match layout {
            PackedLayout::TwoBit => self.packed.clone(),
            PackedLayout::Base3 => pack::two_bit_to_base3(&self.packed, self.rows, self.cols)
                .expect("valid by construction"),
        }
    }
    /// Ternary values `[rows, cols]`.
    pub fn to_ternary(&self) -> Array2<i8> {
        pack::unpack_2bit(&self.packed, self.rows, self.cols).expect("valid by construction")
    }
    /// Dequantized weights `t * s`, `[rows, cols]`.
    pub fn to_f32(&self) -> Array2<f32> {
        let t = self.to_ternary();
        let glen = self.granularity.group_len(self.cols);
        Array2::from_shape_fn((self.rows, self.cols), |(o, k)| {
            t[[o, k]] as f32 * self.scale(o, k / glen)
        })
    }
    /// Bytes held for weights (canonical and compute copies) and scales.
    pub fn memory_bytes(&self) -> usize {
        self.packed.len() + self.compute.memory_bytes() + 4 * self.scales.len()
    }

    /// `y = x · Wᵀ (+ bias)` into a caller-provided `[batch, rows]` view.
    pub fn matmul_into(
        &self,
        x: ArrayView2<f32>,
        bias: Option<ArrayView1<f32>>,
        mode: ActivationMode,
        y: ArrayViewMut2<f32>,
    ) -> Result<()> {
        matmul::gemm(self, x, bias, mode, y)
    }

    /// `x · Wᵀ (+ bias)` as a new `[batch, rows]` array.
    pub fn matmul(
        &self,
        x: ArrayView2<f32>,
        bias: Option<ArrayView1<f32>>,
        mode: ActivationMode,
    ) -> Result<Array2<f32>> {
        let mut y = Array2::zeros((x.nrows(), self.rows));
        self.matmul_into(x, bias, mode, y.view_mut())?;
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ternary::QuantMethod;

    fn rand_mat(r: usize, c: usize, seed: u64) -> Array2<f32> {
        Array2::from_shape_fn((r, c), |(i, j)| {
            crate::rng::uniform_f32(seed, (i * c + j) as u64) * 2.0 - 1.0
        })
    }

    /// Dense f64 `x · dequant(W)ᵀ + bias`: an independent check of the reference.
    fn dense(
        m: &TernaryMatrix,
        x: &Array2<f32>,
        bias: Option<&ndarray::Array1<f32>>,
    ) -> Array2<f64> {
        let w = m.to_f32();
        Array2::from_shape_fn((x.nrows(), m.rows()), |(b, o)| {
            (0..m.cols())
                .map(|k| x[[b, k]] as f64 * w[[o, k]] as f64)
                .sum::<f64>()
                + bias.map_or(0.0, |v| v[o] as f64)
        })
    }

    #[test]
    fn f32_matmul_equals_dense_on_boundary_shapes() {
        for &rows in &[0usize, 1, 3, 4, 5, 33] {
            for &cols in &[0usize, 1, 3, 4, 5, 31, 32, 33, 257] {
                for &batch in &[0usize, 1, 3] {
                    for g in [
                        Granularity::PerTensor,
                        Granularity::PerRow,
                        Granularity::PerGroup(32),
                        Granularity::PerGroup(5),
                    ] {
                        let w = rand_mat(rows, cols, 1);
                        let cfg = QuantConfig {
                            method: QuantMethod::AbsMean,
                            granularity: g,
                            threshold: None,
                            eps: 1e-5,
                        };
                        let m = TernaryMatrix::from_f32(w.view(), &cfg).unwrap();
                        let x = rand_mat(batch, cols, 2);
                        let bias = rand_mat(1, rows, 3).row(0).to_owned();
                        let y = m
                            .matmul(x.view(), Some(bias.view()), ActivationMode::F32)
                            .unwrap();
                        let d = dense(&m, &x, Some(&bias));
                        for ((b, o), &v) in y.indexed_iter() {
                            let bound = 1e-5 * (1.0 + cols as f64);
                            assert!(
                                (v as f64 - d[[b, o]]).abs() <= bound,
                                "{rows}x{cols} b{batch} {g:?}: {v} vs {}",
                                d[[b, o]]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn int8_matmul_close_to_f32() {
        let w = rand_mat(17, 300, 4);
        let m = TernaryMatrix::from_f32(w.view(), &QuantConfig::default()).unwrap();
        let x = rand_mat(5, 300, 5);
        let yf = m.matmul(x.view(), None, ActivationMode::F32).unwrap();
        let yq = m.matmul(x.view(), None, ActivationMode::Int8).unwrap();
        // Each |x - q/a| <= 0.5/a = max|x|/254; the error is bounded by s * Σ_k that.
        for b in 0..5 {
            let maxx = x.row(b).iter().fold(0f32, |a, v| a.max(v.abs()));
            for o in 0..17 {
                let bound = m.scale(o, 0) * 300.0 * maxx / 254.0 * 1.001;
                assert!((yf[[b, o]] - yq[[b, o]]).abs() <= bound);
            }
        }
    }

    #[test]
    fn construction_paths_agree_and_validate() {
        let w = rand_mat(6, 13, 7);
        let cfg = QuantConfig {
            granularity: Granularity::PerGroup(4),
            ..QuantConfig::default()
        };
        let a = TernaryMatrix::from_f32(w.view(), &cfg).unwrap();
        let t = a.to_ternary();
        let b = TernaryMatrix::from_ternary(t.view(), a.scales(), a.granularity()).unwrap();
        assert_eq!(a, b);
        let p3 = a.to_packed(PackedLayout::Base3);
        let c = TernaryMatrix::from_packed(
            &p3,
            6,
            13,
            PackedLayout::Base3,
            a.scales(),
            a.granularity(),
        )
        .unwrap();
        assert_eq!(a, c);
        assert!(matches!(
            TernaryMatrix::from_ternary(t.view(), &a.scales()[1..], a.granularity()),
            Err(Error::ShapeMismatch { arg: "scales", .. })
        ));
        let x = rand_mat(2, 12, 1);
        assert!(matches!(
            a.matmul(x.view(), None, ActivationMode::F32),
            Err(Error::ShapeMismatch { arg: "x", .. })
        ));
    }
}
