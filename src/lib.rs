//! tritter-accel: ternary (BitNet b1.58) AI kernels behind a C ABI.
//!
//! The crate is organised by domain; every core is safe Rust over ndarray views
//! and knows nothing of C. The only `extern "C"` code lives in [`ffi`].
//!
//! | module | what it holds |
//! |---|---|
//! | [`ternary`] | quantization, packing layouts, ternary matmul, the [`ternary::TernaryMatrix`] |
//! | [`vsa`] | vector-symbolic-architecture hypervectors and their algebra |
//! | [`grad`] | gradient compression and gradient prediction |
//! | [`infer`] | the BitNet b1.58 decoder: KV cache, sampling, sessions, generation |
//! | [`io`] | safetensors, Hugging Face BitNet checkpoints and GGUF (TQ1_0/TQ2_0): read, write |
//! | [`precision`] | f32 <-> bf16/f16 conversion, stochastic rounding, loss scaling |
//! | [`core`] | the seeds' Rust API (`core::{quantization, ternary, vsa, training, device}`), a facade over the modules below |
//! | [`cpu`] | the one CPU capability module: detected and active instruction-set level for every domain |
//! | [`cuda`] | the CUDA backend (a stub returning [`Error::CudaUnavailable`] without the `cuda` feature) |
//! | [`ffi`] | the C ABI: handles, status codes, last error, DLPack views |
//!
//! ```
//! use tritter_accel::ternary::{quant::{QuantConfig, quantize}, TernaryMatrix, ActivationMode};
//! use ndarray::array;
//!
//! let w = array![[0.9f32, -1.1, 0.05, 0.4], [-0.2, 0.0, 1.3, -0.7]];
//! let m = TernaryMatrix::from_f32(w.view(), &QuantConfig::default()).unwrap();
//! let x = array![[1.0f32, 2.0, 3.0, 4.0]];
//! let y = m.matmul(x.view(), None, ActivationMode::F32).unwrap();
//! assert_eq!(y.shape(), &[1, 2]);
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod core;
pub mod cpu;
pub mod cuda;
pub mod error;
pub mod ffi;
pub mod grad;
pub mod infer;
pub mod io;
pub mod parallel;
pub mod precision;
pub mod rng;
pub mod ternary;
pub mod vsa;

pub use error::{
    check_finite, check_finite_view, checked_mul, try_collect, try_reserve, try_to_vec, try_vec,
    try_with_capacity, try_zeroed, Error, Result,
};

/// Crate version as `MAJOR.MINOR.PATCH` (from Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
