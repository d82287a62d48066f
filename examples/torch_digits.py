#!/usr/bin/env python3
"""An MLP on scikit-learn's bundled digits, f32 (nn.Linear) vs ternary
(tritter_accel.torch.TernaryLinear), same seeds, same data, same steps.

    python examples/torch_digits.py                 # full run (3 seeds x 40 epochs)
    python examples/torch_digits.py --epochs 3 --seeds 1   # quick
    python examples/torch_digits.py --val           # validation split, test set untouched

The ternary layers follow BitNet b1.58 by default (``--mode bitnet``: AbsMean
per-tensor weights, int8 per-token activations); ``--mode bittorch`` uses
BitTorch's rule (AbsMax per row with a 5% threshold). bitnet was chosen on
``--val`` (a stratified fifth of the training set, seeds 0-2: bitnet 96.88%,
bittorch 96.18%, f32 97.22%), before looking at the test set with it.

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


def validation_split(data):
    """(train', val) from the training set: a stratified fifth held out; the
    test set is not used."""
    from sklearn.model_selection import train_test_split

    xtr, ytr, _, _ = data
    a, b = train_test_split(torch.arange(len(xtr)), test_size=0.2, random_state=1, stratify=ytr)
    return xtr[a], ytr[a], xtr[b], ytr[b]


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
    p.add_argument("--mode", default="bitnet", choices=["bittorch", "bitnet"])
    p.add_argument("--val", action="store_true",
                   help="train on 4/5 of the training set, report accuracy on the other fifth (not the test set)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and library threads (small layers run best on one)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ta.set_num_threads(args.threads)
    data = load_digits()
    if args.val:
        data = validation_split(data)
    print(f"digits: {len(data[0])} train / {len(data[2])} {'validation' if args.val else 'test'}, MLP 64-{args.hidden}-{args.hidden}-10, "
          f"{args.epochs} epochs, batch {args.batch}, Adam lr {args.lr} (cosine), ternary mode {args.mode}, "
          f"torch threads {torch.get_num_threads()}")
    res = {}
    for kind in ("f32", "ternary"):
        runs = [run(kind, s, data, args) for s in range(args.seeds)]
        accs = [r[0] for r in runs]
        res[kind] = (sum(accs) / len(accs), accs, sum(r[1] for r in runs) / len(runs), runs[0][2])
    print(f"{'':8} {'val acc %' if args.val else 'test acc %':>10} {'per seed':>24} {'weights':>12} {'ms/step':>8}")
    for kind, (mean, accs, tps, wb) in res.items():
        print(f"{kind:8} {mean:10.2f} {' '.join(f'{a:.2f}' for a in accs):>24} {wb:>10} B {tps * 1e3:8.2f}")
    gap = res["f32"][0] - res["ternary"][0]
    print(f"gap (f32 - ternary): {gap:.2f} points; weight memory ratio {res['f32'][3] / res['ternary'][3]:.1f}x")
    return res


if __name__ == "__main__":
    main()
