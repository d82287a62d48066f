#!/usr/bin/env python3
"""f32-activation ternary GEMV (the default `act`) against NumPy's f32 GEMV
of the same shape, in one process, interleaved rounds, weights cold for both
(each call uses the next of enough matrices to exceed 64 MiB).

    TRITTER_ACCEL_LIB=target/release/libtritter_accel.so \\
      python benches/matmul_f32_vs_numpy.py [--shapes 4096x4096,2048x2048] [--threads 1]

Prints `impl rows cols 1 threads median_us` lines and the ratio NumPy / ours
(> 1: ours faster). NumPy runs with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset
and OPENBLAS_NUM_THREADS = --threads (set before NumPy loads).
"""
import argparse
import os
import statistics
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--shapes", default="4096x4096,2048x2048")
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--rounds", type=int, default=7)
a = ap.parse_args()
for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(v, None)
for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = str(a.threads)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python-ctypes"))
import tritter_accel as ta  # noqa: E402

COLD = 64 << 20


def block(fn, n, reps):
    ts = []
    for i in range(reps):
        t0 = time.perf_counter()
        fn(i % n)
        ts.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(ts)


def main():
    ta.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    print(f"# tritter_accel.cpu_level() = {ta.cpu_level()}, threads {a.threads}", file=sys.stderr)
    for s in a.shapes.split(","):
        rows, cols = map(int, s.split("x"))
        nf = max(2, COLD // (rows * cols * 4) + 1)
        dense = [rng.standard_normal((rows, cols), dtype=np.float32) for _ in range(nf)]
        dts = [w.T for w in dense]
        t = rng.integers(-1, 2, size=(rows, cols), dtype=np.int8)
        nt = max(2, COLD // (rows * cols // 4) + 1)
        mats = [ta.TernaryMatrix.from_ternary(t, np.ones((rows, 1), np.float32)) for _ in range(nt)]
        x = rng.standard_normal((1, cols), dtype=np.float32)
        out = np.empty((1, rows), np.float32)
        for i in range(max(nf, nt)):  # warm-up: touch everything once
            x @ dts[i % nf]
            mats[i % nt].matmul(x, out=out)
        med = {"numpy_f32": [], "tritter_f32": [], "tritter_i8": []}
        for _ in range(a.rounds):
            med["numpy_f32"].append(block(lambda i: x @ dts[i], nf, 3 * nf))
            med["tritter_f32"].append(block(lambda i: mats[i].matmul(x, out=out), nt, 3 * nt))
            med["tritter_i8"].append(block(lambda i: mats[i].matmul(x, act="int8", out=out), nt, 3 * nt))
        m = {k: statistics.median(v) for k, v in med.items()}
        for k, v in m.items():
            print(f"{k}\t{rows}\t{cols}\t1\t{a.threads}\t{v:.2f}")
        print(f"# {rows}x{cols}: NumPy f32 / ours f32 = {m['numpy_f32'] / m['tritter_f32']:.2f}, "
              f"NumPy / ours int8 = {m['numpy_f32'] / m['tritter_i8']:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
