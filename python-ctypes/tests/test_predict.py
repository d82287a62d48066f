"""The phase trainer against independent NumPy references."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import tritter_accel as ta

ROOT = pathlib.Path(__file__).resolve().parents[2]


def drive(tr, steps, grad_fn, loss_fn=lambda t: 1.0, on_predict=None):
    """Runs `steps` steps; returns (phases, {step: predictions}, backward step numbers)."""
    phases, preds, times = [], {}, []
    for _ in range(steps):
        info = tr.begin_step()
        if info.needs_backward:
            tr.record_gradients({n: grad_fn(info.step, n) for n in tr.names})
            times.append(info.step)
        else:
            preds[info.step] = tr.predicted_gradients()
            if on_predict:
                on_predict(info.step, preds[info.step], list(times))
        tr.end_step(loss_fn(info.step))
        phases.append(info.phase)
    return phases, preds, times


def lstsq_prediction(times, values, decay, target, horizon, window):
    """WLS fit g = b + v t by numpy.linalg.lstsq on sqrt(w)-scaled rows, evaluated at the horizon-clamped point."""
    times = np.asarray(times[-window:], np.float64)
    vals = np.asarray(values[-window:], np.float64)  # [k, n]
    newest = times[-1]
    w = decay ** (newest - times)
    a = np.stack([np.ones_like(times), times - newest], 1) * np.sqrt(w)[:, None]
    if len(times) == 1:
        return vals[0]
    coef, *_ = np.linalg.lstsq(a, vals * np.sqrt(w)[:, None], rcond=None)
    return coef[0] + coef[1] * min(target - newest, horizon)


@pytest.mark.parametrize("decay,horizon,window", [(0.95, 1, 8), (0.7, 3, 4), (1.0, 100, 5), (0.9, 0, 3)])
def test_wls_equals_numpy_lstsq_on_random_histories(decay, horizon, window):
    rng = np.random.default_rng(int(decay * 100) + horizon)
    shapes = {"w": (4, 6), "b": (6,), "s": ()}
    # Irregular history times: Correct steps inside segments.
    tr = ta.create_trainer(shapes, preset="seed", warmup_steps=3, full_steps=2, predict_steps=7, correct_every=3,
                           history_window=window, history_decay=decay, prediction_horizon=horizon,
                           adaptive_phases=False)
    grads = {}

    def g(t, n):
        grads[(t, n)] = rng.standard_normal(shapes[n]).astype(np.float32) + 0.1 * t
        return grads[(t, n)]

    checked = 0

    def check(t, pred, times):
        nonlocal checked
        for n in shapes:
            hist = [grads[(s, n)].ravel() for s in times]
            want = lstsq_prediction(times, hist, decay, t, horizon, window).reshape(shapes[n])
            # f32 sums of k products (coefficients rounded to f32): |err| <= (k + 2) 2^-24 sum|c_i g_i|;
            # the coefficients are recovered from lstsq on unit vectors.
            k = min(len(times), window)
            eye = [np.eye(k)[i] for i in range(k)]
            c = lstsq_prediction(times, eye, decay, t, horizon, window)
            mag = np.abs(np.stack(hist[-k:]).T * c).sum(1).reshape(shapes[n])
            assert np.all(np.abs(pred[n] - want) <= (k + 2) * 2.0**-24 * mag + 1e-30)
            checked += 1

    drive(tr, 60, g, on_predict=check)
    assert checked > 20


def test_linear_sequence_predicted_exactly():
    # The guarded default: an exactly linear sequence is predicted by WLS without error.
    tr = ta.PhaseTrainer([("w", (3, 3)), ("b", (3,))], prediction_horizon=1000, history_bf16=True)
    a = np.arange(9, dtype=np.float32).reshape(3, 3) - 4
    v = np.array([0.25, -0.5, 1.0], np.float32)

    def g(t, n):
        return (a + v * t) if n == "w" else (v * 2 * t - 1)

    _, preds, _ = drive(tr, 100, g)
    assert len(preds) > 30
    for t, p in preds.items():  # f32 rounding of 8-term sums of values up to ~100
        np.testing.assert_allclose(p["w"], g(t, "w"), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(p["b"], g(t, "b"), rtol=1e-5, atol=1e-5)
    s = tr.stats()
    assert s["mean_prediction_error"] < 1e-5 and s["params_wls"] == 2
    assert s["memory_bytes"] == 12 * 8 * 2
    assert tr.param_stats("w")["predictor"] == "wls"


def expected_schedule(c, steps):
    out = ["warmup"] * c["warmup_steps"]
    while len(out) < steps:
        out += ["full"] * c["full_steps"]
        out += ["correct" if c["correct_every"] and k % c["correct_every"] == 0 else "predict"
                for k in range(1, c["predict_steps"] + 1)]
    return out[:steps]


@pytest.mark.parametrize("preset,over", [("seed", {}), ("conservative", {}),
                                         ("seed", {"warmup_steps": 0, "full_steps": 2, "correct_every": 0,
                                                   "predict_steps": 3})])
def test_schedule_follows_documented_rules(preset, over):
    tr = ta.PhaseTrainer({"x": (5,)}, preset=preset, **over)
    phases, _, _ = drive(tr, 150, lambda t, n: np.full(5, t, np.float32))
    assert phases == expected_schedule(tr.config, 150)
    s = tr.stats()
    assert s["predict_steps"] == phases.count("predict")
    assert s["backward_passes"] == 150 - phases.count("predict")
    assert s["steps"] == 150 and s["backoffs"] == 0


def test_adaptive_backoff():
    tr = ta.PhaseTrainer({"x": (2,)}, preset="seed", warmup_steps=2, full_steps=2, predict_steps=8, correct_every=0)
    # Loss 1 on backward steps, 2 on predict steps: every segment backs off after one step.
    phases, _, _ = drive(tr, 40, lambda t, n: np.ones(2, np.float32),
                         loss_fn=lambda t: 1.0)
    assert tr.stats()["backoffs"] == 0
    tr2 = ta.PhaseTrainer({"x": (2,)}, preset="seed", warmup_steps=2, full_steps=2, predict_steps=8,
                          correct_every=0)
    lens = []
    for _ in range(20):
        info = tr2.begin_step()
        if info.needs_backward:
            tr2.record("x", np.ones(2, np.float32))
        tr2.end_step(2.0 if info.phase == "predict" else 1.0)
        lens.append(tr2.stats()["current_predict_steps"])
    assert lens[4] == 4 and lens[7] == 2 and lens[10] == 1 and min(lens) == 1
    assert tr2.stats()["backoffs"] >= 3


def test_deterministic_across_thread_counts():
    def run(threads):
        ta.set_num_threads(threads)
        tr = ta.PhaseTrainer({"big": (3 * 4096 + 7,), "small": (3, 5)}, warmup_steps=4, predict_steps=5,
                             max_error=10.0, min_checks=1)
        rng = np.random.default_rng(7)
        _, preds, _ = drive(tr, 30, lambda t, n: rng.standard_normal(tr.shapes[n]).astype(np.float32) + t * 0.01)
        return preds, tr.stats()

    p1, s1 = run(1)
    p2, s2 = run(2)
    ta.set_num_threads(0)
    assert p1.keys() == p2.keys() and len(p1) > 5
    for t in p1:
        for n in p1[t]:
            np.testing.assert_array_equal(p1[t][n].view(np.uint32), p2[t][n].view(np.uint32))
    assert s1["mean_prediction_error"] == s2["mean_prediction_error"]


def test_seed_step_api_and_errors():
    tr = ta.create_trainer({"w": (2, 2)}, preset="seed", warmup_steps=1, full_steps=1, predict_steps=2,
                           correct_every=0)
    g = np.array([[1, 2], [3, 4]], np.float32)
    r = tr.step(lambda needs: (0.5, {"w": g} if needs else None))
    assert r["phase"] == "warmup" and r["needs_backward"] and r["stats"]["backward_passes"] == 1
    r = tr.step(lambda needs: (0.5, [g] if needs else None))
    assert r["phase"] == "full" and r["stats"]["backward_passes"] == 2
    r = tr.step(lambda needs: (0.5, None))
    assert r["phase"] == "predict" and not r["needs_backward"]
    np.testing.assert_array_equal(r["gradients"]["w"], g)
    assert r["stats"]["predict_steps"] == 1
    with pytest.raises(ta.TritterError, match="no step in progress"):
        tr.end_step(1.0)
    info = tr.begin_step()
    with pytest.raises(ta.TritterError, match="Predict step"):
        tr.record("w", g)
    with pytest.raises(ta.ShapeMismatchError, match="out"):
        tr.predict("w", np.empty(3, np.float32))
    tr.end_step(1.0)
    info = tr.begin_step()
    assert info.phase == "full"
    with pytest.raises(ta.ShapeMismatchError, match="grad"):
        tr.record("w", np.ones(3, np.float32))
    with pytest.raises(ta.NonFiniteError, match="grad"):
        tr.record("w", np.array([[1, np.nan], [0, 0]], np.float32))
    with pytest.raises(ta.TritterError, match="parameter 0"):
        tr.end_step(1.0)
    with pytest.raises(ta.InvalidArgumentError, match="history_window"):
        ta.create_trainer({"w": (2,)}, history_window=0)
    with pytest.raises(TypeError, match="unknown"):
        ta.create_trainer({"w": (2,)}, not_a_field=1)
    with pytest.raises(ta.InvalidArgumentError, match="shape"):
        ta.create_trainer({"w": (2, 0)})


def test_torch_helper_fills_grads_with_predictions():
    torch = pytest.importorskip("torch")
    from tritter_accel.torch.phase import PhaseTrainerHelper

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    helper = PhaseTrainerHelper(model.named_parameters(), preset="seed", warmup_steps=3, full_steps=1,
                                predict_steps=2, correct_every=0, adaptive_phases=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    backward = 0
    for _ in range(12):
        info = helper.begin_step()
        if info.needs_backward:
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            backward += 1
            helper.end_step(loss.item())
        else:
            with torch.no_grad():
                loss = torch.nn.functional.mse_loss(model(x), y)
            preds = {n: helper.trainer.predict(n).copy() for n, _ in helper.params}
            helper.end_step(loss.item())
            for n, p in helper.params:
                np.testing.assert_array_equal(p.grad.numpy(), preds[n])
        opt.step()
    s = helper.stats()
    assert backward == s["backward_passes"] == 12 - s["predict_steps"] and s["predict_steps"] == 6
    assert s["timed_backward_steps"] == backward and s["measured_speedup"] > 0
    # float64 parameters (copied through float32) and the guarded default without a forward pass
    model = torch.nn.Linear(3, 1).double()
    helper = PhaseTrainerHelper(model.named_parameters(), warmup_steps=2, min_checks=1)
    x = torch.randn(8, 3, dtype=torch.float64)
    phases = []
    for _ in range(10):
        info = helper.begin_step()
        if info.needs_backward:
            model.zero_grad()
            loss = model(x).sum()  # a constant gradient: predicted exactly
            loss.backward()
            helper.end_step(loss.item())
        else:
            helper.end_step()
            assert model.weight.grad.dtype == torch.float64
            np.testing.assert_allclose(model.weight.grad.numpy(), x.sum(0, keepdim=True).numpy(), rtol=1e-6)
        phases.append(info.phase)
    assert "predict" in phases
    with pytest.raises(ValueError, match="needs its loss"):
        helper.begin_step()
        while not helper.needs_backward:
            helper.end_step()
            helper.begin_step()
        helper.end_step()


def test_experiment_smoke(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    out = tmp_path / "predict.md"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python-ctypes"))
    r = subprocess.run([sys.executable, str(ROOT / "experiments/phase_trainer/run.py"), "--smoke",
                        "--tasks", "digits,digits-full,lm", "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in out.read_text().splitlines()
            if line.startswith("| digits") or line.startswith("| lm")]
    assert [(c[0], c[1]) for c in rows] == [("digits", "baseline"), ("digits", "default"), ("digits", "seed"),
                                            ("digits-full", "baseline"), ("digits-full", "default"),
                                            ("digits-full", "seed"), ("lm", "baseline"), ("lm", "default")]
    for c in rows:
        if c[1] == "baseline":
            assert c[4] == "0%" and c[6] == "-"
        else:
            assert c[6].endswith("(median)") and c[9] != "-"
        if c[1] == "seed":
            assert int(c[4].rstrip("%")) > 0  # the fixed schedule always predicts


def test_examples_run():
    for ex in ("phase_trainer_demo.py", "precision_demo.py"):
        env = dict(os.environ, PYTHONPATH=str(ROOT / "python-ctypes"))
        r = subprocess.run([sys.executable, str(ROOT / "examples" / ex)], capture_output=True, text=True,
                           env=env, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert r.stdout.strip()


def _least_squares_run(noise, trainer_kw, steps=300, seed=0):
    """Gradient descent on 0.5 |X w - y|^2 / n (gradients with Gaussian noise of sd `noise`
    per element). Returns (final loss, phases, stats)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 24)).astype(np.float32)
    y = X @ rng.standard_normal(24).astype(np.float32)
    w = np.zeros(24, np.float32)
    nrng = np.random.default_rng(100 + seed)
    tr = ta.PhaseTrainer({"w": (24,)}, **trainer_kw) if trainer_kw is not None else None
    phases = []
    for _ in range(steps):
        info = tr.begin_step() if tr else None
        if info is None or info.needs_backward:
            g = (X.T @ (X @ w - y) / len(X) + noise * nrng.standard_normal(24)).astype(np.float32)
            if tr:
                tr.record("w", g)
                tr.end_step(float(np.mean((X @ w - y) ** 2)))
        else:
            nrng.standard_normal(24)  # keep the noise stream aligned with the baseline
            g = tr.predict("w")
            tr.end_step()  # no loss on a Predict step
        if info:
            phases.append(info.phase)
        w -= 0.02 * g
    return float(np.mean((X @ w - y) ** 2)), phases, (tr.stats() if tr else None)


def test_guard_on_a_smooth_task_enters_prediction_and_keeps_quality():
    base, _, _ = _least_squares_run(0.0, None)
    loss, phases, s = _least_squares_run(0.0, {})
    assert phases.count("predict") >= 90, s
    assert s["runs"] > 5 and s["mean_prediction_error"] < 0.3
    assert loss <= 1.05 * base, (loss, base)


def test_guard_on_pure_noise_keeps_every_backward_pass():
    # Noise 30x the initial gradient scale: no predictor gets within max_error.
    for seed in range(3):
        base, _, _ = _least_squares_run(30.0, None, seed=seed)
        loss, phases, s = _least_squares_run(30.0, {}, seed=seed)
        assert "predict" not in phases and s["last_reason"] == "error_above_threshold"
        # Every check fails; far above max_error the checks are spaced out
        # (gaps of 1, 2, 4, 8, then 16 backward steps), so only a few run.
        assert s["failed_checks"] == s["error_samples"] and 10 <= s["error_samples"] <= 40, s
        assert s["backward_passes"] == s["steps"]
        assert loss == base  # no predicted step: the very same trajectory


def test_reasons_predictors_and_param_stats():
    assert ta.reason_name(3) == "error_above_threshold" and ta.reason_name(99) is None
    assert ta.REASONS[2] == "error_below_threshold" and len(ta.REASONS) == 9
    assert ta.predictor_name(1) == "ema" and ta.predictor_name(5) is None
    tr = ta.PhaseTrainer({"a": (4,), "b": (2, 2)}, predictors=["ema", "wls"], min_checks=1, warmup_steps=2,
                         prediction_horizon=100)
    assert tr.config["predictors"] == 6 and tr.config["schedule"] == ta.SCHEDULES["guarded"]
    steps = [tr.begin_step()]
    assert steps[0].phase == "warmup" and steps[0].reason == "warmup"
    for _ in range(12):
        t = steps[-1].step
        if steps[-1].needs_backward:
            tr.record_gradients({"a": np.full(4, 1.0 + t, np.float32), "b": np.ones((2, 2), np.float32)})
        else:
            tr.predicted_gradients()
        tr.end_step(1.0)
        steps.append(tr.begin_step())
    assert any(s.phase == "predict" and s.reason == "error_below_threshold" for s in steps)
    assert any(s.phase == "correct" and s.reason == "check" for s in steps)
    p = tr.param_stats("a")
    assert p["predictor"] == "wls" and p["rel_error"]["wls"] < 1e-6  # a straight line
    assert np.isnan(p["score"]["last"]) and p["rel_error"]["last"] > 0  # measured, not enabled
    q = tr.param_stats("b")
    assert q["cosine"]["ema"] == pytest.approx(1.0) and q["checks"] >= 3
    with pytest.raises(KeyError, match="unknown parameter"):
        tr.param_stats("zz")
    with pytest.raises(ValueError, match="unknown predictor"):
        ta.PhaseTrainer({"a": (1,)}, predictors=["nope"])
    with pytest.raises(ValueError, match="schedule"):
        ta.PhaseTrainer({"a": (1,)}, schedule="sometimes")
    with pytest.raises(ta.InvalidArgumentError, match="max_error"):
        ta.PhaseTrainer({"a": (1,)}, max_error=-1.0)
    with pytest.raises(ta.InvalidArgumentError, match="predictors"):
        ta.PhaseTrainer({"a": (1,)}, predictors=0)
    s = tr.stats()
    assert s["last_reason"] in ta.REASONS.values() and s["params_wls"] + s["params_ema"] == 2
    # out buffers are checked before the library writes into them
    tr.close()
    tr = ta.PhaseTrainer({"a": (4,)}, preset="seed", warmup_steps=1, full_steps=0)
    tr.begin_step(); tr.record("a", np.ones(4, np.float32)); tr.end_step(1.0)
    assert tr.begin_step().phase == "predict"
    with pytest.raises(TypeError, match="float32"):
        tr.predict("a", np.empty(4, np.float64))
    with pytest.raises(ValueError, match="contiguous"):
        tr.predict("a", np.empty(8, np.float32)[::2])
    with pytest.raises(ValueError, match="read-only"):
        ro = np.empty(4, np.float32); ro.flags.writeable = False
        tr.predict("a", ro)
    with pytest.raises(ta.ShapeMismatchError, match="out has 5 elements"):
        tr.predict("a", np.empty(5, np.float32))
