#!/usr/bin/env bash
# Load time and resident memory of a 2B-shaped BitNet checkpoint (random
# weights in the Hugging Face layout: hidden 2560, 30 layers, intermediate
# 6912), against a plain read of the same files in the same run, with the
# file in the page cache (warm) and evicted before each timed run (cold).
#
#   scripts/bench-load.sh [CHECKPOINT_DIR]   (default: /tmp/tritter-bitnet-2b, generated if absent)
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-/tmp/tritter-bitnet-2b}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if [ ! -f "$DIR/model.safetensors" ]; then
    "$PY" scripts/gen_bitnet_checkpoint.py "$DIR"
fi
cargo build --release --example load_checkpoint -q
echo "# $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
# Warm: both sides read from the page cache. Cold: the file is evicted
# (posix_fadvise DONTNEED) before every timed read and load.
for floats in mapped f32; do
    for cache in "" --cold; do
        target/release/examples/load_checkpoint "$DIR" --floats "$floats" --reps 3 $cache
        echo
    done
done
