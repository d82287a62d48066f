"""Gradient-compression experiment: DDP over N gloo processes on 127.0.0.1 (--world, default 2).

    python -m experiments.grad_compression.run                 # the full matrix (hours on 2 cores)
    python -m experiments.grad_compression.run --steps 300 --seeds 0 --methods none,torch-topk:32 ...

Every finished run is appended to a JSON-lines file (``--raw``) and skipped when
the same configuration is asked for again, so an interrupted run resumes. The
markdown table (``--out``) is rewritten after every run from the raw results of
the configurations asked for in this invocation. A run with fewer steps/epochs or
seeds than the full protocol is labelled REDUCED in the table's heading.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import pathlib
import platform
import shlex
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "python-ctypes"))
sys.path.insert(0, str(REPO))

from experiments.grad_compression.ddp import RunConfig, launch  # noqa: E402
from experiments.grad_compression.methods import library_specs  # noqa: E402

FULL_STEPS, FULL_EPOCHS, FULL_SEEDS = 2000, 30, 3
TORCH_BASELINES = ["powersgd:1", "powersgd:4", "torch-topk:10", "torch-topk:32", "torch-topk:100"]


def default_methods(ratios):
    """(spec, error_feedback) pairs of the full matrix."""
    out = [("none", False)]
    for spec in library_specs(ratios):
        # FetchSGD's error accumulation is part of the method (no "without EF" variant)
        out += [(spec, True)] if spec.startswith("lib-fetchsgd") else [(spec, True), (spec, False)]
    out += [("powersgd:1", True), ("powersgd:4", True)]
    out += [(f"torch-topk:{r:g}", True) for r in ratios] + [("torch-topk:32", False)]
    return out


def parse_methods(text, ef_mode, ratios):
    if not text:
        pairs = default_methods(ratios)
    else:
        efs = {"on": [True], "off": [False], "both": [True, False]}[ef_mode]
        pairs = []
        for s in (s for s in text.split(",") if s):
            spec, _, flag = s.partition("@")  # "spec@ef" / "spec@noef" override --ef
            if spec in ("none", "ddp"):
                pairs.append((spec, False))
            elif flag:
                if flag not in ("ef", "noef"):
                    raise SystemExit(f"--methods: {s!r}: suffix must be @ef or @noef")
                pairs.append((spec, flag == "ef"))
            else:
                pairs += [(spec, e) for e in efs]
        pairs = list(dict.fromkeys(pairs))
    return pairs


def key_of(cfg: RunConfig):
    return (cfg.task, cfg.method, cfg.error_feedback, cfg.seed,
            cfg.steps if cfg.task == "charlm" else cfg.epochs, cfg.corpus_limit, cfg.world)


def load_raw(path):
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            k = r["key"]
            world = k[6] if len(k) > 6 else 2  # records before --world ran on 2 ranks
            done[tuple(k[:4]) + (k[4], k[5], world)] = r
    return done


def fmt_mean(xs, digits=3, scale=1.0):
    xs = [x * scale for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return "-"
    m = sum(xs) / len(xs)
    if len(xs) == 1:
        return f"{m:.{digits}f}"
    sd = (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def write_table(path, rows_by_task, header_lines):
    lines = list(header_lines)
    for task, rows in rows_by_task.items():
        if not rows:
            continue
        if task == "charlm":
            lines += ["", "### (a) character-level LM (GRU 256), validation cross-entropy (nats/char)", "",
                      "| method | EF | ratio after warm-up | traffic ratio | ratio whole run | ms/step | val loss | Δ vs uncompressed | seeds | notes |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
        else:
            lines += ["", "### (b) MLP 64-256-256-10 on scikit-learn digits, test accuracy (%)", "",
                      "| method | EF | ratio after warm-up | traffic ratio | ratio whole run | ms/step | acc epoch 5 | acc end | Δ end vs uncompressed | seeds | notes |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]
        base = None
        for (spec, ef), rs in rows:
            if spec == "none":
                q = [r.get("val_loss") if task == "charlm" else r.get("test_acc") for r in rs]
                q = [x for x in q if x is not None]
                base = sum(q) / len(q) if q else None
        for (spec, ef), rs in rows:
            ok = [r for r in rs if not r.get("diverged")]
            notes = "; ".join(f"seed {r['seed']} diverged ({r['diverged']})" for r in rs if r.get("diverged"))
            ra = fmt_mean([r["ratio_after_warmup"] for r in rs], 1)
            rw = fmt_mean([r["ratio_whole_run"] for r in rs], 1)
            tr = fmt_mean([r.get("traffic_ratio_after_warmup") for r in rs], 1)
            ms = fmt_mean([r["ms_per_step"] for r in rs], 1)
            desc = rs[0].get("describe", spec)
            if task == "charlm":
                q = [r.get("val_loss") for r in ok]
                d = fmt_mean([x - base for x in q], 3) if base is not None and q and spec != "none" else "-"
                cells = [fmt_mean(q, 3), d]
            else:
                a5 = [r.get("acc_epoch5") for r in ok]
                ae = [r.get("test_acc") for r in ok]
                d = fmt_mean([x - base for x in ae], 2, 100) if base is not None and ae and spec != "none" else "-"
                cells = [fmt_mean(a5, 2, 100), fmt_mean(ae, 2, 100), d]
            efs = "sketch space" if spec.startswith("lib-fetchsgd") else ("yes" if ef else "no")
            lines.append(f"| {desc} (`{spec}`) | {efs} | {ra} | {tr} | {rw} | {ms} | "
                         + " | ".join(cells) + f" | {len(rs)} | {notes} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _write(args, tasks, pairs, configs, done, header):
    rows = {t: [((s, e), [done[key_of(c)] for c in configs if c.task == t and c.method == s
                          and c.error_feedback == e and key_of(c) in done])
                for s, e in pairs] for t in tasks}
    rows = {t: [(p, rs) for p, rs in v if rs] for t, v in rows.items()}
    write_table(pathlib.Path(args.out), rows, header)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="charlm,digits")
    ap.add_argument("--methods", default="", help="comma-separated specs, each optionally suffixed @ef or "
                    "@noef (default: the full matrix)")
    ap.add_argument("--ef", default="both", choices=["on", "off", "both"],
                    help="error feedback for --methods (the default matrix sets it per method)")
    ap.add_argument("--ratios", default="10,32,100")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--charlm-seeds", default=None, help="seeds of the char LM (default: --seeds)")
    ap.add_argument("--steps", type=int, default=FULL_STEPS, help="char LM steps")
    ap.add_argument("--epochs", type=int, default=FULL_EPOCHS, help="digits epochs")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--world", type=int, default=2, help="DDP processes (gloo ranks)")
    ap.add_argument("--global-batch", type=int, default=64,
                    help="global batch, held constant: each rank gets global / world")
    ap.add_argument("--corpus-limit", type=int, default=None, help="chars of corpus (smoke tests)")
    ap.add_argument("--val-windows", type=int, default=1024)
    ap.add_argument("--out", default=str(REPO / "benches/results/grad_experiment.md"))
    ap.add_argument("--raw", default=str(REPO / "experiments/grad_compression/results.jsonl"))
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--table-only", action="store_true",
                    help="launch nothing: write the table from the raw results already recorded")
    ap.add_argument("--note", action="append", default=[], help="a line for the table's heading (repeatable)")
    args = ap.parse_args(argv)
    if args.world < 1 or args.global_batch % args.world:
        raise SystemExit(f"--global-batch {args.global_batch} must be a multiple of --world {args.world}")

    ratios = [float(r) for r in args.ratios.split(",") if r]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    charlm_seeds = [int(s) for s in args.charlm_seeds.split(",") if s] if args.charlm_seeds else seeds
    tasks = [t for t in args.tasks.split(",") if t]
    pairs = parse_methods(args.methods, args.ef, ratios)
    raw = pathlib.Path(args.raw)
    done = load_raw(raw)
    reduced = (args.steps < FULL_STEPS or args.epochs < FULL_EPOCHS or len(seeds) < FULL_SEEDS
               or len(charlm_seeds) < FULL_SEEDS or args.corpus_limit is not None or bool(args.methods)
               or tasks != ["charlm", "digits"] or args.world != 2)
    cmd = "scripts/experiment-grad.sh " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    header = [
        "# Gradient compression in DDP: experiment results",
        "",
        ("**REDUCED RUN** (fewer steps/epochs, seeds or methods than the full protocol of "
         f"{FULL_STEPS} char-LM steps, {FULL_EPOCHS} digits epochs, {FULL_SEEDS} seeds, the full method matrix)."
         if reduced else "Full protocol."),
        "",
        f"- command: `{cmd.strip()}`",
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {_cpu()}, "
        f"{platform.python_version()}, torch {_torch_version()}",
        f"- {args.world} processes, gloo over 127.0.0.1, 1 thread each; batch {args.global_batch // args.world} "
        f"per rank ({args.global_batch} global); char LM: "
        f"{args.steps} steps, SGD lr 1.0 momentum 0.9, clip 1.0; digits: {args.epochs} epochs, "
        "SGD lr 0.05 momentum 0.9, clip 1.0",
        f"- seeds: char LM {','.join(map(str, charlm_seeds))}, digits {','.join(map(str, seeds))}; "
        "values are mean ± sample std over seeds (a single value: one seed)",
        f"- the first {args.warmup} steps use an uncompressed all-reduce (warm-up). Ratio = f32 bytes of the "
        "gradient per step / bytes each rank hands to collectives per step, counted by a meter wrapped around "
        "torch.distributed.all_reduce/all_gather during backward (indices, scales, headers, PowerSGD's "
        "uncompressed biases all included); 'after warm-up' excludes the warm-up steps. Traffic ratio = "
        "the bytes a ring all-reduce of the f32 gradient sends per rank at the same N (2 (N-1)/N x 4n) / the "
        "bytes this rank's collectives send by their algorithms' formulas (all_gather (N-1) B, all_to_all "
        "(N-1)/N B, all_reduce 2 (N-1)/N B); it is what the network sees, and for all_gather exchanges it "
        "falls as N grows.",
        "- FetchSGD (`lib-fetchsgd:R:rows:k_fraction`, k = k_fraction x sketch columns) keeps momentum 0.9 in "
        "sketch space: its runs use momentum-free SGD and clip the update at 10 (= clip / (1 - momentum)). "
        "PowerSGD runs use one DDP bucket (it fails on gloo with several, see docs/ddp.md); the other "
        "methods use DDP's default buckets.",
        *[f"- {n}" for n in args.note],
        "- ms/step: median wall time of one training step (forward, backward with communication, clip, "
        "optimizer) after warm-up, on a shared 2-core machine: noisy, compare within one table only.",
    ]
    configs = []
    for task in tasks:
        for spec, ef in pairs:
            for seed in (charlm_seeds if task == "charlm" else seeds):
                cfg = RunConfig(task=task, method=spec, error_feedback=ef, seed=seed, steps=args.steps,
                                epochs=args.epochs, warmup=args.warmup, corpus_limit=args.corpus_limit,
                                val_windows=args.val_windows, log_every=args.log_every,
                                timeout_s=args.timeout, world=args.world,
                                batch=args.global_batch // args.world)
                if task == "digits":
                    cfg.lr = 0.05
                if spec.startswith("powersgd"):
                    # One bucket: PyTorch's PowerSGD hook issues collectives inside future
                    # callbacks and deadlocks on gloo when the model spans several buckets.
                    cfg.bucket_cap_mb, cfg.first_bucket_mb = 64.0, 64.0
                configs.append(cfg)
    print(f"{len(configs)} runs ({sum(1 for c in configs if key_of(c) in done)} already in {raw})", flush=True)
    t0 = time.time()
    # one launch per (task, method, error feedback): its seeds run one after the other in the
    # same two processes, which saves the start-up cost (import torch, gloo rendezvous)
    groups = {}
    for cfg in configs:
        if key_of(cfg) not in done:
            groups.setdefault((cfg.task, cfg.method, cfg.error_feedback), []).append(cfg)
    if args.table_only:
        missing = sum(len(v) for v in groups.values())
        print(f"--table-only: {missing} asked-for runs have no result and are left out", flush=True)
        if missing:
            gone = "; ".join(f"{t} `{s}`{'' if s.startswith(('none', 'lib-fetchsgd')) else (' EF' if e else ' no EF')} "
                             f"seeds {','.join(str(c.seed) for c in cs)}"
                             for (t, s, e), cs in groups.items())
            header = header + [f"- **Not run yet ({missing} of {len(configs)} runs; the table leaves them out):** {gone}"]
        groups = {}
    for gi, ((task, spec, ef), cfgs) in enumerate(groups.items()):
        print(f"[{gi + 1}/{len(groups)}] {task} {spec} ef={ef} seeds={[c.seed for c in cfgs]} "
              f"({time.time() - t0:.0f} s elapsed)", flush=True)
        try:
            results = launch(cfgs)
        except RuntimeError as e:
            msg = f"run failed: {str(e).strip().splitlines()[-1][:200]}"
            print("    " + msg, flush=True)
            results = [{"diverged": msg, "seed": c.seed, "ratio_after_warmup": None, "ratio_whole_run": None,
                        "ms_per_step": None, "describe": c.method} for c in cfgs]
        for cfg, r in zip(cfgs, results):
            k = key_of(cfg)
            r.pop("ranks", None)
            for big in ("losses", "step_bytes", "step_calls", "step_traffic"):
                r.pop(big, None)
            r["key"] = list(k)
            done[k] = r
            with raw.open("a") as f:
                f.write(json.dumps(r) + "\n")
            q = r.get("val_loss", r.get("test_acc"))
            print(f"    seed {cfg.seed}: quality {q}, ratio {r.get('ratio_after_warmup')}, "
                  f"{r.get('ms_per_step')} ms/step" + (f", DIVERGED: {r['diverged']}" if r.get("diverged") else ""),
                  flush=True)
        _write(args, tasks, pairs, configs, done, header)
    _write(args, tasks, pairs, configs, done, header)
    print(f"table written to {args.out}", flush=True)


def _cpu():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                import os
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    return platform.processor()


def _torch_version():
    import torch
    return torch.__version__


if __name__ == "__main__":
    main()
