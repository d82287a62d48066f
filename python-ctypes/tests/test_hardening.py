"""Hardening of the Python wrappers and the library behind them (issue 17):
arrays the library writes into are checked before their pointer crosses,
refused allocations raise OutOfMemoryError instead of killing the
interpreter, and the loss scaler cannot get stuck at 0."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tritter_accel as ta


def _bad_outs(shape):
    """Arrays a writer must refuse, with the exception each raises."""
    n = int(np.prod(shape))
    base = np.zeros(2 * n, np.float32)
    ro = np.zeros(shape, np.float32)
    ro.flags.writeable = False
    return [
        (np.empty(shape, object), TypeError),  # float bits over object pointers
        (np.zeros(shape, np.float64), TypeError),  # silently garbage before
        (base[::-1][:n].reshape(shape) if len(shape) == 1 else base[::-2].reshape(shape), ValueError),  # negative stride
        (base[::2].reshape(shape), ValueError),  # gapped
        (ro, ValueError),
        ([0.0] * n, TypeError),
    ]


def test_count_sketch_out_is_checked():
    g = np.arange(64, dtype=np.float32)
    for out, exc in _bad_outs((3, 8)):
        with pytest.raises(exc):
            ta.count_sketch(g, 3, 8, 1, out=out)
    with pytest.raises(ValueError, match="elements"):
        ta.count_sketch(g, 3, 8, 1, out=np.zeros((3, 7), np.float32))
    good = np.full((3, 8), 7.0, np.float32)
    assert ta.count_sketch(g, 3, 8, 1, out=good) is good
    assert np.array_equal(good, ta.count_sketch(g, 3, 8, 1))
    flat = np.empty(24, np.float32)  # a flat out of rows * cols is fine
    assert np.array_equal(ta.count_sketch(g, 3, 8, 1, out=flat), good.reshape(-1))


def test_fetchsgd_outs_are_checked():
    f = ta.FetchSGD(64, rows=3, cols=8, k=2)
    g = np.arange(64, dtype=np.float32)
    for out, exc in _bad_outs((3, 8)):
        with pytest.raises(exc):
            f.sketch(g, out=out)
    t = f.sketch(g)
    for out, exc in _bad_outs((64,)):
        with pytest.raises(exc):
            f.step(t, out=out)
    with pytest.raises(ValueError, match="shape"):
        f.step(t, out=np.zeros(65, np.float32))
    out = np.empty(64, np.float32)
    assert f.step(t, out=out) is out
    assert np.count_nonzero(out) <= 2
    f.close()


def test_decompress_out_is_checked():
    c = ta.Compressor(100, "topk", ratio=10)
    p = c.compress(np.arange(100, dtype=np.float32))
    for out, exc in _bad_outs((100,)):
        with pytest.raises(exc):
            ta.decompress(p, out=out)
    out = np.empty(100, np.float32)
    assert ta.decompress(p, out=out) is out


def test_none_and_object_inputs_raise():
    with pytest.raises(TypeError):
        ta.f32_to_f16(None)  # was [nan]
    with pytest.raises(TypeError):
        ta.f32_to_bf16(None)
    with pytest.raises(TypeError):
        ta.f16_to_f32(None)
    with pytest.raises(TypeError):
        ta.f32_to_f16(np.array([1.0, None], dtype=object))


def test_nan_bias_is_refused():
    m = ta.TernaryMatrix.from_float(np.ones((2, 3), np.float32))
    with pytest.raises(ta.NonFiniteError, match="bias"):
        m.matmul(np.ones((1, 3), np.float32), bias=np.array([0.0, np.nan], np.float32))


def test_loss_scaler_floor_and_recovery():
    s = ta.LossScaler(growth_interval=1)
    for _ in range(400):
        s.update(True)
    assert s.scale == 2.0 ** -24  # torch's unfloored scale would be 0 here, for good
    for i in range(1, 41):
        assert s.update(False) == 2.0 ** (i - 24)
    with pytest.raises(ta.InvalidArgumentError, match="min_scale"):
        ta.LossScaler(min_scale=0.0)


_CHILD = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    import tritter_accel as ta
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * resource.getpagesize()
    lim = vm + (768 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    cases = {
        # a broadcast view: 16 GiB of logical float32 over one element
        "matrix": lambda: ta.TernaryMatrix.from_float(np.broadcast_to(np.float32(1), (1 << 16, 1 << 16))),
        "compressor": lambda: ta.Compressor(2**32 - 1, "topk", ratio=32),
        "fetchsgd": lambda: ta.FetchSGD(2**30, rows=1, cols=2**28, k=1),
    }
    for name, make in cases.items():
        try:
            make()
        except ta.OutOfMemoryError as e:
            assert isinstance(e, MemoryError)
            print(name, "refused:", e)
        else:
            sys.exit(f"{name}: no error")
    # the library and the interpreter carry on
    m = ta.TernaryMatrix.from_float(np.ones((4, 8), np.float32))
    assert m.matmul(np.ones((1, 8), np.float32)).shape == (1, 4)
    print("ok")
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux")
def test_refused_allocations_raise_out_of_memory_error():
    """Under an address-space limit, sizes the API allows raise
    OutOfMemoryError (before: SIGABRT killed the interpreter)."""
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(ta.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_parent] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("TRITTER_ACCEL_LIB", ta.library_path())
    r = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, f"rc {r.returncode}\n{r.stdout}\n{r.stderr}"
    assert r.stdout.strip().endswith("ok")
    for name, arg in (("matrix", "weights"), ("compressor", "dim"), ("fetchsgd", "cols")):
        assert f"{name} refused: TRITTER_ERR_OUT_OF_MEMORY" in r.stdout and f"`{arg}`" in r.stdout, r.stdout
