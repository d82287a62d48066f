#!/usr/bin/env bash
# Builds ggml (from a checkout YOU supply, outside this repo) and our ggml
# mul_mat timing harness (benches/peers/ggml_harness.c) against it, for
# scripts/bench-matmul.sh's GGML_HARNESS. Downloads nothing.
#
#   scripts/build-ggml-harness.sh GGML_SRC_DIR [BUILD_DIR]
#
# GGML_SRC_DIR  a ggml-org/ggml source tree; the published numbers used commit
#               d99724f2 (get it yourself, e.g. `git clone
#               https://github.com/ggml-org/ggml && git -C ggml checkout d99724f2`).
# BUILD_DIR     where ggml and the harness are built (default: a new directory
#               under ${TMPDIR:-/tmp}); must not be inside this repo.
# Environment: CMAKE (default cmake, >= 3.14), CC (default cc), JOBS (default nproc).
# Prints the harness path last: GGML_HARNESS=<path>.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
SRC="${1:?usage: $0 GGML_SRC_DIR [BUILD_DIR]}"
SRC="$(cd "$SRC" && pwd)"
BUILD="${2:-$(mktemp -d "${TMPDIR:-/tmp}/ggml-harness.XXXXXX")}"
mkdir -p "$BUILD"
BUILD="$(cd "$BUILD" && pwd)"
case "$BUILD/" in "$REPO"/*) echo "BUILD_DIR must be outside the repo ($REPO)" >&2; exit 2;; esac
case "$SRC/" in "$REPO"/*) echo "GGML_SRC_DIR must be outside the repo ($REPO)" >&2; exit 2;; esac
[[ -f "$SRC/include/ggml.h" && -f "$SRC/CMakeLists.txt" ]] || { echo "$SRC is not a ggml source tree" >&2; exit 2; }

if git -C "$SRC" rev-parse HEAD >/dev/null 2>&1; then
  rev="$(git -C "$SRC" rev-parse HEAD)"
  case "$rev" in d99724f2*) ;; *) echo "warning: ggml at $rev, the published numbers used d99724f2" >&2;; esac
else
  echo "warning: $SRC is not a git checkout; cannot check that it is commit d99724f2" >&2
fi

JOBS="${JOBS:-$(nproc)}"
CMAKE="${CMAKE:-cmake}"
command -v "$CMAKE" >/dev/null || { echo "cmake not found (set CMAKE=/path/to/cmake)" >&2; exit 2; }
"$CMAKE" -S "$SRC" -B "$BUILD/ggml" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DGGML_LLAMAFILE=ON -DBUILD_SHARED_LIBS=OFF -DGGML_BUILD_TESTS=OFF \
  -DGGML_BUILD_EXAMPLES=OFF >&2
"$CMAKE" --build "$BUILD/ggml" --target ggml -j "$JOBS" >&2

L="$BUILD/ggml/src"
"${CC:-cc}" -O2 -march=native -I"$SRC/include" "$REPO/benches/peers/ggml_harness.c" \
  "$L/libggml.a" "$L/libggml-cpu.a" "$L/libggml-base.a" \
  -fopenmp -lstdc++ -lm -lpthread -ldl -o "$BUILD/harness"

# smoke test: one small TQ2_0 product
"$BUILD/harness" tq2_0 256 256 1 1 3 >/dev/null
echo "GGML_HARNESS=$BUILD/harness"
