//! Hugging Face BitNet checkpoints, as transformers writes them.
//!
//! A checkpoint directory holds `config.json` (`model_type: "bitnet"`,
//! `quantization_config` with `quant_method: "bitnet"`) and either one
//! `model.safetensors` or shards listed by `model.safetensors.index.json`.
//! A single `.safetensors` file opens too (no config then).
//!
//! # The packed ternary layout (transformers' `pack_weights`)
//! A linear layer's weight `W [out, in]` (ternary) is stored as `uint8
//! [out/4, in]`: with `R = out/4`, the byte at `[r, c]` holds, in bits
//! `2j..2j+1`, the code `W[j·R + r, c] + 1` (`0` = -1, `1` = 0, `2` = +1;
//! `3` is invalid). Row `o` of `W` is therefore slab `o / R`, row `o % R`.
//!
//! Beside it, `<name>_scale` (e.g. `...down_proj.weight_scale`, one value,
//! bf16 in practice) scales it. Which way depends on the layer class
//! ([`ScaleConvention`]): transformers' `BitLinear` (`linear_class:
//! "bitlinear"`, the default and what `microsoft/bitnet-b1.58-2B-4T` uses)
//! computes `y = (x_q · Wᵀ) / (s_x · weight_scale)`, so the weight is
//! `W / weight_scale` and the library's scale is `1 / weight_scale`;
//! `AutoBitLinear` (`"autobitlinear"`) multiplies by `weight_scale`. The f32
//! scale is computed once, in f32 (`1.0f32 / weight_scale`), so every
//! dequantized weight equals `unpack_weights(w, float32) / weight_scale`
//! exactly.
//!
//! Embeddings, norms and `lm_head` are bf16/f16/f32 and come out as f32
//! ([`HfCheckpoint::tensor_f32`]). An unquantized checkpoint (plain float
//! linear weights) is ternarized on load with a chosen quantizer
//! ([`HfCheckpoint::ternary_quantized`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};

use super::dtype::{Dtype, TensorInfo};
use super::safetensors::SafetensorsFile;
use crate::ternary::{Granularity, QuantConfig, TernaryMatrix};
use crate::{Error, Result};

/// Bytes after a tensor that [`HfCheckpoint::prefetch`] asks the kernel to
/// read ahead (about two layers of a 2B-parameter BitNet).
pub const PREFETCH_AHEAD: usize = 32 << 20;

/// How a stored `weight_scale` turns into the library's scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleConvention {
    /// `scale = 1 / weight_scale` (transformers' `BitLinear`, `linear_class: "bitlinear"`).
    Inverse,
    /// `scale = weight_scale` (transformers' `AutoBitLinear`, `linear_class: "autobitlinear"`).
    Direct,
}

/// `quantization_config` of a BitNet checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct HfQuantConfig {
    /// `quant_method` (`"bitnet"`).
    pub quant_method: String,
    /// `linear_class`: `"bitlinear"` (default) or `"autobitlinear"`.
    pub linear_class: String,
    /// `quantization_mode`: `"offline"` (default; packed weights) or `"online"`.
    pub quantization_mode: String,
    /// `use_rms_norm`: an RMSNorm on the activations inside each linear layer.
    pub use_rms_norm: bool,
    /// `rms_norm_eps` of that norm.
    pub rms_norm_eps: f64,
    /// `modules_to_not_convert`.
    pub modules_to_not_convert: Vec<String>,
}

/// `config.json` of a BitNet (or Llama-like) checkpoint, with transformers'
/// `BitNetConfig` defaults for absent keys. `raw` keeps the whole document.
#[derive(Debug, Clone, PartialEq)]
pub struct HfConfig {
    /// `model_type` (`"bitnet"`), if present.
    pub model_type: Option<String>,
    /// `vocab_size`.
    pub vocab_size: usize,
    /// `hidden_size`.
    pub hidden_size: usize,
    /// `intermediate_size`.
    pub intermediate_size: usize,
    /// `num_hidden_layers`.
    pub num_hidden_layers: usize,
    /// `num_attention_heads`.
    pub num_attention_heads: usize,
    /// `num_key_value_heads` (defaults to `num_attention_heads`).
    pub num_key_value_heads: usize,
    /// `head_dim` (defaults to `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// `hidden_act` (`"relu2"`).
    pub hidden_act: String,
    /// `max_position_embeddings`.
    pub max_position_embeddings: usize,
    /// `rms_norm_eps`.
    pub rms_norm_eps: f64,
    /// `rope_parameters.rope_theta` (or top-level `rope_theta`; default 500000).
    pub rope_theta: f64,
    /// `tie_word_embeddings`.
    pub tie_word_embeddings: bool,
    /// `attention_bias`.
    pub attention_bias: bool,
    /// `bos_token_id`.
    pub bos_token_id: Option<i64>,
    /// `eos_token_id` (a number or a list in the file).
    pub eos_token_ids: Vec<i64>,
    /// `pad_token_id`.
    pub pad_token_id: Option<i64>,
    /// `quantization_config`, if present.
    pub quantization: Option<HfQuantConfig>,
    /// The whole parsed document.
    pub raw: serde_json::Value,
}

fn cfg_err(key: &str, msg: impl std::fmt::Display) -> Error {
    Error::data("config.json", format!("`{key}` {msg}"))
}

fn get_usize(
    o: &serde_json::Map<String, serde_json::Value>,
    key: &str,
    def: usize,
) -> Result<usize> {
    match o.get(key) {
        None | Some(serde_json::Value::Null) => Ok(def),
        Some(v) => v
            .as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| cfg_err(key, format!("is {v}, not a non-negative integer"))),
    }
}

fn get_f64(o: &serde_json::Map<String, serde_json::Value>, key: &str, def: f64) -> Result<f64> {
    match o.get(key) {
        None | Some(serde_json::Value::Null) => Ok(def),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| cfg_err(key, format!("is {v}, not a finite number"))),
    }
}

fn get_bool(o: &serde_json::Map<String, serde_json::Value>, key: &str, def: bool) -> Result<bool> {
    match o.get(key) {
        None | Some(serde_json::Value::Null) => Ok(def),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| cfg_err(key, format!("is {v}, not a boolean"))),
    }
}

fn get_str(o: &serde_json::Map<String, serde_json::Value>, key: &str, def: &str) -> Result<String> {
    match o.get(key) {
        None | Some(serde_json::Value::Null) => Ok(def.to_string()),
        Some(v) => v
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| cfg_err(key, format!("is {v}, not a string"))),
    }
}

fn get_id(o: &serde_json::Map<String, serde_json::Value>, key: &str) -> Result<Vec<i64>> {
    match o.get(key) {
        None | Some(serde_json::Value::Null) => Ok(vec![]),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_i64()
                    .ok_or_else(|| cfg_err(key, format!("has {v}, not an integer")))
            })
            .collect(),
        Some(v) => Ok(vec![v
            .as_i64()
            .ok_or_else(|| cfg_err(key, format!("is {v}, not an integer")))?]),
    }
}

impl HfConfig {
    /// Parses `config.json` text. Errors name the key ([`Error::InvalidData`]
    /// with argument `config.json`).
    pub fn parse(text: &str) -> Result<Self> {
        let raw: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::data("config.json", format!("not valid JSON: {e}")))?;
        let o = raw
            .as_object()
            .ok_or_else(|| Error::data("config.json", "not a JSON object"))?;
        let hidden_size = get_usize(o, "hidden_size", 2560)?;
        let num_attention_heads = get_usize(o, "num_attention_heads", 20)?;
        let head_dim_def = hidden_size.checked_div(num_attention_heads).unwrap_or(0);
        let rope_theta = match o.get("rope_parameters").and_then(|r| r.as_object()) {
            Some(r) if r.contains_key("rope_theta") => get_f64(r, "rope_theta", 500000.0)?,
            _ => get_f64(o, "rope_theta", 500000.0)?,
        };
        let quantization = match o.get("quantization_config") {
            None | Some(serde_json::Value::Null) => None,
            Some(q) => {
                let q = q
                    .as_object()
                    .ok_or_else(|| cfg_err("quantization_config", "is not an object"))?;
                let modules = match q.get("modules_to_not_convert") {
                    Some(serde_json::Value::Array(a)) => a
                        .iter()
                        .map(|v| {
                            v.as_str().map(str::to_string).ok_or_else(|| {
                                cfg_err("modules_to_not_convert", "holds a non-string")
                            })
                        })
                        .collect::<Result<Vec<_>>>()?,
                    _ => vec![],
                };
                Some(HfQuantConfig {
                    quant_method: get_str(q, "quant_method", "")?,
                    linear_class: get_str(q, "linear_class", "bitlinear")?,
                    quantization_mode: get_str(q, "quantization_mode", "offline")?,
                    use_rms_norm: get_bool(q, "use_rms_norm", false)?,
                    rms_norm_eps: get_f64(q, "rms_norm_eps", 1e-6)?,
                    modules_to_not_convert: modules,
                })
            }
        };
        let mut eos = get_id(o, "eos_token_id")?;
        if !o.contains_key("eos_token_id") {
            eos = vec![128001];
        }
        Ok(HfConfig {
            model_type: match o.get("model_type") {
                None | Some(serde_json::Value::Null) => None,
                Some(_) => Some(get_str(o, "model_type", "")?),
            },
            vocab_size: get_usize(o, "vocab_size", 128256)?,
            hidden_size,
            intermediate_size: get_usize(o, "intermediate_size", 6912)?,
            num_hidden_layers: get_usize(o, "num_hidden_layers", 30)?,
            num_attention_heads,
            num_key_value_heads: get_usize(o, "num_key_value_heads", num_attention_heads)?,
            head_dim: get_usize(o, "head_dim", head_dim_def)?,
            hidden_act: get_str(o, "hidden_act", "relu2")?,
            max_position_embeddings: get_usize(o, "max_position_embeddings", 2048)?,
            rms_norm_eps: get_f64(o, "rms_norm_eps", 1e-5)?,
            rope_theta,
            tie_word_embeddings: get_bool(o, "tie_word_embeddings", false)?,
            attention_bias: get_bool(o, "attention_bias", false)?,
            bos_token_id: if o.contains_key("bos_token_id") {
                get_id(o, "bos_token_id")?.first().copied()
            } else {
                Some(128000)
            },
            eos_token_ids: eos,
            pad_token_id: get_id(o, "pad_token_id")?.first().copied(),
            quantization,
            raw: raw.clone(),
        })
    }

    /// The scale convention the `quantization_config` implies
    /// ([`ScaleConvention::Direct`] for `autobitlinear`, else inverse).
    pub fn scale_convention(&self) -> ScaleConvention {
        match &self.quantization {
            Some(q) if q.linear_class == "autobitlinear" => ScaleConvention::Direct,
            _ => ScaleConvention::Inverse,
        }
    }
}

/// A Hugging Face checkpoint: a directory (config, one file or shards) or a
/// single `.safetensors` file, memory-mapped.
#[derive(Debug)]
pub struct HfCheckpoint {
    root: PathBuf,
    config: Option<HfConfig>,
    files: Vec<SafetensorsFile>,
    /// Tensor name -> file index.
    index: HashMap<String, usize>,
    /// Sorted tensor names.
    names: Vec<String>,
    convention: ScaleConvention,
}

/// File names of a sharded checkpoint must stay inside its directory.
fn shard_name_ok(s: &str) -> bool {
    !s.is_empty()
        && !s.contains('/')
        && !s.contains('\\')
        && s != "."
        && s != ".."
        && !s.contains('\0')
}

fn read_text(path: &Path, limit: u64) -> Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::Io(format!("cannot stat {}: {e}", path.display())))?;
    if meta.len() > limit {
        return Err(Error::data(
            "file",
            format!(
                "{}: {} bytes, more than the {limit} a JSON file here may have",
                path.display(),
                meta.len()
            ),
        ));
    }
    std::fs::read_to_string(path)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", path.display())))
}

impl HfCheckpoint {
    /// Opens a checkpoint directory or a single `.safetensors` file.
    ///
    /// A directory needs `model.safetensors.index.json` (shards) or
    /// `model.safetensors`; `config.json` is read when present. Errors:
    /// [`Error::Io`] for missing/unreadable files, [`Error::InvalidData`]
    /// for a bad config, index (unknown shard, a shard path leaving the
    /// directory, a tensor listed in one shard but stored elsewhere or
    /// twice) or safetensors file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if !path.is_dir() {
            let f = SafetensorsFile::open(path)?;
            return Self::assemble(path.to_path_buf(), None, vec![f], None);
        }
        let config = {
            let p = path.join("config.json");
            if p.exists() {
                Some(HfConfig::parse(&read_text(&p, 16 << 20)?)?)
            } else {
                None
            }
        };
        let index_path = path.join("model.safetensors.index.json");
        if index_path.exists() {
            let text = read_text(&index_path, 256 << 20)?;
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::data(
                    "file",
                    format!("{}: not valid JSON: {e}", index_path.display()),
                )
            })?;
            let wm = v
                .get("weight_map")
                .and_then(|w| w.as_object())
                .ok_or_else(|| {
                    Error::data(
                        "file",
                        format!("{}: no `weight_map` object", index_path.display()),
                    )
                })?;
            let mut shard_names: Vec<String> = Vec::new();
            let mut expect: Vec<(String, usize)> = Vec::with_capacity(wm.len());
            for (tensor, f) in wm {
                let f = f.as_str().filter(|s| shard_name_ok(s)).ok_or_else(|| {
                    Error::data(
                        "file",
                        format!(
                            "{}: tensor `{tensor}` maps to {f}, not a file name in the checkpoint directory",
                            index_path.display()
                        ),
                    )
                })?;
                let i = match shard_names.iter().position(|s| s == f) {
                    Some(i) => i,
                    None => {
                        shard_names.push(f.to_string());
                        shard_names.len() - 1
                    }
                };
                expect.push((tensor.clone(), i));
            }
            let files = shard_names
                .iter()
                .map(|s| SafetensorsFile::open(path.join(s)))
                .collect::<Result<Vec<_>>>()?;
            return Self::assemble(path.to_path_buf(), config, files, Some(expect));
        }
        let single = path.join("model.safetensors");
        if !single.exists() {
            return Err(Error::Io(format!(
                "{}: neither model.safetensors.index.json nor model.safetensors",
                path.display()
            )));
        }
        let f = SafetensorsFile::open(&single)?;
        Self::assemble(path.to_path_buf(), config, vec![f], None)
    }

    /// A checkpoint of one already-open safetensors file (no config).
    pub fn from_file(f: SafetensorsFile) -> Self {
        let path = f.path().to_path_buf();
        Self::assemble(path, None, vec![f], None).expect("one file has no duplicates")
    }

    fn assemble(
        root: PathBuf,
        config: Option<HfConfig>,
        files: Vec<SafetensorsFile>,
        expect: Option<Vec<(String, usize)>>,
    ) -> Result<Self> {
        let mut index = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            for n in f.names() {
                if let Some(j) = index.insert(n.to_string(), i) {
                    return Err(Error::data(
                        "file",
                        format!(
                            "tensor `{n}` is stored in both {} and {}",
                            files[j].path().display(),
                            f.path().display()
                        ),
                    ));
                }
            }
        }
        for (t, i) in expect.unwrap_or_default() {
            if index.get(&t) != Some(&i) {
                return Err(Error::data(
                    "file",
                    format!(
                        "the index maps tensor `{t}` to {}, which does not hold it",
                        files[i].path().display()
                    ),
                ));
            }
        }
        let mut names: Vec<String> = index.keys().cloned().collect();
        names.sort();
        let convention = config
            .as_ref()
            .map_or(ScaleConvention::Inverse, HfConfig::scale_convention);
        Ok(HfCheckpoint {
            root,
            config,
            files,
            index,
            names,
            convention,
        })
    }

    /// The path opened.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// `config.json`, when the checkpoint has one.
    pub fn config(&self) -> Option<&HfConfig> {
        self.config.as_ref()
    }

    /// The safetensors files (one, or the shards in index order).
    pub fn files(&self) -> &[SafetensorsFile] {
        &self.files
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// What the file says about `name`.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).and_then(|&i| self.files[i].info(name))
    }

    /// The scale convention used by [`Self::ternary`] (from the config).
    pub fn scale_convention(&self) -> ScaleConvention {
        self.convention
    }

    /// Overrides the scale convention.
    pub fn set_scale_convention(&mut self, c: ScaleConvention) {
        self.convention = c;
    }

    /// The stored bytes of `name`, borrowed from the mapping.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        self.file(name)?.bytes(name)
    }

    /// Drops the mapped pages of `name` from resident memory (after it has
    /// been converted).
    pub fn release(&self, name: &str) {
        if let Ok(f) = self.file(name) {
            f.release(name);
        }
    }

    /// Starts reading `name` and the [`PREFETCH_AHEAD`] bytes after it
    /// into the page cache (asynchronous; resident memory does not grow),
    /// so that the disk reads ahead while `name` converts. [`Self::ternary`]
    /// and [`Self::tensor_f32`] call it; loading in file order (each file's
    /// [`SafetensorsFile::names`]) makes the read-ahead useful.
    pub fn prefetch(&self, name: &str) {
        if let Ok(f) = self.file(name) {
            f.prefetch(name, PREFETCH_AHEAD);
        }
    }

    fn file(&self, name: &str) -> Result<&SafetensorsFile> {
        self.index
            .get(name)
            .map(|&i| &self.files[i])
            .ok_or_else(|| {
                Error::invalid(
                    "name",
                    format!("no tensor `{name}` in {}", self.root.display()),
                )
            })
    }

    /// The name of the scale tensor of `name` (`x.weight` -> `x.weight_scale`).
    pub fn scale_name(name: &str) -> String {
        format!("{name}_scale")
    }

    /// Whether `name` is a packed ternary weight: a 2-D `U8` tensor with a
    /// `<name>_scale` beside it.
    pub fn is_ternary(&self, name: &str) -> bool {
        matches!(self.info(name), Some(i) if i.dtype == Dtype::U8 && i.shape.len() == 2)
            && self.info(&Self::scale_name(name)).is_some()
    }

    /// Any tensor as f32, in its shape (floats widened exactly, integers cast).
    pub fn tensor_f32(&self, name: &str) -> Result<ArrayD<f32>> {
        let info = self
            .info(name)
            .ok_or_else(|| self.file(name).expect_err("missing tensor"))?;
        self.prefetch(name);
        tensor_f32_from(name, info, self.bytes(name)?)
    }

    /// The ternary matrix of a packed weight `name` (`U8 [out/4, in]` in
    /// transformers' layout, with `<name>_scale`), or of an unpacked
    /// float weight whose values are all -1, 0, +1 with a `<name>_scale`.
    ///
    /// Shape `[out, in]` with `out = 4 · (stored rows)`; scales per tensor
    /// (a 1-element `weight_scale`) or per row (`out` elements), converted by
    /// [`Self::scale_convention`].
    ///
    /// Errors naming the tensor: no such tensor or no scale tensor
    /// (InvalidArgument), not 2-D, a code `3` (InvalidData, with row and
    /// column), a float weight with a value outside {-1, 0, 1}
    /// (InvalidData), a scale that is not finite or whose inverse is not
    /// ([`Error::NonFinite`] / InvalidData), a scale count that fits
    /// neither granularity (ShapeMismatch).
    pub fn ternary(&self, name: &str) -> Result<TernaryMatrix> {
        let info = self
            .info(name)
            .cloned()
            .ok_or_else(|| self.file(name).expect_err("missing tensor"))?;
        if info.shape.len() != 2 {
            return Err(Error::shape(
                "name",
                format!(
                    "tensor `{name}` has shape {:?}; a ternary weight is 2-D",
                    info.shape
                ),
            ));
        }
        let sname = Self::scale_name(name);
        let sinfo = self.info(&sname).ok_or_else(|| {
            Error::invalid(
                "name",
                format!(
                    "tensor `{name}` ({}) has no `{sname}` beside it: not a packed BitNet weight (use ternary_quantized for float weights)",
                    info.dtype
                ),
            )
        })?;
        self.prefetch(name);
        let raw_scales = tensor_f32_from(&sname, sinfo, self.bytes(&sname)?)?;
        let data = self.bytes(name)?;
        let m = match info.dtype {
            Dtype::U8 => {
                let (r, c) = (info.shape[0], info.shape[1]);
                let rows = r.checked_mul(4).ok_or_else(|| {
                    Error::overflow("name", format!("tensor `{name}`: 4 x {r} rows overflow"))
                })?;
                let scales = self.scales(&sname, raw_scales.as_slice().expect("fresh"), rows)?;
                check_hf_len(data, r, c, name)?;
                // transformers' codes are `t + 1`, the kernels' codes: build
                // the compute layout straight from the mapped bytes, checking
                // the codes in the same pass (every field of every byte is
                // read by exactly one output row). An invalid code 3 is
                // written as 1 (zero) and flagged; the matrix is then
                // dropped and the slow check names the byte.
                let bad = std::sync::atomic::AtomicBool::new(false);
                let m = TernaryMatrix::from_code_rows(rows, c, scales.0, scales.1, |o, out| {
                    let row = &data[(o % r) * c..(o % r + 1) * c];
                    let sh = 2 * (o / r);
                    let mut acc = 0u8;
                    for (v, &b) in out.iter_mut().zip(row) {
                        let x = (b >> sh) & 3;
                        let three = x & (x >> 1);
                        acc |= three;
                        *v = x ^ (three << 1);
                    }
                    if acc != 0 {
                        bad.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                })?;
                if bad.load(std::sync::atomic::Ordering::Relaxed) {
                    check_hf_codes(data, r, c, name)?;
                    return Err(Error::data(
                        "name",
                        format!("tensor `{name}`: invalid code 3"),
                    ));
                }
                m
            }
            d if d.is_float() => {
                let (rows, cols) = (info.shape[0], info.shape[1]);
                let scales = self.scales(&sname, raw_scales.as_slice().expect("fresh"), rows)?;
                let w = tensor_f32_from(name, &info, data)?;
                let mut t = super::try_alloc(rows * cols, 0i8, "tensor")?;
                for (i, (d, &v)) in t.iter_mut().zip(w.iter()).enumerate() {
                    *d = if v == 0.0 {
                        0
                    } else if v == 1.0 {
                        1
                    } else if v == -1.0 {
                        -1
                    } else {
                        return Err(Error::data(
                            "name",
                            format!(
                                "tensor `{name}` has {v} at row {}, column {}: an unpacked BitNet weight holds only -1, 0, 1",
                                i / cols.max(1),
                                i % cols.max(1)
                            ),
                        ));
                    };
                }
                let tv = ndarray::ArrayView2::from_shape((rows, cols), &t).expect("sized");
                TernaryMatrix::from_ternary(tv, &scales.0, scales.1)?
            }
            d => {
                return Err(Error::UnsupportedDtype {
                    arg: "name",
                    msg: format!(
                        "tensor `{name}` is {d}; a ternary weight is U8 (packed) or float"
                    ),
                })
            }
        };
        Ok(m)
    }

    /// Library scales of `rows` output rows from the stored `weight_scale`.
    fn scales(&self, sname: &str, raw: &[f32], rows: usize) -> Result<(Vec<f32>, Granularity)> {
        let g = if raw.len() == 1 {
            Granularity::PerTensor
        } else if raw.len() == rows {
            Granularity::PerRow
        } else {
            return Err(Error::shape(
                "name",
                format!(
                    "`{sname}` has {} values; expected 1 (per tensor) or {rows} (per row)",
                    raw.len()
                ),
            ));
        };
        let mut out = Vec::with_capacity(raw.len());
        for (i, &s) in raw.iter().enumerate() {
            if !s.is_finite() {
                return Err(Error::data(
                    "name",
                    format!("`{sname}` value {i} is {s}, not finite"),
                ));
            }
            let v = match self.convention {
                ScaleConvention::Direct => s,
                ScaleConvention::Inverse => 1.0f32 / s,
            };
            if !v.is_finite() {
                return Err(Error::data(
                    "name",
                    format!(
                        "`{sname}` value {i} is {s}: its inverse (the weight scale) is not finite"
                    ),
                ));
            }
            out.push(v);
        }
        Ok((out, g))
    }

    /// A float weight `name` (`[out, in]`, bf16/f16/f32/f64) ternarized with
    /// `cfg` (for unquantized checkpoints).
    pub fn ternary_quantized(&self, name: &str, cfg: &QuantConfig) -> Result<TernaryMatrix> {
        let info = self
            .info(name)
            .cloned()
            .ok_or_else(|| self.file(name).expect_err("missing tensor"))?;
        if info.shape.len() != 2 || !info.dtype.is_float() {
            return Err(Error::UnsupportedDtype {
                arg: "name",
                msg: format!(
                    "tensor `{name}` is {} {:?}; quantizing needs a 2-D float tensor",
                    info.dtype, info.shape
                ),
            });
        }
        let w = tensor_f32_from(name, &info, self.bytes(name)?)?;
        let w2 = w
            .into_dimensionality::<ndarray::Ix2>()
            .expect("2-D checked above");
        TernaryMatrix::from_f32(w2.view(), cfg)
    }
}

/// Converts a stored tensor to f32 (fallible allocation, bounded by the file).
///
/// The buffer comes zeroed from the allocator (fresh pages, no extra pass);
/// element-wise dtypes convert in parallel chunks, so the page faults of the
/// new buffer and the reads of the mapped bytes run on every core.
pub(crate) fn tensor_f32_from(name: &str, info: &TensorInfo, data: &[u8]) -> Result<ArrayD<f32>> {
    let n = info.numel();
    let mut v = crate::error::try_zeroed::<f32>(n, "tensor")?;
    let width = match info.dtype {
        Dtype::TQ1_0 | Dtype::TQ2_0 | Dtype::Other(_) => None,
        d => d.nbytes(1),
    };
    match width {
        Some(w) if n >= 2 * CONVERT_CHUNK && data.len() == n * w => {
            use rayon::prelude::*;
            crate::parallel::install(|| {
                v.par_chunks_mut(CONVERT_CHUNK)
                    .zip(data.par_chunks(CONVERT_CHUNK * w))
                    .try_for_each(|(d, s)| super::to_f32_into(info.dtype, s, d, name))
            })?;
        }
        _ => super::to_f32_into(info.dtype, data, &mut v, name)?,
    }
    Ok(ArrayD::from_shape_vec(IxDyn(&info.shape), v).expect("numel matches"))
}

/// Elements a task of [`tensor_f32_from`] converts (1 MiB of f32 out).
const CONVERT_CHUNK: usize = 1 << 18;

/// Remaps the 4 2-bit fields of an HF byte (`code = t + 1`) to the library's
/// codes (`00 = 0, 01 = +1, 10 = -1`), field by field: `h = 0 -> 10`,
/// `1 -> 00`, `2 -> 01` (valid input only).
#[inline(always)]
fn hf_fields_to_canonical(x: u8) -> u8 {
    let lo = x & 0x55;
    let hi = (x >> 1) & 0x55;
    hi | ((!lo & !hi & 0x55) << 1)
}

/// transformers' packed `[r, c]` bytes -> the canonical 2-bit layout of
/// `[4r, c]`, validating every code (`3` is invalid).
pub fn hf_to_2bit(src: &[u8], r: usize, c: usize, name: &str) -> Result<Vec<u8>> {
    check_hf_codes(src, r, c, name)?;
    let rb = c.div_ceil(4);
    let rows = 4 * r;
    let mut out = super::try_alloc(rows * rb, 0u8, "tensor")?;
    if rb == 0 || r == 0 {
        return Ok(out);
    }
    // Output slab j (rows j·r .. (j+1)·r) reads field j of every source byte.
    crate::parallel::install(|| {
        use rayon::prelude::*;
        out.par_chunks_mut(rb).enumerate().for_each(|(o, dst)| {
            let (j, rr) = (o / r, o % r);
            let row = &src[rr * c..(rr + 1) * c];
            let sh = 2 * j;
            let mut ch = row.chunks_exact(4);
            for (d, q) in dst.iter_mut().zip(&mut ch) {
                let f = |x: u8| (hf_fields_to_canonical(x) >> sh) & 3;
                *d = f(q[0]) | f(q[1]) << 2 | f(q[2]) << 4 | f(q[3]) << 6;
            }
            let rem = ch.remainder();
            if !rem.is_empty() {
                let mut b = 0u8;
                for (i, &x) in rem.iter().enumerate() {
                    b |= ((hf_fields_to_canonical(x) >> sh) & 3) << (2 * i);
                }
                dst[rb - 1] = b;
            }
        });
    });
    Ok(out)
}

/// Checks the length of a transformers-packed `[r, c]` weight.
fn check_hf_len(src: &[u8], r: usize, c: usize, name: &str) -> Result<()> {
    let need = r.checked_mul(c);
    if need != Some(src.len()) {
        return Err(Error::shape(
            "name",
            format!(
                "tensor `{name}`: {} bytes for a [{r}, {c}] packed weight",
                src.len()
            ),
        ));
    }
    Ok(())
}

/// Checks the length of a transformers-packed `[r, c]` weight and that no
/// 2-bit field holds the invalid code 3 (the error names row and column).
fn check_hf_codes(src: &[u8], r: usize, c: usize, name: &str) -> Result<()> {
    check_hf_len(src, r, c, name)?;
    if let Some(i) = src.iter().position(|&b| b & (b >> 1) & 0x55 != 0) {
        let b = src[i];
        let j = (0..4).find(|j| (b >> (2 * j)) & 3 == 3).unwrap_or(0);
        return Err(Error::data(
            "name",
            format!(
                "tensor `{name}`: invalid code 3 in byte [{}, {}] bits {}..{} (weight row {}, column {})",
                i / c,
                i % c,
                2 * j,
                2 * j + 1,
                j * r + i / c,
                i % c
            ),
        ));
    }
    Ok(())
}
