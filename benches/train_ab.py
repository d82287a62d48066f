#!/usr/bin/env python3
"""A/B of two builds of the library on the training-step kernels, in interleaved processes.

    python benches/train_ab.py LIB_A.so LIB_B.so [--n 4096] [--batches 64 256] [--pairs 3] [--threads 2]

Each measurement is a fresh process loading one library (TRITTER_ACCEL_LIB)
that times, at each batch, the parts of a TernaryLinear training step the
library computes (medians of `--calls` calls): the weight quantization of
both modes (bittorch: absmax per row with threshold; bitnet: absmean per
tensor), the forward GEMM with f32 and with int8 (fake-quantized)
activations, and the input-gradient GEMM. A and B alternate `--pairs` times,
so machine noise hits both; printed: median ms of A and B and A / B
(above 1: B is faster).
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

CHILD = "--child"


def child(n, batches, threads, calls):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python-ctypes"))
    import torch

    import tritter_accel as ta
    from tritter_accel.torch import TernaryLinear

    torch.set_num_threads(threads)
    ta.set_num_threads(threads)
    torch.manual_seed(0)
    bt, bn = TernaryLinear(n, n), TernaryLinear(n, n, mode="bitnet")
    with torch.no_grad():
        bn.weight.copy_(bt.weight)
    ops = torch.ops.tritter

    def med(f):
        f()
        ts = []
        for _ in range(calls):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1e3

    def quant(m):
        s = m.spec
        return lambda: ops.quantize_weight(m.weight.detach(), s.method, s.granularity, s.group_size, s.threshold,
                                           s.eps)

    out = {"quantize bittorch": med(quant(bt)), "quantize bitnet": med(quant(bn))}
    s = bt.spec
    pk, sc = bt.quantized()
    for b in batches:
        x, gy = torch.randn(b, n), torch.randn(b, n)
        for act, name in ((0, "f32"), (1, "int8")):
            out[f"b{b} forward {name}"] = med(lambda: ops.ternary_linear(x, bt.weight, pk, sc, bt.bias, s.granularity,
                                                                          s.group_size, act))
        out[f"b{b} grad input"] = med(lambda: ops.ternary_linear_grad_input(gy, pk, sc, n, s.granularity,
                                                                            s.group_size))
    print(json.dumps(out))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        n, threads, calls = (int(v) for v in sys.argv[2:5])
        child(n, [int(b) for b in sys.argv[5:]], threads, calls)
        return
    p = argparse.ArgumentParser()
    p.add_argument("lib_a")
    p.add_argument("lib_b")
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--batches", type=int, nargs="*", default=[64, 256])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=7)
    a = p.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown")
    print(f"cpu: {cpu}; load average {os.getloadavg()[0]:.2f}; {a.n}x{a.n}, {a.threads} threads, "
          f"{a.pairs} A/B pairs of processes, medians of {a.calls} calls each")
    res = {"A": [], "B": []}
    for _ in range(a.pairs):
        for k, lib in (("A", a.lib_a), ("B", a.lib_b)):
            env = dict(os.environ, TRITTER_ACCEL_LIB=os.path.abspath(lib))
            cmd = [sys.executable, __file__, CHILD, str(a.n), str(a.threads), str(a.calls), *map(str, a.batches)]
            res[k].append(json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True,
                                                    text=True).stdout.strip().splitlines()[-1]))
    print(f"{'part':24} {'A ms':>9} {'B ms':>9} {'A / B':>7}")
    for part in res["A"][0]:
        ma = statistics.median(r[part] for r in res["A"])
        mb = statistics.median(r[part] for r in res["B"])
        print(f"{part:24} {ma:9.2f} {mb:9.2f} {ma / mb:7.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
