//! Typed conversions between boxed Rust objects and opaque C handles.
//!
//! A handle type is a non-`repr(C)` newtype, so cbindgen emits only an opaque
//! `typedef struct X X;`. Handles are created with [`into_raw`] and destroyed
//! with [`free`]; `free(NULL)` is a no-op.

use crate::{Error, Result};

/// Moves `v` to the heap and returns the owning handle.
pub fn into_raw<T>(v: T) -> *mut T {
    Box::into_raw(Box::new(v))
}

/// Borrows the object behind a handle.
///
/// # Safety
/// `p` must be NULL or a live handle of type `T` from [`into_raw`].
pub unsafe fn get<'a, T>(p: *const T, name: &'static str) -> Result<&'a T> {
    // SAFETY: by the contract, non-NULL means a live Box<T>.
    unsafe { p.as_ref() }.ok_or(Error::NullPointer(name))
}

/// Mutably borrows the object behind a handle.
///
/// # Safety
/// As [`get`], and no other reference to the object may be live (handles that
/// are mutated are documented as not shareable across threads without a lock).
pub unsafe fn get_mut<'a, T>(p: *mut T, name: &'static str) -> Result<&'a mut T> {
    // SAFETY: by the contract.
    unsafe { p.as_mut() }.ok_or(Error::NullPointer(name))
}

/// Destroys a handle; NULL is a no-op.
///
/// # Safety
/// `p` must be NULL or a live handle from [`into_raw`] that is not used again.
pub unsafe fn free<T>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: by the contract, p came from Box::into_raw and is live.
        drop(unsafe { Box::from_raw(p) });
    }
}

/// Stores a new handle in `*out` (checked non-NULL before any work is done by
/// the caller with [`super::args::check_out`]).
///
/// # Safety
/// `out` must be valid for writing one pointer.
pub unsafe fn store<T>(out: *mut *mut T, v: T, name: &'static str) -> Result<()> {
    super::args::check_out(out, name)?;
    // SAFETY: checked above.
    unsafe { out.write(into_raw(v)) };
    Ok(())
}
