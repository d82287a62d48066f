"""Reproduces PyTorch's PowerSGD hook failing on gloo when a model spans several
DDP buckets, beside this package's hook on the same model and buckets.

    .venv/bin/python -m experiments.grad_compression.powersgd_multibucket

Each method trains the 4-layer MLP of the DDP test (buckets capped at 20 KB:
3 buckets) for 20 steps in 2 gloo processes; a failure (collective mismatch,
abort or timeout) is printed, not raised.
"""
import sys
import time

from experiments.grad_compression.ddp import RunConfig, launch


def main():
    for spec in ("powersgd:4", "torch-topk:8"):
        cfg = RunConfig(task="tiny", method=spec, steps=20, warmup=2, bucket_cap_mb=0.02, first_bucket_mb=0.02,
                        lr=0.1, check_sync_every=1, timeout_s=60)
        t = time.time()
        try:
            r = launch(cfg)
            print(f"{spec}: trained {r['steps']} steps on buckets {r.get('hook_bucket_sizes')}, "
                  f"loss {r['losses'][0]:.3f} -> {r['losses'][-1]:.3f}, sync failures {r['sync_failures']} "
                  f"({time.time() - t:.0f} s)", flush=True)
        except RuntimeError as e:
            print(f"{spec}: FAILED ({time.time() - t:.0f} s): {str(e).strip().splitlines()[-1][:300]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
