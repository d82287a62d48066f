#!/usr/bin/env bash
# The GPU check of the CUDA backend, for a machine with an NVIDIA GPU of
# compute capability 8.0 or newer (A100, H100/H200, RTX 30xx/40xx...).
#
#   scripts/gpu-check.sh            build (or use .gpu-build/), test, benchmark
#   scripts/gpu-check.sh --prepare  build only, into .gpu-build/ (for a GPU
#                                   machine without cargo or network: carry
#                                   .gpu-build/ there and run without flags)
#   scripts/gpu-check.sh --quick    fewer benchmark shapes and repetitions
#
# Steps:
#   1. nvcc: $NVCC, $CUDA_HOME/$CUDA_PATH, PATH, else the pinned PyPI
#      packages installed into .venv/cuda-toolchain (needs a registry);
#   2. cargo builds with --features cuda: the GPU test binaries and the
#      release library (skipped when .gpu-build/ holds them already);
#   3. the GPU tests (tests/cuda.rs and the cuda:: unit tests) with
#      TRITTER_REQUIRE_GPU=1, so a missing GPU fails instead of skipping;
#      compute-sanitizer memcheck over the short GPU tests when installed;
#   4. the DDP compression hook on CUDA buckets over NCCL (one GPU, world 1:
#      experiments/grad_compression/nccl_check.py, against gloo on the CPU);
#   5. benches/gpu_bench.py (PyTorch with CUDA): every kernel timed with CUDA
#      events against cuBLAS / torch in the same run, GB/s next to the measured
#      device-to-device copy bandwidth; the markdown table goes to
#      $OUT/gpu_bench.md (or benches/results/gpu_bench.md) for BENCHMARKS.md.
# Budget: under 8 minutes on one H100/H200 with a prebuilt .gpu-build/.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }

MODE=all
QUICK=()
for a in "$@"; do
    case "$a" in
        --prepare) MODE=prepare ;;
        --quick) QUICK=(--quick) ;;
        *) echo "unknown argument $a" >&2; exit 2 ;;
    esac
done
B=.gpu-build
PINS=(nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96)

ensure_nvcc() {
    if [ -n "${NVCC:-}" ] && [ -x "$NVCC" ]; then return; fi
    for c in "${CUDA_HOME:-/nonexistent}/bin/nvcc" "${CUDA_PATH:-/nonexistent}/bin/nvcc" "$(command -v nvcc || true)"; do
        if [ -n "$c" ] && [ -x "$c" ]; then export NVCC="$c"; return; fi
    done
    local dir=.venv/cuda-toolchain
    if [ ! -x "$dir/nvidia/cu13/bin/nvcc" ]; then
        python3 -m pip install -q --disable-pip-version-check --target "$dir" "${PINS[@]}"
    fi
    export NVCC="$PWD/$dir/nvidia/cu13/bin/nvcc"
}

prepare() {
    step "build with --features cuda into $B/"
    command -v cargo >/dev/null || { echo "no cargo here and no prebuilt $B/: run scripts/gpu-check.sh --prepare on a build machine and bring $B/" >&2; exit 1; }
    ensure_nvcc
    "$NVCC" --version | tail -2
    rm -rf "$B" && mkdir -p "$B"
    cargo test --features cuda --no-run --lib --test cuda --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])' |
        while read -r name exe; do cp "$exe" "$B/test-$name"; done
    cargo build --release --features cuda -q
    cp target/release/libtritter_accel.so "$B/"
    strip --strip-debug "$B"/* 2>/dev/null || true
    { git describe --always --dirty 2>/dev/null || echo unknown; date -u +%FT%TZ; } > "$B/stamp"
    ls -la "$B"
}

if [ "$MODE" = prepare ]; then
    prepare
    exit 0
fi
if [ ! -x "$B/test-cuda" ]; then
    prepare
fi
OUTDIR=${OUT:-benches/results}
mkdir -p "$OUTDIR"

step "GPU"
echo "build: $(tr '\n' ' ' < "$B/stamp")"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv || true

step "GPU tests (TRITTER_REQUIRE_GPU=1)"
export TRITTER_REQUIRE_GPU=1
"$B/test-cuda" 2>&1 | tee "$OUTDIR/gpu_tests.log"
"$B/test-tritter_accel" cuda:: 2>&1 | tee -a "$OUTDIR/gpu_tests.log"

if command -v compute-sanitizer >/dev/null; then
    step "compute-sanitizer memcheck (short GPU tests)"
    rc=0
    timeout 240 compute-sanitizer --tool memcheck --error-exitcode 86 "$B/test-cuda" \
        activation_quantization conversion dlpack_cuda_route quantize_pack matmul_uploads 2>&1 |
        tail -25 || rc=$?
    if [ "$rc" = 86 ]; then echo "compute-sanitizer found errors" >&2; exit 1; fi
    if [ "$rc" = 124 ]; then echo "(memcheck ran past 240 s: not conclusive)"; fi
else
    echo "(compute-sanitizer not installed: memcheck skipped)"
fi

step "DDP compression hook on CUDA buckets over NCCL (experiments/grad_compression/nccl_check.py)"
nccl_rc=0
TRITTER_ACCEL_LIB="$PWD/$B/libtritter_accel.so" timeout 300 python3 -m experiments.grad_compression.nccl_check ||
    nccl_rc=$?

step "benchmark against cuBLAS (benches/gpu_bench.py)"
TRITTER_ACCEL_LIB="$PWD/$B/libtritter_accel.so" PYTHONUNBUFFERED=1 \
    python3 benches/gpu_bench.py --md "$OUTDIR/gpu_bench.md" "${QUICK[@]}"
echo
cat "$OUTDIR/gpu_bench.md"
if [ "$nccl_rc" != 0 ]; then echo "NCCL hook check failed (rc $nccl_rc)" >&2; exit 1; fi
