"""VSA hypervector operations (in progress)."""
__all__ = []
