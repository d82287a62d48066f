#!/usr/bin/env python3
"""A/B of two builds of the library on the batch-1 GEMV, in interleaved processes.

    python benches/gemv_ab.py LIB_A.so LIB_B.so [--threads 1 2] [--pairs 3] [--n 8192]

Each measurement is a fresh process loading one library (TRITTER_ACCEL_LIB):
three n x n matrices (2-bit, rotated so the weights come from memory, not
cache), median of 40 calls of `matmul` at batch 1 with int8 and with f32
activations; printed as GB/s of 2-bit weights. A and B alternate, `--pairs`
times per thread count and activation mode, so machine noise hits both.
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import time

CHILD = "--child"


def child(n, threads, act):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python-ctypes"))
    import numpy as np
    import tritter_accel as ta

    ta.set_num_threads(threads)
    rng = np.random.default_rng(0)
    ms = [ta.TernaryMatrix.from_float(rng.standard_normal((n, n), dtype=np.float32)) for _ in range(3)]
    x = rng.standard_normal((1, n), dtype=np.float32)
    out = np.empty((1, n), np.float32)
    for m in ms:
        m.matmul(x, act=act, out=out)
    ts = []
    for r in range(40):
        m = ms[r % 3]
        t0 = time.perf_counter()
        m.matmul(x, act=act, out=out)
        ts.append(time.perf_counter() - t0)
    print(f"{n * n / 4 / statistics.median(ts) / 1e9:.2f}")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
    p = argparse.ArgumentParser()
    p.add_argument("lib_a")
    p.add_argument("lib_b")
    p.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--n", type=int, default=8192)
    a = p.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               "unknown")
    print(f"cpu: {cpu}; load average {os.getloadavg()[0]:.2f}; GEMV {a.n}x{a.n} batch 1, GB/s of 2-bit weights")
    for act in ("int8", "f32"):
        for th in a.threads:
            res = {"A": [], "B": []}
            for _ in range(a.pairs):
                for k, lib in (("A", a.lib_a), ("B", a.lib_b)):
                    env = dict(os.environ, TRITTER_ACCEL_LIB=os.path.abspath(lib))
                    r = subprocess.run([sys.executable, __file__, CHILD, str(a.n), str(th), act], env=env,
                                       capture_output=True, text=True, check=True)
                    res[k].append(float(r.stdout.strip()))
            ma, mb = statistics.median(res["A"]), statistics.median(res["B"])
            print(f"{act:4} activations, {th} thread(s): A {' / '.join(f'{v:.2f}' for v in res['A'])}   "
                  f"B {' / '.join(f'{v:.2f}' for v in res['B'])}   B/A {mb / ma:.2f}x (medians)")


if __name__ == "__main__":
    main()
