"""What gradient compression buys at N ranks: a simulator from measured inputs.

    python -m experiments.grad_compression.simulate                       # char LM, the default grid
    python -m experiments.grad_compression.simulate --model params:1e9    # a 1B-parameter model's buckets
    python -m experiments.grad_compression.simulate --check benches/results/grad_ranks.jsonl

One machine cannot run 64 or 1024 ranks, but what each rank sends is fixed by
the exchange's algorithm and the payload sizes, and those are exact functions
of the bucket sizes. The simulator takes

* the model's DDP buckets, **measured**: a one-process gloo group builds the
  real ``DistributedDataParallel`` and a hook records the bucket sizes (for
  ``params:N`` models: 25 MB buckets after a 1 MiB first bucket, DDP's defaults);
* payload sizes from the **library itself** (``tritter_accel.grad.Compressor``
  wire sizes of every bucket and every region, exactly what the hook sends);
* compute and compression time **measured here**: one training step of the
  model (forward, backward, optimizer; 1 thread); for the region exchanges,
  one rank's work per step with the library's one-call-per-phase exchange on
  the model's buckets at every N (``measure_region_cost``); for the all_gather
  exchange, the library's compress and decompress throughput;
* a link: bandwidth (Gbit/s) and a per-message latency (``--alpha-us``).

and computes, per rank and step, the bytes each exchange moves (the same
formulas as ``CompressionHookState``'s traffic counters:
``comm_hook.collective_traffic``) and the step time

    step = compute + compression work + communication (no overlap, conservative)

with ring all-reduce ``2 (N-1) (alpha + B / (N beta))``, ring all-gather
``(N-1) (alpha + B / beta)`` and pairwise all-to-all ``(N-1) (alpha + S / beta)``
(B the buffer, S one slot). Exchanges:

* ``dense``: ring all-reduce of the f32 buckets (DDP's default);
* ``qtopk-allgather R``: quantized top-k payloads gathered from every rank
  (what ``lib-qtopk:R`` does): every rank decodes N payloads;
* ``qtopk-region R``: the two-phase region exchange (``lib-rqtopk:R``);
* ``--regions SPECS``: region exchanges given as experiment specs (e.g.
  ``lib-rqtopk:32:3``, ``lib-rtqtopk:40:3``: ternary regions, owners at 40x),
  with their own payload sizes and their measured work per rank;
* ``powersgd r``: PyTorch's PowerSGD (two all-reduces of P and Q per matrix,
  1-D tensors uncompressed), char LM only (it needs the matrix shapes).

``--check FILE`` compares the simulated per-rank traffic with the meter's
counts of real gloo runs (JSON lines from ``run.py --raw``, any world size).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import time
from typing import Dict, List, Tuple

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python-ctypes"))
sys.path.insert(0, str(REPO))

DDP_BUCKET_BYTES = 25 * 1024 * 1024
DDP_FIRST_BUCKET_BYTES = 1024 * 1024


# -- traffic formulas (bytes one rank sends per step) ---------------------------------------------

def allreduce_bytes(b: float, n: int) -> float:
    return 2.0 * (n - 1) / n * b


def allgather_bytes(b: float, n: int) -> float:
    return (n - 1) * b


def alltoall_bytes(slot: float, n: int) -> float:
    return (n - 1) * slot


def wire_qtopk(n: int, ratio: float, value_bits: int = 2) -> int:
    from tritter_accel import grad as G
    return G.Compressor(n, "qtopk", ratio, error_feedback=False, value_bits=value_bits).wire_bytes


def region_slots(n: int, world: int, ratio: float, method: str = "qtopk", comp=None) -> Tuple[int, int]:
    from tritter_accel.torch.compressors import RegionPayload
    return (comp or RegionPayload(method, ratio)).slot_bytes(n, world)


def region_comp(spec: str):
    """The RegionPayload of an experiment spec (``lib-rqtopk:...``, ``lib-rtqtopk:...``)."""
    from experiments.grad_compression.methods import make_method
    comp = make_method(spec, True, 0, 0, 2).state.compressor
    if not hasattr(comp, "slot_bytes"):
        raise SystemExit(f"--regions: {spec!r} is not a region exchange")
    return comp


def traffic(buckets: List[int], exchange: str, world: int, ratio: float = 32.0,
            powersgd_shapes=None, powersgd_rank: int = 4, comp=None) -> float:
    """Bytes one rank sends per (post-warm-up) step for ``exchange`` over ``buckets``."""
    if world == 1:
        return 0.0
    if exchange == "dense":
        return sum(allreduce_bytes(4 * n, world) for n in buckets)
    if exchange == "qtopk-allgather":
        return sum(allgather_bytes(wire_qtopk(n, ratio), world) for n in buckets)
    if exchange == "qtopk-region":
        tot = 0.0
        for n in buckets:
            slot, owned = region_slots(n, world, ratio, comp=comp)
            tot += alltoall_bytes(slot, world) + allgather_bytes(owned, world)
        return tot
    if exchange == "powersgd":
        # per 2-D gradient (rows x cols): P (rows x r) and Q (cols x r) all-reduced; 1-D uncompressed
        tot = 0.0
        for shape in powersgd_shapes:
            if len(shape) >= 2:
                rows, cols = shape[0], int(np.prod(shape[1:]))
                r = min(powersgd_rank, rows, cols)
                tot += allreduce_bytes(4 * rows * r, world) + allreduce_bytes(4 * cols * r, world)
            else:
                tot += allreduce_bytes(4 * int(np.prod(shape)), world)
        return tot
    raise ValueError(f"exchange: unknown {exchange!r}")


def comm_time(buckets, exchange, world, ratio, beta, alpha, powersgd_shapes=None, comp=None) -> float:
    """Seconds of communication per step on a link of ``beta`` bytes/s and ``alpha`` s per message."""
    if world == 1:
        return 0.0
    t = 0.0
    if exchange == "dense":
        for n in buckets:
            t += 2 * (world - 1) * alpha + allreduce_bytes(4 * n, world) / beta
    elif exchange == "qtopk-allgather":
        for n in buckets:
            t += (world - 1) * alpha + allgather_bytes(wire_qtopk(n, ratio), world) / beta
    elif exchange == "qtopk-region":
        for n in buckets:
            slot, owned = region_slots(n, world, ratio, comp=comp)
            t += 2 * (world - 1) * alpha + (alltoall_bytes(slot, world) + allgather_bytes(owned, world)) / beta
    elif exchange == "powersgd":
        for shape in powersgd_shapes:
            msgs = 2 if len(shape) >= 2 else 1
            t += msgs * 2 * (world - 1) * alpha
        t += traffic(buckets, "powersgd", world, powersgd_shapes=powersgd_shapes) / beta
    return t


# -- measured inputs ------------------------------------------------------------------------------

def measure_buckets(model) -> List[int]:
    """DDP's real bucket sizes for ``model`` (one-process gloo group, one backward pass)."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from experiments.grad_compression.ddp import free_port
    own = not dist.is_initialized()
    if own:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        ddp = DDP(model)
        sizes: Dict[int, int] = {}

        def hook(state, bucket):
            sizes[bucket.index()] = bucket.buffer().numel()
            fut = torch.futures.Future()
            fut.set_result(bucket.buffer())
            return fut
        ddp.register_comm_hook(None, hook)
        for _ in range(2):  # DDP rebuilds its buckets after the first step
            sizes.clear()
            x = torch.randint(0, 96, (2, 16))
            ddp(x).float().sum().backward()
        return [sizes[i] for i in sorted(sizes)]
    finally:
        if own:
            dist.destroy_process_group()


def synthetic_buckets(params: int) -> List[int]:
    first = DDP_FIRST_BUCKET_BYTES // 4
    cap = DDP_BUCKET_BYTES // 4
    out = [min(first, params)]
    left = params - out[0]
    while left > 0:
        out.append(min(cap, left))
        left -= out[-1]
    return out


def _median_time(fn, reps: int) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def measure_compute_charlm(reps: int = 15, batch: int = 32) -> float:
    """Median seconds of one char-LM training step (forward, backward, SGD) at ``batch``, 1 thread."""
    import torch
    import torch.nn.functional as F
    from experiments.grad_compression.models import CharGRU
    torch.set_num_threads(1)
    torch.manual_seed(0)
    m = CharGRU()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    x = torch.randint(0, 96, (batch, 65))

    def step():
        out = m(x[:, :-1])
        loss = F.cross_entropy(out.reshape(-1, 96), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _median_time(step, reps)


def measure_codec(ratio: float, n: int = 1 << 20, reps: int = 7) -> Tuple[float, float]:
    """Library quantized top-k at ``ratio`` with error feedback: ``(compress s/element,
    decompress s/element)`` medians on an n-element gradient (one library thread)."""
    from tritter_accel import grad as G
    from tritter_accel import set_num_threads
    set_num_threads(1)
    g = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    c = G.Compressor(n, "qtopk", ratio, error_feedback=True)
    p = c.compress(g)
    tc = _median_time(lambda: c.compress(g), reps)
    td = _median_time(lambda: G.decompress(p), reps)
    return tc / n, td / n


def measure_codec_method(method: str, ratio: float, value_bits: int = 2, n: int = 1 << 20,
                         reps: int = 7) -> Tuple[float, float]:
    """``(compress s/element, decompress s/element)`` of a library compressor with error
    feedback (one library thread)."""
    from tritter_accel import grad as G
    from tritter_accel import set_num_threads
    set_num_threads(1)
    g = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    c = G.Compressor(n, method, ratio, error_feedback=True, value_bits=value_bits)
    p = c.compress(g)
    tc = _median_time(lambda: c.compress(g), reps)
    td = _median_time(lambda: G.decompress(p), reps)  # allocating, as the hook does
    return tc / n, td / n


def region_cost_pass(buckets, world, comp, reps: int = 9, threads: int = 1):
    """Set up what :func:`measure_region_cost` measures and return a function that
    runs one pass (``reps`` steps after one warm-up) and returns its median seconds
    per step; ``None`` at one rank (no work). See :func:`measure_region_cost`."""
    if world == 1:
        return None
    from tritter_accel import grad as G
    from tritter_accel import set_num_threads
    from tritter_accel.torch.compressors import _FusedRegionState
    clock = time.process_time if threads == 1 else time.perf_counter
    rng = np.random.default_rng(world)
    setups = []
    for n in buckets:
        x = _FusedRegionState(comp, n, world, 7, 0).x
        own = dict(method=comp.method, ratio=comp.owner_ratio, value_bits=comp.value_bits)
        src = G.RegionExchange(n, world, 0, own, own)
        gathered = src.compress(rng.standard_normal(n).astype(np.float32))
        if gathered.shape[1] != x.owner_slot_bytes:
            raise RuntimeError("owner slot sizes differ")  # same settings: cannot happen
        s0, e0 = x.regions[0]
        loc = dict(method=comp.local_method, ratio=comp.ratio, value_bits=comp.value_bits)
        other = G.Compressor(e0 - s0, **loc)
        received = np.zeros((world, x.slot_bytes), np.uint8)
        for i in range(world):
            p = other.compress(rng.standard_normal(e0 - s0).astype(np.float32))
            received[i, :p.size] = p
        setups.append((n, x, received, gathered, np.empty(n, np.float32)))

    def one_pass() -> float:
        set_num_threads(threads)
        total = 0.0
        for n, x, received, gathered, out in setups:
            ts = []
            for _ in range(reps + 1):
                g = rng.standard_normal(n).astype(np.float32)
                t = clock()
                x.compress(g)
                t1 = clock() - t
                t = clock()
                x.reduce(received)
                t2 = clock() - t
                t = clock()
                x.decode(gathered, out=out)  # into a kept buffer, as the hook does
                ts.append(t1 + t2 + clock() - t)
            total += statistics.median(ts[1:])
        return total
    return one_pass


def measure_region_costs(cases, passes: int = 5, threads: int = 1) -> dict:
    """:func:`measure_region_cost` for many ``(key, buckets, world, comp)`` cases at
    once, their passes interleaved (pass 1 of every case, then pass 2, ...), so a
    burst of other tenants' work inflates one pass of every case alike rather than
    all passes of one; each case's cost is the least of its ``passes`` medians."""
    runs = {key: region_cost_pass(b, w, c, threads=threads) for key, b, w, c in cases}
    best = {key: (0.0 if f is None else float("inf")) for key, f in runs.items()}
    for _ in range(passes):
        for key, f in runs.items():
            if f is not None:
                best[key] = min(best[key], f())
    return best


def measure_region_cost(buckets, world, comp, reps: int = 9, threads: int = 1, passes: int = 5) -> float:
    """Seconds of compression work one rank spends per step in the region exchange
    ``comp`` at ``world`` ranks, **measured** with the library's one-call-per-phase
    exchange (``grad.RegionExchange``, what the hook runs) on the model's buckets:
    rank 0 compresses its N regions, reduces N received payloads of its region and
    decodes N owner payloads into a kept buffer (process CPU time, one library
    thread; the least of ``passes`` medians over ``reps`` steps each: on a shared
    machine, bursts of other tenants' work inflate whole medians of 9 by up to 2x).
    The received rows are N payloads of rank 0's region made from
    N other gradients by a compressor with the ranks' settings, the gathered rows
    the regions of a second exchange set up with the owners' settings: the same
    sizes and entry counts the real rows have, without N ranks' state in memory
    (N up to 1024). ``threads`` > 1: the library runs the regions of large buckets on
    that many threads (same bits) and the time is wall-clock instead of CPU time."""
    f = region_cost_pass(buckets, world, comp, reps=reps, threads=threads)
    return 0.0 if f is None else min(f() for _ in range(passes))


def codec_time(buckets, exchange, world, c_el, d_el) -> float:
    """Compression work per rank and step (s) from per-element costs."""
    n = sum(buckets)
    if exchange in ("dense", "powersgd") or world == 1:
        return 0.0  # PowerSGD's own matmuls are not modelled (favours PowerSGD)
    if exchange == "qtopk-allgather":
        return n * c_el + world * n * d_el  # every rank decodes every rank's payload
    raise ValueError(exchange)  # region exchanges: measure_region_cost


# -- the report -----------------------------------------------------------------------------------

def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return platform.processor()


def simulate(args) -> List[str]:
    ratios = [float(r) for r in args.ratios.split(",")]
    worlds = [int(w) for w in args.worlds.split(",")]
    links = [float(x) for x in args.links.split(",")]
    alpha = args.alpha_us * 1e-6
    shapes = None
    if args.model == "charlm":
        from experiments.grad_compression.models import CharGRU
        import torch
        torch.manual_seed(0)
        model = CharGRU()
        buckets = measure_buckets(model)
        shapes = [tuple(p.shape) for p in model.parameters()]
        compute = measure_compute_charlm(batch=args.batch) if args.compute_ms is None else args.compute_ms / 1e3
        label = f"char LM (GRU 256, {sum(buckets):,} parameters)"
    elif args.model.startswith("params:"):
        params = int(float(args.model.split(":", 1)[1]))
        buckets = synthetic_buckets(params)
        compute = (args.compute_ms or 0.0) / 1e3
        label = f"{params:,}-parameter model (DDP default buckets)"
    else:
        raise SystemExit(f"--model: charlm or params:N, got {args.model!r}")
    codec = {r: measure_codec(r) for r in ratios}
    codec_threads = args.codec_threads
    regions = [(sp, region_comp(sp)) for sp in args.regions.split(",") if sp]
    rcodecs = {}
    for _, comp in regions:
        loc = (comp.local_method, comp.ratio if comp.local_method != "ternary" else 0.0)
        for key, v in ((loc, comp.value_bits), ((comp.method, comp.owner_ratio), comp.value_bits)):
            if key not in rcodecs:
                rcodecs[key] = measure_codec_method(key[0], key[1] or 32.0, v)
    lines = [
        "# Compressed data-parallel exchange at N ranks: simulated from measured inputs",
        "",
        f"- command: `python -m experiments.grad_compression.simulate {' '.join(sys.argv[1:])}`".rstrip(),
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {cpu_name()}",
        f"- model: {label}; DDP buckets (measured): {', '.join(f'{b:,}' for b in buckets)} elements",
        f"- compute per step (measured{'' if args.compute_ms is None else ': given'}): {compute * 1e3:.2f} ms"
        + (f" (batch {args.batch}, 1 thread)" if args.model == "charlm" and args.compute_ms is None else ""),
        "- library quantized top-k + EF, one thread (measured): "
        + "; ".join(f"{r:g}x compress {1 / c / 1e9 * 4:.2f} GB/s, decode {1 / d / 1e9 * 4:.2f} GB/s of f32"
                    for r, (c, d) in codec.items())
        + "".join(f"\n- region exchange `{sp}` ({comp.describe()}), library codecs with EF, one thread "
                  "(measured): " + "; ".join(
                      f"{m} {r:g}x compress {4e-9 / c:.2f} GB/s, decode {4e-9 / d:.2f} GB/s"
                      if r else f"{m} compress {4e-9 / c:.2f} GB/s, decode {4e-9 / d:.2f} GB/s"
                      for (m, r), (c, d) in rcodecs.items()
                      if (m, r) in ((comp.local_method, comp.ratio if comp.local_method != "ternary" else 0.0),
                                    (comp.method, comp.owner_ratio)))
                  for sp, comp in regions),
        f"- link: bandwidth as given, {args.alpha_us:g} µs per message; no overlap of communication with "
        "compute (conservative for every method alike); PowerSGD's own matrix products are not counted.",
        "",
        "## Traffic per rank and step, relative to ring all-reduce of the f32 gradient at the same N",
        "",
        "| N | dense MB/rank/step | " + " | ".join(
            f"qtopk {r:g}x all_gather | qtopk {r:g}x region" for r in ratios)
        + "".join(f" | `{sp}`" for sp, _ in regions)
        + (" | PowerSGD r4" if shapes else "") + " |",
        "|---|---|" + "---|---|" * len(ratios) + "---|" * len(regions) + ("---|" if shapes else ""),
    ]
    for n in worlds:
        dense = traffic(buckets, "dense", n)
        cells = [f"{dense / 1e6:.3f}"]
        for r in ratios:
            cells.append(f"{dense / traffic(buckets, 'qtopk-allgather', n, r):.1f}x")
            cells.append(f"{dense / traffic(buckets, 'qtopk-region', n, r):.1f}x")
        for _, comp in regions:
            cells.append(f"{dense / traffic(buckets, 'qtopk-region', n, comp=comp):.1f}x")
        if shapes:
            cells.append(f"{dense / traffic(buckets, 'powersgd', n, powersgd_shapes=shapes):.1f}x")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "## Step time speed-up over uncompressed all-reduce (compute + compression + communication)",
              "", "Above 1: compression pays off; below 1 (bold): it costs time.", ""]
    methods = [(f"qtopk {r:g}x all_gather", "qtopk-allgather", r) for r in ratios] + \
              [(f"qtopk {r:g}x region", region_comp(f"lib-rqtopk:{r:g}"), r) for r in ratios] + \
              [(f"`{sp}`", comp, 0.0) for sp, comp in regions]
    # the region exchanges' work per rank, measured at every N (the fused library calls)
    rcost = measure_region_costs([((id(ex), n), buckets, n, ex) for _, ex, _ in methods
                                  if not isinstance(ex, str) for n in worlds],
                                 threads=codec_threads)
    region_methods = [(name, ex) for name, ex, _ in methods if not isinstance(ex, str)]
    at = lines.index("## Step time speed-up over uncompressed all-reduce (compute + compression + communication)")
    lines[at:at] = [
        "## Compression work per rank and step (ms)", "",
        "Region exchanges: **measured** at every N with the library's one-call-per-phase exchange "
        "(`grad.RegionExchange`, what the hook runs) on the model's buckets: rank 0's phase 1 "
        "(compress N regions), phase 2 (decode and sum N payloads of its region, re-compress) and "
        "decode of the N owner payloads, the least of 5 medians of 9 steps, the passes of every exchange "
        "and N interleaved (a shared machine's bursts only add, and then hit all alike), "
        + ("process CPU time, one library thread. " if codec_threads == 1 else
           f"wall time, {codec_threads} library threads (the regions of large buckets in parallel). ")
        + 
        "all_gather: modelled from the 1 Mi-element codec speeds above (compress n, decode N n). "
        "Compare with what the exchange saves: the uncompressed all-reduce time in the step-time "
        "tables below, minus the exchange's own communication.", "",
        "| N | " + " | ".join([f"qtopk {r:g}x all_gather" for r in ratios] + [m for m, _ in region_methods]) + " |",
        "|---|" + "---|" * (len(ratios) + len(region_methods)),
    ] + [
        f"| {n} | " + " | ".join(
            [f"{codec_time(buckets, 'qtopk-allgather', n, *codec[r]) * 1e3:.2f}" for r in ratios]
            + [f"{rcost[(id(ex), n)] * 1e3:.2f}" for _, ex in region_methods]) + " |"
        for n in worlds
    ] + [""]
    # the target's test: the work against what the exchange saves on a 10 Gbit/s link
    beta10 = 10e9 / 8
    at = lines.index("## Step time speed-up over uncompressed all-reduce (compute + compression + communication)")
    lines[at:at] = [
        "## Work against what it saves at 10 Gbit/s (ms per rank and step)", "",
        "Saving = uncompressed ring all-reduce time minus the exchange's own communication "
        f"(alpha {alpha * 1e6:g} µs a message); the exchange pays off when work < saving.", "",
        "| N | " + " | ".join(f"{m}: work / saving" for m, _ in region_methods) + " |",
        "|---|" + "---|" * len(region_methods),
    ] + [
        f"| {n} | " + " | ".join(
            (lambda w, sv: f"{w:.2f} / {sv:.2f} " + ("(pays)" if w < sv else "(**costs**)"))(
                rcost[(id(ex), n)] * 1e3,
                (comm_time(buckets, "dense", n, 1, beta10, alpha)
                 - comm_time(buckets, "qtopk-region", n, 0.0, beta10, alpha, comp=ex)) * 1e3)
            for _, ex in region_methods) + " |"
        for n in worlds
    ] + [""]
    if shapes:
        methods.append(("PowerSGD r4", "powersgd", 32.0))
    for gbit in links:
        beta = gbit * 1e9 / 8
        lines += [f"### {gbit:g} Gbit/s", "",
                  "| N | uncompressed step ms | " + " | ".join(m[0] for m in methods) + " |",
                  "|---|---|" + "---|" * len(methods)]
        for n in worlds:
            base = compute + comm_time(buckets, "dense", n, 1, beta, alpha)
            cells = [f"{base * 1e3:.2f}"]
            for _, ex, r in methods:
                if not isinstance(ex, str):  # a region exchange: its measured work at this N
                    t = compute + rcost[(id(ex), n)] + comm_time(
                        buckets, "qtopk-region", n, 0.0, beta, alpha, comp=ex)
                else:
                    c_el, d_el = codec.get(r, (0.0, 0.0))
                    t = compute + codec_time(buckets, ex, n, c_el, d_el) + comm_time(
                        buckets, ex, n, r, beta, alpha, powersgd_shapes=shapes)
                s = base / t
                cells.append(f"{s:.2f}" if s >= 1 else f"**{s:.2f}**")
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def check(path: pathlib.Path) -> List[str]:
    """Simulated vs metered traffic of recorded gloo runs (needs hook_bucket_sizes and step_traffic)."""
    rows = ["| run | N | metered bytes/rank/step | simulated | ratio |", "|---|---|---|---|---|"]
    for line in path.read_text().splitlines():
        r = json.loads(line)
        spec, world = r.get("method", ""), r.get("world", 2)
        sizes, st = r.get("hook_bucket_sizes"), r.get("traffic_per_step")
        if not sizes or st is None:
            continue
        name, _, arg = spec.partition(":")
        ratio = float(arg.split(":")[0]) if arg else 32.0
        comp = None
        if name in ("lib-rqtopk", "lib-rqtopkm", "lib-rtqtopk", "lib-rtopk"):
            ex, comp = "qtopk-region", region_comp(spec)
        else:
            ex = {"none": "dense", "lib-qtopk": "qtopk-allgather"}.get(name)
        if ex is None:
            continue
        sim = traffic(sizes, ex, world, ratio, comp=comp)
        rows.append(f"| `{spec}` seed {r.get('seed')} | {world} | {st:,.0f} | {sim:,.0f} | {st / sim:.4f} |")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="charlm", help="charlm (measured buckets) or params:N")
    ap.add_argument("--ratios", default="32,100")
    ap.add_argument("--regions", default="", help="comma-separated region-exchange specs to add "
                    "(e.g. lib-rqtopk:32:3,lib-rtqtopk:40:3)")
    ap.add_argument("--worlds", default="2,4,8,16,64,256,1024")
    ap.add_argument("--links", default="1,10,25,100,400", help="Gbit/s")
    ap.add_argument("--alpha-us", type=float, default=10.0, help="latency per message (µs)")
    ap.add_argument("--batch", type=int, default=32, help="per-rank batch of the measured char-LM step")
    ap.add_argument("--codec-threads", type=int, default=1,
                    help="library threads for the region exchange's measured work (1: CPU time; more: wall time)")
    ap.add_argument("--compute-ms", type=float, default=None, help="compute per step instead of measuring it")
    ap.add_argument("--check", default=None, help="JSON lines of gloo runs to cross-check traffic against")
    ap.add_argument("--out", default=None, help="write the markdown report here (default: print)")
    args = ap.parse_args(argv)
    lines = simulate(args)
    if args.check:
        lines += ["", "## Cross-check against gloo runs (traffic metered around the real collectives)", ""]
        lines += check(pathlib.Path(args.check))
    text = "\n".join(lines) + "\n"
    if args.out:
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
