"""NumPy twin of benches/vsa.rs (dim 10,000, bipolar unless stated) and the ratio table.

Run by scripts/bench-vsa.sh after `cargo bench --bench vsa`: reads criterion's medians
from target/criterion, times the same operations in NumPy in this process (median of
30 after warm-up, process CPU time like the Rust bench; TRITTER_BENCH_WALL=1 for wall
time), times tritter through ctypes for the operations where a ~1 µs Python call is
small, and prints a Markdown table of ratios.
"""
import json
import os
import pathlib
import platform
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIM, N = 10_000, 10_000
WALL = bool(os.environ.get("TRITTER_BENCH_WALL"))
clock = time.perf_counter_ns if WALL else time.process_time_ns


def median_ns(fn, reps=30, warm=3, inner=1):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t0 = clock()
        for _ in range(inner):
            fn()
        ts.append((clock() - t0) / inner)
    return float(np.median(ts))


def criterion_ns(group, bench):
    p = ROOT / "target" / "criterion" / group / bench / "new" / "estimates.json"
    if not p.exists():
        return None
    return json.loads(p.read_text())["median"]["point_estimate"]


def fmt(ns):
    if ns is None:
        return "n/a"
    return f"{ns / 1e6:.3f} ms" if ns >= 1e6 else (f"{ns / 1e3:.2f} µs" if ns >= 1e3 else f"{ns:.0f} ns")


def main():
    rng = np.random.default_rng(0)
    a = rng.choice(np.array([-1, 1], np.int8), DIM)
    b = rng.choice(np.array([-1, 1], np.int8), DIM)
    x100 = rng.choice(np.array([-1, 1], np.int8), (100, DIM))
    af, bf = a.astype(np.float32), b.astype(np.float32)
    rows = []

    def row(op, numpy_ns, ours_ns, ours_what):
        ratio = None if ours_ns is None else numpy_ns / ours_ns
        rows.append((op, fmt(numpy_ns), fmt(ours_ns), ours_what, "n/a" if ratio is None else f"{ratio:.1f}x"))
        print(f"  {op}: NumPy {fmt(numpy_ns)}, tritter {fmt(ours_ns)} ({ours_what})", file=sys.stderr, flush=True)

    print("timing NumPy ...", file=sys.stderr, flush=True)
    np_bind = median_ns(lambda: a * b, inner=100)
    row("bind (MAP)", np_bind, criterion_ns("vsa_bind", "packed_map"), "Rust, packed, new vector")
    out = np.empty_like(a)
    row("bind (MAP) into a buffer", median_ns(lambda: np.multiply(a, b, out=out), inner=100),
        criterion_ns("vsa_bind", "packed_map_into"), "Rust, packed, into a buffer (the C ABI path)")
    row("bundle of 100 (sum, sign)", median_ns(lambda: np.sign(x100.sum(0, dtype=np.int32))),
        criterion_ns("vsa_bundle100", "packed"), "Rust, packed")
    row("cosine", median_ns(lambda: float(af @ bf) / np.sqrt(float(np.count_nonzero(af)) * np.count_nonzero(bf)),
                            inner=100), criterion_ns("vsa_cosine", "packed"), "Rust, packed")
    row("permute (roll 37)", median_ns(lambda: np.roll(a, 37), inner=100), criterion_ns("vsa_permute", "packed"),
        "Rust, packed")

    # Top-10 over 10,000 stored bipolar vectors.
    print("building 10,000 x 10,000 stores ...", file=sys.stderr, flush=True)
    store = rng.choice(np.array([-1, 1], np.int8), (N, DIM))
    q = rng.choice(np.array([-1, 1], np.int8), DIM)
    bits = np.packbits(store > 0, axis=1)  # 1 bit a trit (bipolar only)
    qbits = np.packbits(q > 0)

    def topk_bitpacked():
        ham = np.bitwise_count(bits ^ qbits).sum(1, dtype=np.int32)
        idx = np.argpartition(ham, 10)[:10]
        return idx[np.argsort(ham[idx], kind="stable")]

    def best(kind):
        for level in ("avx512", "avx2", "neon", "scalar"):
            ns = criterion_ns("vsa_topk10_10k", f"{level}/{kind}")
            if ns is not None:
                return ns
        return None

    ours_bip = best("bipolar")
    row("top-10 of 10k, bipolar: NumPy bit-packed xor + bitwise_count", median_ns(topk_bitpacked, reps=15),
        ours_bip, "Rust, 1 thread")
    storef = store.astype(np.float32)
    qf = q.astype(np.float32)

    def topk_f32():
        s = storef @ qf
        idx = np.argpartition(-s, 10)[:10]
        return idx[np.argsort(-s[idx], kind="stable")]

    row("top-10 of 10k, bipolar: NumPy f32 matvec + argpartition", median_ns(topk_f32, reps=15), ours_bip,
        "Rust, 1 thread")
    del storef

    # Ternary (density 1/2): two bit planes in NumPy too.
    tern = (rng.integers(0, 2, (N, DIM)) * rng.choice(np.array([-1, 1], np.int8), (N, DIM))).astype(np.int8)
    qt = (rng.integers(0, 2, DIM) * rng.choice(np.array([-1, 1], np.int8), DIM)).astype(np.int8)
    P, M = np.packbits(tern > 0, axis=1), np.packbits(tern < 0, axis=1)
    qp, qm = np.packbits(qt > 0), np.packbits(qt < 0)
    nnz = np.count_nonzero(tern, axis=1)
    nq = np.count_nonzero(qt)

    def topk_ternary():
        agree = np.bitwise_count((P & qp) | (M & qm)).sum(1, dtype=np.int32)
        dis = np.bitwise_count((P & qm) | (M & qp)).sum(1, dtype=np.int32)
        cos = (agree - dis) / np.sqrt(nnz * float(nq))
        idx = np.argpartition(-cos, 10)[:10]
        return idx[np.argsort(-cos[idx], kind="stable")]

    row("top-10 of 10k, ternary (density 0.5), cosine: NumPy two bit planes",
        median_ns(topk_ternary, reps=15),
        best("ternary"),
        "Rust, 1 thread")

    # The same from Python through ctypes (includes the call overhead).
    try:
        sys.path.insert(0, str(ROOT / "python-ctypes"))
        import tritter_accel as ta
        ta.set_num_threads(1)
        mem = ta.ItemMemory(DIM)
        mem.add_many(ta.hv_pack(store))
        pq = ta.hv_pack(q)
        ours = median_ns(lambda: mem.query(pq, 10, "cosine"), reps=15)
        row("top-10 of 10k, bipolar: NumPy bit-packed (again)", median_ns(topk_bitpacked, reps=15), ours,
            "Python ItemMemory.query, 1 thread")
        px = ta.hv_pack(x100)
        row("bundle of 100 (again)", median_ns(lambda: np.sign(x100.sum(0, dtype=np.int32))),
            median_ns(lambda: ta.hv_bundle(px, DIM)), "Python hv_bundle (packed)")
        # Sanity: the nearest vector is the same (cosine order = Hamming order for bipolar).
        labels, _ = mem.query(pq, 1, "cosine")
        ham = np.bitwise_count(bits ^ qbits).sum(1)
        assert ham[int(labels[0])] == ham.min(), "tritter and NumPy disagree on the nearest vector"
    except ImportError as e:  # library not built
        print(f"(skipping the Python-side rows: {e})", file=sys.stderr)

    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"\nVSA, dim {DIM}: {'wall' if WALL else 'process CPU'} time, medians; NumPy {np.__version__}, "
          f"Python {platform.python_version()}, {cpu}, load average {os.getloadavg()[0]:.1f}\n")
    print("| operation | NumPy | tritter | tritter path | NumPy / tritter |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
