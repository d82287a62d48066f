//! Mixed-precision utilities (in progress).
