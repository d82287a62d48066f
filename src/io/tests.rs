//! Tests of the readers and writers on files built here (the Python tests
//! build theirs with transformers and gguf-py).

use std::path::{Path, PathBuf};

use ndarray::Array2;

use super::*;
use crate::precision::convert::{bf16_bits_to_f32, f32_to_bf16_bits};
use crate::ternary::{Granularity, QuantConfig, TernaryMatrix};

/// A fresh temporary directory, removed on drop.
pub(crate) struct TmpDir(pub PathBuf);
impl TmpDir {
    pub(crate) fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("tritter-io-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TmpDir(p)
    }
}
impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) struct Raw {
    pub dtype: ::safetensors::Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}
impl ::safetensors::View for &Raw {
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

/// Writes a safetensors file with the maintained crate's writer.
pub(crate) fn write_st(path: &Path, items: &[(&str, Raw)]) {
    ::safetensors::serialize_to_file(
        items.iter().map(|(n, r)| (*n, r)),
        Some([("format".to_string(), "pt".to_string())].into()),
        path,
    )
    .unwrap();
}

/// transformers' `pack_weights` for `out % 4 == 0`, written from its
/// definition: byte `[r, c]` holds, at bits `2j..2j+1`, `W[j·R + r, c] + 1`.
fn hf_pack(t: &Array2<i8>) -> Vec<u8> {
    let (out, inp) = t.dim();
    let r = out.div_ceil(4);
    let mut p = vec![0u8; r * inp];
    for o in 0..out {
        for c in 0..inp {
            p[(o % r) * inp + c] |= ((t[[o, c]] + 1) as u8) << (2 * (o / r));
        }
    }
    p
}

fn trits(rows: usize, cols: usize, seed: u64) -> Array2<i8> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        (crate::rng::hash2(seed, (i * cols + j) as u64) % 3) as i8 - 1
    })
}

fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|&x| f32_to_bf16_bits(x).to_le_bytes())
        .collect()
}

fn u8raw(shape: Vec<usize>, data: Vec<u8>) -> Raw {
    Raw {
        dtype: ::safetensors::Dtype::U8,
        shape,
        data,
    }
}

fn bf16raw(shape: Vec<usize>, v: &[f32]) -> Raw {
    Raw {
        dtype: ::safetensors::Dtype::BF16,
        shape,
        data: bf16_bytes(v),
    }
}

const CONFIG: &str = r#"{"model_type": "bitnet", "hidden_size": 32, "num_attention_heads": 4,
  "num_key_value_heads": 2, "intermediate_size": 48, "num_hidden_layers": 2, "vocab_size": 64,
  "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}, "eos_token_id": [1, 2],
  "quantization_config": {"quant_method": "bitnet", "linear_class": "bitlinear",
  "quantization_mode": "offline"}}"#;

#[test]
fn hf_packed_weights_equal_unpack_over_weight_scale_on_boundary_shapes() {
    let d = TmpDir::new("hf");
    std::fs::write(d.0.join("config.json"), CONFIG).unwrap();
    let outs = [4usize, 8, 12, 20, 32, 256, 260];
    let ins = [0usize, 1, 3, 4, 5, 31, 32, 33, 255, 256, 257];
    let mut items: Vec<(String, Raw)> = vec![];
    let mut want = vec![];
    for (i, &o) in outs.iter().enumerate() {
        for (j, &k) in ins.iter().enumerate() {
            let t = trits(o, k, (i * 100 + j) as u64);
            let ws = 0.37f32 + (i * 11 + j) as f32 * 0.613; // not a power of two
            let ws = bf16_bits_to_f32(f32_to_bf16_bits(ws));
            let name = format!("l{i}_{j}.weight");
            items.push((name.clone(), u8raw(vec![o / 4, k], hf_pack(&t))));
            items.push((format!("{name}_scale"), bf16raw(vec![1], &[ws])));
            want.push((name, t, ws));
        }
    }
    let refs: Vec<(&str, Raw)> = items
        .into_iter()
        .map(|(n, r)| (&*Box::leak(n.into_boxed_str()), r))
        .collect();
    write_st(&d.0.join("model.safetensors"), &refs);
    let ck = HfCheckpoint::open(&d.0).unwrap();
    let cfg = ck.config().unwrap();
    assert_eq!(cfg.model_type.as_deref(), Some("bitnet"));
    assert_eq!(
        (cfg.hidden_size, cfg.num_key_value_heads, cfg.head_dim),
        (32, 2, 8)
    );
    assert_eq!(cfg.rope_theta, 10000.0);
    assert_eq!(cfg.eos_token_ids, vec![1, 2]);
    assert_eq!(ck.scale_convention(), ScaleConvention::Inverse);
    for (name, t, ws) in &want {
        assert!(ck.is_ternary(name));
        let m = ck.ternary(name).unwrap();
        assert_eq!(m.to_ternary(), *t, "{name}");
        assert_eq!(m.granularity(), Granularity::PerTensor);
        assert_eq!(m.scales(), &[1.0f32 / ws]);
        // unpack_weights(w, float32) / weight_scale, elementwise in f32.
        let f = m.to_f32();
        for (a, &b) in f.iter().zip(t.iter()) {
            assert_eq!(a.to_bits(), (b as f32 / ws).to_bits(), "{name}");
        }
        // The raw tensor reads back as its codes.
        let raw = ck.tensor_f32(name).unwrap();
        assert_eq!(raw.shape(), &[t.nrows() / 4, t.ncols()]);
    }
    assert!(!ck.is_ternary("l0_0.weight_scale"));
}

#[test]
fn hf_shards_direct_convention_unpacked_and_float_tensors() {
    let d = TmpDir::new("shards");
    let cfg = CONFIG.replace("\"bitlinear\"", "\"autobitlinear\"");
    std::fs::write(d.0.join("config.json"), cfg).unwrap();
    let t = trits(8, 40, 1);
    let emb: Vec<f32> = (0..64 * 4).map(|i| (i as f32 - 100.0) / 7.0).collect();
    let tf: Vec<f32> = trits(4, 9, 2).iter().map(|&v| v as f32).collect();
    write_st(
        &d.0.join("a.safetensors"),
        &[
            ("p.weight", u8raw(vec![2, 40], hf_pack(&t))),
            ("p.weight_scale", bf16raw(vec![1], &[0.75])),
            ("emb", bf16raw(vec![64, 4], &emb)),
        ],
    );
    write_st(
        &d.0.join("b.safetensors"),
        &[
            ("u.weight", bf16raw(vec![4, 9], &tf)),
            ("u.weight_scale", bf16raw(vec![4], &[0.5, 1.0, 2.0, 0.25])),
            (
                "f32",
                Raw {
                    dtype: ::safetensors::Dtype::F32,
                    shape: vec![3],
                    data: [1.5f32, -2.0, 1e-3]
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                },
            ),
            (
                "f16",
                Raw {
                    dtype: ::safetensors::Dtype::F16,
                    shape: vec![2],
                    data: [0x3c00u16, 0xc000]
                        .iter()
                        .flat_map(|x| x.to_le_bytes())
                        .collect(),
                },
            ),
        ],
    );
    let index = r#"{"metadata": {"total_size": 0}, "weight_map": {"p.weight": "a.safetensors",
      "p.weight_scale": "a.safetensors", "emb": "a.safetensors", "u.weight": "b.safetensors",
      "u.weight_scale": "b.safetensors", "f32": "b.safetensors", "f16": "b.safetensors"}}"#;
    std::fs::write(d.0.join("model.safetensors.index.json"), index).unwrap();
    let ck = HfCheckpoint::open(&d.0).unwrap();
    assert_eq!(ck.scale_convention(), ScaleConvention::Direct);
    assert_eq!(ck.names().len(), 7);
    let m = ck.ternary("p.weight").unwrap();
    assert_eq!(m.to_ternary(), t);
    assert_eq!(m.scales(), &[0.75]);
    let u = ck.ternary("u.weight").unwrap();
    assert_eq!(u.granularity(), Granularity::PerRow);
    assert_eq!(u.scales(), &[0.5, 1.0, 2.0, 0.25]);
    assert_eq!(u.to_ternary(), trits(4, 9, 2));
    let e = ck.tensor_f32("emb").unwrap();
    let want: Vec<f32> = emb
        .iter()
        .map(|&x| bf16_bits_to_f32(f32_to_bf16_bits(x)))
        .collect();
    assert_eq!(e.as_slice().unwrap(), &want[..]);
    assert_eq!(
        ck.tensor_f32("f32").unwrap().as_slice().unwrap(),
        &[1.5, -2.0, 1e-3]
    );
    assert_eq!(
        ck.tensor_f32("f16").unwrap().as_slice().unwrap(),
        &[1.0, -2.0]
    );
    // Unquantized: quantize on load equals quantizing the same floats.
    let q = ck
        .ternary_quantized("emb", &QuantConfig::default())
        .unwrap();
    let direct = TernaryMatrix::from_f32(
        ndarray::ArrayView2::from_shape((64, 4), &want).unwrap(),
        &QuantConfig::default(),
    )
    .unwrap();
    assert_eq!(q, direct);
    ck.release("emb");
    assert_eq!(ck.tensor_f32("emb").unwrap().as_slice().unwrap(), &want[..]);
    // Inverse convention on request.
    let mut ck = ck;
    ck.set_scale_convention(ScaleConvention::Inverse);
    assert_eq!(ck.ternary("p.weight").unwrap().scales(), &[1.0 / 0.75]);

    // Errors name the tensor.
    let err = |r: crate::Result<TernaryMatrix>| r.unwrap_err().to_string();
    assert!(err(ck.ternary("emb")).contains("`emb`"));
    assert!(err(ck.ternary("nope")).contains("`nope`"));
    // The index pointing a tensor at the wrong shard.
    std::fs::write(
        d.0.join("model.safetensors.index.json"),
        index.replace(r#""emb": "a.safetensors""#, r#""emb": "b.safetensors""#),
    )
    .unwrap();
    let e = HfCheckpoint::open(&d.0).unwrap_err().to_string();
    assert!(e.contains("`emb`"), "{e}");
    // A shard path leaving the directory.
    std::fs::write(
        d.0.join("model.safetensors.index.json"),
        index.replace(r#""emb": "a.safetensors""#, r#""emb": "../a.safetensors""#),
    )
    .unwrap();
    let e = HfCheckpoint::open(&d.0).unwrap_err().to_string();
    assert!(e.contains("`emb`") && e.contains("not a file name"), "{e}");
}

#[test]
fn hf_bad_codes_scales_and_config_are_refused_with_names() {
    let d = TmpDir::new("bad");
    let t = trits(8, 5, 3);
    let mut p = hf_pack(&t);
    p[7] |= 0b11 << 4; // byte [1, 2], slab 2 -> weight row 2*2+1 = 5, column 2
    let f = d.0.join("x.safetensors");
    write_st(
        &f,
        &[
            ("a.weight", u8raw(vec![2, 5], p)),
            ("a.weight_scale", bf16raw(vec![1], &[2.0])),
            ("b.weight", u8raw(vec![2, 5], hf_pack(&t))),
            ("b.weight_scale", bf16raw(vec![1], &[0.0])),
            ("c.weight", u8raw(vec![2, 5], hf_pack(&t))),
            ("c.weight_scale", bf16raw(vec![1], &[f32::NAN])),
            ("d.weight", u8raw(vec![2, 5], hf_pack(&t))),
            ("d.weight_scale", bf16raw(vec![3], &[1.0, 1.0, 1.0])),
            ("e.weight", u8raw(vec![2, 5], hf_pack(&t))),
        ],
    );
    let ck = HfCheckpoint::open(&f).unwrap();
    let err = |n: &str| ck.ternary(n).unwrap_err().to_string();
    let e = err("a.weight");
    assert!(
        e.contains("`a.weight`") && e.contains("row 5, column 2"),
        "{e}"
    );
    assert!(err("b.weight").contains("b.weight_scale"));
    assert!(err("c.weight").contains("c.weight_scale"));
    assert!(err("d.weight").contains("d.weight_scale"));
    assert!(err("e.weight").contains("no `e.weight_scale`"));
    // Config errors name the key.
    let e = HfConfig::parse(r#"{"hidden_size": -3}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hidden_size"), "{e}");
    assert!(HfConfig::parse("[1]").is_err());
    assert!(HfConfig::parse("{").is_err());
}
