//! Status codes, the thread-local last error, and the panic boundary.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
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
    /// An allocation the call needed was refused (the size came from the
    /// caller: a dimension, a shape, a capacity, a payload header). Nothing
    /// was changed; the process is intact and other calls still work.
    TRITTER_ERR_OUT_OF_MEMORY = 14,
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
            Error::OutOfMemory { .. } => TRITTER_ERR_OUT_OF_MEMORY,
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
/// the message. Every export's body goes through here. A panic whose payload
/// is an [`Error`] (how infallible internal helpers report a refused
/// allocation, `std::panic::panic_any(Error::OutOfMemory { .. })`) becomes
/// that error's status; any other panic is `TRITTER_ERR_INTERNAL`.
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
            if let Some(e) = p.downcast_ref::<Error>() {
                set_last_error(&e.to_string());
                return tritter_status_t::from(e);
            }
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

/// Ties `TRITTER_*` constants to the core enum's `code()` at compile time:
/// the `match` is exhaustive (a core variant without a C constant does not
/// compile) and every listed value is asserted equal to the core's code (a
/// constant that drifts does not compile). The header needs the literal
/// values; this makes them the same numbers as the core's one table.
macro_rules! c_constants {
    ($ty:ty, $all:expr, { $($p:pat => $c:ident),+ $(,)? }) => {
        const _: () = {
            const fn c_constant(v: $ty) -> u32 {
                match v {
                    $($p => $c,)+
                }
            }
            let all: &[$ty] = $all;
            let mut i = 0;
            while i < all.len() {
                assert!(
                    c_constant(all[i]) as u32 == all[i].code(),
                    "a TRITTER_* constant differs from the core code"
                );
                i += 1;
            }
        };
    };
}
pub(crate) use c_constants;

/// The one table of status names: an exhaustive `match` over
/// [`tritter_status_t`] (a new variant that is not listed here does not
/// compile) whose strings are the variants' own identifiers (`stringify!`),
/// so a name cannot drift from its code. [`ALL_STATUSES`] comes from the
/// same list.
macro_rules! status_table {
    ($($v:ident),* $(,)?) => {
        /// Every status code, in declaration order.
        pub const ALL_STATUSES: &[tritter_status_t] = &[$($v),*];

        impl tritter_status_t {
            /// The C name of the code (`"TRITTER_OK"`, ...).
            pub const fn name(self) -> &'static CStr {
                match self {
                    $($v => match CStr::from_bytes_with_nul(
                        concat!(stringify!($v), "\0").as_bytes(),
                    ) {
                        Ok(c) => c,
                        Err(_) => panic!("status names have no NUL"),
                    },)*
                }
            }
        }
    };
}

status_table!(
    TRITTER_OK,
    TRITTER_ERR_NULL_POINTER,
    TRITTER_ERR_INVALID_ARGUMENT,
    TRITTER_ERR_SHAPE_MISMATCH,
    TRITTER_ERR_SIZE_OVERFLOW,
    TRITTER_ERR_NON_FINITE,
    TRITTER_ERR_INVALID_DATA,
    TRITTER_ERR_UNSUPPORTED_DTYPE,
    TRITTER_ERR_UNSUPPORTED_DEVICE,
    TRITTER_ERR_BUFFER_TOO_SMALL,
    TRITTER_ERR_INVALID_STATE,
    TRITTER_ERR_CUDA_UNAVAILABLE,
    TRITTER_ERR_CUDA,
    TRITTER_ERR_IO,
    TRITTER_ERR_OUT_OF_MEMORY,
    TRITTER_ERR_INTERNAL,
);

impl tritter_status_t {
    /// The status with code `code`, if there is one (codes from C arrive as
    /// `uint32_t` and are never transmuted).
    pub fn from_code(code: u32) -> Option<Self> {
        ALL_STATUSES.iter().copied().find(|s| *s as u32 == code)
    }
}

/// A static, human-readable name for a status code (`"TRITTER_OK"`, ...);
/// `"TRITTER_UNKNOWN_STATUS"` for values that are not status codes.
#[no_mangle]
pub extern "C" fn tritter_status_name(status: u32) -> *const c_char {
    match tritter_status_t::from_code(status) {
        Some(s) => s.name().as_ptr(),
        None => c"TRITTER_UNKNOWN_STATUS".as_ptr(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_come_from_one_table() {
        let mut codes = std::collections::HashSet::new();
        for &s in ALL_STATUSES {
            assert!(codes.insert(s as u32), "duplicate code {}", s as u32);
            // the name is the variant's identifier
            assert_eq!(s.name().to_str().unwrap(), format!("{s:?}"));
            assert_eq!(tritter_status_t::from_code(s as u32), Some(s));
            let c = unsafe { CStr::from_ptr(tritter_status_name(s as u32)) };
            assert_eq!(c, s.name());
        }
        for code in [15u32, 254, 256, u32::MAX] {
            assert_eq!(tritter_status_t::from_code(code), None);
            let c = unsafe { CStr::from_ptr(tritter_status_name(code)) };
            assert_eq!(c.to_str().unwrap(), "TRITTER_UNKNOWN_STATUS");
        }
    }

    #[test]
    fn every_error_variant_has_its_own_status() {
        let errs = [
            Error::NullPointer("a"),
            Error::invalid("a", ""),
            Error::shape("a", ""),
            Error::overflow("a", ""),
            Error::NonFinite { arg: "a", index: 0 },
            Error::data("a", ""),
            Error::UnsupportedDtype {
                arg: "a",
                msg: String::new(),
            },
            Error::UnsupportedDevice {
                arg: "a",
                msg: String::new(),
            },
            Error::BufferTooSmall {
                arg: "a",
                needed: 1,
                got: 0,
            },
            Error::InvalidState(String::new()),
            Error::CudaUnavailable(String::new()),
            Error::Cuda(String::new()),
            Error::Io(String::new()),
            Error::OutOfMemory { arg: "a", bytes: 1 },
            Error::Internal(String::new()),
        ];
        let st: std::collections::HashSet<u32> = errs
            .iter()
            .map(|e| tritter_status_t::from(e) as u32)
            .collect();
        assert_eq!(st.len(), errs.len());
        assert_eq!(
            st.len() + 1,
            ALL_STATUSES.len(),
            "one status per variant, plus OK"
        );
    }
}
