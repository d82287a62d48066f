"""The phase trainer's cost inside a training loop, in process CPU time
(less disturbed by other processes on a shared machine than wall time).

The experiment's models (digits MLP at batch 32 and the char LM GRU 128 at
batch 32) run a step without the trainer (baseline) and a step through the
torch helper with the default guarded schedule; rounds of N steps of each
are interleaved and the medians compared. The step difference is noisy on a
shared machine, so the trainer's own CPU time per step (its begin_step and
end_step calls, which record the gradients and run the checks) is also
timed directly, with how many backward steps ran a check (the guard spaces
its checks out while the error stays far above max_error).

    python benches/predict_overhead.py            # about a minute on 2 shared cores
    python benches/predict_overhead.py --rounds 3 --steps 20   # seconds
"""
import argparse
import os
import pathlib
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python-ctypes"))
sys.path.insert(0, str(ROOT / "experiments" / "phase_trainer"))
import tritter_accel as ta  # noqa: E402
import run as exp  # noqa: E402  (the experiment's data and models)
from tritter_accel.torch.phase import PhaseTrainerHelper  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ta.set_num_threads(1)
    torch.manual_seed(0)
    xtr, ytr, _, _ = exp.digits_data()
    tr, _, _ = exp.stdlib_corpus(200_000)
    rng = np.random.default_rng(0)

    def digits_batch():
        idx = torch.from_numpy(rng.integers(0, len(xtr), 32))
        return xtr[idx], ytr[idx]

    def lm_batch():
        starts = rng.integers(0, len(tr) - 65, 32)
        w = np.stack([tr[s: s + 65] for s in starts]).astype(np.int64)
        return torch.from_numpy(w[:, :-1]), torch.from_numpy(w[:, 1:])

    def lm_loss(logits, y):
        return nn.functional.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))

    tasks = [("digits MLP, batch 32", exp.mlp, digits_batch, nn.functional.cross_entropy),
             ("char LM GRU 128, batch 32", lambda: exp.CharLM(128), lm_batch, lm_loss)]
    print(f"# phase trainer overhead per step: {exp.cpu_name()}, torch {torch.__version__} 1 thread, "
          f"library 1 thread; {args.rounds} interleaved rounds of {args.steps} steps, medians of process CPU time; "
          f"load average {os.getloadavg()[0]:.1f}")
    print()
    print("| model | parameters (tensors) | baseline step | with the default trainer | trainer cost per step | ratio "
          "| trainer's own time per step (begin_step + end_step, median) | backward steps checked |")
    print("|---|---|---|---|---|---|---|---|")
    for name, make, batch, loss_fn in tasks:
        model = make()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        helper = PhaseTrainerHelper(model.named_parameters())

        own = []  # the trainer's own CPU time per helper step (begin_step + end_step)

        def steps(use_helper):
            t = time.process_time()
            for _ in range(args.steps):
                x, y = batch()
                c0 = time.process_time()
                nb = not use_helper or helper.begin_step().needs_backward
                c = time.process_time() - c0
                if nb:
                    opt.zero_grad(set_to_none=False)
                    loss = loss_fn(model(x), y)
                    loss.backward()
                    if use_helper:
                        li = loss.item()
                        c0 = time.process_time()
                        helper.end_step(li)
                        c += time.process_time() - c0
                else:
                    c0 = time.process_time()
                    helper.end_step()
                    c += time.process_time() - c0
                if use_helper:
                    own.append(c)
                opt.step()
            return (time.process_time() - t) / args.steps

        steps(False), steps(True)  # warm up
        base, withh = [], []
        own.clear()
        for _ in range(args.rounds):
            base.append(steps(False))
            withh.append(steps(True))
        b, w = statistics.median(base), statistics.median(withh)
        s = helper.stats()
        helper.close()
        n = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {n} ({len(list(model.parameters()))}) | {b * 1e3:.2f} ms | {w * 1e3:.2f} ms | "
              f"{(w - b) * 1e3:.2f} ms | {w / b:.2f}x"
              + ("" if s["predict_steps"] == 0 else f" ({s['predict_steps']} steps predicted)")
              + f" | {statistics.median(own) * 1e3:.3f} ms | {s['error_samples']} of {s['backward_passes']} |")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
