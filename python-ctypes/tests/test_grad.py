"""Gradient compression against independent NumPy references (written from the
documented definitions), statistical tests with fixed seeds and bounds derived
from the variance, payload round trips and rejection, error feedback, and a
small convergence experiment with simulated workers."""
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import tritter_accel as ta

ROOT = pathlib.Path(__file__).resolve().parents[2]
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
STREAM = np.uint64(0xD1B54A32D192ED03)


# ---------- NumPy reference of the crate's counter-based hash (uint64 arithmetic wraps) ----------

def mix64(z):
    z = np.asarray(z, np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def hash2(seed, idx):
    with np.errstate(over="ignore"):
        k = mix64(np.uint64(seed) * GOLDEN ^ STREAM)
        return mix64(k + np.asarray(idx, np.uint64) * GOLDEN)


def derive(seed, tag):
    return int(hash2(np.uint64(seed) ^ np.uint64(0x5851F42D4C957F2D), tag))


def ref_sketch(g, rows, cols, seed):
    t = np.zeros((rows, cols), np.float64)
    i = np.arange(g.size, dtype=np.uint64)
    for r in range(rows):
        h = hash2(derive(seed, r), i)
        b = ((h >> np.uint64(32)) * np.uint64(cols)) >> np.uint64(32)
        s = np.where(h & np.uint64(1), -1.0, 1.0)
        np.add.at(t[r], b.astype(np.int64), s * g)
    return t


def fmix32(h):
    h = np.asarray(h, np.uint32)
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x85EBCA6B)
        h = h ^ (h >> np.uint32(13))
        h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def ref_ternary(g, block, seed):
    """TernGrad per the docs: s = block max, t = sign * [u24 < |g| 2^24 / s]."""
    out = np.zeros_like(g)
    for b in range(0, g.size, block):
        gb = g[b:b + block]
        s = np.float32(np.abs(gb).max())
        if s == 0:
            continue
        key = np.uint32(int(hash2(seed, b // block)) & 0xFFFFFFFF)
        j = np.arange(gb.size, dtype=np.uint32)
        with np.errstate(over="ignore"):
            u = (fmix32(j * np.uint32(0x9E3779B9) + key) >> np.uint32(8)).astype(np.float32)
        keep = u < np.abs(gb) * (np.float32(16777216.0) / s)
        out[b:b + block] = np.where(keep, np.sign(gb) * s, 0).astype(np.float32)
    return out


def randn(n, seed):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


# ---------- count sketch ----------

@pytest.mark.parametrize("n,rows,cols", [(1, 1, 1), (257, 3, 17), (10_000, 5, 333)])
def test_count_sketch_matches_reference(n, rows, cols):
    g = randn(n, n)
    t = ta.count_sketch(g, rows, cols, 9)
    np.testing.assert_allclose(t, ref_sketch(g.astype(np.float64), rows, cols, 9), rtol=1e-5, atol=1e-4)


def test_sketch_linearity_exact_and_bounded():
    rng = np.random.default_rng(0)
    a = rng.integers(-100, 100, 20_000).astype(np.float32)
    b = rng.integers(-100, 100, 20_000).astype(np.float32)
    # Integers: every partial sum is exact in f32, so equality is bit for bit.
    np.testing.assert_array_equal(ta.count_sketch(a, 3, 500, 1) + ta.count_sketch(b, 3, 500, 1),
                                  ta.count_sketch(a + b, 3, 500, 1))
    # Real data: bucket sums of m terms err by at most (m + 1) u Σ|terms| (u = 2^-24).
    a, b = randn(20_000, 1), randn(20_000, 2)
    lhs = ta.count_sketch(a, 3, 500, 1).astype(np.float64) + ta.count_sketch(b, 3, 500, 1)
    rhs = ta.count_sketch(a + b, 3, 500, 1).astype(np.float64)
    absmass = np.zeros((3, 500))
    i = np.arange(20_000, dtype=np.uint64)
    for r in range(3):
        h = hash2(derive(1, r), i)
        bk = (((h >> np.uint64(32)) * np.uint64(500)) >> np.uint64(32)).astype(np.int64)
        np.add.at(absmass[r], bk, 2 * (np.abs(a) + np.abs(b)))
    nb = np.zeros((3, 500))
    for r in range(3):
        h = hash2(derive(1, r), i)
        np.add.at(nb[r], (((h >> np.uint64(32)) * np.uint64(500)) >> np.uint64(32)).astype(np.int64), 1)
    assert np.all(np.abs(lhs - rhs) <= (nb + 1) * 2.0**-24 * absmass)


def test_sketch_payload_sum_equals_sketch_of_sum():
    a, b = randn(5000, 3), randn(5000, 4)
    ca = ta.Compressor(5000, "sketch", 10, rows=3, seed=5, error_feedback=False)
    cb = ta.Compressor(5000, "sketch", 10, rows=3, seed=5, worker=1, error_feedback=False)
    cab = ta.Compressor(5000, "sketch", 10, rows=3, seed=5, error_feedback=False)
    s = ta.payload_sum(ca.compress(a), cb.compress(b))
    np.testing.assert_allclose(ta.decompress(s), ta.decompress(cab.compress(a + b)), rtol=1e-4, atol=1e-4)
    with pytest.raises(ta.InvalidArgumentError, match="other"):
        ta.payload_sum(s, cb.compress(b))  # step 1 vs step 0: another seed


def test_one_row_sketch_estimate_unbiased():
    # ĝ_0 = g_0 + Σ_{j≠0, same bucket} ±g_j: mean g_0, variance Σ_{j≠0} g_j² / cols.
    g = randn(2000, 7)
    cols, trials = 100, 300
    var = float((g[1:].astype(np.float64) ** 2).sum() / cols)
    d = np.array([ta.count_sketch_estimate(ta.count_sketch(g, 1, cols, s), g.size, s)[0] - g[0]
                  for s in range(trials)], np.float64)
    assert abs(d.mean()) < 5 * np.sqrt(var / trials)
    assert 0.6 * var < d.var() < 1.5 * var


# ---------- FetchSGD ----------

def test_fetchsgd_recovers_heavy_hitters_and_tracks_error():
    # Median of 5 rows: a light coordinate is mistaken for a heavy one only if
    # it shares a bucket with one in 3 of 5 rows (expected count
    # n · C(5,3) (4/cols)^3 ≈ 0.01 here).
    n = 20_000
    g = randn(n, 1) * 0.01
    heavy = np.array([3, 999, 12345, 19999])
    g[heavy] = [5.0, -6.0, 7.0, -8.0]
    f = ta.FetchSGD(n, ratio=4, rows=5, k=4, momentum=0.0, seed=2)
    up = f.step(f.sketch(g))
    assert set(np.flatnonzero(up)) == set(heavy)
    np.testing.assert_allclose(up[heavy], g[heavy], atol=5 * 0.01 * np.sqrt(n / f.cols))
    # The next step with a zero gradient sends what was left in the error table.
    up2 = f.step(np.zeros(f.table_shape, np.float32))
    assert np.abs(up2).max() < 1.0


# ---------- ternary ----------

@pytest.mark.parametrize("n", [1, 3, 4, 5, 255, 256, 257, 5000])
def test_ternary_matches_reference(n):
    g = randn(n, n)
    c = ta.Compressor(n, "ternary", block=256, seed=3, worker=2, error_feedback=False)
    p = c.compress(g)
    info = ta.payload_info(p)
    assert p.size == 44 + 4 * (-(-n // 256)) + -(-n // 4) == c.wire_bytes == info["wire_bytes"]
    np.testing.assert_array_equal(ta.decompress(p), ref_ternary(g, 256, info["seed"]))
    # The seed of step 0 for worker 2: derive(derive(seed, step), worker + 1).
    assert info["seed"] == derive(derive(3, 0), 3)


def test_ternary_unbiased_and_variance():
    # Over T steps (fresh seeds) the mean decode of g_i has variance
    # (s|g_i| - g_i²)/T: 5 sd per coordinate; total squared error within 10%
    # of its expectation Σ (s|g_i| - g_i²).
    n, block, trials = 512, 128, 1500
    g = randn(n, 11)
    c = ta.Compressor(n, "ternary", block=block, seed=1, error_feedback=False)
    dec = np.stack([ta.decompress(c.compress(g)) for _ in range(trials)]).astype(np.float64)
    s = np.repeat(np.abs(g.reshape(-1, block)).max(1), block).astype(np.float64)
    var = s * np.abs(g) - g.astype(np.float64) ** 2
    assert np.all(np.abs(dec.mean(0) - g) <= 5 * np.sqrt(var / trials) + 1e-6)
    sq = ((dec - g) ** 2).sum(1).mean()
    assert abs(sq / var.sum() - 1) < 0.1


# ---------- top-k, projection ----------

def test_topk_matches_argsort():
    g = randn(10_000, 5)
    c = ta.Compressor(g.size, "topk", ratio=32, error_feedback=False)
    k = 10_000 // 64
    d = ta.decompress(c.compress(g))
    want = np.zeros_like(g)
    idx = np.argsort(-np.abs(g), kind="stable")[:k]
    want[idx] = g[idx]
    np.testing.assert_array_equal(d, want)
    assert c.wire_bytes == 44 + 8 * k


def qtopk_reference(g, k, v):
    """Quantized top-k in NumPy from the documented definition: top-k (stable), log-uniform
    bins between the k-th largest and the largest magnitude, bin-mean levels."""
    idx = np.argsort(-np.abs(g), kind="stable")[:k]
    a = np.abs(g[idx]).astype(np.float64)
    lo, hi = a.min(), a.max()
    nl = 1 << v
    if v == 0 or hi == 0:
        codes = np.zeros(k, int)
    else:
        lo = max(lo, hi * 1e-30)
        edges = (lo * (hi / lo) ** (np.arange(1, nl) / nl)).astype(np.float32)
        codes = (np.abs(g[idx])[:, None] >= edges[None, :]).sum(1)
    out = np.zeros_like(g)
    for c in range(nl):
        m = codes == c
        if m.any():
            out[idx[m]] = np.sign(g[idx[m]]) * np.float32(a[m].mean())
    return out


@pytest.mark.parametrize("v", [0, 1, 2, 4])
@pytest.mark.parametrize("ratio", [10, 32, 100])
def test_qtopk_matches_numpy_reference_and_beats_topk(v, ratio):
    g = randn(20_000, 11) ** 3  # heavy tails
    c = ta.Compressor(g.size, "qtopk", ratio=ratio, value_bits=v, error_feedback=False)
    p = c.compress(g)
    info = ta.payload_info(p)
    k = info["param_a"]
    assert info["method"] == "qtopk" and info["param_b"] >> 8 == v
    assert p.size - ta.PAYLOAD_OVERHEAD <= 4 * g.size / ratio
    d = ta.decompress(p)
    np.testing.assert_allclose(d, qtopk_reference(g, k, v), rtol=1e-6, atol=0)
    # At the same body size, the default 2-bit levels keep the gradient's direction better
    # than exact top-k. (With 0 or 1 bit at 10x every coordinate is kept at one or two
    # magnitudes, which loses to top-k on heavy tails like these: documented in docs/grad.md.)
    t = ta.decompress(ta.Compressor(g.size, "topk", ratio=ratio, error_feedback=False).compress(g))
    cos = lambda x: float(x @ g) / float(np.linalg.norm(x) * np.linalg.norm(g))
    if v >= 2 or ratio >= 32:
        assert cos(d) > cos(t)


def test_projection_seed_api_reference_and_unbiased():
    n = 9000
    g = randn(n, 1)
    y, seed = ta.compress_gradients_vsa(g, 0.1, 42)
    assert seed == 42 and y.size == 900
    # Dense reference of P from the docs: 3 blocks, 2 entries ±1/√2 per column.
    m, nb = y.size, 3
    P = np.zeros((m, n))
    for b in range(nb):
        lo, hi, ylo, yhi = b * n // nb, (b + 1) * n // nb, b * m // nb, (b + 1) * m // nb
        i = np.arange(lo, hi, dtype=np.uint64)
        for t in range(2):
            h = hash2(42, i * np.uint64(2) + np.uint64(t))
            r = ylo + (((h >> np.uint64(32)) * np.uint64(yhi - ylo)) >> np.uint64(32)).astype(np.int64)
            np.add.at(P, (r, i.astype(np.int64)), np.where(h & np.uint64(1), -1.0, 1.0) / np.sqrt(2))
    np.testing.assert_allclose(y, P @ g, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ta.decompress_gradients_vsa(y, n, seed), P.T @ y, rtol=1e-4, atol=1e-4)
    # Unbiased over seeds: Var[ĝ_0] <= 2 ||g||² / m_b per seed; 5 sd.
    g = randn(1000, 2)
    trials = 400
    est = np.array([ta.decompress_gradients_vsa(ta.compress_gradients_vsa(g, 0.1, s)[0], 1000, s)[0]
                    for s in range(trials)])
    assert abs(est.mean() - g[0]) < 5 * np.sqrt(2 * (g.astype(np.float64) ** 2).sum() / 100 / trials)
    with pytest.raises(ta.InvalidArgumentError, match="ratio"):
        ta.compress_gradients_vsa(g, 0.0, 1)


# ---------- payloads and error feedback ----------

@pytest.mark.parametrize("method", ["sketch", "ternary", "topk", "projection", "qtopk"])
def test_payload_round_trip_and_rejection(method):
    g = randn(3000, 9)
    c = ta.Compressor(g.size, method, ratio=8, rows=3, error_feedback=False)
    p = c.compress(g)
    assert p.size == c.wire_bytes
    assert bytes(p[:4]) == b"TGRC"
    d = ta.decompress(p)
    np.testing.assert_array_equal(ta.decompress(bytes(p)), d)
    rng = np.random.default_rng(0)
    for pos in rng.choice(p.size, 40, replace=False):
        q = p.copy()
        q[pos] ^= np.uint8(1 << rng.integers(8))
        with pytest.raises(ta.InvalidDataError, match="payload"):
            ta.decompress(q)
    for cut in (0, 10, 43, p.size - 1):
        with pytest.raises(ta.InvalidDataError, match="payload"):
            ta.decompress(p[:cut])
    with pytest.raises(ta.InvalidDataError):
        ta.decompress(np.concatenate([p, np.zeros(1, np.uint8)]))
    # a header claiming a dim no array can hold, or one past the payload's: an error, no allocation
    for dim in (1 << 39, 1 << 62, 2**64 - 1, g.size + 1):
        q = p.copy()
        q[8:16] = np.frombuffer(int(dim).to_bytes(8, "little"), np.uint8)
        with pytest.raises(ta.InvalidDataError, match="payload"):
            ta.decompress(q)
    with pytest.raises(ta.ShapeMismatchError, match="out"):
        ta.decompress(p, out=np.empty(g.size - 1, np.float32))


@pytest.mark.parametrize("method", ["sketch", "ternary", "topk", "projection", "qtopk"])
def test_error_feedback_invariant(method):
    # residual_t + D(C(g_t + residual_{t-1})) == g_t + residual_{t-1} to rounding.
    n = 4000
    c = ta.Compressor(n, method, ratio=8, rows=3, seed=4)
    prev = np.zeros(n, np.float32)
    for t in range(4):
        g = randn(n, 100 + t)
        d = ta.decompress(c.compress(g))
        x = g + prev
        r = c.residual()
        assert np.all(np.abs(r + d - x) <= 2 * np.finfo(np.float32).eps * (np.abs(x) + np.abs(d)))
        prev = r
    assert c.step == 4
    bad = randn(n, 1)
    bad[5] = np.nan
    with pytest.raises(ta.NonFiniteError, match="grad"):
        c.compress(bad)
    np.testing.assert_array_equal(c.residual(), prev)
    c.reset()
    assert c.step == 0 and not c.residual().any()


def test_compressor_argument_errors():
    with pytest.raises(ValueError, match="method"):
        ta.Compressor(10, "zip")
    with pytest.raises(ta.InvalidArgumentError, match="ratio"):
        ta.Compressor(10, "topk", ratio=0.5)
    with pytest.raises(ta.InvalidArgumentError, match="block"):
        ta.Compressor(10, "ternary", block=6)
    with pytest.raises(ta.InvalidArgumentError, match="value_bits"):
        ta.Compressor(10, "qtopk", value_bits=5)
    with pytest.raises(ta.InvalidArgumentError, match="dim"):
        ta.Compressor(0, "topk")
    with pytest.raises(ta.ShapeMismatchError, match="grad"):
        ta.Compressor(10, "topk").compress(np.zeros(9, np.float32))
    with pytest.raises(ta.TritterError, match="compressor"):
        ta.Compressor(10, "topk", error_feedback=False).residual()


# ---------- ternary accumulation ----------

def test_accumulator_is_packed_and_unbiased():
    n, k, trials = 1000, 4, 600
    grads = [np.random.default_rng(m).uniform(-0.3, 0.7, n).astype(np.float32) for m in range(k)]
    exact = np.sum(grads, 0, dtype=np.float64)
    sums = []
    for s in range(trials):
        acc = ta.TernaryAccumulator(n, block=256, seed=s)
        for g in grads:
            acc.add(g)
        sums.append(acc.read())
    acc2 = ta.TernaryAccumulator(n, block=256, seed=0)
    assert acc2.memory_bytes == 250 + 16 < n * 4 / 15  # 2 bits + 4 scales, not f32
    assert acc.count == k
    np.testing.assert_allclose(acc.read(mean=True), acc.read() / k, rtol=1e-6)
    mean = np.mean(sums, 0)
    # Each addition has variance <= s_max², s_max <= 0.7 · (additions so far).
    sd = np.sqrt(k * (0.7 * k) ** 2 / trials)
    assert np.all(np.abs(mean - exact) < 5 * sd)
    assert abs((mean - exact).mean()) < 5 * sd / np.sqrt(n)




def test_example_runs():
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "grad_demo.py")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "fetchsgd" in r.stdout and "accumulator" in r.stdout


def _sgd_least_squares(method, ef, ratio, steps=300, d=500, workers=4, lr=10.0, seed=0):
    """Data-parallel minibatch SGD on least squares with simulated workers; final / initial loss."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((4000, d)).astype(np.float32) / np.sqrt(d)
    b = A @ rng.standard_normal(d).astype(np.float32) + 0.01 * rng.standard_normal(4000).astype(np.float32)
    x = np.zeros(d, np.float32)
    comps = [ta.Compressor(d, method, ratio=ratio, seed=1, worker=w, error_feedback=ef) if method else None
             for w in range(workers)]
    l0 = float(((A @ x - b) ** 2).mean())
    for _ in range(steps):
        ups = []
        for w in range(workers):
            idx = rng.integers(0, 4000, 32)
            g = A[idx].T @ (A[idx] @ x - b[idx]) / 32
            ups.append(ta.decompress(comps[w].compress(g)) if method else g)
        x -= lr * np.mean(ups, 0)
    return float(((A @ x - b) ** 2).mean()) / l0


def test_error_feedback_makes_topk_converge():
    # Same data, same minibatches, 300 steps: top-k at 50x with error feedback
    # reaches the uncompressed loss (measured: 2.5e-4 vs 3.5e-4 of the initial
    # loss); without it, it is stuck two to three orders of magnitude higher (0.37).
    exact = _sgd_least_squares(None, False, 1)
    ef = _sgd_least_squares("topk", True, 50)
    no_ef = _sgd_least_squares("topk", False, 50)
    assert exact < 1e-3
    assert ef < 2 * exact
    assert no_ef > 0.1
