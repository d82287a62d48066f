//! [`Model`]: the BitNet b1.58 decoder of transformers' `BitNetForCausalLM`,
//! run over a [`KvCache`].
//!
//! One step takes rows `(sequence, position, token)` (any number of
//! sequences, any number of new tokens each) and runs, for all rows at
//! once:
//!
//! ```text
//! x = embed[token]
//! per layer:
//!   h = RMSNorm(x; input_layernorm)
//!   q, k, v = BitLinear_q/k/v(h)              int8 per-token activations
//!   q, k = RoPE(q, k; position)
//!   cache[layer, seq, :, position] = k, v
//!   a = softmax(q·Kᵀ / √head_dim over positions ≤ own) · V   (grouped heads, f32)
//!   x = x + BitLinear_o(RMSNorm(a; attn_sub_norm))
//!   h = RMSNorm(x; post_attention_layernorm)
//!   m = act(BitLinear_gate(h)) ⊙ BitLinear_up(h)
//!   x = x + BitLinear_down(RMSNorm(m; ffn_sub_norm))
//! logits = lm_head(RMSNorm(x; norm))          only for the rows asked for
//! ```
//!
//! Many rows go through the projections as one matrix (the GEMM kernels);
//! a decode step of one token per sequence is a batch of `sequences` rows
//! (one row: the GEMV kernels). Attention uses a streaming softmax (running
//! maximum and sum over blocks of 64 positions, no score buffer), in f32.

use super::attention;
use super::config::ModelConfig;
use super::dense::DenseMatrix;
use super::kernels;
use super::kv_cache::KvCache;
use super::layer::TernaryLayer;
use super::norm::{rms_norm, rms_norm_inplace};
use super::rope::Rope;
use super::weights::{ModelWeights, TensorStore};
use crate::{Error, Result};

/// A loaded model: configuration, weights and RoPE tables. Immutable, so
/// one model may serve many sessions on many threads.
#[derive(Debug)]
pub struct Model {
    config: ModelConfig,
    embed_tokens: DenseMatrix,
    lm_head: Option<DenseMatrix>,
    norm: Vec<f32>,
    layers: Vec<ExecLayer>,
    rope: Rope,
}

/// Projections that read the same input, joined into one product when their
/// scales allow ([`TernaryLayer::concat`]): outputs side by side.
#[derive(Debug)]
enum Joined {
    One(TernaryLayer),
    Parts(Vec<TernaryLayer>),
}

impl Joined {
    fn new(parts: Vec<TernaryLayer>) -> Result<Self> {
        let refs: Vec<&TernaryLayer> = parts.iter().collect();
        Ok(match TernaryLayer::concat(&refs)? {
            Some(j) => Joined::One(j),
            None => Joined::Parts(parts),
        })
    }

    fn memory_bytes(&self) -> usize {
        match self {
            Joined::One(l) => l.memory_bytes(),
            Joined::Parts(p) => p.iter().map(TernaryLayer::memory_bytes).sum(),
        }
    }

    /// `out` `[rows, Σ out_features]` = the parts' outputs side by side.
    fn forward(&self, x: &[f32], rows: usize, out: &mut [f32]) -> Result<()> {
        match self {
            Joined::One(l) => l.forward_slices(x, rows, out),
            Joined::Parts(parts) => {
                let width: usize = parts.iter().map(|p| p.out_features()).sum();
                let mut col = 0;
                for p in parts {
                    let w = p.out_features();
                    let mut tmp = super::try_zeroed::<f32>(rows * w, "activations")?;
                    p.forward_slices(x, rows, &mut tmp)?;
                    for r in 0..rows {
                        out[r * width + col..r * width + col + w]
                            .copy_from_slice(&tmp[r * w..(r + 1) * w]);
                    }
                    col += w;
                }
                Ok(())
            }
        }
    }
}

/// One decoder layer as the step runs it.
#[derive(Debug)]
struct ExecLayer {
    input_layernorm: Vec<f32>,
    qkv: Joined,
    attn_sub_norm: Vec<f32>,
    o_proj: TernaryLayer,
    post_attention_layernorm: Vec<f32>,
    gate_up: Joined,
    ffn_sub_norm: Vec<f32>,
    down_proj: TernaryLayer,
}

/// One input row of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StepRow {
    pub seq: usize,
    pub pos: usize,
    pub token: u32,
}

/// Activation buffers for up to `cap` rows at once.
#[derive(Debug)]
pub(crate) struct Scratch {
    cap: usize,
    x: Vec<f32>,
    h: Vec<f32>,
    /// q, k, v side by side: `[rows, hidden + 2·kv_dim]`.
    qkv: Vec<f32>,
    a: Vec<f32>,
    gate: Vec<f32>,
    /// gate and up side by side: `[rows, 2·intermediate]`.
    gu: Vec<f32>,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Scratch {
    /// f32 values a scratch for `cap` rows holds.
    pub fn values(cfg: &ModelConfig, cap: usize) -> Result<usize> {
        let per = 4 * cfg.hidden_size + 2 * cfg.kv_dim() + 3 * cfg.intermediate_size + cfg.head_dim;
        crate::checked_mul(cap, per, "activation buffer size")
    }

    pub fn new(cfg: &ModelConfig, cap: usize) -> Result<Self> {
        Self::values(cfg, cap)?;
        let z = |n: usize| super::try_zeroed::<f32>(cap * n, "activations");
        Ok(Scratch {
            cap,
            x: z(cfg.hidden_size)?,
            h: z(cfg.hidden_size)?,
            qkv: z(cfg.hidden_size + 2 * cfg.kv_dim())?,
            a: z(cfg.hidden_size)?,
            gate: z(cfg.intermediate_size)?,
            gu: z(2 * cfg.intermediate_size)?,
            cos: z(cfg.head_dim / 2)?,
            sin: z(cfg.head_dim / 2)?,
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }
}

impl Model {
    /// A model from its configuration and weights (shapes checked against
    /// the configuration).
    pub fn new(config: ModelConfig, weights: ModelWeights) -> Result<Self> {
        config.validate()?;
        let c = &config;
        let bad = |what: String| Error::data("weights", what);
        if weights.layers.len() != c.num_layers {
            return Err(bad(format!(
                "{} layers, the configuration has {}",
                weights.layers.len(),
                c.num_layers
            )));
        }
        let dense_ok = |m: &DenseMatrix| m.rows() == c.vocab_size && m.cols() == c.hidden_size;
        if !dense_ok(&weights.embed_tokens)
            || weights.lm_head.as_ref().is_some_and(|m| !dense_ok(m))
        {
            return Err(bad(
                "embedding or lm_head is not [vocab_size, hidden_size]".into()
            ));
        }
        if weights.lm_head.is_none() != c.tie_word_embeddings {
            return Err(bad(
                "lm_head must be given exactly when tie_word_embeddings is false".into(),
            ));
        }
        let (h, i, kv) = (c.hidden_size, c.intermediate_size, c.kv_dim());
        for (n, w) in weights.layers.iter().enumerate() {
            let shapes = [
                (&w.q_proj, h, h),
                (&w.k_proj, kv, h),
                (&w.v_proj, kv, h),
                (&w.o_proj, h, h),
                (&w.gate_proj, i, h),
                (&w.up_proj, i, h),
                (&w.down_proj, h, i),
            ];
            for (p, o, inp) in shapes {
                if (p.out_features(), p.in_features()) != (o, inp) {
                    return Err(bad(format!(
                        "layer {n}: a projection is {}x{}, expected {o}x{inp}",
                        p.out_features(),
                        p.in_features()
                    )));
                }
            }
            let norms = [
                (w.input_layernorm.len(), h),
                (w.attn_sub_norm.len(), h),
                (w.post_attention_layernorm.len(), h),
                (w.ffn_sub_norm.len(), i),
            ];
            if norms.iter().any(|(a, b)| a != b) {
                return Err(bad(format!(
                    "layer {n}: a norm weight has the wrong length"
                )));
            }
        }
        if weights.norm.len() != h {
            return Err(bad("final norm has the wrong length".into()));
        }
        let rope = Rope::new(c.head_dim, c.rope_theta, c.rope_scaling);
        let ModelWeights {
            embed_tokens,
            layers,
            norm,
            lm_head,
        } = weights;
        let layers = layers
            .into_iter()
            .map(|w| {
                Ok(ExecLayer {
                    input_layernorm: w.input_layernorm,
                    qkv: Joined::new(vec![w.q_proj, w.k_proj, w.v_proj])?,
                    attn_sub_norm: w.attn_sub_norm,
                    o_proj: w.o_proj,
                    post_attention_layernorm: w.post_attention_layernorm,
                    gate_up: Joined::new(vec![w.gate_proj, w.up_proj])?,
                    ffn_sub_norm: w.ffn_sub_norm,
                    down_proj: w.down_proj,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Model {
            config,
            embed_tokens,
            lm_head,
            norm,
            layers,
            rope,
        })
    }

    /// Builds the model from named tensors (see [`ModelWeights::from_store`]).
    pub fn from_store(config: ModelConfig, store: &dyn TensorStore) -> Result<Self> {
        config.validate()?;
        let w = ModelWeights::from_store(&config, store)?;
        Self::new(config, w)
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }
    /// Bytes of weights held (q/k/v and gate/up are held joined, as one
    /// matrix each, not twice).
    pub fn weight_bytes(&self) -> usize {
        let l: usize = self
            .layers
            .iter()
            .map(|w| {
                w.qkv.memory_bytes()
                    + w.gate_up.memory_bytes()
                    + w.o_proj.memory_bytes()
                    + w.down_proj.memory_bytes()
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
    /// The matrix producing logits (`lm_head`, or the embedding when tied).
    pub fn head(&self) -> &DenseMatrix {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    /// Replaces `lm_head` by an int8 copy with one scale per row (halves its
    /// bytes against bf16); a tied head gets its own int8 copy and the
    /// embedding stays as it was.
    pub fn quantize_lm_head_int8(&mut self) -> Result<()> {
        let q = self.head().to_int8()?;
        self.lm_head = Some(q);
        self.config.tie_word_embeddings = false;
        Ok(())
    }

    /// Runs `rows` (at most `scratch.cap()`) through the decoder, writing
    /// their keys and values into `cache`, and the logits of the rows listed
    /// in `want` (ascending row indices) into `logits` (`want.len() · vocab`).
    /// The caller has validated rows against the cache; lengths are not
    /// updated here.
    pub(crate) fn step(
        &self,
        cache: &mut KvCache,
        s: &mut Scratch,
        rows: &[StepRow],
        want: &[usize],
        logits: &mut [f32],
    ) -> Result<()> {
        let c = &self.config;
        let t = rows.len();
        assert!(t <= s.cap && t > 0);
        let (hd, h, nh, nkv, inter, kvd) = (
            c.head_dim,
            c.hidden_size,
            c.num_heads,
            c.num_kv_heads,
            c.intermediate_size,
            c.kv_dim(),
        );
        let half = hd / 2;
        let lvl = kernels::level();
        let mut queries = crate::error::try_with_capacity(t, "attention rows")?;
        queries.extend(rows.iter().map(|r| attention::Query {
            seq: r.seq,
            len: r.pos + 1,
        }));
        let scale = (hd as f64).powf(-0.5) as f32;
        let eps = c.rms_norm_eps;
        for (r, row) in rows.iter().enumerate() {
            self.embed_tokens
                .row_f32(row.token as usize, &mut s.x[r * h..(r + 1) * h]);
            self.rope.cos_sin(
                row.pos,
                &mut s.cos[r * half..(r + 1) * half],
                &mut s.sin[r * half..(r + 1) * half],
            );
        }
        let x = &mut s.x[..t * h];
        let hb = &mut s.h[..t * h];
        let qw = h + 2 * kvd;
        let qkv = &mut s.qkv[..t * qw];
        let a = &mut s.a[..t * h];
        let gate = &mut s.gate[..t * inter];
        let gu = &mut s.gu[..t * 2 * inter];
        for (li, w) in self.layers.iter().enumerate() {
            rms_norm(x, &w.input_layernorm, eps, hb);
            w.qkv.forward(hb, t, qkv)?;
            for (r, row) in rows.iter().enumerate() {
                let (cs, sn) = (
                    &s.cos[r * half..(r + 1) * half],
                    &s.sin[r * half..(r + 1) * half],
                );
                let (q, kv) = qkv[r * qw..(r + 1) * qw].split_at_mut(h);
                Rope::apply(q, hd, cs, sn);
                let (k, v) = kv.split_at_mut(kvd);
                Rope::apply(k, hd, cs, sn);
                cache.write(li, row.seq, row.pos, k, v);
            }
            attention::attention(
                lvl,
                cache,
                li,
                &queries,
                qkv,
                qw,
                attention::Heads { nh, nkv, hd },
                scale,
                a,
            )?;
            rms_norm_inplace(a, &w.attn_sub_norm, eps);
            w.o_proj.forward_slices(a, t, hb)?;
            for (xv, &o) in x.iter_mut().zip(hb.iter()) {
                *xv += o;
            }
            rms_norm(x, &w.post_attention_layernorm, eps, hb);
            w.gate_up.forward(hb, t, gu)?;
            let act = c.hidden_act;
            for (gr, gur) in gate.chunks_exact_mut(inter).zip(gu.chunks_exact(2 * inter)) {
                let (g, u) = gur.split_at(inter);
                for ((o, &gv), &uv) in gr.iter_mut().zip(g).zip(u) {
                    *o = act.apply(gv) * uv;
                }
            }
            rms_norm_inplace(gate, &w.ffn_sub_norm, eps);
            w.down_proj.forward_slices(gate, t, hb)?;
            for (xv, &o) in x.iter_mut().zip(hb.iter()) {
                *xv += o;
            }
        }
        if want.is_empty() {
            return Ok(());
        }
        for (j, &r) in want.iter().enumerate() {
            rms_norm(
                &x[r * h..(r + 1) * h],
                &self.norm,
                eps,
                &mut hb[j * h..(j + 1) * h],
            );
        }
        let n = want.len();
        self.head().matmul(&hb[..n * h], n, logits)
    }
}
