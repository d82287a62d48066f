//! Status codes, the thread-local last error, and the panic boundary.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::Error;

/// Status returned by every fallible export. `TRITTER_OK` (0) is success;
/// on any other value [`tritter_last_error`] describes what went wrong and
/// names the offending argument. Out-parameters are left untouched on error
/// unless documented otherwise.
#[allow(non_camel_case_types)]
#[must_use]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum tritter_status_t {
    /// Success.
    TRITTER_OK = 0,
    /// A required pointer or handle was NULL.
    TRITTER_ERR_NULL_POINTER = 1,
    /// An argument is outside its documented domain (unknown enum code, zero group size...).
    TRITTER_ERR_INVALID_ARGUMENT = 2,
    /// Shapes or lengths of arguments disagree.
    TRITTER_ERR_SHAPE_MISMATCH = 3,
    /// A size computation overflowed.
    TRITTER_ERR_SIZE_OVERFLOW = 4,
    /// NaN or infinity where finite values are required.
    TRITTER_ERR_NON_FINITE = 5,
    /// Packed or serialized bytes are invalid, corrupt or truncated.
    TRITTER_ERR_INVALID_DATA = 6,
    /// A tensor has the wrong dtype.
    TRITTER_ERR_UNSUPPORTED_DTYPE = 7,
    /// A tensor is on a device this call cannot use, or is misaligned/strided unsupportedly.
    TRITTER_ERR_UNSUPPORTED_DEVICE = 8,
    /// An output buffer is too small.
    TRITTER_ERR_BUFFER_TOO_SMALL = 9,
    /// The call is not valid in the object's current state.
    TRITTER_ERR_INVALID_STATE = 10,
    /// CUDA requested but unavailable in this build or on this machine.
    TRITTER_ERR_CUDA_UNAVAILABLE = 11,
    /// A CUDA driver call failed.
    TRITTER_ERR_CUDA = 12,
    /// File or stream I/O failed.
    TRITTER_ERR_IO = 13,
    /// A bug in the library (a caught panic); please report it.
    TRITTER_ERR_INTERNAL = 255,
}

pub use tritter_status_t::*;

impl From<&Error> for tritter_status_t {
    fn from(e: &Error) -> Self {
        match e {
            Error::NullPointer(_) => TRITTER_ERR_NULL_POINTER,
            Error::InvalidArgument { .. } => TRITTER_ERR_INVALID_ARGUMENT,
            Error::ShapeMismatch { .. } => TRITTER_ERR_SHAPE_MISMATCH,
            Error::SizeOverflow { .. } => TRITTER_ERR_SIZE_OVERFLOW,
            Error::NonFinite { .. } => TRITTER_ERR_NON_FINITE,
            Error::InvalidData { .. } => TRITTER_ERR_INVALID_DATA,
            Error::UnsupportedDtype { .. } => TRITTER_ERR_UNSUPPORTED_DTYPE,
            Error::UnsupportedDevice { .. } => TRITTER_ERR_UNSUPPORTED_DEVICE,
            Error::BufferTooSmall { .. } => TRITTER_ERR_BUFFER_TOO_SMALL,
            Error::InvalidState(_) => TRITTER_ERR_INVALID_STATE,
            Error::CudaUnavailable(_) => TRITTER_ERR_CUDA_UNAVAILABLE,
            Error::Cuda(_) => TRITTER_ERR_CUDA,
            Error::Io(_) => TRITTER_ERR_IO,
            Error::Internal(_) => TRITTER_ERR_INTERNAL,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `msg` as this thread's last error.
pub fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Runs `f` inside the panic boundary; maps its error to a status and records
/// the message. Every export's body goes through here.
pub fn guard<F>(f: F) -> tritter_status_t
where
    F: FnOnce() -> crate::Result<()>,
{
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => TRITTER_OK,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            tritter_status_t::from(&e)
        }
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error (panic): {what}"));
            TRITTER_ERR_INTERNAL
        }
    }
}

/// Like [`guard`] for exports that return a value instead of a status; `fallback`
/// is returned on panic.
pub fn guard_value<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// The last error message of the calling thread (UTF-8, NUL-terminated; empty
/// if no call on this thread has failed yet).
///
/// # Safety
/// The pointer is owned by the library and valid until the next failing call
/// on the same thread; copy it if you need it longer. Never free it.
#[no_mangle]
pub extern "C" fn tritter_last_error() -> *const c_char {
    guard_value(std::ptr::null(), || {
        LAST_ERROR.with(|e| e.borrow().as_ptr())
    })
}

/// A static, human-readable name for a status code (`"TRITTER_OK"`, ...);
/// `"TRITTER_UNKNOWN_STATUS"` for values that are not status codes.
#[no_mangle]
pub extern "C" fn tritter_status_name(status: u32) -> *const c_char {
    let s: &'static [u8] = match status {
        0 => b"TRITTER_OK\0",
        1 => b"TRITTER_ERR_NULL_POINTER\0",
        2 => b"TRITTER_ERR_INVALID_ARGUMENT\0",
        3 => b"TRITTER_ERR_SHAPE_MISMATCH\0",
        4 => b"TRITTER_ERR_SIZE_OVERFLOW\0",
        5 => b"TRITTER_ERR_NON_FINITE\0",
        6 => b"TRITTER_ERR_INVALID_DATA\0",
        7 => b"TRITTER_ERR_UNSUPPORTED_DTYPE\0",
        8 => b"TRITTER_ERR_UNSUPPORTED_DEVICE\0",
        9 => b"TRITTER_ERR_BUFFER_TOO_SMALL\0",
        10 => b"TRITTER_ERR_INVALID_STATE\0",
        11 => b"TRITTER_ERR_CUDA_UNAVAILABLE\0",
        12 => b"TRITTER_ERR_CUDA\0",
        13 => b"TRITTER_ERR_IO\0",
        255 => b"TRITTER_ERR_INTERNAL\0",
        _ => b"TRITTER_UNKNOWN_STATUS\0",
    };
    s.as_ptr() as *const c_char
}
