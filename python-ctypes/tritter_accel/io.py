"""Weight files: Hugging Face BitNet checkpoints, safetensors, GGUF (TQ1_0/TQ2_0).

    ck = open_checkpoint("path/to/checkpoint_dir")   # or a .safetensors / .gguf file
    ck.names(); ck.info(name)                        # {"dtype": "U8", "shape": (640, 2560), ...}
    ck.tensor(name)                                  # NumPy float32 array
    ck.ternary(name)                                 # TernaryMatrix (HF packed weight, TQ1_0/TQ2_0, or ours)
    save_checkpoint("m.gguf", {"w": matrix, "norm": array}, format="gguf")

A checkpoint is memory-mapped; arrays and matrices read from it are copies
that outlive it. Errors are `TritterError` subclasses naming the tensor.
"""
import ctypes
import json
import os

import numpy as np

from . import _c_api as C
from ._arrays import carray, ptr
from ._lib import call
from ._managed import Handle, new_handle
from .ternary import TernaryMatrix, quant_config

__all__ = ["Checkpoint", "open_checkpoint", "save_checkpoint", "DTYPES"]

DTYPES = {C.TRITTER_DTYPE_BOOL: "BOOL", C.TRITTER_DTYPE_U8: "U8", C.TRITTER_DTYPE_I8: "I8",
          C.TRITTER_DTYPE_I16: "I16", C.TRITTER_DTYPE_U16: "U16", C.TRITTER_DTYPE_I32: "I32",
          C.TRITTER_DTYPE_U32: "U32", C.TRITTER_DTYPE_I64: "I64", C.TRITTER_DTYPE_U64: "U64",
          C.TRITTER_DTYPE_F16: "F16", C.TRITTER_DTYPE_BF16: "BF16", C.TRITTER_DTYPE_F32: "F32",
          C.TRITTER_DTYPE_F64: "F64", C.TRITTER_DTYPE_TQ1_0: "TQ1_0", C.TRITTER_DTYPE_TQ2_0: "TQ2_0",
          C.TRITTER_DTYPE_OTHER: "OTHER"}
_KINDS = {C.TRITTER_CHECKPOINT_SAFETENSORS: "safetensors", C.TRITTER_CHECKPOINT_HF_DIR: "hf",
          C.TRITTER_CHECKPOINT_GGUF: "gguf"}
_FLOAT_DTYPES = {"F32": C.TRITTER_DTYPE_F32, "F16": C.TRITTER_DTYPE_F16, "BF16": C.TRITTER_DTYPE_BF16}
_SAVE = {("safetensors", None): C.TRITTER_SAVE_SAFETENSORS, ("gguf", "TQ2_0"): C.TRITTER_SAVE_GGUF_TQ2_0,
         ("gguf", "TQ1_0"): C.TRITTER_SAVE_GGUF_TQ1_0}


def _name(s):
    if not isinstance(s, str):
        raise TypeError(f"tensor names are str, got {type(s).__name__}")
    return s.encode("utf-8")


class Checkpoint(Handle):
    """An open checkpoint (memory-mapped). Use `open_checkpoint(path)`."""

    _free = "tritter_checkpoint_free"

    def __init__(self, path):
        super().__init__(new_handle("tritter_checkpoint_open", os.fsencode(os.fspath(path))))
        self.path = os.fspath(path)

    @property
    def kind(self):
        """'safetensors' (one file), 'hf' (a checkpoint directory) or 'gguf'."""
        k = ctypes.c_uint32()
        call("tritter_checkpoint_kind", self.raw, ctypes.byref(k))
        return _KINDS[k.value]

    def names(self):
        """Tensor names (sorted for safetensors/HF, file order for GGUF)."""
        n = ctypes.c_size_t()
        call("tritter_checkpoint_num_tensors", self.raw, ctypes.byref(n))
        out = []
        for i in range(n.value):
            p = ctypes.c_char_p()
            call("tritter_checkpoint_tensor_name", self.raw, i, ctypes.byref(p))
            out.append(p.value.decode("utf-8"))
        return out

    def __contains__(self, name):
        return name in set(self.names())

    def config(self):
        """config.json as a dict (None when the checkpoint has none)."""
        p = ctypes.c_char_p()
        call("tritter_checkpoint_config_json", self.raw, ctypes.byref(p))
        return json.loads(p.value) if p.value else None

    def info(self, name):
        """{'dtype': 'BF16', 'shape': (..), 'nbytes': n, 'is_ternary': bool, 'ggml_type': int or None}."""
        i = C.tritter_tensor_info_t()
        call("tritter_checkpoint_tensor_info", self.raw, _name(name), ctypes.byref(i))
        shape = (ctypes.c_size_t * max(i.ndim, 1))()
        call("tritter_checkpoint_tensor_shape", self.raw, _name(name), shape, i.ndim)
        return {"dtype": DTYPES.get(i.dtype, "OTHER"), "shape": tuple(shape[k] for k in range(i.ndim)),
                "nbytes": i.nbytes, "is_ternary": bool(i.is_ternary),
                "ggml_type": None if i.ggml_type == 0xFFFFFFFF else i.ggml_type}

    def tensor(self, name):
        """The stored tensor as float32 in its shape (bf16/f16 widened exactly,
        integers cast, TQ1_0/TQ2_0 dequantized as ggml does)."""
        shape = self.info(name)["shape"]
        out = np.empty(shape, np.float32)
        call("tritter_checkpoint_tensor_f32", self.raw, _name(name), ptr(out), out.size)
        return out

    def ternary(self, name):
        """A TernaryMatrix: an HF packed weight (scale 1/weight_scale, exactly),
        a TQ1_0/TQ2_0 tensor (one scale per 256 weights), or a matrix this library saved."""
        return TernaryMatrix(new_handle("tritter_checkpoint_ternary", self.raw, _name(name)))

    def ternary_quantized(self, name, method="absmean", granularity="row", group_size=None, threshold=None,
                          eps=1e-5):
        """A 2-D float tensor quantized on load (unquantized checkpoints)."""
        cfg = quant_config(method, granularity, group_size, threshold, eps)
        return TernaryMatrix(new_handle("tritter_checkpoint_ternary_quantized", self.raw, _name(name),
                                        ctypes.byref(cfg)))

    def __repr__(self):
        state = "closed" if self.closed else f"{len(self.names())} tensors"
        return f"<tritter_accel.Checkpoint {self.path!r} ({state})>"


def open_checkpoint(path):
    """Opens a checkpoint directory, a .safetensors file or a .gguf file."""
    return Checkpoint(path)


class _Writer(Handle):
    _free = "tritter_checkpoint_writer_free"


def save_checkpoint(path, tensors, format="safetensors", ternary_type="TQ2_0", float_dtype="F32",  # noqa: A002
                    metadata=None):
    """Writes {name: TernaryMatrix or array} to `path`.

    format: 'safetensors' (the library's layout: 2-bit weights + scales +
    __metadata__, reopened by open_checkpoint to equal matrices) or 'gguf'
    (ternary matrices as ternary_type 'TQ2_0' or 'TQ1_0': columns a multiple
    of 256, one scale per 256 weights, scales stored as f16). Arrays are
    stored as float_dtype ('F32', 'F16', 'BF16'), or per item by passing
    (array, dtype). metadata: {str: str}.
    """
    code = _SAVE.get((format, ternary_type if format == "gguf" else None))
    if code is None:
        raise ValueError(f"format must be 'safetensors' or 'gguf' (ternary_type 'TQ2_0'/'TQ1_0'), "
                         f"got {format!r}/{ternary_type!r}")
    with _Writer(new_handle("tritter_checkpoint_writer_new")) as w:
        for name, item in tensors.items():
            if isinstance(item, TernaryMatrix):
                call("tritter_checkpoint_writer_add_ternary", w.raw, _name(name), item.raw)
                continue
            dt = float_dtype
            if isinstance(item, tuple):
                item, dt = item
            if dt not in _FLOAT_DTYPES:
                raise ValueError(f"{name}: float dtype must be one of {sorted(_FLOAT_DTYPES)}, got {dt!r}")
            a = carray(item, np.float32, None, name)
            shape = (ctypes.c_size_t * max(a.ndim, 1))(*a.shape)
            call("tritter_checkpoint_writer_add_f32", w.raw, _name(name), ptr(a), shape, a.ndim, _FLOAT_DTYPES[dt])
        for k, v in (metadata or {}).items():
            call("tritter_checkpoint_writer_add_metadata", w.raw, _name(k), _name(v))
        call("tritter_checkpoint_writer_save", w.raw, os.fsencode(os.fspath(path)), code)
