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
    /// An allocation was refused. Every allocation whose size comes from a
    /// caller (a dimension, shape, capacity, payload header) goes through
    /// the fallible helpers below, so the library reports this instead of
    /// aborting its host process.
    #[error("out of memory: `{arg}` needs {bytes} bytes")]
    OutOfMemory {
        /// Name of the argument that sized the allocation.
        arg: &'static str,
        /// Bytes requested.
        bytes: usize,
    },
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

/// Gives a field-less enum its C codes from one list: `ALL`, `code()` (a
/// `const fn` with an exhaustive `match`, so a variant without a code does
/// not compile) and `from_code()` (the same list read the other way, so the
/// two cannot disagree; a repeated code fails a compile-time assertion).
/// `src/ffi` ties each `TRITTER_*` constant to `code()` with a compile-time
/// assertion (`ffi::status::c_constants!`).
///
/// ```ignore
/// c_codes!(Algebra, "algebra", "algebra code" { Map = 0 => "MAP", Modular = 1 => "modular" });
/// ```
#[macro_export]
#[doc(hidden)]
macro_rules! c_codes {
    ($ty:ident, $arg:literal, $what:literal { $($v:ident = $c:literal => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every variant, in the order of the code table.
            pub const ALL: &'static [$ty] = &[$($ty::$v),+];
            /// The C code of the variant.
            pub const fn code(self) -> u32 {
                match self {
                    $($ty::$v => $c,)+
                }
            }
            /// The variant with C code `code`; [`Error::InvalidArgument`](crate::Error)
            /// naming the argument otherwise.
            pub fn from_code(code: u32) -> $crate::Result<Self> {
                match code {
                    $($c => Ok($ty::$v),)+
                    _ => Err($crate::Error::invalid(
                        $arg,
                        format!(
                            "unknown {} {code} ({})",
                            $what,
                            [$(concat!(stringify!($c), " = ", $name)),+].join(", ")
                        ),
                    )),
                }
            }
        }
        const _: () = {
            let codes: &[u32] = &[$($c),+];
            let mut i = 0;
            while i < codes.len() {
                let mut j = i + 1;
                while j < codes.len() {
                    assert!(codes[i] != codes[j], "two variants share a C code");
                    j += 1;
                }
                i += 1;
            }
        };
    };
}

/// Element types whose all-zero bit pattern is a valid value (so a zeroed
/// allocation is an initialized buffer of zeros).
///
/// # Safety
/// Implement only for types for which every byte being 0 is a valid value.
pub unsafe trait Zeroable: Copy {}
macro_rules! zeroable {
    ($($t:ty),*) => { $(unsafe impl Zeroable for $t {})* };
}
zeroable!(u8, i8, u16, i16, u32, i32, u64, i64, usize, isize, f32, f64);
unsafe impl<T: Zeroable, const N: usize> Zeroable for [T; N] {}

/// Bytes of `n` values of `T`, or [`Error::SizeOverflow`] when that exceeds
/// `isize::MAX` (the most any allocation may hold).
pub fn alloc_bytes<T>(n: usize, arg: &'static str) -> Result<usize> {
    match n.checked_mul(std::mem::size_of::<T>()) {
        Some(b) if b <= isize::MAX as usize => Ok(b),
        _ => Err(Error::overflow(
            arg,
            format!(
                "{n} elements of {} bytes exceed the largest possible allocation",
                std::mem::size_of::<T>()
            ),
        )),
    }
}

/// `n` zeros, allocated fallibly (zeroed pages from the allocator, as
/// `vec![0; n]` does): [`Error::OutOfMemory`] or [`Error::SizeOverflow`]
/// naming `arg` instead of an abort.
pub fn try_zeroed<T: Zeroable>(n: usize, arg: &'static str) -> Result<Vec<T>> {
    let bytes = alloc_bytes::<T>(n, arg)?;
    if n == 0 || bytes == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<T>(n).map_err(|_| Error::overflow(arg, "layout"))?;
    // SAFETY: layout has non-zero size; an all-zero T is valid (Zeroable),
    // and the pointer comes from the global allocator with T's layout, as
    // Vec::from_raw_parts requires.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout) as *mut T;
        if p.is_null() {
            return Err(Error::OutOfMemory { arg, bytes });
        }
        Ok(Vec::from_raw_parts(p, n, n))
    }
}

/// `n` copies of `value`, allocated fallibly (see [`try_zeroed`]).
pub fn try_vec<T: Clone>(n: usize, value: T, arg: &'static str) -> Result<Vec<T>> {
    let mut v = try_with_capacity(n, arg)?;
    v.resize(n, value);
    Ok(v)
}

/// An empty vector with room for `n` elements, allocated fallibly.
pub fn try_with_capacity<T>(n: usize, arg: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    try_reserve(&mut v, n, arg)?;
    Ok(v)
}

/// Makes room for `additional` more elements in `v`, fallibly.
pub fn try_reserve<T>(v: &mut Vec<T>, additional: usize, arg: &'static str) -> Result<()> {
    let total = v.len().saturating_add(additional);
    let bytes = alloc_bytes::<T>(total, arg)?;
    // amortized (doubling) growth, so a push loop stays linear
    v.try_reserve(additional)
        .map_err(|_| Error::OutOfMemory { arg, bytes })
}

/// A copy of `s`, allocated fallibly.
pub fn try_to_vec<T: Clone>(s: &[T], arg: &'static str) -> Result<Vec<T>> {
    let mut v = try_with_capacity(s.len(), arg)?;
    v.extend_from_slice(s);
    Ok(v)
}

/// Collects an iterator of known length `n` into a vector allocated fallibly.
pub fn try_collect<T>(
    n: usize,
    it: impl IntoIterator<Item = T>,
    arg: &'static str,
) -> Result<Vec<T>> {
    let mut v = try_with_capacity(n, arg)?;
    v.extend(it);
    Ok(v)
}

/// Whether every value in `xs` is finite: an exponent field of all ones
/// (inf or NaN) is found with an integer mask and compare, branch-free (3
/// vector ops a vector).
#[inline(always)]
fn chunk_finite(xs: &[f32]) -> bool {
    const EXP: u32 = 0x7f80_0000;
    xs.iter()
        .fold(0u32, |bad, v| bad | (v.to_bits() & EXP == EXP) as u32)
        == 0
}

/// The index of the first chunk of 1024 values holding a non-finite value,
/// scanned at CPU level `level` (AVX2 code where allowed and supported).
fn first_bad_chunk(level: crate::cpu::CpuLevel, xs: &[f32]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::CpuLevel::Avx2.allowed_under(level) && crate::cpu::CpuLevel::Avx2.is_supported()
    {
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(xs: &[f32]) -> Option<usize> {
            xs.chunks(1024).position(|c| !chunk_finite(c))
        }
        // SAFETY: AVX2 checked above.
        return unsafe { avx2(xs) };
    }
    xs.chunks(1024).position(|c| !chunk_finite(c))
}

/// Returns the index of the first non-finite value, as an error naming `arg`.
pub fn check_finite(xs: &[f32], arg: &'static str) -> Result<()> {
    // Branch-free scan in chunks; only locate the index on failure.
    match first_bad_chunk(crate::cpu::active(), xs) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_found_at_every_level_and_position() {
        let levels = crate::cpu::supported_levels();
        eprintln!(
            "check_finite: levels run {levels:?}; skipped {:?}",
            crate::cpu::unsupported_levels()
        );
        for &level in &levels {
            for n in [0usize, 1, 7, 8, 9, 1023, 1024, 1025, 3000] {
                let ok: Vec<f32> = (0..n)
                    .map(|i| [f32::MAX, -f32::MAX, 0.0, -0.0, f32::MIN_POSITIVE, 1e-45][i % 6])
                    .collect();
                assert_eq!(first_bad_chunk(level, &ok), None, "{level:?} n {n}");
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN] {
                    for at in [0, n / 2, n.saturating_sub(1)]
                        .into_iter()
                        .filter(|&a| a < n)
                    {
                        let mut v = ok.clone();
                        v[at] = bad;
                        assert_eq!(
                            first_bad_chunk(level, &v),
                            Some(at / 1024),
                            "{level:?} n {n} at {at}"
                        );
                        match check_finite(&v, "x") {
                            Err(Error::NonFinite { arg: "x", index }) => assert_eq!(index, at),
                            r => panic!("{r:?}"),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fallible_allocation_reports_instead_of_aborting() {
        // More bytes than isize::MAX: a size error, before asking the allocator.
        assert!(matches!(
            try_zeroed::<f32>(usize::MAX / 2, "n"),
            Err(Error::SizeOverflow { arg: "n", .. })
        ));
        assert!(matches!(
            try_vec(usize::MAX, 0u8, "n"),
            Err(Error::SizeOverflow { arg: "n", .. })
        ));
        // A size the allocator must refuse (2^62 bytes): out of memory.
        match try_zeroed::<u8>(1 << 62, "dim") {
            Err(Error::OutOfMemory { arg, bytes }) => {
                assert_eq!((arg, bytes), ("dim", 1 << 62));
            }
            other => panic!("{other:?}"),
        }
        match try_with_capacity::<u64>(1 << 59, "dim") {
            Err(Error::OutOfMemory { arg: "dim", bytes }) => assert_eq!(bytes, 1 << 62),
            other => panic!("{other:?}"),
        }
        let mut v = vec![1u8; 3];
        assert!(matches!(
            try_reserve(&mut v, 1 << 62, "more"),
            Err(Error::OutOfMemory { arg: "more", .. })
        ));
        // Small sizes work and are zeroed / filled.
        assert_eq!(try_zeroed::<f32>(5, "n").unwrap(), vec![0.0; 5]);
        assert_eq!(try_zeroed::<[u64; 2]>(2, "n").unwrap(), vec![[0; 2]; 2]);
        assert_eq!(try_vec(3, 7i8, "n").unwrap(), vec![7; 3]);
        assert_eq!(try_to_vec(&[1, 2], "n").unwrap(), vec![1, 2]);
        assert!(try_zeroed::<u8>(0, "n").unwrap().is_empty());
        assert_eq!(try_collect(3, 0..3, "n").unwrap(), vec![0, 1, 2]);
    }
}
