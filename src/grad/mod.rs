//! Gradient compression and gradient prediction (in progress).
