"""Communication methods of the experiment, by spec string.

========================  ==========================================================
spec                      method
========================  ==========================================================
``none``                  uncompressed f32 all-reduce (through the hook, Identity)
``ddp``                   DDP's built-in all-reduce (no hook; timing reference)
``torch-topk:R``          reference top-k in torch, R = target ratio (8 B/entry)
``powersgd:r``            PyTorch's ``powerSGD_hook``, rank r
``lib-topk:R``            library top-k payloads (all_gather), library error feedback
``lib-ternary``           library TernGrad payloads (15.06x), library error feedback
``lib-qtopk:R[:v]``       library quantized top-k (Rice-coded positions, sign, v-bit
                          magnitude codes, v = 2 by default) payloads, library EF
``lib-sketch:R[:rows]``   library count sketch, tables summed; hook's naive EF
``lib-fetchsgd:R[:rows[:k_fraction[:clip_scale]]]``
                          library FetchSGD (sketch-space momentum + error), SGD w/o momentum,
                          k = k_fraction x columns (0.25), update clipped at clip_scale x clip (10)
``lib-projection:R``      library sparse ternary random projection; hook's EF
``lib-rqtopk:R[:v[:R2]]`` library quantized top-k with the two-phase region exchange
                          (all_to_all by index region, owners re-compress the sums,
                          all_gather; owners at R2, default R): traffic per rank flat in N;
                          two-level EF
``lib-rtopk:R``           the same exchange with plain top-k payloads
``lib-rtqtopk:R2[:v]``    the region exchange with ternary regions (phase 1, 15.06x) and owners
                          selecting by quantized top-k at R2 with v-bit levels
``lib-rqtopkm:R[:v[:R2[:mask]]]`` the region exchange with momentum correction (local
                          momentum 0.9 compressed, momentum-free SGD, clip x10); R2 "-" = R;
                          "mask": DGC's momentum factor masking
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
    clip_scale: float = 1.0     # multiplies the run's clip threshold (applied to the update)


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
    from tritter_accel.torch import compressors as L
    from tritter_accel.torch.comm_hook import CompressionHookState, compression_hook
    parts = [a for a in arg.split(":") if a]
    ratio = float(parts[0]) if parts else 32.0
    momentum, clip_scale = None, 1.0
    if kind in ("topk", "ternary"):
        comp = L.LibPayload(kind, ratio, error_feedback=error_feedback)
    elif kind == "qtopk":
        comp = L.LibPayload("qtopk", ratio, error_feedback=error_feedback,
                            value_bits=int(parts[1]) if len(parts) > 1 else 2)
    elif kind == "sketch":
        comp = L.LibSketch(ratio, rows=int(parts[1]) if len(parts) > 1 else 1)
    elif kind == "fetchsgd":
        comp = L.LibFetchSGD(ratio, rows=int(parts[1]) if len(parts) > 1 else 3, momentum=0.9,
                             k_fraction=float(parts[2]) if len(parts) > 2 else 0.25)
        # momentum lives in sketch space: momentum-free SGD; the clip applies to the update,
        # which carries the momentum sum, so its threshold is scaled by 1 / (1 - momentum)
        momentum, clip_scale = 0.0, float(parts[3]) if len(parts) > 3 else 10.0
    elif kind == "projection":
        comp = L.LibProjection(ratio)
    elif kind == "rtqtopk":
        comp = L.RegionPayload("qtopk", 15.06, value_bits=int(parts[1]) if len(parts) > 1 else 2,
                               owner_ratio=ratio, local_method="ternary")
    elif kind in ("rqtopk", "rtopk", "rqtopkm"):
        if not error_feedback:
            raise ValueError("method: the region exchange always keeps error feedback (use @ef)")
        mom = 0.9 if kind == "rqtopkm" else 0.0
        comp = L.RegionPayload("topk" if kind == "rtopk" else "qtopk", ratio,
                               value_bits=int(parts[1]) if len(parts) > 1 else 2,
                               owner_ratio=float(parts[2]) if len(parts) > 2 and parts[2] != "-" else None,
                               momentum=mom, masking=len(parts) > 3 and parts[3] == "mask")
        if mom:
            # the update carries the momentum (momentum correction): momentum-free SGD, and
            # the clip, applied to the update, scaled by 1 / (1 - momentum) as for FetchSGD
            momentum, clip_scale = 0.0, 1.0 / (1.0 - mom)
    else:
        raise ValueError(f"method: unknown library compressor {kind!r}")
    st = CompressionHookState(comp, error_feedback=error_feedback, warmup_steps=warmup, seed=seed)
    return MethodSetup(compression_hook, st, momentum, comp.describe(), clip_scale)


def library_specs(ratios) -> list:
    """The library-compressor specs of the full matrix at the given ratios (ternary has
    one fixed ratio, 15.06x at blocks of 256)."""
    out = []
    for r in ratios:
        out += [f"lib-topk:{r:g}", f"lib-qtopk:{r:g}", f"lib-fetchsgd:{r:g}", f"lib-sketch:{r:g}", f"lib-projection:{r:g}"]
    return out + ["lib-ternary"]
