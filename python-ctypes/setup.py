"""Builds the tritter-accel wheel: compiles the Rust library with cargo and
puts it, with the C headers, inside a platform-tagged wheel
(`py3-none-<platform>`: the package loads the library through ctypes, so one
wheel serves every CPython 3 on that platform).

Environment:
  TRITTER_ACCEL_PREBUILT  path of an already built libtritter_accel.so
                          (.dylib/.dll) to package instead of running cargo;
  CARGO                   the cargo executable (default: `cargo` on PATH);
  CARGO_TARGET_DIR        cargo's target directory (default: <repo>/target);
  TRITTER_ACCEL_STRIP=0   keep the library's debug line tables (stripped by default).
"""
import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
LIB = {"linux": "libtritter_accel.so", "darwin": "libtritter_accel.dylib", "win32": "tritter_accel.dll"}.get(
    sys.platform, "libtritter_accel.so")
HEADERS = ("tritter_accel.h", "tritter_accel.hpp")


def built_library():
    prebuilt = os.environ.get("TRITTER_ACCEL_PREBUILT")
    if prebuilt:
        path = pathlib.Path(prebuilt)
        if not path.is_file():
            raise SystemExit(f"TRITTER_ACCEL_PREBUILT={prebuilt} is not a file")
        print(f"tritter-accel: packaging the prebuilt library {path}")
        return path
    manifest = ROOT / "Cargo.toml"
    if not manifest.is_file():
        raise SystemExit(f"tritter-accel: the Rust sources are not at {ROOT} (no Cargo.toml); build from a "
                         "checkout of the repository, or set TRITTER_ACCEL_PREBUILT to a built library")
    cargo = os.environ.get("CARGO", "cargo")
    cmd = [cargo, "build", "--release", "--lib", "--manifest-path", str(manifest)]
    print("tritter-accel: " + " ".join(cmd))
    try:
        subprocess.check_call(cmd)
    except FileNotFoundError:
        raise SystemExit("tritter-accel: cargo not found; install a Rust toolchain (rustup) or set CARGO") from None
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    return target / "release" / LIB


class BuildPy(build_py):
    """Copies the built library and the headers next to the Python sources."""

    def run(self):
        super().run()
        lib = built_library()
        dest = pathlib.Path(self.build_lib) / "tritter_accel"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dest / LIB)
        strip = shutil.which("strip") if sys.platform.startswith("linux") else None
        if strip and os.environ.get("TRITTER_ACCEL_STRIP", "1") != "0":
            # the release profile keeps line tables for profiling; the wheel need not
            subprocess.check_call([strip, "--strip-debug", str(dest / LIB)])
        inc = dest / "include"
        inc.mkdir(exist_ok=True)
        for h in HEADERS:
            shutil.copy2(ROOT / "include" / h, inc / h)


class BinaryDistribution(Distribution):
    """Holds a native library: installs to platlib, wheel not pure."""

    def has_ext_modules(self):
        return True


class BdistWheel(bdist_wheel):
    """A platform wheel that does not depend on the Python ABI."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(distclass=BinaryDistribution, cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel})
