"""The PyTorch examples, shortened (the full runs are `python examples/...`)."""
import importlib.util
import math
import pathlib

import pytest

torch = pytest.importorskip("torch")

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_digits_mlp_f32_vs_ternary():
    pytest.importorskip("sklearn")
    res = load("torch_digits").main(["--epochs", "4", "--seeds", "1"])
    for kind in ("f32", "ternary"):
        acc, _, _, weight_bytes = res[kind]
        assert acc > 85.0, (kind, acc)  # 10 classes: chance is 10%
    # 64x256 + 256x256 + 256x10 weights: f32 vs packed 2-bit + scales
    assert res["f32"][3] == (64 * 256 + 256 * 256 + 256 * 10) * 4
    assert res["ternary"][3] * 14 <= res["f32"][3]


def test_char_lm_f32_vs_ternary():
    mod = load("torch_char_lm")
    if not mod.CORPUS.is_dir():
        pytest.skip(f"{mod.CORPUS} is not on this machine")
    res = mod.main(["--steps", "25", "--d", "64", "--batch", "8", "--ctx", "32", "--eval-windows", "64"])
    vocab = load_vocab(mod)
    for kind in ("f32", "ternary"):
        vloss = res[kind][0]
        # better than guessing uniformly over the vocabulary after 25 steps
        assert math.isfinite(vloss) and vloss < math.log(vocab), (kind, vloss)


def load_vocab(mod):
    return mod.load_corpus()[2]
