"""tritter_accel.cpu_level(): the detected and active CPU level."""
import os
import subprocess
import sys

import tritter_accel as ta

LEVELS = {"scalar", "avx2", "avx512", "avx512vnni", "neon"}


def _flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def test_cpu_level_names_and_order():
    detected, active = ta.cpu_level()
    assert detected in LEVELS and active in LEVELS
    flags = _flags()
    if flags is not None and "avx2" in flags and "fma" in flags:
        assert detected in {"avx2", "avx512", "avx512vnni"}
    if flags is not None and "avx512f" not in flags:
        assert detected not in {"avx512", "avx512vnni"}
    if "TRITTER_CPU_LEVEL" not in os.environ:
        assert active == detected


def _active_with(level):
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(ta.__file__)))
    path = os.pathsep.join(p for p in (pkg_parent, os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, TRITTER_CPU_LEVEL=level, PYTHONPATH=path)
    out = subprocess.run([sys.executable, "-c", "import tritter_accel as t; print(*t.cpu_level())"],
                         env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_tritter_cpu_level_env_caps_the_active_level():
    detected, active = _active_with("scalar")
    assert active == "scalar" and detected == ta.cpu_level()[0]
    # a level the CPU lacks (or nonsense) is ignored: the detected level runs
    assert _active_with("no-such-level")[1] == detected
    if detected in {"avx2", "scalar"}:
        assert _active_with("avx512vnni")[1] == detected
