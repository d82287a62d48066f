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

Buckets on a GPU (NCCL): compressors with ``host_only`` (the library's) get a
host copy of the gradient; their payloads go to the bucket's device for the
collectives (NCCL moves device memory only) and come back to the host to be
decoded, and the update is copied into the bucket. The collectives, their
order and the byte counts are those of a CPU bucket.

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

Traffic accounting: the payload size is not what crosses the network. With N
ranks, a ring all-reduce of B bytes sends and receives ``2 (N-1)/N B`` per
rank, an all-gather of B bytes from every rank ``(N-1) B``, an all-to-all of
N slots of S bytes ``(N-1) S``. ``traffic_sent`` / ``traffic_recv`` count these
per rank (:func:`collective_traffic`), next to ``dense_traffic``: what a ring
all-reduce of the uncompressed f32 buckets would have moved at the same N.
``traffic_ratio()`` is their quotient, the compression a user actually gets at
N ranks. For a sparse method exchanged by all-gather it falls as N grows
(payload ratio R gives about ``2 R / N``); the two-phase exchange of
:class:`TwoPhaseCompressor` keeps it near R at any N.
"""
import abc
import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist

__all__ = [
    "Compressor", "TwoPhaseCompressor", "Identity", "TorchTopK", "CompressionHookState",
    "compression_hook", "BucketKey", "collective_traffic",
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
    #: True when the compressor works on host memory only (NumPy and the C library):
    #: for a bucket on a GPU (NCCL) the hook hands it host copies and moves its
    #: payloads to the bucket's device for the collectives and back.
    host_only: bool = False

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


class TwoPhaseCompressor(Compressor):
    """A compressor whose exchange takes two collectives, so that the bytes each
    rank moves do not grow with the number of ranks N (a sparse reduce-scatter
    by index region, then an all-gather of the re-compressed region sums, as in
    Ok-Topk, Li and Hoefler 2022).

    The bucket's n coordinates are split into N contiguous regions; rank j owns
    region j. Phase 1 (all-to-all, issued and waited for in the hook body):
    every rank compresses each region of its gradient and sends region j's
    payload to rank j, in a slot of fixed size. Phase 2 (all-gather, async):
    every owner sums the N payloads of its region, re-compresses the sum, and
    every rank gathers the N re-compressed regions and decodes them in rank
    order (so all ranks apply the same update). Error feedback has two
    levels: each rank keeps what its regional payloads lost, each owner keeps
    what re-compression lost from the region's sum.

    Both collectives are issued in the hook body, in hook-call order, which
    DDP keeps identical on every rank: no collective runs in a callback.
    """

    two_phase = True
    linear = False
    internal_error_feedback = True
    #: True when :meth:`decode` takes ``out=``: a contiguous float32 CPU tensor of
    #: n elements (the hook passes the bucket's own buffer) that it writes the
    #: update into and returns, saving the hook a copy of the bucket.
    decodes_into = False

    def compress(self, g, state, step, rank):  # pragma: no cover - the hook calls the phases
        raise NotImplementedError("TwoPhaseCompressor: the hook calls compress_regions")

    def decompress(self, received, n, state, step, world_size):  # pragma: no cover
        raise NotImplementedError("TwoPhaseCompressor: the hook calls decode")

    @abc.abstractmethod
    def compress_regions(self, g: torch.Tensor, state: Any, step: int, rank: int, world: int) -> torch.Tensor:
        """Phase 1 payloads: a uint8 tensor ``[world, slot]``; row j goes to rank j."""

    @abc.abstractmethod
    def reduce_owned(self, received: torch.Tensor, state: Any, step: int, rank: int, world: int) -> torch.Tensor:
        """From the ``[world, slot]`` payloads of this rank's region (row i from rank i),
        the 1-D uint8 payload of the re-compressed region sum (same size on every rank)."""

    @abc.abstractmethod
    def decode(self, gathered: List[torch.Tensor], n: int, state: Any, step: int, world: int) -> torch.Tensor:
        """The averaged f32 update of n elements from every owner's payload, in rank order."""

    def slot_bytes(self, n: int, world: int) -> Tuple[int, int]:
        """``(phase-1 slot bytes, phase-2 payload bytes)`` for a bucket of n elements."""
        raise NotImplementedError


def collective_traffic(kind: str, nbytes: int, world: int) -> float:
    """Bytes one rank sends (and receives) in a collective over ``world`` ranks.

    ``kind``: ``"all_reduce"`` (ring: reduce-scatter + all-gather,
    ``2 (N-1)/N B`` for a buffer of B bytes), ``"all_gather"`` (ring, each rank
    contributes B: ``(N-1) B``), ``"all_to_all"`` (N slots of B bytes, one per
    peer: ``(N-1) B``; the slot to itself stays local), ``"reduce_scatter"``
    (ring, ``(N-1)/N B``). These are the bandwidth terms of the standard
    algorithms (gloo and NCCL use ring or equivalent-traffic variants for large
    buffers); latency is not counted here.
    """
    n = int(world)
    if n < 1:
        raise ValueError(f"world: must be >= 1, got {world}")
    if kind == "all_reduce":
        return 2.0 * (n - 1) / n * nbytes
    if kind in ("all_gather", "all_to_all"):
        return float((n - 1) * nbytes)
    if kind == "reduce_scatter":
        return (n - 1) / n * nbytes
    raise ValueError(f"kind: unknown collective {kind!r}")


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
    Network traffic of the collectives' algorithms (:func:`collective_traffic`):
    ``traffic_sent`` / ``traffic_recv`` / ``dense_traffic`` (ring all-reduce of
    the f32 buckets at the same N) over the whole run, and the same three with
    ``_compressed`` after warm-up; ``step_log[t]`` is step t's
    ``[payload bytes, traffic sent, traffic received, dense traffic]``.
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
        self.traffic_sent = 0.0
        self.traffic_recv = 0.0
        self.dense_traffic = 0.0
        self.traffic_sent_compressed = 0.0
        self.traffic_recv_compressed = 0.0
        self.dense_traffic_compressed = 0.0
        self.step_log: List[List[float]] = []
        self._step_of_call = 0
        self._buckets: Dict[BucketKey, _Bucket] = {}
        # tests: take the GPU bucket's path (host copies, payloads copied to the
        # bucket's device and back) on a CPU bucket
        self._stage_through_host = False

    # -- counters ---------------------------------------------------------------
    def compression_ratio(self, after_warmup: bool = True) -> float:
        """f32 words per step / 32-bit words sent per step (same as byte ratio)."""
        if after_warmup:
            return self.f32_bytes_compressed / self.bytes_sent_compressed if self.bytes_sent_compressed else float("nan")
        return self.f32_bytes / self.bytes_sent if self.bytes_sent else float("nan")

    def traffic_ratio(self, after_warmup: bool = True) -> float:
        """Traffic of an uncompressed ring all-reduce at the same N / traffic this
        rank actually sent (the compression the network sees)."""
        if after_warmup:
            return (self.dense_traffic_compressed / self.traffic_sent_compressed
                    if self.traffic_sent_compressed else float("nan"))
        return self.dense_traffic / self.traffic_sent if self.traffic_sent else float("nan")

    def _count(self, nbytes: int, f32_bytes: int, compressed: bool, kind: str = "all_reduce",
               world: int = 1, traffic_nbytes: Optional[int] = None):
        """One collective: ``nbytes`` handed to it, ``f32_bytes`` of gradient it
        stands for (0 for a second phase), traffic by ``kind``'s formula on
        ``traffic_nbytes`` (default ``nbytes``)."""
        self.collectives += 1
        self.bytes_sent += nbytes
        self.f32_bytes += f32_bytes
        t = collective_traffic(kind, nbytes if traffic_nbytes is None else traffic_nbytes, world)
        d = collective_traffic("all_reduce", f32_bytes, world)
        self.traffic_sent += t
        self.traffic_recv += t
        self.dense_traffic += d
        if compressed:
            self.bytes_sent_compressed += nbytes
            self.f32_bytes_compressed += f32_bytes
            self.traffic_sent_compressed += t
            self.traffic_recv_compressed += t
            self.dense_traffic_compressed += d
        while len(self.step_log) <= self._step_of_call:
            self.step_log.append([0, 0.0, 0.0, 0.0])
        row = self.step_log[self._step_of_call]
        row[0] += nbytes
        row[1] += t
        row[2] += t
        row[3] += d

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
    state._step_of_call = step
    if bucket.is_last():
        state.steps += 1

    if step < state.warmup_steps:
        state._count(buf.numel() * 4, n * 4, compressed=False, kind="all_reduce", world=world)
        fut = dist.all_reduce(buf, group=pg, async_op=True).get_future()

        def _avg(f):
            out = f.value()[0]
            return out.div_(world)
        return fut.then(_avg)

    comp = state.compressor
    b = state.bucket(_bucket_key(bucket), n, rank)
    g = buf.reshape(-1)
    # a host-only compressor and a bucket elsewhere (CUDA, NCCL): stage through host memory
    dev = buf.device
    stage = getattr(comp, "host_only", False) and (dev.type != "cpu" or state._stage_through_host)
    if getattr(comp, "two_phase", False):
        return _two_phase(state, comp, b, buf, g, n, step, rank, world, pg, stage)
    use_residual = state.error_feedback and not comp.internal_error_feedback
    if use_residual:
        g = g + b.residual
    payload, local = comp.compress(_host(g) if stage else g, b.comp_state, step, rank)
    if payload.dim() != 1:
        raise ValueError("compressor: payload must be 1-D")
    if use_residual:
        if local is None:
            raise ValueError("compressor: must return the local reconstruction for error feedback")
        torch.sub(g, local.to(dev), out=b.residual)
    if stage:
        payload = _to(payload, dev)
    nbytes = payload.numel() * payload.element_size()
    state._count(nbytes, n * 4, compressed=True, kind="all_reduce" if comp.linear else "all_gather",
                 world=world)

    if comp.linear:
        fut = dist.all_reduce(payload, group=pg, async_op=True).get_future()
        received = [payload]
    else:
        received = [torch.empty_like(payload) for _ in range(world)]
        fut = dist.all_gather(received, payload, group=pg, async_op=True).get_future()

    def _decode(f):
        f.wait()
        got = [_host(t) for t in received] if stage else received
        out = comp.decompress(got, n, b.comp_state, step, world)
        buf.view(-1).copy_(out)
        return buf
    return fut.then(_decode)


def _host(t: torch.Tensor) -> torch.Tensor:
    """A host copy (always a copy: the compressor may keep or change it)."""
    return t.detach().to("cpu", copy=True)


def _to(t: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """``t`` on ``dev`` (a copy, also when ``dev`` is the host: the staging test)."""
    return t.to(dev, copy=True)


def _two_phase(state, comp, b, buf, g, n, step, rank, world, pg, stage=False):
    """The hook body for a :class:`TwoPhaseCompressor`: phase 1 (all-to-all)
    issued and awaited here, phase 2 (all-gather) issued here, decoded in the
    callback. Both collectives are in the body, in hook-call order."""
    dev = buf.device
    slots = comp.compress_regions(_host(g) if stage else g, b.comp_state, step, rank, world)
    if slots.dim() != 2 or slots.shape[0] != world:
        raise ValueError(f"compressor: compress_regions must return [world, slot], got {tuple(slots.shape)}")
    slot = slots.shape[1] * slots.element_size()
    flat = slots.reshape(-1).contiguous()
    if stage:
        flat = _to(flat, dev)
    recv = torch.empty_like(flat)
    state._count(flat.numel() * flat.element_size(), n * 4, compressed=True, kind="all_to_all",
                 world=world, traffic_nbytes=slot)
    if world > 1:
        dist.all_to_all_single(recv, flat, group=pg)
    else:
        recv.copy_(flat)
    owned = comp.reduce_owned((_host(recv) if stage else recv).view(world, -1), b.comp_state, step, rank, world)
    if owned.dim() != 1:
        raise ValueError("compressor: reduce_owned must return a 1-D payload")
    if stage:
        owned = _to(owned, dev)
    state._count(owned.numel() * owned.element_size(), 0, compressed=True, kind="all_gather", world=world)
    gathered = [torch.empty_like(owned) for _ in range(world)]
    fut = dist.all_gather(gathered, owned, group=pg, async_op=True).get_future()

    def _decode(f):
        f.wait()
        flat = buf.view(-1)
        got = [_host(t) for t in gathered] if stage else gathered
        if comp.decodes_into and not stage and flat.dtype == torch.float32 and flat.device.type == "cpu" \
                and flat.is_contiguous():
            out = comp.decode(got, n, b.comp_state, step, world, out=flat)
            if out.data_ptr() != flat.data_ptr():
                raise ValueError("compressor: decode(out=) must return out")
        else:
            flat.copy_(comp.decode(got, n, b.comp_state, step, world))
        return buf
    return fut.then(_decode)
