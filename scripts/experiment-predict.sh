#!/usr/bin/env bash
# Phase-trainer experiment (digits MLP + stdlib char-LM, baseline / default /
# conservative, 3 seeds). Writes benches/results/predict.md.
#   scripts/experiment-predict.sh            # default size (a few minutes on 2 cores)
#   scripts/experiment-predict.sh --full     # larger LM, 2000 steps
#   scripts/experiment-predict.sh --smoke    # seconds
# Uses .venv/bin/python if present (needs numpy, torch, scikit-learn:
# python-ctypes/requirements-test.txt), and builds the release library first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
cargo build --release --quiet
exec "$PY" experiments/phase_trainer/run.py "$@"
