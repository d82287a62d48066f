//! C entry points for weight files: open a checkpoint (safetensors file,
//! Hugging Face directory, GGUF file), list its tensors, read a tensor as
//! f32 or a ternary matrix; build and save files (safetensors or GGUF).

use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;

use ndarray::{ArrayViewD, IxDyn};

use super::args;
use super::handle;
use super::status::{guard, tritter_status_t};
use super::ternary::{to_config, tritter_quant_config_t, tritter_ternary_matrix_t};
use crate::io::{Checkpoint, Dtype, SaveFormat, SaveItem};
use crate::ternary::TernaryMatrix;
use crate::{Error, Result};

/// Most dimensions a [`tritter_tensor_info_t`] reports.
pub const TRITTER_MAX_DIMS: usize = 16;

/// `dtype`: boolean (1 byte).
pub const TRITTER_DTYPE_BOOL: u32 = 0;
/// `dtype`: uint8.
pub const TRITTER_DTYPE_U8: u32 = 1;
/// `dtype`: int8.
pub const TRITTER_DTYPE_I8: u32 = 2;
/// `dtype`: int16.
pub const TRITTER_DTYPE_I16: u32 = 3;
/// `dtype`: uint16.
pub const TRITTER_DTYPE_U16: u32 = 4;
/// `dtype`: int32.
pub const TRITTER_DTYPE_I32: u32 = 5;
/// `dtype`: uint32.
pub const TRITTER_DTYPE_U32: u32 = 6;
/// `dtype`: int64.
pub const TRITTER_DTYPE_I64: u32 = 7;
/// `dtype`: uint64.
pub const TRITTER_DTYPE_U64: u32 = 8;
/// `dtype`: IEEE half.
pub const TRITTER_DTYPE_F16: u32 = 9;
/// `dtype`: bfloat16.
pub const TRITTER_DTYPE_BF16: u32 = 10;
/// `dtype`: IEEE single.
pub const TRITTER_DTYPE_F32: u32 = 11;
/// `dtype`: IEEE double.
pub const TRITTER_DTYPE_F64: u32 = 12;
/// `dtype`: ggml TQ1_0 (256 ternary weights in 54 bytes).
pub const TRITTER_DTYPE_TQ1_0: u32 = 13;
/// `dtype`: ggml TQ2_0 (256 ternary weights in 66 bytes).
pub const TRITTER_DTYPE_TQ2_0: u32 = 14;
/// `dtype`: another ggml type (listed, not converted; `ggml_type` says which).
pub const TRITTER_DTYPE_OTHER: u32 = 255;

/// `format` of [`tritter_checkpoint_writer_save`]: safetensors with the
/// library's `__metadata__`.
pub const TRITTER_SAVE_SAFETENSORS: u32 = 0;
/// `format`: GGUF v3, ternary matrices as TQ2_0.
pub const TRITTER_SAVE_GGUF_TQ2_0: u32 = 1;
/// `format`: GGUF v3, ternary matrices as TQ1_0.
pub const TRITTER_SAVE_GGUF_TQ1_0: u32 = 2;

/// `kind` of [`tritter_checkpoint_kind`]: a single safetensors file.
pub const TRITTER_CHECKPOINT_SAFETENSORS: u32 = 0;
/// `kind`: a Hugging Face checkpoint directory.
pub const TRITTER_CHECKPOINT_HF_DIR: u32 = 1;
/// `kind`: a GGUF file.
pub const TRITTER_CHECKPOINT_GGUF: u32 = 2;

// Keep the C codes in step with `Dtype::ALL`.
const _: () = assert!(TRITTER_DTYPE_TQ2_0 as usize + 1 == Dtype::ALL.len());

/// What a file says about one tensor.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct tritter_tensor_info_t {
    /// `TRITTER_DTYPE_*` of the stored elements.
    pub dtype: u32,
    /// The ggml type number for GGUF tensors; `UINT32_MAX` otherwise.
    pub ggml_type: u32,
    /// Number of dimensions (at most `TRITTER_MAX_DIMS`); the sizes come
    /// from `tritter_checkpoint_tensor_shape`.
    pub ndim: usize,
    /// Elements (product of the shape).
    pub numel: usize,
    /// Bytes stored.
    pub nbytes: usize,
    /// Whether `tritter_checkpoint_ternary` applies (HF packed weight with
    /// `weight_scale`, a matrix saved by this library, TQ1_0/TQ2_0).
    pub is_ternary: bool,
}

/// An open weight file or checkpoint directory (memory-mapped).
///
/// Owns its mappings; free with [`tritter_checkpoint_free`]. Matrices and
/// arrays read from it are copies and outlive it. Read-only after opening:
/// one handle may be used by any number of threads at once. The files must
/// not be truncated or rewritten while it is open.
pub struct tritter_checkpoint_t {
    ck: Checkpoint,
    names: Vec<CString>,
    config_json: CString,
}

/// Named items collected for [`tritter_checkpoint_writer_save`].
/// Not shareable across threads without a lock (it is mutated).
pub struct tritter_checkpoint_writer_t {
    items: Vec<(String, WriterItem)>,
    metadata: Vec<(String, String)>,
}

enum WriterItem {
    Ternary(TernaryMatrix),
    Float(Vec<f32>, Vec<usize>, Dtype),
}

unsafe fn c_str<'a>(p: *const c_char, name: &'static str) -> Result<&'a str> {
    if p.is_null() {
        return Err(Error::NullPointer(name));
    }
    // SAFETY: the caller passes a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| Error::invalid(name, "is not valid UTF-8"))
}

fn open_safe(path: &str) -> Result<tritter_checkpoint_t> {
    let ck = Checkpoint::open(PathBuf::from(path))?;
    let names = ck
        .names()
        .into_iter()
        .map(|n| CString::new(n.replace('\0', "\\0")).expect("no NUL"))
        .collect();
    let config_json = match &ck {
        Checkpoint::Hf(h) => h.config().map(|c| c.raw.to_string()).unwrap_or_default(),
        Checkpoint::Gguf(_) => String::new(),
    };
    Ok(tritter_checkpoint_t {
        ck,
        names,
        config_json: CString::new(config_json.replace('\0', "\\0")).expect("no NUL"),
    })
}

/// Opens `path`: a Hugging Face checkpoint directory (`config.json` +
/// `model.safetensors` or `model.safetensors.index.json` shards), a
/// `.safetensors` file, or a GGUF file (recognised by its magic).
///
/// Errors: NULL or non-UTF-8 `path`; `TRITTER_ERR_IO` when a file cannot be
/// opened; `TRITTER_ERR_INVALID_DATA` / `TRITTER_ERR_UNSUPPORTED_DTYPE` for a
/// malformed file, with a message naming the file, tensor and problem.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `checkpoint_out` valid for
/// writing one pointer.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_open(
    path: *const c_char,
    checkpoint_out: *mut *mut tritter_checkpoint_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(checkpoint_out, "checkpoint_out")?;
        let p = unsafe { c_str(path, "path")? };
        let ck = open_safe(p)?;
        unsafe { handle::store(checkpoint_out, ck, "checkpoint_out") }
    })
}

/// Closes a checkpoint (unmaps its files). NULL is a no-op.
///
/// # Safety
/// `checkpoint` must be NULL or a live handle not used again.
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_free(checkpoint: *mut tritter_checkpoint_t) {
    super::status::guard_value((), || unsafe { handle::free(checkpoint) })
}

/// The kind of file opened (`TRITTER_CHECKPOINT_*`).
///
/// # Safety
/// `checkpoint` must be NULL or live; `kind_out` valid for writing.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_kind(
    checkpoint: *const tritter_checkpoint_t,
    kind_out: *mut u32,
) -> tritter_status_t {
    guard(|| {
        let c = unsafe { handle::get(checkpoint, "checkpoint")? };
        let k = match &c.ck {
            Checkpoint::Gguf(_) => TRITTER_CHECKPOINT_GGUF,
            Checkpoint::Hf(h) if h.path().is_dir() => TRITTER_CHECKPOINT_HF_DIR,
            Checkpoint::Hf(_) => TRITTER_CHECKPOINT_SAFETENSORS,
        };
        unsafe { args::write(kind_out, k, "kind_out") }
    })
}

/// Number of tensors stored.
///
/// # Safety
/// `checkpoint` must be NULL or live; `count_out` valid for writing.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_num_tensors(
    checkpoint: *const tritter_checkpoint_t,
    count_out: *mut usize,
) -> tritter_status_t {
    guard(|| {
        let c = unsafe { handle::get(checkpoint, "checkpoint")? };
        unsafe { args::write(count_out, c.names.len(), "count_out") }
    })
}

/// The name of tensor `index` (`0 <= index < num_tensors`; sorted for
/// safetensors and HF, file order for GGUF). The string is owned by the
/// checkpoint and valid until it is freed.
///
/// # Safety
/// `checkpoint` must be NULL or live; `name_out` valid for writing one pointer.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_tensor_name(
    checkpoint: *const tritter_checkpoint_t,
    index: usize,
    name_out: *mut *const c_char,
) -> tritter_status_t {
    guard(|| {
        let c = unsafe { handle::get(checkpoint, "checkpoint")? };
        let n = c.names.get(index).ok_or_else(|| {
            Error::invalid(
                "index",
                format!("{index} is out of range ({} tensors)", c.names.len()),
            )
        })?;
        unsafe { args::write(name_out, n.as_ptr(), "name_out") }
    })
}

/// The checkpoint's `config.json` as compact JSON text ("" when it has
/// none). Owned by the checkpoint, valid until it is freed.
///
/// # Safety
/// `checkpoint` must be NULL or live; `json_out` valid for writing one pointer.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_config_json(
    checkpoint: *const tritter_checkpoint_t,
    json_out: *mut *const c_char,
) -> tritter_status_t {
    guard(|| {
        let c = unsafe { handle::get(checkpoint, "checkpoint")? };
        unsafe { args::write(json_out, c.config_json.as_ptr(), "json_out") }
    })
}

fn info_safe(c: &tritter_checkpoint_t, name: &str) -> Result<tritter_tensor_info_t> {
    let i =
        c.ck.info(name)
            .ok_or_else(|| Error::invalid("name", format!("no tensor `{name}`")))?;
    if i.shape.len() > TRITTER_MAX_DIMS {
        return Err(Error::shape(
            "name",
            format!("`{name}` has {} dimensions", i.shape.len()),
        ));
    }
    Ok(tritter_tensor_info_t {
        dtype: i.dtype.code(),
        ggml_type: match &c.ck {
            Checkpoint::Gguf(_) => crate::io::gguf::ggml_of_dtype(i.dtype).unwrap_or(u32::MAX),
            Checkpoint::Hf(_) => u32::MAX,
        },
        ndim: i.shape.len(),
        numel: i.numel(),
        nbytes: i.nbytes,
        is_ternary: c.ck.is_ternary(name),
    })
}

/// Dtype, shape and size of tensor `name`.
///
/// Errors: NULL arguments; `TRITTER_ERR_INVALID_ARGUMENT` naming an unknown
/// tensor.
///
/// # Safety
/// `checkpoint` NULL or live; `name` NULL or NUL-terminated; `info_out` valid
/// for writing one `tritter_tensor_info_t`.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_tensor_info(
    checkpoint: *const tritter_checkpoint_t,
    name: *const c_char,
    info_out: *mut tritter_tensor_info_t,
) -> tritter_status_t {
    guard(|| {
        let c = unsafe { handle::get(checkpoint, "checkpoint")? };
        let n = unsafe { c_str(name, "name")? };
        args::check_out(info_out, "info_out")?;
        let i = info_safe(c, n)?;
        unsafe { args::write(info_out, i, "info_out") }
    })
}

/// The logical shape of tensor `name` (outermost first; GGUF's `ne`
/// reversed) into `shape_out`, which must hold at least `ndim` sizes.
///
/// # Safety
/// `checkpoint` NULL or live; `name` NULL or NUL-terminated; `shape_out`
/// NULL or valid for `shape_len` sizes.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_tensor_shape(
    checkpoint: *const tritter_checkpoint_t,
    name: *const c_char,
    shape_out: *mut usize,
    shape_len: usize,
) -> tritter_status_t {
    guard(|| {
        let c = unsafe { handle::get(checkpoint, "checkpoint")? };
        let n = unsafe { c_str(name, "name")? };
        let i =
            c.ck.info(n)
                .ok_or_else(|| Error::invalid("name", format!("no tensor `{n}`")))?;
        let o = unsafe { args::out_slice(shape_out, shape_len, i.shape.len(), "shape_out")? };
        o.copy_from_slice(&i.shape);
        Ok(())
    })
}

/// Tensor `name` converted to f32 (row-major, its `numel` elements; floats
/// widened exactly, integers cast, TQ1_0/TQ2_0 dequantized as ggml does).
/// `out_len` must be at least `numel` (else `TRITTER_ERR_BUFFER_TOO_SMALL`).
///
/// # Safety
/// `checkpoint` NULL or live; `name` NULL or NUL-terminated; `out` NULL or
/// valid for `out_len` floats.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_tensor_f32(
    checkpoint: *const tritter_checkpoint_t,
    name: *const c_char,
    out: *mut f32,
    out_len: usize,
) -> tritter_status_t {
    guard(|| {
        let c = unsafe { handle::get(checkpoint, "checkpoint")? };
        let n = unsafe { c_str(name, "name")? };
        let info =
            c.ck.info(n)
                .ok_or_else(|| Error::invalid("name", format!("no tensor `{n}`")))?
                .clone();
        let o = unsafe { args::out_slice(out, out_len, info.numel(), "out")? };
        crate::io::to_f32_into(info.dtype, c.ck.bytes(n)?, o, n)
    })
}

/// Tensor `name` as a new ternary matrix (an HF packed BitNet weight with
/// its exact `1 / weight_scale`, a matrix saved by this library, or a
/// TQ1_0/TQ2_0 tensor with group-256 scales). The matrix is a copy: it
/// outlives the checkpoint.
///
/// Errors name the tensor and the problem: unknown tensor, no scale tensor,
/// invalid codes (`TRITTER_ERR_INVALID_DATA`), non-finite scales, a dtype
/// that is not ternary (`TRITTER_ERR_UNSUPPORTED_DTYPE`).
///
/// # Safety
/// `checkpoint` NULL or live; `name` NULL or NUL-terminated; `matrix_out`
/// valid for writing one pointer.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_ternary(
    checkpoint: *const tritter_checkpoint_t,
    name: *const c_char,
    matrix_out: *mut *mut tritter_ternary_matrix_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(matrix_out, "matrix_out")?;
        let c = unsafe { handle::get(checkpoint, "checkpoint")? };
        let n = unsafe { c_str(name, "name")? };
        let m = c.ck.ternary(n)?;
        unsafe { handle::store(matrix_out, tritter_ternary_matrix_t(m), "matrix_out") }
    })
}

/// A 2-D float tensor `name` quantized with `config` (NULL: defaults) into a
/// new ternary matrix (for unquantized checkpoints).
///
/// # Safety
/// As [`tritter_checkpoint_ternary`]; `config` NULL or valid.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_ternary_quantized(
    checkpoint: *const tritter_checkpoint_t,
    name: *const c_char,
    config: *const tritter_quant_config_t,
    matrix_out: *mut *mut tritter_ternary_matrix_t,
) -> tritter_status_t {
    guard(|| {
        args::check_out(matrix_out, "matrix_out")?;
        let c = unsafe { handle::get(checkpoint, "checkpoint")? };
        let n = unsafe { c_str(name, "name")? };
        let cfg = to_config(unsafe { args::optional(config, "config")? })?;
        let m = c.ck.ternary_quantized(n, &cfg)?;
        unsafe { handle::store(matrix_out, tritter_ternary_matrix_t(m), "matrix_out") }
    })
}

/// A new, empty writer.
///
/// # Safety
/// `writer_out` valid for writing one pointer.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_writer_new(
    writer_out: *mut *mut tritter_checkpoint_writer_t,
) -> tritter_status_t {
    guard(|| unsafe {
        handle::store(
            writer_out,
            tritter_checkpoint_writer_t {
                items: Vec::new(),
                metadata: Vec::new(),
            },
            "writer_out",
        )
    })
}

/// Frees a writer. NULL is a no-op.
///
/// # Safety
/// `writer` NULL or a live handle not used again.
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_writer_free(writer: *mut tritter_checkpoint_writer_t) {
    super::status::guard_value((), || unsafe { handle::free(writer) })
}

/// Adds a copy of ternary `matrix` as `name`.
///
/// # Safety
/// `writer` NULL or live (not used by another thread meanwhile); `name` NULL
/// or NUL-terminated; `matrix` NULL or live.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_writer_add_ternary(
    writer: *mut tritter_checkpoint_writer_t,
    name: *const c_char,
    matrix: *const tritter_ternary_matrix_t,
) -> tritter_status_t {
    guard(|| {
        let w = unsafe { handle::get_mut(writer, "writer")? };
        let n = unsafe { c_str(name, "name")? };
        let m = unsafe { handle::get(matrix, "matrix")? };
        w.items
            .push((n.to_string(), WriterItem::Ternary(m.0.clone())));
        Ok(())
    })
}

/// Adds a copy of row-major f32 `data` with `shape` (`ndim` dimensions,
/// at most 4 for GGUF), to be stored as `dtype` (`TRITTER_DTYPE_F32`, `F16`
/// or `BF16`; round to nearest even).
///
/// # Safety
/// `writer` NULL or live; `name` NULL or NUL-terminated; `shape` NULL or
/// `ndim` sizes; `data` NULL or the product of the shape floats.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_writer_add_f32(
    writer: *mut tritter_checkpoint_writer_t,
    name: *const c_char,
    data: *const f32,
    shape: *const usize,
    ndim: usize,
    dtype: u32,
) -> tritter_status_t {
    guard(|| {
        let w = unsafe { handle::get_mut(writer, "writer")? };
        let n = unsafe { c_str(name, "name")? };
        if ndim > TRITTER_MAX_DIMS {
            return Err(Error::invalid(
                "ndim",
                format!("{ndim} > {TRITTER_MAX_DIMS}"),
            ));
        }
        let sh = unsafe { args::slice(shape, ndim, "shape")? }.to_vec();
        let numel = sh
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= isize::MAX as usize / 4)
            .ok_or_else(|| Error::overflow("shape", format!("{sh:?} has too many elements")))?;
        let d = Dtype::from_code(dtype)
            .filter(|d| matches!(d, Dtype::F32 | Dtype::F16 | Dtype::BF16))
            .ok_or_else(|| {
                Error::invalid(
                    "dtype",
                    format!("{dtype}: floats are stored as F32, F16 or BF16"),
                )
            })?;
        let src = unsafe { args::slice(data, numel, "data")? };
        let v = crate::error::try_to_vec(src, "data")?;
        w.items.push((n.to_string(), WriterItem::Float(v, sh, d)));
        Ok(())
    })
}

/// Adds a metadata string (`__metadata__` in safetensors, a string key/value
/// in GGUF).
///
/// # Safety
/// `writer` NULL or live; `key`, `value` NULL or NUL-terminated.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_writer_add_metadata(
    writer: *mut tritter_checkpoint_writer_t,
    key: *const c_char,
    value: *const c_char,
) -> tritter_status_t {
    guard(|| {
        let w = unsafe { handle::get_mut(writer, "writer")? };
        let k = unsafe { c_str(key, "key")? };
        let v = unsafe { c_str(value, "value")? };
        w.metadata.push((k.to_string(), v.to_string()));
        Ok(())
    })
}

/// Writes everything added so far to `path` in `format`
/// (`TRITTER_SAVE_*`); the writer keeps its items. The file is written
/// beside `path` and renamed into place.
///
/// Errors: duplicate or empty names, a matrix GGUF cannot hold (columns not
/// a multiple of 256, groups that are not whole 256-weight blocks, a scale
/// beyond f16) naming it; `TRITTER_ERR_IO`.
///
/// # Safety
/// `writer` NULL or live; `path` NULL or NUL-terminated.
#[must_use]
#[no_mangle]
pub unsafe extern "C" fn tritter_checkpoint_writer_save(
    writer: *const tritter_checkpoint_writer_t,
    path: *const c_char,
    format: u32,
) -> tritter_status_t {
    guard(|| {
        let w = unsafe { handle::get(writer, "writer")? };
        let p = unsafe { c_str(path, "path")? };
        let fmt = match format {
            TRITTER_SAVE_SAFETENSORS => SaveFormat::Safetensors,
            TRITTER_SAVE_GGUF_TQ2_0 => SaveFormat::Gguf(Dtype::TQ2_0),
            TRITTER_SAVE_GGUF_TQ1_0 => SaveFormat::Gguf(Dtype::TQ1_0),
            f => {
                return Err(Error::invalid(
                    "format",
                    format!("unknown format {f} (0 safetensors, 1 GGUF TQ2_0, 2 GGUF TQ1_0)"),
                ))
            }
        };
        let items: Vec<(String, SaveItem)> = w
            .items
            .iter()
            .map(|(n, it)| {
                (
                    n.clone(),
                    match it {
                        WriterItem::Ternary(m) => SaveItem::Ternary(m),
                        WriterItem::Float(v, sh, d) => SaveItem::Float(
                            ArrayViewD::from_shape(IxDyn(sh), v).expect("sized at add"),
                            *d,
                        ),
                    },
                )
            })
            .collect();
        crate::io::checkpoint::save(p, &items, fmt, &w.metadata)
    })
}
