#!/usr/bin/env bash
# PyTorch TernaryLinear vs nn.Linear f32 in one process (interleaved rounds,
# medians, ratios): forward at batch 1, forward+backward at batch 64 and 256,
# weight memory; then the two examples at full length (quality, memory, time
# per step).
#   scripts/bench-torch.sh            # bench + examples (the char LM takes a while)
#   scripts/bench-torch.sh --bench    # only the layer bench
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export TRITTER_ACCEL_LIB="$PWD/target/release/libtritter_accel.so"
uptime
"$PY" benches/torch_linear.py
if [ "${1:-}" != "--bench" ]; then
    "$PY" examples/torch_digits.py                  # bitnet mode (the default)
    "$PY" examples/torch_digits.py --mode bittorch
    "$PY" examples/torch_char_lm.py
fi
