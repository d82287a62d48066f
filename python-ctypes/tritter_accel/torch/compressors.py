"""The library's gradient compressors (``tritter_accel.grad``) as DDP-hook compressors.

=====================  =========  ==============================================  =======================
class                  collective what travels per bucket of n floats             error feedback
=====================  =========  ==============================================  =======================
``LibPayload(topk)``   all_gather checksummed payload: header + k (u32, f32) pairs   the library's residual
``LibPayload(ternary)``all_gather payload: header + 2-bit trits + f32 scale/256      the library's residual
``LibPayload(qtopk)``   all_gather payload: header + 4 levels + Rice-coded (position,  the library's residual
                                 sign, 2-bit level) stream
``LibSketch``          all_reduce raw count-sketch table, n / ratio f32 (no header)  the hook's (optional)
``LibFetchSGD``        all_reduce raw count-sketch table, n / ratio f32 (no header)  FetchSGD, sketch space
``LibProjection``      all_reduce sparse ternary projection, n / ratio f32           the hook's (optional)
=====================  =========  ==============================================  =======================

Linear methods send the raw f32 table (no header, so that gloo can sum it):
every rank builds it with the same geometry and seed, which the hook derives
identically on every rank. Non-linear methods send the library's checksummed
payload and every rank decodes every rank's payload with
``tritter_accel.grad.decompress``, which validates it.

``LibFetchSGD`` keeps momentum and error in sketch space and returns the update
to apply with momentum-free SGD; the experiment therefore sets the optimizer's
momentum to 0 for it (``optimizer_momentum``).
"""
import numpy as np
import torch

from .. import grad as G
from .comm_hook import Compressor, _mix

__all__ = ["LibPayload", "LibSketch", "LibFetchSGD", "LibProjection"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class LibPayload(Compressor):
    """``tritter_accel.grad.Compressor`` (method ``"topk"``, ``"ternary"`` or
    ``"qtopk"``), one per bucket and rank, with the library's own
    error-feedback residual."""

    linear = False
    internal_error_feedback = True

    def __init__(self, method: str, ratio: float = 32.0, *, block: int = 256, error_feedback: bool = True,
                 value_bits: int = 2):
        if method not in ("topk", "ternary", "qtopk"):
            raise ValueError(f"method: LibPayload takes 'topk', 'ternary' or 'qtopk', got {method!r}")
        self.method, self.ratio, self.block, self.error_feedback = method, float(ratio), int(block), bool(error_feedback)
        self.value_bits = int(value_bits)

    def describe(self):
        if self.method == "ternary":
            return "tritter ternary"
        bits = f", {self.value_bits}-bit levels" if self.method == "qtopk" else ""
        return f"tritter {self.method} ({self.ratio:g}x{bits})"

    def new_state(self, n, bucket_seed, rank):
        return G.Compressor(n, self.method, self.ratio, block=self.block, seed=bucket_seed, worker=rank,
                            error_feedback=self.error_feedback, value_bits=self.value_bits)

    def compress(self, g, state, step, rank):
        payload = state.compress(_np(g))
        if payload.size != state.wire_bytes:
            raise RuntimeError(f"compressor: payload of {payload.size} bytes, expected {state.wire_bytes}")
        return torch.from_numpy(payload.copy()), None

    def decompress(self, received, n, state, step, world_size):
        out = np.zeros(n, np.float32)
        for p in received:
            out += G.decompress(_np(p))
        return torch.from_numpy(out / np.float32(world_size))

    def wire_bytes(self, n):
        return G.Compressor(n, self.method, self.ratio, block=self.block, error_feedback=False,
                            value_bits=self.value_bits).wire_bytes


class LibSketch(Compressor):
    """Plain count sketch: every rank sketches with the same per-step seed, the tables
    are summed, each rank decodes by the median of rows. Naive error feedback, if
    enabled, is the hook's (the residual is mostly sketch noise)."""

    linear = True

    def __init__(self, ratio: float = 32.0, rows: int = 1):
        self.ratio, self.rows = float(ratio), int(rows)

    def describe(self):
        return f"tritter count sketch ({self.ratio:g}x, {self.rows} row{'s' if self.rows > 1 else ''})"

    def new_state(self, n, bucket_seed, rank):
        return {"shape": G.sketch_shape(n, self.ratio, self.rows), "seed": bucket_seed}

    def _seed(self, state, step):
        return _mix(state["seed"], step) & (2**63 - 1)

    def compress(self, g, state, step, rank):
        rows, cols = state["shape"]
        seed = self._seed(state, step)
        table = G.count_sketch(_np(g), rows, cols, seed)
        local = torch.from_numpy(G.count_sketch_estimate(table, g.numel(), seed))
        return torch.from_numpy(table.reshape(-1)), local

    def decompress(self, received, n, state, step, world_size):
        rows, cols = state["shape"]
        est = G.count_sketch_estimate(_np(received[0]).reshape(rows, cols), n, self._seed(state, step))
        return torch.from_numpy(est / np.float32(world_size))

    def wire_bytes(self, n):
        rows, cols = G.sketch_shape(n, self.ratio, self.rows)
        return 4 * rows * cols


class LibFetchSGD(Compressor):
    """FetchSGD: count sketches summed by all_reduce, momentum and error accumulated
    in sketch space, top-k unsketch (``tritter_accel.grad.FetchSGD``). Returns the
    update for momentum-free SGD; every rank computes the same update."""

    linear = True
    internal_error_feedback = True

    def __init__(self, ratio: float = 32.0, rows: int = 3, momentum: float = 0.9, k_fraction: float = 0.25):
        self.ratio, self.rows, self.momentum, self.k_fraction = float(ratio), int(rows), float(momentum), k_fraction

    def describe(self):
        return f"tritter FetchSGD ({self.ratio:g}x, {self.rows} rows, momentum {self.momentum:g})"

    def new_state(self, n, bucket_seed, rank):
        rows, cols = G.sketch_shape(n, self.ratio, self.rows)
        k = max(1, min(n, int(cols * self.k_fraction)))
        return G.FetchSGD(n, self.ratio, rows=self.rows, k=k, momentum=self.momentum, seed=bucket_seed & (2**63 - 1))

    def compress(self, g, state, step, rank):
        return torch.from_numpy(state.sketch(_np(g)).reshape(-1)), None

    def decompress(self, received, n, state, step, world_size):
        mean = _np(received[0]) / np.float32(world_size)
        return torch.from_numpy(state.step(mean))

    def wire_bytes(self, n):
        rows, cols = G.sketch_shape(n, self.ratio, self.rows)
        return 4 * rows * cols


class LibProjection(Compressor):
    """The seeds' sparse ternary random projection (``compress_gradients_vsa``), a new
    seed every step, summed by all_reduce, decoded by the (unbiased) transpose."""

    linear = True

    def __init__(self, ratio: float = 32.0):
        self.ratio = float(ratio)

    def describe(self):
        return f"tritter random projection ({self.ratio:g}x)"

    def new_state(self, n, bucket_seed, rank):
        return {"seed": bucket_seed}

    def _seed(self, state, step):
        return _mix(state["seed"], step, 0x9E37) & (2**63 - 1)

    def compress(self, g, state, step, rank):
        seed = self._seed(state, step)
        y, _ = G.compress_gradients_vsa(_np(g), 1.0 / self.ratio, seed)
        local = torch.from_numpy(G.decompress_gradients_vsa(y, g.numel(), seed))
        return torch.from_numpy(y), local

    def decompress(self, received, n, state, step, world_size):
        est = G.decompress_gradients_vsa(_np(received[0]), n, self._seed(state, step))
        return torch.from_numpy(est / np.float32(world_size))

    def wire_bytes(self, n):
        return 4 * G.projection_len(n, 1.0 / self.ratio)
