"""Finding, loading and checking the tritter_accel shared library.

The library is searched, in order, at:
  1. the path in the environment variable TRITTER_ACCEL_LIB,
  2. the package directory (a wheel or install copies it there),
  3. the repository's target/release, then target/debug (a source checkout).
It is loaded lazily on first use; its ABI version must equal the one the
bindings were generated for, or ImportError is raised.
"""
import ctypes
import os
import pathlib
import sys
import threading

from . import _c_api as C

_LIB = None
_LOCK = threading.Lock()

_NAMES = {"linux": "libtritter_accel.so", "darwin": "libtritter_accel.dylib", "win32": "tritter_accel.dll"}


class TritterError(RuntimeError):
    """A call into tritter_accel failed. `status` is the numeric status,
    `status_name` its name, and the message names the offending argument."""

    def __init__(self, status, message):
        self.status = status
        self.status_name = C.STATUS_NAMES.get(status, "TRITTER_UNKNOWN_STATUS")
        super().__init__(f"{self.status_name}: {message}")


class NullPointerError(TritterError, ValueError):
    pass


class InvalidArgumentError(TritterError, ValueError):
    pass


class ShapeMismatchError(TritterError, ValueError):
    pass


class InvalidDataError(TritterError, ValueError):
    pass


class NonFiniteError(TritterError, ValueError):
    pass


class CudaUnavailableError(TritterError):
    pass


class OutOfMemoryError(TritterError, MemoryError):
    """An allocation sized by the arguments was refused; nothing changed."""


_ERRORS = {
    C.TRITTER_ERR_NULL_POINTER: NullPointerError,
    C.TRITTER_ERR_INVALID_ARGUMENT: InvalidArgumentError,
    C.TRITTER_ERR_SHAPE_MISMATCH: ShapeMismatchError,
    C.TRITTER_ERR_BUFFER_TOO_SMALL: ShapeMismatchError,
    C.TRITTER_ERR_SIZE_OVERFLOW: InvalidArgumentError,
    C.TRITTER_ERR_NON_FINITE: NonFiniteError,
    C.TRITTER_ERR_INVALID_DATA: InvalidDataError,
    C.TRITTER_ERR_UNSUPPORTED_DTYPE: InvalidArgumentError,
    C.TRITTER_ERR_CUDA_UNAVAILABLE: CudaUnavailableError,
    C.TRITTER_ERR_OUT_OF_MEMORY: OutOfMemoryError,
}


def _candidates():
    name = _NAMES.get(sys.platform, "libtritter_accel.so")
    env = os.environ.get("TRITTER_ACCEL_LIB")
    if env:
        yield pathlib.Path(env)
        return
    here = pathlib.Path(__file__).resolve().parent
    yield here / name
    repo = here.parent.parent
    for profile in ("release", "debug"):
        yield repo / "target" / profile / name


def lib():
    """The loaded library with every argtypes/restype declared."""
    global _LIB
    if _LIB is not None:
        return _LIB
    with _LOCK:
        if _LIB is not None:
            return _LIB
        tried = []
        for path in _candidates():
            tried.append(str(path))
            if path.is_file():
                handle = C.declare(ctypes.CDLL(str(path)))
                abi = handle.tritter_abi_version()
                if abi != C.TRITTER_ABI_VERSION:
                    raise ImportError(
                        f"{path} has ABI version {abi}, these bindings need {C.TRITTER_ABI_VERSION}; "
                        "rebuild the library or the bindings"
                    )
                _check_version(handle, path)
                _LIB = handle
                return _LIB
        raise ImportError(
            "tritter_accel shared library not found; build it with `cargo build --release` "
            "or set TRITTER_ACCEL_LIB. Tried: " + ", ".join(tried)
        )


def _check_version(handle, path):
    """The package and the library must be the same release (a wheel ships
    them together; a stale TRITTER_ACCEL_LIB or checkout build is caught here)."""
    from ._version import __version__

    ver = handle.tritter_version().decode()
    if ver != __version__:
        raise ImportError(f"{path} is tritter_accel {ver}, this Python package is {__version__}; "
                          "rebuild the library or reinstall the package")


def library_path():
    """Path of the loaded library."""
    return lib()._name


def check(status):
    """Raises the matching TritterError if `status` is not TRITTER_OK."""
    if status != C.TRITTER_OK:
        msg = lib().tritter_last_error()
        cls = _ERRORS.get(status, TritterError)
        raise cls(status, msg.decode("utf-8", "replace") if msg else "")


def call(name, *args):
    """Calls export `name` and raises on a non-OK status."""
    check(getattr(lib(), name)(*args))
