"""Engine benchmark on a random checkpoint of BitNet-2B-4T's shape.

Run through scripts/bench-engine.sh. Writes the checkpoint once (HF layout:
packed uint8 ternary projections + bf16 weight_scale, bf16 embedding, tied
head) to --dir, then measures in one process, at 1 and 2 threads:

* the machine's read bandwidth (torch sum over 1 GiB of f32, median of 5);
* engine prefill of a 128-token prompt (logits of the last token), decode
  tokens/s at context 128 and 1024, the bytes each decode step reads
  (ternary weights, lm_head, the KV cache up to that context) and their
  rate against the measured bandwidth;
* transformers' BitNetForCausalLM with the same shape unquantized in bf16
  (random weights; its KV cache filled with random values for context 1024)
  for prefill 128 and decode at both contexts, and the ratios;
* memory of weights, KV cache and activations (engine.memory);
* decode at context 1024 with a bf16 KV cache (transformers' bf16 model
  keeps its cache in bf16: the like-for-like row);
* an int8 lm_head: its decode speed and its top-1 agreement with the bf16 head.

Medians of --rounds timings, interleaved per thread count. Prints a table.
"""
import argparse
import json
import os
import pathlib
import statistics
import time

import numpy as np

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
import torch  # noqa: E402

import tritter_accel as ta  # noqa: E402

SHAPE = dict(vocab_size=128256, hidden_size=2560, intermediate_size=6912, num_hidden_layers=30,
             num_attention_heads=20, num_key_value_heads=5, hidden_act="relu2", max_position_embeddings=4096,
             rms_norm_eps=1e-5, tie_word_embeddings=True,
             rope_parameters={"rope_type": "default", "rope_theta": 500000.0})


def pack(t):
    """transformers' pack_weights in NumPy: t int8 [out, in] -> uint8 [out/4, in]."""
    out, _ = t.shape
    r = out // 4
    codes = (t + 1).astype(np.uint8)
    p = np.zeros((r, t.shape[1]), np.uint8)
    for j in range(4):
        p |= codes[j * r:(j + 1) * r] << (2 * j)
    return p


def write_checkpoint(d, shape, seed=0):
    from safetensors.torch import save_file

    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, i, nh, nkv = shape["hidden_size"], shape["intermediate_size"], shape["num_attention_heads"], \
        shape["num_key_value_heads"]
    kv = h // nh * nkv
    sd = {"model.embed_tokens.weight": torch.randn(shape["vocab_size"], h, dtype=torch.bfloat16),
          "model.norm.weight": torch.ones(h, dtype=torch.bfloat16)}
    for l_ in range(shape["num_hidden_layers"]):
        p = f"model.layers.{l_}"
        for name, o, n in [("self_attn.q_proj", h, h), ("self_attn.k_proj", kv, h), ("self_attn.v_proj", kv, h),
                           ("self_attn.o_proj", h, h), ("mlp.gate_proj", i, h), ("mlp.up_proj", i, h),
                           ("mlp.down_proj", h, i)]:
            t = rng.integers(-1, 2, size=(o, n), dtype=np.int8)
            sd[f"{p}.{name}.weight"] = torch.from_numpy(pack(t))
            sd[f"{p}.{name}.weight_scale"] = torch.tensor([float(np.sqrt(n))], dtype=torch.bfloat16)
        for name, n in [("input_layernorm", h), ("post_attention_layernorm", h), ("self_attn.attn_sub_norm", h),
                        ("mlp.ffn_sub_norm", i)]:
            sd[f"{p}.{name}.weight"] = torch.ones(n, dtype=torch.bfloat16)
    save_file(sd, str(d / "model.safetensors"))
    cfg = dict(shape, model_type="bitnet", architectures=["BitNetForCausalLM"], bos_token_id=128000,
               eos_token_id=128001,
               quantization_config={"quant_method": "bitnet", "linear_class": "bitlinear",
                                    "quantization_mode": "offline"})
    (d / "config.json").write_text(json.dumps(cfg, indent=1))


def med(f, rounds):
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def decode_rate(sess, prompt, ctx, steps, rounds):
    """Median tokens/s of decoding `steps` tokens after truncating to `ctx` positions."""
    ts = []
    for _ in range(rounds):
        sess.truncate(0, ctx)
        t0 = time.perf_counter()
        for t in prompt[ctx:ctx + steps]:
            sess.decode([int(t)])
        ts.append((time.perf_counter() - t0) / steps)
    return 1 / statistics.median(ts)


def bandwidth(threads, rounds=5):
    torch.set_num_threads(threads)
    a = torch.ones(1 << 28, dtype=torch.float32)  # 1 GiB
    a.sum()
    t = med(lambda: a.sum(), rounds)
    return a.numel() * 4 / t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="/tmp/tritter-bitnet-2b-shape")
    ap.add_argument("--layers", type=int, default=SHAPE["num_hidden_layers"])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--decode-steps", type=int, default=8)
    ap.add_argument("--no-hf", action="store_true", help="skip transformers bf16")
    ap.add_argument("--threads", default="1,2")
    a = ap.parse_args()
    shape = dict(SHAPE, num_hidden_layers=a.layers)
    d = pathlib.Path(a.dir + ("" if a.layers == SHAPE["num_hidden_layers"] else f"-{a.layers}l"))
    if not (d / "config.json").exists():
        t0 = time.perf_counter()
        write_checkpoint(d, shape)
        print(f"wrote {d} in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    eng = ta.InferenceEngine.from_pretrained(d)
    print(f"loaded in {time.perf_counter() - t0:.1f} s; cpu: {os.popen('uptime').read().strip()}")
    info = eng.info()
    threads = [int(x) for x in a.threads.split(",")]
    rng = np.random.default_rng(1)
    prompt = rng.integers(0, shape["vocab_size"], 1024 + a.decode_steps * (len(threads) + 2) * 2)
    mem = eng.memory(max_seq_len=1100, cache_dtype="f32")
    kv_per_pos = 2 * shape["num_hidden_layers"] * shape["num_key_value_heads"] * info["head_dim"] * 4
    head_bytes = 2 * shape["vocab_size"] * shape["hidden_size"]
    ternary_bytes = info["weight_bytes"] - head_bytes - 4 * (  # embedding (tied) + f32 norms
        shape["hidden_size"] * (3 * shape["num_hidden_layers"] + 1) + shape["intermediate_size"] *
        shape["num_hidden_layers"])
    res = {}
    bw = {}
    for n in threads:
        bw[n] = bandwidth(n)
    torch.set_num_threads(max(threads))
    # --- engine
    s = eng.session(max_seq_len=1100, max_step_tokens=256)
    for n in threads:
        ta.set_num_threads(n)
        pre = []
        for _ in range(max(1, a.rounds // 2)):
            s.reset(0)
            t0 = time.perf_counter()
            s.prefill(prompt[:128])
            pre.append(time.perf_counter() - t0)
        res[("engine", "prefill128", n)] = 128 / statistics.median(pre)
    ta.set_num_threads(max(threads))
    s.reset(0)
    t0 = time.perf_counter()
    s.prefill(prompt[:1024])
    print(f"engine prefill 1024 at {max(threads)} threads: {1024 / (time.perf_counter() - t0):.1f} tok/s")
    for ctx in (1024, 128):
        for n in threads:
            ta.set_num_threads(n)
            res[("engine", f"decode{ctx}", n)] = decode_rate(s, prompt, ctx, a.decode_steps, a.rounds)
    s.close()
    # --- bf16 KV cache (what transformers' bf16 model keeps): decode at context 1024
    sb = eng.session(max_seq_len=1100, max_step_tokens=256, cache_dtype="bf16")
    sb.prefill(prompt[:1024])
    for n in threads:
        ta.set_num_threads(n)
        res[("engine-bf16-kv", "decode1024", n)] = decode_rate(sb, prompt, 1024, a.decode_steps, a.rounds)
    sb.close()
    # --- int8 lm_head
    e8 = ta.InferenceEngine.from_pretrained(d, lm_head_int8=True)
    probe = prompt[:64]
    agree = float((eng.forward(probe).argmax(-1) == e8.forward(probe).argmax(-1)).mean())
    s8 = e8.session(max_seq_len=256)
    s8.prefill(prompt[:128])
    for n in threads:
        ta.set_num_threads(n)
        res[("engine-int8-head", "decode128", n)] = decode_rate(s8, prompt, 128, a.decode_steps, a.rounds)
    s8.close()
    e8.close()
    # --- transformers bf16, same shape, unquantized
    if not a.no_hf:
        from transformers import BitNetConfig, BitNetForCausalLM, DynamicCache

        cfg = BitNetConfig(**shape)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        with torch.device("cpu"):
            hf = BitNetForCausalLM(cfg).to(torch.bfloat16).eval()
        print(f"transformers bf16 model built in {time.perf_counter() - t0:.0f} s")
        ids = torch.from_numpy(prompt[:128]).long()[None]
        kvh, hd = shape["num_key_value_heads"], info["head_dim"]
        for n in threads:
            torch.set_num_threads(n)
            with torch.no_grad():
                hf(ids[:, :8])
                res[("hf-bf16", "prefill128", n)] = 128 / med(lambda: hf(ids), max(1, a.rounds // 2))
                for ctx in (128, 1024):
                    ts = []
                    for r in range(max(1, a.rounds // 2)):
                        cache = DynamicCache(config=cfg)
                        g = torch.Generator().manual_seed(r)
                        for li in range(shape["num_hidden_layers"]):
                            k = torch.randn(1, kvh, ctx, hd, generator=g).to(torch.bfloat16)
                            cache.update(k, k.clone(), li)
                        tok = ids[:, :1]
                        t0 = time.perf_counter()
                        for _ in range(a.decode_steps):
                            out = hf(tok, cache=cache, use_cache=True)
                            tok = out.logits[:, -1:].argmax(-1)
                        ts.append((time.perf_counter() - t0) / a.decode_steps)
                    res[("hf-bf16", f"decode{ctx}", n)] = 1 / statistics.median(ts)
        del hf
    # --- report
    print(f"\nBitNet-2B-4T shape ({shape['num_hidden_layers']} layers), random weights; "
          f"load: {os.popen('uptime').read().strip()}")
    print(f"memory: weights {mem['weights'] / 2**20:.0f} MiB (ternary {ternary_bytes / 2**20:.0f}, "
          f"bf16 embedding = tied lm_head {head_bytes / 2**20:.0f}), KV cache f32 at 1100 positions "
          f"{mem['kv_cache'] / 2**20:.0f} MiB ({kv_per_pos} B/position), activations (256-token steps) "
          f"{mem['activations'] / 2**20:.1f} MiB")
    print(f"int8 lm_head top-1 agreement with the bf16 head: {agree:.3f} over {probe.size} positions")
    print("\n| threads | read GB/s | what | engine tok/s | bytes/token | GB/s read | % of read bw | "
          "transformers bf16 tok/s | engine / bf16 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in threads:
        for what in ("prefill128", "decode128", "decode1024"):
            e = res[("engine", what, n)]
            h = res.get(("hf-bf16", what, n))
            if what.startswith("decode"):
                ctx = int(what[6:])
                b = ternary_bytes + head_bytes + kv_per_pos * ctx
                cols = f"{b / 1e9:.2f} GB | {b * e / 1e9:.1f} | {100 * b * e / bw[n]:.0f}%"
            else:
                cols = "- | - | -"
            hs = f"{h:.2f} | {e / h:.1f}x" if h else "- | -"
            print(f"| {n} | {bw[n] / 1e9:.1f} | {what} | {e:.2f} | {cols} | {hs} |")
        eb = res[("engine-bf16-kv", "decode1024", n)]
        bb = ternary_bytes + head_bytes + kv_per_pos // 2 * 1024
        h = res.get(("hf-bf16", "decode1024", n))
        hs = f"{h:.2f} | {eb / h:.1f}x" if h else "- | -"
        print(f"| {n} | {bw[n] / 1e9:.1f} | decode1024, bf16 KV cache | {eb:.2f} | {bb / 1e9:.2f} GB | "
              f"{bb * eb / 1e9:.1f} | {100 * bb * eb / bw[n]:.0f}% | {hs} |")
        e8 = res[("engine-int8-head", "decode128", n)]
        b8 = ternary_bytes + head_bytes / 2 + kv_per_pos * 128
        print(f"| {n} | {bw[n] / 1e9:.1f} | decode128, int8 lm_head | {e8:.2f} | {b8 / 1e9:.2f} GB | "
              f"{b8 * e8 / 1e9:.1f} | {100 * b8 * e8 / bw[n]:.0f}% | - | - |")


if __name__ == "__main__":
    main()
