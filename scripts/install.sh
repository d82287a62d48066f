#!/usr/bin/env bash
# Installs the library, headers and a pkg-config file under a prefix.
# Usage: scripts/install.sh [PREFIX] (default /usr/local); LIB_DIR=target/release by default.
#   cc app.c $(PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig pkg-config --cflags --libs tritter_accel)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${1:-/usr/local}"
lib_dir="${LIB_DIR:-$root/target/release}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
for f in libtritter_accel.so libtritter_accel.a; do
    [ -f "$lib_dir/$f" ] || { echo "missing $lib_dir/$f: run cargo build --release first" >&2; exit 1; }
done
install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 0755 "$lib_dir/libtritter_accel.so" "$prefix/lib/"
install -m 0644 "$lib_dir/libtritter_accel.a" "$prefix/lib/"
install -m 0644 "$root/include/tritter_accel.h" "$root/include/tritter_accel.hpp" "$prefix/include/"
cat > "$prefix/lib/pkgconfig/tritter_accel.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: tritter_accel
Description: Ternary (BitNet b1.58) quantization, packing, matmul, VSA and gradient compression
Version: $version
Libs: -L\${libdir} -ltritter_accel -Wl,-rpath,\${libdir}
Libs.private: -lpthread -ldl -lm
Cflags: -I\${includedir}
PC
echo "installed tritter_accel $version under $prefix"
