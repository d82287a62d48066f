#!/usr/bin/env bash
# The engine on a random checkpoint of BitNet-2B-4T's shape (hidden 2560, 30 layers,
# intermediate 6912, 20/5 heads, vocab 128256), written once to /tmp: prefill of a
# 128-token prompt, decode tokens/s at context 128 and 1024, bytes read per token
# against the measured read bandwidth, transformers bf16 on the same CPU, 1 and 2
# threads, memory, int8 lm_head. Prints medians and ratios (benches/engine.py).
#   scripts/bench-engine.sh [--layers N] [--no-hf] [--rounds R] [--threads 1,2]
# Needs ~1.3 GB of disk in /tmp and ~8 GB of memory with transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export TRITTER_ACCEL_LIB="$PWD/target/release/libtritter_accel.so" TORCHDYNAMO_DISABLE=1
export PYTHONPATH="$PWD/python-ctypes${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benches/engine.py "$@"
