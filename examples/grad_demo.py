"""Gradient compression end to end with two simulated workers (NumPy only).

Run: python examples/grad_demo.py   (after `cargo build --release`)
"""
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python-ctypes"))
import tritter_accel as ta  # noqa: E402

dim = 1_000_000
rng = np.random.default_rng(0)
grads = [rng.standard_normal(dim).astype(np.float32) for _ in range(2)]
mean = (grads[0] + grads[1]) / 2


def cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# Non-linear methods: every worker compresses (with error feedback), payloads are
# allgathered, each is decoded, the results are averaged.
for method, ratio in [("topk", 32), ("ternary", None)]:
    comps = [ta.Compressor(dim, method, ratio=ratio or 1, seed=0, worker=w) for w in range(2)]
    payloads = [c.compress(g) for c, g in zip(comps, grads)]
    est = sum(ta.decompress(p) for p in payloads) / 2
    print(f"{method:8s} {dim * 4 / payloads[0].size:6.1f}x  {payloads[0].size} bytes/worker  cosine {cos(est, mean):.3f}")

# Linear: sketches are summed before decoding (what an allreduce does).
f = ta.FetchSGD(dim, ratio=32, rows=3, momentum=0.9, seed=0)
summed = sum(f.sketch(g) for g in grads) / 2
update = f.step(summed)  # identical on every rank; apply with momentum-free SGD
print(f"fetchsgd {dim * 4 / f.wire_bytes:6.1f}x  {f.wire_bytes} bytes/worker  {np.count_nonzero(update)} coordinates applied")

# Ternary accumulation of 4 micro-batches in packed form.
acc = ta.TernaryAccumulator(dim, block=256, seed=0)
for g in grads * 2:
    acc.add(g)
print(f"accumulator: {acc.memory_bytes} bytes for {dim} coordinates ({dim * 4 / acc.memory_bytes:.1f}x less than f32)")

# The seeds' API.
y, seed = ta.compress_gradients_vsa(grads[0], 0.1, 42)
back = ta.decompress_gradients_vsa(y, dim, seed)
print(f"projection {dim / y.size:.0f}x  cosine {cos(back, grads[0]):.3f} (unbiased but noisy: not recommended)")
