//! CUDA backend. Kernels arrive in a later issue; without the `cuda` feature
//! (and today even with it) every entry reports [`Error::CudaUnavailable`],
//! so callers can probe and fall back cleanly.

pub mod layout;

use crate::{Error, Result};

/// Whether a CUDA driver and device can be used by this build.
pub fn is_available() -> bool {
    false
}

/// Number of usable CUDA devices (0 when unavailable).
pub fn device_count() -> usize {
    0
}

/// Fails with [`Error::CudaUnavailable`] naming `what`.
pub fn require(what: &str) -> Result<()> {
    Err(Error::CudaUnavailable(format!(
        "{what} needs a CUDA device; this build has no CUDA backend{}",
        if cfg!(feature = "cuda") {
            ""
        } else {
            " (built without the `cuda` feature)"
        }
    )))
}
