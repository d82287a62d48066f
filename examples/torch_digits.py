#!/usr/bin/env python3
"""An MLP on scikit-learn's bundled digits, f32 (nn.Linear) vs ternary
(tritter_accel.torch.TernaryLinear), same seeds, same data, same steps.

    python examples/torch_digits.py                 # full run (3 seeds x 40 epochs)
    python examples/torch_digits.py --epochs 3 --seeds 1   # quick

Prints test accuracy (mean and per seed), linear-weight memory (f32 vs packed
2-bit + scales) and training time per step for each variant. The library is
found as the package's loader finds it (TRITTER_ACCEL_LIB, the installed
wheel, or the checkout's target/).
"""
import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python-ctypes"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import tritter_accel as ta  # noqa: E402
from tritter_accel.torch import TernaryLinear, linear_weight_bytes  # noqa: E402


def load_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    mean, std = xtr.mean(0), xtr.std(0) + 1e-3
    return (xtr - mean) / std, ytr, (xte - mean) / std, yte


def mlp(kind, hidden, mode):
    def lin(i, o):
        return nn.Linear(i, o) if kind == "f32" else TernaryLinear(i, o, mode=mode)

    return nn.Sequential(lin(64, hidden), nn.ReLU(), lin(hidden, hidden), nn.ReLU(), lin(hidden, 10))


def run(kind, seed, data, args):
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = mlp(kind, args.hidden, args.mode)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    g = torch.Generator().manual_seed(seed)
    steps, t_train = 0, 0.0
    for _ in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), args.batch):
            idx = perm[i:i + args.batch]
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t_train += time.perf_counter() - t0
            steps += 1
        sched.step()
    model.eval()
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item() * 100
    return acc, t_train / max(steps, 1), linear_weight_bytes(model)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--mode", default="bittorch", choices=["bittorch", "bitnet"])
    p.add_argument("--threads", type=int, default=1,
                   help="torch and library threads (small layers run best on one)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ta.set_num_threads(args.threads)
    data = load_digits()
    print(f"digits: {len(data[0])} train / {len(data[2])} test, MLP 64-{args.hidden}-{args.hidden}-10, "
          f"{args.epochs} epochs, batch {args.batch}, Adam lr {args.lr} (cosine), ternary mode {args.mode}, "
          f"torch threads {torch.get_num_threads()}")
    res = {}
    for kind in ("f32", "ternary"):
        runs = [run(kind, s, data, args) for s in range(args.seeds)]
        accs = [r[0] for r in runs]
        res[kind] = (sum(accs) / len(accs), accs, sum(r[1] for r in runs) / len(runs), runs[0][2])
    print(f"{'':8} {'test acc %':>10} {'per seed':>24} {'weights':>12} {'ms/step':>8}")
    for kind, (mean, accs, tps, wb) in res.items():
        print(f"{kind:8} {mean:10.2f} {' '.join(f'{a:.2f}' for a in accs):>24} {wb:>10} B {tps * 1e3:8.2f}")
    gap = res["f32"][0] - res["ternary"][0]
    print(f"gap (f32 - ternary): {gap:.2f} points; weight memory ratio {res['f32'][3] / res['ternary'][3]:.1f}x")
    return res


if __name__ == "__main__":
    main()
