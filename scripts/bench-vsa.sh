#!/usr/bin/env bash
# VSA benchmarks: the criterion bench (Rust, against the dense reference and the
# scalar kernel) and its NumPy twin in one run, printing NumPy / tritter ratios.
#   scripts/bench-vsa.sh            # everything (about 5 minutes on 2 cores)
#   TRITTER_BENCH_WALL=1 scripts/bench-vsa.sh   # wall-clock instead of process CPU time
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --bench vsa
cargo build --release -q
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 TRITTER_NUM_THREADS=1 \
    TRITTER_ACCEL_LIB="$PWD/target/release/libtritter_accel.so" "$PY" benches/vsa_numpy.py
