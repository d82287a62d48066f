#!/usr/bin/env bash
# Ternary matmul bench report: our kernels, the scalar reference, ndarray,
# NumPy f32, PyTorch bf16 (if importable) and, if GGML_HARNESS is set, ggml's
# TQ2_0 / TQ1_0 mul_mat, and, if BITNET_HARNESS is set, bitnet.cpp's I2_S
# kernel timed in one process beside ours; prints medians and ratios.
#
#   scripts/bench-matmul.sh [--full]
#   scripts/bench-matmul.sh --threads   # batch-1 scaling: 1 vs 2 threads, idle and
#                                       # beside 1 and 2 busy loops it starts
#
# Environment:
#   PYTHON        interpreter with NumPy (and optionally torch); default python3
#   GGML_HARNESS  a ggml mul_mat timing binary built OUTSIDE this repo, called as
#                 `$GGML_HARNESS TYPE ROWS COLS BATCH THREADS REPS` (TYPE tq2_0 or
#                 tq1_0) and printing the median µs; build it from our source
#                 (benches/peers/ggml_harness.c) and a ggml checkout you obtain
#                 separately with scripts/build-ggml-harness.sh. Skipped when unset.
#   BITNET_HARNESS  bitnet.cpp I2_S vs this library in one process, built OUTSIDE this
#                 repo by scripts/build-bitnet-harness.sh from a microsoft/BitNet
#                 checkout you obtain; called as `$BITNET_HARNESS ROWS COLS BATCH
#                 THREADS ROUNDS`, it prints its own lines (bitnet_i2s, tritter_*,
#                 read_floor_2bit of the I2_S bytes), which the report shows as a
#                 separate "same process" table. Skipped when unset.
# The default run takes a few minutes; --full sweeps every shape, batch 1/8/64/256.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--threads" ]]; then
  cargo build --release --example bench_matmul >&2
  echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(target/release/examples/bench_matmul --describe 2>&1); $(uptime | sed 's/.*load/load/')"
  for busy in 0 1 2; do
    pids=()
    for _ in $(seq 1 $busy); do
      sh -c 'while :; do :; done' &
      pids+=($!)
    done
    sleep 0.5
    target/release/examples/bench_matmul --shapes 4096x4096,2048x2048 --batches 1 --no-ref \
      --no-ndarray --impls i8,f32 --rounds 9 | sed "s/^/$busy\t/"
    for p in "${pids[@]}"; do kill "$p"; done
    wait 2>/dev/null || true
  done > "${TMPDIR:-/tmp}/tritter-threads.tsv"
  python3 benches/matmul_report.py --threads "${TMPDIR:-/tmp}/tritter-threads.tsv"
  exit 0
fi
FULL=""
if [[ "${1:-}" == "--full" ]]; then FULL="--full"; fi
PY="${PYTHON:-python3}"
OUT="$(mktemp -d)"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(nproc) CPUs" >&2

cargo build --release --example bench_matmul >&2
target/release/examples/bench_matmul $FULL | tee "$OUT/ours.tsv" >&2

for t in 1 2; do
  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t \
    MKL_NUM_THREADS=$t "$PY" benches/matmul_baselines.py --threads $t $FULL | tee -a "$OUT/py.tsv" >&2
done

if [[ -n "${GGML_HARNESS:-}" ]]; then
  if [[ -n "$FULL" ]]; then
    shapes="2048x2048 4096x4096 2560x2560 6912x2560 2560x6912"; batches="1 8 64 256"
  else
    shapes="2048x2048 4096x4096 6912x2560"; batches="1 64"
  fi
  for s in $shapes; do
    r=${s%x*}; c=${s#*x}
    for b in $batches; do
      reps=$([[ $b == 1 ]] && echo 100 || echo 15)
      for t in 1 2; do
        for ty in tq2_0 tq1_0; do
          us=$("$GGML_HARNESS" $ty $r $c $b $t $reps)
          printf 'ggml_%s\t%s\t%s\t%s\t%s\t%s\n' $ty $r $c $b $t "$us" | tee -a "$OUT/ggml.tsv" >&2
        done
      done
    done
  done
fi

if [[ -n "${BITNET_HARNESS:-}" ]]; then
  if [[ -n "$FULL" ]]; then
    shapes="2048x2048 4096x4096 2560x6912 6912x2560"; batches="1 8 64 256"
  else
    shapes="2048x2048 4096x4096"; batches="1 64"
  fi
  for s in $shapes; do
    r=${s%x*}; c=${s#*x}
    for b in $batches; do
      for t in 1 2; do
        "$BITNET_HARNESS" $r $c $b $t $([[ $b == 1 ]] && echo 9 || echo 3) | tee -a "$OUT/bitnet.tsv" >&2
      done
    done
  done
fi

echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); level: $(target/release/examples/bench_matmul --describe 2>&1); $(uptime | sed 's/.*load/load/')"
"$PY" benches/matmul_report.py "$OUT"/ours.tsv "$OUT"/py.tsv $([[ -f "$OUT/ggml.tsv" ]] && echo "$OUT/ggml.tsv")
if [[ -f "$OUT/bitnet.tsv" ]]; then
  echo
  echo "## Same process: bitnet.cpp I2_S beside this library (BITNET_HARNESS)"
  echo
  "$PY" benches/matmul_report.py --bitnet "$OUT"/bitnet.tsv
fi
