"""Ternary quantization, packing and matmul (NumPy in, NumPy out)."""
import ctypes

import numpy as np

from . import _c_api as C
from ._arrays import DLView, carray, input_view, ptr
from ._lib import call, lib
from ._managed import Handle, new_handle

_GRAN = {"tensor": C.TRITTER_GRANULARITY_PER_TENSOR, "row": C.TRITTER_GRANULARITY_PER_ROW,
         "group": C.TRITTER_GRANULARITY_PER_GROUP}
_METHOD = {"absmean": C.TRITTER_QUANT_ABSMEAN, "absmax": C.TRITTER_QUANT_ABSMAX}
_LAYOUT = {"2bit": C.TRITTER_LAYOUT_2BIT, "base3": C.TRITTER_LAYOUT_BASE3}
_ACT = {"f32": C.TRITTER_ACT_F32, "int8": C.TRITTER_ACT_INT8}


def _lookup(table, value, name):
    try:
        return table[value]
    except KeyError:
        raise ValueError(f"{name} must be one of {sorted(table)}, got {value!r}") from None


def quant_config(method="absmean", granularity="row", group_size=None, threshold=None, eps=1e-5):
    """A tritter_quant_config_t. granularity: 'tensor', 'row' or 'group'
    (with group_size); threshold: None or BitTorch's threshold_factor."""
    c = C.tritter_quant_config_t()
    c.method = _lookup(_METHOD, method, "method")
    c.granularity = _lookup(_GRAN, granularity, "granularity")
    if granularity == "group":
        if group_size is None:
            raise ValueError("granularity='group' needs group_size")
        c.group_size = int(group_size)
    c.use_threshold = threshold is not None
    c.threshold_factor = 0.0 if threshold is None else float(threshold)
    c.eps = float(eps)
    return c


def _num_scales(cfg, rows, cols):
    n = ctypes.c_size_t()
    call("tritter_num_scales", cfg.granularity, cfg.group_size, rows, cols, ctypes.byref(n))
    return n.value


def _scale_shape(cfg, rows, cols):
    n = _num_scales(cfg, rows, cols)
    return (1, 1) if cfg.granularity == C.TRITTER_GRANULARITY_PER_TENSOR else (rows, n // rows if rows else 0)


def quantize(weights, method="absmean", granularity="row", group_size=None, threshold=None, eps=1e-5):
    """Quantizes f32 weights [rows, cols] -> (ternary int8 [rows, cols], scales f32 [scale_rows, groups])."""
    w = carray(weights, np.float32, 2, "weights")
    cfg = quant_config(method, granularity, group_size, threshold, eps)
    rows, cols = w.shape
    t = np.empty((rows, cols), np.int8)
    s = np.empty(_scale_shape(cfg, rows, cols), np.float32)
    call("tritter_quantize_f32", ptr(w), rows, cols, ctypes.byref(cfg), ptr(t), t.size, ptr(s), s.size)
    return t, s


def quantize_activations_i8(x):
    """Int8 per-token absmax quantization of x [batch, dim] -> (q int8, s f32 [batch]); x ≈ q / s[:, None]."""
    a = carray(x, np.float32, 2, "x")
    q = np.empty(a.shape, np.int8)
    s = np.empty(a.shape[0], np.float32)
    call("tritter_quantize_activations_i8", ptr(a), a.shape[0], a.shape[1], ptr(q), q.size, ptr(s), s.size)
    return q, s


def packed_size(rows, cols, layout="2bit"):
    n = ctypes.c_size_t()
    call("tritter_packed_size", rows, cols, _lookup(_LAYOUT, layout, "layout"), ctypes.byref(n))
    return n.value


def pack(ternary, layout="2bit"):
    """Packs trits [rows, cols] (values in {-1, 0, 1}) -> uint8 [rows, bytes_per_row]."""
    t = np.asarray(ternary)
    if t.ndim != 2:
        raise ValueError(f"ternary must be 2-D, got shape {t.shape}")
    if t.dtype != np.int8:
        if t.size and not np.all(np.isin(t, (-1, 0, 1))):
            raise ValueError("ternary values must be in {-1, 0, 1}")
        t = t.astype(np.int8)
    t = np.ascontiguousarray(t)
    rows, cols = t.shape
    per = 4 if layout == "2bit" else 5
    out = np.empty((rows, -(-cols // per)), np.uint8)
    call("tritter_pack", ptr(t), rows, cols, _lookup(_LAYOUT, layout, "layout"), ptr(out), out.size)
    return out


def unpack(packed, shape, layout="2bit"):
    """Unpacks (and validates) packed bytes -> int8 trits of `shape` = (rows, cols)."""
    p = carray(packed, np.uint8, None, "packed")
    rows, cols = (int(v) for v in shape)
    out = np.empty((rows, cols), np.int8)
    call("tritter_unpack", ptr(p), p.size, rows, cols, _lookup(_LAYOUT, layout, "layout"), ptr(out), out.size)
    return out


class TernaryMatrix(Handle):
    """Packed ternary weights [out_features, in_features] with scales.

    Immutable; one instance may be used from several threads. Create with
    `TernaryMatrix.from_float`, `.from_ternary` or `.from_packed`.
    """

    _free = "tritter_ternary_matrix_free"

    @classmethod
    def from_float(cls, weights, method="absmean", granularity="row", group_size=None, threshold=None, eps=1e-5):
        """Quantizes and packs f32 weights [rows, cols] (any strides: passed as a DLPack view)."""
        w = np.asarray(weights)
        if w.dtype != np.float32:
            w = w.astype(np.float32)
        if w.ndim != 2:
            raise ValueError(f"weights must be 2-D, got shape {w.shape}")
        cfg = quant_config(method, granularity, group_size, threshold, eps)
        view = input_view(w)
        return cls(new_handle("tritter_ternary_matrix_from_dlpack", view.ref, ctypes.byref(cfg)))

    @classmethod
    def from_ternary(cls, ternary, scales, granularity="row", group_size=None):
        t = np.asarray(ternary)
        if t.dtype != np.int8:
            if t.size and not np.all(np.isin(t, (-1, 0, 1))):
                raise ValueError("ternary values must be in {-1, 0, 1}")
            t = t.astype(np.int8)
        t = carray(t, np.int8, 2, "ternary")
        s = carray(scales, np.float32, None, "scales").ravel()
        g = _lookup(_GRAN, granularity, "granularity")
        return cls(new_handle("tritter_ternary_matrix_from_ternary", ptr(t), t.shape[0], t.shape[1], ptr(s), s.size,
                              g, int(group_size or 0)))

    @classmethod
    def from_packed(cls, packed, shape, scales, layout="2bit", granularity="row", group_size=None):
        p = carray(packed, np.uint8, None, "packed")
        s = carray(scales, np.float32, None, "scales").ravel()
        rows, cols = (int(v) for v in shape)
        return cls(new_handle("tritter_ternary_matrix_from_packed", ptr(p), p.size, rows, cols,
                              _lookup(_LAYOUT, layout, "layout"), ptr(s), s.size,
                              _lookup(_GRAN, granularity, "granularity"), int(group_size or 0)))

    def with_compute_format(self, compute_format):
        """A new matrix with the same weights whose kernels read the '2bit' (default,
        fastest) or 'base3' (1.6 bits a weight) layout."""
        code = _lookup({"2bit": C.TRITTER_COMPUTE_2BIT, "base3": C.TRITTER_COMPUTE_BASE3}, compute_format,
                       "compute_format")
        return TernaryMatrix(new_handle("tritter_ternary_matrix_with_compute_format", self.raw, code))

    def info(self):
        i = C.tritter_matrix_info_t()
        call("tritter_ternary_matrix_info", self.raw, ctypes.byref(i))
        return {f: getattr(i, f) for f, _ in C.tritter_matrix_info_t._fields_}

    @property
    def shape(self):
        i = self.info()
        return (i["rows"], i["cols"])

    @property
    def memory_bytes(self):
        return self.info()["memory_bytes"]

    def scales(self):
        i = self.info()
        s = np.empty(i["num_scales"], np.float32)
        call("tritter_ternary_matrix_scales", self.raw, ptr(s), s.size)
        if i["granularity"] == C.TRITTER_GRANULARITY_PER_TENSOR:
            return s.reshape(1, 1)
        return s.reshape(i["rows"], i["groups_per_row"])

    def packed(self, layout="2bit"):
        i = self.info()
        per = 4 if layout == "2bit" else 5
        out = np.empty((i["rows"], -(-i["cols"] // per)), np.uint8)
        call("tritter_ternary_matrix_export_packed", self.raw, _lookup(_LAYOUT, layout, "layout"), ptr(out), out.size)
        return out

    def ternary(self):
        out = np.empty(self.shape, np.int8)
        call("tritter_ternary_matrix_to_ternary", self.raw, ptr(out), out.size)
        return out

    def dequantize(self):
        out = np.empty(self.shape, np.float32)
        call("tritter_ternary_matrix_to_f32", self.raw, ptr(out), out.size)
        return out

    def matmul(self, x, bias=None, act="f32", out=None):
        """y = x · Wᵀ (+ bias) for x [batch, in_features] (or [in_features]); any strides."""
        xa = np.asarray(x, dtype=np.float32)
        squeeze = xa.ndim == 1
        if squeeze:
            xa = xa[None, :]
        rows = self.shape[0]
        if out is None:
            out = np.empty((xa.shape[0], rows), np.float32)
        xv, yv = input_view(xa), DLView(out)
        bv = None if bias is None else input_view(np.asarray(bias, dtype=np.float32))
        call("tritter_ternary_matrix_matmul_dlpack", self.raw, xv.ref, None if bv is None else bv.ref,
             _lookup(_ACT, act, "act"), yv.ref)
        return out[0] if squeeze else out

    __matmul__ = None  # avoid suggesting W @ x semantics; use matmul()


# ---- the seed's API (same names and argument order) ----

def quantize_weights_absmean(weights):
    """AbsMean per-row quantization: returns (ternary int8 [rows, cols], scales f32 [rows])."""
    t, s = quantize(weights, "absmean", "row")
    return t, s.reshape(-1)


def pack_ternary_weights(ternary, scales):
    """Packs ternary weights into the 2-bit layout: returns (packed uint8 [rows, ceil(cols/4)], scales)."""
    return pack(ternary, "2bit"), np.ascontiguousarray(scales, dtype=np.float32)


def unpack_ternary_weights(packed, scales, shape):
    """Unpacks 2-bit weights to dequantized f32 [rows, cols] (per-row scales)."""
    t = unpack(packed, shape, "2bit")
    s = np.asarray(scales, dtype=np.float32).reshape(-1)
    if s.size == 1:
        return t.astype(np.float32) * s[0]
    if s.size != t.shape[0]:
        raise ValueError(f"scales has {s.size} elements, expected 1 or rows = {t.shape[0]}")
    return t.astype(np.float32) * s[:, None]


def ternary_matmul(input, packed, scales, shape):  # noqa: A002 (seed's argument name)
    """input [batch, in] · Wᵀ for packed 2-bit W of `shape` = (out, in) with per-row (or one) scales.
    Builds a TernaryMatrix per call; keep a TernaryMatrix for repeated products."""
    s = np.asarray(scales, dtype=np.float32).reshape(-1)
    gran = "tensor" if s.size == 1 and shape[0] != 1 else "row"
    with TernaryMatrix.from_packed(packed, shape, s, "2bit", gran) as m:
        return m.matmul(input)


def version():
    return lib().tritter_version().decode()


def cuda_available():
    return bool(lib().tritter_cuda_available())


def set_num_threads(n):
    """Worker threads for the library's kernels (0 = default). Results never depend on it."""
    call("tritter_set_num_threads", int(n))


def get_num_threads():
    n = ctypes.c_size_t()
    call("tritter_get_num_threads", ctypes.byref(n))
    return n.value
