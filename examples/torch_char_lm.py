#!/usr/bin/env python3
"""A character-level language model on the license texts every Debian/Ubuntu
machine ships (/usr/share/common-licenses, package base-files), f32 vs
ternary, same seed, data and steps.

    python examples/torch_char_lm.py                     # full run
    python examples/torch_char_lm.py --steps 30 --eval-windows 64   # quick

The model is a small causal transformer (pre-norm, 2 blocks); the ternary
variant replaces every linear layer inside the blocks (attention q/k/v/o and
the MLP) with tritter_accel.torch.TernaryLinear; embeddings, norms and the
output head stay f32 (as BitNet b1.58 keeps them). Held-out files: Artistic,
BSD, CC0-1.0, MPL-2.0 (texts with no near-duplicate in the training files).
Prints validation perplexity (exp of the mean cross-entropy in nats/char),
the ratio ternary / f32, linear-weight memory of the blocks and time per
training step.
"""
import argparse
import math
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python-ctypes"))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import tritter_accel as ta  # noqa: E402
from tritter_accel.torch import TernaryLinear, linear_weight_bytes  # noqa: E402

CORPUS = pathlib.Path("/usr/share/common-licenses")
HELD_OUT = {"Artistic", "BSD", "CC0-1.0", "MPL-2.0"}


def load_corpus(root=CORPUS):
    files, seen = {}, set()
    for p in sorted(root.iterdir()):
        real = os.path.realpath(p)
        if not p.is_file() or real in seen:
            continue
        seen.add(real)
        files[p.name] = p.read_text(encoding="utf-8", errors="replace")
    if not files:
        raise SystemExit(f"no text files under {root}")
    train = "\n".join(t for n, t in files.items() if n not in HELD_OUT)
    val = "\n".join(t for n, t in files.items() if n in HELD_OUT)
    chars = sorted(set(train) | set(val))
    stoi = {c: i for i, c in enumerate(chars)}

    def enc(s):
        return torch.tensor([stoi[c] for c in s], dtype=torch.long)

    return enc(train), enc(val), len(chars), sorted(files)


class Block(nn.Module):
    def __init__(self, d, heads, lin):
        super().__init__()
        self.heads = heads
        self.n1, self.n2 = nn.RMSNorm(d), nn.RMSNorm(d)
        self.q, self.k, self.v, self.o = lin(d, d), lin(d, d), lin(d, d), lin(d, d)
        self.up, self.down = lin(d, 4 * d), lin(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        h = self.n1(x)

        def split(z):
            return z.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        a = F.scaled_dot_product_attention(split(self.q(h)), split(self.k(h)), split(self.v(h)), is_causal=True)
        x = x + self.o(a.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.n2(x))))


class CharLM(nn.Module):
    def __init__(self, vocab, d, heads, layers, ctx, kind, mode):
        super().__init__()

        def lin(i, o):
            return nn.Linear(i, o) if kind == "f32" else TernaryLinear(i, o, mode=mode)

        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList([Block(d, heads, lin) for _ in range(layers)])
        self.norm = nn.RMSNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x))


def batches(data, ctx, batch, gen):
    starts = torch.randint(0, len(data) - ctx - 1, (batch,), generator=gen)
    x = torch.stack([data[s:s + ctx] for s in starts])
    y = torch.stack([data[s + 1:s + ctx + 1] for s in starts])
    return x, y


@torch.no_grad()
def evaluate(model, val, ctx, windows):
    model.eval()
    # fixed, evenly spaced windows; every target position counts
    n = min(windows, (len(val) - 1) // ctx)
    starts = torch.linspace(0, len(val) - ctx - 1, n).long()
    tot, cnt = 0.0, 0
    for i in range(0, n, 64):
        s = starts[i:i + 64]
        x = torch.stack([val[j:j + ctx] for j in s])
        y = torch.stack([val[j + 1:j + ctx + 1] for j in s])
        logits = model(x)
        tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
        cnt += y.numel()
    model.train()
    return tot / cnt


def run(kind, data, args):
    train, val, vocab, _ = data
    torch.manual_seed(args.seed)
    model = CharLM(vocab, args.d, args.heads, args.layers, args.ctx, kind, args.mode)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    gen = torch.Generator().manual_seed(args.seed)
    t_train = 0.0
    for step in range(args.steps):
        x, y = batches(train, args.ctx, args.batch, gen)
        t0 = time.perf_counter()
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        t_train += time.perf_counter() - t0
        if args.log and (step + 1) % args.log == 0:
            print(f"  {kind} step {step + 1}: train loss {loss.item():.3f}", flush=True)
        if args.eval_every and (step + 1) % args.eval_every == 0 and step + 1 < args.steps:
            # no randomness: the training run continues exactly as without it
            print(f"  {kind} step {step + 1}: val {evaluate(model, val, args.ctx, args.eval_windows):.4f} nats/char",
                  flush=True)
    vloss = evaluate(model, val, args.ctx, args.eval_windows)
    return vloss, t_train / max(args.steps, 1), linear_weight_bytes(model.blocks)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--ctx", type=int, default=64)
    p.add_argument("--d", type=int, default=192)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--mode", default="bitnet", choices=["bittorch", "bitnet"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-windows", type=int, default=512)
    p.add_argument("--log", type=int, default=0, help="print the training loss every N steps")
    p.add_argument("--eval-every", type=int, default=0,
                   help="also print the validation loss every N steps (for runs that may not finish)")
    p.add_argument("--kinds", nargs="+", default=["f32", "ternary"], choices=["f32", "ternary"],
                   help="which variants to train (separate processes can run one each)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and library threads (small layers run best on one)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ta.set_num_threads(args.threads)
    data = load_corpus()
    print(f"corpus {CORPUS}: {len(data[3])} files, {len(data[0])} train / {len(data[1])} held-out chars "
          f"(held out: {', '.join(sorted(HELD_OUT))}), vocab {data[2]}")
    print(f"model: d {args.d}, {args.layers} blocks, {args.heads} heads, ctx {args.ctx}; {args.steps} steps of "
          f"{args.batch} x {args.ctx} chars, AdamW lr {args.lr} (warmup + cosine); ternary mode {args.mode}; "
          f"torch threads {torch.get_num_threads()}")
    res = {}
    for kind in args.kinds:
        res[kind] = vl, tps, wb = run(kind, data, args)
        print(f"{kind} done: val {vl:.4f} nats/char, ppl {math.exp(vl):.3f}, {tps * 1e3:.1f} ms/step", flush=True)
    print(f"{'':8} {'val nats/char':>13} {'val ppl':>8} {'block weights':>14} {'ms/step':>8}")
    for kind, (vl, tps, wb) in res.items():
        print(f"{kind:8} {vl:13.4f} {math.exp(vl):8.3f} {wb:>12} B {tps * 1e3:8.1f}")
    if len(res) < 2:
        return res
    ratio = math.exp(res["ternary"][0]) / math.exp(res["f32"][0])
    print(f"perplexity ratio ternary / f32: {ratio:.3f} (target <= 1.10); block weight memory ratio "
          f"{res['f32'][2] / res['ternary'][2]:.1f}x")
    return res


if __name__ == "__main__":
    main()
