#!/usr/bin/env python3
"""GPU benchmark of tritter-accel's CUDA kernels against cuBLAS (through
PyTorch) and the device-to-device copy bandwidth, all in one run.

    TRITTER_ACCEL_LIB=path/to/libtritter_accel.so python3 benches/gpu_bench.py [--md OUT.md] [--quick]

Needs a CUDA build of the library (`cargo build --release --features cuda`)
and PyTorch with CUDA. scripts/gpu-check.sh runs it after the GPU tests.

Method (see the device notes): every time is the median over repetitions
of CUDA-event timings. Each repetition replays a CUDA graph of `CALLS`
calls whose inputs rotate over enough copies to exceed twice the L2 cache,
so weights stream from HBM; the per-call time is the replay time / CALLS
(the eager per-call time, which includes host overhead, is printed too).
Bytes moved count each input read once and each output written once;
GB/s is bytes / time, printed next to the measured copy bandwidth
(bytes read + written by a 1 GiB `copy_`). Every timed tritter-accel
configuration is first checked against a float64 PyTorch reference.
"""
import argparse
import ctypes
import datetime
import os
import pathlib
import statistics
import subprocess
import sys

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python-ctypes"))
from tritter_accel import _c_api as C  # noqa: E402
from tritter_accel._lib import check, lib  # noqa: E402

DEV = torch.device("cuda", 0)
_DT = {
    torch.float32: (C.TRITTER_DL_FLOAT, 32),
    torch.bfloat16: (C.TRITTER_DL_BFLOAT, 16),
    torch.float16: (C.TRITTER_DL_FLOAT, 16),
    torch.int8: (C.TRITTER_DL_INT, 8),
    torch.uint8: (C.TRITTER_DL_UINT, 8),
}


class DL:
    """A borrowed tritter_dl_tensor_t over a CUDA torch tensor."""

    def __init__(self, t):
        self.t = t
        self._shape = (ctypes.c_int64 * max(t.dim(), 1))(*t.shape)
        self._strides = (ctypes.c_int64 * max(t.dim(), 1))(*t.stride())
        code, bits = _DT[t.dtype]
        d = C.tritter_dl_tensor_t()
        d.data = t.data_ptr()
        d.device = C.tritter_dl_device_t(C.TRITTER_DL_CUDA, t.device.index or 0)
        d.ndim = t.dim()
        d.dtype = C.tritter_dl_dtype_t(code, bits, 1)
        d.shape = ctypes.addressof(self._shape)
        d.strides = ctypes.addressof(self._strides)
        d.byte_offset = 0
        self.ref = ctypes.byref(d)
        self._d = d


def stream():
    return ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)


class Matrix:
    """A ternary matrix handle built from random codes (per-row scales)."""

    def __init__(self, rows, cols, seed):
        rng = np.random.default_rng(seed)
        t = rng.integers(-1, 2, size=(rows, cols), dtype=np.int8)
        self.trits = t
        self.scales = rng.uniform(0.02, 0.1, size=rows).astype(np.float32)
        h = ctypes.c_void_p()
        check(lib().tritter_ternary_matrix_from_ternary(
            t.ctypes.data, rows, cols, self.scales.ctypes.data, rows, C.TRITTER_GRANULARITY_PER_ROW, 0,
            ctypes.byref(h)))
        self.h = h
        self.rows, self.cols = rows, cols
        check(lib().tritter_ternary_matrix_to_device(h, 0))

    def dense(self, dtype):
        w = torch.from_numpy(self.trits).to(DEV, torch.float32) * torch.from_numpy(self.scales).to(DEV)[:, None]
        return w.to(dtype)

    def matmul(self, x, y, act):
        check(lib().tritter_ternary_matrix_matmul_dlpack_stream(self.h, x.ref, None, act, y.ref, stream()))

    def __del__(self):
        if getattr(self, "h", None):
            lib().tritter_ternary_matrix_free(self.h)


def timed(fn, nrot, reps, calls=20):
    """(graph per-call ms, eager per-call ms): medians of CUDA-event timings."""
    for i in range(3):
        fn(i % nrot)
    torch.cuda.synchronize()
    eager = []
    for r in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn(r % nrot)
        e.record()
        eager.append((s, e))
    torch.cuda.synchronize()
    eager_ms = statistics.median(s.elapsed_time(e) for s, e in eager)
    graph_ms = None
    try:
        g = torch.cuda.CUDAGraph()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for i in range(calls):  # warm-up on the capture stream
                fn(i % nrot)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        with torch.cuda.graph(g):
            for i in range(calls):
                fn(i % nrot)
        g.replay()
        torch.cuda.synchronize()
        ts = []
        for _ in range(max(5, reps // 4)):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            g.replay()
            e.record()
            ts.append((s, e))
        torch.cuda.synchronize()
        graph_ms = statistics.median(s.elapsed_time(e) for s, e in ts) / calls
    except Exception as exc:  # noqa: BLE001 - report and keep the eager number
        print(f"    (graph capture failed: {exc}; eager time only)")
    return graph_ms, eager_ms


def best(t):
    return t[0] if t[0] is not None else t[1]


def rel_err(y, ref):
    y, ref = y.double(), ref.double()
    return float((y - ref).norm() / ref.norm().clamp_min(1e-300))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--md", help="write the markdown table here")
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repetitions")
    a = ap.parse_args()
    reps = 20 if a.quick else 60
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    l2 = props.L2_cache_size
    check(lib().tritter_cuda_check())
    rows_out = []

    def emit(kind, shape, mode, ms, bytes_, flops, base_ms, base_name, note=""):
        gbs = bytes_ / (ms * 1e-3) / 1e9
        tf = flops / (ms * 1e-3) / 1e12 if flops else None
        row = {
            "kind": kind, "shape": shape, "mode": mode, "us": ms * 1e3, "gbs": gbs, "pct": 100 * gbs / copy_gbs,
            "tflops": tf, "base_us": base_ms * 1e3 if base_ms else None, "base": base_name,
            "speedup": (base_ms / ms) if base_ms else None, "note": note,
        }
        rows_out.append(row)
        sp = f"{row['speedup']:.2f}x vs {base_name}" if base_ms else ""
        tfs = f"{tf:7.1f} TFLOP/s" if tf else ""
        print(f"  {kind:<10} {shape:<22} {mode:<12} {ms*1e3:9.2f} us {gbs:8.0f} GB/s ({row['pct']:5.1f}% of copy) {tfs} {sp} {note}")

    # -- copy bandwidth
    n = 1 << 28  # 1 GiB of f32
    src, dst = torch.empty(n, device=DEV), torch.empty(n, device=DEV)
    src.uniform_()
    cp = best(timed(lambda i: dst.copy_(src), 1, reps, calls=5))
    copy_gbs = 2 * n * 4 / (cp * 1e-3) / 1e9
    print(f"{props.name}: {props.multi_processor_count} SMs, L2 {l2 >> 20} MiB; "
          f"device-to-device copy {copy_gbs:.0f} GB/s (1 GiB read + 1 GiB written, {cp*1e3:.0f} us)")
    del src, dst

    # -- batch-1 GEMV and batch-256 GEMM
    shapes = [(8192, 28672), (28672, 8192), (2560, 2560), (640, 2560), (6912, 2560), (2560, 6912)]
    if a.quick:
        shapes = [(8192, 28672), (2560, 6912)]
    for (rows, cols) in shapes:
        wbytes = rows * cols // 4
        nrot = max(2, -(-2 * l2 // wbytes) + 1)
        nrot = min(nrot, 64)
        mats = [Matrix(rows, cols, s) for s in range(nrot)]
        shape = f"{rows}x{cols}"
        for batch in (1, 256):
            xs = [torch.randn(batch, cols, device=DEV, dtype=torch.bfloat16) for _ in range(nrot)]
            ys = [torch.empty(batch, rows, device=DEV, dtype=torch.bfloat16) for _ in range(nrot)]
            xd, yd = [DL(x) for x in xs], [DL(y) for y in ys]
            # cuBLAS bf16 through PyTorch, on its own rotation of bf16 weights.
            nrot_b = min(nrot, max(2, -(-2 * l2 // (rows * cols * 2)) + 1))
            wb = [m.dense(torch.bfloat16) for m in mats[:nrot_b]]
            base = best(timed(lambda i: torch.nn.functional.linear(xs[i % nrot], wb[i % nrot_b]), nrot, reps))
            ref = xs[0].double() @ mats[0].dense(torch.float64).T
            for act, mname in ((C.TRITTER_ACT_INT8, "int8"), (C.TRITTER_ACT_F32, "bf16-act")):
                mats[0].matmul(xd[0], yd[0], act)
                torch.cuda.synchronize()
                err = rel_err(ys[0], ref)
                limit = 2e-2 if act == C.TRITTER_ACT_INT8 else 1e-2
                if not err < limit:
                    raise SystemExit(f"{shape} batch {batch} {mname}: relative error {err:.2e} >= {limit}")
                t = timed(lambda i: mats[i].matmul(xd[i], yd[i], act), nrot, reps)
                bytes_ = wbytes + rows * 4 + batch * cols * 2 + batch * rows * 2
                kind = "GEMV b=1" if batch == 1 else f"GEMM b={batch}"
                emit(kind, shape, mname, best(t), bytes_, 2 * batch * rows * cols, base, "cuBLAS bf16",
                     f"(eager {t[1]*1e3:.1f} us, err {err:.1e})")
            del wb
        del mats

    # -- quantize + pack, int8 activations, conversion
    rows, cols = (4096, 4096) if a.quick else (8192, 8192)
    w = torch.randn(rows, cols, device=DEV)
    packed = torch.empty(rows, (cols + 3) // 4, device=DEV, dtype=torch.uint8)
    scales = torch.empty(rows, device=DEV)
    wd, pd, sd = DL(w), DL(packed), DL(scales)
    t = timed(lambda i: check(lib().tritter_quantize_pack_dlpack(wd.ref, None, pd.ref, sd.ref, stream())), 1, reps // 2)
    emit("quantize", f"{rows}x{cols}", "absmean/row", t[1], rows * cols * 4 * 2 + rows * cols // 4, 0,
         None, None, "(eager: waits for its non-finite check)")
    del w, packed

    tok, dim = 4096, 8192
    xs = [torch.randn(tok, dim, device=DEV) for _ in range(2)]
    qs = [torch.empty(tok, dim, device=DEV, dtype=torch.int8) for _ in range(2)]
    ss = [torch.empty(tok, device=DEV) for _ in range(2)]
    xd, qd, sd = [DL(x) for x in xs], [DL(q) for q in qs], [DL(s) for s in ss]
    t = timed(lambda i: check(lib().tritter_quantize_activations_i8_dlpack(xd[i].ref, qd[i].ref, sd[i].ref, stream())), 2, reps)
    emit("act-quant", f"{tok}x{dim}", "f32->int8", best(t), tok * dim * (4 * 2 + 1), 0, None, None)
    del xs, qs

    n = 1 << 27
    f = [torch.randn(n, device=DEV) for _ in range(2)]
    h = [torch.empty(n, device=DEV, dtype=torch.bfloat16) for _ in range(2)]
    fd, hd = [DL(x) for x in f], [DL(x) for x in h]
    t = timed(lambda i: check(lib().tritter_convert_dlpack(fd[i].ref, hd[i].ref, stream())), 2, reps)
    base = best(timed(lambda i: h[i].copy_(f[i]), 2, reps))
    emit("convert", f"{n}", "f32->bf16", best(t), n * 6, 0, base, "torch .to")
    t = timed(lambda i: check(lib().tritter_convert_dlpack(hd[i].ref, fd[i].ref, stream())), 2, reps)
    base = best(timed(lambda i: f[i].copy_(h[i]), 2, reps))
    emit("convert", f"{n}", "bf16->f32", best(t), n * 6, 0, base, "torch .to")

    del f, h

    # -- TernGrad (ternary stochastic quantization), block 256
    n, block = 1 << 27, 256
    g = [torch.randn(n, device=DEV) for _ in range(2)]
    sc = [torch.empty(n // block, device=DEV) for _ in range(2)]
    pk = [torch.empty(n // 4, device=DEV, dtype=torch.uint8) for _ in range(2)]
    gd, scd, pkd = [DL(x) for x in g], [DL(x) for x in sc], [DL(x) for x in pk]
    t = timed(lambda i: check(lib().tritter_grad_ternary_quantize_dlpack(gd[i].ref, block, 7 + i, scd[i].ref,
                                                                         pkd[i].ref, stream())), 2, reps)
    emit("terngrad", f"{n}", f"block {block}", best(t), 4 * n + n // 4 + 4 * n // block, 0, None, None)
    del g, sc, pk

    # -- packed hypervectors: bind 100k rows with one key, similarity of one query against them
    dim, nrows = 10000, 100000
    words = 2 * ((dim + 63) // 64)
    def hv_rows(seed):
        gen = torch.Generator(device=DEV).manual_seed(seed)
        plus = torch.randint(0, 2**62, (nrows, words // 2), device=DEV, generator=gen, dtype=torch.int64)
        minus = torch.randint(0, 2**62, (nrows, words // 2), device=DEV, generator=gen, dtype=torch.int64) & ~plus
        rows = torch.cat([plus, minus], dim=1)
        rows[:, words // 2 - 1] &= (1 << (dim % 64)) - 1
        rows[:, words - 1] &= (1 << (dim % 64)) - 1
        return rows.view(torch.uint64) if hasattr(torch, "uint64") else rows
    try:
        hvs = [hv_rows(s) for s in range(2)]
        _DT[hvs[0].dtype] = (C.TRITTER_DL_UINT, 64)
        outs = [torch.empty_like(x) for x in hvs]
        scores = [torch.empty(nrows, device=DEV, dtype=torch.float64) for _ in range(2)]
        hd, od, scd = [DL(x) for x in hvs], [DL(x) for x in outs], [DL(x) for x in scores]
        qd = [DL(x[0]) for x in hvs]
        t = timed(lambda i: check(lib().tritter_hv_bind_dlpack(hd[i].ref, qd[1 - i].ref, dim, 0, False, od[i].ref,
                                                                stream())), 2, reps)
        emit("hv bind", f"{nrows}x{dim}", "MAP", best(t), nrows * words * 8 * 2, 0, None, None)
        t = timed(lambda i: check(lib().tritter_hv_similarity_many_dlpack(qd[1 - i].ref, hd[i].ref, dim, 1, scd[i].ref,
                                                                           stream())), 2, reps)
        emit("hv sim", f"{nrows}x{dim}", "cosine", best(t), nrows * words * 8 + nrows * 8, 0, None, None)
    except Exception as exc:  # noqa: BLE001 - torch builds without uint64
        print(f"  hv benchmarks skipped: {exc}")

    if a.md:
        write_md(a.md, props, copy_gbs, rows_out)


def write_md(path, props, copy_gbs, rows):
    try:
        drv = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        drv = "?"
    lines = [
        f"### CUDA kernels on {props.name} ({datetime.date.today()})",
        "",
        f"Command: `scripts/gpu-check.sh` (benches/gpu_bench.py). Driver {drv}, torch {torch.__version__}, "
        f"{props.multi_processor_count} SMs, L2 {props.L2_cache_size >> 20} MiB. Device-to-device copy: "
        f"**{copy_gbs:.0f} GB/s** (bytes read + written). Times are medians of CUDA-event timings of "
        "graph replays (per call), inputs rotated over > 2x L2.",
        "",
        "| work | shape | mode | time (us) | GB/s | % of copy | TFLOP/s | baseline (us) | speed-up |",
        "|---|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        base = f"{r['base']} {r['base_us']:.1f}" if r["base_us"] else ""
        sp = f"{r['speedup']:.2f}x" if r["speedup"] else ""
        tf = f"{r['tflops']:.1f}" if r["tflops"] else ""
        lines.append(f"| {r['kind']} | {r['shape']} | {r['mode']} | {r['us']:.2f} | {r['gbs']:.0f} | "
                     f"{r['pct']:.1f} | {tf} | {base} | {sp} |")
    pathlib.Path(path).write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
