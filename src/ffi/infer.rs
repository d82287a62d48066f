//! C entry points of the inference engine: the model handle, sessions (a
//! KV cache and buffers: prefill, decode, reset, truncate), sampling,
//! generation, and a standalone KV cache.

use std::ffi::{c_char, CStr};
use std::sync::Arc;

use super::args;
use super::handle;
use super::status::{guard, tritter_status_t};
use crate::infer::{
    sample, CacheDtype, GenerateOptions, InferenceEngine, KvCache, KvCacheShape, Logits, Model,
    SamplingParams, Session, SessionOptions,
};
use crate::{Error, Result};

/// `cache_dtype`: f32 (4 bytes a value).
pub const TRITTER_CACHE_F32: u32 = 0;
/// `cache_dtype`: IEEE half (2 bytes a value).
pub const TRITTER_CACHE_F16: u32 = 1;
/// `cache_dtype`: bfloat16 (2 bytes a value).
pub const TRITTER_CACHE_BF16: u32 = 2;
/// `logits_mode`: no logits (fill the cache only).
pub const TRITTER_LOGITS_NONE: u32 = 0;
/// `logits_mode`: the last token of each input.
pub const TRITTER_LOGITS_LAST: u32 = 1;
/// `logits_mode`: every token.
pub const TRITTER_LOGITS_ALL: u32 = 2;

/// A loaded BitNet b1.58 model (weights, configuration). Immutable: one
/// handle may be used by any number of threads and sessions at once.
/// Sessions keep the model alive, so it may be freed before them.
pub struct tritter_model_t(Arc<Model>);

/// A session: a KV cache and activation buffers over a model. One call at a
/// time per session (not shareable across threads without a lock); any
/// number of sessions may share a model.
pub struct tritter_session_t(Session);

/// A standalone KV cache (for decoders of your own). One call at a time.
pub struct tritter_kv_cache_t(KvCache);

/// Facts about a model.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tritter_model_info_t {
    /// Vocabulary size (token ids are `< vocab_size`; logits rows have this many values).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// The configured context length (default session length).
    pub max_position_embeddings: usize,
    /// `lm_head` is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// First end-of-sequence id of the config, or `UINT32_MAX` if none.
    pub eos_token_id: u32,
    /// Beginning-of-sequence id of the config, or `UINT32_MAX` if none.
    pub bos_token_id: u32,
    /// Bytes of weights held.
    pub weight_bytes: usize,
}

/// Sizes of a session. Get defaults from [`tritter_session_options_default`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tritter_session_options_t {
    /// Sequences held side by side (> 0).
    pub max_batch: usize,
    /// Positions per sequence: prompt + generated tokens (> 0).
    pub max_seq_len: usize,
    /// `TRITTER_CACHE_*`.
    pub cache_dtype: u32,
    /// Tokens one pass through the layers takes (> 0); longer prompts run in
    /// chunks of this many, with the same results. Sets the activation memory.
    pub max_step_tokens: usize,
}

/// Bytes a model and one session take.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tritter_memory_report_t {
    /// The model's weights (shared by sessions).
    pub weights: usize,
    /// The session's KV cache.
    pub kv_cache: usize,
    /// The session's activation buffers.
    pub activations: usize,
}

/// How to choose a token. Get defaults (greedy) from
/// [`tritter_sampling_params_default`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tritter_sampling_params_t {
    /// 0 = greedy (argmax); > 0 = softmax(logits / temperature).
    pub temperature: f32,
    /// Keep the `top_k` largest logits (0 = all).
    pub top_k: usize,
    /// Nucleus mass in (0, 1] (1 = all).
    pub top_p: f32,
}

/// Options of [`tritter_model_load`]. Get defaults from
/// [`tritter_load_options_default`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct tritter_load_options_t {
    /// Keep `lm_head` as int8 with one scale per row (half the bytes of
    /// bf16 read per token; logits change slightly).
    pub lm_head_int8: bool,
}

impl From<&tritter_sampling_params_t> for SamplingParams {
    fn from(p: &tritter_sampling_params_t) -> Self {
        SamplingParams {
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
        }
    }
}

fn session_opts(o: &tritter_session_options_t) -> Result<SessionOptions> {
    Ok(SessionOptions {
        max_batch: o.max_batch,
        max_seq_len: o.max_seq_len,
        cache_dtype: CacheDtype::from_code(o.cache_dtype)?,
        max_step_tokens: o.max_step_tokens,
    })
}

fn logits_mode(code: u32) -> Result<Logits> {
    match code {
        TRITTER_LOGITS_NONE => Ok(Logits::None),
        TRITTER_LOGITS_LAST => Ok(Logits::Last),
        TRITTER_LOGITS_ALL => Ok(Logits::All),
        c => Err(Error::invalid(
            "logits_mode",
            format!("unknown logits mode {c} (0 none, 1 last, 2 all)"),
        )),
    }
}

/// Writes the default load options (bf16/f16/f32 `lm_head` as stored).
///
/// # Safety
/// `options_out` must be valid for writing one `tritter_load_options_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_load_options_default(
    options_out: *mut tritter_load_options_t,
) -> tritter_status_t {
    guard(|| unsafe {
        args::write(
            options_out,
            tritter_load_options_t::default(),
            "options_out",
        )
    })
}

/// Loads a Hugging Face BitNet checkpoint directory (`config.json`,
/// `model.safetensors` or shards with `model.safetensors.index.json`) as
/// transformers' `BitNetForCausalLM` defines it. `options` may be NULL.
/// Errors: unreadable files (`TRITTER_ERR_IO`), a corrupt file, a missing
/// or misshapen tensor (`TRITTER_ERR_INVALID_DATA`, naming the tensor), an
/// unsupported configuration (`TRITTER_ERR_INVALID_ARGUMENT`, naming the field).
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `options` NULL or valid;
/// `model_out` valid for writing one pointer.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_model_load(
    path: *const c_char,
    options: *const tritter_load_options_t,
    model_out: *mut *mut tritter_model_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(model_out, "model_out")?;
        if path.is_null() {
            return Err(Error::NullPointer("path"));
        }
        // SAFETY: non-NULL and NUL-terminated by the contract.
        let p = unsafe { CStr::from_ptr(path) }
            .to_str()
            .map_err(|_| Error::invalid("path", "not valid UTF-8"))?;
        let opts = unsafe { args::optional(options, "options")? }
            .copied()
            .unwrap_or_default();
        let mut m = crate::infer::load::load(std::path::Path::new(p))?;
        if opts.lm_head_int8 {
            m.quantize_lm_head_int8()?;
        }
        unsafe { handle::store(model_out, tritter_model_t(Arc::new(m)), "model_out") }
    })
}

/// Releases a model handle (sessions made from it stay valid). NULL is a no-op.
///
/// # Safety
/// `model` must be NULL or a live handle not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tritter_model_free(model: *mut tritter_model_t) {
    unsafe { handle::free(model) }
}

/// Writes facts about `model` into `info_out`.
///
/// # Safety
/// `model` must be NULL or a live handle; `info_out` valid for writing.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_model_info(
    model: *const tritter_model_t,
    info_out: *mut tritter_model_info_t,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(model, "model")? }.0;
        let c = m.config();
        let info = tritter_model_info_t {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_layers: c.num_layers,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            head_dim: c.head_dim,
            max_position_embeddings: c.max_position_embeddings,
            tie_word_embeddings: c.tie_word_embeddings,
            eos_token_id: c.eos_token_ids.first().copied().unwrap_or(u32::MAX),
            bos_token_id: c.bos_token_id.unwrap_or(u32::MAX),
            weight_bytes: m.weight_bytes(),
        };
        unsafe { args::write(info_out, info, "info_out") }
    })
}

/// Writes the default session options for `model`: one sequence of
/// `max_position_embeddings` positions, f32 cache, 256-token steps.
///
/// # Safety
/// `model` must be NULL or a live handle; `options_out` valid for writing.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_session_options_default(
    model: *const tritter_model_t,
    options_out: *mut tritter_session_options_t,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(model, "model")? }.0;
        let o = SessionOptions::for_model(m);
        unsafe {
            args::write(
                options_out,
                tritter_session_options_t {
                    max_batch: o.max_batch,
                    max_seq_len: o.max_seq_len,
                    cache_dtype: o.cache_dtype.code(),
                    max_step_tokens: o.max_step_tokens,
                },
                "options_out",
            )
        }
    })
}

/// The exact memory a session with `options` would take (weights, KV
/// cache, activation buffers), computed without allocating.
///
/// # Safety
/// `model` NULL or live; `options` NULL or valid; `report_out` valid for writing.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_session_memory(
    model: *const tritter_model_t,
    options: *const tritter_session_options_t,
    report_out: *mut tritter_memory_report_t,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(model, "model")? }.0;
        let o = session_opts(unsafe { args::reference(options, "options")? })?;
        let r = Session::memory(m, &o)?;
        unsafe {
            args::write(
                report_out,
                tritter_memory_report_t {
                    weights: r.weights,
                    kv_cache: r.kv_cache,
                    activations: r.activations,
                },
                "report_out",
            )
        }
    })
}

/// Creates a session (allocates its KV cache and buffers; a size that cannot
/// be allocated is `TRITTER_ERR_SIZE_OVERFLOW`, never an abort).
///
/// # Safety
/// `model` NULL or live; `options` NULL or valid; `session_out` valid for writing.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_session_new(
    model: *const tritter_model_t,
    options: *const tritter_session_options_t,
    session_out: *mut *mut tritter_session_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(session_out, "session_out")?;
        let m = &unsafe { handle::get(model, "model")? }.0;
        let o = session_opts(unsafe { args::reference(options, "options")? })?;
        let s = Session::new(m.clone(), o)?;
        unsafe { handle::store(session_out, tritter_session_t(s), "session_out") }
    })
}

/// Releases a session. NULL is a no-op.
///
/// # Safety
/// `session` must be NULL or a live handle not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tritter_session_free(session: *mut tritter_session_t) {
    unsafe { handle::free(session) }
}

/// Appends tokens to several sequences at once and runs them: `n_seqs`
/// inputs, input `i` appending `lengths[i]` tokens to sequence `seqs[i]`;
/// `tokens` holds them back to back (`Σ lengths` ids). `logits_mode`
/// (`TRITTER_LOGITS_*`) picks the rows of logits written to `logits_out`
/// (`rows · vocab_size` floats, input by input): none, the last token of
/// each input, or all. Errors leave the session as it was: unknown or
/// repeated sequences, empty inputs, ids >= vocab, a sequence that would
/// outgrow `max_seq_len`, a small `logits_out`.
///
/// # Safety
/// `session` NULL or live; every array NULL or valid for its stated length.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_session_forward(
    session: *mut tritter_session_t,
    seqs: *const usize,
    lengths: *const usize,
    n_seqs: usize,
    tokens: *const u32,
    n_tokens: usize,
    logits_mode: u32,
    logits_out: *mut f32,
    logits_len: usize,
) -> tritter_status_t {
    guard(|| {
        let s = &mut unsafe { handle::get_mut(session, "session")? }.0;
        let mode = self::logits_mode(logits_mode)?;
        let seqs = unsafe { args::slice(seqs, n_seqs, "seqs")? };
        let lengths = unsafe { args::slice(lengths, n_seqs, "lengths")? };
        let toks = unsafe { args::slice(tokens, n_tokens, "tokens")? };
        let mut total = 0usize;
        for &l in lengths {
            total = total
                .checked_add(l)
                .ok_or_else(|| Error::overflow("lengths", "sum overflows"))?;
        }
        if total != n_tokens {
            return Err(Error::shape(
                "tokens",
                format!("{n_tokens} tokens, the lengths add up to {total}"),
            ));
        }
        let mut inputs = Vec::with_capacity(n_seqs);
        let mut o = 0;
        for (&q, &l) in seqs.iter().zip(lengths) {
            inputs.push((q, &toks[o..o + l]));
            o += l;
        }
        let out = unsafe { args::slice_mut(logits_out, logits_len, "logits_out")? };
        s.forward(&inputs, mode, out)
    })
}

/// Runs a prompt of `n_tokens` ids for sequence `seq` (appended to what it
/// holds) and writes the logits of its last token (`vocab_size` floats).
/// Errors as [`tritter_session_forward`].
///
/// # Safety
/// `session` NULL or live; arrays NULL or valid for their lengths.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_session_prefill(
    session: *mut tritter_session_t,
    seq: usize,
    tokens: *const u32,
    n_tokens: usize,
    logits_out: *mut f32,
    logits_len: usize,
) -> tritter_status_t {
    guard(|| {
        let s = &mut unsafe { handle::get_mut(session, "session")? }.0;
        let toks = unsafe { args::slice(tokens, n_tokens, "tokens")? };
        let out = unsafe { args::slice_mut(logits_out, logits_len, "logits_out")? };
        s.prefill(seq, toks, out)
    })
}

/// One decode step: token `tokens[i]` appended to sequence `seqs[i]` for
/// `n` sequences; logits `[n, vocab_size]` into `logits_out`.
///
/// # Safety
/// `session` NULL or live; arrays NULL or valid for their lengths.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_session_decode(
    session: *mut tritter_session_t,
    seqs: *const usize,
    tokens: *const u32,
    n: usize,
    logits_out: *mut f32,
    logits_len: usize,
) -> tritter_status_t {
    guard(|| {
        let s = &mut unsafe { handle::get_mut(session, "session")? }.0;
        let seqs = unsafe { args::slice(seqs, n, "seqs")? };
        let toks = unsafe { args::slice(tokens, n, "tokens")? };
        let out = unsafe { args::slice_mut(logits_out, logits_len, "logits_out")? };
        s.decode(seqs, toks, out)
    })
}

/// Positions held by sequence `seq`.
///
/// # Safety
/// `session` NULL or live; `len_out` valid for writing.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_session_seq_len(
    session: *const tritter_session_t,
    seq: usize,
    len_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let s = &unsafe { handle::get(session, "session")? }.0;
        if seq >= s.options().max_batch {
            return Err(Error::invalid(
                "seq",
                format!("sequence {seq} out of range"),
            ));
        }
        unsafe { args::write(len_out, s.seq_len(seq), "len_out") }
    })
}

/// Empties sequence `seq`.
///
/// # Safety
/// `session` NULL or live.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_session_reset(
    session: *mut tritter_session_t,
    seq: usize,
) -> tritter_status_t {
    guard(|| unsafe { handle::get_mut(session, "session")? }.0.reset(seq))
}

/// Keeps the first `len` positions of sequence `seq` (prefix reuse); `len`
/// may not exceed what it holds.
///
/// # Safety
/// `session` NULL or live.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_session_truncate(
    session: *mut tritter_session_t,
    seq: usize,
    len: usize,
) -> tritter_status_t {
    guard(|| {
        unsafe { handle::get_mut(session, "session")? }
            .0
            .truncate(seq, len)
    })
}

/// Writes the default sampling parameters (greedy).
///
/// # Safety
/// `params_out` valid for writing.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_sampling_params_default(
    params_out: *mut tritter_sampling_params_t,
) -> tritter_status_t {
    let d = SamplingParams::default();
    guard(|| unsafe {
        args::write(
            params_out,
            tritter_sampling_params_t {
                temperature: d.temperature,
                top_k: d.top_k,
                top_p: d.top_p,
            },
            "params_out",
        )
    })
}

/// Chooses a token from `vocab` logits: greedy when `temperature == 0`,
/// else a draw from the (top-k, top-p filtered) softmax of `logits /
/// temperature` with the uniform number `(seed, index)`: the same inputs
/// always give the same token. `params` may be NULL (greedy). Errors:
/// empty or non-finite logits, `temperature < 0`, `top_p` outside (0, 1].
///
/// # Safety
/// `logits` NULL or valid for `vocab` floats; `params` NULL or valid;
/// `token_out` valid for writing.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_sample(
    logits: *const f32,
    vocab: usize,
    params: *const tritter_sampling_params_t,
    seed: u64,
    index: u64,
    token_out: *mut u32,
) -> tritter_status_t {
    guard(|| {
        args::check_out(token_out, "token_out")?;
        let l = unsafe { args::slice(logits, vocab, "logits")? };
        let p = unsafe { args::optional(params, "params")? }
            .map(SamplingParams::from)
            .unwrap_or_default();
        let t = sample(l, &p, seed, index)?;
        unsafe { args::write(token_out, t, "token_out") }
    })
}

/// Generates continuations of `n_seqs` prompts (lengths `lengths[i]`, ids
/// back to back in `tokens`) in one call: prefill, then up to
/// `max_new_tokens` decode steps, each sequence stopping after one of the
/// `n_stop` ids in `stop`. Sequence `i`'s `j`-th new token is drawn with
/// `tritter_sample(.., derive(seed, i), j)`. Writes prompt + new tokens of
/// sequence `i` at `tokens_out[i · stride]` and its length to
/// `lengths_out[i]`; `stride` must be at least the longest prompt +
/// `max_new_tokens`. `params` may be NULL (greedy).
///
/// # Safety
/// `model` NULL or live; arrays NULL or valid for their stated lengths
/// (`tokens_out`: `n_seqs · stride`).
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_model_generate(
    model: *const tritter_model_t,
    tokens: *const u32,
    n_tokens: usize,
    lengths: *const usize,
    n_seqs: usize,
    max_new_tokens: usize,
    params: *const tritter_sampling_params_t,
    seed: u64,
    stop: *const u32,
    n_stop: usize,
    cache_dtype: u32,
    tokens_out: *mut u32,
    stride: usize,
    lengths_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let m = &unsafe { handle::get(model, "model")? }.0;
        let toks = unsafe { args::slice(tokens, n_tokens, "tokens")? };
        let lens = unsafe { args::slice(lengths, n_seqs, "lengths")? };
        let stop = unsafe { args::slice(stop, n_stop, "stop")? };
        let p = unsafe { args::optional(params, "params")? }
            .map(SamplingParams::from)
            .unwrap_or_default();
        let mut total = 0usize;
        for &l in lens {
            total = total
                .checked_add(l)
                .ok_or_else(|| Error::overflow("lengths", "sum overflows"))?;
        }
        if total != n_tokens {
            return Err(Error::shape(
                "tokens",
                format!("{n_tokens} tokens, the lengths add up to {total}"),
            ));
        }
        let longest = lens.iter().copied().max().unwrap_or(0);
        let need_stride = longest
            .checked_add(max_new_tokens)
            .ok_or_else(|| Error::overflow("max_new_tokens", "too large"))?;
        if stride < need_stride {
            return Err(Error::invalid(
                "stride",
                format!(
                    "{stride} is less than the longest prompt + max_new_tokens = {need_stride}"
                ),
            ));
        }
        let out_n = args::elems(n_seqs, stride, "n_seqs * stride")?;
        let out = unsafe { args::slice_mut(tokens_out, out_n, "tokens_out")? };
        let lens_out = unsafe { args::slice_mut(lengths_out, n_seqs, "lengths_out")? };
        let mut prompts = Vec::with_capacity(n_seqs);
        let mut o = 0;
        for &l in lens {
            prompts.push(&toks[o..o + l]);
            o += l;
        }
        let engine = InferenceEngine::from_shared(m.clone());
        let res = engine.generate(
            &prompts,
            &GenerateOptions {
                max_new_tokens,
                sampling: p,
                seed,
                stop: stop.to_vec(),
                cache_dtype: CacheDtype::from_code(cache_dtype)?,
            },
        )?;
        for (i, r) in res.iter().enumerate() {
            out[i * stride..i * stride + r.len()].copy_from_slice(r);
            lens_out[i] = r.len();
        }
        Ok(())
    })
}

fn cache_shape(
    layers: usize,
    batch: usize,
    kv_heads: usize,
    max_seq_len: usize,
    head_dim: usize,
) -> KvCacheShape {
    KvCacheShape {
        layers,
        batch,
        kv_heads,
        max_seq_len,
        head_dim,
    }
}

/// Exact bytes a KV cache of this shape and `dtype` (`TRITTER_CACHE_*`)
/// allocates, without allocating.
///
/// # Safety
/// `bytes_out` valid for writing.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_kv_cache_memory(
    layers: usize,
    batch: usize,
    kv_heads: usize,
    max_seq_len: usize,
    head_dim: usize,
    dtype: u32,
    bytes_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let b = KvCache::memory_bytes(
            cache_shape(layers, batch, kv_heads, max_seq_len, head_dim),
            CacheDtype::from_code(dtype)?,
        )?;
        unsafe { args::write(bytes_out, b, "bytes_out") }
    })
}

/// Allocates an empty KV cache `[layers][batch][kv_heads][max_seq_len][head_dim]`
/// for keys and for values.
///
/// # Safety
/// `cache_out` valid for writing one pointer.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_kv_cache_new(
    layers: usize,
    batch: usize,
    kv_heads: usize,
    max_seq_len: usize,
    head_dim: usize,
    dtype: u32,
    cache_out: *mut *mut tritter_kv_cache_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(cache_out, "cache_out")?;
        let c = KvCache::new(
            cache_shape(layers, batch, kv_heads, max_seq_len, head_dim),
            CacheDtype::from_code(dtype)?,
        )?;
        unsafe { handle::store(cache_out, tritter_kv_cache_t(c), "cache_out") }
    })
}

/// Releases a KV cache. NULL is a no-op.
///
/// # Safety
/// `cache` NULL or a live handle not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn tritter_kv_cache_free(cache: *mut tritter_kv_cache_t) {
    unsafe { handle::free(cache) }
}

/// Appends one position to sequence `seq` in every layer: `k` and `v` hold
/// `layers · kv_heads · head_dim` floats each, layer-major. O(1); nothing
/// stored moves. A full sequence is `TRITTER_ERR_INVALID_STATE`.
///
/// # Safety
/// `cache` NULL or live; `k`, `v` NULL or valid for `len` floats.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_kv_cache_append(
    cache: *mut tritter_kv_cache_t,
    seq: usize,
    k: *const f32,
    v: *const f32,
    len: usize,
) -> tritter_status_t {
    guard(|| {
        let c = &mut unsafe { handle::get_mut(cache, "cache")? }.0;
        let ks = unsafe { args::slice(k, len, "k")? };
        let vs = unsafe { args::slice(v, len, "v")? };
        crate::check_finite(ks, "k")?;
        crate::check_finite(vs, "v")?;
        c.append(seq, ks, vs)
    })
}

/// Reads position `pos` of `(layer, seq)` back as f32 (`kv_heads · head_dim`
/// floats each into `k_out`, `v_out`).
///
/// # Safety
/// `cache` NULL or live; outputs NULL or valid for `len` floats.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_kv_cache_read(
    cache: *const tritter_kv_cache_t,
    layer: usize,
    seq: usize,
    pos: usize,
    k_out: *mut f32,
    v_out: *mut f32,
    len: usize,
) -> tritter_status_t {
    guard(|| {
        let c = &unsafe { handle::get(cache, "cache")? }.0;
        let k = unsafe { args::slice_mut(k_out, len, "k_out")? };
        let v = unsafe { args::slice_mut(v_out, len, "v_out")? };
        c.read(layer, seq, pos, k, v)
    })
}

/// Positions held by sequence `seq`.
///
/// # Safety
/// `cache` NULL or live; `len_out` valid for writing.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_kv_cache_len(
    cache: *const tritter_kv_cache_t,
    seq: usize,
    len_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let c = &unsafe { handle::get(cache, "cache")? }.0;
        if seq >= c.shape().batch {
            return Err(Error::invalid(
                "seq",
                format!("sequence {seq} out of range"),
            ));
        }
        unsafe { args::write(len_out, c.len(seq), "len_out") }
    })
}

/// Keeps the first `len` positions of `seq` (`len` = 0 empties it).
///
/// # Safety
/// `cache` NULL or live.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_kv_cache_truncate(
    cache: *mut tritter_kv_cache_t,
    seq: usize,
    len: usize,
) -> tritter_status_t {
    guard(|| {
        unsafe { handle::get_mut(cache, "cache")? }
            .0
            .truncate(seq, len)
    })
}
