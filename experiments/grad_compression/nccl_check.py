"""The compression hook on CUDA buckets over NCCL (for a GPU machine; scripts/gpu-check.sh).

    python -m experiments.grad_compression.nccl_check [--steps 30]

One process, one GPU, a world of 1 (NCCL refuses two ranks on one device): the
hook's collectives (all_gather, all_to_all_single, all_reduce in warm-up) run
through NCCL on device tensors, while the library compresses host copies (the
compressors' ``host_only`` path). The same small MLP trains twice per method,
(Adam, learnable labels) on the GPU with NCCL and on the CPU with gloo, from the
same seed and batches (``none``: the uncompressed hook, the control):
the byte counters must agree exactly (sizes depend only on the buckets), both
runs must learn, and their losses must stay close (the GPU's float sums differ
from the CPU's, so top-k may keep other coordinates: no bitwise equality).
Prints one line per method and exits non-zero on any failure.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import socket
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python-ctypes"))
sys.path.insert(0, str(REPO))


def _run(spec: str, backend: str, device: str, steps: int):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from experiments.grad_compression.methods import make_method
    from experiments.grad_compression.models import MLP

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", world_size=1, rank=0)
    try:
        torch.manual_seed(0)
        model = MLP((64, 128, 128, 64, 10)).to(device)
        # several buckets: caps far below the layers' sizes
        dist._DEFAULT_FIRST_BUCKET_BYTES = 20_000
        ddp = DDP(model, bucket_cap_mb=0.02, device_ids=[0] if device == "cuda" else None)
        setup = make_method(spec, error_feedback=True, warmup=2, seed=0, world=1)
        ddp.register_comm_hook(setup.state, setup.hook)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(256, 64, generator=g)
        y = (x @ torch.randn(64, 10, generator=g)).argmax(1)  # learnable labels
        losses = []
        for t in range(steps):
            i = torch.arange(32) + (t * 32) % 256
            xb, yb = x[i].to(device), y[i].to(device)
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(ddp(xb), yb)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        st = setup.state
        counters = (st.bytes_sent, st.f32_bytes, st.collectives, st.traffic_sent, st.dense_traffic)
        finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
        return losses, counters, finite
    finally:
        dist.destroy_process_group()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--specs", default="none,lib-qtopk:8,lib-rqtopk:8,lib-rqtopk:32:3")
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available() or not torch.distributed.is_nccl_available():
        print("nccl_check: no CUDA device or no NCCL in this torch build")
        return 2
    os.environ.setdefault("TRITTER_NUM_THREADS", "4")
    bad = 0
    for spec in [s for s in args.specs.split(",") if s]:
        lg, cg, fg = _run(spec, "nccl", "cuda", args.steps)
        lc, cc, fc = _run(spec, "gloo", "cpu", args.steps)
        learns = sum(lg[-5:]) < 0.9 * sum(lg[:5]) and sum(lc[-5:]) < 0.9 * sum(lc[:5])
        close = max(abs(a - b) for a, b in zip(lg, lc)) < 0.25
        ok = fg and fc and cg == cc and learns and close
        bad += not ok
        print(f"{spec}: {'ok' if ok else 'FAILED'}; NCCL/CUDA loss {lg[0]:.3f} -> {lg[-1]:.3f}, "
              f"gloo/CPU {lc[0]:.3f} -> {lc[-1]:.3f}, max |diff| {max(abs(a - b) for a, b in zip(lg, lc)):.3g}; "
              f"counters equal: {cg == cc} ({cg[0]} bytes sent, {cg[2]} collectives)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
