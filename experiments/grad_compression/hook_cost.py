"""What the region exchange's hook costs one rank per step, in this process.

    python -m experiments.grad_compression.hook_cost [--specs lib-rqtopk:32,lib-rqtopk:32:3] [--worlds 2,8]
        [--paths fused,per-region] [--rounds 3]

The simulator (``simulate.py``) models compression work from the library's
large-vector throughput. This measures the hook's own code path instead, Python
and ctypes calls included: for the char LM's DDP buckets (271,968 and 6,144
floats), N ranks' ``compress_regions``, every owner's ``reduce_owned`` and one
``decode`` (into the bucket's buffer, as the hook does) run in one process on one thread, and the per-rank time is the
median over steps (after two) of phase 1 / N + phase 2 / N + decode. No
collective runs (the bytes do not move), so this is the CPU side only.

``--paths``: ``fused`` is the default exchange (one library call per phase:
``tritter_accel.grad.RegionExchange``), ``per-region`` the Python loop over
regions it replaced (``RegionPayload(fused=False)``, same bytes), ``fused-copy``
the fused exchange decoding into a fresh array that is then copied into the
bucket (what the hook did before it decoded into the bucket's buffer). The paths are
measured in alternation, ``--rounds`` times each, and the medians of the rounds
are printed, with the ratio per-region / fused when both run.
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python-ctypes"))
sys.path.insert(0, str(REPO))

BUCKETS = [271_968, 6_144]  # the char LM's DDP buckets (measured by simulate.measure_buckets)


def cost(spec: str, world: int, steps: int = 12, fused: bool = True, into: bool = True):
    import torch
    from experiments.grad_compression.simulate import region_comp
    comp = region_comp(spec)
    comp.fused = fused and not comp.masking
    states = {b: [comp.new_state(b, 7, r) for r in range(world)] for b in BUCKETS}
    rng = np.random.default_rng(0)
    gs = {b: [torch.from_numpy(rng.standard_normal(b).astype(np.float32)) for _ in range(world)] for b in BUCKETS}
    bucket = {b: torch.zeros(b) for b in BUCKETS}  # what the hook writes the update into
    ph1, ph2, dec = [], [], []
    for step in range(steps):
        a = b_ = c = 0.0
        for n in BUCKETS:
            t = time.process_time()
            slots = [comp.compress_regions(gs[n][r], states[n][r], step, r, world) for r in range(world)]
            a += (time.process_time() - t) / world
            t = time.process_time()
            owned = [comp.reduce_owned(torch.stack([slots[i][j] for i in range(world)]), states[n][j], step, j, world)
                     for j in range(world)]
            b_ += (time.process_time() - t) / world
            t = time.process_time()
            if into:  # the hook: decode straight into the bucket's buffer
                comp.decode(owned, n, states[n][0], step, world, out=bucket[n])
            else:  # the hook before: a fresh update, then copied into the bucket
                bucket[n].copy_(comp.decode(owned, n, states[n][0], step, world))
            c += time.process_time() - t
        ph1.append(a), ph2.append(b_), dec.append(c)
    med = [statistics.median(x[2:]) * 1e3 for x in (ph1, ph2, dec)]
    return med + [sum(med)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--specs", default="lib-rqtopk:32,lib-rqtopk:32:3,lib-rqtopk:100")
    ap.add_argument("--worlds", default="2,8")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--paths", default="fused,per-region")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    import torch
    from tritter_accel import set_num_threads
    set_num_threads(1)
    torch.set_num_threads(1)
    paths = [p for p in args.paths.split(",") if p]
    for p in paths:
        if p not in ("fused", "fused-copy", "per-region"):
            raise SystemExit(f"--paths: 'fused', 'fused-copy' or 'per-region', got {p!r}")
    print("| exchange | N | path | phase 1: compress regions (ms) | phase 2: owner sum + re-compress (ms) "
          "| decode (ms) | per rank and step (ms) |")
    print("|---|---|---|---|---|---|---|")
    for spec in [s for s in args.specs.split(",") if s]:
        for w in [int(x) for x in args.worlds.split(",")]:
            runs = {p: [] for p in paths}
            for _ in range(max(1, args.rounds)):
                for p in paths:
                    runs[p].append(cost(spec, w, args.steps, fused=p != "per-region", into=p != "fused-copy"))
            tot = {}
            for p in paths:
                med = [statistics.median(r[i] for r in runs[p]) for i in range(4)]
                tot[p] = med[3]
                print(f"| `{spec}` | {w} | {p} | {med[0]:.2f} | {med[1]:.2f} | {med[2]:.2f} | {med[3]:.2f} |")
            for other in ("per-region", "fused-copy"):
                if other in tot and "fused" in tot:
                    print(f"|  |  | {other} / fused |  |  |  | {tot[other] / tot['fused']:.2f}x |")


if __name__ == "__main__":
    main()
