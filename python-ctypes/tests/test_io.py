"""Checkpoint I/O against the peers' own code: transformers writes the Hugging
Face checkpoints (pack_weights, save_pretrained) and checks them by loading
them back; gguf-py quantizes TQ1_0/TQ2_0 and writes/reads GGUF. Fixtures are
built at test time, once per session (transformers' import is slow)."""
import json
import os

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # BitLinear's @torch.compile on CPU

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tritter_accel as ta  # noqa: E402

CFG = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, max_position_embeddings=64)
QCFG = {"quant_method": "bitnet", "linear_class": "bitlinear", "quantization_mode": "offline"}


@pytest.fixture(scope="session")
def hf(tmp_path_factory):
    """A packed BitNet checkpoint (pack_weights + inverse weight_scale, as
    microsoft/bitnet-b1.58-2B-4T stores it), verified by loading it with
    BitNetForCausalLM.from_pretrained; and an unquantized one written by
    save_pretrained in shards."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file
    from transformers.integrations.bitnet import pack_weights, unpack_weights

    root = tmp_path_factory.mktemp("hf")
    packed_dir, plain_dir = root / "packed", root / "plain"
    torch.manual_seed(0)
    cfg = transformers.BitNetConfig(**CFG, quantization_config=QCFG)
    model = transformers.BitNetForCausalLM(cfg)
    sd, trits = {}, {}
    for k, v in model.state_dict().items():
        if ".layers." in k and k.endswith("proj.weight"):
            w = v.float()
            s = 1.0 / w.abs().mean().clamp(min=1e-5)          # transformers' WeightQuant
            t = (w * s).round().clamp(-1, 1)
            trits[k] = t.to(torch.int8).numpy()
            sd[k] = pack_weights(t.clone())
            sd[k + "_scale"] = s.reshape(1).to(torch.bfloat16)
        else:
            sd[k] = v.to(torch.bfloat16).contiguous()
    packed_dir.mkdir()
    save_file(sd, str(packed_dir / "model.safetensors"), metadata={"format": "pt"})
    cfg.save_pretrained(packed_dir)
    # transformers itself loads it, and its modules give the reference weights.
    with torch._dynamo.config.patch(disable=True):
        loaded = transformers.BitNetForCausalLM.from_pretrained(packed_dir, dtype=torch.float32)
        ref = {}
        for name, mod in loaded.named_modules():
            if type(mod).__name__ == "BitLinear":
                w = unpack_weights(mod.weight, dtype=torch.float32) / mod.weight_scale.float()
                ref[name + ".weight"] = w.numpy()
    plain = transformers.BitNetForCausalLM(transformers.BitNetConfig(**CFG))
    plain.save_pretrained(plain_dir, max_shard_size="40KB")
    plain_sd = {k: v.float().numpy() for k, v in plain.state_dict().items()}
    return {"packed": packed_dir, "plain": plain_dir, "trits": trits, "ref": ref, "sd": sd,
            "plain_sd": plain_sd}


def test_hf_packed_checkpoint_equals_transformers_unpack(hf):
    with ta.open_checkpoint(hf["packed"]) as ck:
        assert ck.kind == "hf"
        assert ck.config()["quantization_config"]["quant_method"] == "bitnet"
        names = ck.names()
        assert len(hf["ref"]) == 2 * 7
        for name, want in hf["ref"].items():
            info = ck.info(name)
            assert info["dtype"] == "U8" and info["is_ternary"]
            assert info["shape"] == (want.shape[0] // 4, want.shape[1])
            m = ck.ternary(name)
            assert m.shape == want.shape
            np.testing.assert_array_equal(m.ternary(), hf["trits"][name])
            # Bit-exact: unpack_weights(w, float32) / weight_scale.
            assert np.array_equal(m.dequantize().view(np.uint32), want.view(np.uint32)), name
            ws = hf["sd"][name + "_scale"].float().item()
            assert m.scales().ravel().tolist() == [np.float32(1.0) / np.float32(ws)]
        for name in names:
            if not ck.info(name)["is_ternary"] and ck.info(name)["dtype"] == "BF16":
                np.testing.assert_array_equal(ck.tensor(name), hf["sd"][name].float().numpy())
        # Matrices outlive the checkpoint.
        m = ck.ternary(next(iter(hf["ref"])))
    assert m.matmul(np.ones((1, m.shape[1]), np.float32)).shape == (1, m.shape[0])
    with pytest.raises(ValueError, match="closed"):
        ck.names()


def test_hf_sharded_unquantized_checkpoint_quantizes_on_load(hf):
    files = sorted(os.listdir(hf["plain"]))
    assert "model.safetensors.index.json" in files and sum(f.endswith(".safetensors") for f in files) > 1
    with ta.open_checkpoint(hf["plain"]) as ck:
        assert ck.config().get("quantization_config") is None
        assert sorted(ck.names()) == sorted(hf["plain_sd"])
        for name, want in hf["plain_sd"].items():
            np.testing.assert_array_equal(ck.tensor(name), want)
        name = "model.layers.1.mlp.down_proj.weight"
        m = ck.ternary_quantized(name, granularity="tensor")
        ref = ta.TernaryMatrix.from_float(hf["plain_sd"][name], granularity="tensor")
        np.testing.assert_array_equal(m.ternary(), ref.ternary())
        np.testing.assert_array_equal(m.scales(), ref.scales())
        with pytest.raises(ta.TritterError, match=name.replace(".", r"\.")):
            ck.ternary(name)  # float without weight_scale: not a packed weight


def test_bad_hf_weights_are_refused_naming_the_tensor(hf, tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    bad = dict(hf["sd"])
    name = "model.layers.0.mlp.up_proj.weight"
    w = bad[name].clone()
    w[3, 5] |= 0b11 << 2
    bad[name] = w
    bad["model.layers.0.mlp.gate_proj.weight_scale"] = torch.tensor([float("inf")], dtype=torch.bfloat16)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with ta.open_checkpoint(tmp_path / "bad.safetensors") as ck:
        assert ck.kind == "safetensors"
        with pytest.raises(ta.InvalidDataError, match=r"up_proj\.weight.*code 3"):
            ck.ternary(name)
        with pytest.raises(ta.TritterError, match="gate_proj.weight_scale"):
            ck.ternary("model.layers.0.mlp.gate_proj.weight")
        with pytest.raises(ta.InvalidArgumentError, match="nope"):
            ck.info("nope")
    (tmp_path / "trunc.safetensors").write_bytes((tmp_path / "bad.safetensors").read_bytes()[:-3])
    with pytest.raises(ta.InvalidDataError):
        ta.open_checkpoint(tmp_path / "trunc.safetensors")


@pytest.fixture(scope="session")
def gguf_mod():
    return pytest.importorskip("gguf")


def _weights(rows, cols, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    w[rng.random((rows, cols)) < 0.3] = 0
    return w


@pytest.mark.parametrize("qtype", ["TQ1_0", "TQ2_0"])
def test_gguf_written_by_gguf_py_reads_exactly(gguf_mod, tmp_path, qtype):
    G = gguf_mod.GGMLQuantizationType
    qt = getattr(G, qtype)
    path = tmp_path / "m.gguf"
    w = gguf_mod.GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", 2)
    w.add_array("tokenizer.ggml.tokens", ["a", "bc", ""])
    mats = {"blk.0.ffn_up.weight": _weights(5, 512, 1), "blk.1.attn_q.weight": _weights(1, 256, 2),
            "blk.1.zero.weight": np.zeros((2, 256), np.float32)}
    q = {}
    for name, arr in mats.items():
        q[name] = gguf_mod.quants.quantize(arr, qt)
        w.add_tensor(name, q[name], raw_dtype=qt)
    norm = np.linspace(-2, 2, 24, dtype=np.float32).reshape(2, 12)
    w.add_tensor("norm.f32", norm)
    w.add_tensor("norm.f16", norm.astype(np.float16))
    w.add_tensor("norm.bf16", gguf_mod.quants.quantize(norm, G.BF16), raw_dtype=G.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with ta.open_checkpoint(path) as ck:
        assert ck.kind == "gguf"
        assert ck.names()[:3] == list(mats)
        for name, arr in mats.items():
            info = ck.info(name)
            assert info["dtype"] == qtype and info["shape"] == arr.shape and info["is_ternary"]
            ref = gguf_mod.quants.dequantize(q[name], qt)
            got = ck.tensor(name)
            assert np.array_equal(got.view(np.uint32), ref.astype(np.float32).view(np.uint32))
            m = ck.ternary(name)
            assert m.info()["group_size"] == 256
            np.testing.assert_array_equal(m.dequantize(), ref)
            x = np.random.default_rng(3).standard_normal((2, arr.shape[1])).astype(np.float32)
            np.testing.assert_allclose(m.matmul(x), x @ ref.T, rtol=1e-4, atol=1e-3)
        np.testing.assert_array_equal(ck.tensor("norm.f32"), norm)
        np.testing.assert_array_equal(ck.tensor("norm.f16"), norm.astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(ck.tensor("norm.bf16"),
                                      gguf_mod.quants.dequantize(gguf_mod.quants.quantize(norm, G.BF16), G.BF16))
        with pytest.raises(ta.TritterError, match="norm.f32"):
            ck.ternary("norm.f32")


@pytest.mark.parametrize("qtype", ["TQ1_0", "TQ2_0"])
def test_our_gguf_is_byte_identical_to_gguf_py_and_reads_back(gguf_mod, tmp_path, qtype):
    G = gguf_mod.GGMLQuantizationType
    rng = np.random.default_rng(5)
    t = rng.integers(-1, 2, size=(3, 512)).astype(np.int8)
    scales = (rng.integers(1, 2000, size=(3, 1)) / 32).astype(np.float32)  # f16-exact
    m = ta.TernaryMatrix.from_ternary(t, scales, granularity="row")
    norm = rng.standard_normal((4, 3)).astype(np.float32)
    ours = tmp_path / "ours.gguf"
    ta.save_checkpoint(ours, {"w": m, "n": norm}, format="gguf", ternary_type=qtype,
                       metadata={"general.name": "x"})
    # The same file through gguf-py: its quantizer on the dequantized weights
    # reproduces the blocks (absmax of each block = its scale).
    theirs = tmp_path / "theirs.gguf"
    w = gguf_mod.GGUFWriter(str(theirs), "tritter")
    w.add_string("general.name", "x")
    w.add_tensor("w", gguf_mod.quants.quantize(m.dequantize(), getattr(G, qtype)), raw_dtype=getattr(G, qtype))
    w.add_tensor("n", norm)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert ours.read_bytes() == theirs.read_bytes()
    r = gguf_mod.GGUFReader(str(ours))
    tw = {t.name: t for t in r.tensors}
    np.testing.assert_array_equal(gguf_mod.quants.dequantize(tw["w"].data, getattr(G, qtype)), m.dequantize())
    np.testing.assert_array_equal(np.asarray(tw["n"].data).reshape(4, 3), norm)
    with pytest.raises(ta.TritterError, match="odd"):
        ta.save_checkpoint(tmp_path / "x.gguf", {"odd": ta.TernaryMatrix.from_float(norm)}, format="gguf")


def test_safetensors_round_trip_and_metadata(tmp_path):
    from safetensors import safe_open
    rng = np.random.default_rng(9)
    mats = {"a": ta.TernaryMatrix.from_float(rng.standard_normal((33, 257)).astype(np.float32),
                                             granularity="group", group_size=64),
            "b": ta.TernaryMatrix.from_float(rng.standard_normal((4, 5)).astype(np.float32)).with_compute_format("base3")}
    emb = rng.standard_normal((6, 7)).astype(np.float32)
    p = tmp_path / "m.safetensors"
    ta.save_checkpoint(p, {**mats, "emb": (emb, "BF16"), "e32": emb}, metadata={"run": "7"})
    with safe_open(str(p), "np") as f:  # the maintained reader reads our file
        meta = f.metadata()
        assert meta["format"] == "tritter-accel" and meta["format_version"] == "1" and meta["run"] == "7"
        assert json.loads(meta["tritter:a"])["group_size"] == 64
        np.testing.assert_array_equal(f.get_tensor("a"), mats["a"].packed("2bit"))
    with ta.open_checkpoint(p) as ck:
        for k, m in mats.items():
            back = ck.ternary(k)
            np.testing.assert_array_equal(back.ternary(), m.ternary())
            np.testing.assert_array_equal(back.scales(), m.scales())
            assert back.info()["compute_format"] == m.info()["compute_format"]
        np.testing.assert_array_equal(ck.tensor("e32"), emb)
        assert ck.info("emb")["dtype"] == "BF16"
