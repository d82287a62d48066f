//! BitNet b1.58 inference: the decoder of transformers' `BitNetForCausalLM`
//! on the library's ternary kernels, with a preallocated KV cache and
//! sampling.
//!
//! | file | holds |
//! |---|---|
//! | `config.rs` | [`ModelConfig`] from `config.json`, [`HiddenAct`] |
//! | `layer.rs` | [`TernaryLayer`]: packed weights + bias + activation mode (BitLinear) |
//! | `kv_cache.rs` | [`KvCache`]: `[layer][seq][kv_head][pos][head_dim]`, f32/f16/bf16, O(1) append |
//! | `rope.rs` | [`Rope`]: rotate-half RoPE, linear and llama3 scaling |
//! | `norm.rs` | RMSNorm |
//! | `dense.rs` | [`DenseMatrix`]: embedding and `lm_head` in f32/f16/bf16/int8 |
//! | `kernels.rs` | dot / axpy over f32, f16, bf16, int8 rows (scalar + AVX2) |
//! | `weights.rs` | [`TensorStore`] (named tensors), [`ModelWeights`] |
//! | `model.rs` | [`Model`]: one step of the decoder over many rows |
//! | `engine.rs` | [`Session`] (prefill / decode / reset / truncate), [`InferenceEngine`] (generate) |
//! | `sampling.rs` | greedy, temperature, top-k, top-p; seeded |
//!
//! # Agreement with transformers
//!
//! Everything is computed in f32 from the same formulas as transformers
//! (float32 model dtype). Two sources of difference remain:
//!
//! 1. *f32 rounding*: summation orders (RMSNorm, attention, `lm_head`),
//!    the BitLinear rescaling `(y·(1/ws))/s_x` vs `y/(ws·s_x)`, exp/cos
//!    implementations: relative differences of order 1e-6.
//! 2. *int8 activation rounding*: each BitLinear rounds `x·s_x` to an
//!    integer. Where a value lies within ~1e-6 of a half-integer, the tiny
//!    difference of (1) can round it the other way in one implementation:
//!    that input then differs by one quantization step, `max|x| / 127`,
//!    and the layer's outputs by `max|x| / (127·ws)` times one weight
//!    column. Such flips are rare but do not shrink with better f32
//!    arithmetic, and they propagate through the remaining layers.
//!
//! The tests (python-ctypes/tests/test_infer.py) therefore compare logits
//! within a bound set by (2), require the same argmax wherever
//! transformers' top-2 margin exceeds that bound, and require identical
//! greedy continuations; docs/engine.md gives the bound and the measured
//! differences.

pub(crate) mod attention;
pub mod config;
pub mod dense;
pub mod engine;
pub mod kernels;
pub mod kv_cache;
pub mod layer;
pub mod load;
pub mod model;
pub mod norm;
pub mod rope;
pub mod sampling;
pub mod weights;

pub use config::{HiddenAct, ModelConfig};
pub use dense::{DenseData, DenseMatrix};
pub use engine::{GenerateOptions, InferenceEngine, Logits, MemoryReport, Session, SessionOptions};
pub use kv_cache::{CacheDtype, KvCache, KvCacheShape};
pub use layer::TernaryLayer;
pub use model::Model;
pub use rope::{Rope, RopeScaling};
pub use sampling::{sample, SamplingParams};
pub use weights::{FloatTensor, LayerWeights, MemoryStore, ModelWeights, TensorStore};

/// The error for an allocation of `bytes` that failed.
pub(crate) fn alloc_error(what: &'static str, bytes: usize) -> crate::Error {
    crate::Error::OutOfMemory { arg: what, bytes }
}

pub(crate) use crate::error::try_zeroed;

#[cfg(test)]
mod tests;
