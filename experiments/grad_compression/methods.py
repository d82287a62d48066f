"""Communication methods of the experiment, by spec string.

========================  ==========================================================
spec                      method
========================  ==========================================================
``none``                  uncompressed f32 all-reduce (through the hook, Identity)
``ddp``                   DDP's built-in all-reduce (no hook; timing reference)
``torch-topk:R``          reference top-k in torch, R = target ratio (8 B/entry)
``powersgd:r``            PyTorch's ``powerSGD_hook``, rank r
``lib-...``               tritter_accel.grad compressors (see ``_library_method``)
========================  ==========================================================

Error feedback (``error_feedback``) applies to the hook's compressors and to
PowerSGD (its own ``use_error_feedback``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional


@dataclasses.dataclass
class MethodSetup:
    hook: Optional[Callable]
    state: Any
    momentum: Optional[float]   # None: the run's optimizer momentum; else an override
    describe: str


def make_method(spec: str, error_feedback: bool, warmup: int, seed: int, world: int) -> MethodSetup:
    from tritter_accel.torch.comm_hook import CompressionHookState, Identity, TorchTopK, compression_hook
    name, _, arg = spec.partition(":")
    if name == "ddp":
        return MethodSetup(None, None, None, "DDP built-in all-reduce")
    if name == "none":
        st = CompressionHookState(Identity(), error_feedback=False, warmup_steps=warmup, seed=seed)
        return MethodSetup(compression_hook, st, None, "uncompressed all-reduce (hook)")
    if name == "torch-topk":
        st = CompressionHookState(TorchTopK(float(arg)), error_feedback=error_feedback,
                                  warmup_steps=warmup, seed=seed)
        return MethodSetup(compression_hook, st, None, st.compressor.describe())
    if name == "powersgd":
        from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as P
        st = P.PowerSGDState(process_group=None, matrix_approximation_rank=int(arg),
                             start_powerSGD_iter=max(2, warmup), use_error_feedback=error_feedback,
                             warm_start=True, random_seed=seed)
        return MethodSetup(P.powerSGD_hook, st, None, f"torch PowerSGD rank {arg}")
    if name.startswith("lib-"):
        return _library_method(name[4:], arg, error_feedback, warmup, seed)
    raise ValueError(f"method: unknown spec {spec!r}")


def _library_method(kind: str, arg: str, error_feedback: bool, warmup: int, seed: int) -> MethodSetup:
    raise ValueError(f"method: library compressor {kind!r} is not wired yet")


def library_specs(ratios) -> list:
    """The library-compressor specs of the full matrix at the given ratios."""
    return []
