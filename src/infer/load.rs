//! Loading a Hugging Face BitNet checkpoint directory into a [`Model`],
//! through the checkpoint reader of [`crate::io`].
//!
//! The ternary projections come out of the reader as matrices with the real
//! scale (`1 / weight_scale`); the embedding, `lm_head` and norms keep their
//! stored dtype (f32, f16 or bf16) until the model widens what it needs.
//! Each tensor's mapped pages are released once it is copied, so resident
//! memory stays near the model's own size.

use std::path::Path;

use super::config::ModelConfig;
use super::dense::DenseData;
use super::model::Model;
use super::weights::{missing, FloatTensor, TensorStore};
use crate::io::{Checkpoint, Dtype};
use crate::ternary::TernaryMatrix;
use crate::{Error, Result};

/// A [`TensorStore`] over an open checkpoint.
pub struct CheckpointStore<'a>(pub &'a Checkpoint);

impl TensorStore for CheckpointStore<'_> {
    fn contains(&self, name: &str) -> bool {
        self.0.info(name).is_some()
    }

    fn ternary(&self, name: &str) -> Result<TernaryMatrix> {
        if self.0.info(name).is_none() {
            return Err(missing(name));
        }
        if !self.0.is_ternary(name) {
            return Err(Error::data(
                "checkpoint",
                format!("tensor `{name}` is not a packed ternary weight"),
            ));
        }
        let m = self.0.ternary(name)?;
        self.0.release(name);
        Ok(m)
    }

    fn float(&self, name: &str) -> Result<FloatTensor> {
        let info = self.0.info(name).ok_or_else(|| missing(name))?.clone();
        let bytes = self.0.bytes(name)?;
        let n = info.numel();
        let bad_len = || {
            Error::data(
                "checkpoint",
                format!("tensor `{name}`: {} bytes for {n} elements", bytes.len()),
            )
        };
        let data = match info.dtype {
            Dtype::F32 => {
                if bytes.len() != 4 * n {
                    return Err(bad_len());
                }
                let mut v: Vec<f32> = super::try_zeroed(n, "weights")?;
                for (o, c) in v.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
                DenseData::F32(v)
            }
            Dtype::F16 | Dtype::BF16 => {
                if bytes.len() != 2 * n {
                    return Err(bad_len());
                }
                let mut v: Vec<u16> = super::try_zeroed(n, "weights")?;
                for (o, c) in v.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = u16::from_le_bytes([c[0], c[1]]);
                }
                if info.dtype == Dtype::F16 {
                    DenseData::F16(v)
                } else {
                    DenseData::Bf16(v)
                }
            }
            other => {
                return Err(Error::data(
                    "checkpoint",
                    format!("tensor `{name}` is {other}, expected F32, F16 or BF16"),
                ))
            }
        };
        self.0.release(name);
        Ok(FloatTensor {
            shape: info.shape,
            data,
        })
    }
}

/// Loads the checkpoint directory `dir` (`config.json` + safetensors).
/// Errors: [`Error::Io`] for missing or unreadable files; invalid data for a
/// corrupt file or a missing/misshapen tensor (the message names it);
/// invalid argument for an unsupported configuration value (named).
pub fn load(dir: &Path) -> Result<Model> {
    let cfg_path = dir.join("config.json");
    let meta = std::fs::metadata(&cfg_path)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", cfg_path.display())))?;
    if meta.len() > 16 << 20 {
        return Err(Error::data("config.json", "larger than 16 MiB"));
    }
    let text = std::fs::read_to_string(&cfg_path)
        .map_err(|e| Error::Io(format!("cannot read {}: {e}", cfg_path.display())))?;
    let cfg = ModelConfig::from_json_str(&text)?;
    let ck = Checkpoint::open(dir)?;
    Model::from_store(cfg, &CheckpointStore(&ck))
}
