"""VSA hypervectors (NumPy in, NumPy out): one algebra on every path.

A hypervector crosses either *packed* (a ``uint64`` array of
``hv_packed_words(dim) = 2 * ceil(dim / 64)`` words: the +1 bit plane, then the
-1 bit plane) or *dense* (an integer array of ``dim`` trits in {-1, 0, 1}).
The dtype decides: ``uint64`` is packed, any other integer dtype is dense.
Operations return the form of their first vector argument.

Definitions (identical to the Rust and C APIs, see docs/vsa.md):
  bind 'map'      c = a * b (element-wise); self-inverse on bipolar keys
  bind 'modular'  c = (a + b) mod 3 in {-1, 0, 1}; unbind c - b inverts exactly
  bundle          sign(sum_k w_k x_k); ties -> 0 ('zero') or -> random(dim, tie_seed) ('random')
  permute k       out[(i + k) % dim] = a[i]  (np.roll(a, k))
  similarity      'dot', 'cosine' (0 for an all-zero vector), 'hamming' (distance)
"""
import ctypes

import numpy as np

from . import _c_api as C
from ._arrays import ptr
from ._lib import call
from ._managed import Handle, new_handle

__all__ = ["VsaOps", "ItemMemory", "BundleAccumulator", "hv_packed_words", "hv_random", "hv_pack",
           "hv_unpack", "hv_bind", "hv_unbind", "hv_bundle", "hv_permute", "hv_similarity",
           "hv_similarity_many"]

_ALGEBRA = {"map": C.TRITTER_VSA_ALGEBRA_MAP, "modular": C.TRITTER_VSA_ALGEBRA_MODULAR}
_METRIC = {"dot": C.TRITTER_VSA_METRIC_DOT, "cosine": C.TRITTER_VSA_METRIC_COSINE,
           "hamming": C.TRITTER_VSA_METRIC_HAMMING}
_TIE = {"zero": C.TRITTER_VSA_TIE_ZERO, "random": C.TRITTER_VSA_TIE_RANDOM}


def _lookup(table, value, name):
    try:
        return table[value]
    except KeyError:
        raise ValueError(f"{name} must be one of {sorted(table)}, got {value!r}") from None


def hv_packed_words(dim):
    """Words of one packed vector of `dim` trits: 2 * ceil(dim / 64)."""
    d = int(dim)
    if 0 <= d < 2**48:  # the library's formula, without a ctypes round trip (~1 us)
        return 2 * ((d + 63) // 64)
    n = ctypes.c_size_t()
    call("tritter_hv_packed_words", d, ctypes.byref(n))
    return n.value


def hv_pack(trits):
    """Packs trits [dim] -> uint64 [words], or [n, dim] -> [n, words]. Values must be in {-1, 0, 1}."""
    t = np.asarray(trits)
    if t.dtype != np.int8:
        if t.size and not np.all(np.isin(t, (-1, 0, 1))):
            raise ValueError("trits must be in {-1, 0, 1}")
        t = t.astype(np.int8)
    t = np.ascontiguousarray(t)
    if t.ndim == 2:
        w = hv_packed_words(t.shape[1])
        out = np.empty((t.shape[0], w), np.uint64)
        for i in range(t.shape[0]):
            call("tritter_hv_pack", ptr(t[i]), t.shape[1], ptr(out[i]), w)
        return out
    if t.ndim != 1:
        raise ValueError(f"trits must be 1-D or 2-D, got shape {t.shape}")
    out = np.empty(hv_packed_words(t.size), np.uint64)
    call("tritter_hv_pack", ptr(t), t.size, ptr(out), out.size)
    return out


def _words(a, dim, name):
    w = np.ascontiguousarray(a, dtype=np.uint64)
    if w.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {w.shape}")
    return w


def hv_unpack(words, dim):
    """Unpacks (and validates) packed words [words] -> int8 [dim], or [n, words] -> [n, dim]."""
    w = np.ascontiguousarray(words, dtype=np.uint64)
    if w.ndim == 2:
        return np.stack([hv_unpack(r, dim) for r in w]) if len(w) else np.empty((0, dim), np.int8)
    w = _words(w, dim, "words")
    out = np.empty(int(dim), np.int8)
    call("tritter_hv_unpack", ptr(w), w.size, int(dim), ptr(out), out.size)
    return out


def hv_random(dim, seed, density=1.0, packed=True):
    """random(dim, seed, density): a pure function of (seed, index); density 1 = bipolar.
    Returns packed uint64 words (packed=True) or int8 trits."""
    if packed:
        out = np.empty(hv_packed_words(dim), np.uint64)
        call("tritter_hv_random", int(dim), int(seed) & (2**64 - 1), float(density), ptr(out), out.size)
    else:
        out = np.empty(int(dim), np.int8)
        call("tritter_hv_random_dense", int(dim), int(seed) & (2**64 - 1), float(density), ptr(out), out.size)
    return out


def _is_packed(a):
    return np.asarray(a).dtype == np.uint64


def _as_packed(a, dim, name):
    """(packed words, was_packed) for a packed or dense vector of `dim` trits."""
    arr = np.asarray(a)
    if arr.dtype == np.uint64:
        return _words(arr, dim, name), True
    if arr.ndim != 1 or arr.size != dim:
        raise ValueError(f"{name}: a dense vector must have shape ({dim},), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name}: dense trits need an integer dtype, got {arr.dtype}")
    return hv_pack(arr), False


def _rows(vectors, dim, name):
    """A contiguous uint64 [n, words] matrix from a 2-D array or a sequence of vectors."""
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        if vectors.dtype == np.uint64:
            return np.ascontiguousarray(vectors)
        if vectors.shape[1] != dim:
            raise ValueError(f"{name}: dense rows must have {dim} trits, got shape {vectors.shape}")
        return hv_pack(vectors)
    vs = [_as_packed(v, dim, name)[0] for v in vectors]
    w = hv_packed_words(dim)
    return np.stack(vs) if vs else np.empty((0, w), np.uint64)


def _ret(words, dim, packed):
    return words if packed else hv_unpack(words, dim)


def hv_bind(a, b, dim, algebra="map"):
    """bind(a, b): 'map' (element-wise product) or 'modular' ((a + b) mod 3)."""
    pa, keep = _as_packed(a, dim, "a")
    pb, _ = _as_packed(b, dim, "b")
    out = np.empty(hv_packed_words(dim), np.uint64)
    call("tritter_hv_bind", ptr(pa), ptr(pb), pa.size, int(dim), _lookup(_ALGEBRA, algebra, "algebra"),
         ptr(out), out.size)
    return _ret(out, dim, keep)


def hv_unbind(c, b, dim, algebra="map"):
    """unbind(c, b): 'map' c * b (= bind); 'modular' (c - b) mod 3 (exact inverse of bind)."""
    pc, keep = _as_packed(c, dim, "c")
    pb, _ = _as_packed(b, dim, "b")
    out = np.empty(hv_packed_words(dim), np.uint64)
    call("tritter_hv_unbind", ptr(pc), ptr(pb), pc.size, int(dim), _lookup(_ALGEBRA, algebra, "algebra"),
         ptr(out), out.size)
    return _ret(out, dim, keep)


def hv_bundle(vectors, dim, weights=None, tie="zero", tie_seed=0, packed=None):
    """sign(sum_k w_k x_k) over vectors ([n, words] uint64, [n, dim] trits, or a sequence);
    weights: None (all 1) or n int32; tie: 'zero' or 'random' (ties -> random(dim, tie_seed)).
    Returns packed words if the input was packed (or packed=True), else trits."""
    if packed is None:
        packed = (isinstance(vectors, np.ndarray) and vectors.dtype == np.uint64) or (
            not isinstance(vectors, np.ndarray) and len(vectors) > 0 and _is_packed(vectors[0]))
    rows = _rows(vectors, dim, "vectors")
    n = rows.shape[0]
    w = None
    if weights is not None:
        w = np.ascontiguousarray(weights, dtype=np.int32)
        if w.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), got {w.shape}")
    out = np.empty(hv_packed_words(dim), np.uint64)
    call("tritter_hv_bundle", ptr(rows), rows.size, n, int(dim), None if w is None else ptr(w),
         0 if w is None else w.size, _lookup(_TIE, tie, "tie"), int(tie_seed) & (2**64 - 1), ptr(out), out.size)
    return _ret(out, dim, packed)


def hv_permute(a, dim, k):
    """Cyclic shift: out[(i + k) % dim] = a[i] (np.roll(a, k)); permute by -k inverts."""
    pa, keep = _as_packed(a, dim, "a")
    out = np.empty(hv_packed_words(dim), np.uint64)
    call("tritter_hv_permute", ptr(pa), pa.size, int(dim), int(k), ptr(out), out.size)
    return _ret(out, dim, keep)


def hv_similarity(a, b, dim, metric="cosine"):
    """'dot', 'cosine' (0 if either is all zero) or 'hamming' (number of differing trits)."""
    pa, _ = _as_packed(a, dim, "a")
    pb, _ = _as_packed(b, dim, "b")
    s = ctypes.c_double()
    call("tritter_hv_similarity", ptr(pa), ptr(pb), pa.size, int(dim), _lookup(_METRIC, metric, "metric"),
         ctypes.byref(s))
    return s.value


def hv_similarity_many(query, rows, dim, metric="cosine"):
    """One-vs-many: float64 [n] scores of `query` against rows ([n, words] or [n, dim])."""
    q, _ = _as_packed(query, dim, "query")
    r = _rows(rows, dim, "rows")
    out = np.empty(r.shape[0], np.float64)
    call("tritter_hv_similarity_many", ptr(q), q.size, ptr(r), r.size, r.shape[0], int(dim),
         _lookup(_METRIC, metric, "metric"), ptr(out), out.size)
    return out


class VsaOps:
    """The seed's VsaOps: the operations above at a fixed dimension and algebra.

    >>> ops = VsaOps(10_000)
    >>> a, b = ops.random(42), ops.random(43)
    >>> bool(np.array_equal(ops.unbind(ops.bind(a, b), b), a))
    True
    """

    def __init__(self, dim=10_000, algebra="map", density=1.0, tie="zero", tie_seed=0, metric="cosine"):
        if int(dim) <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        self.dim = int(dim)
        _lookup(_ALGEBRA, algebra, "algebra")
        _lookup(_TIE, tie, "tie")
        _lookup(_METRIC, metric, "metric")
        self.algebra, self.density, self.tie, self.tie_seed, self.metric = algebra, float(density), tie, tie_seed, metric
        self.words = hv_packed_words(self.dim)

    def random(self, seed, packed=True):
        return hv_random(self.dim, seed, self.density, packed)

    def pack(self, trits):
        return hv_pack(trits)

    def unpack(self, words):
        return hv_unpack(words, self.dim)

    def bind(self, a, b):
        return hv_bind(a, b, self.dim, self.algebra)

    def unbind(self, c, b):
        return hv_unbind(c, b, self.dim, self.algebra)

    def bundle(self, vectors, weights=None):
        return hv_bundle(vectors, self.dim, weights, self.tie, self.tie_seed)

    def permute(self, a, k=1):
        return hv_permute(a, self.dim, k)

    def inverse_permute(self, a, k=1):
        return hv_permute(a, self.dim, -int(k))

    def similarity(self, a, b, metric=None):
        return hv_similarity(a, b, self.dim, metric or self.metric)

    def similarity_many(self, query, rows, metric=None):
        return hv_similarity_many(query, rows, self.dim, metric or self.metric)

    def item_memory(self):
        return ItemMemory(self.dim)


class BundleAccumulator(Handle):
    """Streaming bundle: add vectors one at a time (int64 counters per trit);
    `finish()` equals hv_bundle of everything added. Not thread-safe."""

    _free = "tritter_bundle_accumulator_free"

    def __init__(self, dim):
        self.dim = int(dim)
        super().__init__(new_handle("tritter_bundle_accumulator_new", self.dim))

    def add(self, vector, weight=1):
        p, _ = _as_packed(vector, self.dim, "vector")
        call("tritter_bundle_accumulator_add", self.raw, ptr(p), p.size, int(weight))

    def finish(self, tie="zero", tie_seed=0, packed=True):
        out = np.empty(hv_packed_words(self.dim), np.uint64)
        call("tritter_bundle_accumulator_finish", self.raw, _lookup(_TIE, tie, "tie"),
             int(tie_seed) & (2**64 - 1), ptr(out), out.size)
        return _ret(out, self.dim, packed)

    def reset(self):
        call("tritter_bundle_accumulator_reset", self.raw)

    def __len__(self):
        n = ctypes.c_uint64()
        call("tritter_bundle_accumulator_len", self.raw, ctypes.byref(n))
        return n.value


class ItemMemory(Handle):
    """Cleanup memory: labelled hypervectors and top-k queries (ties -> lower index).
    Queries may run from several threads; adds need exclusive use."""

    _free = "tritter_item_memory_free"

    def __init__(self, dim):
        self.dim = int(dim)
        super().__init__(new_handle("tritter_item_memory_new", self.dim))

    def add(self, vector, label=None):
        """Stores one vector (packed or dense); label defaults to its index. Returns the index."""
        p, _ = _as_packed(vector, self.dim, "vector")
        idx = ctypes.c_size_t()
        lab = len(self) if label is None else int(label)
        call("tritter_item_memory_add", self.raw, ptr(p), p.size, lab, ctypes.byref(idx))
        return idx.value

    def add_many(self, vectors, labels=None):
        rows = _rows(vectors, self.dim, "vectors")
        if labels is not None and len(labels) != rows.shape[0]:
            raise ValueError(f"{len(labels)} labels for {rows.shape[0]} vectors")
        for i in range(rows.shape[0]):
            self.add(rows[i], None if labels is None else labels[i])

    def __len__(self):
        n = ctypes.c_size_t()
        call("tritter_item_memory_len", self.raw, ctypes.byref(n))
        return n.value

    def get(self, index, packed=True):
        """(vector, label) of row `index`."""
        out = np.empty(hv_packed_words(self.dim), np.uint64)
        lab = ctypes.c_uint64()
        call("tritter_item_memory_get", self.raw, int(index), ptr(out), out.size, ctypes.byref(lab))
        return _ret(out, self.dim, packed), lab.value

    def query(self, vector, k=10, metric="cosine"):
        """Top-k nearest: (labels uint64 [found], scores float64 [found]), nearest first."""
        q, _ = _as_packed(vector, self.dim, "query")
        k = int(k)
        labels = np.empty(max(k, 0), np.uint64)
        scores = np.empty(max(k, 0), np.float64)
        found = ctypes.c_size_t()
        call("tritter_item_memory_query_topk", self.raw, ptr(q), q.size, k, _lookup(_METRIC, metric, "metric"),
             ptr(labels), ptr(scores), k, ctypes.byref(found))
        return labels[:found.value], scores[:found.value]

    def similarities(self, vector, metric="cosine"):
        """float64 [len] scores of `vector` against every stored row (insertion order)."""
        q, _ = _as_packed(vector, self.dim, "query")
        out = np.empty(len(self), np.float64)
        call("tritter_item_memory_similarities", self.raw, ptr(q), q.size, _lookup(_METRIC, metric, "metric"),
             ptr(out), out.size)
        return out
