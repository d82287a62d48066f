"""NumPy <-> C helpers: contiguous buffers, pointers and DLPack views."""
import ctypes

import numpy as np

from . import _c_api as C

_DL = {
    np.dtype(np.float32): (C.TRITTER_DL_FLOAT, 32),
    np.dtype(np.float64): (C.TRITTER_DL_FLOAT, 64),
    np.dtype(np.float16): (C.TRITTER_DL_FLOAT, 16),
    np.dtype(np.int8): (C.TRITTER_DL_INT, 8),
    np.dtype(np.uint8): (C.TRITTER_DL_UINT, 8),
    np.dtype(np.int32): (C.TRITTER_DL_INT, 32),
    np.dtype(np.int64): (C.TRITTER_DL_INT, 64),
    np.dtype(np.uint16): (C.TRITTER_DL_BFLOAT, 16),  # bf16 bits travel as uint16
}


def carray(a, dtype, ndim=None, name="array"):
    """`a` as a C-contiguous array of `dtype` (copying only if needed).
    None and object arrays are refused (NumPy would turn None into NaN)."""
    if a is None:
        raise TypeError(f"{name} is None, expected an array")
    if isinstance(a, np.ndarray) and a.dtype == object:
        raise TypeError(f"{name} has dtype object, expected numbers")
    arr = np.ascontiguousarray(a, dtype=dtype)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    return arr


def out_array(out, dtype, shape=None, size=None, name="out"):
    """Checks an array the library writes into, before its pointer crosses:
    a NumPy array of exactly `dtype`, C-contiguous (no negative or gapped
    strides), writeable, and of `shape` (or `size` elements) when given.
    Anything else raises (TypeError for the wrong kind or dtype, ValueError
    otherwise): the library only sees a pointer and a length."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(out).__name__}")
    if out.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (got strides {out.strides})")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if shape is not None and out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if size is not None and out.size != size:
        raise ValueError(f"{name} must have {size} elements, got {out.size}")
    return out


def ptr(arr):
    """Data pointer of a NumPy array (None for an empty array)."""
    return arr.ctypes.data if arr.size else None


class DLView:
    """A borrowed tritter_dl_tensor_t over a NumPy array (any strides). Keeps
    the array and its shape/stride buffers alive as long as the view lives."""

    def __init__(self, arr):
        if arr.dtype not in _DL:
            raise TypeError(f"dtype {arr.dtype} cannot cross as a DLPack tensor")
        item = arr.itemsize
        if any(s % item for s in arr.strides):
            raise ValueError("strides are not a multiple of the item size")
        self.arr = arr
        self._shape = (ctypes.c_int64 * max(arr.ndim, 1))(*arr.shape)
        self._strides = (ctypes.c_int64 * max(arr.ndim, 1))(*[s // item for s in arr.strides])
        code, bits = _DL[arr.dtype]
        t = C.tritter_dl_tensor_t()
        t.data = arr.ctypes.data
        t.device = C.tritter_dl_device_t(C.TRITTER_DL_CPU, 0)
        t.ndim = arr.ndim
        t.dtype = C.tritter_dl_dtype_t(code, bits, 1)
        t.shape = ctypes.addressof(self._shape)
        t.strides = ctypes.addressof(self._strides)
        t.byte_offset = 0
        self.tensor = t

    @property
    def ref(self):
        return ctypes.byref(self.tensor)


def input_view(arr):
    """A DLView of a read-only input: borrowed when the library accepts its
    strides (non-negative multiples of the item size), else of a contiguous copy."""
    if any(st < 0 or st % arr.itemsize for st in arr.strides):
        arr = np.ascontiguousarray(arr)
    return DLView(arr)
