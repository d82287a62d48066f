//! The seed's training API over [`crate::grad`] and [`crate::precision`].
//!
//! What differs from the seed: the seed compressed gradients with a dense
//! random projection (O(n·k) work and memory, and biased); here the default
//! is quantized top-k with error feedback (the method that trains best in
//! this library's measurements, docs/grad.md), and every other method of
//! [`crate::grad::compress::Method`] is one setting away, including the
//! O(n) unbiased sparse projection.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::grad::accumulate::TernaryAccumulator;
use crate::grad::compress::{Compressed, Compressor, CompressorConfig, Method};
use crate::{Error, Result};

/// Mixed-precision training helpers (the seed's
/// `training::mixed_precision`): the dynamic loss scaler with
/// `torch.amp.GradScaler` semantics.
pub mod mixed_precision {
    pub use crate::precision::loss_scale::{LossScaler, LossScalerConfig};
}

/// Settings of a [`GradientCompressor`] (builder style, as the seed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainingConfig {
    /// Compression factor, `>= 1` (f32 bytes / payload body bytes).
    pub compression_factor: f64,
    /// Method (default quantized top-k).
    pub method: Method,
    /// Error feedback: keep what a step's payload lost and add it to the
    /// next gradient of the same parameter (default on).
    pub error_feedback: bool,
    /// Base seed of the per-step hashes and rounding.
    pub seed: u64,
    /// Worker id, mixed into stochastic rounding so workers round independently.
    pub worker: u64,
}

impl Default for TrainingConfig {
    /// 10x, quantized top-k with error feedback, seed 0, worker 0.
    fn default() -> Self {
        TrainingConfig {
            compression_factor: 10.0,
            method: Method::QTopK,
            error_feedback: true,
            seed: 0,
            worker: 0,
        }
    }
}

impl TrainingConfig {
    /// The seed's setter: `r` in `(0, 1]` is the fraction of the gradient's
    /// size that is sent (`0.1` = 10x compression, as in the seed); `r > 1`
    /// is read as the factor itself (`32.0` = 32x). Non-finite or `<= 0`
    /// values are kept and rejected by the first `compress` (the seed's
    /// builder could not fail).
    pub fn with_compression_ratio(mut self, r: f32) -> Self {
        // In f32, as the seed computed it: 1 / 0.1f32 rounds to exactly 10.
        self.compression_factor = if r > 0.0 && r <= 1.0 { 1.0 / r } else { r } as f64;
        self
    }

    /// Sets the method.
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Turns error feedback on or off.
    pub fn with_error_feedback(mut self, on: bool) -> Self {
        self.error_feedback = on;
        self
    }

    /// Sets the base seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the worker id.
    pub fn with_worker(mut self, worker: u64) -> Self {
        self.worker = worker;
        self
    }

    fn compressor_config(&self, seed: u64) -> CompressorConfig {
        CompressorConfig {
            method: self.method,
            ratio: self.compression_factor,
            seed,
            worker: self.worker,
            error_feedback: self.error_feedback,
            ..CompressorConfig::default()
        }
    }
}

/// A compressed gradient: the library's checksummed payload
/// ([`crate::grad::compress::payload`]), what a worker sends.
#[derive(Debug, Clone, PartialEq)]
pub struct TernaryCompressedGradient {
    payload: Compressed,
}

impl TernaryCompressedGradient {
    /// Length on the wire in 32-bit words (`ceil(wire_bytes / 4)`), so that
    /// `gradient.len() / compressed.len()` is the compression factor the
    /// seed printed (header included).
    pub fn len(&self) -> usize {
        self.payload.wire_bytes().div_ceil(4)
    }

    /// Never true: a payload always has a header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Length of the gradient it encodes.
    pub fn dim(&self) -> usize {
        self.payload.dim
    }

    /// Exact serialized size in bytes.
    pub fn wire_bytes(&self) -> usize {
        self.payload.wire_bytes()
    }

    /// `4 * dim / wire_bytes` (header included).
    pub fn compression_ratio(&self) -> f64 {
        4.0 * self.dim() as f64 / self.wire_bytes() as f64
    }

    /// The method that produced it.
    pub fn method(&self) -> Method {
        self.payload.method()
    }

    /// The underlying payload.
    pub fn payload(&self) -> &Compressed {
        &self.payload
    }

    /// Serializes (the documented payload format).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.payload.to_bytes()
    }

    /// Parses and validates a payload.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Ok(TernaryCompressedGradient {
            payload: Compressed::from_bytes(bytes)?,
        })
    }

    /// Decodes to `dim` floats.
    pub fn decompress(&self) -> Result<Vec<f32>> {
        self.payload.decompress()
    }
}

impl From<Compressed> for TernaryCompressedGradient {
    fn from(payload: Compressed) -> Self {
        TernaryCompressedGradient { payload }
    }
}

/// Compresses named parameter gradients, keeping one error-feedback state
/// per name (the seed's object, shareable across threads: state sits
/// behind a mutex).
#[derive(Debug)]
pub struct GradientCompressor {
    config: TrainingConfig,
    states: Mutex<HashMap<String, Compressor>>,
}

/// The name [`GradientCompressor::compress`] files its state under.
const DEFAULT_NAME: &str = "";

impl GradientCompressor {
    /// A compressor with no state yet (the seed's infallible constructor;
    /// the configuration is validated by the first `compress`).
    pub fn new(config: TrainingConfig) -> Self {
        GradientCompressor {
            config,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TrainingConfig {
        &self.config
    }

    /// Compresses one gradient stream (the seed's call). `seed` (or the
    /// config's seed when `None`) is fixed at the first call; a later call
    /// with another seed is an error, since error feedback and the
    /// per-step hashes belong to one stream.
    pub fn compress(
        &self,
        gradients: &[f32],
        seed: Option<u64>,
    ) -> Result<TernaryCompressedGradient> {
        self.compress_seeded(DEFAULT_NAME, gradients, seed)
    }

    /// Compresses the gradient of parameter `name` with its own state.
    pub fn compress_named(
        &self,
        name: &str,
        gradient: &[f32],
    ) -> Result<TernaryCompressedGradient> {
        self.compress_seeded(name, gradient, None)
    }

    /// Compresses every `(name, gradient)` pair, in order.
    pub fn compress_all<'a>(
        &self,
        gradients: impl IntoIterator<Item = (&'a str, &'a [f32])>,
    ) -> Result<Vec<(String, TernaryCompressedGradient)>> {
        gradients
            .into_iter()
            .map(|(n, g)| Ok((n.to_string(), self.compress_named(n, g)?)))
            .collect()
    }

    fn compress_seeded(
        &self,
        name: &str,
        gradient: &[f32],
        seed: Option<u64>,
    ) -> Result<TernaryCompressedGradient> {
        let seed = seed.unwrap_or(self.config.seed);
        let mut states = self
            .states
            .lock()
            .map_err(|_| Error::InvalidState("a compress call panicked earlier".into()))?;
        let c = match states.get_mut(name) {
            Some(c) => {
                if c.config().seed != seed {
                    return Err(Error::invalid(
                        "seed",
                        format!(
                            "parameter {name:?} was started with seed {}, got {seed}",
                            c.config().seed
                        ),
                    ));
                }
                c
            }
            None => {
                let c = Compressor::new(gradient.len(), self.config.compressor_config(seed))?;
                states.entry(name.to_string()).or_insert(c)
            }
        };
        Ok(c.compress(gradient)?.into())
    }

    /// Decodes a payload (any method; it carries its own parameters).
    pub fn decompress(&self, compressed: &TernaryCompressedGradient) -> Result<Vec<f32>> {
        compressed.decompress()
    }

    /// Drops every parameter's state (residuals and step counters).
    pub fn reset(&self) {
        if let Ok(mut s) = self.states.lock() {
            s.clear();
        }
    }
}

/// Gradient accumulation in packed ternary form (2 bits a coordinate plus a
/// scale per block, stochastic rounding: unbiased), the seed's
/// `GradientAccumulator` over [`TernaryAccumulator`].
#[derive(Debug, Clone)]
pub struct GradientAccumulator {
    inner: TernaryAccumulator,
}

impl GradientAccumulator {
    /// An empty accumulator for gradients of length `dim` (block 256, seed 0).
    pub fn new(dim: usize) -> Result<Self> {
        Self::with_block(dim, crate::grad::compress::ternary::DEFAULT_BLOCK, 0)
    }

    /// With a chosen scale block (multiple of 4) and rounding seed.
    pub fn with_block(dim: usize, block: usize, seed: u64) -> Result<Self> {
        Ok(GradientAccumulator {
            inner: TernaryAccumulator::new(dim, block, seed)?,
        })
    }

    /// Adds one micro-batch's gradient.
    pub fn accumulate(&mut self, gradient: &[f32]) -> Result<()> {
        self.inner.add(gradient, 1.0)
    }

    /// The mean of the accumulated gradients (zeros when empty).
    pub fn get_accumulated(&self) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.inner.dim()];
        self.inner.read(&mut out, true)?;
        Ok(out)
    }

    /// The sum of the accumulated gradients.
    pub fn sum(&self) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.inner.dim()];
        self.inner.read(&mut out, false)?;
        Ok(out)
    }

    /// Micro-batches added since the last reset.
    pub fn count(&self) -> u64 {
        self.inner.count()
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }

    /// Back to zero.
    pub fn reset(&mut self) {
        self.inner.reset()
    }
}
