#!/usr/bin/env bash
# Compressed DDP at more ranks (issue: compression that still compresses at 8, 64
# and 1000 ranks). Runs the char-LM experiment with the global batch held at 64:
#   * 4 gloo ranks: uncompressed, the two-phase region exchange of quantized top-k
#     with 3-bit levels at 32x and 100x, PowerSGD rank 4 (one bucket) - 3 seeds;
#   * 8 gloo ranks: the same and 24x, seeds from $RANKS_SEEDS8 (default 0,1,2);
# then the simulator (traffic and step time for N up to 1024, cross-checked
# against the runs' metered traffic). Tables: benches/results/grad_ranks_{4,8}.md,
# benches/results/grad_simulation.md. Several hours on 2 cores; flags after the
# script name go to every run.py call (e.g. --steps 300 for a quick look).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && PY=.venv/bin/python
cargo build --release --quiet
export TRITTER_ACCEL_LIB="${TRITTER_ACCEL_LIB:-$PWD/target/release/libtritter_accel.so}"
RAW=benches/results/grad_ranks.jsonl
METHODS="none,lib-rqtopk:32:3@ef,lib-rqtopk:100:3@ef,powersgd:4@ef"
"$PY" -m experiments.grad_compression.run --tasks charlm --world 4 --methods "$METHODS" \
    --seeds "${RANKS_SEEDS4:-0,1,2}" --raw "$RAW" --out benches/results/grad_ranks_4.md "$@"
"$PY" -m experiments.grad_compression.run --tasks charlm --world 8 --methods "$METHODS,lib-rqtopk:24:3@ef" \
    --seeds "${RANKS_SEEDS8:-0,1,2}" --raw "$RAW" --out benches/results/grad_ranks_8.md "$@"
"$PY" -m experiments.grad_compression.simulate --regions lib-rqtopk:32:3,lib-rqtopk:24:3,lib-rqtopk:100:3 \
    --check "$RAW" --out benches/results/grad_simulation.md
