"""tritter_accel.torch imports torch lazily and re-exports its classes."""
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_import_does_not_import_torch():
    code = "import sys, tritter_accel, tritter_accel.torch; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"PYTHONPATH": str(ROOT / "python-ctypes"), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_lazy_exports_resolve():
    pytest.importorskip("torch")
    import tritter_accel.torch as tt

    for name in tt.__all__:
        assert getattr(tt, name).__name__ == name
    with pytest.raises(AttributeError):
        tt.NoSuchThing
