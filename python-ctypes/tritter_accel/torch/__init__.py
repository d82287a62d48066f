"""PyTorch integration. Importing this package does not import torch; the
classes below import it when they are constructed or called.

* `comm_hook`: a DDP communication hook that compresses each gradient bucket
  with one collective per call (`CompressionHookState`, `compression_hook`),
  with the library's compressors (`compressors`) and torch baselines.
* `phase`: `PhaseTrainerHelper`, which drives a model's parameters through the
  gradient-prediction phase trainer.
* `linear`, `ops`, `convert`: `TernaryLinear` (drop-in `nn.Linear` with
  ternary weights), `TernaryLinearInference`, the `tritter::` custom ops,
  `ternarize`, `save_packed` / `load_packed` (docs/torch.md).
"""


def __getattr__(name):
    # Lazy re-exports: `from tritter_accel.torch import compression_hook` works
    # without importing torch until the name is used.
    from importlib import import_module

    where = {
        "CompressionHookState": "comm_hook",
        "compression_hook": "comm_hook",
        "Compressor": "comm_hook",
        "Identity": "comm_hook",
        "TorchTopK": "comm_hook",
        "LibPayload": "compressors",
        "LibSketch": "compressors",
        "LibFetchSGD": "compressors",
        "LibProjection": "compressors",
        "PhaseTrainerHelper": "phase",
        # drop-in ternary layers, custom ops, conversion (linear.py, ops.py, convert.py)
        "TernaryLinear": "linear",
        "TernaryLinearInference": "linear",
        "ternarize": "convert",
        "save_packed": "convert",
        "load_packed": "convert",
        "linear_weight_bytes": "convert",
    }
    if name in where:
        return getattr(import_module(f"{__name__}.{where[name]}"), name)
    raise AttributeError(name)


__all__ = ["CompressionHookState", "compression_hook", "Compressor", "Identity", "TorchTopK", "LibPayload",
           "LibSketch", "LibFetchSGD", "LibProjection", "PhaseTrainerHelper",
           "TernaryLinear", "TernaryLinearInference", "ternarize", "save_packed", "load_packed", "linear_weight_bytes"]
