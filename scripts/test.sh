#!/usr/bin/env bash
# Runs every test of tritter-accel from a fresh clone, installing what it needs:
#   Rust: unit tests, doctests, header drift, version checks, and the C/C++
#         programs in ffi-tests/ and examples/ (shared, static, ASan+UBSan, valgrind);
#   Python: the ctypes package's pytest suite (NumPy reference, DDP on gloo, ...).
# Environment: TRITTER_TEST_FAST=1 skips the release build of benches (compile check).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }

step "tools"
missing=()
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null
    else
        echo "missing ${missing[*]} and cannot install here (need root + apt-get)" >&2
        exit 1
    fi
fi
valgrind --version
cargo --version
cc --version | head -1

step "Python venv (.venv) with python-ctypes/requirements-test.txt"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r python-ctypes/requirements-test.txt

step "gates: rustfmt, clippy (warnings are errors), rustdoc (warnings are errors)"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --check
cargo clippy --all-targets -q -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc --no-deps -q

step "cargo test (Rust, header drift, C/C++ shared/static/ASan/valgrind)"
TRITTER_REQUIRE_VALGRIND=1 cargo test

step "release build (library used by Python) and benches compile"
cargo build --release
if [ "${TRITTER_TEST_FAST:-0}" != 1 ]; then
    cargo bench --no-run -q
fi

step "seeded mutation test of every decoder (fuzz/README.md): 4 s a target, release"
TRITTER_MUTATION_SECS=4 cargo test --release -q --test fuzz_mutation -- --nocapture

step "Python tests"
export TRITTER_ACCEL_LIB="$PWD/target/release/libtritter_accel.so"
.venv/bin/python -m pytest -q python-ctypes/tests

step "Python wheel: from source (cargo) into a clean venv outside the checkout (scripts/test-wheel.sh)"
scripts/test-wheel.sh .venv/bin/python
