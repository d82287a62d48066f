#!/usr/bin/env python3
"""Merges the TSV timing files of scripts/bench-matmul.sh into one Markdown
table: medians in µs and ratios (baseline time / our time, > 1 = we are
faster). Standard library only.

    python benches/matmul_report.py FILE.tsv ...
    python benches/matmul_report.py --bitnet BITNET.tsv   # the same-process table
"""
import sys
from collections import defaultdict

# One core / two cores read bandwidth on these machines (ANCHORS.md, torch sum).
BW = {1: 38.5e9, 2: 74.6e9}

COLS = [
    ("read_floor_2bit", "read weights only"),
    ("tritter_i8", "ours i8"),
    ("tritter_i8_base3", "ours i8 base-3"),
    ("tritter_f32", "ours f32"),
    ("scalar_reference_i8", "scalar ref"),
    ("ndarray_f32", "ndarray f32 (1T)"),
    ("numpy_f32", "NumPy f32"),
    ("torch_bf16", "torch bf16"),
    ("ggml_tq2_0", "ggml TQ2_0"),
    ("ggml_tq1_0", "ggml TQ1_0"),
]


def read(paths):
    t = defaultdict(dict)
    for path in paths:
        for line in open(path):
            p = line.split()
            if len(p) != 6:
                continue
            name, r, c, b, th, us = p[0], int(p[1]), int(p[2]), int(p[3]), int(p[4]), float(p[5])
            t[(r, c, b, th)][name] = us
    return t


def bitnet_table(paths):
    """bitnet.cpp I2_S and this library timed in one process (the harness
    interleaves them): medians, and ratios > 1 where this library is faster."""
    t = read(paths)
    head = ["rows x cols", "batch", "thr", "read I2_S bytes", "bitnet I2_S", "ours i8", "ours i8 base-3",
            "ours f32", "bitnet / ours i8", "floor / ours i8", "base-3 / 2-bit", "GMAC/s ours i8"]
    print("Median µs per call (weights cold), same process:\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for k in sorted(t):
        v = t[k]
        f = lambda n: f"{v[n]:.1f}" if n in v else "–"
        def ratio(a, b):
            return f"{v[a] / v[b]:.2f}" if a in v and b in v else "–"
        gmac = f"{k[0] * k[1] * k[2] / v['tritter_i8'] / 1e3:.0f}" if "tritter_i8" in v else "–"
        cells = [f"{k[0]}x{k[1]}", str(k[2]), str(k[3]), f("read_floor_2bit"), f("bitnet_i2s"), f("tritter_i8"),
                 f("tritter_i8_base3"), f("tritter_f32"), ratio("bitnet_i2s", "tritter_i8"),
                 ratio("read_floor_2bit", "tritter_i8") if k[2] == 1 else "–",
                 ratio("tritter_i8_base3", "tritter_i8"), gmac]
        print("| " + " | ".join(cells) + " |")


def threads_table(path):
    """scripts/bench-matmul.sh --threads: lines `busy impl rows cols batch
    threads us`; the 2-thread speed-up over 1 thread at each number of busy
    loops the script ran beside the bench (> 1: two threads faster)."""
    t = defaultdict(dict)
    for line in open(path):
        p = line.split()
        if len(p) != 7:
            continue
        busy, name, r, c, b, th, us = int(p[0]), p[1], int(p[2]), int(p[3]), int(p[4]), int(p[5]), float(p[6])
        t[(name, r, c, busy)][th] = us
    head = ["impl", "rows x cols", "busy loops", "1 thread µs", "2 threads µs", "2T speed-up"]
    print("Batch 1, weights cold, medians:\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for (name, r, c, busy), v in sorted(t.items()):
        if 1 in v and 2 in v:
            print(f"| {name} | {r}x{c} | {busy} | {v[1]:.1f} | {v[2]:.1f} | {v[1] / v[2]:.2f} |")


def main():
    if sys.argv[1:2] == ["--threads"]:
        return threads_table(sys.argv[2])
    if sys.argv[1:2] == ["--bitnet"]:
        return bitnet_table(sys.argv[2:])
    t = defaultdict(dict)
    for path in sys.argv[1:]:
        for line in open(path):
            p = line.split()
            if len(p) != 6:
                continue
            name, r, c, b, th, us = p[0], int(p[1]), int(p[2]), int(p[3]), int(p[4]), float(p[5])
            t[(r, c, b, th)][name] = us
    present = [(k, h) for k, h in COLS if any(k in v for v in t.values())]
    head = ["rows x cols", "batch", "thr"] + [h for _, h in present]
    ratios = [
        ("2-bit floor / ours", lambda v, k: (k[0] * k[1] / 4 / BW[k[3]] * 1e6) / v["tritter_i8"]
         if k[2] == 1 else None),
        ("read-only / ours", lambda v, k: v["read_floor_2bit"] / v["tritter_i8"]),
        ("base-3 / 2-bit", lambda v, k: v["tritter_i8_base3"] / v["tritter_i8"]),
        ("ref / ours", lambda v, k: v["scalar_reference_i8"] / v["tritter_i8"]),
        ("NumPy / ours", lambda v, k: v["numpy_f32"] / v["tritter_i8"]),
        ("torch bf16 / ours", lambda v, k: v["torch_bf16"] / v["tritter_i8"]),
        ("TQ2_0 / ours", lambda v, k: v["ggml_tq2_0"] / v["tritter_i8"]),
        ("TQ1_0 / ours base-3", lambda v, k: v["ggml_tq1_0"] / v["tritter_i8_base3"]),
    ]
    rhead = []
    rows = []
    for k in sorted(t):
        v = t[k]
        cells = [f"{k[0]}x{k[1]}", str(k[2]), str(k[3])]
        cells += [f"{v[n]:.1f}" if n in v else "–" for n, _ in present]
        rc = []
        for name, f in ratios:
            try:
                r = f(v, k)
            except (KeyError, ZeroDivisionError):
                r = None
            rc.append(f"{r:.2f}" if r is not None else "–")
        rows.append((cells, rc))
    keep = [i for i in range(len(ratios)) if any(rc[i] != "–" for _, rc in rows)]
    rhead = [ratios[i][0] for i in keep]
    print("Median µs per call (weights cold):\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for cells, _ in rows:
        print("| " + " | ".join(cells) + " |")
    print("\nRatios (> 1: ours faster; floor = 2-bit weights at ANCHORS.md's "
          "38.5 GB/s 1 thread, 74.6 GB/s 2 threads; read-only = the same run's time to just "
          "read the same weights, split over the threads as the GEMV splits them):\n")
    h2 = ["rows x cols", "batch", "thr"] + rhead
    print("| " + " | ".join(h2) + " |")
    print("|" + "---|" * len(h2))
    for cells, rc in rows:
        print("| " + " | ".join(cells[:3] + [rc[i] for i in keep]) + " |")


if __name__ == "__main__":
    main()
