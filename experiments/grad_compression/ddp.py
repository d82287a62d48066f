"""DDP training over N gloo processes on 127.0.0.1, with a byte meter on the collectives.

``launch(cfg)`` spawns ``cfg.world`` processes that train ``cfg.task`` with the
communication method ``cfg.method`` (see methods.py) and returns rank 0's result
dict (plus every rank's sync/byte checks). Used by the experiment (run.py) and by
python-ctypes/tests/test_ddp.py.

The byte meter wraps ``torch.distributed.all_reduce`` / ``all_gather`` while
``loss.backward()`` runs (that is when DDP calls the communication hook and
when PowerSGD's callbacks issue their collectives) and counts the bytes of the
tensor each rank hands to every collective: an independent count of what went
on the wire, for every method, including PyTorch's PowerSGD hook.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import pathlib
import socket
import sys
import tempfile
import time
import traceback
from typing import List, Optional

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class RunConfig:
    task: str = "charlm"             # charlm | digits | tiny
    method: str = "none"              # a methods.py spec, e.g. "torch-topk:32", "powersgd:4"
    error_feedback: bool = True
    seed: int = 0
    steps: int = 2000                 # charlm / tiny: optimizer steps
    epochs: int = 30                  # digits
    batch: int = 32                   # per rank (2 ranks: 64 global)
    window: int = 64
    lr: float = 1.0
    momentum: float = 0.9
    clip: float = 1.0
    warmup: int = 10
    bucket_cap_mb: float = 25.0
    first_bucket_mb: Optional[float] = None   # DDP's first-bucket cap (torch default 1 MiB)
    world: int = 2
    threads: int = 1
    check_sync_every: int = 100       # 1: after every step
    val_windows: int = 1024
    corpus_limit: Optional[int] = None
    eval_every: int = 0
    timeout_s: float = 600.0
    log_every: int = 0                # progress lines from rank 0 (0: none)
    # char LM: stop early (recorded as diverged) when the mean training loss of
    # the last 100 steps, maximum over ranks, exceeds this after step 300; the
    # untrained model starts near ln(vocab) ~ 4.6 nats/char (None: never stop)
    diverge_loss: Optional[float] = 6.0
    # tests: the hook takes its GPU-bucket path (host copies, payloads copied to
    # the bucket's device and back) on CPU buckets
    stage_through_host: bool = False


class WireMeter:
    """Counts the bytes handed to all_reduce / all_gather / all_to_all_single while
    ``active``, and the network traffic their ring / pairwise algorithms move per
    rank (``traffic``: 2 (N-1)/N B for all_reduce, (N-1) B for all_gather,
    (N-1)/N B for all_to_all_single of B bytes), independently of the hook's
    own counters."""

    def __init__(self, world: int = 2):
        import torch.distributed as dist
        self.active = False
        self.bytes = 0
        self.calls = 0
        self.traffic = 0.0
        self.world = world
        self._orig = (dist.all_reduce, dist.all_gather, dist.all_to_all_single)
        meter = self
        N = world

        def all_reduce(tensor, *a, **k):
            if meter.active:
                b = tensor.numel() * tensor.element_size()
                meter.calls += 1
                meter.bytes += b
                meter.traffic += 2.0 * (N - 1) / N * b
            return meter._orig[0](tensor, *a, **k)

        def all_gather(tensor_list, tensor, *a, **k):
            if meter.active:
                b = tensor.numel() * tensor.element_size()
                meter.calls += 1
                meter.bytes += b
                meter.traffic += (N - 1) * b
            return meter._orig[1](tensor_list, tensor, *a, **k)

        def all_to_all_single(output, input, *a, **k):
            if meter.active:
                b = input.numel() * input.element_size()
                meter.calls += 1
                meter.bytes += b
                meter.traffic += (N - 1) / N * b
            return meter._orig[2](output, input, *a, **k)

        dist.all_reduce, dist.all_gather, dist.all_to_all_single = all_reduce, all_gather, all_to_all_single

    def uninstall(self):
        import torch.distributed as dist
        dist.all_reduce, dist.all_gather, dist.all_to_all_single = self._orig


def _params_equal_across_ranks(model, all_gather) -> bool:
    import torch
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    outs = [torch.empty_like(flat) for _ in range(int(os.environ["WORLD_SIZE"]))]
    all_gather(outs, flat)
    # bitwise: compare the raw bits (NaN-safe)
    ref = outs[0].view(torch.int32)
    return all(torch.equal(ref, o.view(torch.int32)) for o in outs[1:])


def _worker(rank: int, cfgs: List[RunConfig], port: int, out_dir: str):
    results = []
    try:
        import torch.distributed as dist
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=cfgs[0].world,
                                timeout=datetime.timedelta(seconds=max(c.timeout_s for c in cfgs)))
        for cfg in cfgs:
            results.append(_train(rank, cfg))
        dist.destroy_process_group()
    except Exception:  # report instead of hanging the parent
        results.append({"error": traceback.format_exc()})
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)


_TORCH_FIRST_BUCKET_BYTES = None


def _train(rank: int, cfg: RunConfig) -> dict:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel as DDP

    sys.path.insert(0, str(REPO / "python-ctypes"))
    sys.path.insert(0, str(REPO))
    from experiments.grad_compression import data as D
    from experiments.grad_compression.methods import make_method
    from experiments.grad_compression.models import MLP, CharGRU

    global _TORCH_FIRST_BUCKET_BYTES
    if _TORCH_FIRST_BUCKET_BYTES is None:
        _TORCH_FIRST_BUCKET_BYTES = dist._DEFAULT_FIRST_BUCKET_BYTES
    torch.set_num_threads(cfg.threads)
    os.environ["WORLD_SIZE"] = str(cfg.world)
    raw_gather = dist.all_gather
    torch.manual_seed(cfg.seed)
    if cfg.task == "charlm":
        model = CharGRU()
        train, val = D.char_corpus(limit_chars=cfg.corpus_limit)
        valw = torch.from_numpy(D.char_val_windows(val, cfg.val_windows, cfg.window).astype(np.int64))
    elif cfg.task == "digits":
        model = MLP()
        xtr, ytr, xte, yte = (torch.from_numpy(a) for a in D.digits(cfg.seed))
    elif cfg.task == "tiny":
        # several buckets on purpose: 4 Linear layers, bucket caps far below their size
        model = MLP((64, 128, 128, 64, 10))
        xtr, ytr, xte, yte = (torch.from_numpy(a) for a in D.digits(cfg.seed))
    else:
        raise ValueError(f"task: unknown {cfg.task!r}")
    n_params = sum(p.numel() for p in model.parameters())
    dist._DEFAULT_FIRST_BUCKET_BYTES = (_TORCH_FIRST_BUCKET_BYTES if cfg.first_bucket_mb is None
                                        else int(cfg.first_bucket_mb * 1024 * 1024))
    ddp = DDP(model, bucket_cap_mb=cfg.bucket_cap_mb)
    setup = make_method(cfg.method, error_feedback=cfg.error_feedback, warmup=cfg.warmup,
                        seed=cfg.seed, world=cfg.world)
    if setup.hook is not None:
        if cfg.stage_through_host:
            setup.state._stage_through_host = True
        ddp.register_comm_hook(setup.state, setup.hook)
    momentum = cfg.momentum if setup.momentum is None else setup.momentum
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=momentum)
    meter = WireMeter(cfg.world)

    losses, step_times, step_bytes, step_calls, sync_fail, evals = [], [], [], [], 0, []
    step_traffic = []
    sync_checks = 0

    def val_loss():
        model.eval()
        tot, cnt = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(valw), 256):
                w = valw[i:i + 256]
                logits = model(w[:, :-1])
                tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                       reduction="sum").item()
                cnt += w[:, 1:].numel()
        model.train()
        return tot / cnt

    def accuracy():
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        model.train()
        return acc

    def one_step(x, y, step):
        nonlocal sync_fail, sync_checks
        t0 = time.perf_counter()
        out = ddp(x)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=False)
        b0, c0, t0r = meter.bytes, meter.calls, meter.traffic
        meter.active = True
        loss.backward()
        meter.active = False
        if cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip * setup.clip_scale)
        opt.step()
        step_times.append(time.perf_counter() - t0)
        step_bytes.append(meter.bytes - b0)
        step_calls.append(meter.calls - c0)
        step_traffic.append(meter.traffic - t0r)
        losses.append(loss.item())
        if cfg.check_sync_every and (step + 1) % cfg.check_sync_every == 0:
            sync_checks += 1
            sync_fail += 0 if _params_equal_across_ranks(model, raw_gather) else 1
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"loss became {losses[-1]} at step {step}")
        if (cfg.task == "charlm" and cfg.diverge_loss is not None and step + 1 >= 300
                and (step + 1) % 100 == 0):
            # a collective decision (raw all_gather, outside the meter), so
            # every rank stops at the same step
            mine = torch.tensor([float(np.mean(losses[-100:]))])
            outs = [torch.empty_like(mine) for _ in range(cfg.world)]
            raw_gather(outs, mine)
            worst = max(float(o[0]) for o in outs)
            if worst > cfg.diverge_loss:
                raise FloatingPointError(
                    f"mean training loss {worst:.2f} over steps {step - 98}-{step + 1} exceeds "
                    f"{cfg.diverge_loss} (stopped early)")

    res = {"n_params": n_params, "task": cfg.task, "method": cfg.method, "ef": cfg.error_feedback,
           "seed": cfg.seed, "describe": setup.describe, "optimizer_momentum": momentum}
    t_start = time.perf_counter()
    diverged = None
    try:
        if cfg.task == "charlm":
            for step in range(cfg.steps):
                b = torch.from_numpy(D.char_batch(train, cfg.batch, cfg.window, cfg.seed, rank, step).astype(np.int64))
                one_step(b[:, :-1], b[:, 1:], step)
                if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and rank == 0:
                    evals.append((step + 1, val_loss()))
                if cfg.log_every and rank == 0 and (step + 1) % cfg.log_every == 0:
                    print(f"  [{cfg.method} ef={int(cfg.error_feedback)} seed={cfg.seed}] step {step + 1}/{cfg.steps} "
                          f"loss {np.mean(losses[-cfg.log_every:]):.3f} {np.median(step_times[-cfg.log_every:]) * 1e3:.0f} ms/step",
                          flush=True)
        else:
            steps_per_epoch = len(xtr) // (cfg.world * cfg.batch)
            step = 0
            n_epochs = cfg.epochs if cfg.task == "digits" else max(1, cfg.steps // steps_per_epoch + 1)
            for epoch in range(n_epochs):
                perm = torch.from_numpy(np.random.default_rng([cfg.seed, epoch]).permutation(len(xtr)))
                mine = perm[rank::cfg.world]
                for i in range(steps_per_epoch):
                    if cfg.task == "tiny" and step >= cfg.steps:
                        break
                    idx = mine[i * cfg.batch:(i + 1) * cfg.batch]
                    one_step(xtr[idx], ytr[idx], step)
                    step += 1
                if rank == 0:
                    evals.append((epoch + 1, accuracy()))
                if cfg.log_every and rank == 0:
                    print(f"  [{cfg.method} ef={int(cfg.error_feedback)} seed={cfg.seed}] epoch {epoch + 1}/{n_epochs} "
                          f"acc {evals[-1][1]:.4f}", flush=True)
    except FloatingPointError as e:
        diverged = str(e)
    except RuntimeError as e:  # e.g. a compressor rejecting non-finite gradients inside the hook
        if "finite" not in str(e).lower() and "nan" not in str(e).lower():
            raise
        diverged = f"error at step {len(losses)}: {str(e).strip().splitlines()[-1][:160]}"
        meter.active = False
    res["wall_s"] = time.perf_counter() - t_start
    meter.uninstall()

    w = cfg.warmup
    f32_step = 4 * n_params
    nsteps = len(step_bytes)
    res.update({
        "steps": nsteps, "losses": losses, "evals": evals, "diverged": diverged,
        "sync_checks": sync_checks, "sync_failures": sync_fail,
        "step_bytes": step_bytes, "step_calls": step_calls, "step_traffic": step_traffic,
        "world": cfg.world,
        "traffic_per_step": float(np.median(step_traffic[w:])) if nsteps > w else None,
        # ring all-reduce of the f32 gradient at the same N / the traffic this rank sent
        "traffic_ratio_after_warmup": ((2.0 * (cfg.world - 1) / cfg.world * f32_step * (nsteps - w)
                                        / sum(step_traffic[w:]))
                                       if cfg.world > 1 and nsteps > w and sum(step_traffic[w:]) else None),
        "ratio_after_warmup": (f32_step * (nsteps - w) / sum(step_bytes[w:])) if nsteps > w and sum(step_bytes[w:]) else None,
        "ratio_whole_run": (f32_step * nsteps / sum(step_bytes)) if sum(step_bytes) else None,
        "ms_per_step": 1e3 * float(np.median(step_times[w:] or step_times)) if step_times else None,
    })
    st = setup.state
    if hasattr(st, "bytes_sent"):
        res["hook_counters"] = {k: getattr(st, k) for k in (
            "bytes_sent", "f32_bytes", "bytes_sent_compressed", "f32_bytes_compressed",
            "collectives", "hook_calls", "steps", "traffic_sent", "traffic_recv", "dense_traffic",
            "traffic_sent_compressed", "dense_traffic_compressed")}
        res["hook_bucket_sizes"] = sorted(b.n for b in st._buckets.values())
    if diverged is None and rank == 0:
        if cfg.task == "charlm":
            res["val_loss"] = val_loss()
        else:
            res["test_acc"] = accuracy()
            res["acc_epoch5"] = next((a for e, a in evals if e == 5), None)
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(cfg):
    """Run DDP training in ``world`` fresh processes (``python -m
    experiments.grad_compression.ddp``): one RunConfig, or a list of them run one
    after the other in the same processes (saves the start-up cost). Returns rank
    0's result plus ``ranks`` (every rank's result), or a list of those. Raises
    RuntimeError on a failure or timeout."""
    cfgs = cfg if isinstance(cfg, (list, tuple)) else [cfg]
    if len({c.world for c in cfgs}) != 1:
        raise ValueError("cfg: all configurations of one launch need the same world size")
    world = cfgs[0].world
    timeout = sum(c.timeout_s for c in cfgs) + 60
    import subprocess
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "python-ctypes")] +
                                        ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("OMP_NUM_THREADS", str(cfgs[0].threads))
    # the library's pool too: N ranks on one machine each with every core would
    # oversubscribe it (the region exchange runs large buckets on its threads)
    env.setdefault("TRITTER_NUM_THREADS", str(cfgs[0].threads))
    with tempfile.TemporaryDirectory() as out_dir:
        port = free_port()
        spec = json.dumps([dataclasses.asdict(c) for c in cfgs])
        procs = [subprocess.Popen([sys.executable, "-m", "experiments.grad_compression.ddp", spec, str(r),
                                   str(port), out_dir], cwd=str(REPO), env=env)
                 for r in range(world)]
        deadline = time.time() + timeout
        try:
            for p in procs:
                p.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"DDP run timed out after {timeout:.0f} s: {cfgs}")
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        ranks = []
        for r in range(world):
            path = os.path.join(out_dir, f"rank{r}.json")
            if not os.path.exists(path):
                raise RuntimeError(f"DDP rank {r} exited with {procs[r].returncode} and no result")
            with open(path) as f:
                ranks.append(json.load(f))
    errors = [x["error"] for r in ranks for x in r if "error" in x]
    if errors:
        raise RuntimeError("DDP worker failed:\n" + "\n".join(errors))
    out = []
    for i in range(len(cfgs)):
        res = dict(ranks[0][i])
        res["ranks"] = [r[i] for r in ranks]
        out.append(res)
    return out if isinstance(cfg, (list, tuple)) else out[0]


if __name__ == "__main__":
    _cfgs = [RunConfig(**c) for c in json.loads(sys.argv[1])]
    _worker(int(sys.argv[2]), _cfgs, int(sys.argv[3]), sys.argv[4])
