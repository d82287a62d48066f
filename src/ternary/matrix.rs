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
/// The weights are held once, in the kernels' private layout in a
/// [`ComputeFormat`] (2-bit by default; see [`Self::with_compute_format`]),
/// built at creation; the interchange bytes ([`Self::to_packed`]), trits and
/// f32 values are decoded from it on demand, byte-identical to what was
/// given. Equality compares the logical matrix (shape, granularity, scales,
/// trits), not the compute format.
#[derive(Debug, Clone)]
pub struct TernaryMatrix {
    rows: usize,
    cols: usize,
    granularity: Granularity,
    /// `scale_rows * groups_per_row` scales, row-major.
    scales: Vec<f32>,
    /// The weights, in the kernels' layout (see [`ComputeLayout`]).
    compute: ComputeLayout,
}

impl PartialEq for TernaryMatrix {
    fn eq(&self, o: &Self) -> bool {
        if self.rows != o.rows
            || self.cols != o.cols
            || self.granularity != o.granularity
            || self.scales != o.scales
        {
            return false;
        }
        let (mut a, mut b) = (vec![0i8; self.cols], vec![0i8; self.cols]);
        (0..self.rows).all(|r| {
            self.compute.row_trits(r, &mut a);
            o.compute.row_trits(r, &mut b);
            a == b
        })
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
    crate::check_finite(scales, "scales")?;
    // One rule for scales everywhere (matrices and payload decoders): a
    // scale is a magnitude (mean or max of |w|), so a negative one is corrupt.
    if let Some(i) = scales.iter().position(|&s| s < 0.0) {
        return Err(Error::invalid(
            "scales",
            format!(
                "scale {} at index {i} is negative (scales are >= 0)",
                scales[i]
            ),
        ));
    }
    Ok(())
}

impl TernaryMatrix {
    /// Quantizes f32 weights `[rows, cols]` and packs them.
    pub fn from_f32(w: ArrayView2<f32>, cfg: &QuantConfig) -> Result<Self> {
        let (rows, cols) = w.dim();
        let (packed, scales) = quant::quantize_pack_2bit(w, cfg)?;
        Self::assemble(rows, cols, cfg.granularity, scales, packed)
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
        Self::assemble(
            rows,
            cols,
            granularity,
            crate::try_to_vec(scales, "scales")?,
            packed,
        )
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
                crate::try_to_vec(bytes, "packed")?
            }
            PackedLayout::Base3 => pack::base3_to_2bit(bytes, rows, cols)?,
        };
        Self::assemble(
            rows,
            cols,
            granularity,
            crate::try_to_vec(scales, "scales")?,
            packed,
        )
    }

    /// From codes `t + 1` that `fill(o, c)` writes for row `o` (`cols`
    /// values, each 0, 1 or 2; the caller has validated them): the file
    /// readers build the kernels' layout straight from their bytes.
    pub(crate) fn from_code_rows(
        rows: usize,
        cols: usize,
        scales: Vec<f32>,
        granularity: Granularity,
        fill: impl Fn(usize, &mut [u8]) + Sync,
    ) -> Result<Self> {
        let granularity = granularity.validate()?;
        pack::packed_len(rows, cols, PackedLayout::TwoBit)?;
        check_scales(&scales, granularity, rows, cols)?;
        let compute = ComputeLayout::from_code_rows(rows, cols, ComputeFormat::default(), fill)?;
        Ok(TernaryMatrix {
            rows,
            cols,
            granularity,
            scales,
            compute,
        })
    }

    fn assemble(
        rows: usize,
        cols: usize,
        granularity: Granularity,
        scales: Vec<f32>,
        packed: Vec<u8>,
    ) -> Result<Self> {
        let compute = ComputeLayout::try_from_2bit(&packed, rows, cols, ComputeFormat::default())?;
        Ok(TernaryMatrix {
            rows,
            cols,
            granularity,
            scales,
            compute,
        })
    }

    /// The same matrix with its compute copy rebuilt in `format`
    /// ([`ComputeFormat::Base3`]: 1.6 bits a weight, less memory traffic for
    /// batch-1 products). Results are unchanged: int8 products stay
    /// bit-identical, f32 products stay within the documented bound; exports
    /// are byte-identical.
    pub fn with_compute_format(mut self, format: ComputeFormat) -> Self {
        if self.compute.format() != format {
            self.compute = self.compute.to_format(self.rows, self.cols, format);
        }
        self
    }

    /// A copy whose compute layout is in `format` ([`Self::with_compute_format`]
    /// without consuming `self`), allocated fallibly: [`Error::OutOfMemory`]
    /// naming `matrix` instead of an abort.
    pub fn try_with_compute_format(&self, format: ComputeFormat) -> Result<Self> {
        Ok(TernaryMatrix {
            rows: self.rows,
            cols: self.cols,
            granularity: self.granularity,
            scales: crate::try_to_vec(&self.scales, "matrix")?,
            compute: self.compute.try_to_format(self.rows, self.cols, format)?,
        })
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
    /// The canonical 2-bit bytes (decoded: `to_packed(PackedLayout::TwoBit)`).
    pub fn packed_2bit(&self) -> Vec<u8> {
        self.to_packed(PackedLayout::TwoBit)
    }
    /// The trits of row `o` into `out` (`cols` values).
    ///
    /// # Panics
    /// If `o >= rows` or `out.len() != cols`.
    pub fn row_ternary(&self, o: usize, out: &mut [i8]) {
        assert!(o < self.rows, "row {o} of {} rows", self.rows);
        assert_eq!(out.len(), self.cols, "row_ternary: out.len() != cols");
        self.compute.row_trits(o, out);
    }
    /// Writes the weights in `layout` into `out`, which must hold exactly
    /// [`pack::packed_len`]`(rows, cols, layout)` bytes (else
    /// [`Error::ShapeMismatch`] naming `packed`).
    pub fn write_packed(&self, layout: PackedLayout, out: &mut [u8]) -> Result<()> {
        let need = pack::packed_len(self.rows, self.cols, layout)?;
        if out.len() != need {
            return Err(Error::shape(
                "packed",
                format!("{need} bytes needed, got {}", out.len()),
            ));
        }
        let rb = pack::row_bytes(self.cols, layout);
        if rb == 0 {
            return Ok(());
        }
        let mut t = vec![0i8; self.cols];
        for (o, dst) in out.chunks_mut(rb).enumerate() {
            self.compute.row_trits(o, &mut t);
            match layout {
                PackedLayout::TwoBit => pack::pack_2bit_row(&t, dst),
                PackedLayout::Base3 => pack::pack_base3_row(&t, dst),
            }
        }
        Ok(())
    }
    /// The weights in `layout` (decoded from the compute layout).
    pub fn to_packed(&self, layout: PackedLayout) -> Vec<u8> {
        let n = pack::packed_len(self.rows, self.cols, layout).expect("checked at creation");
        let mut out = vec![0u8; n];
        self.write_packed(layout, &mut out).expect("sized above");
        out
    }
    /// Writes the ternary values into `out` (`rows * cols`, row-major; else
    /// [`Error::ShapeMismatch`] naming `ternary`).
    pub fn write_ternary(&self, out: &mut [i8]) -> Result<()> {
        if out.len() != self.rows * self.cols {
            return Err(Error::shape(
                "ternary",
                format!("{} values needed, got {}", self.rows * self.cols, out.len()),
            ));
        }
        if self.cols > 0 {
            for (o, row) in out.chunks_mut(self.cols).enumerate() {
                self.compute.row_trits(o, row);
            }
        }
        Ok(())
    }
    /// Ternary values `[rows, cols]`.
    pub fn to_ternary(&self) -> Array2<i8> {
        let mut t = Array2::zeros((self.rows, self.cols));
        self.write_ternary(t.as_slice_mut().expect("contiguous"))
            .expect("sized above");
        t
    }
    /// Writes the dequantized weights `t * s` into `out` (`rows * cols`,
    /// row-major; else [`Error::ShapeMismatch`] naming `weights`); allocates
    /// one row.
    pub fn write_f32(&self, out: &mut [f32]) -> Result<()> {
        if out.len() != self.rows * self.cols {
            return Err(Error::shape(
                "weights",
                format!("{} values needed, got {}", self.rows * self.cols, out.len()),
            ));
        }
        if self.cols == 0 {
            return Ok(());
        }
        let glen = self.granularity.group_len(self.cols);
        let mut t = crate::try_zeroed::<i8>(self.cols, "matrix")?;
        for (o, row) in out.chunks_mut(self.cols).enumerate() {
            self.compute.row_trits(o, &mut t);
            for (k, (d, &v)) in row.iter_mut().zip(&t).enumerate() {
                *d = v as f32 * self.scale(o, k / glen);
            }
        }
        Ok(())
    }
    /// Dequantized weights `t * s`, `[rows, cols]`.
    pub fn to_f32(&self) -> Array2<f32> {
        let t = self.to_ternary();
        let glen = self.granularity.group_len(self.cols);
        Array2::from_shape_fn((self.rows, self.cols), |(o, k)| {
            t[[o, k]] as f32 * self.scale(o, k / glen)
        })
    }
    /// Bytes held for the weights (the compute layout, the only copy) and
    /// scales.
    pub fn memory_bytes(&self) -> usize {
        self.compute.memory_bytes() + 4 * self.scales.len()
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

    fn rand_trits(rows: usize, cols: usize, seed: u64) -> Array2<i8> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            (crate::rng::hash2(seed, (i * cols + j) as u64) % 3) as i8 - 1
        })
    }

    const SIDES: [usize; 14] = [0, 1, 3, 4, 5, 31, 32, 33, 127, 128, 129, 255, 256, 257];
    const FORMATS: [ComputeFormat; 2] = [ComputeFormat::TwoBit, ComputeFormat::Base3];

    fn other(f: ComputeFormat) -> ComputeFormat {
        match f {
            ComputeFormat::TwoBit => ComputeFormat::Base3,
            ComputeFormat::Base3 => ComputeFormat::TwoBit,
        }
    }

    /// Every export of `m` equals the interchange input it was built from.
    fn check_exports(m: &TernaryMatrix, t: &Array2<i8>, p2: &[u8], p3: &[u8], ctx: &str) {
        assert_eq!(m.to_packed(PackedLayout::TwoBit), p2, "{ctx}: 2-bit export");
        assert_eq!(m.packed_2bit(), p2, "{ctx}: packed_2bit");
        assert_eq!(m.to_packed(PackedLayout::Base3), p3, "{ctx}: base-3 export");
        let mut buf = vec![0xAAu8; p3.len()];
        m.write_packed(PackedLayout::Base3, &mut buf).unwrap();
        assert_eq!(buf, p3, "{ctx}: write_packed base-3");
        assert_eq!(&m.to_ternary(), t, "{ctx}: to_ternary");
        let glen = m.granularity().group_len(m.cols());
        let f = m.to_f32();
        for ((o, k), &v) in f.indexed_iter() {
            assert_eq!(
                v.to_bits(),
                (t[[o, k]] as f32 * m.scale(o, k / glen)).to_bits(),
                "{ctx}: to_f32 [{o}, {k}]"
            );
        }
    }

    #[test]
    fn exports_round_trip_on_boundary_shapes_in_both_compute_formats() {
        let grans = [
            Granularity::PerTensor,
            Granularity::PerRow,
            Granularity::PerGroup(32),
            Granularity::PerGroup(5),
        ];
        // The side lengths, plus K around the base-3 block (320) for cols.
        let cols_list: Vec<usize> = SIDES.iter().copied().chain([319, 320, 321, 641]).collect();
        for (si, &rows) in SIDES.iter().enumerate() {
            for (ci, &cols) in cols_list.iter().enumerate() {
                let seed = (si * 100 + ci) as u64;
                let t = rand_trits(rows, cols, seed);
                let p2 = pack::pack_2bit(t.view()).unwrap();
                let p3 = pack::pack_base3(t.view()).unwrap();
                let g = grans[(si + ci) % grans.len()];
                let ns = g.num_scales(rows, cols);
                let scales: Vec<f32> = (0..ns)
                    .map(|i| 0.25 + crate::rng::uniform_f32(seed, i as u64))
                    .collect();
                for fmt in FORMATS {
                    let ctx = format!("{rows}x{cols} {g:?} {fmt:?}");
                    let a = TernaryMatrix::from_packed(
                        &p2,
                        rows,
                        cols,
                        PackedLayout::TwoBit,
                        &scales,
                        g,
                    )
                    .unwrap()
                    .with_compute_format(fmt);
                    let b = TernaryMatrix::from_packed(
                        &p3,
                        rows,
                        cols,
                        PackedLayout::Base3,
                        &scales,
                        g,
                    )
                    .unwrap()
                    .with_compute_format(fmt);
                    assert_eq!(a.compute_format(), fmt);
                    check_exports(&a, &t, &p2, &p3, &ctx);
                    check_exports(&b, &t, &p2, &p3, &ctx);
                    assert_eq!(a.scales(), &scales[..]);
                    // Switching formats both ways keeps every export.
                    let c = a.clone().with_compute_format(other(fmt));
                    assert_eq!(c.compute_format(), other(fmt));
                    check_exports(&c, &t, &p2, &p3, &format!("{ctx} -> other"));
                    let d = c.clone().with_compute_format(fmt);
                    check_exports(&d, &t, &p2, &p3, &format!("{ctx} -> other -> back"));
                    assert_eq!(a, c, "{ctx}: equal across formats");
                    assert_eq!(a, d);
                    assert_eq!(
                        a.memory_bytes(),
                        a.compute_layout().memory_bytes() + 4 * ns,
                        "{ctx}: memory"
                    );
                    // One changed trit is seen by equality in either format.
                    if rows > 0 && cols > 0 {
                        let mut t2 = t.clone();
                        let (o, k) = (rows - 1, cols - 1);
                        t2[[o, k]] = if t2[[o, k]] == 1 { -1 } else { t2[[o, k]] + 1 };
                        let e = TernaryMatrix::from_ternary(t2.view(), &scales, g)
                            .unwrap()
                            .with_compute_format(other(fmt));
                        assert_ne!(a, e, "{ctx}: changed trit");
                    }
                }
            }
        }
    }

    #[test]
    fn from_f32_exports_match_the_quantizer_in_both_compute_formats() {
        for &(rows, cols) in &[(5usize, 257usize), (33, 129), (4, 640), (1, 1)] {
            let w = rand_mat(rows, cols, 11);
            let cfg = QuantConfig {
                granularity: Granularity::PerGroup(7),
                ..QuantConfig::default()
            };
            let q = quant::quantize(w.view(), &cfg).unwrap();
            let p2 = pack::pack_2bit(q.values.view()).unwrap();
            let p3 = pack::pack_base3(q.values.view()).unwrap();
            for fmt in FORMATS {
                let m = TernaryMatrix::from_f32(w.view(), &cfg)
                    .unwrap()
                    .with_compute_format(fmt);
                check_exports(&m, &q.values, &p2, &p3, &format!("{rows}x{cols} {fmt:?}"));
                assert_eq!(m.scales(), q.scales.as_slice().unwrap());
            }
        }
    }

    #[test]
    fn memory_is_the_compute_layout_and_scales_only() {
        let (rows, cols) = (256, 1024);
        let m = TernaryMatrix::from_ternary(
            rand_trits(rows, cols, 3).view(),
            &vec![1.0; rows],
            Granularity::PerRow,
        )
        .unwrap();
        // 2 bits a weight, no padding at this shape: exactly the 2-bit size.
        assert_eq!(m.memory_bytes(), rows * cols / 4 + 4 * rows);
        let b3 = m.with_compute_format(ComputeFormat::Base3);
        // 4 K blocks of 320 weights (64 bytes a row each).
        assert_eq!(b3.memory_bytes(), rows * 4 * 64 + 4 * rows);
    }
}
