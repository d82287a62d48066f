//! The backend of a build without the `cuda` feature: the same API as
//! `backend.rs`, every call answering [`Error::CudaUnavailable`].

use super::{DeviceCopy, DeviceMatrix, DeviceVector, Dtype, Stream};
use crate::ternary::quant::QuantConfig;
use crate::ternary::{ActivationMode, TernaryMatrix};
use crate::{Error, Result};

const WHY: &str = "this library was built without the `cuda` feature";

fn unavailable<T>() -> Result<T> {
    Err(Error::CudaUnavailable(WHY.into()))
}

/// Why CUDA kernels cannot run here (`None` when they can).
pub fn unavailable_reason() -> Option<String> {
    Some(WHY.into())
}

/// Number of CUDA devices that can run the kernels (0 here).
pub fn device_count() -> usize {
    0
}

/// Name, compute capability and multiprocessor count of `device`.
pub fn describe(_device: i32) -> Result<String> {
    unavailable()
}

/// Waits for all work queued on `device`.
pub fn synchronize(_device: i32) -> Result<()> {
    unavailable()
}

/// Device copies of a [`TernaryMatrix`]'s weights (none without CUDA).
#[derive(Debug, Clone, Default)]
pub struct DeviceCache;

impl DeviceCache {
    /// Devices holding a copy.
    pub fn devices(&self) -> Vec<i32> {
        Vec::new()
    }
}

/// Uploads `m`'s weights to `device` (see [`TernaryMatrix::to_device`]).
pub fn upload(_m: &TernaryMatrix, _device: i32) -> Result<()> {
    unavailable()
}

/// `y = x · Wᵀ (+ bias)` on the GPU.
///
/// # Safety
/// Every view must describe live device memory.
pub unsafe fn ternary_matmul(
    _m: &TernaryMatrix,
    _x: DeviceMatrix,
    _bias: Option<DeviceVector>,
    _mode: ActivationMode,
    _y: DeviceMatrix,
    _stream: Stream,
) -> Result<()> {
    unavailable()
}

/// Quantizes and packs `w` on the GPU.
///
/// # Safety
/// Every view must describe live device memory.
pub unsafe fn quantize_pack_2bit(
    _w: DeviceMatrix,
    _cfg: &QuantConfig,
    _packed: DeviceMatrix,
    _scales: DeviceVector,
    _stream: Stream,
) -> Result<()> {
    unavailable()
}

/// Int8 per-token activation quantization on the GPU.
///
/// # Safety
/// Every view must describe live device memory.
pub unsafe fn quantize_activations_i8(
    _x: DeviceMatrix,
    _q: DeviceMatrix,
    _scales: DeviceVector,
    _stream: Stream,
) -> Result<()> {
    unavailable()
}

/// f32 ↔ bf16/f16 conversion on the GPU.
///
/// # Safety
/// Both views must describe live device memory.
pub unsafe fn convert(_src: DeviceVector, _dst: DeviceVector, _stream: Stream) -> Result<()> {
    unavailable()
}

/// TernGrad quantization of `g` on the GPU.
///
/// # Safety
/// Every view must describe live device memory.
pub unsafe fn ternary_stochastic_quantize(
    _g: DeviceVector,
    _block: usize,
    _seed: u64,
    _scales: DeviceVector,
    _packed: DeviceVector,
    _stream: Stream,
) -> Result<()> {
    unavailable()
}

/// Packed hypervector bind/unbind on the GPU.
///
/// # Safety
/// Every view must describe live device memory.
pub unsafe fn hv_bind(
    _a: DeviceMatrix,
    _b: DeviceMatrix,
    _dim: usize,
    _algebra: crate::vsa::Algebra,
    _unbind: bool,
    _out: DeviceMatrix,
    _stream: Stream,
) -> Result<()> {
    unavailable()
}

/// One-vs-many packed hypervector similarity on the GPU.
///
/// # Safety
/// Every view must describe live device memory.
pub unsafe fn hv_similarity_many(
    _query: DeviceVector,
    _rows: DeviceMatrix,
    _dim: usize,
    _metric: crate::vsa::Metric,
    _out: DeviceVector,
    _stream: Stream,
) -> Result<()> {
    unavailable()
}

/// Device memory owned by Rust code (cannot exist without CUDA).
#[derive(Debug)]
pub struct Buffer {
    never: std::convert::Infallible,
}

impl Buffer {
    /// `bytes` zeroed bytes on `device`.
    pub fn zeroed(_device: i32, _bytes: usize) -> Result<Buffer> {
        unavailable()
    }
    /// A copy of `data` on `device`.
    pub fn from_slice<T: DeviceCopy>(_device: i32, _data: &[T]) -> Result<Buffer> {
        unavailable()
    }
    /// The contents as `T`s (synchronizes the device).
    pub fn to_vec<T: DeviceCopy>(&self) -> Result<Vec<T>> {
        match self.never {}
    }
    /// Overwrites the start of the buffer with `data`.
    pub fn copy_from_slice<T: DeviceCopy>(&self, _data: &[T]) -> Result<()> {
        match self.never {}
    }
    /// Device address.
    pub fn ptr(&self) -> u64 {
        match self.never {}
    }
    /// Device ordinal.
    pub fn device(&self) -> i32 {
        match self.never {}
    }
    /// Size in bytes.
    pub fn len_bytes(&self) -> usize {
        match self.never {}
    }
    /// A `rows x cols` row-major view of `dtype` elements.
    pub fn matrix(&self, _rows: usize, _cols: usize, _dtype: Dtype) -> Result<DeviceMatrix> {
        match self.never {}
    }
    /// A `len`-element view of `dtype` elements.
    pub fn vector(&self, _len: usize, _dtype: Dtype) -> Result<DeviceVector> {
        match self.never {}
    }
}
