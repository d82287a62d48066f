"""Gradient compression vs NumPy in the same run, one thread, medians.

Run: cargo build --release && python benches/grad_numpy.py [n]   (default n = 10M f32 = 40 MB)
Prints GB/s of f32 gradient for each method, NumPy and tritter_accel side by side, and the ratio.
"""
import os
import pathlib
import sys
import time

os.environ.setdefault("TRITTER_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python-ctypes"))
import numpy as np  # noqa: E402
import tritter_accel as ta  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
REPS = 7


def median_time(f):
    f()
    ts = []
    for _ in range(REPS):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def np_count_sketch(g, buckets, seed=7):
    """ANCHORS.md's NumPy method: a hash of the index, then bincount."""
    i = np.arange(g.size, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = (i + np.uint64(seed)) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(29)
        h *= np.uint64(0xBF58476D1CE4E5B9)
    b = ((h >> np.uint64(32)) * np.uint64(buckets)) >> np.uint64(32)
    s = np.where(h & np.uint64(1), -1.0, 1.0).astype(np.float32)
    return np.bincount(b.astype(np.intp), weights=s * g, minlength=buckets)


def np_ternary(g, block=256, rng=np.random.default_rng(0)):
    """TernGrad in NumPy: block max scale, Bernoulli(|g|/s), 2-bit packing."""
    gb = g[: g.size // block * block].reshape(-1, block)
    s = np.abs(gb).max(1, keepdims=True)
    keep = rng.random(gb.shape, dtype=np.float32) * s < np.abs(gb)
    codes = (keep.astype(np.uint8) << (gb < 0).astype(np.uint8)).reshape(-1, 4)
    packed = codes[:, 0] | codes[:, 1] << 2 | codes[:, 2] << 4 | codes[:, 3] << 6
    return s, packed


def np_topk(g, k):
    idx = np.argpartition(np.abs(g), g.size - k)[g.size - k:]
    idx.sort()
    return idx.astype(np.uint32), g[idx]


def main():
    g = np.random.default_rng(1).standard_normal(N).astype(np.float32)
    gb = g.nbytes / 1e9
    rows = []

    buckets = N // 32
    t_np = median_time(lambda: np_count_sketch(g, buckets))
    t_ta = median_time(lambda: ta.count_sketch(g, 1, buckets, 7))
    rows.append((f"count sketch, 1 row, {buckets} buckets (32x)", t_np, t_ta))
    t_ta3 = median_time(lambda: ta.count_sketch(g, 3, N // 96, 7))
    rows.append((f"count sketch, 3 rows x {N // 96} (32x)", None, t_ta3))

    tern = ta.Compressor(N, "ternary", error_feedback=False)
    t_np = median_time(lambda: np_ternary(g))
    t_ta = median_time(lambda: tern.compress(g))
    rows.append(("ternary stochastic quantization + 2-bit pack (payload incl. CRC)", t_np, t_ta))

    k = N // 64
    topk = ta.Compressor(N, "topk", ratio=32, error_feedback=False)
    t_np = median_time(lambda: np_topk(g, k))
    t_ta = median_time(lambda: topk.compress(g))
    rows.append((f"top-k, k = n/64 (32x)", t_np, t_ta))

    t_ta = median_time(lambda: ta.compress_gradients_vsa(g, 1 / 32, 3))
    rows.append(("sparse ternary projection (32x)", None, t_ta))

    f = ta.FetchSGD(N, ratio=32, rows=3, momentum=0.9)
    table = f.sketch(g)
    t_ta = median_time(lambda: f.step(table))
    rows.append(("FetchSGD step (3 rows, 32x, k = cols/4)", None, t_ta))

    print(f"# tritter_accel.cpu_level() = {ta.cpu_level()}, load average {os.getloadavg()[0]:.1f}")
    print(f"n = {N} f32 ({gb * 1e3:.0f} MB), TRITTER_NUM_THREADS={os.environ['TRITTER_NUM_THREADS']}, "
          f"NumPy {np.__version__}, medians of {REPS}")
    print(f"| operation | NumPy GB/s | tritter_accel GB/s | ratio |")
    print(f"|---|---|---|---|")
    for name, tn, tt in rows:
        npcol = f"{gb / tn:.2f}" if tn else "-"
        ratio = f"{tn / tt:.1f}x" if tn else "-"
        print(f"| {name} | {npcol} | {gb / tt:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
