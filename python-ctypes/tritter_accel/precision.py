"""Mixed precision: f32 <-> bf16/f16 conversion (round to nearest even),
seeded stochastic rounding to bf16, and a dynamic loss scaler with
torch.amp.GradScaler semantics.

bf16 values are returned as ``uint16`` bit patterns (view them with
``ml_dtypes.bfloat16`` if installed); f16 conversions take and return
``numpy.float16`` arrays (or ``uint16`` bits with ``bits=True``).
"""
import ctypes

import numpy as np

from . import _c_api as C
from ._arrays import carray, ptr
from ._lib import call
from ._managed import Handle, new_handle

__all__ = ["f32_to_bf16", "bf16_to_f32", "f32_to_f16", "f16_to_f32", "f32_to_bf16_stochastic",
           "found_inf", "LossScaler"]


def _narrow(export, x, *extra):
    a = carray(x, np.float32, name="x")
    out = np.empty(a.shape, np.uint16)
    call(export, ptr(a), a.size, *extra, ptr(out), out.size)
    return out


def _widen(export, bits):
    if bits is None or (isinstance(bits, np.ndarray) and bits.dtype == object):
        raise TypeError("expected an array of 16-bit values")
    h = np.ascontiguousarray(bits)
    if h.dtype.itemsize != 2:
        raise TypeError(f"expected 16-bit values, got dtype {h.dtype}")
    h = h.view(np.uint16)
    out = np.empty(h.shape, np.float32)
    call(export, ptr(h), h.size, ptr(out), out.size)
    return out


def f32_to_bf16(x):
    """f32 -> bf16 bit patterns (uint16), round to nearest even."""
    return _narrow("tritter_f32_to_bf16", x)


def bf16_to_f32(bits):
    """bf16 bit patterns (uint16, or any 16-bit dtype such as ml_dtypes.bfloat16) -> f32 (exact)."""
    return _widen("tritter_bf16_to_f32", bits)


def f32_to_f16(x, bits=False):
    """f32 -> IEEE binary16, round to nearest even; float16 array (uint16 bits if `bits`)."""
    out = _narrow("tritter_f32_to_f16", x)
    return out if bits else out.view(np.float16)


def f16_to_f32(h):
    """binary16 (float16 or uint16 bits) -> f32 (exact; NaNs are quieted)."""
    return _widen("tritter_f16_to_f32", h)


def f32_to_bf16_stochastic(x, seed, offset=0):
    """Unbiased stochastic rounding to bf16 bits; a pure function of (seed, offset + flat index)."""
    return _narrow("tritter_f32_to_bf16_stochastic", x, ctypes.c_uint64(seed), ctypes.c_uint64(offset))


def _f32_buffers(arrays, writable):
    arrs = []
    for i, a in enumerate(arrays):
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous:
            raise TypeError(f"buffer {i} must be a C-contiguous float32 numpy array")
        if writable and not a.flags.writeable:
            raise ValueError(f"buffer {i} is read-only")
        arrs.append(a)
    n = len(arrs)
    ptrs = (ctypes.c_void_p * max(n, 1))(*[a.ctypes.data if a.size else None for a in arrs])
    lens = (ctypes.c_size_t * max(n, 1))(*[a.size for a in arrs])
    return arrs, ptrs, lens


def found_inf(arrays):
    """Whether any of the float32 arrays holds an inf or NaN."""
    arrs, ptrs, lens = _f32_buffers(list(arrays), False)
    out = ctypes.c_bool()
    call("tritter_found_inf", ctypes.cast(ptrs, ctypes.c_void_p), ctypes.cast(lens, ctypes.c_void_p),
         len(arrs), ctypes.byref(out))
    return bool(out.value)


class LossScaler(Handle):
    """Dynamic loss scaler (torch.amp.GradScaler rules, plus optional bounds).

    >>> s = LossScaler(init_scale=1024.0, growth_interval=2)
    >>> found = s.unscale_([grad1, grad2])   # in place, returns found_inf
    >>> s.update(found)                      # backoff or growth
    """

    _free = "tritter_loss_scaler_free"

    def __init__(self, init_scale=65536.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
                 min_scale=None, max_scale=None):
        """`min_scale`/`max_scale` default to the library's (2^-24: the scale never gets stuck at 0;
        +inf)."""
        c = C.tritter_loss_scaler_config_t()
        call("tritter_loss_scaler_config_default", ctypes.byref(c))
        c.init_scale, c.growth_factor, c.backoff_factor = init_scale, growth_factor, backoff_factor
        c.growth_interval = int(growth_interval)
        if min_scale is not None:
            c.min_scale = min_scale
        if max_scale is not None:
            c.max_scale = max_scale
        super().__init__(new_handle("tritter_loss_scaler_new", ctypes.byref(c)))

    def _state(self):
        st = C.tritter_loss_scaler_state_t()
        call("tritter_loss_scaler_state", self.raw, ctypes.byref(st))
        return st

    @property
    def scale(self):
        """The current scale (f32)."""
        return self._state().scale

    def get_scale(self):
        return self.scale

    @property
    def growth_tracker(self):
        return self._state().growth_tracker

    def state(self):
        st = self._state()
        return {"scale": st.scale, "growth_tracker": st.growth_tracker, "updates": st.updates,
                "overflows": st.overflows}

    def scale_loss(self, loss):
        """loss * scale (in float32 as torch does)."""
        return np.float32(loss) * np.float32(self.scale)

    def unscale_(self, arrays):
        """Multiplies each float32 array by 1/scale in place; returns whether an input value was inf/NaN."""
        arrs, ptrs, lens = _f32_buffers(list(arrays), True)
        out = ctypes.c_bool()
        call("tritter_loss_scaler_unscale", self.raw, ctypes.cast(ptrs, ctypes.c_void_p),
             ctypes.cast(lens, ctypes.c_void_p), len(arrs), ctypes.byref(out))
        return bool(out.value)

    def update(self, found_inf, new_scale=None):
        """Backoff/growth after a step (or set `new_scale` like GradScaler.update(new_scale)); returns the scale."""
        if new_scale is not None:
            call("tritter_loss_scaler_set_scale", self.raw, ctypes.c_float(new_scale))
            return self.scale
        v = ctypes.c_float()
        call("tritter_loss_scaler_update", self.raw, bool(found_inf), ctypes.byref(v))
        return v.value
