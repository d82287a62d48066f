#!/usr/bin/env bash
# Phase-trainer experiment: baseline / default (guarded) / the seed's fixed
# schedule on digits (minibatch, full batch, fine-tuning) and the stdlib char
# LM (batch 32 and 512), 3 seeds. Writes benches/results/predict.md.
#   scripts/experiment-predict.sh                       # 20-60 minutes on 2 shared cores
#   scripts/experiment-predict.sh --tasks digits-full   # one task
#   scripts/experiment-predict.sh --smoke               # seconds
# The offline predictability check (how well any predictor could do) is
# `python experiments/phase_trainer/predictability.py [--lm]`.
# Uses .venv/bin/python if present (needs numpy, torch, scikit-learn:
# python-ctypes/requirements-test.txt), and builds the release library first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python
cargo build --release --quiet
exec "$PY" experiments/phase_trainer/run.py "$@"
