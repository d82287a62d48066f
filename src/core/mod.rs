//! The seeds' Rust API: the paths and names that integrations written
//! against the original tritter-accel handoff use.
//!
//! ```
//! use tritter_accel::core::{
//!     quantization::{quantize_absmean, quantize_absmax, QuantizeConfig, QuantizationResult},
//!     ternary::{PackedTernary, matmul, dot},
//!     vsa::{VsaOps, VsaConfig},
//!     training::{GradientCompressor, TrainingConfig, TernaryCompressedGradient, GradientAccumulator},
//!     training::mixed_precision::LossScaler,
//!     device::Device,
//! };
//! # fn main() -> tritter_accel::Result<()> {
//! let w = ndarray::Array2::from_shape_fn((8, 16), |(i, j)| ((i * 16 + j) as f32 * 0.37).sin());
//! let result: QuantizationResult = quantize_absmean(w.view(), &QuantizeConfig::default())?;
//! let packed: PackedTernary = result.to_packed()?;
//! let x = ndarray::Array2::<f32>::ones((2, 16));
//! let y = matmul(x.view(), &packed, None)?;
//! assert_eq!(y.shape(), &[2, 8]);
//!
//! let compressor = GradientCompressor::new(TrainingConfig::default().with_compression_ratio(0.1));
//! let g: Vec<f32> = (0..10_000).map(|i| (i as f32 * 0.01).sin()).collect();
//! let c: TernaryCompressedGradient = compressor.compress(&g, Some(42))?;
//! assert!(c.len() < g.len());
//! let restored = compressor.decompress(&c)?;
//! assert_eq!(restored.len(), g.len());
//! # Ok(()) }
//! ```
//!
//! This module is a thin facade: every function calls the module that does
//! the work ([`crate::ternary`], [`crate::vsa`], [`crate::grad`],
//! [`crate::precision`]); nothing here has its own kernel. Where the seed
//! took a candle `Tensor` this takes an ndarray view, and where it took a
//! candle `Device` it takes [`device::Device`]. `docs/seed-api.md` maps
//! every seed name (Rust and Python) to where it lives and what differs.

pub mod device;
pub mod quantization;
pub mod ternary;
pub mod training;

/// VSA operations (re-exports of [`crate::vsa`]; `VsaOps` is the seed's
/// object with a fixed configuration).
pub mod vsa {
    pub use crate::vsa::{Algebra, ItemMemory, Metric, PackedHv, TieRule, VsaConfig, VsaOps};
}
