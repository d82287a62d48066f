//! The crate's error type. Every fallible core function returns [`Result`];
//! the C ABI maps each variant to one status code (see `ffi::status`).

/// Errors from the safe cores. Messages always name the offending argument.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A required pointer or handle was NULL (only produced at the C boundary).
    #[error("`{0}` is NULL")]
    NullPointer(&'static str),
    /// An argument has a value outside its documented domain.
    #[error("invalid argument `{arg}`: {msg}")]
    InvalidArgument {
        /// Name of the argument.
        arg: &'static str,
        /// What is wrong with it.
        msg: String,
    },
    /// Shapes or lengths of arguments do not agree.
    #[error("shape mismatch for `{arg}`: {msg}")]
    ShapeMismatch {
        /// Name of the argument.
        arg: &'static str,
        /// Expected versus actual.
        msg: String,
    },
    /// A size computation overflowed `usize` or exceeds `isize::MAX` bytes.
    #[error("size overflow for `{arg}`: {msg}")]
    SizeOverflow {
        /// Name of the argument.
        arg: &'static str,
        /// Which size overflowed.
        msg: String,
    },
    /// A NaN or infinity where finite values are required.
    #[error("non-finite value in `{arg}` at flat index {index}")]
    NonFinite {
        /// Name of the argument.
        arg: &'static str,
        /// Flat (row-major) index of the first offending element.
        index: usize,
    },
    /// Packed or serialized bytes that are invalid, corrupt or truncated.
    #[error("invalid data in `{arg}`: {msg}")]
    InvalidData {
        /// Name of the argument.
        arg: &'static str,
        /// What is wrong with the bytes.
        msg: String,
    },
    /// A tensor's dtype is not the one the call needs.
    #[error("unsupported dtype for `{arg}`: {msg}")]
    UnsupportedDtype {
        /// Name of the argument.
        arg: &'static str,
        /// Expected versus actual dtype.
        msg: String,
    },
    /// A tensor lives on a device the call cannot use.
    #[error("unsupported device for `{arg}`: {msg}")]
    UnsupportedDevice {
        /// Name of the argument.
        arg: &'static str,
        /// Expected versus actual device.
        msg: String,
    },
    /// An output buffer is too small.
    #[error("buffer `{arg}` too small: need {needed} elements, got {got}")]
    BufferTooSmall {
        /// Name of the argument.
        arg: &'static str,
        /// Elements needed.
        needed: usize,
        /// Elements provided.
        got: usize,
    },
    /// A call that is not valid in the object's current state (call-order mistake).
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// CUDA was requested but no driver/GPU (or no `cuda` feature) is available.
    #[error("CUDA unavailable: {0}")]
    CudaUnavailable(String),
    /// A CUDA driver call failed.
    #[error("CUDA error: {0}")]
    Cuda(String),
    /// An I/O error (file formats).
    #[error("I/O error: {0}")]
    Io(String),
    /// A bug: a panic caught at the C boundary, or a broken invariant.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(arg: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            arg,
            msg: msg.into(),
        }
    }
    /// Shorthand for [`Error::ShapeMismatch`].
    pub fn shape(arg: &'static str, msg: impl Into<String>) -> Self {
        Error::ShapeMismatch {
            arg,
            msg: msg.into(),
        }
    }
    /// Shorthand for [`Error::InvalidData`].
    pub fn data(arg: &'static str, msg: impl Into<String>) -> Self {
        Error::InvalidData {
            arg,
            msg: msg.into(),
        }
    }
    /// Shorthand for [`Error::SizeOverflow`].
    pub fn overflow(arg: &'static str, msg: impl Into<String>) -> Self {
        Error::SizeOverflow {
            arg,
            msg: msg.into(),
        }
    }
}

/// `a * b` or a [`Error::SizeOverflow`] naming `arg`.
pub fn checked_mul(a: usize, b: usize, arg: &'static str) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| Error::overflow(arg, format!("{a} * {b} overflows usize")))
}

/// Returns the index of the first non-finite value, as an error naming `arg`.
pub fn check_finite(xs: &[f32], arg: &'static str) -> Result<()> {
    // Branch-free scan in chunks; only locate the index on failure.
    let bad = xs
        .chunks(1024)
        .position(|c| !c.iter().fold(true, |ok, v| ok & v.is_finite()));
    match bad {
        None => Ok(()),
        Some(ci) => {
            let off = xs[ci * 1024..]
                .iter()
                .position(|v| !v.is_finite())
                .unwrap_or(0);
            Err(Error::NonFinite {
                arg,
                index: ci * 1024 + off,
            })
        }
    }
}

/// [`check_finite`] over a 2-D view of any layout (flat index is row-major).
pub fn check_finite_view(x: &ndarray::ArrayView2<f32>, arg: &'static str) -> Result<()> {
    if let Some(s) = x.as_slice() {
        return check_finite(s, arg);
    }
    match x.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite { arg, index }),
    }
}
