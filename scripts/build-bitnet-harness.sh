#!/usr/bin/env bash
# Builds bitnet.cpp's I2_S kernels (src/ggml-bitnet-mad.cpp from a
# microsoft/BitNet checkout YOU supply, outside this repo, compiled unchanged)
# and our side-by-side harness (benches/peers/bitnet_harness.c) against them
# and this repo's release library, for scripts/bench-matmul.sh's
# BITNET_HARNESS. Downloads nothing.
#
#   scripts/build-bitnet-harness.sh BITNET_SRC_DIR [BUILD_DIR]
#
# BITNET_SRC_DIR  a microsoft/BitNet source tree; the published numbers used
#                 commit 16da220a (get it yourself, e.g. `git clone
#                 https://github.com/microsoft/BitNet && git -C BitNet checkout 16da220a`).
#                 Its llama.cpp submodule is not needed: the three ggml headers
#                 the kernel file includes are replaced by our shims
#                 (benches/peers/bitnet_shim/: GGML_TYPE_I2_S and ggml_row_size).
# BUILD_DIR       where the harness is built (default: a new directory under
#                 ${TMPDIR:-/tmp}); must not be inside this repo.
# Environment: CXX (default g++), CC (default cc), CARGO (default cargo).
# Prints the harness path last: BITNET_HARNESS=<path>.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SRC="${1:?usage: $0 BITNET_SRC_DIR [BUILD_DIR]}"
SRC="$(cd "$SRC" && pwd)"
BUILD="${2:-$(mktemp -d "${TMPDIR:-/tmp}/bitnet-harness.XXXXXX")}"
mkdir -p "$BUILD"
BUILD="$(cd "$BUILD" && pwd)"
case "$BUILD/" in "$REPO"/*) echo "BUILD_DIR must be outside the repo ($REPO)" >&2; exit 2;; esac
case "$SRC/" in "$REPO"/*) echo "BITNET_SRC_DIR must be outside the repo ($REPO)" >&2; exit 2;; esac
[[ -f "$SRC/src/ggml-bitnet-mad.cpp" && -f "$SRC/include/gemm-config.h" ]] || {
  echo "$SRC is not a microsoft/BitNet source tree (no src/ggml-bitnet-mad.cpp)" >&2; exit 2; }

if git -C "$SRC" rev-parse HEAD >/dev/null 2>&1; then
  rev="$(git -C "$SRC" rev-parse HEAD)"
  case "$rev" in 16da220a*) ;; *) echo "warning: BitNet at $rev, the published numbers used 16da220a" >&2;; esac
else
  echo "warning: $SRC is not a git checkout; cannot check that it is commit 16da220a" >&2
fi

# bitnet.cpp's kernels, unchanged, with bitnet.cpp's own x86 flags
# (-O3 -march=native; ACT_PARALLEL comes from its include/gemm-config.h)
"${CXX:-g++}" -O3 -march=native -fno-exceptions -I"$REPO/benches/peers/bitnet_shim" -I"$SRC/include" \
  -c "$SRC/src/ggml-bitnet-mad.cpp" -o "$BUILD/ggml-bitnet-mad.o"

# this repo's library (the harness links the shared library by absolute rpath)
(cd "$REPO" && "${CARGO:-cargo}" build --release >&2)
LIB="$REPO/target/release"
"${CC:-cc}" -O2 -march=native -I"$REPO/include" "$REPO/benches/peers/bitnet_harness.c" \
  "$BUILD/ggml-bitnet-mad.o" -L"$LIB" -ltritter_accel -Wl,-rpath,"$LIB" \
  -lstdc++ -lm -lpthread -o "$BUILD/harness"

# smoke test: its own correctness check on a small product, 1 and 2 threads
"$BUILD/harness" 64 256 1 1 1 >/dev/null
"$BUILD/harness" 64 256 4 2 1 >/dev/null
echo "BITNET_HARNESS=$BUILD/harness"
