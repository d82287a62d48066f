//! The device selector that replaces the seed's candle `Device`.

use crate::{Error, Result};

/// Where a computation runs. The CPU always works; `Cuda(ordinal)` needs a
/// build with the `cuda` feature, a driver and a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// The host CPU (kernels at [`crate::cpu::active`]'s level).
    #[default]
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
}

impl Device {
    /// `Cuda(ordinal)` when CUDA is available ([`crate::cuda::is_available`]),
    /// else `Cpu` (as candle's `Device::cuda_if_available`). Never fails.
    pub fn cuda_if_available(ordinal: usize) -> Result<Device> {
        Ok(if crate::cuda::is_available() {
            Device::Cuda(ordinal)
        } else {
            Device::Cpu
        })
    }

    /// `Cuda(ordinal)`, or [`Error::CudaUnavailable`] when CUDA cannot run.
    pub fn new_cuda(ordinal: usize) -> Result<Device> {
        if crate::cuda::is_available() {
            Ok(Device::Cuda(ordinal))
        } else {
            Err(Error::CudaUnavailable(
                "no CUDA device (library built without the `cuda` feature, or no driver/GPU)"
                    .into(),
            ))
        }
    }

    /// Whether this is a CUDA device.
    pub fn is_cuda(&self) -> bool {
        matches!(self, Device::Cuda(_))
    }

    /// Whether this is the CPU.
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }
}
