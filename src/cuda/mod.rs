//! The CUDA backend: nvcc-built kernels (`cuda/*.cu`, embedded as one fat
//! binary by `build.rs`) launched through the CUDA driver, which is opened
//! at run time (cudarc with dynamic loading). The same library therefore
//! runs with and without a driver or GPU: without one, [`is_available`] is
//! false and every call given device memory fails with
//! [`Error::CudaUnavailable`] naming the reason.
//!
//! Without the `cuda` feature a stub with the same API answers
//! "built without the `cuda` feature" (candle's dummy backend does the same).
//!
//! # What runs on the GPU
//! * [`ternary_matmul`]: `y = x · Wᵀ (+ bias)` for a [`TernaryMatrix`] whose
//!   weights are uploaded once per device (on first use or by
//!   [`TernaryMatrix::to_device`]) in the tensor-core layout of [`layout`];
//!   f32, bf16 and f16 activations (f32 mode) or int8 per-token activations
//!   (int8 mode, bit-identical to the CPU reference).
//! * [`quantize_pack_2bit`]: AbsMean/AbsMax quantization and 2-bit packing,
//!   bit-identical to [`crate::ternary::quant::quantize_pack_2bit`].
//! * [`quantize_activations_i8`]: int8 per-token absmax, bit-identical to
//!   [`crate::ternary::quant::quantize_activations_i8`].
//! * [`convert`]: f32 ↔ bf16/f16, bit-identical to [`crate::precision::convert`].
//! * [`ternary_stochastic_quantize`]: TernGrad blocks, bit-identical to
//!   [`crate::grad::compress::ternary::quantize`] (same counter-based RNG).
//! * [`hv_bind`] and [`hv_similarity_many`]: packed hypervector bind/unbind
//!   and one-vs-many similarity, bit-identical to [`crate::vsa::ops`].
//!
//! Device memory crosses this API as [`DeviceMatrix`] / [`DeviceVector`]
//! views (raw device pointers, so the functions that read them are
//! `unsafe`); [`Buffer`] owns device memory for Rust callers and tests.
//! Work is queued on a caller's [`Stream`] and is asynchronous unless a
//! function says otherwise; kernel faults surface at the next synchronizing
//! call ([`synchronize`]).
//!
//! Not yet on the GPU: VSA bundle/permute/top-k, count sketch and quantized
//! top-k compression. See `cuda/README.md`.

pub mod layout;

#[cfg(feature = "cuda")]
mod backend;
#[cfg(feature = "cuda")]
mod driver;
#[cfg(not(feature = "cuda"))]
mod stub;

#[cfg(feature = "cuda")]
pub use backend::*;
#[cfg(not(feature = "cuda"))]
pub use stub::*;

#[cfg(doc)]
use crate::ternary::TernaryMatrix;
use crate::{Error, Result};

/// A CUDA stream (`CUstream` / `cudaStream_t`) given by the caller, e.g.
/// PyTorch's `torch.cuda.current_stream().cuda_stream`. `Stream::DEFAULT`
/// (NULL) is the legacy default stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream(pub usize);

impl Stream {
    /// The legacy default stream (NULL).
    pub const DEFAULT: Stream = Stream(0);
}

/// Element types of device tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE f32.
    F32,
    /// bfloat16 (raw `u16` bits).
    Bf16,
    /// IEEE f16 (raw `u16` bits).
    F16,
    /// int8.
    I8,
    /// uint8.
    U8,
    /// uint64 (packed hypervector words).
    U64,
    /// IEEE f64.
    F64,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::Bf16 | Dtype::F16 => 2,
            Dtype::I8 | Dtype::U8 => 1,
            Dtype::U64 | Dtype::F64 => 8,
        }
    }
    /// Name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "float32",
            Dtype::Bf16 => "bfloat16",
            Dtype::F16 => "float16",
            Dtype::I8 => "int8",
            Dtype::U8 => "uint8",
            Dtype::U64 => "uint64",
            Dtype::F64 => "float64",
        }
    }
}

/// A row-major matrix in device memory: `rows x cols` elements of `dtype`,
/// row `r` starting `r * ld` elements after `ptr` (`ld >= cols`; unit stride
/// within a row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceMatrix {
    /// Device address of element `[0, 0]`.
    pub ptr: u64,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Row stride in elements.
    pub ld: usize,
    /// Element type.
    pub dtype: Dtype,
    /// CUDA device ordinal.
    pub device: i32,
}

impl DeviceMatrix {
    /// Bytes from `ptr` to one past the last element (0 when empty).
    pub fn extent_bytes(&self) -> Result<usize> {
        if self.rows == 0 || self.cols == 0 {
            return Ok(0);
        }
        (self.rows - 1)
            .checked_mul(self.ld)
            .and_then(|v| v.checked_add(self.cols))
            .and_then(|v| v.checked_mul(self.dtype.size()))
            .ok_or_else(|| Error::overflow("tensor", "device matrix extent overflows"))
    }
}

/// A contiguous vector in device memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceVector {
    /// Device address of element 0.
    pub ptr: u64,
    /// Elements.
    pub len: usize,
    /// Element type.
    pub dtype: Dtype,
    /// CUDA device ordinal.
    pub device: i32,
}

/// Plain element types that [`Buffer`] copies to and from host slices.
///
/// # Safety
/// Implementors must be plain data: every bit pattern valid, no padding.
pub unsafe trait DeviceCopy: Copy + Default + 'static {}
unsafe impl DeviceCopy for f32 {}
unsafe impl DeviceCopy for f64 {}
unsafe impl DeviceCopy for i8 {}
unsafe impl DeviceCopy for u8 {}
unsafe impl DeviceCopy for i32 {}
unsafe impl DeviceCopy for u16 {}
unsafe impl DeviceCopy for u32 {}
unsafe impl DeviceCopy for u64 {}
unsafe impl DeviceCopy for half::f16 {}
unsafe impl DeviceCopy for half::bf16 {}

/// Fails with [`Error::CudaUnavailable`] naming `what` unless CUDA kernels
/// can run ([`is_available`]).
pub fn require(what: &str) -> Result<()> {
    match unavailable_reason() {
        None => Ok(()),
        Some(why) => Err(Error::CudaUnavailable(format!(
            "{what} needs a CUDA device: {why}"
        ))),
    }
}

/// Whether a CUDA build, a driver and at least one GPU that can run the
/// embedded kernels are present (probed once; never fails).
pub fn is_available() -> bool {
    unavailable_reason().is_none()
}

/// `ptxas -v` resource use of every kernel (registers, shared memory, stack,
/// spills) as recorded by `build.rs`; empty without the `cuda` feature.
pub fn resource_report() -> &'static str {
    #[cfg(feature = "cuda")]
    {
        include_str!(concat!(env!("OUT_DIR"), "/ptxas_report.txt"))
    }
    #[cfg(not(feature = "cuda"))]
    {
        ""
    }
}
