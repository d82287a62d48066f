"""Ternary quantize / pack / matmul against an independent NumPy reference."""
import ctypes
import subprocess
import sys
import threading
import pathlib

import numpy as np
import pytest

import tritter_accel as ta
from tritter_accel import _c_api as C

ROOT = pathlib.Path(__file__).resolve().parents[2]
SIZES = [0, 1, 3, 4, 5, 31, 32, 33, 255, 256, 257]


# ---------- the NumPy reference (written from the spec, not from the Rust code) ----------

def ref_scales(w, method, gran, g=None):
    a = np.abs(w.astype(np.float64))
    red = np.mean if method == "absmean" else np.max
    if gran == "tensor":
        return np.array([[red(a) if a.size else 0.0]])
    if gran == "row":
        return np.array([[red(r) if r.size else 0.0] for r in a])
    ng = max(1, -(-w.shape[1] // g))
    return np.array([[red(r[j * g:(j + 1) * g]) if r[j * g:(j + 1) * g].size else 0.0 for j in range(ng)] for r in a])


def ref_quantize(w, s, gran, g=None, threshold=None, eps=1e-5):
    rows, cols = w.shape
    idx = np.zeros((rows, cols), int) if gran != "group" else np.broadcast_to(np.arange(cols) // g, (rows, cols))
    if gran == "tensor":
        full = np.full((rows, cols), s[0, 0], np.float32)
    else:
        full = np.take_along_axis(s.astype(np.float32), idx, axis=1) if cols else np.zeros((rows, 0), np.float32)
    if threshold is not None:
        thr = np.float32(threshold) * full
        return ((w > thr).astype(np.int8) - (w < -thr).astype(np.int8)), full
    t = np.clip(np.round(w / (full + np.float32(eps))), -1, 1).astype(np.int8)
    return t, full


def ref_pack2(t):
    rows, cols = t.shape
    codes = np.where(t == 1, 1, np.where(t == -1, 2, 0)).astype(np.uint8)
    pad = (-cols) % 4
    codes = np.pad(codes, ((0, 0), (0, pad)))
    c = codes.reshape(rows, -1, 4)
    return (c[..., 0] | c[..., 1] << 2 | c[..., 2] << 4 | c[..., 3] << 6).astype(np.uint8)


def ref_pack3(t):
    rows, cols = t.shape
    d = (t.astype(np.int32) + 1)
    pad = (-cols) % 5
    d = np.pad(d, ((0, 0), (0, pad)), constant_values=1).reshape(rows, -1, 5)
    return (d * np.array([1, 3, 9, 27, 81])).sum(-1).astype(np.uint8)


def rand(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---------- tests ----------

@pytest.mark.parametrize("method", ["absmean", "absmax"])
@pytest.mark.parametrize("gran,g", [("tensor", None), ("row", None), ("group", 4), ("group", 7), ("group", 64)])
@pytest.mark.parametrize("threshold", [None, 0.3])
def test_quantize_matches_numpy(method, gran, g, threshold):
    for rows, cols in [(1, 1), (3, 5), (33, 257), (4, 256), (17, 100)]:
        w = rand((rows, cols), rows * 1000 + cols)
        t, s = ta.quantize(w, method, gran, g, threshold)
        s_ref = ref_scales(w, method, gran, g)
        np.testing.assert_allclose(s, s_ref, rtol=2e-6)
        t_ref, full = ref_quantize(w, s, gran, g, threshold)  # same scales: values must match exactly
        assert t.dtype == np.int8 and t.shape == (rows, cols)
        np.testing.assert_array_equal(t, t_ref)


def test_nonfinite_weights_rejected():
    w = rand((4, 4), 1)
    w[2, 3] = np.nan
    with pytest.raises(ta.NonFiniteError, match="weights"):
        ta.quantize(w)
    with pytest.raises(ta.NonFiniteError, match="weights"):
        ta.TernaryMatrix.from_float(w)


@pytest.mark.parametrize("rows", [0, 1, 3, 5])
@pytest.mark.parametrize("cols", SIZES)
def test_pack_layouts_match_numpy_and_round_trip(rows, cols):
    t = np.random.default_rng(rows * 7 + cols).integers(-1, 2, (rows, cols)).astype(np.int8)
    p2 = ta.pack(t, "2bit")
    p3 = ta.pack(t, "base3")
    np.testing.assert_array_equal(p2, ref_pack2(t).reshape(rows, -1) if rows else p2)
    np.testing.assert_array_equal(p3, ref_pack3(t).reshape(rows, -1) if rows else p3)
    np.testing.assert_array_equal(ta.unpack(p2, t.shape, "2bit"), t)
    np.testing.assert_array_equal(ta.unpack(p3, t.shape, "base3"), t)


def test_corrupt_packed_rejected():
    with pytest.raises(ta.InvalidDataError, match="packed"):
        ta.unpack(np.array([[0xFF]], np.uint8), (1, 4))
    with pytest.raises(ta.InvalidDataError, match="packed"):
        ta.unpack(np.array([[250]], np.uint8), (1, 5), "base3")
    with pytest.raises(ta.ShapeMismatchError, match="packed"):
        ta.unpack(np.zeros(3, np.uint8), (1, 4))
    with pytest.raises(ta.InvalidDataError):
        ta.TernaryMatrix.from_packed(np.full((2, 1), 0xC0, np.uint8), (2, 4), np.ones(2, np.float32))


def ref_matmul(x, t, full_scales, bias, act):
    """y = x · (t * s)ᵀ + bias in float64; int8 mode quantizes x per token first."""
    xx = x.astype(np.float64)
    if act == "int8":
        a = np.float32(127.0) / np.maximum(np.abs(x).max(axis=1, keepdims=True, initial=0), np.float32(1e-5))
        q = np.clip(np.round(x * a), -128, 127)
        xx = q / a.astype(np.float64)
    y = xx @ (t.astype(np.float64) * full_scales).T
    return y if bias is None else y + bias


@pytest.mark.parametrize("act", ["f32", "int8"])
@pytest.mark.parametrize("gran,g", [("tensor", None), ("row", None), ("group", 32), ("group", 5)])
def test_matmul_matches_numpy(act, gran, g):
    for rows, cols, batch in [(1, 1, 1), (3, 5, 2), (33, 257, 3), (64, 256, 1), (5, 31, 4), (4, 0, 2), (0, 4, 2), (7, 9, 0)]:
        w = rand((rows, cols), 11)
        x = rand((batch, cols), 12)
        bias = rand((rows,), 13)
        with ta.TernaryMatrix.from_float(w, "absmean", gran, g) as m:
            t, s = m.ternary(), m.scales()
            _, full = ref_quantize(w, s, gran, g)
            y = m.matmul(x, bias, act)
            want = ref_matmul(x, t, full.astype(np.float64), bias.astype(np.float64), act)
            tol = 1e-5 * (1 + cols) * (1 + np.abs(x).sum(axis=1, keepdims=True) * np.abs(full).max(initial=0))
            assert y.shape == (batch, rows)
            assert np.all(np.abs(y - want) <= tol)


def test_strided_inputs_and_threads():
    w = rand((40, 300), 3)
    xbig = rand((6, 600), 4)
    x = xbig[::2, ::2]  # non-contiguous view: passed without a copy as DLPack strides
    m = ta.TernaryMatrix.from_float(w)
    y = m.matmul(x)
    np.testing.assert_array_equal(y, m.matmul(np.ascontiguousarray(x)))
    # Results do not depend on the thread count, and one matrix is shareable.
    ta.set_num_threads(1)
    assert ta.get_num_threads() == 1
    y1 = m.matmul(x)
    ta.set_num_threads(0)
    np.testing.assert_array_equal(y, y1)
    outs = [None] * 4

    def work(i):
        outs[i] = m.matmul(x)

    th = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in th]
    [t.join() for t in th]
    for o in outs:
        np.testing.assert_array_equal(o, y)
    m.close()
    assert m.closed
    with pytest.raises(ValueError, match="closed"):
        m.matmul(x)


def test_matmul_errors_name_arguments():
    m = ta.TernaryMatrix.from_float(rand((3, 8), 1))
    with pytest.raises(ta.ShapeMismatchError, match="x"):
        m.matmul(rand((2, 7), 2))
    with pytest.raises(ta.ShapeMismatchError, match="bias"):
        m.matmul(rand((2, 8), 2), bias=np.zeros(4, np.float32))
    with pytest.raises(ta.ShapeMismatchError, match="y"):
        m.matmul(rand((2, 8), 2), out=np.zeros((2, 4), np.float32))
    x = rand((1, 8), 2)
    x[0, 0] = np.inf
    with pytest.raises(ta.NonFiniteError, match="x"):
        m.matmul(x)
    with pytest.raises(ValueError, match="act"):
        m.matmul(rand((1, 8), 2), act="int4")
    # Raw C call with a bad enum code: the status maps to an exception class.
    with pytest.raises(ta.InvalidArgumentError, match="act_mode"):
        ta._lib.call("tritter_ternary_matrix_matmul", m.raw, None, 0, 8, None, 0, 9, None, 0)


def test_activation_quantization():
    x = np.array([[0.0, 1.0, -2.0, 0.5]], np.float32)
    q, s = ta.quantize_activations_i8(x)
    assert s[0] == np.float32(63.5)
    np.testing.assert_array_equal(q, [[0, 64, -127, 32]])
    x = rand((9, 77), 5)
    q, s = ta.quantize_activations_i8(x)
    a = np.float32(127) / np.maximum(np.abs(x).max(1), np.float32(1e-5))
    np.testing.assert_array_equal(s, a)
    np.testing.assert_array_equal(q, np.clip(np.round(x * a[:, None]), -128, 127).astype(np.int8))


def test_seed_api():
    w = rand((64, 96), 8)
    t, s = ta.quantize_weights_absmean(w)
    assert t.shape == (64, 96) and s.shape == (64,)
    packed, s2 = ta.pack_ternary_weights(t, s)
    assert packed.shape == (64, 24) and packed.nbytes * 16 == w.nbytes
    wd = ta.unpack_ternary_weights(packed, s2, (64, 96))
    np.testing.assert_array_equal(wd, t.astype(np.float32) * s[:, None])
    x = rand((4, 96), 9)
    y = ta.ternary_matmul(x, packed, s2, (64, 96))
    np.testing.assert_allclose(y, x.astype(np.float64) @ wd.T.astype(np.float64), rtol=1e-4, atol=1e-4)
    assert ta.version() == ".".join(str(v) for v in (C.TRITTER_VERSION_MAJOR, C.TRITTER_VERSION_MINOR, C.TRITTER_VERSION_PATCH))
    assert ta.cuda_available() is False


def test_bindings_match_header():
    r = subprocess.run([sys.executable, str(ROOT / "python-ctypes/tools/gen_c_api.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lib = ta._lib.lib()
    for name in C.FUNCTIONS:
        assert hasattr(lib, name), name


def test_struct_layouts_match_c():
    # sizeof/alignment of structs crossing the ABI (LP64): catches a drifted declaration.
    assert ctypes.sizeof(C.tritter_dl_tensor_t) == 48
    assert ctypes.sizeof(C.tritter_quant_config_t) == 32
    assert ctypes.sizeof(C.tritter_matrix_info_t) == 80


def test_quickstart_example_runs():
    env = dict(__import__("os").environ, PYTHONPATH=str(ROOT / "python-ctypes"))
    r = subprocess.run([sys.executable, str(ROOT / "examples/quickstart.py")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "seed API agrees" in r.stdout


def test_base3_compute_format_same_results():
    w = rand((70, 650), 21)
    x = rand((3, 650), 22)
    with ta.TernaryMatrix.from_float(w) as m, m.with_compute_format("base3") as m3:
        assert m.info()["compute_format"] == C.TRITTER_COMPUTE_2BIT
        assert m3.info()["compute_format"] == C.TRITTER_COMPUTE_BASE3
        np.testing.assert_array_equal(m3.ternary(), m.ternary())
        np.testing.assert_array_equal(m3.matmul(x, act="int8"), m.matmul(x, act="int8"))
        np.testing.assert_allclose(m3.matmul(x), m.matmul(x), rtol=1e-5, atol=1e-4)
        with pytest.raises(ValueError, match="compute_format"):
            m.with_compute_format("base4")


@pytest.mark.parametrize("rows", [0, 1, 3, 5, 33])
@pytest.mark.parametrize("cols", SIZES + [319, 320, 321])
def test_matrix_exports_round_trip_in_both_compute_formats(rows, cols):
    # The handle keeps only the kernels' layout; every export is decoded from it.
    t = np.random.default_rng(rows * 1000 + cols).integers(-1, 2, (rows, cols)).astype(np.int8)
    p2, p3 = ta.pack(t, "2bit"), ta.pack(t, "base3")
    s = np.linspace(0.5, 1.5, rows, dtype=np.float32)
    for layout, p in (("2bit", p2), ("base3", p3)):
        with ta.TernaryMatrix.from_packed(p, t.shape, s, layout) as m, \
                m.with_compute_format("base3") as m3, m3.with_compute_format("2bit") as m2:
            for x in (m, m3, m2):
                np.testing.assert_array_equal(x.packed("2bit"), p2)
                np.testing.assert_array_equal(x.packed("base3"), p3)
                np.testing.assert_array_equal(x.ternary(), t)
                np.testing.assert_array_equal(x.dequantize(), t * s[:, None])


def test_memory_bytes_is_one_copy_of_the_weights():
    t = np.random.default_rng(5).integers(-1, 2, (64, 512)).astype(np.int8)
    with ta.TernaryMatrix.from_ternary(t, np.ones(64, np.float32)) as m:
        # 2-bit compute layout, no padding at this shape: the 2-bit size + scales.
        assert m.memory_bytes == 64 * 512 // 4 + 64 * 4 == m.packed("2bit").nbytes + m.scales().nbytes


def test_negative_stride_inputs_are_copied_not_rejected():
    w = rand((12, 40), 31)
    x = rand((3, 40), 32)
    m = ta.TernaryMatrix.from_float(w[::-1])  # a reversed view: negative stride
    np.testing.assert_array_equal(m.ternary(), ta.TernaryMatrix.from_float(w[::-1].copy()).ternary())
    np.testing.assert_array_equal(m.matmul(x[:, ::-1]), m.matmul(x[:, ::-1].copy()))
