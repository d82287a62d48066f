#!/usr/bin/env bash
# Builds the Python wheel from this checkout (setup.py runs `cargo build
# --release --lib`; a no-op when target/release is current), checks its tag
# and contents, installs it into a fresh venv and uses it from a directory
# outside the checkout with TRITTER_ACCEL_LIB unset, so only the library
# inside the wheel can load. Also packages a prebuilt library through
# TRITTER_ACCEL_PREBUILT and checks that wheel's contents.
#   scripts/test-wheel.sh [PYTHON]   (PYTHON: builds the wheel; needs setuptools >= 70.1)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${1:-.venv/bin/python}
OUT=$ROOT/target/wheel-test
rm -rf "$OUT" python-ctypes/build
mkdir -p "$OUT/dist" "$OUT/prebuilt"

t0=$(date +%s)
# 1. from source (cargo), no build isolation: the build needs only setuptools
env -u TRITTER_ACCEL_PREBUILT "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT/dist" ./python-ctypes
whl=$(ls "$OUT"/dist/*.whl)
echo "built $(basename "$whl") in $(( $(date +%s) - t0 )) s"
case "$(basename "$whl")" in
    tritter_accel-*-py3-none-linux_*.whl|tritter_accel-*-py3-none-macosx_*.whl|tritter_accel-*-py3-none-win*.whl) ;;
    *) echo "wheel is not platform-tagged: $whl" >&2; exit 1 ;;
esac
"$PY" - "$whl" <<'PYEOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = {"tritter_accel/libtritter_accel.so", "tritter_accel/include/tritter_accel.h",
        "tritter_accel/include/tritter_accel.hpp", "tritter_accel/torch/linear.py", "tritter_accel/_c_api.py"}
missing = need - names
assert not missing, f"missing from the wheel: {sorted(missing)}"
print("wheel contents ok:", len(names), "files")
PYEOF

# 2. a clean venv outside the checkout, no TRITTER_ACCEL_LIB
VENV=$(mktemp -d "${TMPDIR:-/tmp}/tritter-wheel-venv.XXXXXX")
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV/venv"
"$VENV/venv/bin/python" -m pip install -q --disable-pip-version-check "$whl"
rm -rf python-ctypes/build
cd "$VENV"
env -u TRITTER_ACCEL_LIB -u PYTHONPATH "$VENV/venv/bin/python" - "$ROOT" <<'PYEOF'
import os, pathlib, sys
import numpy as np
import tritter_accel as ta
root = pathlib.Path(sys.argv[1]).resolve()
lib = pathlib.Path(ta.library_path()).resolve()
pkg = pathlib.Path(ta.__file__).resolve().parent
assert lib.parent == pkg, f"loaded {lib}, not the wheel's copy in {pkg}"
assert root not in pkg.parents, f"imported from the checkout: {pkg}"
assert ta.version() == ta.__version__, (ta.version(), ta.__version__)
inc = pathlib.Path(ta.get_include())
assert (inc / "tritter_accel.h").is_file() and inc.parent == pkg, inc
w = np.random.default_rng(0).standard_normal((64, 300)).astype(np.float32)
x = np.random.default_rng(1).standard_normal((5, 300)).astype(np.float32)
m = ta.TernaryMatrix.from_float(w)
y = m.matmul(x)
want = x.astype(np.float64) @ m.dequantize().astype(np.float64).T
assert np.allclose(y, want, rtol=1e-4, atol=1e-4)
print(f"clean venv: tritter_accel {ta.__version__} from {lib}: ok")
PYEOF
cd "$ROOT"

# 3. packaging a prebuilt library (what a CI that already built it does)
TRITTER_ACCEL_PREBUILT=$ROOT/target/release/libtritter_accel.so CARGO=/nonexistent/cargo \
    "$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT/prebuilt" ./python-ctypes
"$PY" - "$(ls "$OUT"/prebuilt/*.whl)" <<'PYEOF'
import sys, zipfile
lib = zipfile.ZipFile(sys.argv[1]).read("tritter_accel/libtritter_accel.so")
assert lib[:4] == b"\x7fELF" and b"tritter_ternary_linear_dlpack" in lib
print(f"prebuilt wheel ok ({len(lib)} bytes of library)")
PYEOF
rm -rf python-ctypes/build python-ctypes/*.egg-info
echo "wheel test passed in $(( $(date +%s) - t0 )) s"
