"""Gradient prediction (phase trainer) (in progress)."""
__all__ = []
