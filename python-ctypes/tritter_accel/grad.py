"""Gradient compression (in progress)."""
__all__ = []
