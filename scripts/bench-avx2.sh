#!/usr/bin/env bash
# Issue 19's AVX2 parity figures in one run: the Rust report (benches/avx2.rs,
# every CPU level this machine has, one thread, interleaved medians), its NumPy
# twins, f32-activation GEMV against NumPy's f32 GEMV, and gradient compression
# against NumPy. Every part prints the CPU level it ran at.
#   scripts/bench-avx2.sh                # everything (about 10 minutes on 2 busy cores)
#   scripts/bench-avx2.sh quant vsa      # only some groups of benches/avx2.rs
#   TRITTER_CPU_LEVEL=scalar scripts/bench-avx2.sh   # cap the level
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/work/main/.venv/bin/python}
[ -x "$PY" ] || PY=python3
echo "# $(date -u '+%F %T UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg), commit $(git rev-parse --short HEAD)"
cargo bench --bench avx2 -- "$@" --json target/avx2.json
cargo build --release -q
export TRITTER_ACCEL_LIB="$PWD/target/release/libtritter_accel.so" TRITTER_NUM_THREADS=1
"$PY" benches/avx2_numpy.py target/avx2.json
"$PY" benches/matmul_f32_vs_numpy.py --shapes 4096x4096,2048x2048 --threads 1
"$PY" benches/grad_numpy.py
echo "# done $(date -u '+%T UTC'), load: $(cut -d' ' -f1-3 /proc/loadavg)"
