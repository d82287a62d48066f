#!/usr/bin/env python3
"""f32 / bf16 dense baselines for the ternary matmul bench report.

Prints tab-separated lines `impl rows cols batch threads median_us` for
NumPy f32 (its BLAS; thread count from OPENBLAS_NUM_THREADS, set by the
caller) and, if importable, PyTorch bf16 (`torch.nn.functional.linear`).
Weights are cold: several matrices totalling more than 64 MiB rotate.

    python benches/matmul_baselines.py --threads N [--full] [--no-torch]
"""
import argparse
import statistics
import time

import numpy as np

COLD = 64 << 20


def timeit(fn, n_rot, lo, hi, budget=0.6):
    for i in range(n_rot):
        fn(i)
    ts = []
    start = time.perf_counter()
    i = n_rot
    while len(ts) < lo or (len(ts) < hi and time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn(i)
        ts.append((time.perf_counter() - t0) * 1e6)
        i += 1
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    if a.full:
        shapes = [(2048, 2048), (4096, 4096), (2560, 2560), (6912, 2560), (2560, 6912)]
        batches = [1, 8, 64, 256]
    else:
        shapes = [(2048, 2048), (4096, 4096), (6912, 2560)]
        batches = [1, 64]
    torch = None
    if not a.no_torch:
        try:
            import torch  # noqa: F811

            torch.set_num_threads(a.threads)
        except ImportError:
            torch = None
    rng = np.random.default_rng(0)
    for rows, cols in shapes:
        n = max(2, COLD // (rows * cols * 4) + 1)
        ws = [rng.standard_normal((rows, cols), dtype=np.float32) for _ in range(n)]
        wts = [w.T for w in ws]
        tw = None
        if torch is not None:
            nb = max(2, COLD // (rows * cols * 2) + 1)
            tw = [torch.from_numpy(ws[i % n]).to(torch.bfloat16) for i in range(nb)]
        for b in batches:
            x = rng.standard_normal((b, cols), dtype=np.float32)
            lo, hi = (10, 200) if b == 1 else (5, 40)
            us = timeit(lambda i: x @ wts[i % n], n, lo, hi)
            print(f"numpy_f32\t{rows}\t{cols}\t{b}\t{a.threads}\t{us:.2f}", flush=True)
            if tw is not None:
                tx = torch.from_numpy(x).to(torch.bfloat16)
                lin = torch.nn.functional.linear
                with torch.inference_mode():
                    us = timeit(lambda i: lin(tx, tw[i % len(tw)]), len(tw), lo, hi)
                print(f"torch_bf16\t{rows}\t{cols}\t{b}\t{a.threads}\t{us:.2f}", flush=True)


if __name__ == "__main__":
    main()
