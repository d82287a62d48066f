//! Gradient compression for data-parallel training.
//!
//! | compressor | file | linear (sum before decode) | wire size |
//! |---|---|---|---|
//! | count sketch (+ [`FetchSgd`]) | [`sketch`] | yes | `4 · rows · cols` |
//! | ternary stochastic (TernGrad) | [`ternary`] | no | `4 · ceil(n/block) + ceil(n/4)` |
//! | top-k | [`topk`] | no | `8 k` |
//! | sparse ternary random projection | [`projection`] | yes | `4 m` |
//! | quantized top-k (Rice-coded positions, sign, `v`-bit magnitude codes) | [`qtopk`] | no | `4 · 2^v + ceil((k (r + 2 + v) + ((n - k) >> r)) / 8)` |
//!
//! plus the 44-byte header and checksum of the [`payload`] format. Every
//! compressor is O(n), seeded and deterministic (counter-based hashing via
//! [`crate::rng`]; identical for any thread count), and a [`Compressor`] adds
//! error feedback (a residual per coordinate) to any of them.

pub mod payload;
pub mod projection;
pub mod qtopk;
pub mod region;
pub mod sketch;
pub mod ternary;
pub mod topk;

pub use region::RegionExchange;
pub use sketch::{CountSketch, FetchSgd};

use crate::{rng, Error, Result};

/// Kept indices and their level codes (quantized top-k's error-feedback input).
type KeptEntries = (Vec<u32>, Vec<u8>);

/// A compression method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Count sketch, decoded by the median-of-rows estimate.
    CountSketch,
    /// Ternary stochastic quantization with a scale per block.
    Ternary,
    /// Top-k sparsification.
    TopK,
    /// Sparse ternary random projection, decoded by the transpose.
    Projection,
    /// Quantized top-k: Golomb-Rice coded positions, signs and `v`-bit
    /// magnitude codes ([`qtopk`]).
    QTopK,
}

// The code used in payloads and at the C ABI (1..=5).
crate::c_codes!(Method, "method", "method" {
    CountSketch = 1 => "sketch",
    Ternary = 2 => "ternary",
    TopK = 3 => "top-k",
    Projection = 4 => "projection",
    QTopK = 5 => "quantized top-k",
});

impl Method {
    /// Whether payloads of this method can be summed before decoding.
    pub fn is_linear(self) -> bool {
        matches!(self, Method::CountSketch | Method::Projection)
    }
}

/// The method-specific content of a compressed gradient.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Count-sketch table `[rows, cols]`, row-major.
    Sketch {
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// `rows * cols` floats.
        table: Vec<f32>,
    },
    /// Ternary codes and scales.
    Ternary {
        /// Coordinates per scale.
        block: usize,
        /// One scale per block.
        scales: Vec<f32>,
        /// 2-bit codes, `ceil(dim / 4)` bytes.
        packed: Vec<u8>,
    },
    /// Sparse values.
    TopK {
        /// Strictly increasing indices.
        indices: Vec<u32>,
        /// Values at those indices.
        values: Vec<f32>,
    },
    /// Projected values `y = P g`.
    Projection {
        /// `m` floats.
        values: Vec<f32>,
    },
    /// `±levels[code]` at `k` Rice-coded positions.
    QTopK {
        /// Entries.
        k: usize,
        /// Rice parameter.
        rice: usize,
        /// `2^v` magnitudes (`v` = the code width).
        levels: Vec<f32>,
        /// The bit stream ([`qtopk::stream_bytes`] bytes).
        stream: Vec<u8>,
    },
}

/// A compressed gradient: its length, the seed it was made with, and the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Compressed {
    /// Length of the original gradient.
    pub dim: usize,
    /// Seed (hashes of sketch and projection; rounding of ternary).
    pub seed: u64,
    /// Content.
    pub body: Body,
}

impl Compressed {
    /// Method of the body.
    pub fn method(&self) -> Method {
        match self.body {
            Body::Sketch { .. } => Method::CountSketch,
            Body::Ternary { .. } => Method::Ternary,
            Body::TopK { .. } => Method::TopK,
            Body::Projection { .. } => Method::Projection,
            Body::QTopK { .. } => Method::QTopK,
        }
    }
    /// The header's `(a, b)` parameters (see [`payload`]).
    pub fn params(&self) -> (usize, usize) {
        match &self.body {
            Body::Sketch { rows, cols, .. } => (*rows, *cols),
            Body::Ternary { block, .. } => (*block, 0),
            Body::TopK { indices, .. } => (indices.len(), 0),
            Body::Projection { values } => (values.len(), 0),
            Body::QTopK {
                k, rice, levels, ..
            } => (
                *k,
                qtopk::pack_b(*rice, levels.len().trailing_zeros() as usize),
            ),
        }
    }
    /// Bytes of the body alone (what a raw allreduce/allgather would move).
    pub fn body_bytes(&self) -> usize {
        let (a, b) = self.params();
        payload::body_len(self.method(), self.dim, a, b).expect("sizes checked at construction")
    }
    /// Exact bytes of the serialized payload ([`payload::OVERHEAD`] + body).
    pub fn wire_bytes(&self) -> usize {
        payload::OVERHEAD + self.body_bytes()
    }
    /// Serializes to the documented [`payload`] format.
    pub fn to_bytes(&self) -> Vec<u8> {
        payload::encode(self)
    }
    /// Parses and validates a payload.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        payload::decode(bytes)
    }

    /// Decodes into `out` (`dim` floats): the sketch by the median-of-rows
    /// estimate, ternary and top-k exactly, the projection by its transpose.
    pub fn decompress_into(&self, out: &mut [f32]) -> Result<()> {
        if out.len() != self.dim {
            return Err(Error::shape(
                "out",
                format!("expected {} elements, got {}", self.dim, out.len()),
            ));
        }
        match &self.body {
            Body::Sketch { rows, cols, table } => {
                CountSketch::new(self.dim, *rows, *cols, self.seed)?.estimate(table, out)
            }
            Body::Ternary {
                block,
                scales,
                packed,
            } => ternary::dequantize_into(scales, packed, *block, out, None),
            Body::TopK { indices, values } => {
                out.fill(0.0);
                for (&i, &v) in indices.iter().zip(values) {
                    out[i as usize] = v;
                }
                Ok(())
            }
            Body::Projection { values } => {
                projection::Projection::new(self.dim, values.len(), self.seed)?
                    .unproject(values, out)
            }
            Body::QTopK {
                k,
                rice,
                levels,
                stream,
            } => qtopk::decompress_into(levels, *k, *rice, stream, out),
        }
    }

    /// Validates the payload `bytes` and decodes it into `out` (`dim`
    /// floats): the same checks and errors as [`Compressed::from_bytes`]
    /// then [`Compressed::decompress_into`], in one pass over a quantized
    /// top-k stream (see [`payload::decompress_into`]).
    pub fn decompress_bytes_into(bytes: &[u8], out: &mut [f32]) -> Result<()> {
        payload::decompress_into(bytes, out)
    }

    /// Decodes into a new vector (allocated fallibly: `dim` comes from the
    /// payload's header).
    pub fn decompress(&self) -> Result<Vec<f32>> {
        let mut out = crate::try_zeroed(self.dim, "payload")?;
        self.decompress_into(&mut out)?;
        Ok(out)
    }

    /// `self += other` for linear methods (same method, dim, seed and
    /// geometry); afterwards `self` decodes the sum. Errors name `other`,
    /// except [`Error::NonFinite`] naming `sum` (with the body element) when
    /// the sum would leave the range a payload may hold (an element overflows
    /// to ±inf, or a projection value exceeds [`payload::PROJECTION_MAX`]):
    /// the sum of two valid payloads is then not a valid payload. `self` is
    /// unchanged on error.
    pub fn add_assign(&mut self, other: &Compressed) -> Result<()> {
        if !self.method().is_linear() {
            return Err(Error::invalid(
                "other",
                format!(
                    "{:?} payloads are not linear and cannot be summed",
                    self.method()
                ),
            ));
        }
        if other.method() != self.method()
            || other.dim != self.dim
            || other.seed != self.seed
            || other.params() != self.params()
        {
            return Err(Error::invalid(
                "other",
                "payloads differ in method, dim, seed or geometry",
            ));
        }
        let (a, b) = match (&mut self.body, &other.body) {
            (Body::Sketch { table: a, .. }, Body::Sketch { table: b, .. }) => (a, b),
            (Body::Projection { values: a }, Body::Projection { values: b }) => (a, b),
            _ => unreachable!("methods checked equal"),
        };
        let method = other.method();
        if let Some(index) = a
            .iter()
            .zip(b)
            .position(|(x, y)| !payload::linear_value_ok(method, x + y))
        {
            return Err(Error::NonFinite { arg: "sum", index });
        }
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
        Ok(())
    }
}

/// Settings of a [`Compressor`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompressorConfig {
    /// Method.
    pub method: Method,
    /// Target compression factor `>= 1` (f32 bytes / body bytes) for sketch,
    /// top-k, projection and quantized top-k; ternary's factor is set by `block` instead
    /// (`32 / (2 + 32 / block)`, 15.06x at 256).
    pub ratio: f64,
    /// Count-sketch rows (1..=15).
    pub rows: usize,
    /// Ternary block (multiple of 4).
    pub block: usize,
    /// Quantized top-k magnitude-code width `v`, 0..=4 (`2^v` levels; 0 =
    /// one shared magnitude, i.e. sparse ternary).
    pub value_bits: usize,
    /// Base seed; step `t` uses `rng::derive(seed, t)`, so workers that share
    /// the seed and step in lockstep produce summable sketches/projections.
    pub seed: u64,
    /// Worker id mixed into the ternary rounding seed, so workers round
    /// independently (ignored by the other methods).
    pub worker: u64,
    /// Keep a residual and add it to the next gradient (error feedback).
    pub error_feedback: bool,
}

impl Default for CompressorConfig {
    fn default() -> Self {
        CompressorConfig {
            method: Method::TopK,
            ratio: 32.0,
            rows: 1,
            block: ternary::DEFAULT_BLOCK,
            value_bits: qtopk::DEFAULT_VALUE_BITS,
            seed: 0,
            worker: 0,
            error_feedback: true,
        }
    }
}

/// A compressor with per-parameter state: the residual of error feedback
/// (`e ← (g + e) − D(C(g + e))`, Seide et al. 2014; Karimireddy et al. 2019)
/// and a step counter that advances the seed.
#[derive(Debug, Clone)]
pub struct Compressor {
    cfg: CompressorConfig,
    dim: usize,
    a: usize,
    b: usize,
    residual: Vec<f32>,
    // Reused buffer for `grad + residual` (avoids a fresh allocation per step).
    scratch: Vec<f32>,
    step: u64,
}

impl Compressor {
    /// Validates the configuration for gradients of length `dim`.
    pub fn new(dim: usize, cfg: CompressorConfig) -> Result<Self> {
        if dim == 0 {
            return Err(Error::invalid("dim", "must be > 0"));
        }
        if dim > u32::MAX as usize {
            return Err(Error::invalid("dim", "must be < 2^32"));
        }
        if !(cfg.ratio.is_finite() && cfg.ratio >= 1.0) {
            return Err(Error::invalid(
                "ratio",
                format!("must be a compression factor >= 1, got {}", cfg.ratio),
            ));
        }
        let (a, b) = match cfg.method {
            Method::CountSketch => {
                let cs = CountSketch::for_ratio(dim, cfg.ratio, cfg.rows, cfg.seed)?;
                (cs.rows(), cs.cols())
            }
            Method::Ternary => {
                ternary::check_block(cfg.block)?;
                (cfg.block, 0)
            }
            Method::TopK => (topk::k_for_ratio(dim, cfg.ratio), 0),
            Method::Projection => (projection::output_len(dim, 1.0 / cfg.ratio)?, 0),
            Method::QTopK => {
                if cfg.value_bits > qtopk::MAX_VALUE_BITS {
                    return Err(Error::invalid(
                        "value_bits",
                        format!(
                            "must be 0..={}, got {}",
                            qtopk::MAX_VALUE_BITS,
                            cfg.value_bits
                        ),
                    ));
                }
                let (k, r) = qtopk::params_for_ratio(dim, cfg.ratio, cfg.value_bits);
                (k, qtopk::pack_b(r, cfg.value_bits))
            }
        };
        Ok(Compressor {
            cfg,
            dim,
            a,
            b,
            residual: if cfg.error_feedback {
                crate::try_zeroed(dim, "dim")?
            } else {
                Vec::new()
            },
            scratch: Vec::new(),
            step: 0,
        })
    }
    /// Configuration.
    pub fn config(&self) -> &CompressorConfig {
        &self.cfg
    }
    /// Gradient length.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Steps compressed so far.
    pub fn step(&self) -> u64 {
        self.step
    }
    /// Exact payload bytes of every [`Compressor::compress`] result.
    pub fn wire_bytes(&self) -> usize {
        payload::OVERHEAD
            + payload::body_len(self.cfg.method, self.dim, self.a, self.b).expect("checked")
    }
    /// The error-feedback residual (empty without error feedback).
    pub fn residual(&self) -> &[f32] {
        &self.residual
    }
    /// Zeroes the residual and the step counter.
    pub fn reset(&mut self) {
        self.residual.fill(0.0);
        self.step = 0;
    }
    /// The seed step `t` uses.
    pub fn step_seed(&self, t: u64) -> u64 {
        let s = rng::derive(self.cfg.seed, t);
        if self.cfg.method == Method::Ternary {
            rng::derive(s, self.cfg.worker.wrapping_add(1))
        } else {
            s
        }
    }

    /// Compresses `x` with the seed of the current step (no state change).
    fn compress_raw(&self, x: &[f32], seed: u64) -> Result<Compressed> {
        self.compress_raw_kept(x, seed).map(|(c, _)| c)
    }

    /// [`Self::compress_raw`]; for quantized top-k also the kept indices and
    /// level codes (the error-feedback update then needs no stream decode).
    fn compress_raw_kept(&self, x: &[f32], seed: u64) -> Result<(Compressed, Option<KeptEntries>)> {
        let mut kept = None;
        let body = match self.cfg.method {
            Method::CountSketch => Body::Sketch {
                rows: self.a,
                cols: self.b,
                table: CountSketch::new(self.dim, self.a, self.b, seed)?.sketch(x)?,
            },
            Method::Ternary => {
                let (scales, packed) = ternary::quantize(x, self.a, seed)?;
                Body::Ternary {
                    block: self.a,
                    scales,
                    packed,
                }
            }
            Method::TopK => {
                crate::check_finite(x, "grad")?;
                let (indices, values) = topk::top_k(x, self.a)?;
                Body::TopK { indices, values }
            }
            Method::QTopK => {
                // compress_kept checks finiteness (the fused path on the way)
                let (r, v) = qtopk::unpack_b(self.b).expect("checked in new");
                let (levels, stream, idx, codes) =
                    qtopk::compress_kept(x, self.a, r, v, crate::cpu::active())?;
                kept = Some((idx, codes));
                Body::QTopK {
                    k: self.a,
                    rice: r,
                    levels,
                    stream,
                }
            }
            Method::Projection => {
                let p = projection::Projection::new(self.dim, self.a, seed)?;
                let mut values = crate::try_zeroed(self.a, "grad")?;
                p.project(x, &mut values)?;
                Body::Projection { values }
            }
        };
        // Sums of finite values can still overflow f32: never emit a payload
        // that the decoder would reject.
        if let Body::Sketch { table: v, .. } | Body::Projection { values: v } = &body {
            if let Some((i, x)) = payload::linear_body_violation(self.cfg.method, v) {
                return Err(Error::invalid(
                    "grad",
                    format!(
                        "its sketch/projection overflows (element {i} is {x:e}; values too large)"
                    ),
                ));
            }
        }
        Ok((
            Compressed {
                dim: self.dim,
                seed,
                body,
            },
            kept,
        ))
    }

    /// Compresses `grad` (plus the residual with error feedback), updates the
    /// residual to `(grad + e) − decompress(result)` and advances the step.
    /// Errors: length, non-finite values (named `grad`); the state is
    /// unchanged on error.
    pub fn compress(&mut self, grad: &[f32]) -> Result<Compressed> {
        if grad.len() != self.dim {
            return Err(Error::shape(
                "grad",
                format!("expected {} elements, got {}", self.dim, grad.len()),
            ));
        }
        let seed = self.step_seed(self.step);
        let c = if self.cfg.error_feedback {
            let mut x = std::mem::take(&mut self.scratch);
            x.clear();
            if let Err(e) = crate::try_reserve(&mut x, grad.len(), "grad") {
                self.scratch = x;
                return Err(e);
            }
            // x = grad + residual, and whether grad is finite, in one pass
            let finite = add_check_finite(
                crate::cpu::active(),
                grad,
                &self.residual,
                &mut x.spare_capacity_mut()[..grad.len()],
            );
            // SAFETY: add_check_finite initialised the first grad.len() elements.
            unsafe { x.set_len(grad.len()) };
            if !finite {
                self.scratch = x;
                // the scan locates the first non-finite value for the error
                return Err(crate::check_finite(grad, "grad")
                    .err()
                    .unwrap_or(Error::NonFinite {
                        arg: "grad",
                        index: 0,
                    }));
            }
            let (c, kept) = match self.compress_raw_kept(&x, seed) {
                Ok(c) => c,
                Err(e) => {
                    self.scratch = x;
                    return Err(e);
                }
            };
            // The old residual becomes the next scratch buffer.
            self.scratch = std::mem::replace(&mut self.residual, x);
            match &c.body {
                // Sparse: subtract in place instead of decoding densely.
                Body::TopK { indices, values } => {
                    for (&i, &v) in indices.iter().zip(values) {
                        self.residual[i as usize] -= v;
                    }
                }
                Body::Ternary {
                    block,
                    scales,
                    packed,
                } => ternary::dequantize_into(
                    scales,
                    packed,
                    *block,
                    &mut self.residual,
                    Some(-1.0),
                )?,
                Body::QTopK { levels, .. } => {
                    // the entries the stream codes, without decoding it
                    let (idx, codes) = kept.as_ref().expect("qtopk returns its kept entries");
                    let res = &mut self.residual;
                    for (&i, &c) in idx.iter().zip(codes) {
                        let i = i as usize;
                        let l = levels[c as usize];
                        res[i] -= qtopk::with_sign(l, res[i].is_sign_negative());
                    }
                }
                _ => {
                    let d = c.decompress()?;
                    for (r, v) in self.residual.iter_mut().zip(&d) {
                        *r -= v;
                    }
                }
            }
            c
        } else {
            self.compress_raw(grad, seed)?
        };
        self.step += 1;
        Ok(c)
    }

    /// Takes back the last successful [`Compressor::compress`] (it must be
    /// the last call that changed this compressor): the residual it replaced
    /// is still held as the scratch buffer, so this restores the residual and
    /// the step exactly. Lets a caller that compresses several pieces keep
    /// all-or-nothing semantics without checking the input twice.
    pub(crate) fn undo_compress(&mut self) {
        debug_assert!(self.step > 0);
        if self.cfg.error_feedback {
            std::mem::swap(&mut self.residual, &mut self.scratch);
        }
        self.step -= 1;
    }
}

/// `out = g + e` element-wise; returns whether every `g` is finite (one pass
/// over `g`: error feedback's input and its check). Explicit AVX2 where
/// `level` allows it; the same sums at every level.
pub(crate) fn add_check_finite(
    level: crate::cpu::CpuLevel,
    g: &[f32],
    e: &[f32],
    out: &mut [std::mem::MaybeUninit<f32>],
) -> bool {
    assert!(g.len() == e.len() && g.len() == out.len());
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::runs(crate::cpu::CpuLevel::Avx2, level) {
        // SAFETY: AVX2 checked; the lengths are equal.
        return unsafe { add_check_finite_avx2(g, e, out) };
    }
    let _ = level;
    add_check_finite_scalar(g, e, out)
}

fn add_check_finite_scalar(g: &[f32], e: &[f32], out: &mut [std::mem::MaybeUninit<f32>]) -> bool {
    let mut ok = true;
    for (d, (g, e)) in out.iter_mut().zip(g.iter().zip(e)) {
        ok &= g.is_finite();
        d.write(g + e);
    }
    ok
}

/// # Safety
/// The CPU must support AVX2; the three lengths are equal.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_check_finite_avx2(
    g: &[f32],
    e: &[f32],
    out: &mut [std::mem::MaybeUninit<f32>],
) -> bool {
    use std::arch::x86_64::*;
    let n = g.len();
    let exp = _mm256_set1_epi32(0x7f80_0000);
    // bits of an exponent field that is all ones (inf or NaN) in any lane
    let mut bad = _mm256_setzero_si256();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n for all three slices; unaligned accesses.
        unsafe {
            for k in [0, 8] {
                let gv = _mm256_loadu_ps(g.as_ptr().add(i + k));
                let ev = _mm256_loadu_ps(e.as_ptr().add(i + k));
                _mm256_storeu_ps(
                    out.as_mut_ptr().add(i + k) as *mut f32,
                    _mm256_add_ps(gv, ev),
                );
                let x = _mm256_and_si256(_mm256_castps_si256(gv), exp);
                bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(x, exp));
            }
        }
        i += 16;
    }
    let ok = _mm256_testz_si256(bad, bad) == 1;
    ok & add_check_finite_scalar(&g[i..], &e[i..], &mut out[i..])
}

#[cfg(test)]
mod tests;
