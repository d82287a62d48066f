"""BitNet b1.58 inference: InferenceEngine (a loaded checkpoint), Session
(a KV cache: prefill / decode / reset / truncate), KVCache, TernaryLayer,
sample().

    eng = InferenceEngine.from_pretrained("path/to/checkpoint")   # HF BitNet directory
    logits = eng.forward(tokens)            # int [batch, seq] -> float32 [batch, seq, vocab]
    out = eng.generate(prompt, 32)          # prompt + 32 greedy tokens
"""
import ctypes
import os

import numpy as np

from . import _c_api as C
from ._arrays import carray, ptr
from ._lib import call
from ._managed import Handle, new_handle
from .ternary import TernaryMatrix

__all__ = ["InferenceEngine", "Session", "KVCache", "TernaryLayer", "sample"]

_CACHE = {"f32": C.TRITTER_CACHE_F32, "f16": C.TRITTER_CACHE_F16, "bf16": C.TRITTER_CACHE_BF16}
_LOGITS = {"none": C.TRITTER_LOGITS_NONE, "last": C.TRITTER_LOGITS_LAST, "all": C.TRITTER_LOGITS_ALL}


def _lookup(table, value, name):
    try:
        return table[value]
    except KeyError:
        raise ValueError(f"{name} must be one of {sorted(table)}, got {value!r}") from None


def _tokens(t, name="tokens"):
    """A 1-D array of token ids as uint32 (negative ids refused here, ids >= vocab by the library)."""
    a = np.asarray(t)
    if a.dtype.kind not in "iu":
        if a.size == 0:
            a = a.astype(np.int64)
        else:
            raise TypeError(f"{name} must be integers, got dtype {a.dtype}")
    if a.size and a.min() < 0:
        raise ValueError(f"{name} holds a negative token id ({a.min()})")
    if a.size and a.max() > 0xFFFFFFFF:
        raise ValueError(f"{name} holds an id above 2^32 - 1")
    return np.ascontiguousarray(a, dtype=np.uint32).reshape(-1)


def _sizes(values):
    arr = np.ascontiguousarray(values, dtype=np.uintp)
    return arr


def _params(temperature, top_k, top_p):
    p = C.tritter_sampling_params_t()
    p.temperature = float(temperature)
    p.top_k = 0 if top_k is None else int(top_k)
    p.top_p = 1.0 if top_p is None else float(top_p)
    if p.top_k < 0:
        raise ValueError("top_k must be >= 0")
    return p


def sample(logits, temperature=0.0, top_k=None, top_p=None, seed=0, index=0):
    """One token from a row of logits: greedy at temperature 0, else a draw
    from softmax(logits / temperature) (top-k / top-p filtered) with the
    random number (seed, index): the same arguments always give the same token."""
    l_ = carray(logits, np.float32, 1, "logits")
    p = _params(temperature, top_k, top_p)
    out = ctypes.c_uint32()
    call("tritter_sample", ptr(l_), l_.size, ctypes.byref(p), int(seed), int(index), ctypes.byref(out))
    return int(out.value)


class InferenceEngine(Handle):
    """A loaded BitNet b1.58 model (transformers' BitNetForCausalLM). Immutable;
    shareable across threads; every call that needs a KV cache makes a session."""

    _free = "tritter_model_free"

    @classmethod
    def from_pretrained(cls, path, lm_head_int8=False):
        """Loads a Hugging Face BitNet checkpoint directory (config.json + safetensors).
        lm_head_int8: keep lm_head as int8 with per-row scales (less memory traffic)."""
        opts = C.tritter_load_options_t()
        opts.lm_head_int8 = bool(lm_head_int8)
        return cls(new_handle("tritter_model_load", os.fsencode(os.fspath(path)), ctypes.byref(opts)))

    def info(self):
        i = C.tritter_model_info_t()
        call("tritter_model_info", self.raw, ctypes.byref(i))
        return {f: getattr(i, f) for f, _ in C.tritter_model_info_t._fields_}

    @property
    def vocab_size(self):
        return self.info()["vocab_size"]

    def memory(self, max_batch=1, max_seq_len=None, cache_dtype="f32", max_step_tokens=256):
        """Bytes of weights, KV cache and activations a session would take (nothing is allocated)."""
        o = self._options(max_batch, max_seq_len, cache_dtype, max_step_tokens)
        r = C.tritter_memory_report_t()
        call("tritter_session_memory", self.raw, ctypes.byref(o), ctypes.byref(r))
        return {f: getattr(r, f) for f, _ in C.tritter_memory_report_t._fields_}

    def _options(self, max_batch, max_seq_len, cache_dtype, max_step_tokens):
        o = C.tritter_session_options_t()
        call("tritter_session_options_default", self.raw, ctypes.byref(o))
        o.max_batch = int(max_batch)
        if max_seq_len is not None:
            o.max_seq_len = int(max_seq_len)
        o.cache_dtype = _lookup(_CACHE, cache_dtype, "cache_dtype")
        o.max_step_tokens = int(max_step_tokens)
        return o

    def session(self, max_batch=1, max_seq_len=None, cache_dtype="f32", max_step_tokens=256):
        """A new Session (its own KV cache of max_batch sequences x max_seq_len positions)."""
        o = self._options(max_batch, max_seq_len, cache_dtype, max_step_tokens)
        return Session(new_handle("tritter_session_new", self.raw, ctypes.byref(o)), self.vocab_size)

    def forward(self, tokens):
        """Logits of every token with a fresh cache. tokens: int array [batch, seq]
        (or [seq]) -> float32 [batch, seq, vocab] (or [seq, vocab]); a list of
        1-D sequences of different lengths -> a list of [len, vocab] arrays."""
        ragged = isinstance(tokens, (list, tuple)) and any(np.ndim(t) != 0 for t in tokens) and \
            len({len(t) for t in tokens}) > 1
        if ragged:
            seqs = [_tokens(t) for t in tokens]
        else:
            a = np.asarray(tokens)
            if a.ndim not in (1, 2):
                raise ValueError(f"tokens must be [seq] or [batch, seq], got shape {a.shape}")
            squeeze = a.ndim == 1
            a2 = a[None, :] if squeeze else a
            seqs = [_tokens(r) for r in a2]
        if not seqs:
            raise ValueError("no sequences given")
        v = self.vocab_size
        lengths = [s.size for s in seqs]
        with self.session(len(seqs), max(max(lengths), 1)) as s:
            flat = s.forward(list(enumerate(seqs)), logits="all")
        outs, o = [], 0
        for n in lengths:
            outs.append(flat[o:o + n])
            o += n
        if ragged:
            return outs
        res = np.stack(outs) if outs else np.empty((0, 0, v), np.float32)
        return res[0] if squeeze else res

    def generate(self, tokens, max_new_tokens, temperature=0.0, top_k=None, top_p=None, seed=0, stop=None,
                 cache_dtype="f32", pad_id=-1):
        """Continues prompts: returns prompt + new tokens (int64). tokens: [seq] -> [seq + new];
        [batch, seq] -> [batch, seq + max_new] with sequences that stopped early padded by
        pad_id; a list of 1-D prompts of different lengths -> a list of arrays. A sequence stops
        after producing a token in `stop` (kept) or after max_new_tokens. Greedy at temperature 0;
        same seed, same tokens."""
        if isinstance(tokens, (list, tuple)) and tokens and np.ndim(tokens[0]) == 1:
            prompts, mode = [_tokens(t) for t in tokens], "list"
        else:
            a = np.asarray(tokens)
            if a.ndim == 1:
                prompts, mode = [_tokens(a)], "1d"
            elif a.ndim == 2:
                prompts, mode = [_tokens(r) for r in a], "2d"
            else:
                raise ValueError(f"tokens must be [seq] or [batch, seq], got shape {a.shape}")
        if int(max_new_tokens) < 0:
            raise ValueError("max_new_tokens must be >= 0")
        lengths = _sizes([p.size for p in prompts])
        flat = np.concatenate(prompts) if prompts else np.empty(0, np.uint32)
        stop_a = _tokens([] if stop is None else np.atleast_1d(stop), "stop")
        stride = int(max(lengths, default=0)) + int(max_new_tokens)
        out = np.zeros((len(prompts), max(stride, 1)), np.uint32)
        out_len = np.zeros(len(prompts), np.uintp)
        p = _params(temperature, top_k, top_p)
        call("tritter_model_generate", self.raw, ptr(flat), flat.size, ptr(lengths), len(prompts),
             int(max_new_tokens), ctypes.byref(p), int(seed), ptr(stop_a), stop_a.size,
             _lookup(_CACHE, cache_dtype, "cache_dtype"), ptr(out), out.shape[1], ptr(out_len))
        rows = [out[i, :out_len[i]].astype(np.int64) for i in range(len(prompts))]
        if mode == "1d":
            return rows[0]
        if mode == "list":
            return rows
        res = np.full((len(rows), stride), pad_id, np.int64)
        for i, r in enumerate(rows):
            res[i, :r.size] = r
        return res


class Session(Handle):
    """A KV cache and buffers over a model: run prompts, decode tokens, reuse prefixes.
    One call at a time; make one session per thread."""

    _free = "tritter_session_free"

    def __init__(self, raw, vocab_size):
        super().__init__(raw)
        self.vocab_size = vocab_size

    def forward(self, inputs, logits="last"):
        """inputs: [(seq, tokens), ...]; appends each token list to its sequence and runs
        them together. Returns float32 logits [rows, vocab] for 'last' (one row per input)
        or 'all' (every token, input by input); None for 'none'."""
        seqs = _sizes([int(s) for s, _ in inputs])
        toks = [_tokens(t) for _, t in inputs]
        lengths = _sizes([t.size for t in toks])
        flat = np.concatenate(toks) if toks else np.empty(0, np.uint32)
        mode = _lookup(_LOGITS, logits, "logits")
        rows = {"none": 0, "last": len(toks), "all": int(flat.size)}[logits]
        out = np.empty((rows, self.vocab_size), np.float32)
        call("tritter_session_forward", self.raw, ptr(seqs), ptr(lengths), len(toks), ptr(flat), flat.size,
             mode, ptr(out), out.size)
        return None if logits == "none" else out

    def prefill(self, tokens, seq=0):
        """Runs a prompt for sequence `seq`; returns the logits of its last token [vocab]."""
        return self.forward([(seq, tokens)], "last")[0]

    def decode(self, tokens, seqs=None):
        """One token per sequence (seqs defaults to 0..len(tokens)-1); returns logits [n, vocab]."""
        t = _tokens(tokens)
        s = _sizes(range(t.size) if seqs is None else [int(x) for x in seqs])
        out = np.empty((t.size, self.vocab_size), np.float32)
        call("tritter_session_decode", self.raw, ptr(s), ptr(t), t.size, ptr(out), out.size)
        return out

    def seq_len(self, seq=0):
        n = ctypes.c_size_t()
        call("tritter_session_seq_len", self.raw, int(seq), ctypes.byref(n))
        return n.value

    def reset(self, seq=0):
        call("tritter_session_reset", self.raw, int(seq))

    def truncate(self, seq, length):
        """Keeps the first `length` positions of `seq` (reuse a shared prefix)."""
        call("tritter_session_truncate", self.raw, int(seq), int(length))


class KVCache(Handle):
    """A preallocated KV cache [layers][batch][kv_heads][max_seq_len][head_dim] in
    'f32', 'f16' or 'bf16'; appending a position is O(1) and moves nothing."""

    _free = "tritter_kv_cache_free"

    def __init__(self, layers, kv_heads, head_dim, max_seq_len, batch=1, dtype="f32"):
        self.layers, self.kv_heads, self.head_dim = int(layers), int(kv_heads), int(head_dim)
        self.max_seq_len, self.batch, self.dtype = int(max_seq_len), int(batch), dtype
        super().__init__(new_handle("tritter_kv_cache_new", self.layers, self.batch, self.kv_heads,
                                    self.max_seq_len, self.head_dim, _lookup(_CACHE, dtype, "dtype")))

    @staticmethod
    def memory_bytes(layers, kv_heads, head_dim, max_seq_len, batch=1, dtype="f32"):
        """Exact bytes of keys + values, computed without allocating."""
        n = ctypes.c_size_t()
        call("tritter_kv_cache_memory", int(layers), int(batch), int(kv_heads), int(max_seq_len), int(head_dim),
             _lookup(_CACHE, dtype, "dtype"), ctypes.byref(n))
        return n.value

    def append(self, k, v, seq=0):
        """Appends one position: k, v of shape [layers, kv_heads, head_dim]."""
        shape = (self.layers, self.kv_heads, self.head_dim)
        ka = carray(k, np.float32, None, "k")
        va = carray(v, np.float32, None, "v")
        if ka.shape != shape or va.shape != shape:
            raise ValueError(f"k and v must have shape {shape}, got {ka.shape} and {va.shape}")
        call("tritter_kv_cache_append", self.raw, int(seq), ptr(ka), ptr(va), ka.size)

    def read(self, layer, pos, seq=0):
        """Keys and values of one position, each [kv_heads, head_dim] float32."""
        k = np.empty((self.kv_heads, self.head_dim), np.float32)
        v = np.empty_like(k)
        call("tritter_kv_cache_read", self.raw, int(layer), int(seq), int(pos), ptr(k), ptr(v), k.size)
        return k, v

    def __len__(self):
        return self.seq_len(0)

    def seq_len(self, seq=0):
        n = ctypes.c_size_t()
        call("tritter_kv_cache_len", self.raw, int(seq), ctypes.byref(n))
        return n.value

    def truncate(self, length, seq=0):
        call("tritter_kv_cache_truncate", self.raw, int(seq), int(length))

    def reset(self, seq=0):
        self.truncate(0, seq)


class TernaryLayer:
    """A packed ternary linear layer y = x · Wᵀ (+ b) with its activation mode:
    'int8' (BitNet's per-token absmax int8 activations, transformers' BitLinear) or 'f32'."""

    def __init__(self, weight, bias=None, activation="int8"):
        if not isinstance(weight, TernaryMatrix):
            raise TypeError("weight must be a TernaryMatrix")
        if activation not in ("int8", "f32"):
            raise ValueError(f"activation must be 'int8' or 'f32', got {activation!r}")
        self.weight = weight
        self.out_features, self.in_features = weight.shape
        self.bias = None if bias is None else carray(bias, np.float32, 1, "bias")
        if self.bias is not None and self.bias.size != self.out_features:
            raise ValueError(f"bias has {self.bias.size} values, the layer has {self.out_features} outputs")
        self.activation = activation

    @classmethod
    def from_float(cls, weight, bias=None, activation="int8", **quant):
        """Quantizes f32 weights [out, in] (TernaryMatrix.from_float's options)."""
        return cls(TernaryMatrix.from_float(weight, **quant), bias, activation)

    def forward(self, x):
        """x [batch, in] (or [in]) -> float32 [batch, out] (or [out])."""
        return self.weight.matmul(x, bias=self.bias, act=self.activation)

    __call__ = forward

    @property
    def memory_bytes(self):
        return self.weight.memory_bytes + (0 if self.bias is None else 4 * self.bias.size)
