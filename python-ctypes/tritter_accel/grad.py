"""Gradient compression for data-parallel training (NumPy in, NumPy out).

Stable API (see docs/grad.md for the full description):

* ``Compressor(dim, method, ratio=32, *, rows=1, block=256, value_bits=2, seed=0, worker=0,
  error_feedback=True)``: ``.compress(grad) -> np.uint8 payload`` (updates the
  error-feedback residual, advances the step), ``.wire_bytes``, ``.residual()``,
  ``.step``, ``.reset()``. Methods: ``"sketch"``, ``"ternary"``, ``"topk"``,
  ``"projection"``, ``"qtopk"`` (quantized top-k: Rice-coded positions, sign and
  ``value_bits``-bit magnitude codes; the best quality per byte with error feedback).
* ``RegionExchange(dim, world, rank, local, owner=None)``: the two-phase region
  exchange (traffic per rank flat in the number of ranks), one call per phase:
  ``.compress(grad)``, ``.reduce(received)``, ``.decode(gathered)``, ``.residuals()``.
* ``decompress(payload) -> np.float32 [dim]``, ``payload_info(payload) -> dict``,
  ``payload_sum(a, b) -> payload`` (linear methods only).
* ``count_sketch(grad, rows, cols, seed) -> table [rows, cols]`` and
  ``count_sketch_estimate(table, dim, seed)``: raw linear sketches (sum tables
  across workers, e.g. with an allreduce, before decoding).
* ``FetchSGD(dim, ratio=32, *, rows=1, k=None, momentum=0.9, seed=0)``:
  ``.sketch(grad) -> table`` (every worker), ``.step(summed_table) -> dense
  update [dim]`` (every rank, identical), ``.table_shape``, ``.wire_bytes``.
* ``TernaryAccumulator(dim, block=256, seed=0)``: ``.add(grad, alpha=1)``,
  ``.read(mean=False)``, ``.memory_bytes``, ``.count``, ``.reset()``.
* The seeds' API: ``compress_gradients_vsa(gradients, ratio, seed) ->
  (compressed, seed)`` (``ratio`` = fraction kept, e.g. 0.1 for 10x) and
  ``decompress_gradients_vsa(compressed, dim, seed)`` (unbiased).
"""
import ctypes

import numpy as np

from . import _c_api as C
from ._arrays import carray, out_array, ptr
from ._lib import call
from ._managed import Handle, new_handle

__all__ = [
    "Compressor", "RegionExchange", "region_bounds", "FetchSGD", "TernaryAccumulator", "decompress", "payload_info", "payload_sum",
    "count_sketch", "count_sketch_estimate", "sketch_shape", "projection_len", "compress_gradients_vsa",
    "decompress_gradients_vsa", "PAYLOAD_OVERHEAD",
]

_METHODS = {"sketch": C.TRITTER_GRAD_SKETCH, "ternary": C.TRITTER_GRAD_TERNARY, "topk": C.TRITTER_GRAD_TOPK,
            "projection": C.TRITTER_GRAD_PROJECTION, "qtopk": C.TRITTER_GRAD_QTOPK}
_NAMES = {v: k for k, v in _METHODS.items()}
PAYLOAD_OVERHEAD = C.TRITTER_GRAD_PAYLOAD_OVERHEAD


def _vec(x, name):
    """A contiguous 1-D float32 view (flattening any shape; copies only if needed)."""
    return carray(np.asarray(x, dtype=np.float32).reshape(-1), np.float32, 1, name)


def _bytes(p, name="payload"):
    if isinstance(p, (bytes, bytearray, memoryview)):
        p = np.frombuffer(bytes(p), np.uint8)
    return carray(p, np.uint8, None, name).reshape(-1)


def _method_code(method):
    try:
        return _METHODS[method]
    except KeyError:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}") from None


def sketch_shape(dim, ratio, rows=1):
    """(rows, cols) of a count sketch holding dim / ratio floats: cols = max(1, floor(dim / (ratio * rows)))."""
    if not (ratio >= 1):
        raise ValueError(f"ratio must be >= 1, got {ratio}")
    return int(rows), max(1, int(dim // (ratio * rows)))


def _config(method, ratio, *, rows=1, block=256, value_bits=2, seed=0, worker=0, error_feedback=True):
    cfg = C.tritter_grad_config_t()
    call("tritter_grad_config_default", ctypes.byref(cfg))
    cfg.method = _method_code(method)
    cfg.ratio = float(ratio)
    cfg.rows = int(rows)
    cfg.block = int(block)
    cfg.value_bits = int(value_bits)
    cfg.seed = int(seed) & (2**64 - 1)
    cfg.worker = int(worker) & (2**64 - 1)
    cfg.error_feedback = bool(error_feedback)
    return cfg


class Compressor(Handle):
    """A compressor with per-parameter state (error-feedback residual, step counter).

    ratio: compression factor >= 1 (f32 bytes / body bytes) for sketch, topk,
    projection and qtopk; ternary's factor is fixed by `block` (15.06x at 256). Workers that
    share `seed` and step in lockstep produce summable sketch/projection payloads;
    `worker` (the rank) decorrelates ternary rounding between workers.
    """

    _free = "tritter_grad_compressor_free"

    def __init__(self, dim, method="topk", ratio=32.0, *, rows=1, block=256, value_bits=2, seed=0, worker=0,
                 error_feedback=True):
        cfg = _config(method, ratio, rows=rows, block=block, value_bits=value_bits, seed=seed, worker=worker,
                      error_feedback=error_feedback)
        super().__init__(new_handle("tritter_grad_compressor_new", int(dim), ctypes.byref(cfg)))
        self.dim = int(dim)
        self.method = method
        self.error_feedback = bool(error_feedback)
        n = ctypes.c_size_t()
        call("tritter_grad_compressor_wire_bytes", self.raw, ctypes.byref(n))
        self.wire_bytes = n.value

    def compress(self, grad):
        """Compresses `grad` (any shape, `dim` elements) -> payload (np.uint8 [wire_bytes])."""
        g = _vec(grad, "grad")
        out = np.empty(self.wire_bytes, np.uint8)
        w = ctypes.c_size_t()
        call("tritter_grad_compressor_compress", self.raw, ptr(g), g.size, ptr(out), out.size, ctypes.byref(w))
        return out[: w.value]

    def residual(self):
        """Copy of the error-feedback residual (float32 [dim])."""
        out = np.empty(self.dim, np.float32)
        call("tritter_grad_compressor_residual", self.raw, ptr(out), out.size)
        return out

    @property
    def step(self):
        s = ctypes.c_uint64()
        call("tritter_grad_compressor_step", self.raw, ctypes.byref(s))
        return s.value

    def reset(self):
        call("tritter_grad_compressor_reset", self.raw)


def region_bounds(dim, world):
    """The ``world`` contiguous regions ``[(start, end), ...]`` of ``dim``
    coordinates: region j = ``[j L, min(dim, (j+1) L))``, ``L = ceil(dim / world)``."""
    L = -(-int(dim) // int(world))
    return [(min(dim, j * L), min(dim, (j + 1) * L)) for j in range(int(world))]


class RegionExchange(Handle):
    """One rank's state of the two-phase region exchange of one gradient bucket
    (one library call per phase; see ``tritter_grad_regions_new``).

    Per step, on every rank: ``slots = compress(grad)`` ([world, slot] uint8; send
    row j to rank j: all-to-all), ``own = reduce(received)`` (the [world, slot]
    rows received, row i from rank i -> [owner_slot] uint8: all-gather it), then
    ``update = decode(gathered)`` ([world, owner_slot] -> float32 [dim], the
    averaged update, identical on every rank). Traffic per rank is about
    ``(world-1)/world * 4 dim (1/ratio + 1/owner_ratio)`` bytes, flat in world.

    ``local`` / ``owner``: dicts of ``Compressor`` settings (method, ratio,
    value_bits, block, seed, worker, error_feedback) for the regions and for the
    owned region's sum. ``region_seeds``: one seed per region (default: derived
    from ``local['seed']`` and the region index).
    """

    _free = "tritter_grad_regions_free"

    def __init__(self, dim, world, rank, local, owner=None, region_seeds=None):
        owner = dict(local) if owner is None else owner
        lc, oc = _config(**local), _config(**owner)
        self.dim, self.world, self.rank = int(dim), int(world), int(rank)
        if region_seeds is None:
            seeds, ns = None, 0
        else:
            arr = (ctypes.c_uint64 * len(region_seeds))(*[int(x) & (2**64 - 1) for x in region_seeds])
            seeds, ns = arr, len(region_seeds)
        super().__init__(new_handle("tritter_grad_regions_new", self.dim, self.world, self.rank,
                                    ctypes.byref(lc), ctypes.byref(oc), seeds, ns))
        a, b = ctypes.c_size_t(), ctypes.c_size_t()
        call("tritter_grad_regions_slot_bytes", self.raw, ctypes.byref(a), ctypes.byref(b))
        self.slot_bytes, self.owner_slot_bytes = a.value, b.value
        self.regions = region_bounds(self.dim, self.world)

    def compress(self, grad, out=None):
        """Phase 1 -> uint8 [world, slot_bytes] (row j: region j's payload, zero-padded)."""
        g = _vec(grad, "grad")
        if out is None:
            out = np.empty((self.world, self.slot_bytes), np.uint8)
        else:
            out_array(out, np.uint8, size=self.world * self.slot_bytes)
        call("tritter_grad_regions_compress", self.raw, ptr(g), g.size, ptr(out), out.size)
        return out

    def reduce(self, received, out=None):
        """Phase 2, owner: the [world, slot_bytes] rows received -> uint8 [owner_slot_bytes]."""
        r = carray(received, np.uint8, None, "received").reshape(-1)
        if out is None:
            out = np.empty(self.owner_slot_bytes, np.uint8)
        else:
            out_array(out, np.uint8, size=self.owner_slot_bytes)
        call("tritter_grad_regions_reduce", self.raw, ptr(r), r.size, ptr(out), out.size)
        return out

    def decode(self, gathered, out=None):
        """Phase 2, every rank: [world, owner_slot_bytes] -> float32 [dim] averaged update."""
        g = carray(gathered, np.uint8, None, "gathered").reshape(-1)
        if out is None:
            out = np.empty(self.dim, np.float32)
        else:
            out_array(out, np.float32, size=self.dim)
        call("tritter_grad_regions_decode", self.raw, ptr(g), g.size, ptr(out), out.size)
        return out

    def residuals(self):
        """(this rank's regional residuals, its owner residual at the owned region), float32 [dim] each."""
        lo, ow = np.empty(self.dim, np.float32), np.empty(self.dim, np.float32)
        call("tritter_grad_regions_residuals", self.raw, ptr(lo), lo.size, ptr(ow), ow.size)
        return lo, ow


def payload_info(payload):
    """Validates a payload (header, sizes, CRC, body) and returns its header fields as a dict."""
    p = _bytes(payload)
    i = C.tritter_grad_payload_info_t()
    call("tritter_grad_payload_info", ptr(p), p.size, ctypes.byref(i))
    d = {f: getattr(i, f) for f, _ in C.tritter_grad_payload_info_t._fields_}
    d["method"] = _NAMES[d["method"]]
    return d


def _out_for(p):
    """An uninitialised float32 array of the payload's ``dim`` (header bytes 8..16),
    without validating the payload twice: ``tritter_grad_decompress`` validates it
    (and checks the length) as it decodes. A header that is not a payload's, or a
    ``dim`` no array can hold, is left to ``payload_info`` to report."""
    if p.size >= 44 and p[:4].tobytes() == b"TGRC":
        dim = int.from_bytes(p[8:16].tobytes(), "little")
        if dim <= (1 << 40):
            try:
                return np.empty(dim, np.float32)
            except (MemoryError, ValueError):
                pass
    return np.empty(payload_info(p)["dim"], np.float32)


def decompress(payload, out=None):
    """Decodes a payload -> float32 [dim] (validates it first; raises InvalidDataError if corrupt)."""
    p = _bytes(payload)
    if out is None:
        out = _out_for(p)
    else:
        out_array(out, np.float32)
    call("tritter_grad_decompress", ptr(p), p.size, ptr(out), out.size)
    return out


def payload_sum(a, b):
    """Sum of two linear (sketch/projection) payloads with the same dim, seed and geometry."""
    pa, pb = _bytes(a, "a"), _bytes(b, "b")
    out = np.empty(pa.size, np.uint8)
    call("tritter_grad_payload_sum", ptr(pa), pa.size, ptr(pb), pb.size, ptr(out), out.size)
    return out


def count_sketch(grad, rows, cols, seed, out=None):
    """Linear count sketch of `grad` (flattened) -> float32 table [rows, cols]."""
    g = _vec(grad, "grad")
    if out is None:
        out = np.empty((int(rows), int(cols)), np.float32)
    else:  # [rows, cols] or flat
        out_array(out, np.float32, size=int(rows) * int(cols))
    call("tritter_count_sketch", ptr(g), g.size, int(rows), int(cols), int(seed) & (2**64 - 1), ptr(out), out.size)
    return out


def count_sketch_estimate(table, dim, seed):
    """Median-of-rows estimate of every coordinate from a [rows, cols] table -> float32 [dim]."""
    t = carray(table, np.float32, 2, "table")
    out = np.empty(int(dim), np.float32)
    call("tritter_count_sketch_estimate", ptr(t), t.size, t.shape[0], t.shape[1], int(seed) & (2**64 - 1),
         ptr(out), out.size)
    return out


class FetchSGD(Handle):
    """FetchSGD (Rothchild et al. 2020): momentum and error accumulation in sketch space, top-k unsketch.

    Every worker calls ``sketch(grad)``; the tables are summed (allreduce; divide
    by the world size for a mean) and every rank calls ``step(summed)`` with the
    same table, getting the same dense update (k non-zeros) to apply with
    momentum-free SGD (``p -= lr * update``): the momentum lives here.
    Default k = cols // 4 (at least 1).
    """

    _free = "tritter_fetchsgd_free"

    def __init__(self, dim, ratio=32.0, *, rows=3, cols=None, k=None, momentum=0.9, seed=0):
        self.dim = int(dim)
        self.rows, c = sketch_shape(self.dim, ratio, rows)
        self.cols = int(cols) if cols is not None else c
        self.k = int(k) if k is not None else max(1, self.cols // 4)
        self.seed = int(seed) & (2**64 - 1)
        self.momentum = float(momentum)
        super().__init__(new_handle("tritter_fetchsgd_new", self.dim, self.rows, self.cols, self.seed, self.k,
                                    ctypes.c_float(self.momentum)))

    @property
    def table_shape(self):
        return (self.rows, self.cols)

    @property
    def wire_bytes(self):
        """Bytes each worker contributes per step (the raw f32 table)."""
        return 4 * self.rows * self.cols

    def sketch(self, grad, out=None):
        """The worker-side sketch of `grad` (flattened, dim elements) -> float32 [rows, cols]."""
        return count_sketch(grad, self.rows, self.cols, self.seed, out)

    def step(self, summed, out=None):
        """One FetchSGD step on the summed tables -> dense float32 update [dim]."""
        t = carray(summed, np.float32, None, "summed").reshape(-1)
        if out is None:
            out = np.empty(self.dim, np.float32)
        else:
            out_array(out, np.float32, shape=(self.dim,))
        call("tritter_fetchsgd_step", self.raw, ptr(t), t.size, ptr(out), out.size)
        return out

    def reset(self):
        call("tritter_fetchsgd_reset", self.raw)


class TernaryAccumulator(Handle):
    """Accumulates gradients in packed ternary form (2 bits + a float32 scale per block), unbiased."""

    _free = "tritter_ternary_accumulator_free"

    def __init__(self, dim, block=256, seed=0):
        self.dim = int(dim)
        super().__init__(new_handle("tritter_ternary_accumulator_new", self.dim, int(block),
                                    int(seed) & (2**64 - 1)))

    def add(self, grad, alpha=1.0):
        g = _vec(grad, "grad")
        call("tritter_ternary_accumulator_add", self.raw, ptr(g), g.size, ctypes.c_float(alpha))

    def read(self, mean=False):
        out = np.empty(self.dim, np.float32)
        call("tritter_ternary_accumulator_read", self.raw, ptr(out), out.size, bool(mean))
        return out

    def _info(self):
        m, c = ctypes.c_size_t(), ctypes.c_uint64()
        call("tritter_ternary_accumulator_info", self.raw, ctypes.byref(m), ctypes.byref(c))
        return m.value, c.value

    @property
    def memory_bytes(self):
        return self._info()[0]

    @property
    def count(self):
        return self._info()[1]

    def reset(self):
        call("tritter_ternary_accumulator_reset", self.raw)


def projection_len(dim, ratio):
    """Output length of the projection keeping the fraction `ratio` of `dim`."""
    m = ctypes.c_size_t()
    call("tritter_grad_projection_len", int(dim), float(ratio), ctypes.byref(m))
    return m.value


def compress_gradients_vsa(gradients, ratio, seed):
    """The seeds' API: sparse ternary random projection of `gradients` (flattened)
    keeping the fraction `ratio` (0 < ratio <= 1) -> (compressed float32 [m], seed).
    O(n); decompress with `decompress_gradients_vsa(compressed, gradients.size, seed)`."""
    g = _vec(gradients, "gradients")
    seed = int(seed) & (2**64 - 1)
    out = np.empty(projection_len(g.size, ratio), np.float32)
    call("tritter_grad_project", ptr(g), g.size, seed, ptr(out), out.size)
    return out, seed


def decompress_gradients_vsa(compressed, dim, seed):
    """Unbiased decompression (transpose of the projection) -> float32 [dim]."""
    y = _vec(compressed, "compressed")
    out = np.empty(int(dim), np.float32)
    call("tritter_grad_unproject", ptr(y), y.size, int(seed) & (2**64 - 1), ptr(out), out.size)
    return out
