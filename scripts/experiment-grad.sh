#!/usr/bin/env bash
# Gradient-compression experiment (DDP over 2 gloo processes): writes
# benches/results/grad_experiment.md. Without flags it runs the full protocol
# (char LM 2000 steps + digits 30 epochs, 3 seeds, the whole method matrix),
# which takes many hours on 2 cores; see --help for steps/seeds/methods flags.
# Uses .venv/bin/python when present (torch and scikit-learn required) and
# builds the release library first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && PY=.venv/bin/python
cargo build --release --quiet
exec "$PY" -m experiments.grad_compression.run "$@"
