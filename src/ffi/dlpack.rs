//! Borrowed DLPack tensor views.
//!
//! [`tritter_dl_tensor_t`] has exactly the layout of DLPack's `DLTensor`
//! (unchanged from DLPack 0.6 through 1.x), so a `DLTensor*` from NumPy,
//! PyTorch, CuPy or JAX can be passed by casting the pointer. The library
//! never takes ownership: the caller keeps the tensor (and its shape/strides
//! arrays) alive for the duration of the call.
//!
//! Strides are in elements; NULL strides mean C-contiguous. Negative strides
//! are rejected; zero strides are accepted for inputs (broadcast) and rejected
//! for outputs of extent > 1.

use std::ffi::c_void;

use ndarray::{ArrayView, ArrayViewMut, IxDyn, ShapeBuilder};

use crate::{Error, Result};

/// DLPack `DLDevice`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct tritter_dl_device_t {
    /// `DLDeviceType`: 1 CPU, 2 CUDA, 3 CUDA host (pinned), 13 CUDA managed, ...
    pub device_type: i32,
    /// Device ordinal (0 for CPU).
    pub device_id: i32,
}

/// DLPack `DLDataType`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct tritter_dl_dtype_t {
    /// `DLDataTypeCode`: 0 int, 1 uint, 2 float, 4 bfloat.
    pub code: u8,
    /// Bits per lane (8, 16, 32, 64).
    pub bits: u8,
    /// Lanes; must be 1.
    pub lanes: u16,
}

/// DLPack `DLTensor` (borrowed).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tritter_dl_tensor_t {
    /// Base pointer (plus `byte_offset`) of the first element.
    pub data: *mut c_void,
    /// Where the data lives.
    pub device: tritter_dl_device_t,
    /// Number of dimensions.
    pub ndim: i32,
    /// Element type.
    pub dtype: tritter_dl_dtype_t,
    /// `ndim` extents.
    pub shape: *mut i64,
    /// `ndim` strides in elements, or NULL for C-contiguous.
    pub strides: *mut i64,
    /// Bytes from `data` to the first element.
    pub byte_offset: u64,
}

/// `kDLCPU`.
pub const TRITTER_DL_CPU: i32 = 1;
/// `kDLCUDA`.
pub const TRITTER_DL_CUDA: i32 = 2;
/// `kDLCUDAHost` (pinned host memory, readable by the CPU).
pub const TRITTER_DL_CUDA_HOST: i32 = 3;
/// `kDLCUDAManaged`.
pub const TRITTER_DL_CUDA_MANAGED: i32 = 13;
/// `kDLInt`.
pub const TRITTER_DL_INT: u8 = 0;
/// `kDLUInt`.
pub const TRITTER_DL_UINT: u8 = 1;
/// `kDLFloat`.
pub const TRITTER_DL_FLOAT: u8 = 2;
/// `kDLBfloat`.
pub const TRITTER_DL_BFLOAT: u8 = 4;

/// Element types that can cross as DLPack tensors.
pub trait DlElem: Copy {
    /// The DLPack type code and bits.
    const DTYPE: (u8, u8);
    /// Name used in messages.
    const NAME: &'static str;
}
macro_rules! dl_elem {
    ($t:ty, $code:expr, $bits:expr, $name:expr) => {
        impl DlElem for $t {
            const DTYPE: (u8, u8) = ($code, $bits);
            const NAME: &'static str = $name;
        }
    };
}
dl_elem!(f32, TRITTER_DL_FLOAT, 32, "float32");
dl_elem!(f64, TRITTER_DL_FLOAT, 64, "float64");
dl_elem!(i8, TRITTER_DL_INT, 8, "int8");
dl_elem!(u8, TRITTER_DL_UINT, 8, "uint8");
dl_elem!(i32, TRITTER_DL_INT, 32, "int32");
dl_elem!(i64, TRITTER_DL_INT, 64, "int64");
dl_elem!(half::f16, TRITTER_DL_FLOAT, 16, "float16");
dl_elem!(half::bf16, TRITTER_DL_BFLOAT, 16, "bfloat16");

fn dtype_name(d: tritter_dl_dtype_t) -> String {
    let k = match d.code {
        TRITTER_DL_INT => "int",
        TRITTER_DL_UINT => "uint",
        TRITTER_DL_FLOAT => "float",
        TRITTER_DL_BFLOAT => "bfloat",
        _ => "code",
    };
    format!("{k}{}x{}", d.bits, d.lanes)
}

/// Where a validated tensor lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// Host memory (CPU or pinned).
    Cpu,
    /// CUDA device memory.
    Cuda(i32),
}

/// Shape, strides and first-element pointer of a validated tensor.
struct Layout {
    ptr: *mut u8,
    shape: Vec<usize>,
    strides: Vec<usize>,
    numel: usize,
}

/// Validates `t` for element type `T` and `ndim` dimensions.
///
/// # Safety
/// `t` must be NULL or point to a valid tensor whose `shape`/`strides` arrays
/// hold `ndim` entries.
unsafe fn layout<T: DlElem>(
    t: *const tritter_dl_tensor_t,
    ndim: usize,
    name: &'static str,
    output: bool,
) -> Result<(Layout, Device)> {
    let t = unsafe { t.as_ref() }.ok_or(Error::NullPointer(name))?;
    let device = match t.device.device_type {
        TRITTER_DL_CPU | TRITTER_DL_CUDA_HOST => Device::Cpu,
        TRITTER_DL_CUDA | TRITTER_DL_CUDA_MANAGED => Device::Cuda(t.device.device_id),
        d => {
            return Err(Error::UnsupportedDevice {
                arg: name,
                msg: format!("device type {d} is not CPU (1) or CUDA (2)"),
            });
        }
    };
    let want = T::DTYPE;
    if (t.dtype.code, t.dtype.bits) != want || t.dtype.lanes != 1 {
        return Err(Error::UnsupportedDtype {
            arg: name,
            msg: format!("expected {}, got {}", T::NAME, dtype_name(t.dtype)),
        });
    }
    if t.ndim < 0 || t.ndim as usize != ndim {
        return Err(Error::shape(
            name,
            format!("expected {ndim} dimensions, got {}", t.ndim),
        ));
    }
    if ndim > 0 && t.shape.is_null() {
        return Err(Error::invalid(name, "shape pointer is NULL"));
    }
    let raw_shape: &[i64] = if ndim == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(t.shape, ndim) }
    };
    let mut shape = Vec::with_capacity(ndim);
    for (i, &s) in raw_shape.iter().enumerate() {
        if s < 0 {
            return Err(Error::invalid(
                name,
                format!("negative extent {s} in dimension {i}"),
            ));
        }
        shape.push(s as usize);
    }
    let mut numel = 1usize;
    for &s in &shape {
        numel = numel
            .checked_mul(s)
            .ok_or_else(|| Error::overflow(name, format!("shape {shape:?} overflows")))?;
    }
    // ndarray's limit for any view (broadcast views included).
    if numel > isize::MAX as usize {
        return Err(Error::overflow(
            name,
            format!("shape {shape:?} has more than isize::MAX elements"),
        ));
    }
    let strides: Vec<usize> = if t.strides.is_null() {
        let mut st = vec![0usize; ndim];
        let mut acc = 1usize;
        for i in (0..ndim).rev() {
            st[i] = acc;
            acc = acc.saturating_mul(shape[i].max(1));
        }
        st
    } else {
        let raw: &[i64] = unsafe { std::slice::from_raw_parts(t.strides, ndim) };
        let mut st = Vec::with_capacity(ndim);
        for (i, &s) in raw.iter().enumerate() {
            if s < 0 {
                return Err(Error::invalid(
                    name,
                    format!("negative stride {s} in dimension {i} is not supported"),
                ));
            }
            if output && s == 0 && shape[i] > 1 && numel > 0 {
                return Err(Error::invalid(
                    name,
                    format!("output has stride 0 in dimension {i}: elements would alias"),
                ));
            }
            st.push(s as usize);
        }
        st
    };
    // Byte extent of the furthest element must be addressable.
    let mut extent = 0usize;
    if numel > 0 {
        for (&s, &st) in shape.iter().zip(&strides) {
            let e = (s - 1)
                .checked_mul(st)
                .and_then(|v| extent.checked_add(v))
                .ok_or_else(|| Error::overflow(name, "strided extent overflows"))?;
            extent = e;
        }
        let bytes = extent
            .checked_add(1)
            .and_then(|v| v.checked_mul(std::mem::size_of::<T>()));
        if !matches!(bytes, Some(b) if b <= isize::MAX as usize) {
            return Err(Error::overflow(
                name,
                "tensor is larger than any addressable buffer",
            ));
        }
    }
    let base = t.data as usize;
    let ptr = base
        .checked_add(t.byte_offset as usize)
        .ok_or_else(|| Error::overflow(name, "data + byte_offset overflows"))?
        as *mut u8;
    if numel > 0 {
        if t.data.is_null() {
            return Err(Error::NullPointer(name));
        }
        if !(ptr as usize).is_multiple_of(std::mem::align_of::<T>()) {
            return Err(Error::invalid(
                name,
                format!("data is not aligned to {} bytes", std::mem::align_of::<T>()),
            ));
        }
    }
    Ok((
        Layout {
            ptr,
            shape,
            strides,
            numel,
        },
        device,
    ))
}

fn require_cpu(d: Device, name: &'static str) -> Result<()> {
    match d {
        Device::Cpu => Ok(()),
        Device::Cuda(_) => crate::cuda::require(name).and(Err(Error::UnsupportedDevice {
            arg: name,
            msg: "CUDA tensors are not supported by this call".into(),
        })),
    }
}

/// A read-only host view of `t` with `ndim` dimensions.
///
/// # Safety
/// `t` must be NULL or a valid tensor whose data stays valid and unmodified for `'a`.
pub unsafe fn view<'a, T: DlElem>(
    t: *const tritter_dl_tensor_t,
    ndim: usize,
    name: &'static str,
) -> Result<ArrayView<'a, T, IxDyn>> {
    let (l, dev) = unsafe { layout::<T>(t, ndim, name, false)? };
    require_cpu(dev, name)?;
    if l.numel == 0 {
        return Ok(ArrayView::from_shape(IxDyn(&l.shape), &[]).expect("empty view"));
    }
    // SAFETY: validated non-NULL, aligned, extent addressable; validity is the caller's contract.
    Ok(unsafe {
        ArrayView::from_shape_ptr(
            IxDyn(&l.shape).strides(IxDyn(&l.strides)),
            l.ptr as *const T,
        )
    })
}

/// A writable host view of `t` with `ndim` dimensions.
///
/// # Safety
/// As [`view`], and the data must not be aliased by any other argument.
pub unsafe fn view_mut<'a, T: DlElem>(
    t: *const tritter_dl_tensor_t,
    ndim: usize,
    name: &'static str,
) -> Result<ArrayViewMut<'a, T, IxDyn>> {
    let (l, dev) = unsafe { layout::<T>(t, ndim, name, true)? };
    require_cpu(dev, name)?;
    if l.numel == 0 {
        return Ok(ArrayViewMut::from_shape(IxDyn(&l.shape), &mut []).expect("empty view"));
    }
    // SAFETY: as in `view`; outputs have no zero strides of extent > 1.
    Ok(unsafe {
        ArrayViewMut::from_shape_ptr(IxDyn(&l.shape).strides(IxDyn(&l.strides)), l.ptr as *mut T)
    })
}

/// [`view`] as a 2-D array.
///
/// # Safety
/// As [`view`].
pub unsafe fn view2<'a, T: DlElem>(
    t: *const tritter_dl_tensor_t,
    name: &'static str,
) -> Result<ndarray::ArrayView2<'a, T>> {
    Ok(unsafe { view::<T>(t, 2, name)? }
        .into_dimensionality()
        .expect("ndim checked"))
}

/// [`view`] as a 1-D array.
///
/// # Safety
/// As [`view`].
pub unsafe fn view1<'a, T: DlElem>(
    t: *const tritter_dl_tensor_t,
    name: &'static str,
) -> Result<ndarray::ArrayView1<'a, T>> {
    Ok(unsafe { view::<T>(t, 1, name)? }
        .into_dimensionality()
        .expect("ndim checked"))
}

/// [`view_mut`] as a 2-D array.
///
/// # Safety
/// As [`view_mut`].
pub unsafe fn view2_mut<'a, T: DlElem>(
    t: *const tritter_dl_tensor_t,
    name: &'static str,
) -> Result<ndarray::ArrayViewMut2<'a, T>> {
    Ok(unsafe { view_mut::<T>(t, 2, name)? }
        .into_dimensionality()
        .expect("ndim checked"))
}

/// [`view_mut`] as a 1-D array.
///
/// # Safety
/// As [`view_mut`].
pub unsafe fn view1_mut<'a, T: DlElem>(
    t: *const tritter_dl_tensor_t,
    name: &'static str,
) -> Result<ndarray::ArrayViewMut1<'a, T>> {
    Ok(unsafe { view_mut::<T>(t, 1, name)? }
        .into_dimensionality()
        .expect("ndim checked"))
}
