//! Version, ABI check, thread count, CUDA probe.

use std::ffi::c_char;

use super::args;
use super::status::{guard, guard_value, tritter_status_t};
use crate::Error;

/// Major version of the library this header belongs to.
pub const TRITTER_VERSION_MAJOR: u32 = 0;
/// Minor version.
pub const TRITTER_VERSION_MINOR: u32 = 1;
/// Patch version.
pub const TRITTER_VERSION_PATCH: u32 = 0;
/// ABI version: bumped on any incompatible change to an export, struct or enum.
/// Loaders compare it with [`tritter_abi_version`] before making any other call.
pub const TRITTER_ABI_VERSION: u32 = 1;

/// The library version as a static NUL-terminated string, `"MAJOR.MINOR.PATCH"`.
#[no_mangle]
pub extern "C" fn tritter_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The ABI version the library was built with (compare with `TRITTER_ABI_VERSION`).
#[no_mangle]
pub extern "C" fn tritter_abi_version() -> u32 {
    TRITTER_ABI_VERSION
}

/// Whether CUDA kernels can run (a CUDA build, a driver and a device). Never fails.
#[no_mangle]
pub extern "C" fn tritter_cuda_available() -> bool {
    guard_value(false, crate::cuda::is_available)
}

/// Sets the number of worker threads the library's kernels use (0 = default:
/// `TRITTER_NUM_THREADS` or the available parallelism). Results never depend
/// on it. Thread-safe; calls in progress finish on the previous pool.
#[no_mangle]
pub extern "C" fn tritter_set_num_threads(num_threads: usize) -> tritter_status_t {
    guard(|| {
        if num_threads > 4096 {
            return Err(Error::invalid(
                "num_threads",
                format!("{num_threads} is more than 4096"),
            ));
        }
        crate::parallel::set_num_threads(num_threads);
        Ok(())
    })
}

/// Writes the number of worker threads to `*num_threads_out`.
///
/// # Safety
/// `num_threads_out` must be valid for writing one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn tritter_get_num_threads(num_threads_out: *mut usize) -> tritter_status_t {
    guard(|| unsafe {
        args::write(
            num_threads_out,
            crate::parallel::num_threads(),
            "num_threads_out",
        )
    })
}
