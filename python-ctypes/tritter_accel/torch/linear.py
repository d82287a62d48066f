"""`TernaryLinear` (a drop-in `nn.Linear` that trains with ternary weights),
`TernaryLinearInference` (packed weights only) and the pure-PyTorch reference
formulas both are tested against.

Quantization rules (the library's, see `src/ternary/quant.rs`):

* ``mode="bittorch"`` (default; BitTorch's ``TernaryLinear``): scale
  ``s = max|w|`` per output row (``per_channel=True``) or per tensor,
  ``t = sign(w)`` where ``|w| > threshold_factor · s`` else 0; activations as
  given.
* ``mode="bitnet"`` (BitNet b1.58): ``s = mean|w|`` per tensor (by default),
  ``t = clamp(round(w / (s + 1e-5)), -1, 1)``; activations fake-quantized to
  int8 per token, ``a = 127 / max|x|``, ``x_q = clamp(round(x·a), -128, 127) / a``.

Either way ``y = x_q · (s·t)ᵀ + bias``; gradients are straight-through
(``∂y/∂w`` as if ``w`` were ``s·t``, ``∂y/∂x`` as if ``x_q`` were ``x``), the
scale is a constant of the step. The full-precision latent weights are the
parameters the optimizer updates.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import _c_api as C
from .._lib import CudaUnavailableError, call
from . import ops

__all__ = ["TernaryLinear", "TernaryLinearInference", "ternary_quantize_reference", "ternary_linear_reference",
           "fake_quant_reference", "QuantSpec"]

_BACKENDS = ("auto", "cpu", "cuda", "python")
_GRAN_NAME = {v: k for k, v in ops.GRANULARITIES.items()}


class QuantSpec:
    """Resolved quantization settings of a layer (hashable, immutable)."""

    __slots__ = ("method", "granularity", "group_size", "threshold", "eps", "act_mode")

    def __init__(self, method, granularity, group_size, threshold, eps, act_mode):
        self.method = method            # ops.METHODS value
        self.granularity = granularity  # ops.GRANULARITIES value
        self.group_size = int(group_size or 0)
        self.threshold = -1.0 if threshold is None else float(threshold)
        self.eps = float(eps)
        self.act_mode = act_mode        # ops.ACT_F32 / ops.ACT_INT8

    @classmethod
    def for_mode(cls, mode, threshold_factor=0.05, per_channel=None, group_size=None):
        if mode == "bittorch":
            if not 0.0 <= threshold_factor <= 1.0:
                raise ValueError(f"threshold_factor must be in [0, 1], got {threshold_factor}")
            per_channel = True if per_channel is None else per_channel
            method, threshold, act = ops.METHODS["absmax"], threshold_factor, ops.ACT_F32
        elif mode == "bitnet":
            per_channel = False if per_channel is None else per_channel
            method, threshold, act = ops.METHODS["absmean"], None, ops.ACT_INT8
        else:
            raise ValueError(f"mode must be 'bittorch' or 'bitnet', got {mode!r}")
        if group_size is not None:
            if int(group_size) <= 0:
                raise ValueError(f"group_size must be > 0, got {group_size}")
            gran = ops.GRANULARITIES["group"]
        else:
            gran = ops.GRANULARITIES["row" if per_channel else "tensor"]
        return cls(method, gran, group_size, threshold, 1e-5, act)

    def key(self):
        return (self.method, self.granularity, self.group_size, self.threshold, self.eps, self.act_mode)

    @property
    def granularity_name(self):
        return _GRAN_NAME[self.granularity]

    @property
    def act_name(self):
        return "int8" if self.act_mode == ops.ACT_INT8 else "f32"


# ---------------------------------------------------------------- reference formulas (pure PyTorch)

def _scale_stats(w, spec):
    """Scales [scale_rows, groups] of `w` under `spec`, in w's dtype."""
    a = w.abs()
    absmax = spec.method == ops.METHODS["absmax"]
    rows, cols = w.shape
    if spec.granularity == ops.GRANULARITIES["tensor"]:
        s = a.amax() if absmax else a.mean()
        return s.reshape(1, 1)
    if spec.granularity == ops.GRANULARITIES["row"]:
        return a.amax(dim=1, keepdim=True) if absmax else a.mean(dim=1, keepdim=True)
    g = spec.group_size
    ng = max(1, -(-cols // g))
    ap = F.pad(a, (0, ng * g - cols)).reshape(rows, ng, g)
    if absmax:
        return ap.amax(dim=-1)
    counts = torch.full((ng,), float(g), dtype=w.dtype, device=w.device)
    counts[-1] = cols - (ng - 1) * g
    return ap.sum(dim=-1) / counts


def expand_scales(scales, rows, cols, granularity, group_size):
    """Per-weight scale matrix [rows, cols] from [scale_rows, groups] scales."""
    if granularity == ops.GRANULARITIES["tensor"]:
        return scales.reshape(1, 1).expand(rows, cols)
    if granularity == ops.GRANULARITIES["row"]:
        return scales.reshape(rows, 1).expand(rows, cols)
    return scales.repeat_interleave(group_size, dim=1)[:, :cols]


def ternary_quantize_reference(w, spec):
    """(trits in w's dtype [rows, cols], scales [scale_rows, groups]) by the
    library's rule, in pure PyTorch."""
    w = w.detach()
    rows, cols = w.shape
    s = _scale_stats(w, spec)
    sf = expand_scales(s, rows, cols, spec.granularity, spec.group_size)
    if spec.threshold < 0:
        t = (w / (sf + spec.eps)).round().clamp(-1, 1)
    else:
        t = torch.sign(w) * (w.abs() > spec.threshold * sf).to(w.dtype)
    return t, s


def fake_quant_reference(x):
    """BitNet per-token int8 fake quantization in x's own dtype."""
    a = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    return (x * a).round().clamp(-128, 127) / a


def ternary_linear_reference(x, weight, bias, spec):
    """``F.linear`` of the (fake-)quantized activations and ternary weights with
    straight-through gradients: the formula every backend must equal."""
    t, s = ternary_quantize_reference(weight, spec)
    wq = t * expand_scales(s, *weight.shape, spec.granularity, spec.group_size)
    w_ste = weight + (wq - weight).detach()
    if spec.act_mode == ops.ACT_INT8:
        x = x + (fake_quant_reference(x) - x).detach()
    return F.linear(x, w_ste, bias)


# ---------------------------------------------------------------- helpers

def _matrix_from_packed(packed, scales, cols, spec):
    from ..ternary import TernaryMatrix

    rows = packed.shape[0]
    return TernaryMatrix.from_packed(packed.numpy(), (rows, cols), scales.numpy(), "2bit", spec.granularity_name,
                                     spec.group_size or None)


def _matrix_linear(matrix, x, bias, act_mode, out_features):
    """``x · Wᵀ + bias`` through a TernaryMatrix handle (float32 kernels; any batch)."""
    k = x.shape[-1]
    x2 = x.reshape(-1, k)
    if x2.dtype != torch.float32:
        x2 = x2.float()
    y = torch.empty((x2.shape[0], out_features), dtype=torch.float32)
    b = None if bias is None else (bias if bias.dtype == torch.float32 else bias.float())
    xv, yv = ops.dl_tensor(x2), ops.dl_tensor(y)
    bv = None if b is None else ops.dl_tensor(b)
    call("tritter_ternary_matrix_matmul_dlpack", matrix.raw, xv.ref, None if bv is None else bv.ref, act_mode,
         yv.ref)
    y = y.reshape(*x.shape[:-1], out_features)
    return y if y.dtype == x.dtype else y.to(x.dtype)


def _check_backend(backend):
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    return backend


def _cuda_unavailable(where):
    return CudaUnavailableError(
        C.TRITTER_ERR_CUDA_UNAVAILABLE,
        f"CUDA unavailable: tritter_accel has no CUDA kernels yet ({where}); use backend='python' for CUDA tensors")


# ---------------------------------------------------------------- TernaryLinear

class TernaryLinear(nn.Module):
    """A linear layer with ternary weights, BitTorch's constructor plus
    ``mode`` and ``group_size``.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        threshold_factor: BitTorch's sparsity threshold (``mode="bittorch"``).
        per_channel: one scale per output row (default for ``"bittorch"``) or
            one per tensor (default for ``"bitnet"``).
        quantize: ``False`` behaves exactly like ``nn.Linear`` (debugging).
        backend: ``"auto"``/``"cpu"`` (the library's kernels; CUDA tensors raise
            ``CudaUnavailableError`` until the CUDA backend lands),
            ``"cuda"`` (raises ``CudaUnavailableError``), ``"python"`` (the
            pure-PyTorch formula, any device).
        mode: ``"bittorch"`` or ``"bitnet"`` (see the module docs).
        group_size: one scale per ``group_size`` weights of a row instead.

    The forward quantizes the latent ``weight`` once per call in training
    (``tritter::quantize_weight``) and multiplies with
    ``tritter::ternary_linear``; without autograd (``torch.no_grad()``,
    ``eval``), the quantized weights are cached until ``weight`` changes
    (its version counter: assignments through ``weight.data`` bypass it, call
    ``invalidate_cache()`` after those), and batch-1 inputs run the library's
    GEMV on the packed matrix.
    """

    def __init__(self, in_features, out_features, bias=True, threshold_factor=0.05, per_channel=None,
                 quantize=True, backend="auto", mode="bittorch", group_size=None, device=None, dtype=None):
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.threshold_factor = float(threshold_factor)
        self.mode = mode
        self.spec = QuantSpec.for_mode(mode, threshold_factor, per_channel, group_size)
        self.per_channel = self.spec.granularity != ops.GRANULARITIES["tensor"]
        self.group_size = group_size
        self.quantize = quantize
        self.backend = _check_backend(backend)
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty((self.out_features, self.in_features), **kw))
        if bias:
            self.bias = nn.Parameter(torch.empty(self.out_features, **kw))
        else:
            self.register_parameter("bias", None)
        self._cache = None
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)
        self.invalidate_cache()

    def invalidate_cache(self):
        """Drops the cached quantized weights (after writing ``weight.data``)."""
        self._cache = None

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"mode={self.mode}, granularity={self.spec.granularity_name}"
                + (f", group_size={self.spec.group_size}" if self.spec.group_size else "")
                + (f", threshold_factor={self.threshold_factor}" if self.mode == "bittorch" else "")
                + f", quantize={self.quantize}, backend={self.backend}")

    def _uses_library(self, x):
        if self.backend == "python":
            return False
        if self.backend == "cuda":
            raise _cuda_unavailable("backend='cuda'")
        if x.device.type != "cpu" or self.weight.device.type != "cpu":
            raise _cuda_unavailable(f"input on {x.device}, weight on {self.weight.device}")
        return True

    def _quantize_op(self):
        s = self.spec
        return torch.ops.tritter.quantize_weight(self.weight.detach(), s.method, s.granularity, s.group_size,
                                                 s.threshold, s.eps)

    def _cached(self):
        w = self.weight
        key = (w._version, w.data_ptr(), tuple(w.shape), w.dtype, self.spec.key())
        if self._cache is None or self._cache[0] != key:
            packed, scales = self._quantize_op()
            self._cache = [key, packed, scales, None]
        return self._cache

    def forward(self, x):
        if not self.quantize:
            return F.linear(x, self.weight, self.bias)
        if not self._uses_library(x):
            return ternary_linear_reference(x, self.weight, self.bias, self.spec)
        s = self.spec
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or self.weight.requires_grad or (self.bias is not None and self.bias.requires_grad))
        if torch.compiler.is_compiling() or needs_grad:
            packed, scales = self._quantize_op()
        else:
            cache = self._cached()
            packed, scales = cache[1], cache[2]
            if x.numel() == self.in_features and x.numel() > 0:
                # batch 1: the GEMV of the packed matrix
                if cache[3] is None:
                    cache[3] = _matrix_from_packed(packed, scales, self.in_features, s)
                return _matrix_linear(cache[3], x, self.bias, s.act_mode, self.out_features)
        return torch.ops.tritter.ternary_linear(x, self.weight, packed, scales, self.bias, s.granularity,
                                                s.group_size, s.act_mode)

    def quantized(self):
        """(packed uint8 [out, ceil(in/4)], scales float32 [scale_rows, groups]) of the current weights."""
        if self.backend == "python" or self.weight.device.type != "cpu":
            t, s = ternary_quantize_reference(self.weight.float().cpu(), self.spec)
            from ..ternary import pack

            return torch.from_numpy(pack(t.to(torch.int8).numpy())), s.float()
        with torch.no_grad():
            return self._quantize_op()

    @torch.no_grad()
    def get_quantized_weight(self):
        """BitTorch's (w_tern, scale): trits in {-1, 0, 1} (weight's dtype) and
        scales, shape ``(out_features,)`` per channel, ``()`` per tensor,
        ``(out_features, groups)`` per group."""
        if self.backend == "python" or self.weight.device.type != "cpu":
            t, s = ternary_quantize_reference(self.weight, self.spec)
        else:
            packed, s = self._quantize_op()
            t = ops.unpack_2bit(packed, self.in_features).to(self.weight.dtype)
            s = s.to(self.weight.dtype)
        if self.spec.granularity == ops.GRANULARITIES["tensor"]:
            s = s.reshape(())
        elif self.spec.granularity == ops.GRANULARITIES["row"]:
            s = s.reshape(-1)
        return t, s

    @classmethod
    def from_linear(cls, linear, **kwargs):
        """A TernaryLinear with `linear`'s weights (and bias) as its latent weights."""
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None,
                    device=linear.weight.device, dtype=linear.weight.dtype, **kwargs)
        with torch.no_grad():
            layer.weight.copy_(linear.weight)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer


# ---------------------------------------------------------------- TernaryLinearInference

class TernaryLinearInference(nn.Module):
    """A linear layer holding only packed ternary weights (the library's
    compute layout, about 2 bits a weight) plus scales and bias; forward runs
    the library's kernels (GEMV at batch 1, the tiled GEMM above). Inference
    only: outputs carry no gradient.

    Build it with ``from_linear`` (from a trained ``TernaryLinear`` or an
    ``nn.Linear``), ``from_packed``, or load a state dict / safetensors file
    (``tritter_accel.torch.load_packed``). Its state dict holds ``weight``
    (uint8 ``[out, ceil(in/4)]``, the canonical 2-bit layout),
    ``weight_scale`` (float32) and ``bias``.
    """

    def __init__(self, in_features, out_features, bias=True, act="f32", granularity="row", group_size=None):
        super().__init__()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        if act not in ("f32", "int8"):
            raise ValueError(f"act must be 'f32' or 'int8', got {act!r}")
        self.act = act
        self.granularity = granularity
        self.group_size = group_size
        spec = QuantSpec(ops.METHODS["absmean"], ops.GRANULARITIES[granularity], group_size, None, 1e-5,
                         ops.ACT_INT8 if act == "int8" else ops.ACT_F32)
        self._spec = spec
        rows, cols = self.out_features, self.in_features
        packed = torch.zeros((rows, (cols + 3) // 4), dtype=torch.uint8)
        scales = torch.zeros(ops._scale_shape(rows, cols, spec.granularity, spec.group_size), dtype=torch.float32)
        self._matrix = _matrix_from_packed(packed, scales, cols, spec)
        if bias:
            self.register_buffer("bias", torch.zeros(rows))
        else:
            self.bias = None

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"act={self.act}, granularity={self.granularity}"
                + (f", group_size={self.group_size}" if self.group_size else ""))

    def set_packed(self, packed, scales, bias=None, granularity=None, group_size=None):
        """Replaces the weights with canonical 2-bit bytes and scales (validated),
        optionally of another granularity."""
        packed = torch.as_tensor(packed, dtype=torch.uint8).cpu().contiguous()
        scales = torch.as_tensor(scales, dtype=torch.float32).cpu().contiguous()
        spec = self._spec
        if granularity is not None:
            spec = QuantSpec(spec.method, ops.GRANULARITIES[granularity], group_size, None, spec.eps, spec.act_mode)
        self._matrix = _matrix_from_packed(packed, scales, self.in_features, spec)
        if granularity is not None:
            self._spec, self.granularity, self.group_size = spec, granularity, group_size
        if bias is not None:
            if self.bias is None:
                raise ValueError("this layer was built without a bias")
            self.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    @classmethod
    def from_packed(cls, packed, scales, in_features, bias=None, act="f32", granularity="row", group_size=None):
        layer = cls(in_features, packed.shape[0], bias=bias is not None, act=act, granularity=granularity,
                    group_size=group_size)
        layer.set_packed(packed, scales, bias)
        return layer

    @classmethod
    def from_linear(cls, linear, act=None, **quant):
        """From a trained ``TernaryLinear`` (its quantization and activation
        mode) or an ``nn.Linear`` (quantized with ``TernaryLinear``'s rules and
        the keyword arguments ``mode``, ``threshold_factor``, ``per_channel``,
        ``group_size``)."""
        if not isinstance(linear, TernaryLinear):
            linear = TernaryLinear.from_linear(linear, **quant)
        elif quant:
            raise TypeError("quantization arguments apply to nn.Linear inputs only")
        spec = linear.spec
        packed, scales = linear.quantized()
        bias = None if linear.bias is None else linear.bias.detach().float().cpu()
        return cls.from_packed(packed, scales, linear.in_features, bias=bias,
                               act=act or spec.act_name, granularity=spec.granularity_name,
                               group_size=spec.group_size or None)

    def packed(self):
        """(canonical 2-bit bytes uint8 [out, ceil(in/4)], scales float32) as tensors."""
        return torch.from_numpy(self._matrix.packed("2bit")), torch.from_numpy(self._matrix.scales().copy())

    def weight_memory_bytes(self):
        """Bytes the weights occupy (the library's compute copy + scales)."""
        return self._matrix.memory_bytes

    def forward(self, x):
        if x.device.type != "cpu":
            raise _cuda_unavailable(f"input on {x.device}")
        return _matrix_linear(self._matrix, x.detach(), self.bias, self._spec.act_mode, self.out_features)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        packed, scales = self.packed()
        destination[prefix + "weight"] = packed
        destination[prefix + "weight_scale"] = scales

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        pk, sk = prefix + "weight", prefix + "weight_scale"
        rest = {k: v for k, v in state_dict.items() if k not in (pk, sk)}
        super()._load_from_state_dict(rest, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if pk in state_dict and sk in state_dict:
            try:
                self.set_packed(state_dict[pk], state_dict[sk])
            except Exception as e:  # noqa: BLE001 (reported like torch reports shape errors)
                error_msgs.append(f"while loading packed weights {pk}: {e}")
        else:
            missing_keys.extend(k for k in (pk, sk) if k not in state_dict)
