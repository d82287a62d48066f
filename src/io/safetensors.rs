//! safetensors files: memory-mapped reading, and writing with a
//! `__metadata__` entry.
//!
//! Layout: an 8-byte little-endian header length `n`, `n` bytes of JSON
//! (`{"name": {"dtype": "BF16", "shape": [..], "data_offsets": [a, b]}, ...,
//! "__metadata__": {"key": "value"}}`), then the data; offsets are relative
//! to the end of the header. The reader checks every entry itself, so that
//! an error names the tensor (dtype, shape, offsets, overlap, gap, size),
//! then has the `safetensors` crate parse the header too and refuses what it
//! refuses: the file is accepted only when both agree.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::dtype::{checked_numel, Dtype, TensorInfo};
use super::Mapping;
use crate::{Error, Result};

/// Headers larger than this are refused (the `safetensors` crate's limit).
pub(crate) const MAX_HEADER: usize = 100_000_000;

#[derive(Debug)]
struct Entry {
    name: String,
    info: TensorInfo,
    /// Absolute offset of the first byte in the file.
    start: usize,
}

/// An open safetensors file: the mapping and its validated header.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    map: Mapping,
    /// Entries in file (offset) order.
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
}

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::data("file", format!("{}: {msg}", path.display()))
}

impl SafetensorsFile {
    /// Maps and validates `path`.
    ///
    /// Errors ([`Error::InvalidData`] naming the file and tensor): truncated
    /// file, header length beyond the file or above 100 MB, header
    /// not UTF-8 JSON, an entry without a known dtype, shape or offsets,
    /// offsets outside the data, overlapping or leaving gaps, a size that
    /// disagrees with dtype x shape, bytes after the last tensor.
    /// [`Error::Io`] when the file cannot be opened or mapped.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let map = super::map_file(path)?;
        Self::from_mapping(path, map)
    }

    /// Parses a safetensors file held in memory (`path` only names it in
    /// errors); same checks as [`Self::open`].
    pub fn from_bytes(bytes: Vec<u8>, path: impl AsRef<Path>) -> Result<Self> {
        Self::from_mapping(path.as_ref(), Mapping::Owned(bytes))
    }

    pub(crate) fn from_mapping(path: &Path, map: Mapping) -> Result<Self> {
        let (entries, metadata) = parse(path, map.bytes())?;
        let mut index = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            index.insert(e.name.clone(), i);
        }
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            map,
            entries,
            index,
            metadata,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor names, in file (offset) order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What the header says about `name`.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.entries[i].info)
    }

    /// The `__metadata__` entry (empty when absent).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The stored bytes of `name` (borrowed from the mapping).
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let e = self.entry(name)?;
        Ok(&self.map.bytes()[e.start..e.start + e.info.nbytes])
    }

    /// Drops the pages of `name` from this process's resident memory (they
    /// are read again from the file if touched later).
    pub fn release(&self, name: &str) {
        if let Ok(e) = self.entry(name) {
            self.map.release(e.start..e.start + e.info.nbytes);
        }
    }

    /// Starts reading `name`'s bytes and the `ahead` bytes after them (in
    /// file order) into the page cache in the background (`MADV_WILLNEED`:
    /// asynchronous readahead, nothing mapped); a no-op for unknown names.
    pub fn prefetch(&self, name: &str, ahead: usize) {
        if let Ok(e) = self.entry(name) {
            let end = (e.start + e.info.nbytes).saturating_add(ahead);
            self.map.prefetch(e.start..end);
        }
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.index
            .get(name)
            .map(|&i| &self.entries[i])
            .ok_or_else(|| {
                Error::invalid(
                    "name",
                    format!("no tensor `{name}` in {}", self.path.display()),
                )
            })
    }
}

type Parsed = (Vec<Entry>, BTreeMap<String, String>);

fn parse(path: &Path, buf: &[u8]) -> Result<Parsed> {
    if buf.len() < 8 {
        return Err(bad(
            path,
            format!(
                "truncated: {} bytes, a safetensors file starts with an 8-byte header length",
                buf.len()
            ),
        ));
    }
    let n64 = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    let avail = (buf.len() - 8) as u64;
    if n64 > avail {
        return Err(bad(
            path,
            format!("header length {n64} exceeds the {avail} bytes after it (truncated or not safetensors)"),
        ));
    }
    let n = n64 as usize;
    if n > MAX_HEADER {
        return Err(bad(
            path,
            format!("header length {n} is above the {MAX_HEADER}-byte limit"),
        ));
    }
    let header = std::str::from_utf8(&buf[8..8 + n])
        .map_err(|e| bad(path, format!("header is not UTF-8: {e}")))?;
    let json: serde_json::Value = serde_json::from_str(header)
        .map_err(|e| bad(path, format!("header is not valid JSON: {e}")))?;
    let obj = json
        .as_object()
        .ok_or_else(|| bad(path, "header is not a JSON object"))?;
    let data_len = buf.len() - 8 - n;
    let mut metadata = BTreeMap::new();
    let mut entries = crate::error::try_with_capacity(obj.len(), "tensor list")?;
    // (start, end, index) for the overlap/gap check.
    for (name, v) in obj {
        if name == "__metadata__" {
            let m = v
                .as_object()
                .ok_or_else(|| bad(path, "`__metadata__` is not an object"))?;
            for (k, val) in m {
                let s = val.as_str().ok_or_else(|| {
                    bad(
                        path,
                        format!("`__metadata__` value of `{k}` is not a string"),
                    )
                })?;
                metadata.insert(k.clone(), s.to_string());
            }
            continue;
        }
        let t = |msg: String| bad(path, format!("tensor `{name}`: {msg}"));
        let o = v
            .as_object()
            .ok_or_else(|| t("entry is not an object".into()))?;
        let ds = o
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| t("no `dtype` string".into()))?;
        let dtype = Dtype::from_safetensors_name(ds).ok_or_else(|| Error::UnsupportedDtype {
            arg: "file",
            msg: format!(
                "{}: tensor `{name}` has dtype `{ds}`, which this reader does not know",
                path.display()
            ),
        })?;
        let sh = o
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| t("no `shape` array".into()))?;
        if sh.len() > 16 {
            return Err(t(format!("{} dimensions (at most 16)", sh.len())));
        }
        let mut shape = Vec::with_capacity(sh.len());
        for d in sh {
            let d = d
                .as_u64()
                .and_then(|d| usize::try_from(d).ok())
                .ok_or_else(|| t(format!("shape entry {d} is not a non-negative integer")))?;
            shape.push(d);
        }
        let offs = o
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .filter(|a| a.len() == 2)
            .ok_or_else(|| t("no `data_offsets` pair".into()))?;
        let (a, b) = match (offs[0].as_u64(), offs[1].as_u64()) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(t("`data_offsets` are not non-negative integers".into())),
        };
        if a > b {
            return Err(t(format!("data_offsets [{a}, {b}] end before they start")));
        }
        if b > data_len as u64 {
            return Err(t(format!(
                "data_offsets [{a}, {b}] run past the {data_len} data bytes (truncated file?)"
            )));
        }
        let numel = checked_numel(&shape, name)?;
        let nbytes = dtype
            .nbytes(numel)
            .ok_or_else(|| t(format!("{numel} elements of {dtype} overflow")))?;
        if (b - a) as usize != nbytes {
            return Err(t(format!(
                "shape {shape:?} of {dtype} needs {nbytes} bytes, data_offsets [{a}, {b}] hold {}",
                b - a
            )));
        }
        entries.push(Entry {
            name: name.clone(),
            info: TensorInfo {
                dtype,
                shape,
                nbytes,
            },
            start: 8 + n + a as usize,
        });
    }
    entries.sort_by_key(|x| (x.start, x.info.nbytes));
    let mut end = 8 + n;
    let mut prev: Option<&str> = None;
    for e in &entries {
        if e.start < end {
            return Err(bad(
                path,
                format!(
                    "tensor `{}` overlaps tensor `{}`",
                    e.name,
                    prev.unwrap_or("?")
                ),
            ));
        }
        if e.start > end {
            return Err(bad(
                path,
                format!(
                    "tensor `{}` starts {} bytes after the previous one ends (gap)",
                    e.name,
                    e.start - end
                ),
            ));
        }
        end = e.start + e.info.nbytes;
        prev = Some(&e.name);
    }
    if end != buf.len() {
        return Err(bad(
            path,
            format!("{} bytes after the last tensor", buf.len() - end),
        ));
    }
    // The maintained parser must agree (it is the reference for the format).
    if let Err(e) = ::safetensors::SafeTensors::read_metadata(buf) {
        return Err(bad(
            path,
            format!("rejected by the safetensors parser: {e}"),
        ));
    }
    Ok((entries, metadata))
}
