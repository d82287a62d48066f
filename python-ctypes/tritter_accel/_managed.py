"""Base class for objects that own a C handle."""
import ctypes

from ._lib import lib


class Handle:
    """Owns one C handle; frees it with `_free` (the export's name) on
    close(), on leaving a `with` block, or when garbage-collected."""

    _free = None  # name of the tritter_*_free export

    def __init__(self, raw):
        if not raw:
            raise ValueError("NULL handle")
        self._raw = raw

    @property
    def raw(self):
        if self._raw is None:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._raw

    def close(self):
        raw, self._raw = getattr(self, "_raw", None), None
        if raw:
            getattr(lib(), self._free)(ctypes.c_void_p(raw))

    @property
    def closed(self):
        return self._raw is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def new_handle(export, *args):
    """Calls a constructor export whose last argument is `T **out`; returns the raw pointer."""
    from ._lib import check

    out = ctypes.c_void_p()
    check(getattr(lib(), export)(*args, ctypes.byref(out)))
    return out.value
