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
``RegionPayload``      all_to_all per-region payloads (phase 1), then all_gather  two levels: each rank's
                       + all_gather of the owners' re-compressed region sums      regional residuals, each
                       (phase 2): traffic per rank ~ 2 (N-1)/N 4n/ratio, flat in N owner's residual
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
from typing import Optional

import numpy as np
import torch

from .. import grad as G
from .comm_hook import Compressor, TwoPhaseCompressor, _mix

__all__ = ["LibPayload", "LibSketch", "LibFetchSGD", "LibProjection", "RegionPayload", "regions"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class LibPayload(Compressor):
    """``tritter_accel.grad.Compressor`` (method ``"topk"``, ``"ternary"`` or
    ``"qtopk"``), one per bucket and rank, with the library's own
    error-feedback residual."""

    linear = False
    host_only = True
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
    host_only = True

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
    host_only = True
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
    host_only = True

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


def regions(n: int, world: int):
    """The ``world`` contiguous index regions ``[(start, end), ...]`` of a bucket of
    n elements: region j = ``[j L, min(n, (j+1) L))`` with ``L = ceil(n / world)``
    (trailing regions may be shorter or empty)."""
    L = -(-n // world)
    return [(min(n, j * L), min(n, (j + 1) * L)) for j in range(world)]


class _RegionState:
    """Per bucket and rank: a library compressor per region (this rank's
    regional residuals) and one for the owned region's sum (the owner's residual)."""

    def __init__(self, comp: "RegionPayload", n: int, world: int, bucket_seed: int, rank: int):
        self.n, self.world, self.rank = n, world, rank
        self.regions = regions(n, world)
        mk = comp._make
        self.local = [mk(e - s, _mix(bucket_seed, j, 1), rank, comp.ratio, comp.local_method) if e > s else None
                      for j, (s, e) in enumerate(self.regions)]
        s, e = self.regions[rank]
        self.owner = mk(e - s, _mix(bucket_seed, rank, 2), rank, comp.owner_ratio) if e > s else None
        self.wire = [comp.region_wire_bytes(e - s, comp.ratio, comp.local_method) for s, e in self.regions]
        self.owner_wire = [comp.region_wire_bytes(e - s, comp.owner_ratio) for s, e in self.regions]
        self.slot = max(self.wire)
        self.owner_slot = max(self.owner_wire)
        self.u = None  # local momentum (momentum correction), made at the first compression


class _FusedRegionState:
    """Per bucket and rank: one library ``RegionExchange`` (one call per phase);
    the same seeds, settings and bits as :class:`_RegionState`'s per-region
    compressors."""

    def __init__(self, comp: "RegionPayload", n: int, world: int, bucket_seed: int, rank: int):
        self.n, self.world, self.rank = n, world, rank
        self.regions = regions(n, world)
        m63 = 2**63 - 1
        local = dict(method=comp.local_method, ratio=comp.ratio, value_bits=comp.value_bits, worker=rank)
        owner = dict(method=comp.method, ratio=comp.owner_ratio, value_bits=comp.value_bits, worker=rank,
                     seed=_mix(bucket_seed, rank, 2) & m63)
        seeds = [_mix(bucket_seed, j, 1) & m63 for j in range(world)]
        self.x = G.RegionExchange(n, world, rank, local, owner, seeds)
        self.slot, self.owner_slot = self.x.slot_bytes, self.x.owner_slot_bytes
        self.u = None


class RegionPayload(TwoPhaseCompressor):
    """Quantized top-k (or top-k) with an exchange whose traffic per rank does not
    grow with the number of ranks (see :class:`TwoPhaseCompressor`).

    Phase 1: each rank compresses each of the N regions of its gradient (plus
    that region's residual) at ``ratio`` and sends region j's payload to rank j
    (all-to-all, fixed slots). Phase 2: rank j decodes the N payloads of region
    j, sums them in rank order, adds its owner residual, re-compresses at
    ``ratio`` (the library's error feedback keeps what that loses), and every
    rank all-gathers the N owner payloads and decodes them in rank order.
    Per rank and bucket of n f32: about ``(N-1)/N 4n/ratio`` bytes out in
    phase 1 and ``(N-1)/N 4n/owner_ratio`` in phase 2, against ``2 (N-1)/N 4n``
    for a ring all-reduce: the traffic ratio stays near
    ``2 / (1/ratio + 1/owner_ratio)`` at any N (payload headers of 44 bytes a
    region add up when n/N is small). ``owner_ratio`` defaults to ``ratio``.

    ``local_method="ternary"``: phase 1 sends each region as a ternary payload
    (TernGrad with error feedback, 2 bits an element and a scale per 256, 15.06x,
    ``ratio`` unused) and only the owners select (``method`` at
    ``owner_ratio``): the selection runs on the sum over ranks, not on each
    rank's noisier gradient. Traffic ratio about ``2 / (1/15.06 + 1/owner_ratio)``.

    ``fused=True`` (the default): each phase is one library call
    (``tritter_accel.grad.RegionExchange``: every region compressed, the owner's
    sum decoded sparsely and re-compressed, the gathered regions decoded, all in
    C); ``fused=False`` runs the same steps region by region from Python (the
    reference the fused calls are tested against: same bytes, same update).
    Masking needs the per-region path and selects it.

    ``momentum > 0``: momentum correction (Lin et al., Deep Gradient
    Compression, 2018). Each rank keeps a local momentum ``u = momentum u + g``
    and compresses ``u`` (its error feedback accumulates ``u``), so the decoded
    update already carries the momentum: train with momentum-free SGD and scale
    a clip threshold by ``1 / (1 - momentum)``. Without compression this is
    momentum SGD exactly. ``masking=True`` adds DGC's momentum factor masking
    (``u`` zeroed where this rank's payload sent a value), which is meant for
    extreme sparsity: a coordinate sent every step loses its momentum.

    Conservation (the error-feedback invariant, tested): after any number of
    steps, ``sum over steps and ranks of g = N * sum of applied updates +
    sum of every rank's regional residuals + sum of every owner's residual``,
    up to f32 rounding.
    """

    def __init__(self, method: str = "qtopk", ratio: float = 32.0, *, value_bits: int = 2,
                 owner_ratio: Optional[float] = None, momentum: float = 0.0, masking: bool = False,
                 local_method: Optional[str] = None, fused: bool = True):
        if method not in ("qtopk", "topk"):
            raise ValueError(f"method: RegionPayload takes 'qtopk' or 'topk', got {method!r}")
        local_method = method if local_method is None else local_method
        if local_method not in ("qtopk", "topk", "ternary"):
            raise ValueError(f"local_method: 'qtopk', 'topk' or 'ternary', got {local_method!r}")
        self.local_method = local_method
        if not ratio >= 1:
            raise ValueError(f"ratio: must be >= 1, got {ratio}")
        owner_ratio = ratio if owner_ratio is None else owner_ratio
        if not owner_ratio >= 1:
            raise ValueError(f"owner_ratio: must be >= 1, got {owner_ratio}")
        self.method, self.ratio, self.value_bits = method, float(ratio), int(value_bits)
        self.owner_ratio = float(owner_ratio)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum: must be in [0, 1), got {momentum}")
        self.momentum, self.masking = float(momentum), bool(masking) and momentum > 0
        self.fused = bool(fused) and not self.masking

    def describe(self):
        bits = f", {self.value_bits}-bit levels" if self.method == "qtopk" else ""
        own = f", owner {self.owner_ratio:g}x" if self.owner_ratio != self.ratio else ""
        mom = (f", local momentum {self.momentum:g} (momentum correction{', masking' if self.masking else ''})"
               if self.momentum else "")
        if self.local_method == "ternary":
            return (f"tritter two-phase region exchange: ternary regions, owners {self.method} "
                    f"{self.owner_ratio:g}x{bits}{mom}")
        return f"tritter {self.method} two-phase region exchange ({self.ratio:g}x{own}{bits}{mom})"

    def _make(self, dim, seed, rank, ratio, method=None):
        return G.Compressor(dim, method or self.method, ratio, seed=seed & (2**63 - 1), worker=rank,
                            error_feedback=True, value_bits=self.value_bits)

    def region_wire_bytes(self, dim: int, ratio: Optional[float] = None, method: Optional[str] = None) -> int:
        if dim == 0:
            return 0
        return G.Compressor(dim, method or self.method, self.ratio if ratio is None else ratio,
                            error_feedback=False, value_bits=self.value_bits).wire_bytes

    def new_state(self, n, bucket_seed, rank):
        # the world size is only known at the first call (the hook passes it then)
        return {"bucket_seed": bucket_seed, "rank": rank, "st": None}

    def _state(self, state, n, world):
        if state["st"] is None or state["st"].world != world:
            kind = _FusedRegionState if self.fused else _RegionState
            state["st"] = kind(self, n, world, state["bucket_seed"], state["rank"])
        return state["st"]

    def slot_bytes(self, n, world):
        rs = regions(n, world)
        return (max(self.region_wire_bytes(e - s, self.ratio, self.local_method) for s, e in rs),
                max(self.region_wire_bytes(e - s, self.owner_ratio) for s, e in rs))

    def wire_bytes(self, n):
        raise NotImplementedError("RegionPayload: the size depends on the world size; use slot_bytes(n, world)")

    def compress_regions(self, g, state, step, rank, world):
        st = self._state(state, g.numel(), world)
        x = _np(g)
        if self.momentum:
            if st.u is None:
                st.u = np.zeros(st.n, np.float32)
            st.u *= np.float32(self.momentum)
            st.u += x
            x = st.u
        if self.fused:
            return torch.from_numpy(st.x.compress(x))
        out = np.zeros((world, st.slot), np.uint8)
        for j, (s, e) in enumerate(st.regions):
            if e > s:
                p = st.local[j].compress(x[s:e])
                out[j, :p.size] = p
                if self.masking:  # factor masking: restart the momentum of what was sent
                    st.u[s:e][G.decompress(p) != 0] = 0
        return torch.from_numpy(out)

    def reduce_owned(self, received, state, step, rank, world):
        st = state["st"]  # made by compress_regions of the same call
        if self.fused:
            return torch.from_numpy(st.x.reduce(_np(received)))
        out = np.zeros(st.owner_slot, np.uint8)
        s, e = st.regions[rank]
        if e == s:
            return torch.from_numpy(out)
        w = st.wire[rank]  # every rank's phase-1 payload for this region has this size
        r = _np(received)
        acc = np.zeros(e - s, np.float32)
        for i in range(world):  # rank order: the same sum on every owner run
            acc += G.decompress(np.ascontiguousarray(r[i, :w]))
        p = st.owner.compress(acc)
        out[:p.size] = p
        return torch.from_numpy(out)

    decodes_into = True
    host_only = True

    def decode(self, gathered, n, state, step, world, out=None):
        """The averaged update (float32, n); ``out``: a float32 tensor of n elements
        to write it into (returned), e.g. the bucket's buffer."""
        st = self._state(state, n, world)
        if out is not None and (out.dtype != torch.float32 or out.numel() != n or not out.is_contiguous()):
            raise ValueError(f"out: a contiguous float32 tensor of {n} elements, got {out.dtype} "
                             f"{tuple(out.shape)}")
        if self.fused:
            g = gathered if isinstance(gathered, torch.Tensor) else torch.stack(list(gathered))
            if out is not None:
                st.x.decode(_np(g), out=out.detach().view(-1).numpy())
                return out
            return torch.from_numpy(st.x.decode(_np(g)))
        res = np.zeros(n, np.float32)
        for j, (s, e) in enumerate(st.regions):
            if e > s:
                v = G.decompress(np.ascontiguousarray(_np(gathered[j])[:st.owner_wire[j]]))
                res[s:e] = v / np.float32(world)
        if out is not None:
            out.view(-1).copy_(torch.from_numpy(res))
            return out
        return torch.from_numpy(res)

    def residuals(self, state):
        """``(sum of this rank's regional residuals as a dense n-vector, owner residual
        of the owned region as a dense n-vector)``, for the conservation check."""
        st = state["st"]
        if self.fused:
            return st.x.residuals()
        loc = np.zeros(st.n, np.float32)
        own = np.zeros(st.n, np.float32)
        for j, (s, e) in enumerate(st.regions):
            if e > s:
                loc[s:e] = st.local[j].residual()
        s, e = st.regions[st.rank]
        if e > s:
            own[s:e] = st.owner.residual()
        return loc, own
