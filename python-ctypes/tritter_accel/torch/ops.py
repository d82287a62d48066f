"""`torch.library` custom ops over the library's training kernels.

Ops (namespace `tritter`), each with a fake (meta) kernel so `torch.compile`
and `torch.export` trace them, and autograd registered on the product:

* ``tritter::quantize_weight(weight, method, granularity, group_size,
  threshold, eps) -> (packed, scales)``: ternary quantization straight into
  the canonical 2-bit layout (uint8 ``[rows, ceil(cols/4)]``) and float32
  scales ``[scale_rows, groups_per_row]``. ``threshold < 0`` means none.
* ``tritter::ternary_linear(x, weight, packed, scales, bias, granularity,
  group_size, act_mode) -> y``: ``y = x_eff · (s·t)ᵀ + bias`` where ``x_eff``
  is ``x`` (``act_mode`` 0) or its per-token int8 fake quantization (1,
  BitNet W1.58A8). ``weight`` (the latent full-precision weight the packed
  bytes were made from) is not read: it is the input the straight-through
  gradient flows to. Backward: ``grad_x = grad_y · (s·t)`` (the
  ``ternary_linear_grad_input`` op), ``grad_weight = grad_yᵀ · x_eff`` (STE),
  ``grad_bias = Σ grad_y``.
* ``tritter::ternary_linear_grad_input(grad_out, packed, scales,
  in_features, granularity, group_size) -> grad_x``.

Tensors cross to the library as borrowed DLPack descriptors built from
``data_ptr()``, shape and strides: no copies for float32/bfloat16 CPU tensors
with non-negative strides. CUDA tensors raise ``CudaUnavailableError`` (the
library has no CUDA kernels yet); use ``backend="python"`` for them.
"""
import ctypes
from typing import Optional

import torch

from .. import _c_api as C
from .._lib import CudaUnavailableError, call

__all__ = ["quantize_weight", "ternary_linear", "ternary_linear_grad_input", "fake_quant_activations",
           "unpack_2bit", "dl_tensor", "METHODS", "GRANULARITIES", "ACT_F32", "ACT_INT8"]

METHODS = {"absmean": C.TRITTER_QUANT_ABSMEAN, "absmax": C.TRITTER_QUANT_ABSMAX}
GRANULARITIES = {"tensor": C.TRITTER_GRANULARITY_PER_TENSOR, "row": C.TRITTER_GRANULARITY_PER_ROW,
                 "group": C.TRITTER_GRANULARITY_PER_GROUP}
ACT_F32 = C.TRITTER_ACT_F32
ACT_INT8 = C.TRITTER_ACT_INT8

_DTYPES = {
    torch.float32: (C.TRITTER_DL_FLOAT, 32),
    torch.float64: (C.TRITTER_DL_FLOAT, 64),
    torch.float16: (C.TRITTER_DL_FLOAT, 16),
    torch.bfloat16: (C.TRITTER_DL_BFLOAT, 16),
    torch.uint8: (C.TRITTER_DL_UINT, 8),
    torch.int8: (C.TRITTER_DL_INT, 8),
    torch.int32: (C.TRITTER_DL_INT, 32),
    torch.int64: (C.TRITTER_DL_INT, 64),
}


class _DL:
    """A borrowed tritter_dl_tensor_t over a torch tensor; keeps the tensor and
    its shape/stride arrays alive as long as it lives."""

    __slots__ = ("t", "shape", "strides", "tensor")

    def __init__(self, t):
        if t.dtype not in _DTYPES:
            raise TypeError(f"dtype {t.dtype} cannot cross to tritter_accel")
        n = t.dim()
        self.t = t
        self.shape = (ctypes.c_int64 * max(n, 1))(*t.shape)
        self.strides = (ctypes.c_int64 * max(n, 1))(*t.stride())
        code, bits = _DTYPES[t.dtype]
        d = C.tritter_dl_tensor_t()
        d.data = t.data_ptr() if t.numel() else None
        if t.device.type == "cuda":
            d.device = C.tritter_dl_device_t(C.TRITTER_DL_CUDA, t.device.index or 0)
        else:
            d.device = C.tritter_dl_device_t(C.TRITTER_DL_CPU, 0)
        d.ndim = n
        d.dtype = C.tritter_dl_dtype_t(code, bits, 1)
        d.shape = ctypes.addressof(self.shape)
        d.strides = ctypes.addressof(self.strides)
        d.byte_offset = 0
        self.tensor = d

    @property
    def ref(self):
        return ctypes.byref(self.tensor)


def dl_tensor(t):
    """A borrowed DLPack descriptor of `t` (no copy); pass `.ref` to an export."""
    return _DL(t)


def _require_cpu(*tensors):
    for t in tensors:
        if t is not None and t.device.type != "cpu":
            raise CudaUnavailableError(
                C.TRITTER_ERR_CUDA_UNAVAILABLE,
                f"CUDA unavailable: tritter_accel has no {t.device.type} kernels yet (tensor on {t.device}); "
                "use backend='python' for tensors on this device")


def _compute_dtype(t):
    """The dtype the kernels read for activations: float32 or bfloat16 as given,
    others through float32."""
    return t.dtype if t.dtype in (torch.float32, torch.bfloat16) else torch.float32


def _scale_shape(rows, cols, granularity, group_size):
    if granularity == C.TRITTER_GRANULARITY_PER_TENSOR:
        return (1, 1)
    if granularity == C.TRITTER_GRANULARITY_PER_ROW:
        return (rows, 1)
    if group_size <= 0:
        raise ValueError("per-group granularity needs group_size > 0")
    return (rows, max(1, -(-cols // group_size)))


def _as_2d(x, k):
    return x.reshape(-1, k) if x.dim() != 2 else x


# ---------------------------------------------------------------- quantize_weight

@torch.library.custom_op("tritter::quantize_weight", mutates_args=())
def quantize_weight(weight: torch.Tensor, method: int, granularity: int, group_size: int, threshold: float,
                    eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    _require_cpu(weight)
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D [out_features, in_features], got {tuple(weight.shape)}")
    w = weight if weight.dtype == torch.float32 else weight.float()
    rows, cols = w.shape
    packed = torch.empty((rows, (cols + 3) // 4), dtype=torch.uint8)
    scales = torch.empty(_scale_shape(rows, cols, granularity, group_size), dtype=torch.float32)
    cfg = C.tritter_quant_config_t()
    cfg.method = method
    cfg.granularity = granularity
    cfg.group_size = group_size if granularity == C.TRITTER_GRANULARITY_PER_GROUP else 0
    cfg.use_threshold = threshold >= 0
    cfg.threshold_factor = max(threshold, 0.0)
    cfg.eps = eps
    wv, pv, sv = _DL(w), _DL(packed), _DL(scales)
    call("tritter_quantize_pack_2bit_dlpack", wv.ref, ctypes.byref(cfg), pv.ref, sv.ref)
    return packed, scales


@quantize_weight.register_fake
def _(weight, method, granularity, group_size, threshold, eps):
    rows, cols = weight.shape
    packed = weight.new_empty((rows, (cols + 3) // 4), dtype=torch.uint8)
    scales = weight.new_empty(_scale_shape(rows, cols, granularity, group_size), dtype=torch.float32)
    return packed, scales


# ---------------------------------------------------------------- ternary_linear

@torch.library.custom_op("tritter::ternary_linear", mutates_args=())
def ternary_linear(x: torch.Tensor, weight: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor,
                   bias: Optional[torch.Tensor], granularity: int, group_size: int, act_mode: int) -> torch.Tensor:
    _require_cpu(x, packed, scales, bias)
    rows, cols = weight.shape
    x2 = _as_2d(x, cols)
    cd = _compute_dtype(x)
    if x2.dtype != cd:
        x2 = x2.to(cd)
    y = torch.empty((x2.shape[0], rows), dtype=cd)
    b = None
    if bias is not None:
        b = bias if bias.dtype == torch.float32 else bias.float()
    xv, pv, sv, yv = _DL(x2), _DL(packed), _DL(scales), _DL(y)
    bv = None if b is None else _DL(b)
    call("tritter_ternary_linear_dlpack", pv.ref, cols, sv.ref, granularity, group_size, xv.ref,
         None if bv is None else bv.ref, act_mode, yv.ref)
    y = y.reshape(*x.shape[:-1], rows)
    return y if y.dtype == x.dtype else y.to(x.dtype)


@ternary_linear.register_fake
def _(x, weight, packed, scales, bias, granularity, group_size, act_mode):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


# ---------------------------------------------------------------- ternary_linear_grad_input

@torch.library.custom_op("tritter::ternary_linear_grad_input", mutates_args=())
def ternary_linear_grad_input(grad_out: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, in_features: int,
                              granularity: int, group_size: int) -> torch.Tensor:
    _require_cpu(grad_out, packed, scales)
    rows = packed.shape[0]
    g2 = _as_2d(grad_out, rows)
    cd = _compute_dtype(grad_out)
    if g2.dtype != cd:
        g2 = g2.to(cd)
    dx = torch.empty((g2.shape[0], in_features), dtype=cd)
    gv, pv, sv, dv = _DL(g2), _DL(packed), _DL(scales), _DL(dx)
    call("tritter_ternary_linear_grad_input_dlpack", pv.ref, in_features, sv.ref, granularity, group_size,
         gv.ref, dv.ref)
    dx = dx.reshape(*grad_out.shape[:-1], in_features)
    return dx if dx.dtype == grad_out.dtype else dx.to(grad_out.dtype)


@ternary_linear_grad_input.register_fake
def _(grad_out, packed, scales, in_features, granularity, group_size):
    return grad_out.new_empty((*grad_out.shape[:-1], in_features))


# ---------------------------------------------------------------- autograd

def fake_quant_activations(x):
    """BitNet's per-token int8 fake quantization, computed in float32 exactly as
    the library does: ``a = 127 / max(max|x|, 1e-5)``, ``q = clamp(round(x·a),
    -128, 127)``, returns ``q / a`` (float32)."""
    xf = x.float()
    a = 127.0 / xf.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    return (xf * a).round().clamp(-128, 127) / a


def _setup_context(ctx, inputs, output):
    x, weight, packed, scales, bias, granularity, group_size, act_mode = inputs
    ctx.save_for_backward(x, packed, scales)
    ctx.cfg = (granularity, group_size, act_mode, weight.dtype, weight.shape[1])


def _backward(ctx, grad_y):
    x, packed, scales = ctx.saved_tensors
    granularity, group_size, act_mode, w_dtype, cols = ctx.cfg
    need_x, need_w, _, _, need_b = ctx.needs_input_grad[:5]
    gx = gw = gb = None
    if need_x:
        gx = torch.ops.tritter.ternary_linear_grad_input(grad_y, packed, scales, cols, granularity, group_size)
    if need_w or need_b:
        g2 = grad_y.reshape(-1, grad_y.shape[-1])
        if need_w:
            xe = fake_quant_activations(x) if act_mode == ACT_INT8 else x
            x2 = xe.reshape(-1, cols)
            if x2.dtype != g2.dtype:
                gw = g2.float().t().mm(x2.float())
            else:
                gw = g2.t().mm(x2)
            gw = gw.to(w_dtype)
        if need_b:
            gb = g2.sum(0)
    return gx, gw, None, None, gb, None, None, None


ternary_linear.register_autograd(_backward, setup_context=_setup_context)


def unpack_2bit(packed, cols):
    """Canonical 2-bit bytes [rows, ceil(cols/4)] -> trits int8 [rows, cols] (torch ops)."""
    shifts = torch.tensor([0, 2, 4, 6], dtype=torch.uint8, device=packed.device)
    codes = (packed.unsqueeze(-1) >> shifts) & 3
    t = (codes == 1).to(torch.int8) - (codes == 2).to(torch.int8)
    return t.reshape(packed.shape[0], -1)[:, :cols]
