"""Drive a PyTorch model's parameters through the phase trainer.

    helper = PhaseTrainerHelper(model.named_parameters())    # guarded by default
    for x, y in data:
        info = helper.begin_step()                           # BEFORE computing anything
        if info.needs_backward:
            opt.zero_grad(); loss = crit(model(x), y); loss.backward()
            helper.end_step(loss.item())    # checks the predictors against p.grad, records it
        else:
            helper.end_step()               # writes predicted gradients into p.grad (no forward needed)
        opt.step()

With the default (guarded) schedule a Predict step needs neither a forward
nor a backward pass: that is where the wall-clock time is saved. The fixed
schedules (``preset="seed"`` / ``"conservative"`` with ``adaptive_phases``)
need the loss of every step, so run the forward pass (under ``no_grad``)
there and pass its loss.

Parameters without ``requires_grad`` are skipped. CPU float32 gradients are
read and written in place (``Tensor.numpy()`` shares memory); other devices
and dtypes are copied through CPU float32.
"""
import time

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
        """Starts a step; ``.needs_backward`` says whether to run forward + ``loss.backward()``."""
        self._t0 = time.perf_counter()
        self.info = self.trainer.begin_step()
        return self.info

    @property
    def needs_backward(self):
        return self.info.needs_backward

    def end_step(self, loss=None):
        """Records each ``p.grad`` (backward steps: the loss is required) or writes
        the predicted gradient into it (Predict steps: the loss may be None), then
        ends the step. The measured time covers begin_step .. end_step (forward,
        backward, recording or prediction; not the optimizer step that follows)."""
        import torch

        if self.info is None:
            raise RuntimeError("end_step without begin_step")
        if self.info.needs_backward:
            if loss is None:
                raise ValueError("a backward step needs its loss")
            for name, p in self.params:
                g = p.grad
                if g is None:
                    raise RuntimeError(f"parameter {name} has no .grad: call loss.backward() in this step")
                if g.is_cpu and g.dtype == torch.float32 and g.is_contiguous():
                    self.trainer.record_address(name, g.data_ptr(), g.numel())   # no copy
                else:
                    g = g.detach().to("cpu", torch.float32).contiguous()
                    self.trainer.record_address(name, g.data_ptr(), g.numel())
        else:
            for name, p in self.params:
                g = p.grad
                if (g is not None and g.shape == p.shape and g.is_cpu
                        and g.dtype == torch.float32 and g.is_contiguous()):
                    self.trainer.predict_address(name, g.data_ptr(), g.numel())   # in place, no copy
                else:
                    pred = torch.from_numpy(self.trainer.predict(name))
                    if g is None or g.shape != p.shape:
                        p.grad = pred.to(device=p.device, dtype=p.dtype)
                    else:
                        g.copy_(pred)
        seconds = time.perf_counter() - self._t0 if self.time_steps else None
        self.trainer.end_step(None if loss is None else float(loss), seconds)
        self.info = None

    def stats(self):
        return self.trainer.stats()

    def param_stats(self, name):
        return self.trainer.param_stats(name)

    def close(self):
        self.trainer.close()
