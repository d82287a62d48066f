"""DDP communication hook with pluggable gradient compressors and error feedback.

Usage::

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from tritter_accel.torch.comm_hook import CompressionHookState, TorchTopK, compression_hook

    model = DDP(net)
    state = CompressionHookState(TorchTopK(ratio=32), error_feedback=True, warmup_steps=10)
    model.register_comm_hook(state, compression_hook)
    ...
    print(state.compression_ratio())          # f32 words per step / 32-bit words sent per step

What one hook call does, per DDP bucket (a flat f32 buffer of n gradient elements):

1. add the bucket's error-feedback residual (when enabled) to the local gradient;
2. compress it into a payload tensor whose size depends only on n and the
   compressor's settings (so every rank sends the same number of bytes);
3. issue exactly ONE collective, in the hook body: ``all_reduce`` (sum) of the
   payload when the compressor is linear (a count sketch: the sum of sketches is
   the sketch of the sum), ``all_gather`` of the payloads otherwise (top-k,
   ternary);
4. in the future's callback (no collectives there): decompress, average over
   the ranks, keep the new residual, write the bucket.

Issuing every collective in the hook body matters: PyTorch's own
``powerSGD_hook`` issues its second all-reduce inside a future callback, and
on gloo with a model spanning several buckets the ranks then run collectives in
different orders and deadlock. Here the order of collectives is the order of
hook calls, which DDP keeps identical on every rank.

The decompression is a deterministic function of the gathered (or summed)
payloads, computed in the same order on every rank, so the ranks' averaged
gradients, and hence their parameters, stay bitwise identical.

Byte accounting: ``bytes_sent`` counts the bytes of the tensor each rank hands
to the collective (payload, including indices, scales and headers); the
uncompressed equivalent is 4 bytes per gradient element. Both are kept over the
whole run and after the warm-up steps, where the hook does a plain all-reduce.
"""
import abc
import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist

__all__ = [
    "Compressor", "Identity", "TorchTopK", "CompressionHookState", "compression_hook", "BucketKey",
]

BucketKey = Tuple[int, Tuple[int, ...]]


class Compressor(abc.ABC):
    """What the hook needs from a gradient compressor.

    A compressor is stateless across buckets except through the ``bucket_state``
    object it creates in :meth:`new_state` (one per bucket, e.g. a sketch's
    momentum). Payload sizes must depend only on ``n`` (and the compressor's
    settings): collectives need equal sizes on every rank and the hook issues
    no extra collective to agree on sizes.
    """

    #: True when payloads may be summed (all-reduce); False: all-gather + decode each.
    linear: bool = False
    #: True when the compressor keeps its own error memory (e.g. FetchSGD's sketch-space
    #: error accumulation); the hook's per-bucket residual is then not used.
    internal_error_feedback: bool = False

    def new_state(self, n: int, bucket_seed: int, rank: int) -> Any:
        """Per-bucket state of this rank (default: none). ``bucket_seed`` is identical on all ranks."""
        return None

    @abc.abstractmethod
    def compress(self, g: torch.Tensor, state: Any, step: int, rank: int
                 ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Compress the flat f32 gradient ``g`` (n elements, do not modify it).

        Returns ``(payload, local)``: the 1-D payload tensor to send, and the dense
        f32 vector that receivers will reconstruct from this rank's payload (used for
        error feedback; may be None when ``internal_error_feedback``).
        """

    @abc.abstractmethod
    def decompress(self, received: List[torch.Tensor], n: int, state: Any, step: int,
                   world_size: int) -> torch.Tensor:
        """Average update (flat f32, n elements) from the payloads of all ranks.

        For a linear compressor ``received`` holds one tensor, the sum over ranks;
        otherwise one payload per rank, in rank order.
        """

    def wire_bytes(self, n: int) -> int:
        """Bytes one rank sends for a bucket of n elements (for checks and docs)."""
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


class Identity(Compressor):
    """No compression: all-reduce of the f32 gradient (the uncompressed baseline)."""

    linear = True
    internal_error_feedback = True  # nothing is lost, nothing to feed back

    def compress(self, g, state, step, rank):
        return g.clone(), None

    def decompress(self, received, n, state, step, world_size):
        return received[0] / world_size

    def wire_bytes(self, n):
        return 4 * n


def topk_count(n: int, ratio: float, word_cost: int = 2) -> int:
    """k such that k entries of ``word_cost`` 32-bit words are ~n/ratio words (at least 1)."""
    return max(1, min(n, int(round(n / (ratio * word_cost)))))


class TorchTopK(Compressor):
    """Reference top-k sparsification written in torch: the k largest |g| as
    (f32 value, int32 index) pairs, 8 bytes per kept entry, so ``ratio`` is the
    compression ratio in 32-bit words with the index cost counted."""

    linear = False

    def __init__(self, ratio: float):
        if not ratio >= 1:
            raise ValueError(f"ratio: must be >= 1, got {ratio}")
        self.ratio = float(ratio)

    def describe(self):
        return f"torch-topk({self.ratio:g}x)"

    def k(self, n: int) -> int:
        return topk_count(n, self.ratio)

    def compress(self, g, state, step, rank):
        n = g.numel()
        k = self.k(n)
        idx = torch.topk(g.abs(), k, sorted=False).indices
        vals = g[idx]
        payload = torch.cat([vals.view(torch.int32), idx.to(torch.int32)])
        local = torch.zeros_like(g)
        local[idx] = vals
        return payload, local

    def decompress(self, received, n, state, step, world_size):
        k = self.k(n)
        out = torch.zeros(n, dtype=torch.float32)
        for p in received:
            out.index_add_(0, p[k:].long(), p[:k].view(torch.float32))
        return out / world_size

    def wire_bytes(self, n):
        return 8 * self.k(n)


@dataclasses.dataclass
class _Bucket:
    n: int
    residual: Optional[torch.Tensor]
    comp_state: Any


class CompressionHookState:
    """State of :func:`compression_hook`: the compressor, per-bucket residuals and
    compressor state, and the byte counters.

    Args:
        compressor: a :class:`Compressor`.
        process_group: the DDP process group (None: the default group).
        error_feedback: keep per bucket the part of the gradient the compressor
            dropped and add it to the next step's gradient (ignored for compressors
            with ``internal_error_feedback``).
        warmup_steps: the first steps do a plain f32 all-reduce (as PowerSGD's
            ``start_powerSGD_iter``); DDP rebuilds its buckets after the first
            step, so per-bucket state made before that is discarded anyway.
        seed: base seed for the compressors' per-bucket seeds (identical on all ranks).

    Counters (per rank): ``bytes_sent`` / ``f32_bytes`` over the whole run,
    ``bytes_sent_compressed`` / ``f32_bytes_compressed`` over the steps after
    warm-up, ``collectives`` (number issued), ``hook_calls``, ``steps`` (number of
    completed steps, counted at the last bucket of each backward pass).
    """

    def __init__(self, compressor: Compressor, process_group=None, error_feedback: bool = True,
                 warmup_steps: int = 0, seed: int = 0):
        if warmup_steps < 0:
            raise ValueError("warmup_steps: must be >= 0")
        self.compressor = compressor
        self.process_group = process_group
        self.error_feedback = bool(error_feedback)
        self.warmup_steps = int(warmup_steps)
        self.seed = int(seed)
        self.steps = 0
        self.hook_calls = 0
        self.collectives = 0
        self.bytes_sent = 0
        self.f32_bytes = 0
        self.bytes_sent_compressed = 0
        self.f32_bytes_compressed = 0
        self._buckets: Dict[BucketKey, _Bucket] = {}

    # -- counters ---------------------------------------------------------------
    def compression_ratio(self, after_warmup: bool = True) -> float:
        """f32 words per step / 32-bit words sent per step (same as byte ratio)."""
        if after_warmup:
            return self.f32_bytes_compressed / self.bytes_sent_compressed if self.bytes_sent_compressed else float("nan")
        return self.f32_bytes / self.bytes_sent if self.bytes_sent else float("nan")

    def _count(self, nbytes: int, f32_bytes: int, compressed: bool):
        self.collectives += 1
        self.bytes_sent += nbytes
        self.f32_bytes += f32_bytes
        if compressed:
            self.bytes_sent_compressed += nbytes
            self.f32_bytes_compressed += f32_bytes

    # -- per-bucket state -------------------------------------------------------
    def bucket(self, key: BucketKey, n: int, rank: int) -> _Bucket:
        b = self._buckets.get(key)
        if b is None or b.n != n:
            bucket_seed = _mix(self.seed, key[0], n)
            b = _Bucket(n, torch.zeros(n, dtype=torch.float32) if self.error_feedback else None,
                        self.compressor.new_state(n, bucket_seed, rank))
            self._buckets[key] = b
        return b


def _mix(*xs: int) -> int:
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h ^= (int(x) & 0xFFFFFFFFFFFFFFFF) + 0x9E3779B97F4A7C15 + ((h << 6) & 0xFFFFFFFFFFFFFFFF) + (h >> 2)
        h &= 0xFFFFFFFFFFFFFFFF
    return h


def _bucket_key(bucket) -> BucketKey:
    # The index alone is not enough: DDP rebuilds buckets after the first step and
    # indices then may name other parameters. Parameter identities pin it down.
    return bucket.index(), tuple(id(p) for p in bucket.parameters())


def compression_hook(state: CompressionHookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP communication hook: compress, one collective, decompress, average.

    Register with ``ddp_model.register_comm_hook(state, compression_hook)``. The
    gradients must be f32 on CPU (gloo) or any device the collective supports.
    """
    pg = state.process_group
    world = dist.get_world_size(pg)
    rank = dist.get_rank(pg)
    buf = bucket.buffer()
    if buf.dtype != torch.float32:
        raise TypeError(f"bucket: compression_hook needs f32 gradients, got {buf.dtype}")
    state.hook_calls += 1
    n = buf.numel()
    step = state.steps
    if bucket.is_last():
        state.steps += 1

    if step < state.warmup_steps:
        state._count(buf.numel() * 4, n * 4, compressed=False)
        fut = dist.all_reduce(buf, group=pg, async_op=True).get_future()

        def _avg(f):
            out = f.value()[0]
            return out.div_(world)
        return fut.then(_avg)

    comp = state.compressor
    b = state.bucket(_bucket_key(bucket), n, rank)
    g = buf.reshape(-1)
    use_residual = state.error_feedback and not comp.internal_error_feedback
    if use_residual:
        g = g + b.residual
    payload, local = comp.compress(g, b.comp_state, step, rank)
    if payload.dim() != 1:
        raise ValueError("compressor: payload must be 1-D")
    if use_residual:
        if local is None:
            raise ValueError("compressor: must return the local reconstruction for error feedback")
        torch.sub(g, local, out=b.residual)
    state._count(payload.numel() * payload.element_size(), n * 4, compressed=True)

    if comp.linear:
        fut = dist.all_reduce(payload, group=pg, async_op=True).get_future()
        received = [payload]
    else:
        received = [torch.empty_like(payload) for _ in range(world)]
        fut = dist.all_gather(received, payload, group=pg, async_op=True).get_future()

    def _decode(f):
        f.wait()
        out = comp.decompress(received, n, b.comp_state, step, world)
        buf.view(-1).copy_(out)
        return buf
    return fut.then(_decode)
