"""Mixed precision against NumPy / ml_dtypes (bit for bit) and torch's GradScaler."""
import numpy as np
import pytest

import tritter_accel as ta

ml_dtypes = pytest.importorskip("ml_dtypes")
BF16 = ml_dtypes.bfloat16


def f32_bits(x):
    return np.asarray(x, np.float32).view(np.uint32)


ALL16 = np.arange(65536, dtype=np.uint32).astype(np.uint16)


def is_nan16(bits, exp_mask, man_mask):
    return ((bits & exp_mask) == exp_mask) & ((bits & man_mask) != 0)


def test_bf16_widen_exhaustive_matches_ml_dtypes():
    ours = ta.bf16_to_f32(ALL16)
    ref = ALL16.view(BF16).astype(np.float32)
    # Widening is a shift: identical bits for all 65536 patterns, NaN payloads included.
    np.testing.assert_array_equal(f32_bits(ours), f32_bits(ref))
    np.testing.assert_array_equal(f32_bits(ours), ALL16.astype(np.uint32) << 16)
    # Also accepts ml_dtypes arrays directly.
    np.testing.assert_array_equal(f32_bits(ta.bf16_to_f32(ALL16.view(BF16))), f32_bits(ref))


def test_f16_widen_exhaustive_matches_numpy():
    ours = ta.f16_to_f32(ALL16.view(np.float16))
    ref = ALL16.view(np.float16).astype(np.float32)
    nan = is_nan16(ALL16, 0x7C00, 0x03FF)
    np.testing.assert_array_equal(f32_bits(ours)[~nan], f32_bits(ref)[~nan])
    # NaNs: NumPy keeps signalling NaNs signalling, we quiet them (as vcvtph2ps does):
    # same sign and payload, quiet bit set.
    assert np.isnan(ours[nan]).all() and np.isnan(ref[nan]).all()
    np.testing.assert_array_equal(f32_bits(ours)[nan], f32_bits(ref)[nan] | 0x00400000)


def test_roundtrip_all_16bit_patterns():
    bf = ta.bf16_to_f32(ALL16)
    back = ta.f32_to_bf16(bf)
    nan_b = is_nan16(ALL16, 0x7F80, 0x007F)
    np.testing.assert_array_equal(back[~nan_b], ALL16[~nan_b])
    np.testing.assert_array_equal(back[nan_b], ALL16[nan_b] | 0x40)
    # ml_dtypes' narrowing of the same f32 values, bit for bit except NaN payloads.
    with np.errstate(invalid="ignore"):
        ref = bf.astype(BF16).view(np.uint16)
    np.testing.assert_array_equal(back[~nan_b], ref[~nan_b])
    assert np.isnan(ref[nan_b].view(BF16).astype(np.float32)).all()

    f = ta.f16_to_f32(ALL16)
    back = ta.f32_to_f16(f, bits=True)
    nan_h = is_nan16(ALL16, 0x7C00, 0x03FF)
    np.testing.assert_array_equal(back[~nan_h], ALL16[~nan_h])
    np.testing.assert_array_equal(back[nan_h], ALL16[nan_h] | 0x200)
    np.testing.assert_array_equal(ta.f32_to_f16(f)[~nan_h].view(np.uint16),
                                  f.astype(np.float16)[~nan_h].view(np.uint16))


SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0, 65504.0, 65519.996, 65520.0,
                     65536.0, 1e-8, 2.0 ** -24, 2.0 ** -25, 3 * 2.0 ** -25, 2.0 ** -14, 6.0e-5,
                     np.finfo(np.float32).max, np.finfo(np.float32).tiny, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8,
                     3.3895314e38, 3.389531e38], np.float32)


def random_patterns(n, seed):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32)
    # Bias half of them towards the interesting exponent ranges (f16 sub/normal, bf16 ties).
    small = rng.integers(0x33000000, 0x47800000, n // 2, dtype=np.uint64).astype(np.uint32)
    ties = (rng.integers(0, 2 ** 16, n // 4, dtype=np.uint64).astype(np.uint32) << 16) | 0x8000
    return np.concatenate([bits, small, ties, f32_bits(SPECIALS)]).view(np.float32)


def compare_narrow(ours, ref, x, exp_mask, man_mask):
    nan = np.isnan(x)
    np.testing.assert_array_equal(ours[~nan], ref[~nan])
    assert is_nan16(ours[nan], exp_mask, man_mask).all()
    np.testing.assert_array_equal(ours[nan] >> 15, ref[nan] >> 15)  # sign kept


def test_f32_to_bf16_matches_ml_dtypes():
    x = random_patterns(1_000_000, 1)
    ours = ta.f32_to_bf16(x)
    with np.errstate(invalid="ignore"):
        ref = x.astype(BF16).view(np.uint16)
    compare_narrow(ours, ref, x, 0x7F80, 0x007F)
    s = ta.f32_to_bf16(SPECIALS)
    assert list(s[:4]) == [0x0000, 0x8000, 0x7F80, 0xFF80]
    assert s[20] == 0x3F80 and s[21] == 0x3F82  # ties to even
    assert s[18] == 0x7F80  # f32 max rounds up to inf


def test_f32_to_f16_matches_numpy():
    x = random_patterns(1_000_000, 2)
    ours = ta.f32_to_f16(x, bits=True)
    with np.errstate(over="ignore"):
        ref = x.astype(np.float16).view(np.uint16)
    compare_narrow(ours, ref, x, 0x7C00, 0x03FF)
    h = ta.f32_to_f16(SPECIALS, bits=True)
    assert list(h[8:12]) == [0x7BFF, 0x7BFF, 0x7C00, 0x7C00]
    assert list(h[13:16]) == [0x0001, 0x0000, 0x0002]  # subnormal ties to even


def test_shapes_and_errors():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert ta.f32_to_bf16(x).shape == (3, 4)
    assert ta.f32_to_f16(x).dtype == np.float16
    assert ta.f32_to_bf16(np.zeros(0, np.float32)).size == 0
    with pytest.raises(TypeError):
        ta.bf16_to_f32(np.zeros(3, np.float32))


def test_stochastic_rounding_unbiased_and_deterministic():
    x = np.float32(1.0 + 0.3 * 2.0 ** -7)  # 0.3 ulp above 1.0 (bf16 ulp at 1 is 2^-7)
    n = 200_000
    r = ta.f32_to_bf16_stochastic(np.full(n, x), seed=5)
    assert set(np.unique(r)) <= {0x3F80, 0x3F81}
    q = (np.float64(x) - 1.0) / 2.0 ** -7
    ups = int((r == 0x3F81).sum())
    assert abs(ups - n * q) < 6 * np.sqrt(n * q * (1 - q))
    mean = ta.bf16_to_f32(r).astype(np.float64).mean()
    assert abs(mean - np.float64(x)) < 6 * 2.0 ** -7 * np.sqrt(q * (1 - q) / n)
    # Pure function of (seed, offset + index).
    y = np.random.default_rng(0).standard_normal(100_003).astype(np.float32)
    whole = ta.f32_to_bf16_stochastic(y, seed=9)
    parts = np.concatenate([ta.f32_to_bf16_stochastic(y[:1001], 9, 0),
                            ta.f32_to_bf16_stochastic(y[1001:], 9, 1001)])
    np.testing.assert_array_equal(whole, parts)
    assert not np.array_equal(whole, ta.f32_to_bf16_stochastic(y, seed=10))
    # Each result is one of the two bf16 neighbours.
    lo = (f32_bits(y) >> 16).astype(np.uint16)
    assert ((whole == lo) | (whole == lo + 1)).all()


def documented_rules(pattern, init, growth, backoff, interval):
    """GradScaler's update rules as documented (torch._amp_update_scale_), in float32."""
    s, t, out = np.float32(init), 0, []
    for inf in pattern:
        if inf:
            s, t = np.float32(s * np.float32(backoff)), 0
        elif t + 1 == interval:
            g = np.float32(s * np.float32(growth))
            if np.isfinite(g):
                s = g
            t = 0
        else:
            t += 1
        out.append(float(s))
    return out


PATTERN = [i % 11 == 4 or i % 17 == 0 or 40 <= i < 45 for i in range(120)]


def test_loss_scaler_matches_documented_rules():
    s = ta.LossScaler(init_scale=2.0 ** 10, growth_interval=3)
    got = [s.update(f) for f in PATTERN]
    assert got == documented_rules(PATTERN, 2.0 ** 10, 2.0, 0.5, 3)
    st = s.state()
    assert st["updates"] == len(PATTERN) and st["overflows"] == sum(PATTERN)


def test_loss_scaler_matches_torch_gradscaler():
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1000))
    opt = torch.optim.SGD([p], lr=0.0)
    ref = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_factor=2.0, backoff_factor=0.5,
                               growth_interval=3)
    ours = ta.LossScaler(init_scale=2.0 ** 10, growth_interval=3)
    rng = np.random.default_rng(3)
    for inf in PATTERN:
        g = (rng.standard_normal(1000) * 100).astype(np.float32)
        if inf:
            g[rng.integers(0, 1000)] = np.inf if rng.integers(0, 2) else np.nan
        p.grad = torch.from_numpy(g.copy())
        assert ref.scale(torch.tensor(1.0)).item() == ours.scale_loss(1.0)
        ref.unscale_(opt)
        mine = g.copy()
        found = ours.unscale_([mine])
        assert found == inf
        # Unscaled gradients bit for bit (inv_scale = float(1/double(scale))).
        np.testing.assert_array_equal(mine.view(np.uint32), p.grad.numpy().view(np.uint32))
        ref.step(opt)
        ref.update()
        ours.update(found)
        assert ours.scale == ref.get_scale()
        assert ours.growth_tracker == int(ref._growth_tracker.item())


def test_loss_scaler_bounds_and_errors():
    s = ta.LossScaler(init_scale=4.0, growth_interval=1, min_scale=2.0, max_scale=8.0)
    assert [s.update(f) for f in [False, False, True, True, True]] == [8.0, 8.0, 4.0, 2.0, 2.0]
    assert s.update(False, new_scale=3.0) == 3.0 and s.growth_tracker == 0
    assert s.scale_loss(2.0) == np.float32(6.0)
    a, b = np.array([1.0, np.inf], np.float32), np.ones(3, np.float32)
    assert ta.found_inf([b, a]) and not ta.found_inf([b]) and not ta.found_inf([])
    with pytest.raises(ta.InvalidArgumentError, match="growth_interval"):
        ta.LossScaler(growth_interval=0)
    with pytest.raises(ta.InvalidArgumentError, match="backoff_factor"):
        ta.LossScaler(backoff_factor=2.0)
    with pytest.raises(ta.InvalidArgumentError, match="buffers"):
        s.unscale_([b, b])  # the same buffer twice overlaps
    with pytest.raises(TypeError):
        s.unscale_([np.ones(3)])  # float64
    with pytest.raises(ta.InvalidArgumentError, match="scale"):
        s.update(False, new_scale=float("nan"))
