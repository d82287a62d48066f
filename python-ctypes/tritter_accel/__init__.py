"""tritter_accel: ternary (BitNet b1.58) kernels through ctypes + NumPy.

The shared library is found via TRITTER_ACCEL_LIB, the package directory, or
the repository's target/{release,debug}. PyTorch integration lives in
`tritter_accel.torch` (imports torch lazily).
"""
from ._lib import (CudaUnavailableError, InvalidArgumentError, InvalidDataError, NonFiniteError,  # noqa: F401
                   NullPointerError, ShapeMismatchError, TritterError, library_path)
from ._lib import OutOfMemoryError  # noqa: F401,E402
from .ternary import (TernaryMatrix, cuda_available, get_num_threads, pack, pack_ternary_weights,  # noqa: F401
                      packed_size, quant_config, quantize, quantize_activations_i8, quantize_weights_absmean,
                      set_num_threads, ternary_matmul, unpack, unpack_ternary_weights, version)

cuda_available_py = cuda_available  # the seed's name

# Domain modules; each defines __all__.
from .vsa import *  # noqa: F401,F403,E402
from .grad import *  # noqa: F401,F403,E402
from .predict import *  # noqa: F401,F403,E402
from .precision import *  # noqa: F401,F403,E402
from .infer import *  # noqa: F401,F403,E402
from .io import *  # noqa: F401,F403,E402
from .cpu import *  # noqa: F401,F403,E402

# Version (equal to the library's; the loader checks) and the C headers a
# wheel ships for C/C++ users.
from ._version import __version__  # noqa: E402,F401


def get_include():
    """Directory of tritter_accel.h / tritter_accel.hpp inside an installed wheel
    (the checkout's include/ otherwise)."""
    import pathlib

    here = pathlib.Path(__file__).resolve().parent
    inc = here / "include"
    return str(inc if inc.is_dir() else here.parent.parent / "include")
