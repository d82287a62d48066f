//! [`Checkpoint`]: one object for every readable file (a `.safetensors`
//! file, a Hugging Face checkpoint directory, a `.gguf` file), and
//! [`save`] for the library's own files.
//!
//! # The library's safetensors layout (format `tritter-accel`, version 1)
//! A ternary matrix `name` (`[rows, cols]`) is stored as
//! * `name`: `U8 [rows, ceil(cols/4)]`, the canonical 2-bit layout
//!   (`00 = 0`, `01 = +1`, `10 = -1`, 4 weights a byte, low bits first);
//! * `name.scales`: `F32 [scale_rows, groups_per_row]`;
//! * `__metadata__["tritter:" + name]`: a JSON object
//!   `{"shape": [rows, cols], "granularity": "tensor"|"row"|"group",
//!   "group_size": g, "layout": "2bit", "compute": "2bit"|"base3"}`.
//!
//! `__metadata__` also has `"format": "tritter-accel"` and
//! `"format_version": "1"`. Float arrays are stored as they are (F32, F16 or
//! BF16). Such a file opens with [`Checkpoint::open`] and `ternary(name)`
//! gives back an equal matrix (same trits, scales, granularity and compute
//! format).

use std::collections::HashMap;
use std::path::Path;

use ndarray::{ArrayD, ArrayViewD};

use super::dtype::{Dtype, TensorInfo};
use super::gguf::{self, GgufFile, GgufValue, GgufWriteTensor};
use super::hf::HfCheckpoint;
use crate::precision::convert::{f32_to_bf16_bits, f32_to_f16_bits};
use crate::ternary::matmul::layout::ComputeFormat;
use crate::ternary::{Granularity, PackedLayout, QuantConfig, TernaryMatrix};
use crate::{Error, Result};

/// `__metadata__["format"]` of the library's files.
pub const FORMAT_NAME: &str = "tritter-accel";
/// `__metadata__["format_version"]` written.
pub const FORMAT_VERSION: &str = "1";
/// Prefix of a ternary matrix's metadata key.
pub const META_PREFIX: &str = "tritter:";
/// Suffix of a ternary matrix's scale tensor.
pub const SCALES_SUFFIX: &str = ".scales";

/// An open checkpoint of any supported format.
#[derive(Debug)]
pub enum Checkpoint {
    /// A safetensors file or a Hugging Face checkpoint directory.
    Hf(Box<HfCheckpoint>),
    /// A GGUF file.
    Gguf(GgufFile),
}

/// The ternary-matrix entry of the library's metadata.
#[derive(Debug, Clone, PartialEq)]
struct TritterMeta {
    rows: usize,
    cols: usize,
    granularity: Granularity,
    compute: ComputeFormat,
}

fn parse_meta(name: &str, s: &str) -> Result<TritterMeta> {
    let bad = |m: &str| Error::data("file", format!("metadata of ternary matrix `{name}`: {m}"));
    let v: serde_json::Value = serde_json::from_str(s).map_err(|e| bad(&e.to_string()))?;
    let shape = v
        .get("shape")
        .and_then(|s| s.as_array())
        .filter(|a| a.len() == 2)
        .ok_or_else(|| bad("no 2-element `shape`"))?;
    let dim = |x: &serde_json::Value| {
        x.as_u64()
            .and_then(|d| usize::try_from(d).ok())
            .ok_or_else(|| bad("shape entries must be non-negative integers"))
    };
    let (rows, cols) = (dim(&shape[0])?, dim(&shape[1])?);
    let granularity = match v.get("granularity").and_then(|g| g.as_str()) {
        Some("tensor") => Granularity::PerTensor,
        Some("row") => Granularity::PerRow,
        Some("group") => {
            let g = v
                .get("group_size")
                .and_then(|g| g.as_u64())
                .and_then(|g| usize::try_from(g).ok())
                .filter(|&g| g > 0)
                .ok_or_else(|| bad("`group_size` must be a positive integer"))?;
            Granularity::PerGroup(g)
        }
        _ => {
            return Err(bad(
                "`granularity` must be \"tensor\", \"row\" or \"group\"",
            ))
        }
    };
    if v.get("layout").and_then(|l| l.as_str()) != Some("2bit") {
        return Err(bad("`layout` must be \"2bit\""));
    }
    let compute = match v.get("compute").and_then(|c| c.as_str()) {
        None | Some("2bit") => ComputeFormat::TwoBit,
        Some("base3") => ComputeFormat::Base3,
        Some(o) => return Err(bad(&format!("unknown compute format `{o}`"))),
    };
    Ok(TritterMeta {
        rows,
        cols,
        granularity,
        compute,
    })
}

fn meta_json(m: &TernaryMatrix) -> String {
    let (g, gs) = match m.granularity() {
        Granularity::PerTensor => ("tensor", 0),
        Granularity::PerRow => ("row", 0),
        Granularity::PerGroup(g) => ("group", g),
    };
    let c = match m.compute_format() {
        ComputeFormat::TwoBit => "2bit",
        ComputeFormat::Base3 => "base3",
    };
    serde_json::json!({
        "shape": [m.rows(), m.cols()],
        "granularity": g,
        "group_size": gs,
        "layout": "2bit",
        "compute": c,
    })
    .to_string()
}

impl Checkpoint {
    /// Opens `path`: a directory (Hugging Face checkpoint), a file that
    /// starts with `GGUF` (GGUF), or a safetensors file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() {
            return Ok(Checkpoint::Hf(Box::new(HfCheckpoint::open(path)?)));
        }
        let map = super::map_file(path)?;
        if map.bytes().starts_with(b"GGUF") {
            Ok(Checkpoint::Gguf(GgufFile::from_mapping(path, map)?))
        } else {
            drop(map);
            Ok(Checkpoint::Hf(Box::new(HfCheckpoint::open(path)?)))
        }
    }

    /// A safetensors or GGUF file held in memory (by its first bytes), with
    /// the same checks as [`Self::open`] (used by the fuzz targets).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        if bytes.starts_with(b"GGUF") {
            Ok(Checkpoint::Gguf(GgufFile::from_bytes(bytes, "<memory>")?))
        } else {
            let f = super::safetensors::SafetensorsFile::from_bytes(bytes, "<memory>")?;
            Ok(Checkpoint::Hf(Box::new(HfCheckpoint::from_file(f))))
        }
    }

    /// Reads every tensor of the checkpoint every way it can be read
    /// (f32, and ternary where [`Self::is_ternary`]); the first error.
    /// For fuzzing and tests: it must never panic.
    pub fn read_all(&self) -> Result<()> {
        let mut first = Ok(());
        for n in self.names() {
            let r = self.tensor_f32(&n).map(|_| ()).and_then(|_| {
                if self.is_ternary(&n) {
                    self.ternary(&n).map(|_| ())
                } else {
                    Ok(())
                }
            });
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Tensor names as stored (sorted for safetensors/HF, file order for GGUF).
    pub fn names(&self) -> Vec<String> {
        match self {
            Checkpoint::Hf(h) => h.names().to_vec(),
            Checkpoint::Gguf(g) => g.names().map(str::to_string).collect(),
        }
    }

    /// What the file says about `name` (stored dtype and shape).
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        match self {
            Checkpoint::Hf(h) => h.info(name),
            Checkpoint::Gguf(g) => g.info(name),
        }
    }

    /// The stored tensor `name` converted to f32, in its stored shape.
    pub fn tensor_f32(&self, name: &str) -> Result<ArrayD<f32>> {
        match self {
            Checkpoint::Hf(h) => h.tensor_f32(name),
            Checkpoint::Gguf(g) => g.tensor_f32(name),
        }
    }

    /// The stored bytes of `name` (borrowed from the mapping).
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        match self {
            Checkpoint::Hf(h) => h.bytes(name),
            Checkpoint::Gguf(g) => g.bytes(name),
        }
    }

    /// Drops the mapped pages of `name` from resident memory.
    pub fn release(&self, name: &str) {
        match self {
            Checkpoint::Hf(h) => h.release(name),
            Checkpoint::Gguf(g) => g.release(name),
        }
    }

    fn tritter_meta(&self, name: &str) -> Result<Option<TritterMeta>> {
        let Checkpoint::Hf(h) = self else {
            return Ok(None);
        };
        let key = format!("{META_PREFIX}{name}");
        for f in h.files() {
            if let Some(s) = f.metadata().get(&key) {
                return parse_meta(name, s).map(Some);
            }
        }
        Ok(None)
    }

    /// Whether [`Self::ternary`] applies to `name`: a matrix saved by this
    /// library, an HF packed BitNet weight, or a TQ1_0/TQ2_0 tensor.
    pub fn is_ternary(&self, name: &str) -> bool {
        match self {
            Checkpoint::Hf(h) => {
                matches!(self.tritter_meta(name), Ok(Some(_))) || h.is_ternary(name)
            }
            Checkpoint::Gguf(g) => {
                matches!(g.info(name), Some(i) if matches!(i.dtype, Dtype::TQ1_0 | Dtype::TQ2_0))
            }
        }
    }

    /// The ternary matrix stored as `name` (see [`Self::is_ternary`]);
    /// errors name the tensor and the problem.
    pub fn ternary(&self, name: &str) -> Result<TernaryMatrix> {
        match self {
            Checkpoint::Gguf(g) => g.ternary(name),
            Checkpoint::Hf(h) => match self.tritter_meta(name)? {
                None => h.ternary(name),
                Some(m) => {
                    let info = h.info(name).ok_or_else(|| {
                        Error::data(
                            "file",
                            format!("metadata names ternary matrix `{name}` but no such tensor is stored"),
                        )
                    })?;
                    let rb = m.cols.div_ceil(4);
                    if info.dtype != Dtype::U8 || info.shape != [m.rows, rb] {
                        return Err(Error::data(
                            "file",
                            format!(
                                "ternary matrix `{name}` ({}x{}) needs U8 [{}, {rb}], stored {} {:?}",
                                m.rows, m.cols, m.rows, info.dtype, info.shape
                            ),
                        ));
                    }
                    let sname = format!("{name}{SCALES_SUFFIX}");
                    let sinfo = h.info(&sname).ok_or_else(|| {
                        Error::data("file", format!("ternary matrix `{name}` has no `{sname}`"))
                    })?;
                    if sinfo.dtype != Dtype::F32 {
                        return Err(Error::data(
                            "file",
                            format!("`{sname}` is {}, not F32", sinfo.dtype),
                        ));
                    }
                    let scales = h.tensor_f32(&sname)?;
                    let scales = scales.as_slice().expect("fresh");
                    crate::check_finite(scales, "scales")
                        .map_err(|e| Error::data("file", format!("`{sname}`: {e}")))?;
                    let mat = TernaryMatrix::from_packed(
                        h.bytes(name)?,
                        m.rows,
                        m.cols,
                        PackedLayout::TwoBit,
                        scales,
                        m.granularity,
                    )
                    .map_err(|e| Error::data("file", format!("ternary matrix `{name}`: {e}")))?;
                    Ok(mat.with_compute_format(m.compute))
                }
            },
        }
    }

    /// A 2-D float tensor `name` ternarized with `cfg` (unquantized checkpoints).
    pub fn ternary_quantized(&self, name: &str, cfg: &QuantConfig) -> Result<TernaryMatrix> {
        let info = self
            .info(name)
            .ok_or_else(|| Error::invalid("name", format!("no tensor `{name}`")))?;
        if info.shape.len() != 2 || !info.dtype.is_float() {
            return Err(Error::UnsupportedDtype {
                arg: "name",
                msg: format!(
                    "tensor `{name}` is {} {:?}; quantizing needs a 2-D float tensor",
                    info.dtype, info.shape
                ),
            });
        }
        let w = self
            .tensor_f32(name)?
            .into_dimensionality::<ndarray::Ix2>()
            .expect("2-D checked");
        TernaryMatrix::from_f32(w.view(), cfg)
    }
}

/// A file format [`save`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// safetensors with the library's metadata (see the module docs).
    Safetensors,
    /// GGUF v3; ternary matrices as `TQ2_0` or `TQ1_0` (the dtype given).
    Gguf(Dtype),
}

/// One named item to save.
#[derive(Debug, Clone)]
pub enum SaveItem<'a> {
    /// A ternary matrix.
    Ternary(&'a TernaryMatrix),
    /// A float array, stored as `dtype` (F32, F16 or BF16; round to nearest even).
    Float(ArrayViewD<'a, f32>, Dtype),
}

fn float_bytes(a: &ArrayViewD<f32>, dtype: Dtype, name: &str) -> Result<Vec<u8>> {
    let n = a.len();
    let size = match dtype {
        Dtype::F32 => 4,
        Dtype::F16 | Dtype::BF16 => 2,
        d => {
            return Err(Error::UnsupportedDtype {
                arg: "items",
                msg: format!("`{name}`: floats are saved as F32, F16 or BF16, not {d}"),
            })
        }
    };
    let mut out = super::try_alloc(crate::checked_mul(n, size, "items")?, 0u8, "items")?;
    for (o, &x) in out.chunks_exact_mut(size).zip(a.iter()) {
        match dtype {
            Dtype::F32 => o.copy_from_slice(&x.to_le_bytes()),
            Dtype::F16 => o.copy_from_slice(&f32_to_f16_bits(x).to_le_bytes()),
            _ => o.copy_from_slice(&f32_to_bf16_bits(x).to_le_bytes()),
        }
    }
    Ok(out)
}

/// A tensor for the safetensors writer (bytes produced when written).
struct StView {
    dtype: ::safetensors::Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl ::safetensors::View for &StView {
    fn dtype(&self) -> ::safetensors::Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn st_dtype(d: Dtype) -> ::safetensors::Dtype {
    use ::safetensors::Dtype as S;
    match d {
        Dtype::F16 => S::F16,
        Dtype::BF16 => S::BF16,
        Dtype::U8 => S::U8,
        _ => S::F32,
    }
}

/// Writes `items` to `path` in `format`. Names must be unique and non-empty;
/// in safetensors, a ternary matrix `x` also takes the name `x.scales`.
///
/// GGUF: ternary matrices need `cols % 256 == 0` and one scale per 256
/// weights (per tensor, per row, or groups that are multiples of 256); their
/// scales are stored as f16 (see [`gguf::matrix_to_tq`]). `metadata` goes
/// to `__metadata__` (safetensors, after the library's own keys) or to
/// string key/values (GGUF, after `general.architecture = "tritter"` unless
/// given).
pub fn save(
    path: impl AsRef<Path>,
    items: &[(String, SaveItem)],
    format: SaveFormat,
    metadata: &[(String, String)],
) -> Result<()> {
    let path = path.as_ref();
    let mut seen = std::collections::HashSet::new();
    for (n, it) in items {
        if n.is_empty() {
            return Err(Error::invalid("items", "an empty tensor name"));
        }
        if !seen.insert(n.clone()) {
            return Err(Error::invalid("items", format!("duplicate name `{n}`")));
        }
        if matches!(it, SaveItem::Ternary(_)) && format == SaveFormat::Safetensors {
            let s = format!("{n}{SCALES_SUFFIX}");
            if !seen.insert(s.clone()) {
                return Err(Error::invalid("items", format!("duplicate name `{s}`")));
            }
        }
    }
    match format {
        SaveFormat::Safetensors => {
            let mut meta: HashMap<String, String> = HashMap::new();
            meta.insert("format".into(), FORMAT_NAME.into());
            meta.insert("format_version".into(), FORMAT_VERSION.into());
            let mut views: Vec<(String, StView)> = Vec::new();
            for (n, it) in items {
                match it {
                    SaveItem::Ternary(m) => {
                        meta.insert(format!("{META_PREFIX}{n}"), meta_json(m));
                        views.push((
                            n.clone(),
                            StView {
                                dtype: ::safetensors::Dtype::U8,
                                shape: vec![m.rows(), m.cols().div_ceil(4)],
                                data: m.packed_2bit(),
                            },
                        ));
                        let (a, b) = m.granularity().scale_shape(m.rows(), m.cols());
                        views.push((
                            format!("{n}{SCALES_SUFFIX}"),
                            StView {
                                dtype: ::safetensors::Dtype::F32,
                                shape: vec![a, b],
                                data: m.scales().iter().flat_map(|s| s.to_le_bytes()).collect(),
                            },
                        ));
                    }
                    SaveItem::Float(a, d) => views.push((
                        n.clone(),
                        StView {
                            dtype: st_dtype(*d),
                            shape: a.shape().to_vec(),
                            data: float_bytes(a, *d, n)?,
                        },
                    )),
                }
            }
            for (k, v) in metadata {
                meta.insert(k.clone(), v.clone());
            }
            ::safetensors::serialize_to_file(
                views.iter().map(|(n, v)| (n.as_str(), v)),
                Some(meta),
                path,
            )
            .map_err(|e| Error::Io(format!("cannot write {}: {e}", path.display())))
        }
        SaveFormat::Gguf(tdtype) => {
            if !matches!(tdtype, Dtype::TQ1_0 | Dtype::TQ2_0) {
                return Err(Error::invalid(
                    "format",
                    format!("GGUF ternary tensors are TQ1_0 or TQ2_0, not {tdtype}"),
                ));
            }
            let mut kv: Vec<(String, GgufValue)> = Vec::new();
            if !metadata.iter().any(|(k, _)| k == "general.architecture") {
                kv.push((
                    "general.architecture".into(),
                    GgufValue::String("tritter".into()),
                ));
            }
            for (k, v) in metadata {
                kv.push((k.clone(), GgufValue::String(v.clone())));
            }
            let mut ts = Vec::with_capacity(items.len());
            for (n, it) in items {
                ts.push(match it {
                    SaveItem::Ternary(m) => GgufWriteTensor {
                        name: n.clone(),
                        dtype: tdtype,
                        shape: vec![m.rows(), m.cols()],
                        data: gguf::matrix_to_tq(m, tdtype, n)?,
                    },
                    SaveItem::Float(a, d) => GgufWriteTensor {
                        name: n.clone(),
                        dtype: *d,
                        shape: a.shape().to_vec(),
                        data: float_bytes(a, *d, n)?,
                    },
                });
            }
            gguf::write(path, &kv, &ts)
        }
    }
}
