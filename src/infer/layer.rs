//! [`TernaryLayer`]: a packed ternary linear layer with its bias and
//! activation mode, `y = x · Wᵀ (+ b)`.
//!
//! With [`ActivationMode::Int8`] it is exactly transformers' `BitLinear`
//! (offline mode): the input row is quantized per token,
//! `s_x = 127 / max(max|x|, 1e-5)`, `q = clamp(round_half_even(x·s_x), -128, 127)`
//! (torch's `round` is half-to-even too), the integer products are exact,
//! and the result is scaled back. transformers computes
//! `y_int / (weight_scale · s_x)` with `weight_scale` the *inverse* scale
//! stored in the checkpoint; the matrix here holds `1 / weight_scale` as its
//! per-tensor scale and computes `(y_int · (1/weight_scale)) / s_x`. The
//! integer part is identical, so the two differ by at most a few f32
//! rounding steps (relative 2⁻²²).

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

use crate::ternary::{ActivationMode, Granularity, PackedLayout, TernaryMatrix};
use crate::{Error, Result};

/// A packed ternary linear layer `[out_features, in_features]`.
#[derive(Debug, Clone)]
pub struct TernaryLayer {
    weight: TernaryMatrix,
    bias: Option<Vec<f32>>,
    act: ActivationMode,
}

impl TernaryLayer {
    /// A layer over `weight` (immutable, packed once) with an optional bias
    /// of `out_features` finite values.
    pub fn new(weight: TernaryMatrix, bias: Option<Vec<f32>>, act: ActivationMode) -> Result<Self> {
        if let Some(b) = &bias {
            if b.len() != weight.rows() {
                return Err(Error::shape(
                    "bias",
                    format!(
                        "bias has {} values, the layer has {} outputs",
                        b.len(),
                        weight.rows()
                    ),
                ));
            }
            crate::check_finite(b, "bias")?;
        }
        Ok(TernaryLayer { weight, bias, act })
    }

    /// The weights.
    pub fn weight(&self) -> &TernaryMatrix {
        &self.weight
    }
    /// The bias, if any.
    pub fn bias(&self) -> Option<&[f32]> {
        self.bias.as_deref()
    }
    /// The activation mode.
    pub fn activation_mode(&self) -> ActivationMode {
        self.act
    }
    /// Input width.
    pub fn in_features(&self) -> usize {
        self.weight.cols()
    }
    /// Output width.
    pub fn out_features(&self) -> usize {
        self.weight.rows()
    }
    /// Bytes held (weights, scales, bias).
    pub fn memory_bytes(&self) -> usize {
        self.weight.memory_bytes() + 4 * self.bias.as_ref().map_or(0, Vec::len)
    }

    /// One layer whose outputs are those of `layers` side by side (q, k and v
    /// of one input, or gate and up): one product, one quantization of the
    /// input. Per-tensor or per-row scales become per-row scales, so every
    /// output is bit-identical to its own layer's (the int8 result of a row
    /// is `s_row · Σ t·q / s_x` either way). `None` if the layers cannot be
    /// joined (different input widths or modes, per-group scales of
    /// different group sizes or mixed with others).
    pub fn concat(layers: &[&TernaryLayer]) -> Result<Option<TernaryLayer>> {
        let Some(first) = layers.first() else {
            return Ok(None);
        };
        let cols = first.in_features();
        if layers
            .iter()
            .any(|l| l.in_features() != cols || l.act != first.act)
        {
            return Ok(None);
        }
        let grans: Vec<Granularity> = layers.iter().map(|l| l.weight.granularity()).collect();
        let gran = match grans[0] {
            Granularity::PerGroup(g) => {
                if grans.iter().any(|x| *x != Granularity::PerGroup(g)) {
                    return Ok(None);
                }
                Granularity::PerGroup(g)
            }
            _ => {
                if grans.iter().any(|x| matches!(x, Granularity::PerGroup(_))) {
                    return Ok(None);
                }
                Granularity::PerRow
            }
        };
        let rows: usize = layers.iter().map(|l| l.out_features()).sum();
        let mut packed = Vec::new();
        let mut scales = Vec::new();
        let any_bias = layers.iter().any(|l| l.bias.is_some());
        let mut bias = Vec::new();
        for l in layers {
            packed.extend_from_slice(&l.weight.packed_2bit());
            match l.weight.granularity() {
                Granularity::PerTensor => {
                    scales.extend(std::iter::repeat_n(l.weight.scales()[0], l.out_features()))
                }
                _ => scales.extend_from_slice(l.weight.scales()),
            }
            if any_bias {
                match &l.bias {
                    Some(b) => bias.extend_from_slice(b),
                    None => bias.extend(std::iter::repeat_n(0.0, l.out_features())),
                }
            }
        }
        let m =
            TernaryMatrix::from_packed(&packed, rows, cols, PackedLayout::TwoBit, &scales, gran)?
                .with_compute_format(first.weight.compute_format());
        TernaryLayer::new(m, any_bias.then_some(bias), first.act).map(Some)
    }

    /// `y = x · Wᵀ (+ b)` for `x` `[batch, in]` into `y` `[batch, out]`
    /// (batch 1 runs the GEMV kernels, larger batches the GEMM kernels).
    pub fn forward_into(&self, x: ArrayView2<f32>, y: ArrayViewMut2<f32>) -> Result<()> {
        let b = self.bias.as_deref().map(ArrayView1::from);
        self.weight.matmul_into(x, b, self.act, y)
    }

    /// As [`Self::forward_into`] over row-major slices: `x` holds `rows · in`
    /// values, `y` `rows · out`.
    pub fn forward_slices(&self, x: &[f32], rows: usize, y: &mut [f32]) -> Result<()> {
        let xv = ArrayView2::from_shape((rows, self.in_features()), x)
            .map_err(|_| Error::shape("x", format!("{} values for {rows} rows", x.len())))?;
        let yv = ArrayViewMut2::from_shape((rows, self.out_features()), y)
            .map_err(|_| Error::shape("y", "wrong length"))?;
        self.forward_into(xv, yv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ternary::Granularity;
    use ndarray::Array2;

    /// BitLinear's forward, written out in f64 from its definition.
    fn bitlinear(t: &Array2<i8>, inv_scale: f32, x: &[f32], bias: &[f32]) -> Vec<f64> {
        let amax = x.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-5);
        let s = 127.0 / amax;
        let q: Vec<f32> = x
            .iter()
            .map(|v| (v * s).round_ties_even().clamp(-128.0, 127.0))
            .collect();
        (0..t.nrows())
            .map(|o| {
                let yi: f64 = (0..t.ncols()).map(|k| t[[o, k]] as f64 * q[k] as f64).sum();
                yi / (inv_scale as f64 * s as f64) + bias[o] as f64
            })
            .collect()
    }

    #[test]
    fn int8_layer_is_bitlinear() {
        for &(out, inp) in &[(1usize, 1usize), (4, 5), (33, 257), (12, 64)] {
            let t = Array2::from_shape_fn((out, inp), |(i, j)| {
                (crate::rng::hash2(9, (i * inp + j) as u64) % 3) as i8 - 1
            });
            let ws = 0.37f32; // transformers' weight_scale (inverse)
            let m =
                TernaryMatrix::from_ternary(t.view(), &[1.0 / ws], Granularity::PerTensor).unwrap();
            let bias: Vec<f32> = (0..out).map(|i| i as f32 * 0.01).collect();
            let layer = TernaryLayer::new(m, Some(bias.clone()), ActivationMode::Int8).unwrap();
            let x: Vec<f32> = (0..inp)
                .map(|i| crate::rng::uniform_f32(3, i as u64) * 6.0 - 3.0)
                .collect();
            let mut y = vec![0f32; out];
            layer.forward_slices(&x, 1, &mut y).unwrap();
            let want = bitlinear(&t, ws, &x, &bias);
            for (a, b) in y.iter().zip(&want) {
                // integer sums equal; a few f32 roundings in the scaling
                assert!(
                    (*a as f64 - b).abs() <= 4.0 * f32::EPSILON as f64 * b.abs() + 1e-6,
                    "{out}x{inp}: {a} vs {b}"
                );
            }
        }
        let m = TernaryMatrix::from_ternary(
            Array2::<i8>::zeros((3, 2)).view(),
            &[1.0],
            Granularity::PerTensor,
        )
        .unwrap();
        assert!(matches!(
            TernaryLayer::new(m, Some(vec![0.0; 2]), ActivationMode::Int8),
            Err(Error::ShapeMismatch { arg: "bias", .. })
        ));
    }

    #[test]
    fn concat_is_bit_identical_to_the_parts() {
        let mk = |rows: usize, cols: usize, seed: u64, g: Granularity, bias: bool| {
            let t = Array2::from_shape_fn((rows, cols), |(i, j)| {
                (crate::rng::hash2(seed, (i * cols + j) as u64) % 3) as i8 - 1
            });
            let n = g.num_scales(rows, cols);
            let sc: Vec<f32> = (0..n)
                .map(|i| 0.3 + crate::rng::uniform_f32(seed, i as u64))
                .collect();
            let m = TernaryMatrix::from_ternary(t.view(), &sc, g).unwrap();
            let b = bias.then(|| (0..rows).map(|i| i as f32 * 0.1).collect());
            TernaryLayer::new(m, b, ActivationMode::Int8).unwrap()
        };
        let cols = 70;
        let parts = [
            mk(12, cols, 1, Granularity::PerTensor, false),
            mk(4, cols, 2, Granularity::PerRow, true),
            mk(5, cols, 3, Granularity::PerTensor, false),
        ];
        let refs: Vec<&TernaryLayer> = parts.iter().collect();
        let j = TernaryLayer::concat(&refs).unwrap().unwrap();
        assert_eq!(j.out_features(), 21);
        for batch in [1usize, 3] {
            let x: Vec<f32> = (0..batch * cols)
                .map(|i| crate::rng::uniform_f32(7, i as u64) * 2.0 - 1.0)
                .collect();
            let mut y = vec![0f32; batch * 21];
            j.forward_slices(&x, batch, &mut y).unwrap();
            let mut col = 0;
            for p in &parts {
                let mut yp = vec![0f32; batch * p.out_features()];
                p.forward_slices(&x, batch, &mut yp).unwrap();
                for b in 0..batch {
                    for o in 0..p.out_features() {
                        assert_eq!(
                            y[b * 21 + col + o].to_bits(),
                            yp[b * p.out_features() + o].to_bits()
                        );
                    }
                }
                col += p.out_features();
            }
        }
        let g = [
            mk(8, cols, 4, Granularity::PerGroup(16), false),
            mk(8, cols, 5, Granularity::PerGroup(16), false),
        ];
        assert!(TernaryLayer::concat(&[&g[0], &g[1]]).unwrap().is_some());
        assert!(TernaryLayer::concat(&[&g[0], &parts[0]]).unwrap().is_none());
        let other = mk(3, cols + 1, 6, Granularity::PerTensor, false);
        assert!(TernaryLayer::concat(&[&parts[0], &other])
            .unwrap()
            .is_none());
    }
}
