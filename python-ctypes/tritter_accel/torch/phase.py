"""Drive a PyTorch model's parameters through the phase trainer.

    helper = PhaseTrainerHelper(model.parameters())          # or named_parameters()
    for x, y in data:
        info = helper.begin_step()                           # BEFORE computing gradients
        if info.needs_backward:
            opt.zero_grad(); loss = crit(model(x), y); loss.backward()
        else:
            with torch.no_grad(): loss = crit(model(x), y)   # forward only (for the loss)
        helper.end_step(loss.item())   # records p.grad, or writes predicted gradients into p.grad
        opt.step()

Parameters without ``requires_grad`` are skipped. CPU float32 gradients are
passed without copies (``Tensor.numpy()`` shares memory); other devices and
dtypes are copied through CPU float32.
"""
import time

import numpy as np

from ..predict import PhaseTrainer

__all__ = ["PhaseTrainerHelper"]


class PhaseTrainerHelper:
    """Wraps a :class:`tritter_accel.PhaseTrainer` around torch parameters."""

    def __init__(self, params, preset="default", time_steps=True, **config):
        import torch  # noqa: F401  (imported lazily: the package works without torch)

        params = list(params)
        if params and isinstance(params[0], tuple):
            named = [(n, p) for n, p in params if p.requires_grad]
        else:
            named = [(str(i), p) for i, p in enumerate(params) if p.requires_grad]
        if not named:
            raise ValueError("no parameters with requires_grad")
        self.params = named
        self.trainer = PhaseTrainer({n: tuple(p.shape) for n, p in named}, preset=preset, **config)
        self.time_steps = time_steps
        self.info = None
        self._t0 = None

    def begin_step(self):
        """Starts a step; ``.needs_backward`` says whether to call ``loss.backward()``."""
        self._t0 = time.perf_counter()
        self.info = self.trainer.begin_step()
        return self.info

    @property
    def needs_backward(self):
        return self.info.needs_backward

    def end_step(self, loss):
        """Records real gradients (backward steps) or writes the predicted
        gradients into each ``p.grad`` (Predict steps), then ends the step.
        The measured time covers begin_step .. end_step (forward, backward,
        recording or prediction; not the optimizer step that follows)."""
        import torch

        if self.info is None:
            raise RuntimeError("end_step without begin_step")
        if self.info.needs_backward:
            for name, p in self.params:
                if p.grad is None:
                    raise RuntimeError(f"parameter {name} has no .grad: call loss.backward() in this step")
                g = p.grad.detach()
                if g.device.type != "cpu" or g.dtype != torch.float32:
                    g = g.to("cpu", torch.float32)
                self.trainer.record(name, g.contiguous().numpy())
        else:
            for name, p in self.params:
                pred = self.trainer.predict(name)
                t = torch.from_numpy(pred)
                if p.grad is None or p.grad.shape != p.shape:
                    p.grad = t.to(device=p.device, dtype=p.dtype)
                else:
                    p.grad.copy_(t)
        seconds = time.perf_counter() - self._t0 if self.time_steps else None
        self.trainer.end_step(float(loss), seconds)
        self.info = None

    def stats(self):
        return self.trainer.stats()

    def close(self):
        self.trainer.close()
