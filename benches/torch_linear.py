#!/usr/bin/env python3
"""TernaryLinear vs nn.Linear (f32), same process, interleaved rounds, medians.

    python benches/torch_linear.py [--n 4096] [--rounds 15] [--batches 64 256]

Rows:
* forward, batch 1, no autograd (the layer caches its quantized weights until
  they change): TernaryLinear (bittorch mode: f32 activations; bitnet mode:
  int8 activations) vs nn.Linear;
* a training step's forward + backward (input, weight and bias gradients) at
  each batch: TernaryLinear (it re-quantizes the latent weights every step)
  vs nn.Linear, with our step's parts timed separately;
* weight memory of the layer as inference holds it (TernaryLinearInference)
  vs f32.
Ratios above 1 mean TernaryLinear is faster / smaller.
"""
import argparse
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python-ctypes"))

import torch  # noqa: E402

import tritter_accel as ta  # noqa: E402
from tritter_accel.torch import TernaryLinear, TernaryLinearInference  # noqa: E402


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns, rounds, warmup=2):
    for f in fns.values():
        for _ in range(warmup):
            f()
    ts = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            ts[k].append(timed(f))
    return {k: statistics.median(v) for k, v in ts.items()}


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--batches", type=int, nargs="*", default=[64, 256])
    args = p.parse_args(argv)
    n = args.n
    cpu = ta.cpu_model() if hasattr(ta, "cpu_model") else ""
    if not cpu:
        try:
            cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        except (OSError, StopIteration):
            cpu = "unknown"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"cpu: {cpu}; torch {torch.__version__} threads {torch.get_num_threads()} "
          f"({torch.backends.cpu.get_cpu_capability()}); library threads {ta.get_num_threads()}; "
          f"load average {load:.2f}; {n}x{n}, medians of {args.rounds} interleaved rounds")
    torch.manual_seed(0)
    dense = torch.nn.Linear(n, n)
    tern = TernaryLinear(n, n)
    bitnet = TernaryLinear(n, n, mode="bitnet")
    with torch.no_grad():
        for m in (tern, bitnet):
            m.weight.copy_(dense.weight)
            m.bias.copy_(dense.bias)
    rows = []

    # ---- forward, batch 1
    x1 = torch.randn(1, n)
    with torch.no_grad():
        tern(x1), bitnet(x1)  # fill the caches
        r = interleaved({"nn.Linear": lambda: dense(x1), "TernaryLinear": lambda: tern(x1),
                         "TernaryLinear bitnet": lambda: bitnet(x1)}, args.rounds * 4)
    for k in ("TernaryLinear", "TernaryLinear bitnet"):
        rows.append((f"forward batch 1 ({k})", r[k], r["nn.Linear"], 4.0))

    # ---- training step: forward + backward
    for b in args.batches:
        x = torch.randn(b, n, requires_grad=True)
        gy = torch.randn(b, n)

        def step(m):
            def f():
                m.zero_grad(set_to_none=True)
                x.grad = None
                m(x).backward(gy)
            return f

        s = tern.spec
        packed, scales = tern.quantized()
        y = tern(x)
        parts = {
            "quantize": lambda: torch.ops.tritter.quantize_weight(tern.weight.detach(), s.method, s.granularity,
                                                                  s.group_size, s.threshold, s.eps),
            "forward": lambda: torch.ops.tritter.ternary_linear(x.detach(), tern.weight, packed, scales, tern.bias,
                                                                s.granularity, s.group_size, s.act_mode),
            "grad input": lambda: torch.ops.tritter.ternary_linear_grad_input(gy, packed, scales, n, s.granularity,
                                                                              s.group_size),
            "grad weight (torch mm)": lambda: gy.t().mm(x.detach()),
            "nn fwd": lambda: torch.nn.functional.linear(x.detach(), dense.weight, dense.bias),
            "nn grad input": lambda: gy.mm(dense.weight),
        }
        del y
        r = interleaved({"nn.Linear": step(dense), "TernaryLinear": step(tern), "TernaryLinear bitnet": step(bitnet),
                         **parts}, args.rounds)
        for k in ("TernaryLinear", "TernaryLinear bitnet"):
            rows.append((f"forward+backward batch {b} ({k})", r[k], r["nn.Linear"], 1.0))
        print(f"  batch {b} parts (ms): " + ", ".join(f"{k} {r[k] * 1e3:.2f}" for k in parts))

    # ---- memory
    inf = TernaryLinearInference.from_linear(tern)
    f32_bytes = n * n * 4
    mem = inf.weight_memory_bytes()

    print(f"{'':44} {'TernaryLinear':>14} {'nn.Linear f32':>14} {'ratio':>7} {'target':>7} {'met':>4}")
    for name, ours, base, target in rows:
        ratio = base / ours
        print(f"{name:44} {ours * 1e3:11.3f} ms {base * 1e3:11.3f} ms {ratio:7.2f} {target:>6}x "
              f"{'yes' if ratio >= target else 'no':>4}")
    print(f"{'weight memory (TernaryLinearInference)':44} {mem:>12} B {f32_bytes:>12} B {f32_bytes / mem:7.2f} "
          f"{'14':>6}x {'yes' if f32_bytes / mem >= 14 else 'no':>4}")
    return rows


if __name__ == "__main__":
    main()
