"""The package version; it must equal the shared library's (`tritter_version()`),
which the loader checks, and Cargo.toml's (a test checks)."""
__version__ = "0.1.0"
