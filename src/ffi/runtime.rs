//! Version, ABI check, thread count, CPU level, CUDA probe.

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
#[must_use]
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
#[must_use]
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

/// CPU level code: portable scalar code.
pub const TRITTER_CPU_LEVEL_SCALAR: u32 = 0;
/// CPU level code: x86-64-v3 (AVX2, FMA, F16C, BMI2).
pub const TRITTER_CPU_LEVEL_AVX2: u32 = 1;
/// CPU level code: x86-64-v4 (AVX-512 F/BW/DQ/VL/CD).
pub const TRITTER_CPU_LEVEL_AVX512: u32 = 2;
/// CPU level code: AVX-512 with VNNI.
pub const TRITTER_CPU_LEVEL_AVX512VNNI: u32 = 3;
/// CPU level code: aarch64 NEON.
pub const TRITTER_CPU_LEVEL_NEON: u32 = 16;

super::status::c_constants!(crate::cpu::CpuLevel, &crate::cpu::CpuLevel::LEVELS, {
    crate::cpu::CpuLevel::Scalar => TRITTER_CPU_LEVEL_SCALAR,
    crate::cpu::CpuLevel::Avx2 => TRITTER_CPU_LEVEL_AVX2,
    crate::cpu::CpuLevel::Avx512 => TRITTER_CPU_LEVEL_AVX512,
    crate::cpu::CpuLevel::Avx512Vnni => TRITTER_CPU_LEVEL_AVX512VNNI,
    crate::cpu::CpuLevel::Neon => TRITTER_CPU_LEVEL_NEON,
});

/// Writes the CPU instruction-set level this CPU supports (`*detected_out`)
/// and the one every kernel runs at (`*active_out`: the detected level, or
/// the lower one named by `TRITTER_CPU_LEVEL`). Codes are `TRITTER_CPU_LEVEL_*`;
/// [`tritter_cpu_level_name`] names them.
/// Either pointer may be NULL (that value is not written).
///
/// # Safety
/// Each non-NULL pointer must be valid for writing one `uint32_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_cpu_level(
    detected_out: *mut u32,
    active_out: *mut u32,
) -> tritter_status_t {
    guard(|| unsafe {
        if !detected_out.is_null() {
            args::write(detected_out, crate::cpu::detected().code(), "detected_out")?;
        }
        if !active_out.is_null() {
            args::write(active_out, crate::cpu::active().code(), "active_out")?;
        }
        Ok(())
    })
}

/// The name of a CPU level code (`"scalar"`, `"avx2"`, `"avx512"`,
/// `"avx512vnni"`, `"neon"`) as a static NUL-terminated string, or NULL for
/// an unknown code. Never fails.
#[no_mangle]
pub extern "C" fn tritter_cpu_level_name(level: u32) -> *const c_char {
    match crate::cpu::CpuLevel::from_code(level) {
        Some(crate::cpu::CpuLevel::Scalar) => c"scalar".as_ptr(),
        Some(crate::cpu::CpuLevel::Avx2) => c"avx2".as_ptr(),
        Some(crate::cpu::CpuLevel::Avx512) => c"avx512".as_ptr(),
        Some(crate::cpu::CpuLevel::Avx512Vnni) => c"avx512vnni".as_ptr(),
        Some(crate::cpu::CpuLevel::Neon) => c"neon".as_ptr(),
        None => std::ptr::null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_level_names_are_the_core_names() {
        for l in crate::cpu::CpuLevel::LEVELS {
            let p = tritter_cpu_level_name(l.code());
            let n = unsafe { std::ffi::CStr::from_ptr(p) };
            assert_eq!(n.to_str().unwrap(), l.name());
        }
        assert!(tritter_cpu_level_name(99).is_null());
    }
}
