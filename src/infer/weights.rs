//! The model's weights and where they come from.
//!
//! A [`TensorStore`] hands out tensors by their Hugging Face names
//! (`model.layers.0.self_attn.q_proj.weight`, ...): ternary matrices for the
//! BitLinear projections and float tensors for the rest. [`MemoryStore`]
//! holds them in memory (tests, converters); the checkpoint reader of
//! [`crate::io`] is another store. [`ModelWeights::from_store`] takes every
//! tensor the configuration needs and checks its shape.

use std::collections::HashMap;

use super::config::ModelConfig;
use super::dense::{DenseData, DenseMatrix};
use super::layer::TernaryLayer;
use crate::ternary::{ActivationMode, TernaryMatrix};
use crate::{Error, Result};

/// A float tensor as stored (values in the stored dtype).
#[derive(Debug, Clone, PartialEq)]
pub struct FloatTensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: DenseData,
}

impl FloatTensor {
    /// An f32 tensor.
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Self {
        FloatTensor {
            shape,
            data: DenseData::F32(data),
        }
    }

    /// The values widened to f32.
    pub fn to_f32(&self) -> Vec<f32> {
        use crate::precision::convert::{bf16_bits_to_f32, f16_bits_to_f32};
        match &self.data {
            DenseData::F32(v) => v.clone(),
            DenseData::F16(v) => v.iter().map(|&h| f16_bits_to_f32(h)).collect(),
            DenseData::Bf16(v) => v.iter().map(|&h| bf16_bits_to_f32(h)).collect(),
            DenseData::I8 { q, .. } => q.iter().map(|&b| b as f32).collect(),
        }
    }
}

/// Named tensors of a checkpoint.
pub trait TensorStore {
    /// Whether a tensor of that name exists.
    fn contains(&self, name: &str) -> bool;
    /// The ternary (BitLinear) weight `name` as a matrix
    /// `[out_features, in_features]` whose scale is the real one
    /// (transformers' `1 / weight_scale`).
    fn ternary(&self, name: &str) -> Result<TernaryMatrix>;
    /// The float tensor `name`.
    fn float(&self, name: &str) -> Result<FloatTensor>;
}

/// A [`TensorStore`] in memory.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    /// Ternary matrices by name.
    pub ternary: HashMap<String, TernaryMatrix>,
    /// Float tensors by name.
    pub float: HashMap<String, FloatTensor>,
}

/// The error for a tensor a store lacks.
pub fn missing(name: &str) -> Error {
    Error::data("checkpoint", format!("tensor `{name}` is missing"))
}

impl TensorStore for MemoryStore {
    fn contains(&self, name: &str) -> bool {
        self.ternary.contains_key(name) || self.float.contains_key(name)
    }
    fn ternary(&self, name: &str) -> Result<TernaryMatrix> {
        self.ternary.get(name).cloned().ok_or_else(|| missing(name))
    }
    fn float(&self, name: &str) -> Result<FloatTensor> {
        self.float.get(name).cloned().ok_or_else(|| missing(name))
    }
}

/// One decoder layer's weights.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// RMSNorm before attention (`hidden`).
    pub input_layernorm: Vec<f32>,
    /// Query projection `[heads·head_dim, hidden]`.
    pub q_proj: TernaryLayer,
    /// Key projection `[kv_heads·head_dim, hidden]`.
    pub k_proj: TernaryLayer,
    /// Value projection `[kv_heads·head_dim, hidden]`.
    pub v_proj: TernaryLayer,
    /// RMSNorm of the attention output (`hidden`).
    pub attn_sub_norm: Vec<f32>,
    /// Output projection `[hidden, heads·head_dim]`.
    pub o_proj: TernaryLayer,
    /// RMSNorm before the MLP (`hidden`).
    pub post_attention_layernorm: Vec<f32>,
    /// Gate projection `[intermediate, hidden]`.
    pub gate_proj: TernaryLayer,
    /// Up projection `[intermediate, hidden]`.
    pub up_proj: TernaryLayer,
    /// RMSNorm before `down_proj` (`intermediate`).
    pub ffn_sub_norm: Vec<f32>,
    /// Down projection `[hidden, intermediate]`.
    pub down_proj: TernaryLayer,
}

/// Every weight of a BitNet decoder.
#[derive(Debug, Clone)]
pub struct ModelWeights {
    /// Token embeddings `[vocab, hidden]`.
    pub embed_tokens: DenseMatrix,
    /// The layers.
    pub layers: Vec<LayerWeights>,
    /// Final RMSNorm (`hidden`).
    pub norm: Vec<f32>,
    /// Output projection `[vocab, hidden]`; `None` = tied to `embed_tokens`.
    pub lm_head: Option<DenseMatrix>,
}

fn shape_err(name: &str, got: &[usize], want: &[usize]) -> Error {
    Error::data(
        "checkpoint",
        format!("tensor `{name}` has shape {got:?}, expected {want:?}"),
    )
}

fn vector(store: &dyn TensorStore, name: &str, n: usize) -> Result<Vec<f32>> {
    let t = store.float(name)?;
    if t.shape != [n] {
        return Err(shape_err(name, &t.shape, &[n]));
    }
    let v = t.to_f32();
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::data(
            "checkpoint",
            format!("tensor `{name}` holds a non-finite value at index {i}"),
        ));
    }
    Ok(v)
}

fn matrix(store: &dyn TensorStore, name: &str, rows: usize, cols: usize) -> Result<DenseMatrix> {
    let t = store.float(name)?;
    if t.shape != [rows, cols] {
        return Err(shape_err(name, &t.shape, &[rows, cols]));
    }
    DenseMatrix::new(rows, cols, t.data)
        .map_err(|e| Error::data("checkpoint", format!("tensor `{name}`: {e}")))
}

fn linear(
    store: &dyn TensorStore,
    prefix: &str,
    out: usize,
    inp: usize,
    bias: bool,
) -> Result<TernaryLayer> {
    let name = format!("{prefix}.weight");
    let w = store.ternary(&name)?;
    if (w.rows(), w.cols()) != (out, inp) {
        return Err(shape_err(&name, &[w.rows(), w.cols()], &[out, inp]));
    }
    let b = if bias {
        Some(vector(store, &format!("{prefix}.bias"), out)?)
    } else {
        None
    };
    TernaryLayer::new(w, b, ActivationMode::Int8)
}

impl ModelWeights {
    /// Takes every tensor `cfg` needs from `store` by its transformers name
    /// and checks shapes. Errors ([`Error::InvalidData`] naming `checkpoint`,
    /// the message naming the tensor): a missing tensor, a wrong shape, a
    /// non-finite norm weight.
    pub fn from_store(cfg: &ModelConfig, store: &dyn TensorStore) -> Result<Self> {
        let (h, i, q, kv) = (
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_heads * cfg.head_dim,
            cfg.kv_dim(),
        );
        let bias = cfg.attention_bias;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = format!("model.layers.{l}");
            layers.push(LayerWeights {
                input_layernorm: vector(store, &format!("{p}.input_layernorm.weight"), h)?,
                q_proj: linear(store, &format!("{p}.self_attn.q_proj"), q, h, bias)?,
                k_proj: linear(store, &format!("{p}.self_attn.k_proj"), kv, h, bias)?,
                v_proj: linear(store, &format!("{p}.self_attn.v_proj"), kv, h, bias)?,
                attn_sub_norm: vector(store, &format!("{p}.self_attn.attn_sub_norm.weight"), q)?,
                o_proj: linear(store, &format!("{p}.self_attn.o_proj"), h, q, bias)?,
                post_attention_layernorm: vector(
                    store,
                    &format!("{p}.post_attention_layernorm.weight"),
                    h,
                )?,
                gate_proj: linear(store, &format!("{p}.mlp.gate_proj"), i, h, false)?,
                up_proj: linear(store, &format!("{p}.mlp.up_proj"), i, h, false)?,
                ffn_sub_norm: vector(store, &format!("{p}.mlp.ffn_sub_norm.weight"), i)?,
                down_proj: linear(store, &format!("{p}.mlp.down_proj"), h, i, false)?,
            });
        }
        let embed_tokens = matrix(store, "model.embed_tokens.weight", cfg.vocab_size, h)?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(matrix(store, "lm_head.weight", cfg.vocab_size, h)?)
        };
        Ok(ModelWeights {
            embed_tokens,
            layers,
            norm: vector(store, "model.norm.weight", h)?,
            lm_head,
        })
    }

    /// Bytes held by the weights.
    pub fn memory_bytes(&self) -> usize {
        let l: usize = self
            .layers
            .iter()
            .map(|w| {
                [
                    &w.q_proj,
                    &w.k_proj,
                    &w.v_proj,
                    &w.o_proj,
                    &w.gate_proj,
                    &w.up_proj,
                    &w.down_proj,
                ]
                .iter()
                .map(|p| p.memory_bytes())
                .sum::<usize>()
                    + 4 * (w.input_layernorm.len()
                        + w.attn_sub_norm.len()
                        + w.post_attention_layernorm.len()
                        + w.ffn_sub_norm.len())
            })
            .sum();
        l + self.embed_tokens.memory_bytes()
            + 4 * self.norm.len()
            + self.lm_head.as_ref().map_or(0, DenseMatrix::memory_bytes)
    }
}
