//! Reading and writing weight files: safetensors ([`safetensors`]), Hugging
//! Face BitNet checkpoints ([`hf`]) and GGUF v3 ([`gguf`]), behind one
//! [`Checkpoint`] that opens any of them.
//!
//! Files are memory-mapped, never read whole into a `Vec`: listing tensors
//! touches only the header, and a tensor's bytes are read once, when it is
//! converted. Every length a file states is checked against the file's size
//! before anything is allocated, so a lying header is an error, not an
//! allocation of terabytes; allocations sized by file contents are fallible
//! ([`try_alloc`]). Errors name the file or tensor and the problem.
//!
//! A mapped file must not be truncated or rewritten by another process while
//! it is open: the bytes were validated at open time, and a shrinking file
//! makes later reads of the mapping fault (SIGBUS), as with every
//! memory-mapped reader.
//!
//! Byte order: every format here is little-endian; this module assumes a
//! little-endian host (x86-64, aarch64).

pub mod checkpoint;
pub mod dtype;
pub mod gguf;
pub mod hf;
pub mod safetensors;

pub use checkpoint::{Checkpoint, SaveFormat, SaveItem};
pub use dtype::{Dtype, TensorInfo};
pub use hf::{HfCheckpoint, HfConfig, ScaleConvention};

use crate::{Error, Result};

/// A `Vec` of `n` copies of `v`, or an error instead of an abort when the
/// memory is not there (`arg` names what was being allocated).
pub fn try_alloc<T: Clone>(n: usize, v: T, arg: &'static str) -> Result<Vec<T>> {
    crate::error::try_vec(n, v, arg)
}

/// Maps `path` read-only. Empty files map as an empty slice.
pub(crate) fn map_file(path: &std::path::Path) -> Result<Mapping> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::Io(format!("cannot open {}: {e}", path.display())))?;
    let len = file
        .metadata()
        .map_err(|e| Error::Io(format!("cannot stat {}: {e}", path.display())))?
        .len();
    if len == 0 {
        return Ok(Mapping::Empty);
    }
    // SAFETY: the mapping is read-only and private; the module docs state
    // that the file must not be truncated while it is open (as for every
    // mmap-based reader). All reads go through bounds-checked slices of it.
    let map = unsafe { memmap2::MmapOptions::new().map(&file) }
        .map_err(|e| Error::Io(format!("cannot map {}: {e}", path.display())))?;
    Ok(Mapping::Map(map))
}

/// A read-only file mapping, or bytes held in memory (fuzzing, tests).
#[derive(Debug)]
pub(crate) enum Mapping {
    /// An empty file.
    Empty,
    /// A mapped file.
    Map(memmap2::Mmap),
    /// Bytes in memory.
    Owned(Vec<u8>),
}

impl Mapping {
    /// The file's bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Mapping::Empty => &[],
            Mapping::Map(m) => m,
            Mapping::Owned(v) => v,
        }
    }

    /// Asks the kernel to start reading the pages of `range` from the file
    /// now (`MADV_WILLNEED`: asynchronous readahead into the page cache; it
    /// maps nothing, so resident memory does not grow). Loading calls it on
    /// the tensor it converts and the bytes after it, so that a cold file is
    /// read in large requests while the previous tensor converts.
    pub(crate) fn prefetch(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        if let Mapping::Map(m) = self {
            let page = 4096;
            let start = (range.start / page) * page;
            let end = range.end.min(m.len());
            if end > start {
                // Errors only cost speed.
                let _ = m.advise_range(memmap2::Advice::WillNeed, start, end - start);
            }
        }
        #[cfg(not(unix))]
        let _ = range;
    }

    /// Tells the kernel that the pages of `range` are no longer needed by
    /// this process (they leave its resident set; the page cache keeps
    /// them). Used after a tensor has been converted into its own buffer.
    pub(crate) fn release(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        if let Mapping::Map(m) = self {
            let page = 4096;
            let start = range.start.div_ceil(page) * page;
            let end = (range.end.min(m.len()) / page) * page;
            if end > start {
                // Only whole pages inside the range; errors only cost memory.
                // SAFETY: DontNeed on a private read-only file mapping only
                // drops pages, which are re-read from the file on access.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
        #[cfg(not(unix))]
        let _ = range;
    }
}

/// `src` as little-endian `u16`s: borrowed when aligned, else copied.
pub(crate) fn le_u16s<'a>(src: &'a [u8], arg: &'static str) -> Result<std::borrow::Cow<'a, [u16]>> {
    debug_assert!(src.len().is_multiple_of(2));
    // SAFETY: u16 accepts every bit pattern; align_to only yields an aligned
    // middle part.
    let (head, mid, tail) = unsafe { src.align_to::<u16>() };
    if head.is_empty() && tail.is_empty() {
        return Ok(std::borrow::Cow::Borrowed(mid));
    }
    let mut v = try_alloc(src.len() / 2, 0u16, arg)?;
    for (d, c) in v.iter_mut().zip(src.chunks_exact(2)) {
        *d = u16::from_le_bytes([c[0], c[1]]);
    }
    Ok(std::borrow::Cow::Owned(v))
}

/// Converts little-endian bytes of `dtype` to f32 into `dst` (`dst.len()`
/// elements). Integer dtypes are cast; TQ1_0/TQ2_0 are dequantized as ggml does.
pub(crate) fn to_f32_into(dtype: Dtype, src: &[u8], dst: &mut [f32], name: &str) -> Result<()> {
    let n = dst.len();
    match dtype {
        Dtype::F32 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Dtype::F64 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(8)) {
                *d = f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32;
            }
        }
        Dtype::BF16 => crate::precision::bf16_to_f32(&le_u16s(src, "tensor")?, dst)?,
        Dtype::F16 => crate::precision::f16_to_f32(&le_u16s(src, "tensor")?, dst)?,
        Dtype::U8 => dst.iter_mut().zip(src).for_each(|(d, &b)| *d = b as f32),
        Dtype::I8 => dst
            .iter_mut()
            .zip(src)
            .for_each(|(d, &b)| *d = b as i8 as f32),
        Dtype::Bool => dst
            .iter_mut()
            .zip(src)
            .for_each(|(d, &b)| *d = (b != 0) as u8 as f32),
        Dtype::I16 | Dtype::U16 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                let v = u16::from_le_bytes([c[0], c[1]]);
                *d = if dtype == Dtype::I16 {
                    v as i16 as f32
                } else {
                    v as f32
                };
            }
        }
        Dtype::I32 | Dtype::U32 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                *d = if dtype == Dtype::I32 {
                    v as i32 as f32
                } else {
                    v as f32
                };
            }
        }
        Dtype::I64 | Dtype::U64 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(8)) {
                let v = u64::from_le_bytes(c.try_into().expect("8 bytes"));
                *d = if dtype == Dtype::I64 {
                    v as i64 as f32
                } else {
                    v as f32
                };
            }
        }
        Dtype::TQ1_0 => gguf::dequantize_tq1_0(src, dst, name)?,
        Dtype::TQ2_0 => gguf::dequantize_tq2_0(src, dst, name)?,
        Dtype::Other(_) => {
            return Err(Error::UnsupportedDtype {
                arg: "tensor",
                msg: format!("`{name}` is {dtype}, which has no f32 conversion"),
            })
        }
    }
    debug_assert_eq!(dtype.nbytes(n), Some(src.len()));
    Ok(())
}

#[cfg(test)]
mod tests;
