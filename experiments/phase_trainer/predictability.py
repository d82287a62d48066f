"""How predictable are gradients at all? An offline check, independent of the
trainer: record the real gradient of every step of a training run, then score
predictors on it (relative error ‖p − g‖ / ‖g‖ over all parameters, median over
steps) at horizons 1, 2 and 4 steps from a window of the 8 preceding gradients.

Predictors: the trainer's three (last, ema 0.9, wls 0.95 with the trainer's
default horizon clamp of 1, and unclamped), plus a per-parameter
autoregressive model AR(p) fitted by least squares over the window and
iterated to the horizon (not in the library), and "oracle": the best of all
of them per parameter and step (a bound no real choice reaches). 0 would be
perfect; predicting zero scores 1.

    python experiments/phase_trainer/predictability.py          # digits regimes (a few minutes)
    python experiments/phase_trainer/predictability.py --lm     # also the char LM at batch 512 (slow)

Writes benches/results/predict_predictability.md.
"""
import argparse
import datetime
import os
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn as nn

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run as exp  # noqa: E402  (the experiment's data and models)

W = 8


def collect_digits(batch, lr, momentum, steps, pretrain_epochs=0, seed=0):
    xtr, ytr, _, _ = exp.digits_data()
    torch.manual_seed(seed)
    m = exp.mlp()
    g = torch.Generator().manual_seed(seed)
    if pretrain_epochs:
        pre = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        for _ in range(pretrain_epochs):
            perm = torch.randperm(len(xtr), generator=g)
            for j in range(0, len(perm) - 31, 32):
                idx = perm[j: j + 32]
                pre.zero_grad()
                nn.functional.cross_entropy(m(xtr[idx]), ytr[idx]).backward()
                pre.step()
    opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum)
    grads = []
    for _ in range(steps):
        if batch >= len(xtr):
            xb, yb = xtr, ytr
        else:
            idx = torch.randint(0, len(xtr), (batch,), generator=g)
            xb, yb = xtr[idx], ytr[idx]
        opt.zero_grad()
        nn.functional.cross_entropy(m(xb), yb).backward()
        grads.append(np.concatenate([p.grad.numpy().ravel() for p in m.parameters()]))
        opt.step()
    return np.array(grads, np.float64), [p.numel() for p in m.parameters()]


def collect_lm(steps, seed=0):
    tr, _, _ = exp.stdlib_corpus(0)
    torch.manual_seed(seed)
    m = exp.CharLM(64)
    opt = torch.optim.SGD(m.parameters(), lr=1.0, momentum=0.9)
    rng = np.random.default_rng(seed)
    grads = []
    for _ in range(steps):
        st = rng.integers(0, len(tr) - 33, 512)
        w = torch.from_numpy(np.stack([tr[s: s + 33] for s in st]).astype(np.int64))
        opt.zero_grad()
        nn.functional.cross_entropy(m(w[:, :-1]).reshape(-1, 256), w[:, 1:].reshape(-1)).backward()
        grads.append(np.concatenate([p.grad.numpy().ravel() for p in m.parameters()]))
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
    return np.array(grads, np.float64), [p.numel() for p in m.parameters()]


def wls(times, target, decay, horizon):
    times = np.asarray(times, float)
    s = times - times[-1]
    w = decay ** (-s)
    tau = min(target - times[-1], horizon)
    s0, s1, s2 = w.sum(), (w * s).sum(), (w * s * s).sum()
    det = s0 * s2 - s1 * s1
    if len(times) < 2 or det <= 1e-12 * s0 * s2:
        return w / s0
    return w * ((s2 - s1 * s) + tau * (s0 * s - s1)) / det


def ema(times, decay):
    times = np.asarray(times, float)
    w = decay ** (times[-1] - times)
    return w / w.sum()


def ar_coefficients(H, p, h):
    """AR(p) fitted on the rows of H (oldest first), iterated h steps: coefficients over H's rows."""
    k = H.shape[0]
    gram = H @ H.T
    A, b = np.zeros((p, p)), np.zeros(p)
    for t in range(p, k):
        for i in range(p):
            b[i] += gram[t, t - 1 - i]
            for j in range(p):
                A[i, j] += gram[t - 1 - i, t - 1 - j]
    A += 1e-9 * np.trace(A) * np.eye(p)
    c = np.linalg.solve(A, b)
    rows = [np.eye(k)[i] for i in range(k)]
    for _ in range(h):
        rows.append(sum(c[i] * rows[-1 - i] for i in range(p)))
    return rows[-1]


def score(G, sizes, h, start=40, every=3):
    off = np.concatenate([[0], np.cumsum(sizes)])
    errs = {}
    gg = []
    for t in range(start, len(G), every):
        hist = list(range(t - h - W + 1, t - h + 1))
        H, g = G[hist], G[t]
        cands = {"last": np.eye(W)[-1], "ema 0.9": ema(hist, 0.9), "wls (horizon 1)": wls(hist, t, 0.95, 1),
                 "wls": wls(hist, t, 0.95, 100)}
        per = lambda p: [((p[off[i]:off[i + 1]] - g[off[i]:off[i + 1]]) ** 2).sum()  # noqa: E731
                         for i in range(len(sizes))]
        for name, c in cands.items():
            errs.setdefault(name, []).append(per(c @ H))
        for p in (1, 2, 4):
            e = []
            for i in range(len(sizes)):
                Hi = H[:, off[i]:off[i + 1]]
                pi = ar_coefficients(Hi, p, h) @ Hi
                e.append(((pi - g[off[i]:off[i + 1]]) ** 2).sum())
            errs.setdefault(f"AR({p})", []).append(e)
        gg.append([(g[off[i]:off[i + 1]] ** 2).sum() for i in range(len(sizes))])
    gg = np.array(gg).sum(1)
    allp = np.stack([np.array(v) for v in errs.values()])
    out = {k: float(np.median(np.sqrt(np.array(v).sum(1) / gg))) for k, v in errs.items()}
    out["oracle"] = float(np.median(np.sqrt(allp.min(0).sum(1) / gg)))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lm", action="store_true", help="also the char LM at batch 512 (150 steps; slow)")
    ap.add_argument("--out", default=str(HERE.parents[1] / "benches" / "results" / "predict_predictability.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    regimes = [
        ("digits, batch 32, lr 0.05, momentum 0.9", lambda: collect_digits(32, 0.05, 0.9, 300)),
        ("digits, full batch, lr 0.1, momentum 0.9", lambda: collect_digits(10**9, 0.1, 0.9, 300)),
        ("digits, full batch, lr 0.5, no momentum", lambda: collect_digits(10**9, 0.5, 0.0, 300)),
        ("digits, pretrained 20 epochs, then batch 256, lr 0.005, momentum 0.9",
         lambda: collect_digits(256, 0.005, 0.9, 300, pretrain_epochs=20)),
    ]
    if args.lm:
        regimes.append(("char LM (GRU 64), batch 512 x 32 chars, lr 1.0, momentum 0.9, clip 1.0",
                        lambda: collect_lm(150)))
    t0 = time.perf_counter()
    lines = ["# How predictable are gradients? (offline)", "",
             f"Command: `python experiments/phase_trainer/predictability.py{' --lm' if args.lm else ''}`  ",
             f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}  ",
             "Median over steps (every 3rd from step 40) of the relative error ‖p − g‖ / ‖g‖ over all "
             f"parameters, predicting step t from the {W} gradients ending at t − h. Predicting zero scores 1. "
             "AR(p): per-parameter autoregressive model fitted on the window (not in the library); oracle: "
             "the best predictor per parameter and step (a bound).", ""]
    header = None
    for name, collect in regimes:
        G, sizes = collect()
        for h in (1, 2, 4):
            sc = score(G, sizes, h)
            if header is None:
                header = list(sc)
                lines.append("| regime | h | " + " | ".join(header) + " |")
                lines.append("|---|---|" + "---|" * len(header))
            lines.append(f"| {name} | {h} | " + " | ".join(f"{sc[k]:.3f}" for k in header) + " |")
            print(lines[-1], flush=True)
    lines.append("")
    lines.append(f"Total {time.perf_counter() - t0:.0f} s; load average at the end {os.getloadavg()[0]:.1f}.")
    pathlib.Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
