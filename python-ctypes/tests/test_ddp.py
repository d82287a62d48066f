"""DDP communication hook: 2 gloo processes on 127.0.0.1, a model spanning several buckets.

Each DDP test trains for a few dozen steps and checks, on every rank:
  * parameters are bitwise identical across ranks after every step;
  * the loss decreases;
  * exactly one collective per hook call, and the hook's byte counter equals the
    bytes handed to the collectives (an independent meter wrapped around
    torch.distributed.all_reduce / all_gather) and the compressor's wire size.
"""
import pathlib
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not importable (pip install -r python-ctypes/requirements-test.txt)")
pytest.importorskip("sklearn", reason="scikit-learn is not importable (pip install -r python-ctypes/requirements-test.txt)")

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from experiments.grad_compression.ddp import RunConfig, launch  # noqa: E402
from tritter_accel.torch.comm_hook import Identity, TorchTopK, topk_count  # noqa: E402

STEPS = 40
WARMUP = 2


def _tiny(method, ef=True, steps=STEPS, lr=0.1):
    # bucket caps of 20 KB: the 4 Linear layers (weights 8-64 KB) land in 3 buckets
    return RunConfig(task="tiny", method=method, error_feedback=ef, seed=3, steps=steps, batch=32, lr=lr,
                     momentum=0.9, clip=1.0, warmup=WARMUP, bucket_cap_mb=0.02, first_bucket_mb=0.02,
                     check_sync_every=1, timeout_s=90)


def _check_common(res, wire_bytes_of_bucket, drop=0.5):
    n_params = res["n_params"]
    for r in res["ranks"]:
        assert r["diverged"] is None
        assert r["steps"] == STEPS
        # in sync after every step, bitwise
        assert r["sync_checks"] == STEPS and r["sync_failures"] == 0
        sizes = r["hook_bucket_sizes"]
        assert len(sizes) >= 3, f"model should span several buckets, got {sizes}"
        assert sum(sizes) == n_params
        c = r["hook_counters"]
        # one collective per hook call, each issued through the wrapped torch.distributed API
        assert c["collectives"] == c["hook_calls"] == sum(r["step_calls"])
        assert all(k == len(sizes) for k in r["step_calls"][WARMUP:])
        # the counter is what went to the collectives
        assert c["bytes_sent"] == sum(r["step_bytes"])
        assert r["step_bytes"][:WARMUP] == [4 * n_params] * WARMUP
        expected = sum(wire_bytes_of_bucket(n) for n in sizes)
        assert r["step_bytes"][WARMUP:] == [expected] * (STEPS - WARMUP)
        assert c["bytes_sent_compressed"] == expected * (STEPS - WARMUP)
        assert c["f32_bytes"] == 4 * n_params * STEPS
        assert r["ratio_after_warmup"] == pytest.approx(4 * n_params / expected)
    losses = np.array(res["losses"])
    assert np.isfinite(losses).all()
    if drop is not None:
        assert losses[-8:].mean() < drop * losses[:4].mean(), losses


def _qtopk_wire(n, ratio, v=2):
    """Payload bytes of quantized top-k from its documented size rule: the largest k (over
    Rice parameters r) whose body 4 * 2^v + ceil((k (r + 2 + v) + ((n - k) >> r)) / 8) fits
    in floor(4 n / ratio) bytes (at least k = 1)."""
    budget = int(4 * n / ratio)
    body = lambda k, r: 4 * 2**v + -(-(k * (r + 2 + v) + ((n - k) >> r)) // 8)
    best = None
    for r in range(32):
        k = max((k for k in range(1, n + 1) if body(k, r) <= budget), default=0)
        if k and (best is None or k > best[0]):
            best = (k, body(k, r))
    if best is None:
        best = (1, min(body(1, r) for r in range(32)))
    return 44 + best[1]


# (spec, error feedback, wire bytes of a bucket of n elements computed here independently,
#  required loss drop: mean of the last 8 steps < factor * mean of the first 4, or None)
CASES = [
    ("none", False, lambda n: 4 * n, 0.5),
    ("torch-topk:8", True, lambda n: 8 * max(1, round(n / 16)), 0.5),
    ("torch-topk:8", False, lambda n: 8 * max(1, round(n / 16)), 0.5),
    # the library's compressors; payloads carry the 40-byte header + 4-byte CRC
    ("lib-topk:8", True, lambda n: 44 + 8 * max(1, n // 16), 0.5),
    ("lib-topk:8", False, lambda n: 44 + 8 * max(1, n // 16), 0.5),
    ("lib-qtopk:8", True, lambda n: _qtopk_wire(n, 8), 0.5),
    ("lib-ternary", True, lambda n: 44 + 4 * -(-n // 256) + -(-n // 4), 0.5),
    ("lib-ternary", False, lambda n: 44 + 4 * -(-n // 256) + -(-n // 4), 0.5),
    # linear: raw f32 tables summed by all_reduce (no header)
    ("lib-sketch:2:1", False, lambda n: 4 * max(1, n // 2), 0.9),
    # FetchSGD (3 rows, k = cols / 4; momentum-free SGD at lr 0.1) learns slowly here
    ("lib-fetchsgd:2", True, lambda n: 4 * 3 * max(1, n // 6), 0.97),
]


@pytest.fixture(scope="module")
def ddp_results():
    # one pair of processes trains every case in turn (process start-up dominates otherwise)
    return launch([_tiny(spec, ef) for spec, ef, _, _ in CASES])


@pytest.mark.parametrize("case", range(len(CASES)), ids=[f"{s}-ef{int(e)}" for s, e, _, _ in CASES])
def test_hook_trains_in_sync_on_several_buckets(ddp_results, case):
    spec, ef, wire, drop = CASES[case]
    res = ddp_results[case]
    assert res["method"] == spec and res["ef"] == ef
    _check_common(res, wire, drop)
    if spec.startswith("lib-fetchsgd"):
        assert res["optimizer_momentum"] == 0.0  # FetchSGD's momentum lives in sketch space
    _check_common(res, wire, drop)


def test_torch_topk_reference_math():
    g = torch.tensor([0.5, -3.0, 0.1, 2.0, -0.2, 0.0, 1.0, -1.5], dtype=torch.float32)
    c = TorchTopK(ratio=2)  # n / (2 * 2) = 2 entries
    assert c.k(8) == 2 == topk_count(8, 2)
    payload, local = c.compress(g, None, 0, 0)
    assert payload.dtype == torch.int32 and payload.numel() == 4 and c.wire_bytes(8) == 16
    assert torch.equal(local, torch.tensor([0, -3.0, 0, 2.0, 0, 0, 0, 0]))
    g2 = torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 4.0])
    p2, _ = c.compress(g2, None, 0, 1)
    avg = c.decompress([payload, p2], 8, None, 0, 2)
    assert torch.equal(avg, torch.tensor([0.5, -1.5, 0, 1.0, 0, 0, 0, 2.0]))
    ident = Identity()
    p, _ = ident.compress(g, None, 0, 0)
    assert torch.equal(ident.decompress([p * 2], 8, None, 0, 2), g)
    with pytest.raises(ValueError, match="ratio"):
        TorchTopK(0.5)


def test_experiment_smoke(tmp_path):
    from experiments.grad_compression import run
    out, raw = tmp_path / "table.md", tmp_path / "raw.jsonl"
    run.main(["--tasks", "charlm,digits", "--methods", "torch-topk:32", "--ef", "on", "--seeds", "0",
              "--steps", "12", "--epochs", "1", "--warmup", "2", "--corpus-limit", "200000",
              "--val-windows", "16", "--log-every", "0", "--out", str(out), "--raw", str(raw), "--timeout", "90"])
    text = out.read_text()
    assert "REDUCED RUN" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == 2, text
    assert all("diverged" not in r for r in rows), text
    assert len(raw.read_text().splitlines()) == 2
