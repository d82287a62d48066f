"""The inference engine against transformers' own BitNetForCausalLM.

Small random BitNet checkpoints are written with transformers' classes
(BitNetConfig, BitNetForCausalLM's state dict, integrations.bitnet.pack_weights,
safetensors) and loaded by both transformers (float32, BitLinear) and the
engine. Required:

* logits of batched prompts of different lengths within LOGIT_TOL (below);
* the same argmax wherever transformers' top-2 margin exceeds 2 * LOGIT_TOL;
* identical greedy continuations of 32 tokens (transformers' generate);
* clear errors for bad input, the session staying usable.

Why a tolerance, and this one. Both sides compute in f32 with the same
formulas, and the integer part of every BitLinear (ternary weights times
int8 activations) is exact on both. They still differ by f32 rounding (sum
orders, `y/(ws*sx)` vs `(y/ws)/sx`, exp/cos): relative 1e-6. Such a
difference can move an activation `x*sx` that lies within 1e-6 of a
half-integer to the other side of the rounding, so one int8 activation
differs by one step, and the layer's outputs by `max|x|/(127*ws)` times a
weight column; later layers carry that on. The test measures, for each
model, how far the logits move when transformers itself is run on inputs
perturbed by one f32 ulp (`noise floor`): that is the spread int8 rounding
produces inside transformers alone. LOGIT_TOL is 4x that floor (and at
least 1e-4 * max|logit|): a real error (a wrong norm, RoPE, head mapping,
scale) moves logits by O(1) and fails by orders of magnitude.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import tritter_accel as ta  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]

# name: (BitNetConfig kwargs, extra config.json keys)
MODELS = {
    # GQA 2, untied head, default RoPE
    "gqa2": dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                 rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    # GQA 3, tied head, head_dim 10, llama3 RoPE scaling, 3 layers, odd vocab
    "gqa3_tied_llama3": dict(vocab_size=101, hidden_size=60, intermediate_size=68, num_hidden_layers=3,
                             num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=True,
                             rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                              "original_max_position_embeddings": 16}),
    # multi-query (1 kv head), head_dim 12, silu, biases, rms eps 1e-6
    "mqa_bias_silu": dict(vocab_size=83, hidden_size=36, intermediate_size=52, num_hidden_layers=2,
                          num_attention_heads=3, num_key_value_heads=1, tie_word_embeddings=False,
                          attention_bias=True, hidden_act="silu", rms_norm_eps=1e-6,
                          rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}),
}

QUANT = {"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"}


def write_checkpoint(path, kwargs, seed, weight_scale_dtype=torch.bfloat16, drop=(), reshape=None, config_edit=None):
    """A BitNet checkpoint directory as transformers writes one: packed uint8 ternary
    projections with an (inverse) weight_scale, float32 everything else."""
    from safetensors.torch import save_file
    from transformers import BitNetConfig, BitNetForCausalLM
    from transformers.integrations.bitnet import pack_weights

    cfg = BitNetConfig(max_position_embeddings=128, bos_token_id=None, eos_token_id=None, **kwargs)
    torch.manual_seed(seed)
    model = BitNetForCausalLM(cfg)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if "layers" in k and k.endswith("proj.weight"):
            t = torch.randint(-1, 2, v.shape, generator=g).to(torch.int8)
            sd[k] = pack_weights(t.clone())
            scale = 0.5 + torch.rand(1, generator=g)
            sd[k + "_scale"] = scale.to(weight_scale_dtype)
        elif k.endswith("norm.weight"):
            sd[k] = 0.5 + torch.rand(v.shape, generator=g)
        elif k.endswith("bias"):
            sd[k] = 0.1 * torch.randn(v.shape, generator=g)
        elif "embed" in k:
            sd[k] = torch.randn(v.shape, generator=g)
        elif k == "lm_head.weight":
            if cfg.tie_word_embeddings:
                continue
            sd[k] = 0.3 * torch.randn(v.shape, generator=g)
        else:
            raise AssertionError(f"unexpected tensor {k}")
    for k in drop:
        sd.pop(k)
    if reshape:
        k, shape = reshape
        sd[k] = torch.zeros(shape)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path / "model.safetensors"))
    c = cfg.to_dict()
    c["quantization_config"] = dict(QUANT)
    if config_edit:
        config_edit(c)
    (path / "config.json").write_text(json.dumps(c, indent=1))
    return path


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """{name: (checkpoint dir, transformers model, engine)} built once."""
    from transformers import BitNetForCausalLM

    root = tmp_path_factory.mktemp("bitnet")
    out = {}
    for i, (name, kw) in enumerate(MODELS.items()):
        d = write_checkpoint(root / name, kw, seed=100 + i)
        hf = BitNetForCausalLM.from_pretrained(str(d), dtype=torch.float32).eval()
        out[name] = (d, hf, ta.InferenceEngine.from_pretrained(d))
    return out


def hf_logits(hf, ids, perturb=0.0):
    with torch.no_grad():
        if perturb:
            emb = hf.model.embed_tokens(torch.tensor([ids]))
            emb = emb * (1 + perturb * torch.randn(emb.shape, generator=torch.Generator().manual_seed(7)))
            return hf(inputs_embeds=emb).logits[0].numpy()
        return hf(torch.tensor([ids])).logits[0].numpy()


PROMPTS = {"gqa2": [[3, 14, 15, 92, 65, 35, 89, 79, 32, 38], [2, 71, 82], [1, 41, 42, 13, 56, 5, 96]],
           "gqa3_tied_llama3": [[7, 1, 100, 23, 45, 67, 89, 12, 34, 56, 78, 90, 11, 22, 33, 44, 55],
                                [0, 9], [5, 50, 25, 75]],
           "mqa_bias_silu": [[4, 8, 15, 16, 23, 42], [82], [1, 2, 3, 5, 8, 13, 21, 34, 55, 0, 1]]}


def tolerance(hf, prompts):
    """4x the logit spread transformers shows under a 1-ulp input perturbation, and at
    least 1e-4 of the largest |logit|."""
    floor, scale = 0.0, 0.0
    for p in prompts:
        a = hf_logits(hf, p)
        b = hf_logits(hf, p, perturb=2.0 ** -23)
        floor = max(floor, float(np.abs(a - b).max()))
        scale = max(scale, float(np.abs(a).max()))
    return max(4 * floor, 1e-4 * scale), floor, scale


@pytest.mark.parametrize("name", list(MODELS))
def test_logits_of_batched_prompts_match_transformers(models, name):
    _, hf, eng = models[name]
    prompts = PROMPTS[name]
    tol, floor, scale = tolerance(hf, prompts)
    ours = eng.forward(prompts)  # one batch, different lengths
    worst, checked, margins = 0.0, 0, 0
    for p, o in zip(prompts, ours):
        ref = hf_logits(hf, p)
        assert o.shape == ref.shape == (len(p), eng.vocab_size)
        d = float(np.abs(o - ref).max())
        worst = max(worst, d)
        top2 = np.sort(ref, axis=-1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 2 * tol
        margins += int(clear.sum())
        checked += len(p)
        np.testing.assert_array_equal(o.argmax(-1)[clear], ref.argmax(-1)[clear])
    print(f"{name}: max |logit diff| {worst:.2e}, tolerance {tol:.2e} (noise floor {floor:.2e}, "
          f"max |logit| {scale:.1f}); argmax checked at {margins}/{checked} positions")
    assert worst <= tol, f"{name}: {worst} > {tol}"
    assert margins >= checked // 2, "too few positions with a clear top-2 margin to mean anything"


@pytest.mark.parametrize("name", list(MODELS))
def test_greedy_continuation_matches_transformers_generate(models, name):
    _, hf, eng = models[name]
    prompt = PROMPTS[name][0]
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=32, min_new_tokens=32, do_sample=False,
                          pad_token_id=0)[0].numpy()
    ours = eng.generate(np.array(prompt), 32)
    assert ours.shape == (len(prompt) + 32,)
    np.testing.assert_array_equal(ours, ref)
    # the batched call continues every prompt as it would alone
    batch = eng.generate(PROMPTS[name], 8)
    for p, b in zip(PROMPTS[name], batch):
        np.testing.assert_array_equal(b, eng.generate(np.array(p), 8))


def test_bitlinear_layer_matches_transformers(models):
    """A TernaryLayer built from a checkpoint's packed weight equals transformers'
    BitLinear on the same input (exact integer part; a few f32 roundings)."""
    from transformers.integrations.bitnet import unpack_weights

    _, hf, _ = models["mqa_bias_silu"]
    lin = hf.model.layers[0].self_attn.k_proj
    w = unpack_weights(lin.weight, dtype=torch.float32).numpy().astype(np.int8)
    ws = float(lin.weight_scale)
    layer = ta.TernaryLayer(ta.TernaryMatrix.from_ternary(w, np.array([1.0 / ws], np.float32), "tensor"),
                            bias=lin.bias.numpy(), activation="int8")
    x = np.random.default_rng(0).standard_normal((5, w.shape[1])).astype(np.float32)
    with torch.no_grad():
        ref = lin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(layer(x), ref, rtol=4 * 2.0 ** -23 * 4, atol=1e-6)


def test_sampling_is_seeded(models):
    _, _, eng = models["gqa2"]
    p = np.array(PROMPTS["gqa2"][1])
    a = eng.generate(p, 16, temperature=0.9, top_k=20, top_p=0.95, seed=5)
    b = eng.generate(p, 16, temperature=0.9, top_k=20, top_p=0.95, seed=5)
    c = eng.generate(p, 16, temperature=0.9, top_k=20, top_p=0.95, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # stop tokens end a sequence (kept); others in the batch go on; padding with pad_id
    g = eng.generate([PROMPTS["gqa2"][1], PROMPTS["gqa2"][2]], 12)
    stop = int(g[0][len(PROMPTS["gqa2"][1]) + 2])
    s = eng.generate(np.array([PROMPTS["gqa2"][1] + [0] * 4, PROMPTS["gqa2"][1] + [1] * 4]), 12, stop=[stop])
    assert s.shape == (2, 7 + 12)
    for row in s:
        new = row[7:]
        if stop in new:
            k = list(new).index(stop)
            assert (new[k + 1:] == -1).all()


def test_session_cache_dtype_and_prefix_reuse(models):
    _, _, eng = models["gqa2"]
    p = PROMPTS["gqa2"][0]
    full = eng.forward(np.array(p))
    with eng.session(max_seq_len=16) as s:
        np.testing.assert_allclose(s.prefill(p[:6]), full[5], rtol=1e-5, atol=1e-5)
        for i in range(6, len(p)):
            np.testing.assert_allclose(s.decode([p[i]])[0], full[i], rtol=1e-5, atol=1e-5)
        s.truncate(0, 3)
        np.testing.assert_allclose(s.decode([p[3]])[0], full[3], rtol=1e-5, atol=1e-5)
        assert s.seq_len(0) == 4
    with eng.session(max_seq_len=16, cache_dtype="f16") as s:
        d = np.abs(s.prefill(p) - full[-1]).max()
        assert 0 < d < 0.05 * np.abs(full[-1]).max()
    m = eng.memory(max_batch=2, max_seq_len=100, cache_dtype="bf16")
    info = eng.info()
    assert m["kv_cache"] == 2 * info["num_layers"] * 2 * info["num_kv_heads"] * 100 * info["head_dim"] * 2
    with ta.KVCache(layers=2, kv_heads=2, head_dim=4, max_seq_len=3, dtype="bf16") as c:
        k = np.arange(16, dtype=np.float32).reshape(2, 2, 4)
        c.append(k, -k)
        kr, vr = c.read(1, 0)
        np.testing.assert_array_equal(kr, k[1])
        np.testing.assert_array_equal(vr, -k[1])
        assert len(c) == 1
        assert ta.KVCache.memory_bytes(2, 2, 4, 3, dtype="bf16") == 2 * 2 * 2 * 3 * 4 * 2


def test_bad_input_is_refused_and_the_session_stays_usable(models, tmp_path):
    d, _, eng = models["gqa2"]
    v = eng.vocab_size
    p = PROMPTS["gqa2"][0]
    with eng.session(max_seq_len=12) as s:
        ref = s.prefill(p[:5])
        with pytest.raises(ta.InvalidArgumentError, match="vocab"):
            s.decode([v])
        with pytest.raises(ta.InvalidArgumentError, match="empty"):
            s.prefill([])
        with pytest.raises(ta.InvalidArgumentError, match="max_seq_len"):
            s.prefill(list(range(8)))
        with pytest.raises(ValueError, match="negative"):
            s.prefill([-1])
        assert s.seq_len(0) == 5
        np.testing.assert_allclose(s.decode([p[5]])[0], eng.forward(np.array(p[:6]))[5], rtol=1e-5, atol=1e-5)
    with pytest.raises(ta.InvalidArgumentError, match="vocab"):
        eng.forward(np.array([[1, v]]))
    with pytest.raises(ta.InvalidArgumentError, match="empty"):
        eng.generate([[1, 2], []], 3)
    kw = MODELS["gqa2"]
    bad = {
        "missing": dict(drop=["model.layers.1.mlp.down_proj.weight"]),
        "misshapen": dict(reshape=("model.layers.0.input_layernorm.weight", (63,))),
        "act": dict(config_edit=lambda c: c.update(hidden_act="mish")),
        "rope": dict(config_edit=lambda c: c.update(rope_parameters={"rope_type": "yarn", "factor": 2.0,
                                                                     "rope_theta": 1e4})),
        "heads": dict(config_edit=lambda c: c.update(num_key_value_heads=3)),
        "type": dict(config_edit=lambda c: c.update(model_type="llama")),
    }
    expect = {"missing": (ta.InvalidDataError, "model.layers.1.mlp.down_proj.weight"),
              "misshapen": (ta.InvalidDataError, "input_layernorm.weight.*shape"),
              "act": (ta.InvalidArgumentError, "hidden_act"), "rope": (ta.InvalidArgumentError, "rope_type"),
              "heads": (ta.InvalidArgumentError, "num_key_value_heads"),
              "type": (ta.InvalidArgumentError, "model_type")}
    for name, args in bad.items():
        ck = write_checkpoint(tmp_path / name, kw, seed=1, **args)
        cls, msg = expect[name]
        with pytest.raises(cls, match=msg):
            ta.InferenceEngine.from_pretrained(ck)
    with pytest.raises(ta.TritterError, match="config.json"):
        ta.InferenceEngine.from_pretrained(tmp_path / "nowhere")


def test_c_example_generates_the_same_tokens(models, tmp_path):
    d, hf, eng = models["gqa3_tied_llama3"]
    lib = pathlib.Path(ta.library_path()).resolve()
    exe = tmp_path / "generate"
    subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", str(ROOT / "include"),
                    str(ROOT / "examples" / "generate.c"), "-o", str(exe), "-L", str(lib.parent),
                    "-ltritter_accel", f"-Wl,-rpath,{lib.parent}"], check=True)
    prompt = PROMPTS["gqa3_tied_llama3"][2]
    r = subprocess.run([str(exe), str(d), "-n", "32"] + [str(t) for t in prompt], check=True,
                       capture_output=True, text=True)
    ids = [int(t) for t in r.stdout.strip().splitlines()[-1].split()]
    with torch.no_grad():
        ref = hf.generate(torch.tensor([prompt]), max_new_tokens=32, min_new_tokens=32, do_sample=False,
                          pad_token_id=0)[0].tolist()
    assert ids == ref
    assert "kv cache" in r.stdout


def test_int8_lm_head_top1_agreement(models):
    d, _, eng = models["gqa2"]
    e8 = ta.InferenceEngine.from_pretrained(d, lm_head_int8=True)
    assert e8.info()["weight_bytes"] < eng.info()["weight_bytes"]
    p = np.array(PROMPTS["gqa2"][0])
    a, b = eng.forward(p), e8.forward(p)
    assert (a.argmax(-1) == b.argmax(-1)).mean() >= 0.8


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v", "-s"]))
