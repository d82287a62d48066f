"""Gradient prediction that checks itself: the phase trainer.

Per step: ``begin_step()`` says *before* you compute gradients whether a
backward pass is needed (and why); then ``record_gradients`` (backward steps;
every predictor is checked against the real gradient) or
``predicted_gradients`` (Predict steps; the forward pass may be skipped too);
then ``end_step(loss)``.

Presets: ``"default"`` (guarded: predicts only while the measured prediction
error stays below ``max_error``), ``"seed"`` (the seed's fixed schedule) and
``"conservative"`` (a cautious fixed schedule).
"""
import ctypes
import math
from dataclasses import dataclass

import numpy as np

from . import _c_api as C
from ._arrays import carray, out_array, ptr
from ._lib import ShapeMismatchError, call, lib
from ._managed import Handle, new_handle

__all__ = ["PhaseTrainer", "PhaseStep", "phase_config", "create_trainer", "PHASES", "REASONS",
           "PREDICTORS", "SCHEDULES", "reason_name", "predictor_name"]

PHASES = {C.TRITTER_PHASE_WARMUP: "warmup", C.TRITTER_PHASE_FULL: "full",
          C.TRITTER_PHASE_PREDICT: "predict", C.TRITTER_PHASE_CORRECT: "correct"}
SCHEDULES = {"guarded": C.TRITTER_SCHEDULE_GUARDED, "fixed": C.TRITTER_SCHEDULE_FIXED}
PREDICTORS = {"last": C.TRITTER_PREDICTOR_LAST, "ema": C.TRITTER_PREDICTOR_EMA, "wls": C.TRITTER_PREDICTOR_WLS}

_FIELDS = tuple(f for f, _ in C.tritter_phase_config_t._fields_)
_PRESETS = {"default": "tritter_phase_config_default", "seed": "tritter_phase_config_seed",
            "conservative": "tritter_phase_config_conservative"}


def reason_name(code):
    """The name of a reason code (``"error_above_threshold"``, ...), or None if unknown."""
    s = lib().tritter_phase_reason_name(int(code))
    return s.decode() if s else None


def predictor_name(code):
    """The name of a predictor code (``"last"``, ``"ema"``, ``"wls"``), or None if unknown."""
    s = lib().tritter_phase_predictor_name(int(code))
    return s.decode() if s else None


REASONS = {c: reason_name(c) for c in range(9)}


def _predictor_mask(v):
    if isinstance(v, str):
        v = [v]
    if isinstance(v, (list, tuple, set, frozenset)):
        mask = 0
        for name in v:
            if name not in PREDICTORS:
                raise ValueError(f"unknown predictor {name!r}; known: {', '.join(PREDICTORS)}")
            mask |= 1 << PREDICTORS[name]
        return mask
    return int(v)


def phase_config(preset="default", **overrides):
    """A tritter_phase_config_t: a preset ('default' = guarded, 'seed', 'conservative'),
    then field overrides. ``schedule`` takes 'guarded'/'fixed'; ``predictors`` takes
    a mask or names (``["ema", "wls"]``)."""
    if preset not in _PRESETS:
        raise ValueError(f"preset must be one of {', '.join(_PRESETS)}, got {preset!r}")
    c = C.tritter_phase_config_t()
    call(_PRESETS[preset], ctypes.byref(c))
    for k, v in overrides.items():
        if k not in _FIELDS:
            raise TypeError(f"unknown phase-trainer setting {k!r}; known: {', '.join(_FIELDS)}")
        if k == "schedule" and isinstance(v, str):
            if v not in SCHEDULES:
                raise ValueError(f"schedule must be 'guarded' or 'fixed', got {v!r}")
            v = SCHEDULES[v]
        if k == "predictors":
            v = _predictor_mask(v)
        setattr(c, k, v)
    return c


@dataclass
class PhaseStep:
    """What begin_step decided: the phase, whether to back-propagate, and why."""
    step: int
    phase: str
    needs_backward: bool
    reason: str


class PhaseTrainer(Handle):
    """Phase trainer over named parameters of any shape.

    ``shapes``: a dict name -> shape, or a list of (name, shape) pairs (the
    seed's form), or a list of shapes (names become "0", "1", ...).
    """

    _free = "tritter_phase_trainer_free"

    def __init__(self, shapes, preset="default", **config):
        cfg = phase_config(preset, **config)
        super().__init__(new_handle("tritter_phase_trainer_new", ctypes.byref(cfg)))
        if isinstance(shapes, dict):
            items = list(shapes.items())
        else:
            items = [(s[0], s[1]) if len(s) == 2 and isinstance(s[0], str) else (str(i), s)
                     for i, s in enumerate(shapes)]
        self.names = []
        self.shapes = {}
        self.sizes = {}
        self._ids = {}
        for name, shape in items:
            shape = tuple(int(d) for d in shape)
            dims = (ctypes.c_size_t * max(len(shape), 1))(*shape)
            pid = ctypes.c_size_t()
            call("tritter_phase_trainer_add_param", self.raw, dims, len(shape), ctypes.byref(pid))
            self._ids[name] = pid.value
            self.names.append(name)
            self.shapes[name] = shape
            self.sizes[name] = int(np.prod(shape, dtype=np.int64))
        self.config = {k: getattr(cfg, k) for k in _FIELDS}
        self.current = None

    def begin_step(self):
        """Starts a step; returns PhaseStep(step, phase, needs_backward, reason)."""
        info = C.tritter_step_info_t()
        call("tritter_phase_trainer_begin_step", self.raw, ctypes.byref(info))
        self.current = PhaseStep(info.step, PHASES[info.phase], bool(info.needs_backward),
                                 REASONS.get(info.reason, str(info.reason)))
        return self.current

    def _id(self, name):
        try:
            return self._ids[name]
        except KeyError:
            raise KeyError(f"unknown parameter {name!r}; registered: {', '.join(self.names)}") from None

    def record(self, name, grad):
        """Records parameter ``name``'s real gradient (any array of its size; copied to
        contiguous float32 if it is not already)."""
        pid = self._id(name)
        g = carray(grad, np.float32)
        call("tritter_phase_trainer_record", self.raw, pid, ptr(g), g.size)

    def record_address(self, name, address, size):
        """Records parameter ``name``'s gradient from raw memory: ``size`` float32 values at
        ``address`` (e.g. a CPU float32 contiguous ``torch.Tensor.data_ptr()``), which must
        stay valid for the call. The library checks ``size`` against the parameter."""
        call("tritter_phase_trainer_record", self.raw, self._id(name), int(address) or None, int(size))

    def predict_address(self, name, address, size):
        """Writes parameter ``name``'s predicted gradient to raw memory (``size`` float32
        values at ``address``, at least the parameter's element count)."""
        call("tritter_phase_trainer_predict", self.raw, self._id(name), int(address) or None, int(size))

    def record_gradients(self, grads):
        """Records real gradients: a dict name -> array, or a list in registration order."""
        items = grads.items() if isinstance(grads, dict) else zip(self.names, grads)
        for name, g in items:
            self.record(name, g)

    def predict(self, name, out=None):
        """Writes parameter ``name``'s predicted gradient into ``out`` (a C-contiguous
        float32 array with the parameter's element count; allocated if None) and returns it."""
        pid = self._id(name)
        if out is None:
            out = np.empty(self.shapes[name], np.float32)
        out_array(out, np.float32)
        if out.size != self.sizes[name]:
            raise ShapeMismatchError(C.TRITTER_ERR_SHAPE_MISMATCH,
                                     f"out has {out.size} elements, parameter {name!r} has {self.sizes[name]}")
        call("tritter_phase_trainer_predict", self.raw, pid, ptr(out), out.size)
        return out

    def predicted_gradients(self):
        """Predicted gradients for every parameter (a dict name -> array) in a Predict step."""
        return {n: self.predict(n) for n in self.names}

    def end_step(self, loss=None, seconds=None):
        """Ends the step with its loss (None = not computed: allowed on Predict steps of
        the guarded schedule) and, optionally, its measured wall time."""
        loss = math.nan if loss is None else float(loss)
        call("tritter_phase_trainer_end_step", self.raw, ctypes.c_float(loss),
             ctypes.c_double(-1.0 if seconds is None else float(seconds)))
        self.current = None

    def step(self, closure):
        """One whole step, the seed's API: ``closure(needs_backward)`` runs the
        forward pass (and, if asked, the backward pass) and returns ``(loss,
        gradients)`` (gradients None when not needs_backward). Returns a dict
        with phase, needs_backward, reason, gradients (recorded or predicted) and stats."""
        info = self.begin_step()
        loss, grads = closure(info.needs_backward)
        if info.needs_backward:
            self.record_gradients(grads)
            out = grads if isinstance(grads, dict) else dict(zip(self.names, grads))
        else:
            out = self.predicted_gradients()
        self.end_step(loss)
        return {"step": info.step, "phase": info.phase, "needs_backward": info.needs_backward,
                "reason": info.reason, "gradients": out, "stats": self.stats()}

    def stats(self):
        """Counters and measurements (a dict; ``last_reason`` as a name)."""
        s = C.tritter_phase_stats_t()
        call("tritter_phase_trainer_stats", self.raw, ctypes.byref(s))
        d = {f: getattr(s, f) for f, _ in C.tritter_phase_stats_t._fields_}
        d["last_reason"] = REASONS.get(d["last_reason"], str(d["last_reason"]))
        return d

    def param_stats(self, name):
        """Parameter ``name``'s measurements at the last check: the predictor it uses,
        and per predictor the relative error, cosine and score (dicts by predictor name)."""
        s = C.tritter_phase_param_stats_t()
        call("tritter_phase_trainer_param_stats", self.raw, self._id(name), ctypes.byref(s))
        per = lambda k: {p: getattr(s, f"{k}_{p}") for p in PREDICTORS}  # noqa: E731
        return {"predictor": predictor_name(s.predictor), "checks": s.checks,
                "rel_error": per("rel_error"), "cosine": per("cosine"), "score": per("score"),
                "run_score": per("run_score")}


def create_trainer(param_shapes, **config):
    """The seed's constructor: ``create_trainer({"w": (768, 768)}, warmup_steps=10, ...)``;
    pass ``preset="seed"`` for the seed's fixed schedule, ``preset="conservative"`` for
    the cautious one (the default is the guarded schedule)."""
    preset = config.pop("preset", "default")
    return PhaseTrainer(param_shapes, preset=preset, **config)
