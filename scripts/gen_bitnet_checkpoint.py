#!/usr/bin/env python3
"""Writes a random checkpoint shaped like microsoft/bitnet-b1.58-2B-4T in the
Hugging Face layout transformers reads (config.json + model.safetensors):
packed uint8 [out/4, in] ternary weights (valid codes), bf16 weight_scale,
bf16 embeddings and norms. Streams tensor by tensor (little memory).

    python3 scripts/gen_bitnet_checkpoint.py OUT_DIR [--layers 30] [--hidden 2560]
        [--intermediate 6912] [--heads 20] [--kv-heads 5] [--vocab 128256] [--seed 0]

Never write it into the repository: use /tmp or another scratch directory.
"""
import argparse
import json
import os
import struct

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=2560)
    ap.add_argument("--intermediate", type=int, default=6912)
    ap.add_argument("--heads", type=int, default=20)
    ap.add_argument("--kv-heads", type=int, default=5)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    h, i, hd = a.hidden, a.intermediate, a.hidden // a.heads
    kv = a.kv_heads * hd
    tensors = [("model.embed_tokens.weight", "BF16", (a.vocab, h))]
    for l in range(a.layers):
        p = f"model.layers.{l}."
        for name, (o, k) in [("self_attn.q_proj", (h, h)), ("self_attn.k_proj", (kv, h)),
                             ("self_attn.v_proj", (kv, h)), ("self_attn.o_proj", (h, h)),
                             ("mlp.gate_proj", (i, h)), ("mlp.up_proj", (i, h)), ("mlp.down_proj", (h, i))]:
            tensors.append((p + name + ".weight", "U8", (o // 4, k)))
            tensors.append((p + name + ".weight_scale", "BF16", (1,)))
        for name, n in [("input_layernorm", h), ("post_attention_layernorm", h),
                        ("self_attn.attn_sub_norm", h), ("mlp.ffn_sub_norm", i)]:
            tensors.append((p + name + ".weight", "BF16", (n,)))
    tensors.append(("model.norm.weight", "BF16", (h,)))
    size = {"U8": 1, "BF16": 2}
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shape in tensors:
        n = int(np.prod(shape)) * size[dt]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    # The 81 bytes whose four 2-bit fields are all valid codes (0, 1, 2).
    valid = np.array([sum(((v // 3 ** j) % 3) << (2 * j) for j in range(4)) for v in range(81)], np.uint8)
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for name, dt, shape in tensors:
            if dt == "U8":
                for r0 in range(0, shape[0], 256):  # in slices, to stay small
                    r1 = min(shape[0], r0 + 256)
                    f.write(valid[rng.integers(0, 81, size=(r1 - r0, shape[1]))].tobytes())
            else:
                x = rng.standard_normal(shape).astype(np.float32) * (0.02 if "embed" in name else 1.0)
                if name.endswith("weight_scale"):
                    x = np.abs(x) + 0.5
                f.write((x.view(np.uint32) >> 16).astype(np.uint16).tobytes())
    cfg = {"architectures": ["BitNetForCausalLM"], "model_type": "bitnet", "vocab_size": a.vocab,
           "hidden_size": h, "intermediate_size": i, "num_hidden_layers": a.layers,
           "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "hidden_act": "relu2",
           "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
           "rope_parameters": {"rope_theta": 500000.0, "rope_type": "default"}, "torch_dtype": "bfloat16",
           "quantization_config": {"quant_method": "bitnet", "linear_class": "bitlinear",
                                   "quantization_mode": "offline"}}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    print(f"{a.out}: {len(tensors)} tensors, {off / 1e9:.3f} GB of data")


if __name__ == "__main__":
    main()
