"""VSA operations against an independent NumPy reference written from the documented definitions."""
import os
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest

import tritter_accel as ta

ROOT = pathlib.Path(__file__).resolve().parents[2]
DIMS = [1, 3, 4, 5, 31, 32, 33, 63, 64, 65, 255, 256, 257, 1000]

# ---------- NumPy reference ----------

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix64(z):
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def ref_random(dim, seed, density=1.0):
    """trit i: h = hash2(seed, i); non-zero iff (h >> 11) / 2^53 < density; +1 iff h even."""
    g = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        base = _mix64(np.array([seed], np.uint64) * g ^ np.uint64(0xD1B54A32D192ED03))
        h = _mix64(base + np.arange(dim, dtype=np.uint64) * g)
    u = (h >> np.uint64(11)).astype(np.float64) / 2.0**53
    sign = np.where(h & np.uint64(1), -1, 1)
    return np.where(u < density, sign, 0).astype(np.int8)


def ref_pack(t):
    t = np.asarray(t)
    dim = t.size
    w = -(-dim // 64)
    out = np.zeros(2 * w, np.uint64)
    for plane, val in ((0, 1), (1, -1)):
        bits = np.zeros(w * 64, np.uint8)
        bits[:dim] = t == val
        out[plane * w:(plane + 1) * w] = np.packbits(bits.reshape(w, 64)[:, ::-1], axis=1).view(">u8").ravel()
    return out


def ref_mod3(x):
    return (((x.astype(np.int16) + 1) % 3) - 1).astype(np.int8)


def ref_bundle(rows, weights=None, tie_vec=None):
    s = (np.asarray(rows, np.int64) * (1 if weights is None else np.asarray(weights, np.int64)[:, None])).sum(0)
    out = np.sign(s).astype(np.int8)
    if tie_vec is not None:
        out = np.where(s == 0, tie_vec, out).astype(np.int8)
    return out


def ref_sim(a, b, metric):
    a, b = a.astype(np.int64), b.astype(np.int64)
    if metric == "dot":
        return float(a @ b)
    if metric == "cosine":
        na, nb = np.count_nonzero(a), np.count_nonzero(b)
        return 0.0 if na == 0 or nb == 0 else float(a @ b) / np.sqrt(float(na) * float(nb))
    return float(np.count_nonzero(a != b))


def ref_topk(rows, q, k, metric):
    s = np.array([ref_sim(q, r, metric) for r in rows])
    key = s if metric == "hamming" else -s
    order = np.lexsort((np.arange(len(s)), key))[:k]
    return order, s[order]


# ---------- tests ----------

@pytest.mark.parametrize("dim", DIMS)
def test_random_pack_unpack(dim):
    for density in (1.0, 0.5, 0.1, 0.0):
        want = ref_random(dim, 1234, density)
        assert np.array_equal(ta.hv_random(dim, 1234, density, packed=False), want)
        p = ta.hv_random(dim, 1234, density)
        assert p.dtype == np.uint64 and p.size == ta.hv_packed_words(dim) == 2 * -(-dim // 64)
        assert np.array_equal(p, ref_pack(want))
        assert np.array_equal(ta.hv_pack(want), p)
        assert np.array_equal(ta.hv_unpack(p, dim), want)


@pytest.mark.parametrize("dim", DIMS)
def test_bind_unbind_permute_similarity(dim):
    a, b = ref_random(dim, 1, 0.7), ref_random(dim, 2, 1.0)
    ops_map, ops_mod = ta.VsaOps(dim, "map"), ta.VsaOps(dim, "modular")
    pa, pb = ta.hv_pack(a), ta.hv_pack(b)
    assert np.array_equal(ops_map.bind(a, b), a * b)  # dense in, dense out
    assert np.array_equal(ops_map.unpack(ops_map.bind(pa, pb)), a * b)  # packed in, packed out
    assert np.array_equal(ops_mod.bind(a, b), ref_mod3(a + b))
    assert np.array_equal(ops_mod.unbind(a, b), ref_mod3(a - b))
    assert np.array_equal(ops_mod.unbind(ops_mod.bind(pa, pb), pb), pa)
    assert np.array_equal(ops_map.unbind(ops_map.bind(pa, pb), pb), pa)  # b bipolar
    for k in (0, 1, -1, 64, 3 * dim + 5):
        assert np.array_equal(ops_map.permute(a, k), np.roll(a, k))
        assert np.array_equal(ops_map.inverse_permute(ops_map.permute(pa, k), k), pa)
    for m in ("dot", "cosine", "hamming"):
        assert ops_map.similarity(pa, pb, m) == ref_sim(a, b, m)
        assert ta.hv_similarity(a, b, dim, m) == ref_sim(a, b, m)


@pytest.mark.parametrize("dim", [1, 65, 1000])
@pytest.mark.parametrize("n", [0, 1, 2, 5, 100])
def test_bundle_and_accumulator(dim, n):
    rows = np.array([ref_random(dim, 50 + k, [1.0, 0.4][k % 2]) for k in range(n)]).reshape(n, dim)
    w = (np.arange(n) % 5 - 2).astype(np.int32)
    tv = ref_random(dim, 77, 1.0)
    packed = ta.hv_pack(rows) if n else np.empty((0, ta.hv_packed_words(dim)), np.uint64)
    for weights in (None, w):
        assert np.array_equal(ta.hv_bundle(rows, dim, weights), ref_bundle(rows, weights))
        got = ta.hv_bundle(packed, dim, weights, tie="random", tie_seed=77)
        assert np.array_equal(ta.hv_unpack(got, dim), ref_bundle(rows, weights, tv))
        with ta.BundleAccumulator(dim) as acc:
            for k in range(n):
                acc.add(packed[k], 1 if weights is None else int(weights[k]))
            assert len(acc) == n
            assert np.array_equal(acc.finish(packed=False), ref_bundle(rows, weights))
            assert np.array_equal(acc.finish("random", 77, packed=False), ref_bundle(rows, weights, tv))


def test_item_memory_topk_and_threads():
    dim, n = 500, 3000
    rows = np.array([ref_random(dim, 9000 + i, [1.0, 0.5, 0.05][i % 3]) for i in range(n)])
    rows[2500] = rows[10]  # an exact duplicate: the tie goes to index 10
    mem = ta.ItemMemory(dim)
    mem.add_many(ta.hv_pack(rows), labels=[100 + i for i in range(n)])
    assert len(mem) == n
    v, lab = mem.get(7)
    assert lab == 107 and np.array_equal(ta.hv_unpack(v, dim), rows[7])
    queries = [rows[10].copy(), ref_random(dim, 5, 1.0), ref_random(dim, 6, 0.2)]
    queries[0][::4] = 0
    for q in queries:
        for m in ("dot", "cosine", "hamming"):
            want_idx, want_s = ref_topk(rows, q, 12, m)
            results = []
            for threads in (1, 2, 3):
                ta.set_num_threads(threads)
                labels, scores = mem.query(q, 12, m)
                results.append((labels.tolist(), scores.tolist()))
            ta.set_num_threads(0)
            assert all(r == results[0] for r in results)
            assert results[0][0] == [100 + int(i) for i in want_idx]
            assert results[0][1] == want_s.tolist()
            sims = mem.similarities(q, m)
            assert np.array_equal(sims, [ref_sim(q, r, m) for r in rows])
            assert np.array_equal(ta.hv_similarity_many(q, rows[:300], dim, m), sims[:300])
    labels, _ = mem.query(rows[10], 2, "cosine")
    assert labels.tolist() == [110, 2600]
    assert len(mem.query(rows[0], 0)[0]) == 0
    assert len(mem.query(rows[0], n + 50)[0]) == n


def test_concurrent_queries_agree():
    dim = 2000
    mem = ta.ItemMemory(dim)
    for i in range(2000):
        mem.add(ta.hv_random(dim, i))
    q = ta.hv_random(dim, 12345)
    want = mem.query(q, 10, "dot")
    errors = []

    def worker():
        for _ in range(20):
            got = mem.query(q, 10, "dot")
            if not (np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])):
                errors.append(got)

    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


def test_errors_name_the_argument():
    dim = 100
    a = ta.hv_random(dim, 1)
    with pytest.raises(ta.InvalidDataError, match="b"):
        bad = a.copy()
        bad[2] |= bad[0] & (~bad[0] + np.uint64(1))  # a + bit also set in the minus plane
        ta.hv_bind(a, bad, dim)
    with pytest.raises(ta.ShapeMismatchError, match="a"):
        ta.hv_bind(a[:-1], a, dim)
    with pytest.raises(ValueError, match="algebra"):
        ta.hv_bind(a, a, dim, "xor")
    with pytest.raises(ta.InvalidArgumentError, match="density"):
        ta.hv_random(dim, 1, 1.5)
    with pytest.raises(ValueError, match="trits"):
        ta.hv_pack(np.array([0, 2, 1]))
    with pytest.raises(ValueError, match="weights"):
        ta.hv_bundle(np.stack([a, a]), dim, weights=[1])
    with ta.ItemMemory(0) as empty:  # dim 0 is valid, as for every VSA call
        assert len(empty) == 0
    mem = ta.ItemMemory(dim)
    with pytest.raises(ta.ShapeMismatchError, match="vector"):
        mem.add(ta.hv_random(dim + 64, 1))
    with pytest.raises(ValueError, match="metric"):
        mem.query(a, 3, "euclid")
    mem.close()
    with pytest.raises(ValueError, match="closed"):
        mem.query(a)


def test_dollar_of_mexico():
    ops = ta.VsaOps(10_000)
    names = ["country", "capital", "currency", "usa", "wdc", "dollar", "mex", "mxc", "peso"]
    hv = {n: ops.random(500 + i) for i, n in enumerate(names)}
    usa = ops.bundle([ops.bind(hv["country"], hv["usa"]), ops.bind(hv["capital"], hv["wdc"]),
                      ops.bind(hv["currency"], hv["dollar"])])
    mex = ops.bundle([ops.bind(hv["country"], hv["mex"]), ops.bind(hv["capital"], hv["mxc"]),
                      ops.bind(hv["currency"], hv["peso"])])
    mem = ops.item_memory()
    for i, n in enumerate(names):
        mem.add(hv[n], i)
    f = ops.bind(usa, mex)
    assert names[mem.query(ops.bind(hv["dollar"], f), 1)[0][0]] == "peso"
    assert names[mem.query(ops.unbind(mex, hv["capital"]), 1)[0][0]] == "mxc"


def test_vsa_demo_example_runs():
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python-ctypes"))
    r = subprocess.run([sys.executable, str(ROOT / "examples/vsa_demo.py")], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "the dollar of Mexico is peso" in r.stdout


def test_packed_words_python_formula_matches_the_library():
    import ctypes
    from tritter_accel._lib import call
    for dim in [0, 1, 63, 64, 65, 127, 128, 10_000, 2**40 + 3]:
        n = ctypes.c_size_t()
        call("tritter_hv_packed_words", dim, ctypes.byref(n))
        assert ta.hv_packed_words(dim) == n.value
