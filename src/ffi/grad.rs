//! C entry points (in progress).
