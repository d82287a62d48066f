//! The CUDA driver, opened at run time through cudarc's raw bindings
//! (`cudarc::driver::sys` with dynamic loading): devices, their primary
//! contexts and the embedded kernel image, device memory, launches.
//!
//! `is_culib_present()` is asked before any other driver call (a call
//! without the library panics inside cudarc), and every first touch of the
//! driver runs inside `catch_unwind` so that a missing symbol in an old
//! driver becomes "CUDA unavailable" instead of a panic.

use std::ffi::{c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock};

use cudarc::driver::sys;

use super::Stream;
use crate::{Error, Result};

#[repr(C, align(64))]
struct Aligned<T: ?Sized>(T);

/// The fat binary built by build.rs (SASS sm_80/86/89/90, PTX compute_80).
static IMAGE: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(
    env!("OUT_DIR"),
    "/tritter_kernels.fatbin"
)));

/// Maps a driver status to [`Error::Cuda`] naming the call.
pub(crate) fn check(r: sys::CUresult, what: &str) -> Result<()> {
    r.result().map_err(|e| Error::Cuda(format!("{what}: {e}")))
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// One GPU: its retained primary context (the one the CUDA runtime, and so
/// PyTorch, uses) and the kernel image loaded into it.
pub(crate) struct Device {
    pub ordinal: i32,
    ctx: sys::CUcontext,
    module: sys::CUmodule,
    funcs: Mutex<Vec<(&'static str, usize, bool)>>,
    /// Stream-ordered allocation (cuMemAllocAsync) works here.
    pub pools: bool,
    /// Our own memory pool for scratch (`CUmemoryPool`, 0 if none): it keeps
    /// freed memory reserved, where the default pool would return it to the
    /// system at every synchronization.
    pool: usize,
    pub sm_count: i32,
    pub cc: (i32, i32),
    pub name: String,
}

// SAFETY: the context and module handles are process-wide driver objects
// usable from any thread once pushed current; `funcs` is behind a mutex.
unsafe impl Send for Device {}
unsafe impl Sync for Device {}

struct Driver {
    devices: Vec<OnceLock<std::result::Result<Device, String>>>,
}

static DRIVER: OnceLock<std::result::Result<Driver, String>> = OnceLock::new();

fn open_driver() -> std::result::Result<Driver, String> {
    // SAFETY: is_culib_present only tries to dlopen the library; the other
    // calls are plain driver queries with valid out-pointers.
    unsafe {
        if !sys::is_culib_present() {
            return Err(
                "the CUDA driver library (libcuda.so) is not installed on this machine".into(),
            );
        }
        sys::cuInit(0)
            .result()
            .map_err(|e| format!("the CUDA driver did not initialize (cuInit: {e})"))?;
        let mut n = 0;
        sys::cuDeviceGetCount(&mut n)
            .result()
            .map_err(|e| format!("cuDeviceGetCount: {e}"))?;
        if n <= 0 {
            return Err("the CUDA driver sees no GPU".into());
        }
        Ok(Driver {
            devices: (0..n).map(|_| OnceLock::new()).collect(),
        })
    }
}

fn driver() -> std::result::Result<&'static Driver, String> {
    DRIVER
        .get_or_init(|| {
            catch_unwind(open_driver).unwrap_or_else(|p| {
                Err(format!("loading the CUDA driver failed: {}", panic_text(p)))
            })
        })
        .as_ref()
        .map_err(|m| m.clone())
}

fn attr(dev: sys::CUdevice, a: sys::CUdevice_attribute) -> i32 {
    let mut v = 0;
    // SAFETY: valid out-pointer; an unsupported attribute leaves 0.
    let _ = unsafe { sys::cuDeviceGetAttribute(&mut v, a, dev) };
    v
}

impl Device {
    fn open(ordinal: i32) -> std::result::Result<Device, String> {
        use sys::CUdevice_attribute::*;
        // SAFETY: driver calls with valid out-pointers; the context pushed
        // here is popped before returning.
        unsafe {
            let mut dev = 0;
            sys::cuDeviceGet(&mut dev, ordinal)
                .result()
                .map_err(|e| format!("cuDeviceGet({ordinal}): {e}"))?;
            let mut name = [0 as std::ffi::c_char; 256];
            let _ = sys::cuDeviceGetName(name.as_mut_ptr(), 255, dev);
            let name = std::ffi::CStr::from_ptr(name.as_ptr())
                .to_string_lossy()
                .into_owned();
            let cc = (
                attr(dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                attr(dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
            );
            let mut ctx = std::ptr::null_mut();
            sys::cuDevicePrimaryCtxRetain(&mut ctx, dev)
                .result()
                .map_err(|e| format!("cuDevicePrimaryCtxRetain on {name}: {e}"))?;
            sys::cuCtxPushCurrent_v2(ctx)
                .result()
                .map_err(|e| format!("cuCtxPushCurrent: {e}"))?;
            let mut module = std::ptr::null_mut();
            let r = sys::cuModuleLoadData(&mut module, IMAGE.0.as_ptr() as *const c_void);
            let mut old = std::ptr::null_mut();
            let _ = sys::cuCtxPopCurrent_v2(&mut old);
            if let Err(e) = r.result() {
                let _ = sys::cuDevicePrimaryCtxRelease_v2(dev);
                return Err(format!(
                    "the embedded kernels do not load on {name} (compute capability {}.{}): \
                     they are built for sm_80, sm_86, sm_89, sm_90 and PTX compute_80, so \
                     GPUs older than Ampere cannot run them ({e})",
                    cc.0, cc.1
                ));
            }
            let pools = attr(dev, CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED) != 0;
            let pool = if pools { scratch_pool(ordinal) } else { 0 };
            Ok(Device {
                ordinal,
                ctx,
                module,
                funcs: Mutex::new(Vec::new()),
                pools,
                pool,
                sm_count: attr(dev, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).max(1),
                cc,
                name,
            })
        }
    }

    /// Makes this device's context current until the guard drops.
    pub fn enter(&self) -> Result<Current<'_>> {
        // SAFETY: ctx is a retained primary context.
        check(
            unsafe { sys::cuCtxPushCurrent_v2(self.ctx) },
            "cuCtxPushCurrent",
        )?;
        Ok(Current(std::marker::PhantomData))
    }

    /// The kernel `name` of the embedded image; `smem` > 48 KiB raises the
    /// kernel's dynamic shared-memory limit first (once).
    pub fn func(&self, name: &'static str, smem: usize) -> Result<sys::CUfunction> {
        let mut funcs = self.funcs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = funcs.iter_mut().find(|e| e.0 == name) {
            let f = e.1 as sys::CUfunction;
            if smem > 48 << 10 && !e.2 {
                raise_smem(f, smem, name)?;
                e.2 = true;
            }
            return Ok(f);
        }
        let c = CString::new(name).expect("kernel names have no NUL");
        let mut f = std::ptr::null_mut();
        // SAFETY: module is loaded; the name is a valid C string.
        check(
            unsafe { sys::cuModuleGetFunction(&mut f, self.module, c.as_ptr()) },
            &format!("cuModuleGetFunction({name})"),
        )?;
        let raised = smem > 48 << 10;
        if raised {
            raise_smem(f, smem, name)?;
        }
        funcs.push((name, f as usize, raised));
        Ok(f)
    }

    /// Launches `f` on `stream` (the caller's context must be current).
    ///
    /// # Safety
    /// `params` must point at values matching the kernel's parameters, and
    /// every device pointer among them must be valid for the kernel's accesses.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn launch(
        &self,
        f: sys::CUfunction,
        grid: (u32, u32, u32),
        block: u32,
        smem: usize,
        stream: Stream,
        params: &mut [*mut c_void],
        what: &str,
    ) -> Result<()> {
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        // SAFETY: the caller's contract.
        check(
            unsafe {
                sys::cuLaunchKernel(
                    f,
                    grid.0,
                    grid.1,
                    grid.2,
                    block,
                    1,
                    1,
                    smem as u32,
                    stream.0 as sys::CUstream,
                    params.as_mut_ptr(),
                    std::ptr::null_mut(),
                )
            },
            &format!("launching {what}"),
        )
    }

    /// Checks that `[ptr, ptr + bytes)` lies inside one allocation of this
    /// device (catches host pointers, wrong devices and short buffers before
    /// a kernel would fault).
    pub fn check_range(&self, ptr: u64, bytes: usize, name: &'static str) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        let (mut base, mut size) = (0 as sys::CUdeviceptr, 0usize);
        // SAFETY: valid out-pointers; the driver only inspects the address.
        let r =
            unsafe { sys::cuMemGetAddressRange_v2(&mut base, &mut size, ptr as sys::CUdeviceptr) };
        if let Err(e) = r.result() {
            // Memory mapped through the virtual-memory API (e.g. PyTorch's
            // expandable segments) may have no allocation range to report:
            // accept it when the driver still knows it as device memory.
            let mut ty: u32 = 0;
            // SAFETY: the attribute is a CUmemorytype (a 32-bit enum).
            let known = unsafe {
                sys::cuPointerGetAttribute(
                    &mut ty as *mut u32 as *mut c_void,
                    sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                    ptr as sys::CUdeviceptr,
                )
            };
            let device_memory = known.result().is_ok()
                && (ty == sys::CUmemorytype::CU_MEMORYTYPE_DEVICE as u32
                    || ty == sys::CUmemorytype::CU_MEMORYTYPE_UNIFIED as u32);
            if !device_memory {
                return Err(Error::invalid(
                    name,
                    format!("{ptr:#x} is not CUDA device memory ({e})"),
                ));
            }
            base = ptr as sys::CUdeviceptr;
            size = bytes;
        }
        let end = (ptr as u128) + bytes as u128;
        if end > base as u128 + size as u128 {
            return Err(Error::invalid(
                name,
                format!(
                    "needs {bytes} bytes from {ptr:#x}, its allocation ends {} bytes after it",
                    (base as u128 + size as u128).saturating_sub(ptr as u128)
                ),
            ));
        }
        let mut ord: i32 = -1;
        // SAFETY: the attribute is an int written through a valid pointer.
        let r = unsafe {
            sys::cuPointerGetAttribute(
                &mut ord as *mut i32 as *mut c_void,
                sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
                ptr as sys::CUdeviceptr,
            )
        };
        if r.result().is_ok() && ord >= 0 && ord != self.ordinal {
            return Err(Error::UnsupportedDevice {
                arg: name,
                msg: format!(
                    "memory of CUDA device {ord}, the tensor says device {}",
                    self.ordinal
                ),
            });
        }
        Ok(())
    }
}

/// A device memory pool that never releases freed memory (0 on failure).
fn scratch_pool(ordinal: i32) -> usize {
    // SAFETY: every enum in the props has a zero variant (INVALID / NONE), so
    // the zeroed struct is valid before the fields are set; out-pointers are
    // valid.
    unsafe {
        let mut props: sys::CUmemPoolProps = std::mem::zeroed();
        props.allocType = sys::CUmemAllocationType::CU_MEM_ALLOCATION_TYPE_PINNED;
        props.handleTypes = sys::CUmemAllocationHandleType::CU_MEM_HANDLE_TYPE_NONE;
        props.location = sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: ordinal,
        };
        let mut pool = std::ptr::null_mut();
        if sys::cuMemPoolCreate(&mut pool, &props).result().is_err() {
            return 0;
        }
        let mut keep = u64::MAX;
        let _ = sys::cuMemPoolSetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            &mut keep as *mut u64 as *mut c_void,
        );
        pool as usize
    }
}

fn raise_smem(f: sys::CUfunction, smem: usize, name: &str) -> Result<()> {
    // SAFETY: f is a loaded function.
    check(
        unsafe {
            sys::cuFuncSetAttribute(
                f,
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                smem as i32,
            )
        },
        &format!("allowing {smem} bytes of shared memory for {name}"),
    )
}

/// A pushed context; pops it on drop.
pub(crate) struct Current<'a>(std::marker::PhantomData<&'a Device>);

impl Drop for Current<'_> {
    fn drop(&mut self) {
        let mut old = std::ptr::null_mut();
        // SAFETY: this guard pushed a context.
        let _ = unsafe { sys::cuCtxPopCurrent_v2(&mut old) };
    }
}

/// Why no kernel can run, or `None`.
pub(crate) fn unavailable_reason() -> Option<String> {
    match driver() {
        Err(m) => Some(m),
        Ok(d) => {
            let errs: Vec<String> = (0..d.devices.len() as i32)
                .filter_map(|i| device(i).err().map(|e| e.to_string()))
                .collect();
            if errs.len() == d.devices.len() {
                Some(errs.join("; "))
            } else {
                None
            }
        }
    }
}

/// Devices whose context and kernels load.
pub(crate) fn device_count() -> usize {
    match driver() {
        Err(_) => 0,
        Ok(d) => (0..d.devices.len() as i32)
            .filter(|&i| device(i).is_ok())
            .count(),
    }
}

/// Device `ordinal`, opened on first use.
pub(crate) fn device(ordinal: i32) -> Result<&'static Device> {
    let d = driver().map_err(Error::CudaUnavailable)?;
    let slot = usize::try_from(ordinal)
        .ok()
        .and_then(|i| d.devices.get(i))
        .ok_or_else(|| Error::UnsupportedDevice {
            arg: "device",
            msg: format!(
                "CUDA device {ordinal} does not exist ({} device(s))",
                d.devices.len()
            ),
        })?;
    slot.get_or_init(|| {
        catch_unwind(AssertUnwindSafe(|| Device::open(ordinal)))
            .unwrap_or_else(|p| Err(format!("opening CUDA device {ordinal}: {}", panic_text(p))))
    })
    .as_ref()
    .map_err(|m| Error::CudaUnavailable(m.clone()))
}

/// Device memory: persistent (`cuMemAlloc`, freed after a context-wide
/// synchronization so no queued kernel still reads it) or stream-ordered
/// scratch (`cuMemAllocAsync` on the caller's stream, freed on it; where
/// memory pools are unsupported: a plain allocation freed after the stream
/// finishes).
pub(crate) struct Alloc {
    pub ptr: u64,
    pub bytes: usize,
    pub dev: &'static Device,
    stream: Option<Stream>,
}

impl Alloc {
    /// `bytes` on `dev` (context must be current). Zero bytes allocate nothing.
    pub fn persistent(dev: &'static Device, bytes: usize) -> Result<Alloc> {
        let mut p = 0 as sys::CUdeviceptr;
        if bytes > 0 {
            // SAFETY: valid out-pointer.
            check(
                unsafe { sys::cuMemAlloc_v2(&mut p, bytes) },
                &format!("cuMemAlloc({bytes} bytes)"),
            )?;
        }
        Ok(Alloc {
            ptr: p as u64,
            bytes,
            dev,
            stream: None,
        })
    }

    /// Scratch of `bytes` ordered on `stream` (context must be current).
    pub fn scratch(dev: &'static Device, bytes: usize, stream: Stream) -> Result<Alloc> {
        let mut p = 0 as sys::CUdeviceptr;
        if bytes > 0 {
            if dev.pool != 0 {
                // SAFETY: valid out-pointer; the pool is ours, the stream the caller's.
                check(
                    unsafe {
                        sys::cuMemAllocFromPoolAsync(
                            &mut p,
                            bytes,
                            dev.pool as sys::CUmemoryPool,
                            stream.0 as sys::CUstream,
                        )
                    },
                    &format!("cuMemAllocFromPoolAsync({bytes} bytes)"),
                )?;
            } else if dev.pools {
                // SAFETY: valid out-pointer; the stream is the caller's.
                check(
                    unsafe { sys::cuMemAllocAsync(&mut p, bytes, stream.0 as sys::CUstream) },
                    &format!("cuMemAllocAsync({bytes} bytes)"),
                )?;
            } else {
                // SAFETY: valid out-pointer.
                check(
                    unsafe { sys::cuMemAlloc_v2(&mut p, bytes) },
                    &format!("cuMemAlloc({bytes} bytes)"),
                )?;
            }
        }
        Ok(Alloc {
            ptr: p as u64,
            bytes,
            dev,
            stream: Some(stream),
        })
    }
}

impl Drop for Alloc {
    fn drop(&mut self) {
        if self.bytes == 0 {
            return;
        }
        let Ok(_cur) = self.dev.enter() else { return };
        let p = self.ptr as sys::CUdeviceptr;
        // SAFETY: p was allocated on this device by this object; the
        // synchronization keeps queued kernels from reading freed memory.
        unsafe {
            match self.stream {
                Some(s) if self.dev.pools => {
                    let _ = sys::cuMemFreeAsync(p, s.0 as sys::CUstream);
                }
                Some(s) => {
                    let _ = sys::cuStreamSynchronize(s.0 as sys::CUstream);
                    let _ = sys::cuMemFree_v2(p);
                }
                None => {
                    let _ = sys::cuCtxSynchronize();
                    let _ = sys::cuMemFree_v2(p);
                }
            }
        }
    }
}

/// Host -> device copy (synchronous; context must be current).
pub(crate) fn htod(dst: u64, src: &[u8]) -> Result<()> {
    if src.is_empty() {
        return Ok(());
    }
    // SAFETY: the caller sized dst for src.len() bytes.
    check(
        unsafe {
            sys::cuMemcpyHtoD_v2(
                dst as sys::CUdeviceptr,
                src.as_ptr() as *const c_void,
                src.len(),
            )
        },
        "cuMemcpyHtoD",
    )
}

/// Device -> host copy after all work queued on `stream` (context must be current).
pub(crate) fn dtoh(dst: &mut [u8], src: u64, stream: Stream) -> Result<()> {
    if dst.is_empty() {
        return Ok(());
    }
    // SAFETY: the caller sized src for dst.len() bytes.
    unsafe {
        check(
            sys::cuMemcpyDtoHAsync_v2(
                dst.as_mut_ptr() as *mut c_void,
                src as sys::CUdeviceptr,
                dst.len(),
                stream.0 as sys::CUstream,
            ),
            "cuMemcpyDtoHAsync",
        )?;
        check(
            sys::cuStreamSynchronize(stream.0 as sys::CUstream),
            "cuStreamSynchronize",
        )
    }
}

/// Fills `bytes` bytes at `dst` with `value`, ordered on `stream`.
pub(crate) fn memset(dst: u64, value: u8, bytes: usize, stream: Stream) -> Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    // SAFETY: the caller sized dst.
    check(
        unsafe {
            sys::cuMemsetD8Async(
                dst as sys::CUdeviceptr,
                value,
                bytes,
                stream.0 as sys::CUstream,
            )
        },
        "cuMemsetD8Async",
    )
}

/// Waits for everything queued in the current context.
pub(crate) fn sync_context() -> Result<()> {
    // SAFETY: no arguments.
    check(unsafe { sys::cuCtxSynchronize() }, "cuCtxSynchronize")
}
