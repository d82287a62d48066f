"""PyTorch integration (imports torch lazily; the rest of the package works without it)."""
