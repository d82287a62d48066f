"""Phase-trainer experiment: where does gradient prediction save backward
passes and wall-clock time, and what does it cost in quality?

Each task is trained without the trainer ("baseline"), with the default
(guarded) schedule and, on the cheap tasks, with the seed's fixed schedule,
for several seeds. Runs of the same seed are interleaved, so load on a shared
machine hits them alike. Writes a Markdown table.

Tasks:
  digits       MLP on scikit-learn's digits, momentum SGD, batch 32 (noisy minibatch gradients)
  lm           char-level GRU LM on CPython stdlib sources, batch 32
  digits-full  the digits MLP trained by full-batch gradient descent (deterministic gradients)
  digits-ft    late-phase fine-tuning: the digits MLP pretrained, then a small lr at batch 256
  lm-b512      the char LM at batch 512 (a smaller GRU, to fit the time budget)

    python experiments/phase_trainer/run.py                 # all tasks (20-60 minutes on 2 shared cores)
    python experiments/phase_trainer/run.py --tasks digits-full --seeds 1
    python experiments/phase_trainer/run.py --smoke         # seconds (used by the tests)
"""
import argparse
import datetime
import math
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

TASKS = ("digits-full", "digits-ft", "lm-b512", "digits", "lm")
# The seed's schedule is run where it is cheap (it needs a forward pass on every step).
SEED_TASKS = ("digits", "digits-full")
# Field overrides of the default config (--set key=value; for exploring, not for the table).
DEFAULT_OVERRIDES = {}


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------- data

_DIGITS = None


def digits_data():
    global _DIGITS
    if _DIGITS is None:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        x = (x / 16.0).astype(np.float32)
        xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
        _DIGITS = (torch.from_numpy(xtr), torch.from_numpy(ytr).long(), torch.from_numpy(xte),
                   torch.from_numpy(yte).long())
    return _DIGITS


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


def mlp():
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


# ----------------------------------------------------------------------------- training loop

def train(model, opt, batches, loss_fn, config, clip=None):
    """Runs the loop; returns (wall seconds, backward passes, trainer stats or None,
    per-parameter predictors at the end).

    baseline: forward + backward every step. default (guarded): a Predict step
    runs neither forward nor backward; the predicted gradients go straight to
    the optimizer. seed: the fixed schedule needs every step's loss, so its
    Predict steps run the forward pass under no_grad."""
    helper = None
    if config != "baseline":
        over = DEFAULT_OVERRIDES if config == "default" else {}
        helper = PhaseTrainerHelper(model.named_parameters(), preset=config, **over)
    backward = 0
    t0 = time.perf_counter()
    for x, y in batches():
        if helper is None or helper.begin_step().needs_backward:
            opt.zero_grad(set_to_none=False)
            loss = loss_fn(model(x), y)
            loss.backward()
            backward += 1
            if helper is not None:
                helper.end_step(loss.item())
        elif config == "seed":
            with torch.no_grad():
                loss = loss_fn(model(x), y)
            helper.end_step(loss.item())
        else:
            helper.end_step()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    wall = time.perf_counter() - t0
    stats, chosen = None, None
    if helper:
        stats = helper.stats()
        chosen = [helper.param_stats(n)["predictor"] for n, _ in helper.params]
        helper.close()
    return wall, backward, stats, chosen


def digits_accuracy(model):
    _, _, xte, yte = digits_data()
    with torch.no_grad():
        return (model(xte).argmax(1) == yte).float().mean().item() * 100


_PRETRAINED = {}


def run_digits(task, seed, config, args):
    xtr, ytr, _, _ = digits_data()
    torch.manual_seed(seed)
    model = mlp()
    g = torch.Generator().manual_seed(seed)
    if task == "digits":
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        batch, epochs = 32, args.digits_epochs

        def batches():
            for _ in range(epochs):
                perm = torch.randperm(len(xtr), generator=g)
                for j in range(0, len(perm) - batch + 1, batch):
                    idx = perm[j: j + batch]
                    yield xtr[idx], ytr[idx]
    elif task == "digits-full":
        opt = torch.optim.SGD(model.parameters(), lr=args.full_lr, momentum=0.9)

        def batches():
            for _ in range(args.full_steps):
                yield xtr, ytr
    else:  # digits-ft: pretrained (untimed, cached per seed), then a small lr
        if seed not in _PRETRAINED:
            pre = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            for _ in range(args.ft_pre_epochs):
                perm = torch.randperm(len(xtr), generator=g)
                for j in range(0, len(perm) - 31, 32):
                    idx = perm[j: j + 32]
                    pre.zero_grad()
                    nn.functional.cross_entropy(model(xtr[idx]), ytr[idx]).backward()
                    pre.step()
            _PRETRAINED[seed] = ({k: v.clone() for k, v in model.state_dict().items()}, digits_accuracy(model))
        model.load_state_dict(_PRETRAINED[seed][0])
        opt = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
        gb = torch.Generator().manual_seed(1000 + seed)

        def batches():
            for _ in range(args.ft_steps):
                idx = torch.randint(0, len(xtr), (256,), generator=gb)
                yield xtr[idx], ytr[idx]

    wall, backward, stats, chosen = train(model, opt, batches, nn.functional.cross_entropy, config)
    return {"metric": digits_accuracy(model), "wall": wall, "backward": backward, "stats": stats,
            "chosen": chosen}


def run_lm(task, seed, config, args, corpus):
    torch.manual_seed(seed)
    tr, va, _ = corpus
    big = task == "lm-b512"
    hidden = args.b512_hidden if big else args.lm_hidden
    T = args.b512_seq if big else args.lm_seq
    B = 512 if big else args.lm_batch
    steps = args.b512_steps if big else args.lm_steps
    model = CharLM(hidden)
    opt = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    rng = np.random.default_rng(seed)

    def batches():
        for _ in range(steps):
            starts = rng.integers(0, len(tr) - T - 1, B)
            w = np.stack([tr[s: s + T + 1] for s in starts]).astype(np.int64)
            yield torch.from_numpy(w[:, :-1]), torch.from_numpy(w[:, 1:])

    def lm_loss(logits, y):
        return nn.functional.cross_entropy(logits.reshape(-1, 256), y.reshape(-1))

    wall, backward, stats, chosen = train(model, opt, batches, lm_loss, config, clip=1.0)
    # Validation: fixed windows over the held-out files (same for every run).
    vr = np.random.default_rng(1234)
    starts = vr.integers(0, len(va) - T - 1, args.lm_val_windows)
    w = np.stack([va[s: s + T + 1] for s in starts]).astype(np.int64)
    with torch.no_grad():
        tot = 0.0
        for j in range(0, len(w), 64):
            c = torch.from_numpy(w[j: j + 64])
            tot += lm_loss(model(c[:, :-1]), c[:, 1:]).item() * len(c)
    return {"metric": tot / len(w), "wall": wall, "backward": backward, "stats": stats, "chosen": chosen}


# ----------------------------------------------------------------------------- report

def fmt(vals, digits=2):
    vals = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "-"
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


def describe(task, args, corpus):
    if task == "digits":
        return (f"**digits**: MLP 64-256-256-10, SGD lr 0.05 momentum 0.9, batch 32, {args.digits_epochs} epochs; "
                "metric = test accuracy (%) on a stratified 25% split.")
    if task == "digits-full":
        return (f"**digits-full**: the same MLP, full-batch gradient descent (all 1347 training images every step), "
                f"SGD lr {args.full_lr} momentum 0.9, {args.full_steps} steps; metric = test accuracy (%).")
    if task == "digits-ft":
        return (f"**digits-ft**: late-phase fine-tuning: the MLP pretrained {args.ft_pre_epochs} epochs at batch 32 "
                f"(untimed, same for every config), then {args.ft_steps} steps at batch 256, lr 0.005 momentum 0.9; "
                "metric = test accuracy (%).")
    if task == "lm":
        return (f"**lm**: char-level GRU {args.lm_hidden} (embedding 64) on CPython {platform.python_version()} "
                f"stdlib `*.py` ({corpus[2]} files, every 10th held out), windows of {args.lm_seq}, batch "
                f"{args.lm_batch}, {args.lm_steps} steps, SGD lr 1.0 momentum 0.9, clip 1.0; metric = "
                f"validation cross-entropy (nats/char) on {args.lm_val_windows} fixed held-out windows.")
    return (f"**lm-b512**: the char LM at batch 512: GRU {args.b512_hidden}, windows of {args.b512_seq}, "
            f"{args.b512_steps} steps, SGD lr 1.0 momentum 0.9, clip 1.0 (smaller and shorter than **lm** so it fits "
            "the time budget: one step reads 16x the tokens of **lm**); metric = validation cross-entropy (nats/char).")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="seconds-long run (tests)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--configs", default="baseline,default,seed",
                    help="configs to run (seed only on " + ", ".join(SEED_TASKS) + ")")
    ap.add_argument("--out", default=str(ROOT / "benches" / "results" / "predict.md"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of the default config (exploration only)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (1: on a shared 2-core machine, 2 threads spin-wait and run ~18x slower)")
    args = ap.parse_args()

    args.digits_epochs = 20
    args.full_lr, args.full_steps = 0.1, 300
    args.ft_pre_epochs, args.ft_steps = 20, 200
    args.lm_hidden, args.lm_steps, args.lm_batch, args.lm_seq = 128, 300, 32, 64
    args.b512_hidden, args.b512_seq, args.b512_steps = 64, 32, 100
    args.lm_val_windows, args.lm_max_bytes = 512, 0
    if args.smoke:
        args.seeds = 1
        args.digits_epochs, args.full_steps, args.ft_pre_epochs, args.ft_steps = 1, 25, 1, 20
        args.lm_steps, args.lm_hidden, args.lm_batch, args.lm_seq = 20, 16, 8, 32
        args.b512_hidden, args.b512_seq, args.b512_steps = 8, 8, 10
        args.lm_val_windows, args.lm_max_bytes = 32, 100_000
    for kv in args.set:
        k, v = kv.split("=", 1)
        DEFAULT_OVERRIDES[k] = float(v) if "." in v or "e" in v else int(v)
    torch.set_num_threads(args.threads)
    # The trainer's per-step work is small next to torch's; one library thread
    # avoids oversubscribing the cores torch already uses.
    ta.set_num_threads(1)
    tasks = [t for t in args.tasks.split(",") if t]
    for t in tasks:
        if t not in TASKS:
            raise SystemExit(f"unknown task {t!r}; known: {', '.join(TASKS)}")
    configs = [c for c in args.configs.split(",") if c]

    corpus = None
    if any(t.startswith("lm") for t in tasks):
        corpus = stdlib_corpus(args.lm_max_bytes)
        log(f"corpus: {corpus[2]} stdlib files, {len(corpus[0])} train bytes, {len(corpus[1])} val bytes")

    def task_configs(task):
        return [c for c in configs if c != "seed" or task in SEED_TASKS]

    def report(tasks, final):
        load = os.getloadavg()
        lines = ["# Phase trainer (gradient prediction): measured on real training", ""]
        lines.append(f"Command: `{' '.join(['scripts/experiment-predict.sh'] + sys.argv[1:])}`  ")
        lines.append(f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; "
                     f"total {time.perf_counter() - t_start:.0f} s; load average at the end "
                     f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}  ")
        lines.append(f"Machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} with {args.threads} "
                     "threads, tritter-accel with 1 thread  ")
        if DEFAULT_OVERRIDES:
            lines.append(f"Default config overridden: {DEFAULT_OVERRIDES}  ")
        lines.append(f"Seeds: {args.seeds}; mean ± sd over seeds. Wall = the training loop only (forward, backward or "
                     "prediction, optimizer), excluding evaluation; runs of one seed are interleaved.")
        lines.append("")
        for t in tasks:
            lines.append("* " + describe(t, args, corpus))
        lines.append("* **default** = the guarded schedule (`PhaseConfig::default()`): a Predict step runs neither "
                     "the forward nor the backward pass. **seed** = the seed's fixed schedule (`preset=\"seed\"`), whose "
                     "loss back-off needs a forward pass on Predict steps.")
        lines.append("")
        lines.append("| task | config | steps | backward passes | passes saved | wall (s) | wall saved | metric | "
                     "Δ metric vs baseline (paired) | pred. error | last-grad error | runs / back-offs | predictors (last/ema/wls) |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for task in tasks:
            base = results[(task, "baseline")] if (task, "baseline") in results else None
            for config in task_configs(task):
                rs = results[(task, config)]
                seeds = sorted(rs)
                steps = rs[seeds[0]]["stats"]["steps"] if rs[seeds[0]]["stats"] else rs[seeds[0]]["backward"]
                bw = [rs[s]["backward"] for s in seeds]
                saved = 1 - statistics.mean(bw) / steps
                walls = [rs[s]["wall"] for s in seeds]
                digits = 2 if task.startswith("digits") else 3
                if base and config != "baseline":
                    wsaved = [1 - rs[s]["wall"] / base[s]["wall"] for s in seeds]
                    wsaved_txt = f"{statistics.median(wsaved) * 100:.0f}% (median)"
                    delta = fmt([rs[s]["metric"] - base[s]["metric"] for s in seeds], digits)
                else:
                    wsaved_txt, delta = "-", "-"
                st = [rs[s]["stats"] for s in seeds if rs[s]["stats"]]
                pe = fmt([x["mean_prediction_error"] for x in st], 3) if st else "-"
                le = fmt([x["mean_last_gradient_error"] for x in st], 3) if st else "-"
                rb = (f"{statistics.mean(x['runs'] for x in st):.0f} / {statistics.mean(x['backoffs'] for x in st):.0f}"
                      if st else "-")
                pr = ("/".join(f"{statistics.mean(x[k] for x in st):.1f}" for k in ("params_last", "params_ema", "params_wls"))
                      if st else "-")
                lines.append(
                    f"| {task} | {config} | {steps} | {fmt(bw, 0)} | {saved * 100:.0f}% | {fmt(walls)} | {wsaved_txt} | "
                    f"{fmt([rs[s]['metric'] for s in seeds], digits)} | {delta} | {pe} | {le} | {rb} | {pr} |")
        lines.append("")
        lines.append("pred. error: mean over the checks (post-warmup backward steps that ran one; far above max_error the guard checks only every few steps) of the overall relative error "
                     "‖p − g‖ / ‖g‖ of the predictors the trainer had chosen; last-grad error: the same for repeating the "
                     "newest recorded gradient. An error near or above 1 means the prediction carries about as much "
                     "error as signal: the guarded schedule then keeps every backward pass. wall saved: median over "
                     "seeds of 1 − wall / baseline wall of the same seed. Δ metric: mean ± sd over seeds of (config − "
                     "baseline) of the same seed (accuracy in points; validation loss in nats, lower is better).")
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")
        if final:
            log("\n".join(lines))
        log(f"wrote {out}")

    results = {}
    total = sum(len(task_configs(t)) for t in tasks) * args.seeds
    done = 0
    t_start = time.perf_counter()
    for task in tasks:
        for seed in range(args.seeds):
            for config in task_configs(task):   # interleaved: the same load for every config of a seed
                if task.startswith("digits"):
                    r = run_digits(task, seed, config, args)
                else:
                    r = run_lm(task, seed, config, args, corpus)
                results.setdefault((task, config), {})[seed] = r
                done += 1
                s = r["stats"]
                extra = ""
                if s:
                    extra = (f" saved {s['predict_steps']}/{s['steps']} runs {s['runs']} backoffs {s['backoffs']}"
                             f" err {s['mean_prediction_error']:.3f} (last-grad {s['mean_last_gradient_error']:.3f})"
                             f" reason {s['last_reason']} predictors {r['chosen']}")
                log(f"[{done}/{total} {time.perf_counter() - t_start:6.1f}s] {task:11s} {config:8s} seed {seed}: "
                    f"metric {r['metric']:.4f} wall {r['wall']:.2f}s backward {r['backward']}{extra}")
        # the table so far, so that an interrupted run keeps its finished tasks
        report(tasks[: tasks.index(task) + 1], final=task == tasks[-1])



if __name__ == "__main__":
    main()
