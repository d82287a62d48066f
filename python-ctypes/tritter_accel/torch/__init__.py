"""PyTorch integration. Importing this package does not import torch; the
classes below import it when they are constructed or called.

* `comm_hook`: a DDP communication hook that compresses each gradient bucket
  with one collective per call (`CompressionHookState`, `compression_hook`),
  with the library's compressors (`compressors`) and torch baselines.
* `phase`: `PhaseTrainerHelper`, which drives a model's parameters through the
  gradient-prediction phase trainer.
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
    }
    if name in where:
        return getattr(import_module(f"{__name__}.{where[name]}"), name)
    raise AttributeError(name)


__all__ = ["CompressionHookState", "compression_hook", "Compressor", "Identity", "TorchTopK", "LibPayload",
           "LibSketch", "LibFetchSGD", "LibProjection", "PhaseTrainerHelper"]
