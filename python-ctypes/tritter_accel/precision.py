"""Mixed-precision utilities (in progress)."""
__all__ = []
