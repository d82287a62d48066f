//! Validation of raw pointers and sizes coming from C.
//!
//! Conventions: `(NULL, 0)` is a valid empty slice; `NULL` with a non-zero
//! length is [`Error::NullPointer`]; a pointer not aligned for its element type
//! or a length whose byte size exceeds `isize::MAX` is an error naming the
//! argument. Whether the memory really holds `len` elements is the caller's
//! contract (documented in each export's `# Safety`).

use crate::{Error, Result};

fn check_ptr<T>(p: *const T, len: usize, name: &'static str) -> Result<()> {
    if p.is_null() {
        return if len == 0 {
            Ok(())
        } else {
            Err(Error::NullPointer(name))
        };
    }
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(Error::invalid(
            name,
            format!(
                "pointer {p:p} is not aligned to {} bytes",
                std::mem::align_of::<T>()
            ),
        ));
    }
    match len.checked_mul(std::mem::size_of::<T>()) {
        Some(b) if b <= isize::MAX as usize => Ok(()),
        _ => Err(Error::overflow(
            name,
            format!("length {len} is larger than any addressable buffer"),
        )),
    }
}

/// Borrows `len` elements at `p` (see the module conventions).
///
/// # Safety
/// If non-NULL, `p` must point to `len` initialized elements that stay valid
/// and unmodified for `'a`.
pub unsafe fn slice<'a, T>(p: *const T, len: usize, name: &'static str) -> Result<&'a [T]> {
    check_ptr(p, len, name)?;
    if len == 0 {
        return Ok(&[]);
    }
    // SAFETY: non-NULL, aligned, size-checked; validity is the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// Mutably borrows `len` elements at `p` (see the module conventions).
///
/// # Safety
/// If non-NULL, `p` must point to `len` writable elements, not aliased by any
/// other argument, valid for `'a`.
pub unsafe fn slice_mut<'a, T>(p: *mut T, len: usize, name: &'static str) -> Result<&'a mut [T]> {
    check_ptr(p, len, name)?;
    if len == 0 {
        return Ok(&mut []);
    }
    // SAFETY: as in `slice`, plus exclusivity from the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// Borrows an output slice of at least `needed` elements; returns exactly `needed`.
///
/// # Safety
/// As [`slice_mut`] for `len` elements.
pub unsafe fn out_slice<'a, T>(
    p: *mut T,
    len: usize,
    needed: usize,
    name: &'static str,
) -> Result<&'a mut [T]> {
    if len < needed {
        return Err(Error::BufferTooSmall {
            arg: name,
            needed,
            got: len,
        });
    }
    let s = unsafe { slice_mut(p, len, name)? };
    Ok(&mut s[..needed])
}

/// Borrows a required object.
///
/// # Safety
/// If non-NULL, `p` must point to a valid, initialized `T` for `'a`.
pub unsafe fn reference<'a, T>(p: *const T, name: &'static str) -> Result<&'a T> {
    check_ptr(p, 1, name)?;
    // SAFETY: checked non-NULL above (len 1) and aligned.
    unsafe { p.as_ref() }.ok_or(Error::NullPointer(name))
}

/// Borrows an optional object (NULL -> `None`).
///
/// # Safety
/// As [`reference`](fn@reference) when non-NULL.
pub unsafe fn optional<'a, T>(p: *const T, name: &'static str) -> Result<Option<&'a T>> {
    if p.is_null() {
        Ok(None)
    } else {
        unsafe { reference(p, name) }.map(Some)
    }
}

/// Writes `v` to a required out-parameter.
///
/// # Safety
/// If non-NULL, `p` must be valid for writing one `T`.
pub unsafe fn write<T>(p: *mut T, v: T, name: &'static str) -> Result<()> {
    check_ptr(p, 1, name)?;
    if p.is_null() {
        return Err(Error::NullPointer(name));
    }
    // SAFETY: non-NULL, aligned; validity is the caller's contract.
    unsafe { p.write(v) };
    Ok(())
}

/// Checks a required out-parameter without writing it (to fail before work).
pub fn check_out<T>(p: *mut T, name: &'static str) -> Result<()> {
    if p.is_null() {
        return Err(Error::NullPointer(name));
    }
    check_ptr(p as *const T, 1, name)
}

/// `rows * cols` for a matrix argument, with overflow naming `arg`.
pub fn elems(rows: usize, cols: usize, arg: &'static str) -> Result<usize> {
    let n = crate::checked_mul(rows, cols, arg)?;
    if n > isize::MAX as usize / 4 {
        return Err(Error::overflow(
            arg,
            format!("{rows} x {cols} elements is larger than any addressable buffer"),
        ));
    }
    Ok(n)
}
