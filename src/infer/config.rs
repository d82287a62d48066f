//! The decoder's configuration, read from a Hugging Face `config.json`
//! (`model_type: "bitnet"`, as transformers' `BitNetConfig` writes it).

use serde_json::Value;

use super::rope::RopeScaling;
use crate::{Error, Result};

/// The MLP's `hidden_act` (transformers' `ACT2FN` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiddenAct {
    /// `relu2`: `relu(x)²` (BitNet b1.58).
    Relu2,
    /// `silu` / `swish`: `x · sigmoid(x)`.
    Silu,
    /// `gelu`: `x · Φ(x)` with the exact erf.
    Gelu,
    /// `gelu_pytorch_tanh` / `gelu_new`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

impl HiddenAct {
    /// From transformers' name.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "relu2" => HiddenAct::Relu2,
            "silu" | "swish" => HiddenAct::Silu,
            "gelu" => HiddenAct::Gelu,
            "gelu_pytorch_tanh" | "gelu_new" => HiddenAct::GeluTanh,
            "relu" => HiddenAct::Relu,
            other => {
                return Err(Error::invalid(
                    "hidden_act",
                    format!(
                        "unsupported hidden_act {other:?} (supported: relu2, silu, swish, gelu, \
                         gelu_pytorch_tanh, gelu_new, relu)"
                    ),
                ))
            }
        })
    }

    /// The activation of one value (f32 in and out; inner math in f64 where
    /// a transcendental is involved).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            HiddenAct::Relu2 => {
                let r = x.max(0.0);
                r * r
            }
            HiddenAct::Relu => x.max(0.0),
            HiddenAct::Silu => (x as f64 / (1.0 + (-(x as f64)).exp())) as f32,
            HiddenAct::Gelu => {
                let v = x as f64;
                (0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2))) as f32
            }
            HiddenAct::GeluTanh => {
                let v = x as f64;
                let c = (2.0 / std::f64::consts::PI).sqrt();
                (0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())) as f32
            }
        }
    }
}

/// erf in f64, absolute error below 2.5e-7 (Chebyshev fit of erfc,
/// Numerical Recipes' `erfcc`): ample for an f32 result.
pub fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 {
        1.0 - erfc
    } else {
        erfc - 1.0
    }
}

/// A BitNet b1.58 decoder's shape and settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Vocabulary size (rows of the embedding and `lm_head`).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (divides `num_heads`; grouped-query attention).
    pub num_kv_heads: usize,
    /// Width of one head (even; `num_heads · head_dim == hidden_size`).
    pub head_dim: usize,
    /// MLP activation.
    pub hidden_act: HiddenAct,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE base.
    pub rope_theta: f64,
    /// RoPE frequency scaling.
    pub rope_scaling: RopeScaling,
    /// Longest context the model was configured for (the default cache length).
    pub max_position_embeddings: usize,
    /// `lm_head` shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q/k/v/o projections carry a bias.
    pub attention_bias: bool,
    /// Beginning-of-sequence token, if the config names one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token(s) from the config (generation stops there when asked).
    pub eos_token_ids: Vec<u32>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::data("config.json", msg)
}

fn get_usize(v: &Value, key: &str) -> Result<Option<usize>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_u64()
            .map(|n| Some(n as usize))
            .ok_or_else(|| bad(format!("`{key}` must be a non-negative integer, got {x}"))),
    }
}

fn req_usize(v: &Value, key: &str) -> Result<usize> {
    get_usize(v, key)?.ok_or_else(|| bad(format!("`{key}` is missing")))
}

fn get_f64(v: &Value, key: &str) -> Result<Option<f64>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => x
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad(format!("`{key}` must be a number, got {x}"))),
    }
}

fn get_bool(v: &Value, key: &str, default: bool) -> Result<bool> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(x) => Err(bad(format!("`{key}` must be true or false, got {x}"))),
    }
}

fn token_ids(v: Option<&Value>, key: &str) -> Result<Vec<u32>> {
    let one = |x: &Value| {
        x.as_u64()
            .filter(|&n| n <= u32::MAX as u64)
            .map(|n| n as u32)
            .ok_or_else(|| bad(format!("`{key}` must hold token ids, got {x}")))
    };
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a.iter().map(one).collect(),
        Some(x) => Ok(vec![one(x)?]),
    }
}

impl ModelConfig {
    /// Parses `config.json` text. Errors ([`Error::InvalidData`] naming
    /// `config.json`, or [`Error::InvalidArgument`] for unsupported values):
    /// not JSON, a `model_type` other than `bitnet`, a missing or mistyped
    /// field, an unsupported `hidden_act` / `rope_type` / BitNet
    /// quantization setting, inconsistent head counts.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        Self::from_json(&v)
    }

    /// As [`Self::from_json_str`] from a parsed value.
    pub fn from_json(v: &Value) -> Result<Self> {
        if !v.is_object() {
            return Err(bad("the top level must be an object"));
        }
        match v.get("model_type").and_then(Value::as_str) {
            Some("bitnet") => {}
            Some(other) => {
                return Err(Error::invalid(
                    "model_type",
                    format!("unsupported model_type {other:?} (this engine runs \"bitnet\")"),
                ))
            }
            None => return Err(bad("`model_type` is missing")),
        }
        if let Some(q) = v.get("quantization_config").filter(|q| !q.is_null()) {
            check_quantization(q)?;
        }
        let hidden_size = req_usize(v, "hidden_size")?;
        let num_heads = req_usize(v, "num_attention_heads")?;
        let num_kv_heads = get_usize(v, "num_key_value_heads")?.unwrap_or(num_heads);
        let head_dim = match get_usize(v, "head_dim")? {
            Some(h) => h,
            None if num_heads > 0 => hidden_size / num_heads,
            None => 0,
        };
        let act = v
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("relu2");
        let max_pos = get_usize(v, "max_position_embeddings")?.unwrap_or(2048);
        let (rope_theta, rope_scaling) = parse_rope(v, max_pos)?;
        let cfg = ModelConfig {
            vocab_size: req_usize(v, "vocab_size")?,
            hidden_size,
            intermediate_size: req_usize(v, "intermediate_size")?,
            num_layers: req_usize(v, "num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            hidden_act: HiddenAct::from_name(act)?,
            rms_norm_eps: get_f64(v, "rms_norm_eps")?.unwrap_or(1e-5) as f32,
            rope_theta,
            rope_scaling,
            max_position_embeddings: max_pos,
            tie_word_embeddings: get_bool(v, "tie_word_embeddings", false)?,
            attention_bias: get_bool(v, "attention_bias", false)?,
            bos_token_id: token_ids(v.get("bos_token_id"), "bos_token_id")?
                .first()
                .copied(),
            eos_token_ids: token_ids(v.get("eos_token_id"), "eos_token_id")?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks sizes and their relations (non-zero sizes, heads dividing,
    /// even head width, `num_heads · head_dim == hidden_size`, finite
    /// positive eps and theta).
    pub fn validate(&self) -> Result<()> {
        let nz = |n: usize, name: &'static str| {
            if n == 0 {
                Err(Error::invalid(name, "must be > 0"))
            } else {
                Ok(())
            }
        };
        nz(self.vocab_size, "vocab_size")?;
        nz(self.hidden_size, "hidden_size")?;
        nz(self.intermediate_size, "intermediate_size")?;
        nz(self.num_layers, "num_hidden_layers")?;
        nz(self.num_heads, "num_attention_heads")?;
        nz(self.num_kv_heads, "num_key_value_heads")?;
        nz(self.head_dim, "head_dim")?;
        nz(self.max_position_embeddings, "max_position_embeddings")?;
        if self.vocab_size > u32::MAX as usize {
            return Err(Error::invalid("vocab_size", "must fit in 32 bits"));
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(Error::invalid(
                "num_key_value_heads",
                format!(
                    "{} query heads are not a multiple of {} key/value heads",
                    self.num_heads, self.num_kv_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(Error::invalid(
                "head_dim",
                format!("RoPE needs an even head width, got {}", self.head_dim),
            ));
        }
        if self.num_heads.checked_mul(self.head_dim) != Some(self.hidden_size) {
            return Err(Error::invalid(
                "head_dim",
                format!(
                    "num_attention_heads ({}) x head_dim ({}) must equal hidden_size ({}): \
                     BitNet's attn_sub_norm has hidden_size weights",
                    self.num_heads, self.head_dim, self.hidden_size
                ),
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            return Err(Error::invalid("rms_norm_eps", "must be finite and >= 0"));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(Error::invalid("rope_theta", "must be finite and > 0"));
        }
        self.rope_scaling.validate()
    }

    /// Width of the key/value projections (`num_kv_heads · head_dim`).
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }
}

fn check_quantization(q: &Value) -> Result<()> {
    let method = q.get("quant_method").and_then(Value::as_str);
    if method != Some("bitnet") {
        return Err(Error::invalid(
            "quantization_config",
            format!("unsupported quant_method {method:?} (expected \"bitnet\")"),
        ));
    }
    if let Some(lc) = q.get("linear_class").and_then(Value::as_str) {
        if lc != "bitlinear" {
            return Err(Error::invalid(
                "quantization_config",
                format!(
                    "unsupported linear_class {lc:?}: this engine runs packed \"bitlinear\" \
                     checkpoints"
                ),
            ));
        }
    }
    if let Some(m) = q.get("quantization_mode").and_then(Value::as_str) {
        if m != "offline" {
            return Err(Error::invalid(
                "quantization_config",
                format!("unsupported quantization_mode {m:?} (expected \"offline\")"),
            ));
        }
    }
    if q.get("use_rms_norm").and_then(Value::as_bool) == Some(true) {
        return Err(Error::invalid(
            "quantization_config",
            "use_rms_norm = true (an RMSNorm inside every BitLinear) is not supported",
        ));
    }
    Ok(())
}

fn parse_rope(v: &Value, max_pos: usize) -> Result<(f64, RopeScaling)> {
    // transformers 5 writes `rope_parameters` {rope_type, rope_theta, ...};
    // older files have `rope_theta` and `rope_scaling` at the top level.
    let params = v
        .get("rope_parameters")
        .filter(|p| !p.is_null())
        .or_else(|| v.get("rope_scaling").filter(|p| !p.is_null()));
    let theta = params
        .and_then(|p| p.get("rope_theta"))
        .and_then(Value::as_f64)
        .or(get_f64(v, "rope_theta")?)
        .unwrap_or(500000.0);
    let Some(p) = params else {
        return Ok((theta, RopeScaling::Default));
    };
    if !p.is_object() {
        return Err(bad("`rope_parameters` / `rope_scaling` must be an object"));
    }
    if let Some(f) = p.get("partial_rotary_factor").and_then(Value::as_f64) {
        if f != 1.0 {
            return Err(Error::invalid(
                "rope_parameters",
                format!("partial_rotary_factor {f} is not supported (only 1.0)"),
            ));
        }
    }
    let ty = p
        .get("rope_type")
        .or_else(|| p.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    let num = |key: &str| -> Result<f64> {
        p.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| bad(format!("rope type {ty:?} needs `{key}`")))
    };
    let scaling = match ty {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear {
            factor: num("factor")?,
        },
        "llama3" => RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: p
                .get("original_max_position_embeddings")
                .and_then(Value::as_f64)
                .or_else(|| {
                    v.get("original_max_position_embeddings")
                        .and_then(Value::as_f64)
                })
                .unwrap_or(max_pos as f64),
        },
        other => {
            return Err(Error::invalid(
                "rope_parameters",
                format!("unsupported rope_type {other:?} (supported: default, linear, llama3)"),
            ))
        }
    };
    Ok((theta, scaling))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"model_type":"bitnet","vocab_size":100,"hidden_size":64,
        "intermediate_size":96,"num_hidden_layers":2,"num_attention_heads":4,
        "num_key_value_heads":2,"hidden_act":"relu2","rms_norm_eps":1e-5,
        "max_position_embeddings":128,"rope_parameters":{"rope_type":"default","rope_theta":10000.0},
        "eos_token_id":[7, 9],"bos_token_id":1,
        "quantization_config":{"quant_method":"bitnet","linear_class":"bitlinear","quantization_mode":"offline"}}"#;

    #[test]
    fn parses_bitnet_config() {
        let c = ModelConfig::from_json_str(BASE).unwrap();
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.kv_dim(), 32);
        assert_eq!(c.rope_theta, 10000.0);
        assert_eq!(c.rope_scaling, RopeScaling::Default);
        assert_eq!(c.eos_token_ids, vec![7, 9]);
        assert_eq!(c.bos_token_id, Some(1));
        assert!(!c.tie_word_embeddings);
    }

    fn with(key: &str, val: &str) -> String {
        let mut v: Value = serde_json::from_str(BASE).unwrap();
        v[key] = serde_json::from_str(val).unwrap();
        v.to_string()
    }

    #[test]
    fn old_style_rope_and_llama3() {
        let mut v: Value = serde_json::from_str(BASE).unwrap();
        v.as_object_mut().unwrap().remove("rope_parameters");
        v["rope_theta"] = 5e5.into();
        v["rope_scaling"] = serde_json::json!({"rope_type":"llama3","factor":8.0,
            "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":64});
        let c = ModelConfig::from_json(&v).unwrap();
        assert_eq!(c.rope_theta, 5e5);
        assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 8.0));
    }

    #[test]
    fn refuses_bad_and_unsupported_values() {
        let cases = [
            (with("model_type", "\"llama\""), "model_type"),
            (with("hidden_act", "\"mish\""), "hidden_act"),
            (with("num_key_value_heads", "3"), "num_key_value_heads"),
            (with("hidden_size", "60"), "head_dim"),
            (with("vocab_size", "0"), "vocab_size"),
            (with("vocab_size", "-5"), "config.json"),
            (
                with("rope_parameters", r#"{"rope_type":"yarn","factor":2.0}"#),
                "rope_parameters",
            ),
            (
                with("quantization_config", r#"{"quant_method":"gptq"}"#),
                "quantization_config",
            ),
            (
                with(
                    "quantization_config",
                    r#"{"quant_method":"bitnet","use_rms_norm":true}"#,
                ),
                "quantization_config",
            ),
            ("{not json".to_string(), "config.json"),
        ];
        for (text, arg) in cases {
            let e = ModelConfig::from_json_str(&text).unwrap_err();
            let named = match &e {
                Error::InvalidArgument { arg, .. } | Error::InvalidData { arg, .. } => *arg,
                _ => "",
            };
            assert_eq!(named, arg, "{e}");
        }
    }

    #[test]
    fn activations_match_their_definitions() {
        assert_eq!(HiddenAct::Relu2.apply(-1.0), 0.0);
        assert_eq!(HiddenAct::Relu2.apply(3.0), 9.0);
        assert!((HiddenAct::Silu.apply(1.0) - 0.731_058_6).abs() < 1e-6);
        // Φ(1) = 0.841344746...
        assert!((HiddenAct::Gelu.apply(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((HiddenAct::GeluTanh.apply(1.0) - 0.841_191_97).abs() < 1e-6);
        for x in [-3.0f64, -0.5, 0.0, 0.2, 1.0, 2.5] {
            // erf(x) by its series, 40 terms.
            let mut s = 0.0;
            let mut term = x;
            for n in 0..40 {
                s += term / (2 * n + 1) as f64;
                term *= -x * x / (n + 1) as f64;
            }
            let e = s * 2.0 / std::f64::consts::PI.sqrt();
            assert!((erf(x) - e).abs() <= 2.5e-7, "erf({x})");
        }
    }
}
