"""Phase-trainer experiment: does gradient prediction save backward passes
without hurting training? Trains (a) an MLP on scikit-learn's digits and (b) a
character-level GRU language model on CPython's standard-library sources
(every 10th file held out), each without the trainer ("baseline") and with the
default and conservative configurations, over several seeds. Writes a
Markdown table.

    python experiments/phase_trainer/run.py            # default size (minutes)
    python experiments/phase_trainer/run.py --full     # larger LM, more steps
    python experiments/phase_trainer/run.py --smoke    # seconds (used by the tests)
"""
import argparse
import datetime
import os
import pathlib
import platform
import statistics
import sys
import sysconfig
import time

import numpy as np
import torch
import torch.nn as nn

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python-ctypes"))
import tritter_accel as ta  # noqa: E402
from tritter_accel.torch.phase import PhaseTrainerHelper  # noqa: E402

CONFIGS = ("baseline", "default", "conservative")


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------- data

def digits_data(seed):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    return (torch.from_numpy(xtr), torch.from_numpy(ytr).long(), torch.from_numpy(xte), torch.from_numpy(yte).long())


def stdlib_corpus(max_bytes):
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py"))
    train, val = [], []
    for i, f in enumerate(files):
        text = f.read_bytes()
        (val if i % 10 == 9 else train).append(text)
    tr = b"\n".join(train)
    va = b"\n".join(val)
    if max_bytes:
        tr, va = tr[:max_bytes], va[: max(max_bytes // 9, 20000)]
    return np.frombuffer(tr, np.uint8), np.frombuffer(va, np.uint8), len(files)


# ----------------------------------------------------------------------------- models

class CharLM(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.emb = nn.Embedding(256, 64)
        self.rnn = nn.GRU(64, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 256)

    def forward(self, x):
        h, _ = self.rnn(self.emb(x))
        return self.out(h)


# ----------------------------------------------------------------------------- training loop

def train(model, opt, batches, loss_fn, config, clip=None):
    """Runs the loop; returns (wall seconds, backward passes, trainer stats or None)."""
    helper = None
    if config != "baseline":
        helper = PhaseTrainerHelper(model.named_parameters(), preset=config)
    backward = 0
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(batches()):
        if helper is None or helper.begin_step().needs_backward:
            opt.zero_grad(set_to_none=False)
            loss = loss_fn(model(x), y)
            loss.backward()
            backward += 1
        else:
            with torch.no_grad():
                loss = loss_fn(model(x), y)
        if helper is not None:
            helper.end_step(loss.item())
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    wall = time.perf_counter() - t0
    stats = helper.stats() if helper else None
    if helper:
        helper.close()
    return wall, backward, stats


def run_digits(seed, config, args):
    torch.manual_seed(seed)
    xtr, ytr, xte, yte = digits_data(seed)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)

    def batches():
        for _ in range(args.digits_epochs):
            perm = torch.randperm(len(xtr), generator=g)
            for j in range(0, len(perm) - args.digits_batch + 1, args.digits_batch):
                idx = perm[j: j + args.digits_batch]
                yield xtr[idx], ytr[idx]

    wall, backward, stats = train(model, opt, batches, nn.functional.cross_entropy, config)
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item() * 100
    return {"metric": acc, "wall": wall, "backward": backward, "stats": stats}


def run_lm(seed, config, args, corpus):
    torch.manual_seed(seed)
    tr, va, _ = corpus
    model = CharLM(args.lm_hidden)
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    rng = np.random.default_rng(seed)
    T, B = args.lm_seq, args.lm_batch

    def batches():
        for _ in range(args.lm_steps):
            starts = rng.integers(0, len(tr) - T - 1, B)
            w = np.stack([tr[s: s + T + 1] for s in starts]).astype(np.int64)
            yield torch.from_numpy(w[:, :-1]), torch.from_numpy(w[:, 1:])

    def lm_loss(logits, y):
        return nn.functional.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))

    wall, backward, stats = train(model, opt, batches, lm_loss, config, clip=1.0)
    # Validation: fixed windows over the held-out files (same for every run).
    vr = np.random.default_rng(1234)
    starts = vr.integers(0, len(va) - T - 1, args.lm_val_windows)
    w = np.stack([va[s: s + T + 1] for s in starts]).astype(np.int64)
    with torch.no_grad():
        tot = 0.0
        for j in range(0, len(w), 64):
            c = torch.from_numpy(w[j: j + 64])
            tot += lm_loss(model(c[:, :-1]), c[:, 1:]).item() * len(c)
    return {"metric": tot / len(w), "wall": wall, "backward": backward, "stats": stats}


# ----------------------------------------------------------------------------- report

def fmt(vals, digits=2):
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="ANCHORS-size LM (GRU 256, 2000 steps, batch 64), digits 30 epochs")
    ap.add_argument("--smoke", action="store_true", help="seconds-long run (tests)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tasks", default="digits,lm")
    ap.add_argument("--out", default=str(ROOT / "benches" / "results" / "predict.md"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: on a shared 2-core machine, 2 threads spin-wait and run ~18x slower)")
    args = ap.parse_args()

    args.digits_epochs, args.digits_batch = 20, 32
    args.lm_hidden, args.lm_steps, args.lm_batch, args.lm_seq = 128, 300, 32, 64
    args.lm_val_windows, args.lm_max_bytes = 512, 0
    if args.full:
        args.digits_epochs = 30
        args.lm_hidden, args.lm_steps, args.lm_batch = 256, 2000, 64
        args.lm_val_windows = 2048
    if args.smoke:
        args.seeds = 1
        args.digits_epochs, args.lm_steps, args.lm_hidden, args.lm_batch, args.lm_seq = 1, 36, 16, 8, 32
        args.lm_val_windows, args.lm_max_bytes = 32, 100_000
    torch.set_num_threads(args.threads)
    # The trainer's per-step work is small next to torch's; one library thread
    # avoids oversubscribing the cores torch already uses.
    ta.set_num_threads(1)
    tasks = [t for t in args.tasks.split(",") if t]

    corpus = None
    if "lm" in tasks:
        corpus = stdlib_corpus(args.lm_max_bytes)
        log(f"corpus: {corpus[2]} stdlib files, {len(corpus[0])} train bytes, {len(corpus[1])} val bytes")

    results = {}
    total = len(tasks) * len(CONFIGS) * args.seeds
    done = 0
    t_start = time.perf_counter()
    for task in tasks:
        for config in CONFIGS:
            for seed in range(args.seeds):
                r = run_digits(seed, config, args) if task == "digits" else run_lm(seed, config, args, corpus)
                results.setdefault((task, config), []).append(r)
                done += 1
                s = r["stats"]
                extra = ""
                if s:
                    extra = (f" saved {s['predict_steps']}/{s['steps']} backoffs {s['backoffs']}"
                             f" pred-err {s['mean_prediction_error']:.3f} (last-grad {s['mean_last_gradient_error']:.3f})")
                log(f"[{done}/{total} {time.perf_counter() - t_start:6.1f}s] {task:6s} {config:12s} seed {seed}: "
                    f"metric {r['metric']:.4f} wall {r['wall']:.2f}s backward {r['backward']}{extra}")

    lines = ["# Phase trainer (gradient prediction): measured on real training", ""]
    lines.append(f"Command: `{' '.join(['scripts/experiment-predict.sh'] + sys.argv[1:])}`  ")
    lines.append(f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}  ")
    lines.append(f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} with {args.threads} threads  ")
    lines.append(f"Seeds: {args.seeds}; mean ± sd over seeds; wall = training loop only (forward, backward or "
                 "prediction, optimizer), excluding evaluation.")
    lines.append("")
    if "digits" in tasks:
        lines.append(f"* **digits**: MLP 64-256-256-10, SGD lr 0.05 momentum 0.9, batch {args.digits_batch}, "
                     f"{args.digits_epochs} epochs; metric = test accuracy (%) on a stratified 25% split.")
    if "lm" in tasks:
        lines.append(f"* **lm**: char-level GRU {args.lm_hidden} (embedding 64) on CPython {platform.python_version()} "
                     f"stdlib `*.py` ({corpus[2]} files, every 10th held out), windows of {args.lm_seq}, batch "
                     f"{args.lm_batch}, {args.lm_steps} steps, SGD lr 1.0 momentum 0.9, clip 1.0; metric = "
                     f"validation cross-entropy (nats/char) on {args.lm_val_windows} fixed held-out windows.")
    lines.append("* Predict steps still run the forward pass (under `no_grad`) for the loss the adaptive schedule needs.")
    lines.append("")
    lines.append("| task | config | steps | backward passes | saved | wall (s) | wall vs baseline | metric | "
                 "pred. error | last-grad error | back-offs |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for task in tasks:
        base_wall = statistics.median(r["wall"] for r in results[(task, "baseline")])
        for config in CONFIGS:
            rs = results[(task, config)]
            steps = rs[0]["stats"]["steps"] if rs[0]["stats"] else None
            bw = [r["backward"] for r in rs]
            nsteps = steps if steps is not None else bw[0]
            saved = 1 - statistics.mean(bw) / nsteps
            walls = [r["wall"] for r in rs]
            ratio = statistics.median(walls) / base_wall
            pe = [r["stats"]["mean_prediction_error"] for r in rs if r["stats"]]
            le = [r["stats"]["mean_last_gradient_error"] for r in rs if r["stats"]]
            bo = [r["stats"]["backoffs"] for r in rs if r["stats"]]
            lines.append(
                f"| {task} | {config} | {nsteps} | {fmt(bw, 0)} | {saved * 100:.0f}% | {fmt(walls)} | "
                f"{ratio:.2f}x | {fmt([r['metric'] for r in rs], 2 if task == 'digits' else 3)} | "
                f"{fmt(pe, 3) if pe else '-'} | {fmt(le, 3) if le else '-'} | {fmt(bo, 1) if bo else '-'} |")
    lines.append("")
    lines.append("pred. error: mean over post-warmup backward steps of ‖prediction − gradient‖ / ‖gradient‖ "
                 "(all parameters together); last-grad error: the same for simply repeating the newest "
                 "recorded gradient. An error near or above 1 means the prediction carries about as much "
                 "error as signal.")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    log("\n".join(lines))
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
