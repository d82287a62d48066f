"""Deterministic gradient prediction: the phase trainer.

Per step: ``begin_step()`` says *before* you compute gradients whether a
backward pass is needed; then ``record_gradients`` (backward steps) or
``predicted_gradients`` (Predict steps); then ``end_step(loss)``.
"""
import ctypes
from dataclasses import dataclass

import numpy as np

from . import _c_api as C
from ._arrays import carray, out_array, ptr
from ._lib import call
from ._managed import Handle, new_handle

__all__ = ["PhaseTrainer", "PhaseStep", "phase_config", "create_trainer", "PHASES"]

PHASES = {C.TRITTER_PHASE_WARMUP: "warmup", C.TRITTER_PHASE_FULL: "full",
          C.TRITTER_PHASE_PREDICT: "predict", C.TRITTER_PHASE_CORRECT: "correct"}

_FIELDS = ("warmup_steps", "full_steps", "predict_steps", "correct_every", "adaptive_phases",
           "loss_increase_threshold", "history_window", "prediction_horizon", "history_decay",
           "residual_threshold", "history_bf16")


def phase_config(preset="default", **overrides):
    """A tritter_phase_config_t: preset 'default' or 'conservative', then field overrides."""
    c = C.tritter_phase_config_t()
    if preset == "default":
        call("tritter_phase_config_default", ctypes.byref(c))
    elif preset == "conservative":
        call("tritter_phase_config_conservative", ctypes.byref(c))
    else:
        raise ValueError(f"preset must be 'default' or 'conservative', got {preset!r}")
    for k, v in overrides.items():
        if k not in _FIELDS:
            raise TypeError(f"unknown phase-trainer setting {k!r}; known: {', '.join(_FIELDS)}")
        setattr(c, k, v)
    return c


@dataclass
class PhaseStep:
    """What begin_step decided."""
    step: int
    phase: str
    needs_backward: bool


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
        self._ids = {}
        for name, shape in items:
            shape = tuple(int(d) for d in shape)
            dims = (ctypes.c_size_t * max(len(shape), 1))(*shape)
            pid = ctypes.c_size_t()
            call("tritter_phase_trainer_add_param", self.raw, dims, len(shape), ctypes.byref(pid))
            self._ids[name] = pid.value
            self.names.append(name)
            self.shapes[name] = shape
        self.config = {k: getattr(cfg, k) for k in _FIELDS}
        self.current = None

    def begin_step(self):
        """Starts a step; returns PhaseStep(step, phase, needs_backward)."""
        info = C.tritter_step_info_t()
        call("tritter_phase_trainer_begin_step", self.raw, ctypes.byref(info))
        self.current = PhaseStep(info.step, PHASES[info.phase], bool(info.needs_backward))
        return self.current

    def record(self, name, grad):
        g = carray(grad, np.float32)
        if g.shape != self.shapes[name] and g.size == int(np.prod(self.shapes[name])):
            g = g.reshape(self.shapes[name])
        call("tritter_phase_trainer_record", self.raw, self._ids[name], ptr(g), g.size)

    def record_gradients(self, grads):
        """Records real gradients: a dict name -> array, or a list in registration order."""
        items = grads.items() if isinstance(grads, dict) else zip(self.names, grads)
        for name, g in items:
            self.record(name, g)

    def predict(self, name, out=None):
        shape = self.shapes[name]
        if out is None:
            out = np.empty(shape, np.float32)
        out_array(out, np.float32)  # its length is checked by the library
        call("tritter_phase_trainer_predict", self.raw, self._ids[name], ptr(out), out.size)
        return out

    def predicted_gradients(self):
        """Predicted gradients for every parameter (a dict name -> array) in a Predict step."""
        return {n: self.predict(n) for n in self.names}

    def end_step(self, loss, seconds=None):
        """Ends the step with its loss and (optionally) its measured wall time."""
        call("tritter_phase_trainer_end_step", self.raw, ctypes.c_float(float(loss)),
             ctypes.c_double(-1.0 if seconds is None else float(seconds)))
        self.current = None

    def step(self, closure):
        """One whole step, the seed's API: ``closure(needs_backward)`` runs the
        forward pass (and, if asked, the backward pass) and returns ``(loss,
        gradients)`` (gradients None when not needs_backward). Returns a dict
        with phase, needs_backward, gradients (recorded or predicted) and stats."""
        info = self.begin_step()
        loss, grads = closure(info.needs_backward)
        if info.needs_backward:
            self.record_gradients(grads)
            out = grads if isinstance(grads, dict) else dict(zip(self.names, grads))
        else:
            out = self.predicted_gradients()
        self.end_step(loss)
        return {"step": info.step, "phase": info.phase, "needs_backward": info.needs_backward,
                "gradients": out, "stats": self.stats()}

    def stats(self):
        s = C.tritter_phase_stats_t()
        call("tritter_phase_trainer_stats", self.raw, ctypes.byref(s))
        return {f: getattr(s, f) for f, _ in C.tritter_phase_stats_t._fields_}


def create_trainer(param_shapes, **config):
    """The seed's constructor: ``create_trainer({"w": (768, 768)}, warmup_steps=10, ...)``;
    pass ``preset="conservative"`` for the cautious schedule."""
    preset = config.pop("preset", "default")
    return PhaseTrainer(param_shapes, preset=preset, **config)
