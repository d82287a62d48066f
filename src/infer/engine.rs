//! [`Session`] (a KV cache and activation buffers over a shared [`Model`]:
//! prefill, decode, reset, truncate) and [`InferenceEngine`] (a model plus
//! the generation loop).

use std::sync::Arc;

use super::kv_cache::{CacheDtype, KvCache, KvCacheShape};
use super::model::{Model, Scratch, StepRow};
use super::sampling::{sample, SamplingParams};
use crate::{Error, Result};

/// Sizes of a [`Session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    /// Sequences the cache holds side by side.
    pub max_batch: usize,
    /// Positions per sequence (prompt + generated tokens).
    pub max_seq_len: usize,
    /// Element type of the cache.
    pub cache_dtype: CacheDtype,
    /// Rows (tokens, over all sequences) one pass through the layers takes;
    /// longer prompts are run in chunks of this many (same results: the
    /// attention is causal). Sets the activation memory.
    pub max_step_tokens: usize,
}

impl SessionOptions {
    /// One sequence of `max_position_embeddings` positions, f32 cache,
    /// 256-token steps.
    pub fn for_model(model: &Model) -> Self {
        SessionOptions {
            max_batch: 1,
            max_seq_len: model.config().max_position_embeddings,
            cache_dtype: CacheDtype::F32,
            max_step_tokens: 256,
        }
    }

    fn cache_shape(&self, model: &Model) -> KvCacheShape {
        let c = model.config();
        KvCacheShape {
            layers: c.num_layers,
            batch: self.max_batch,
            kv_heads: c.num_kv_heads,
            max_seq_len: self.max_seq_len,
            head_dim: c.head_dim,
        }
    }
}

/// Memory of a model and one session, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryReport {
    /// The model's weights (shared by every session).
    pub weights: usize,
    /// The session's KV cache (keys and values).
    pub kv_cache: usize,
    /// The session's activation buffers (the matmul kernels add their own
    /// per-call int8 copies of the activations, `rows · in_features` bytes,
    /// and an `[rows, vocab]` f32 buffer when logits of several rows are asked for).
    pub activations: usize,
}

/// Which rows' logits a step returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// None (fill the cache only).
    None,
    /// The last token of each input.
    Last,
    /// Every token.
    All,
}

/// A KV cache and buffers over a shared model. One session runs one call
/// at a time (`&mut self`); several sessions may share a model across threads.
#[derive(Debug)]
pub struct Session {
    model: Arc<Model>,
    opts: SessionOptions,
    cache: KvCache,
    scratch: Scratch,
}

impl Session {
    /// The memory a session with `opts` takes, computed before allocating.
    pub fn memory(model: &Model, opts: &SessionOptions) -> Result<MemoryReport> {
        Self::check_opts(opts)?;
        Ok(MemoryReport {
            weights: model.weight_bytes(),
            kv_cache: KvCache::memory_bytes(opts.cache_shape(model), opts.cache_dtype)?,
            activations: crate::checked_mul(
                Scratch::values(model.config(), opts.max_step_tokens)?,
                4,
                "activation bytes",
            )?,
        })
    }

    fn check_opts(opts: &SessionOptions) -> Result<()> {
        for (n, name) in [
            (opts.max_batch, "max_batch"),
            (opts.max_seq_len, "max_seq_len"),
            (opts.max_step_tokens, "max_step_tokens"),
        ] {
            if n == 0 {
                return Err(Error::invalid(name, "must be > 0"));
            }
        }
        Ok(())
    }

    /// A session over `model` (allocates [`Session::memory`]'s bytes; a size
    /// that cannot be allocated is an error).
    pub fn new(model: Arc<Model>, opts: SessionOptions) -> Result<Self> {
        Self::memory(&model, &opts)?;
        let cache = KvCache::new(opts.cache_shape(&model), opts.cache_dtype)?;
        let scratch = Scratch::new(model.config(), opts.max_step_tokens)?;
        Ok(Session {
            model,
            opts,
            cache,
            scratch,
        })
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }
    /// The options.
    pub fn options(&self) -> &SessionOptions {
        &self.opts
    }
    /// The cache.
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }
    /// Positions held by sequence `seq` (0 for an unknown sequence).
    pub fn seq_len(&self, seq: usize) -> usize {
        self.cache.lens().get(seq).copied().unwrap_or(0)
    }
    /// Empties sequence `seq`.
    pub fn reset(&mut self, seq: usize) -> Result<()> {
        self.cache.reset(seq)
    }
    /// Empties every sequence.
    pub fn reset_all(&mut self) {
        self.cache.reset_all()
    }
    /// Keeps the first `len` positions of `seq` (reuse a shared prefix).
    pub fn truncate(&mut self, seq: usize, len: usize) -> Result<()> {
        self.cache.truncate(seq, len)
    }

    /// Rows of logits [`Session::forward`] writes for `inputs` and `mode`.
    pub fn logits_rows(inputs: &[(usize, &[u32])], mode: Logits) -> usize {
        match mode {
            Logits::None => 0,
            Logits::Last => inputs.len(),
            Logits::All => inputs.iter().map(|(_, t)| t.len()).sum(),
        }
    }

    /// Appends `tokens` to each listed sequence and runs them (a prefill of
    /// several prompts of different lengths, or a decode step of one token
    /// per sequence). Logits go to `out` (`logits_rows · vocab` values,
    /// input by input, token by token). Nothing changes on error: bad
    /// sequence indices, a sequence listed twice, no or empty inputs, token
    /// ids >= vocab, a sequence that would outgrow the cache, a small `out`.
    pub fn forward(
        &mut self,
        inputs: &[(usize, &[u32])],
        mode: Logits,
        out: &mut [f32],
    ) -> Result<()> {
        let vocab = self.model.config().vocab_size;
        if inputs.is_empty() {
            return Err(Error::invalid("inputs", "no sequences given"));
        }
        let mut seen = vec![false; self.opts.max_batch];
        for &(seq, toks) in inputs {
            if seq >= self.opts.max_batch {
                return Err(Error::invalid(
                    "seq",
                    format!(
                        "sequence {seq} out of range (the session holds {})",
                        self.opts.max_batch
                    ),
                ));
            }
            if std::mem::replace(&mut seen[seq], true) {
                return Err(Error::invalid(
                    "seq",
                    format!("sequence {seq} listed twice"),
                ));
            }
            if toks.is_empty() {
                return Err(Error::invalid(
                    "tokens",
                    format!("sequence {seq}: empty prompt (at least one token is needed)"),
                ));
            }
            if let Some(i) = toks.iter().position(|&t| t as usize >= vocab) {
                return Err(Error::invalid(
                    "tokens",
                    format!(
                        "sequence {seq}: token id {} at index {i} is >= vocab_size {vocab}",
                        toks[i]
                    ),
                ));
            }
            let len = self.cache.len(seq);
            if len + toks.len() > self.opts.max_seq_len {
                return Err(Error::invalid(
                    "tokens",
                    format!(
                        "sequence {seq}: {len} cached + {} new tokens exceed max_seq_len {}",
                        toks.len(),
                        self.opts.max_seq_len
                    ),
                ));
            }
        }
        let nrows = Self::logits_rows(inputs, mode);
        let need = crate::checked_mul(nrows, vocab, "logits")?;
        if out.len() < need {
            return Err(Error::BufferTooSmall {
                arg: "logits",
                needed: need,
                got: out.len(),
            });
        }
        // Rows in input order; which of them produce logits.
        let mut rows = Vec::new();
        let mut want = Vec::new();
        for &(seq, toks) in inputs {
            let len = self.cache.len(seq);
            for (i, &token) in toks.iter().enumerate() {
                let last = i + 1 == toks.len();
                if mode == Logits::All || (mode == Logits::Last && last) {
                    want.push(rows.len());
                }
                rows.push(StepRow {
                    seq,
                    pos: len + i,
                    token,
                });
            }
        }
        let cap = self.scratch.cap();
        let mut w0 = 0;
        let mut o0 = 0;
        for (ci, chunk) in rows.chunks(cap).enumerate() {
            let base = ci * cap;
            let w1 = w0
                + want[w0..]
                    .iter()
                    .take_while(|&&r| r < base + chunk.len())
                    .count();
            let local: Vec<usize> = want[w0..w1].iter().map(|r| r - base).collect();
            let n = local.len() * vocab;
            self.model.step(
                &mut self.cache,
                &mut self.scratch,
                chunk,
                &local,
                &mut out[o0..o0 + n],
            )?;
            o0 += n;
            w0 = w1;
        }
        for &(seq, toks) in inputs {
            let len = self.cache.len(seq) + toks.len();
            self.cache.set_len(seq, len);
        }
        Ok(())
    }

    /// Runs a prompt for sequence `seq` and writes the logits of its last
    /// token (`vocab` values) into `out`.
    pub fn prefill(&mut self, seq: usize, tokens: &[u32], out: &mut [f32]) -> Result<()> {
        self.forward(&[(seq, tokens)], Logits::Last, out)
    }

    /// One token for each sequence in `seqs` (`tokens[i]` for `seqs[i]`);
    /// logits `[seqs.len(), vocab]` into `out`.
    pub fn decode(&mut self, seqs: &[usize], tokens: &[u32], out: &mut [f32]) -> Result<()> {
        if seqs.len() != tokens.len() {
            return Err(Error::shape(
                "tokens",
                format!("{} tokens for {} sequences", tokens.len(), seqs.len()),
            ));
        }
        let inputs: Vec<(usize, &[u32])> = seqs
            .iter()
            .zip(tokens)
            .map(|(&s, t)| (s, std::slice::from_ref(t)))
            .collect();
        self.forward(&inputs, Logits::Last, out)
    }
}

/// What [`InferenceEngine::generate`] does.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Tokens to add to each prompt at most.
    pub max_new_tokens: usize,
    /// Token choice.
    pub sampling: SamplingParams,
    /// Seed of the draws (sequence `b` draws its `i`-th token with
    /// `sample(.., derive(seed, b), i)`).
    pub seed: u64,
    /// A sequence ends after producing one of these (it is kept).
    pub stop: Vec<u32>,
    /// Element type of the cache.
    pub cache_dtype: CacheDtype,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 16,
            sampling: SamplingParams::default(),
            seed: 0,
            stop: vec![],
            cache_dtype: CacheDtype::F32,
        }
    }
}

/// A model and the loop that turns prompts into tokens.
#[derive(Debug, Clone)]
pub struct InferenceEngine {
    model: Arc<Model>,
}

impl InferenceEngine {
    /// An engine over a model.
    pub fn new(model: Model) -> Self {
        InferenceEngine {
            model: Arc::new(model),
        }
    }

    /// An engine over a model shared with other engines or sessions.
    pub fn from_shared(model: Arc<Model>) -> Self {
        InferenceEngine { model }
    }

    /// The shared model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// A new session.
    pub fn session(&self, opts: SessionOptions) -> Result<Session> {
        Session::new(self.model.clone(), opts)
    }

    /// Logits of every token of each sequence with a fresh cache:
    /// `[Σ len, vocab]`, sequence by sequence.
    pub fn forward(&self, seqs: &[&[u32]]) -> Result<Vec<f32>> {
        let maxlen = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut s = self.session(SessionOptions {
            max_batch: seqs.len().max(1),
            max_seq_len: maxlen.max(1),
            cache_dtype: CacheDtype::F32,
            max_step_tokens: 256,
        })?;
        let inputs: Vec<(usize, &[u32])> = seqs.iter().copied().enumerate().collect();
        let n = Session::logits_rows(&inputs, Logits::All) * self.model.config().vocab_size;
        let mut out: Vec<f32> = super::try_zeroed(n, "logits")?;
        s.forward(&inputs, Logits::All, &mut out)?;
        Ok(out)
    }

    /// Continues each prompt (prompts may differ in length) and returns
    /// prompt + new tokens per sequence. A sequence stops after a stop token
    /// or `max_new_tokens` new tokens.
    pub fn generate(&self, prompts: &[&[u32]], opts: &GenerateOptions) -> Result<Vec<Vec<u32>>> {
        opts.sampling.validate()?;
        if prompts.is_empty() {
            return Err(Error::invalid("prompts", "no prompts given"));
        }
        let maxlen = prompts.iter().map(|p| p.len()).max().unwrap_or(0);
        let max_seq_len = maxlen
            .checked_add(opts.max_new_tokens)
            .ok_or_else(|| Error::overflow("max_new_tokens", "prompt + new tokens overflow"))?;
        let mut s = self.session(SessionOptions {
            max_batch: prompts.len(),
            max_seq_len: max_seq_len.max(1),
            cache_dtype: opts.cache_dtype,
            max_step_tokens: 256,
        })?;
        let vocab = self.model.config().vocab_size;
        let mut out: Vec<Vec<u32>> = prompts.iter().map(|p| p.to_vec()).collect();
        if opts.max_new_tokens == 0 {
            // still validate the prompts
            let inputs: Vec<(usize, &[u32])> = prompts.iter().copied().enumerate().collect();
            s.forward(&inputs, Logits::None, &mut [])?;
            return Ok(out);
        }
        let mut logits: Vec<f32> = super::try_zeroed(prompts.len() * vocab, "logits")?;
        let inputs: Vec<(usize, &[u32])> = prompts.iter().copied().enumerate().collect();
        s.forward(&inputs, Logits::Last, &mut logits)?;
        let mut active: Vec<usize> = (0..prompts.len()).collect();
        for step in 0..opts.max_new_tokens {
            let mut next = Vec::with_capacity(active.len());
            let mut still = Vec::with_capacity(active.len());
            for (j, &b) in active.iter().enumerate() {
                let tok = sample(
                    &logits[j * vocab..(j + 1) * vocab],
                    &opts.sampling,
                    crate::rng::derive(opts.seed, b as u64),
                    step as u64,
                )?;
                out[b].push(tok);
                if !opts.stop.contains(&tok) {
                    still.push(b);
                    next.push(tok);
                }
            }
            active = still;
            if active.is_empty() || step + 1 == opts.max_new_tokens {
                break;
            }
            s.decode(&active, &next, &mut logits[..active.len() * vocab])?;
        }
        Ok(out)
    }
}
