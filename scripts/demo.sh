#!/usr/bin/env bash
# The main job end to end: build the library and check the header, then
# quantize -> pack -> multiply a 4096 x 4096 layer and print what was measured;
# then the same through the C ABI (examples/quickstart.c) and Python (ctypes).
# Usage: scripts/demo.sh [rows cols batch]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> building libtritter_accel (release) and checking include/tritter_accel.h"
cargo build --release -q
cargo test --release -q --test header >/dev/null
ls -l target/release/libtritter_accel.so target/release/libtritter_accel.a include/tritter_accel.h | awk '{print "    " $5 "\t" $9}'
echo "==> Rust demo"
cargo run --release -q --example demo -- "$@"
echo "==> C (examples/quickstart.c against the header and the shared library)"
mkdir -p target/demo
cc -std=c11 -Wall -Wextra -Iinclude examples/quickstart.c -Ltarget/release -ltritter_accel \
    -Wl,-rpath,"$PWD/target/release" -o target/demo/quickstart
./target/demo/quickstart
echo "==> Python (ctypes + NumPy)"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -c "import numpy" 2>/dev/null || .venv/bin/python -m pip install -q --disable-pip-version-check numpy
PYTHONPATH=python-ctypes TRITTER_ACCEL_LIB="$PWD/target/release/libtritter_accel.so" .venv/bin/python examples/quickstart.py
