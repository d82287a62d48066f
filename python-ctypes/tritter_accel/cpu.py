"""The CPU instruction-set level the library detected and runs at."""
import ctypes

from ._lib import call, lib

__all__ = ["cpu_level"]


def _name(code):
    n = lib().tritter_cpu_level_name(code)
    return n.decode() if n else f"unknown({code})"


def cpu_level():
    """(detected, active) level names: 'scalar', 'avx2', 'avx512',
    'avx512vnni' or 'neon'. `active` is `detected` unless the environment
    variable TRITTER_CPU_LEVEL (read once, when the library first needs it)
    names a lower level the CPU supports."""
    d = ctypes.c_uint32()
    a = ctypes.c_uint32()
    call("tritter_cpu_level", ctypes.byref(d), ctypes.byref(a))
    return _name(d.value), _name(a.value)
