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


# -- many ranks: traffic per rank, the two-phase region exchange -------------------------------

from tritter_accel.torch.comm_hook import collective_traffic  # noqa: E402
from tritter_accel.torch.compressors import RegionPayload, regions  # noqa: E402


def test_collective_traffic_formulas():
    assert collective_traffic("all_reduce", 1000, 1) == 0
    assert collective_traffic("all_reduce", 1000, 4) == 1500
    assert collective_traffic("all_gather", 1000, 4) == 3000
    assert collective_traffic("all_to_all", 1000, 4) == 3000
    assert collective_traffic("reduce_scatter", 1000, 4) == 750
    with pytest.raises(ValueError, match="kind"):
        collective_traffic("broadcast", 1, 2)
    assert regions(10, 4) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert regions(2, 4) == [(0, 1), (1, 2), (2, 2), (2, 2)]


def _exchange_step(comp, states, gs, step, world, n):
    """One step of the region exchange for every rank, in process: every rank's regions,
    every owner's re-compression, every rank's decode; checks that all ranks decode the
    same update and returns it (f64)."""
    slots = [comp.compress_regions(torch.from_numpy(gs[r]), states[r], step, r, world) for r in range(world)]
    owned = [comp.reduce_owned(torch.stack([slots[i][j] for i in range(world)]), states[j], step, j, world)
             for j in range(world)]
    ups = [comp.decode(owned, n, states[r], step, world) for r in range(world)]
    assert all(torch.equal(u, ups[0]) for u in ups[1:])
    return ups[0].numpy().astype(np.float64)


@pytest.mark.parametrize("world,n,owner,local", [(1, 7, None, None), (2, 1, None, None), (3, 100, None, None),
                                                 (4, 3, None, None), (8, 5000, None, None), (3, 100, 3.0, None),
                                                 (8, 5000, 20.0, None), (4, 3001, 20.0, "ternary")])
def test_region_exchange_conserves_gradient_mass(world, n, owner, local):
    """Error-feedback invariant of the two-level exchange, simulated in-process: every
    step's gradients are applied, or still held by a rank's regional residual, or by an
    owner's residual. Also: every rank decodes the same update. ``owner``: the owners
    re-compress at a different ratio than the ranks' regions; ``local``: another
    method for the regions (ternary)."""
    comp = RegionPayload("qtopk", 8.0, owner_ratio=owner, local_method=local)
    if owner is not None and local is None:
        slot, owner_slot = comp.slot_bytes(n, world)
        assert (owner_slot < slot) == (owner > 8.0) and owner_slot != slot
    states = [comp.new_state(n, 1234, r) for r in range(world)]
    rng = np.random.default_rng(world * 1000 + n)
    total = np.zeros(n)
    applied = np.zeros(n)
    for step in range(5):
        gs = [rng.standard_normal(n).astype(np.float32) for _ in range(world)]
        total += np.sum(gs, axis=0, dtype=np.float64)
        applied += _exchange_step(comp, states, gs, step, world, n) * world
    held = sum(sum(comp.residuals(st)) for st in states)
    scale = np.abs(total).max()
    assert np.abs(total - applied - held).max() <= 1e-5 * max(scale, 1.0)
    # something was applied and something is held back (compression at 8x)
    if n >= 100:
        assert np.abs(applied).sum() > 0 and np.abs(held).sum() > 0


@pytest.mark.parametrize("world,n,kw", [(1, 7, {}), (3, 2, {}), (4, 1001, {}), (8, 5000, {"value_bits": 3}),
                                         (8, 5000, {"owner_ratio": 20.0}), (4, 3001, {"local_method": "ternary"}),
                                         (4, 999, {"momentum": 0.9}), (3, 500, {"method": "topk"})])
def test_fused_region_exchange_equals_the_per_region_path(world, n, kw):
    """The default (one library call per phase) sends the same bytes, decodes the
    same update and keeps the same residuals as the per-region Python path."""
    method = kw.pop("method", "qtopk")
    fused, ref = RegionPayload(method, 8.0, **kw), RegionPayload(method, 8.0, fused=False, **kw)
    assert fused.fused and not ref.fused
    sf = [fused.new_state(n, 77, r) for r in range(world)]
    sr = [ref.new_state(n, 77, r) for r in range(world)]
    rng = np.random.default_rng(n)
    for step in range(4):
        gs = [torch.from_numpy(rng.standard_normal(n).astype(np.float32)) for _ in range(world)]
        slots_f = [fused.compress_regions(gs[r], sf[r], step, r, world) for r in range(world)]
        slots_r = [ref.compress_regions(gs[r], sr[r], step, r, world) for r in range(world)]
        for a, b in zip(slots_f, slots_r):
            assert torch.equal(a, b)
        own_f = [fused.reduce_owned(torch.stack([slots_f[i][j] for i in range(world)]), sf[j], step, j, world)
                 for j in range(world)]
        own_r = [ref.reduce_owned(torch.stack([slots_r[i][j] for i in range(world)]), sr[j], step, j, world)
                 for j in range(world)]
        for a, b in zip(own_f, own_r):
            assert torch.equal(a, b)
        for r in range(world):
            want = ref.decode(own_r, n, sr[r], step, world)
            assert torch.equal(fused.decode(own_f, n, sf[r], step, world), want)
            # into a buffer (what the hook passes: the bucket), either path
            for c, st, own in ((fused, sf[r], own_f), (ref, sr[r], own_r)):
                buf = torch.full((n,), 7.0)
                assert c.decode(own, n, st, step, world, out=buf) is buf and torch.equal(buf, want)
    with pytest.raises(ValueError, match="out"):
        fused.decode(own_f, n, sf[0], 0, world, out=torch.zeros(n + 1))
    with pytest.raises(ValueError, match="out"):
        fused.decode(own_f, n, sf[0], 0, world, out=torch.zeros(n, dtype=torch.float64))
    for a, b in zip(sf, sr):
        for x, y in zip(fused.residuals(a), ref.residuals(b)):
            np.testing.assert_array_equal(x, y)
    if kw.get("momentum"):
        assert RegionPayload("qtopk", 8.0, momentum=0.9, masking=True).fused is False


def test_region_exchange_handle_rejects_bad_input():
    from tritter_accel import grad as G
    from tritter_accel import InvalidArgumentError, InvalidDataError, ShapeMismatchError
    q = dict(method="qtopk", ratio=8.0)
    with pytest.raises(InvalidArgumentError, match="world"):
        G.RegionExchange(10, 0, 0, q)
    with pytest.raises(InvalidArgumentError, match="rank"):
        G.RegionExchange(10, 2, 2, q)
    with pytest.raises(InvalidArgumentError, match="dim"):
        G.RegionExchange(0, 2, 0, q)
    with pytest.raises(ShapeMismatchError, match="region_seeds"):
        G.RegionExchange(10, 2, 0, q, region_seeds=[1, 2, 3])
    with pytest.raises(InvalidArgumentError, match="ratio"):
        G.RegionExchange(10, 2, 0, dict(method="qtopk", ratio=0.5))
    xs = [G.RegionExchange(900, 3, r, dict(q, worker=r)) for r in range(3)]
    g = np.random.default_rng(0).standard_normal(900).astype(np.float32)
    with pytest.raises(ShapeMismatchError, match="grad"):
        xs[0].compress(g[:-1])
    slots = [x.compress(g) for x in xs]
    recv = np.stack([s[0] for s in slots])
    bad = recv.copy()
    bad[1, 50] ^= 1
    with pytest.raises(InvalidDataError, match="received.*row 1"):
        xs[0].reduce(bad)
    with pytest.raises(ShapeMismatchError, match="received"):
        xs[0].reduce(recv[:2])
    own = [xs[j].reduce(np.stack([s[j] for s in slots])) for j in range(3)]
    gathered = np.stack(own)
    upd = xs[0].decode(gathered)
    assert np.abs(upd).sum() > 0
    gathered[2, 0] ^= 0xFF
    out = np.ones(900, np.float32)
    with pytest.raises(InvalidDataError, match="gathered.*row 2"):
        xs[1].decode(gathered, out=out)
    assert not out.any()
    with pytest.raises(TypeError):
        xs[1].decode(np.stack(own), out=np.ones(900, np.float64))


@pytest.mark.parametrize("masking", [False, True])
def test_region_exchange_momentum_correction(masking):
    """Momentum correction (DGC): ranks still decode the same update. Without masking,
    everything the local momenta carried is applied or held in a residual
    (conservation over u_t = m u_(t-1) + g_t). With factor masking, the momentum of
    sent coordinates restarts, so less than momentum SGD's sum is applied."""
    world, n, m, steps = 4, 3000, 0.9, 30
    comp = RegionPayload("qtopk", 8.0, momentum=m, masking=masking)
    with pytest.raises(ValueError, match="momentum"):
        RegionPayload("qtopk", 8.0, momentum=1.0)
    states = [comp.new_state(n, 99, r) for r in range(world)]
    rng = np.random.default_rng(5)
    g0 = rng.standard_normal(n).astype(np.float32)
    applied = np.zeros(n)
    carried = np.zeros(n)  # sum over steps and ranks of the reference momenta
    us = [np.zeros(n) for _ in range(world)]
    for step in range(steps):
        gs = [g0 + 0.5 * rng.standard_normal(n).astype(np.float32) for _ in range(world)]
        for r in range(world):
            us[r] = m * us[r] + gs[r]
            carried += us[r]
        applied += _exchange_step(comp, states, gs, step, world, n) * world
    cos = applied @ g0 / (np.linalg.norm(applied) * np.linalg.norm(g0))
    assert cos > 0.95, cos
    held = sum(sum(comp.residuals(st)) for st in states)
    if not masking:
        assert np.abs(carried - applied - held).max() <= 1e-4 * np.abs(carried).max()
        assert (applied @ g0) > 0.6 * (carried @ g0)
    else:
        assert (applied @ g0) < 0.5 * (carried @ g0)
        assert all((st["st"].u == 0).any() for st in states)


def _many(world, methods, steps=24):
    return [RunConfig(task="tiny", method=m, error_feedback=True, seed=3, steps=steps, batch=32, lr=0.1,
                      momentum=0.9, clip=1.0, warmup=WARMUP, bucket_cap_mb=0.02, first_bucket_mb=0.02,
                      check_sync_every=1, timeout_s=180, world=world) for m in methods]


@pytest.fixture(scope="module")
def many_rank_results():
    """4 ranks: uncompressed, all_gather quantized top-k, the region exchange; 8 ranks: the
    region exchange alone (8 processes on 2 cores: few steps)."""
    import dataclasses
    cfgs = _many(4, ["none", "lib-qtopk:8", "lib-rqtopk:8"])
    # the hook's GPU-bucket path (host copies; payloads copied to the bucket's device
    # and back), forced on CPU buckets: one- and two-phase exchanges
    cfgs += [dataclasses.replace(c, stage_through_host=True) for c in cfgs[1:]]
    r4 = launch(cfgs)
    r8 = launch(_many(8, ["lib-rqtopk:8"], steps=12))
    return {(4, "none"): r4[0], (4, "lib-qtopk:8"): r4[1], (4, "lib-rqtopk:8"): r4[2],
            (8, "lib-rqtopk:8"): r8[0], (4, "lib-qtopk:8", "staged"): r4[3], (4, "lib-rqtopk:8", "staged"): r4[4]}


@pytest.mark.parametrize("spec", ["lib-qtopk:8", "lib-rqtopk:8"])
def test_staging_through_host_changes_nothing(many_rank_results, spec):
    """The path a GPU bucket takes (NCCL: the library compresses host copies, the
    payloads travel on the bucket's device) gives the same losses, bit for bit, and the
    same byte counts as the CPU path, with every rank in sync."""
    a, b = many_rank_results[(4, spec)], many_rank_results[(4, spec, "staged")]
    assert a["losses"] == b["losses"] and len(a["losses"]) == a["steps"]
    for ra, rb in zip(a["ranks"], b["ranks"]):
        assert rb["sync_failures"] == 0 and rb["sync_checks"] == a["steps"]
        assert ra["hook_counters"] == rb["hook_counters"]


@pytest.mark.parametrize("world,spec", [(4, "none"), (4, "lib-qtopk:8"), (4, "lib-rqtopk:8"), (8, "lib-rqtopk:8")])
def test_many_ranks_stay_in_sync_and_traffic_matches(many_rank_results, world, spec):
    from experiments.grad_compression import simulate
    res = many_rank_results[(world, spec)]
    steps = res["steps"]
    exchange = {"none": "dense", "lib-qtopk:8": "qtopk-allgather", "lib-rqtopk:8": "qtopk-region"}[spec]
    for r in res["ranks"]:
        assert r["diverged"] is None and r["world"] == world
        assert r["sync_checks"] == steps and r["sync_failures"] == 0
        sizes = r["hook_bucket_sizes"]
        assert len(sizes) >= 3
        c = r["hook_counters"]
        calls_per_bucket = 2 if exchange == "qtopk-region" else 1
        assert all(k == calls_per_bucket * len(sizes) for k in r["step_calls"][WARMUP:])
        # the hook's traffic counter equals the meter's around the real collectives ...
        assert c["traffic_sent"] == pytest.approx(sum(r["step_traffic"]), rel=1e-9)
        # ... and the simulator's formula on the measured buckets
        sim = simulate.traffic(sizes, exchange, world, 8.0)
        assert r["step_traffic"][WARMUP:] == pytest.approx([sim] * (steps - WARMUP), rel=1e-9)
        dense = simulate.traffic(sizes, "dense", world)
        assert c["dense_traffic_compressed"] == pytest.approx(dense * (steps - WARMUP), rel=1e-9)
    tr = res["traffic_ratio_after_warmup"]
    if exchange == "qtopk-allgather":
        assert tr < 8 * 2 / world * 1.01  # all_gather: about 2 R / N, falls with N
    if exchange == "qtopk-region":
        assert tr > 5.5  # near R = 8 (headers of small regions cost a little)
    if world == 4:
        # 24 steps: uncompressed falls well; 8x compression (with error feedback) more slowly
        losses = np.array(res["losses"])
        assert losses[-6:].mean() < (0.6 if spec == "none" else 0.9) * losses[:3].mean(), losses


def test_hook_cost_script_runs(capsys):
    """The hook-cost measurement (experiments/grad_compression/hook_cost.py) prints one row per
    exchange and world size, with positive times."""
    from experiments.grad_compression import hook_cost
    hook_cost.main(["--specs", "lib-rqtopk:32:3", "--worlds", "2", "--steps", "3", "--rounds", "1",
                    "--paths", "fused,per-region,fused-copy"])
    out = capsys.readouterr().out.splitlines()
    rows = [r for r in out if r.startswith("| `lib-rqtopk")]
    assert [r.split("|")[3].strip() for r in rows] == ["fused", "per-region", "fused-copy"]
    assert all(float(x) > 0 for r in rows for x in r.split("|")[4:8])
    assert any("per-region / fused" in r for r in out) and any("fused-copy / fused" in r for r in out)
    with pytest.raises(SystemExit):
        hook_cost.main(["--paths", "fast"])


def test_simulator_measures_the_region_exchange(capsys):
    """The simulator's report: the region exchanges' work per rank is measured with the
    library's one-call-per-phase exchange at every N (positive, zero at N = 1), and the
    step-time tables are written for every link."""
    from experiments.grad_compression import simulate
    comp = simulate.region_comp("lib-rqtopk:32:3")
    assert simulate.measure_region_cost([5000, 300], 1, comp) == 0.0
    assert simulate.measure_region_cost([5000, 300], 8, comp, reps=2) > 0.0
    assert simulate.measure_region_cost([70000], 2, comp, reps=2, threads=2) > 0.0  # threaded regions
    # the interleaved form the report uses: one cost per case, zero at N = 1
    costs = simulate.measure_region_costs([("a", [5000], 1, comp), ("b", [5000, 300], 4, comp)], passes=2)
    assert costs["a"] == 0.0 and 0.0 < costs["b"] < 1.0
    simulate.main(["--model", "params:3e5", "--compute-ms", "10", "--ratios", "32", "--worlds", "2,4",
                   "--links", "10", "--regions", "lib-rqtopk:32:3"])
    out = capsys.readouterr().out
    assert "## Compression work per rank and step (ms)" in out and "### 10 Gbit/s" in out
    work = out.split("## Compression work")[1].split("## Work against")[0]
    rows = [r.split("|")[2:-1] for r in work.splitlines() if r.startswith("| 2 ") or r.startswith("| 4 ")]
    assert len(rows) == 2 and all(len(r) == 3 and all(float(x) > 0.0 for x in r) for r in rows)
    # work against saving at 10 Gbit/s: "work / saving (pays|costs)" per region exchange
    save = out.split("## Work against")[1].split("## Step time")[0]
    rows = [r.split("|")[2:-1] for r in save.splitlines() if r.startswith("| 2 ") or r.startswith("| 4 ")]
    assert len(rows) == 2 and all(len(r) == 2 for r in rows)
    for cell in (c for r in rows for c in r):
        w, sv = (float(x) for x in cell.split("(")[0].split("/"))
        assert w > 0.0 and sv > 0.0 and (("pays" in cell) == (w < sv))
