"""Data for the gradient-compression experiment.

* Character-level corpus: the top-level ``.py`` files of the running CPython's
  standard library (``sysconfig.get_paths()['stdlib']``), sorted by name; every
  10th file (indices 9, 19, ...) is held out for validation. Characters map to
  96 symbols: newline, the 95 printable ASCII characters; tab becomes a space
  and anything else (non-ASCII) becomes '?'.
* scikit-learn's bundled digits (8x8 images, 1797 samples), standardized with the
  training split's statistics.
"""
from __future__ import annotations

import pathlib
import sysconfig

import numpy as np

VOCAB = 96  # '\n' + chr(32)..chr(126)


def stdlib_files(root: str | None = None) -> list[pathlib.Path]:
    root = pathlib.Path(root or sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no .py files under {root}")
    return files


def encode(text: str) -> np.ndarray:
    b = np.frombuffer(text.replace("\t", " ").encode("utf-32-le"), dtype=np.uint32)
    out = np.full(b.shape, ord("?") - 31, dtype=np.uint8)
    printable = (b >= 32) & (b <= 126)
    out[printable] = (b[printable] - 31).astype(np.uint8)
    out[b == 10] = 0
    return out


def char_corpus(root: str | None = None, limit_chars: int | None = None):
    """(train, val) uint8 arrays of symbol codes (0..95), concatenated files."""
    train, val = [], []
    for i, p in enumerate(stdlib_files(root)):
        codes = encode(p.read_text(encoding="utf-8", errors="replace"))
        (val if i % 10 == 9 else train).append(codes)
    train, val = np.concatenate(train), np.concatenate(val)
    if limit_chars is not None:
        train, val = train[:limit_chars], val[:max(limit_chars // 10, 4096)]
    return train, val


def char_batch(data: np.ndarray, batch: int, window: int, seed: int, rank: int, step: int) -> np.ndarray:
    """[batch, window + 1] random windows; a pure function of (seed, rank, step)."""
    rng = np.random.default_rng([seed, rank, step, 0x5EED])
    starts = rng.integers(0, len(data) - window - 1, size=batch)
    return np.stack([data[s:s + window + 1] for s in starts])


def char_val_windows(data: np.ndarray, count: int, window: int) -> np.ndarray:
    """[count, window + 1] evenly spaced validation windows (fixed, no randomness)."""
    count = min(count, (len(data) - 1) // (window + 1))
    starts = np.linspace(0, len(data) - window - 1, count).astype(np.int64)
    return np.stack([data[s:s + window + 1] for s in starts])


def digits(seed: int, test_fraction: float = 0.25):
    """(x_train, y_train, x_test, y_test) float32/int64, split by ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    xtr, xte, ytr, yte = train_test_split(d.data.astype(np.float32), d.target.astype(np.int64),
                                          test_size=test_fraction, random_state=seed, stratify=d.target)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    return (xtr - mu) / sd, ytr, (xte - mu) / sd, yte
