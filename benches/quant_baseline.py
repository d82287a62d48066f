#!/usr/bin/env python3
"""NumPy baseline for AbsMean per-row quantize + 2-bit pack (the canonical
layout: codes 00 = 0, 01 = +1, 10 = -1, weight j of a byte at bits 2j).

    python benches/quant_baseline.py     # prints GB/s of f32 input
"""
import statistics
import time

import numpy as np


def quantize_pack(w, eps=1e-5):
    s = np.abs(w).mean(axis=1, keepdims=True)
    q = w / (s + eps)
    t = (q > 0.5).astype(np.int8) - (q < -0.5).astype(np.int8)
    code = np.where(t == 1, 1, np.where(t == -1, 2, 0)).astype(np.uint8)
    code = code.reshape(w.shape[0], -1, 4)
    packed = code[..., 0] | (code[..., 1] << 2) | (code[..., 2] << 4) | (code[..., 3] << 6)
    return packed, s.ravel()


def main():
    w = np.random.default_rng(0).uniform(-1, 1, (4096, 4096)).astype(np.float32)
    quantize_pack(w)
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        quantize_pack(w)
        ts.append(time.perf_counter() - t0)
    med = statistics.median(ts)
    print(f"numpy quantize+pack 4096x4096: median {med * 1e3:.1f} ms = {w.nbytes / med / 1e9:.2f} GB/s")


if __name__ == "__main__":
    main()
