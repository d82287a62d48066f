#!/usr/bin/env python3
"""NumPy twins of benches/avx2.rs and the ratio table (issue 19).

    cargo bench --bench avx2 -- --json target/avx2.json
    python benches/avx2_numpy.py target/avx2.json

Reads the Rust medians (one thread, the levels the bench ran), times the same
operations in NumPy in this process (medians, process CPU time like the Rust
bench; TRITTER_BENCH_WALL=1 for wall time, one BLAS thread) and prints a
Markdown table of NumPy / tritter ratios with the CPU level of the Rust run.
scripts/bench-avx2.sh runs both.
"""
import json
import os
import platform
import sys
import time

for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = "1"

import numpy as np  # noqa: E402

WALL = bool(os.environ.get("TRITTER_BENCH_WALL"))
clock = time.perf_counter_ns if WALL else time.process_time_ns
DIM, N = 10_000, 10_000


def median_s(fn, reps=15, inner=1):
    fn()
    ts = []
    for _ in range(reps):
        t0 = clock()
        for _ in range(inner):
            fn()
        ts.append((clock() - t0) / inner)
    return float(np.median(ts)) * 1e-9


def fmt(s):
    if s is None:
        return "n/a"
    return f"{s * 1e3:.3f} ms" if s >= 1e-3 else f"{s * 1e6:.2f} µs"


def main():
    rs = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "target/avx2.json"))
    level = rs["level"]

    def ours(group_prefix, name_prefix):
        """The Rust median of the first row whose group and name start so, at
        the run's level when the name carries one."""
        hits = [r for r in rs["rows"] if r["group"].startswith(group_prefix)
                and r["name"].strip().startswith(name_prefix)]
        at = [r for r in hits if r["name"].endswith(f"@{level}")]
        pick = (at or hits or [None])[0]
        return None if pick is None else pick["secs"]

    rng = np.random.default_rng(0)
    rows = []

    def row(op, t_np, t_ours, what):
        ratio = "n/a" if t_ours is None else f"{t_np / t_ours:.1f}x"
        rows.append((op, fmt(t_np), fmt(t_ours), what, ratio))
        print(f"  {op}: NumPy {fmt(t_np)}, tritter {fmt(t_ours)}", file=sys.stderr, flush=True)

    # quantize + pack (benches/quant_baseline.py's method), 4096 x 4096
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from quant_baseline import quantize_pack
    w = rng.uniform(-1, 1, (4096, 4096)).astype(np.float32)
    row("quantize + 2-bit pack, 4096² f32 (AbsMean per row)", median_s(lambda: quantize_pack(w), reps=5),
        ours("quant", "quantize_pack_2bit"), "quantize_pack_2bit")
    row("… against from_float end to end (+ compute layout)", median_s(lambda: quantize_pack(w), reps=5),
        ours("quant", "TernaryMatrix::from_f32"), "TernaryMatrix::from_f32")
    del w

    # precision: ml_dtypes / NumPy casts, 1 Mi f32
    x = (rng.random(1 << 20, dtype=np.float32) - 0.5) * 1000
    try:
        import ml_dtypes
        row("f32 -> bf16 (RNE), 1 Mi", median_s(lambda: x.astype(ml_dtypes.bfloat16), inner=10),
            ours("precision", "f32 -> bf16 RNE @Avx2") or ours("precision", "f32 -> bf16 RNE"),
            "convert::f32_to_bf16 (ml_dtypes astype)")
    except ImportError:
        print("(ml_dtypes missing: no bf16 row)", file=sys.stderr)
    row("f32 -> f16 (RNE), 1 Mi", median_s(lambda: x.astype(np.float16), inner=10),
        ours("precision", "f32 -> f16 RNE @Avx2") or ours("precision", "f32 -> f16 RNE"),
        "convert::f32_to_f16 (NumPy astype)")

    # VSA, dim 10,000 (benches/vsa_numpy.py's NumPy methods)
    a = rng.choice(np.array([-1, 1], np.int8), DIM)
    b = rng.choice(np.array([-1, 1], np.int8), DIM)
    af, bf = a.astype(np.float32), b.astype(np.float32)
    x100 = rng.choice(np.array([-1, 1], np.int8), (100, DIM))
    row("VSA bundle of 100 bipolar (sum, sign)", median_s(lambda: np.sign(x100.sum(0, dtype=np.int32))),
        ours("VSA bundle", "bundle packed"), "bundle::bundle, packed")
    row("VSA cosine of two bipolar (f32 dot)",
        median_s(lambda: float(af @ bf) / np.sqrt(float(np.count_nonzero(af)) * np.count_nonzero(bf)),
                 inner=100), ours("VSA cosine", "cosine packed"), "ops::cosine, packed")
    out = np.empty_like(a)
    row("VSA bind (MAP) into a buffer", median_s(lambda: np.multiply(a, b, out=out), inner=100),
        ours("VSA bind", "bind packed"), "ops::bind_words")
    store = rng.choice(np.array([-1, 1], np.int8), (N, DIM))
    q = rng.choice(np.array([-1, 1], np.int8), DIM)
    storef, qf = store.astype(np.float32), q.astype(np.float32)

    def topk_f32():
        s = storef @ qf
        idx = np.argpartition(-s, 10)[:10]
        return idx[np.argsort(-s[idx], kind="stable")]

    t_ours = ours("VSA top-10 of 10,000 x 10,000 trits, bipolar", "item memory top-10")
    row("VSA top-10 of 10k x 10k, bipolar: NumPy f32 matvec + argpartition", median_s(topk_f32, reps=7),
        t_ours, "ItemMemory::query_at")
    del storef
    bits, qbits = np.packbits(store > 0, axis=1), np.packbits(q > 0)

    def topk_bits():
        ham = np.bitwise_count(bits ^ qbits).sum(1, dtype=np.int32)
        idx = np.argpartition(ham, 10)[:10]
        return idx[np.argsort(ham[idx], kind="stable")]

    if hasattr(np, "bitwise_count"):
        row("… NumPy bit-packed xor + bitwise_count", median_s(topk_bits, reps=7), t_ours,
            "ItemMemory::query_at")

    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown"
    print(f"\nRust run: {rs['cpu']}; NumPy {np.__version__}, {model}, "
          f"{'wall' if WALL else 'process CPU'} time, one thread, load average {os.getloadavg()[0]:.1f}\n")
    print(f"| operation | NumPy | tritter (level {level}) | tritter path | NumPy / tritter |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
