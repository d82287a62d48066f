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
        // The canonical-layout converter agrees with the library's packer.
        let (r, c) = (t.nrows() / 4, t.ncols());
        assert_eq!(
            hf::hf_to_2bit(ck.bytes(name).unwrap(), r, c, name).unwrap(),
            crate::ternary::pack::pack_2bit(t.view()).unwrap()
        );
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
    // The check runs inside the conversion: a single code 3 anywhere (every
    // slab, first/middle/last byte, a partial last tile) is found and named.
    let (o, k) = (260usize, 33usize);
    let t = trits(o, k, 9);
    let r = o / 4;
    for &byte in &[0usize, 1, r * k / 2 + 7, r * k - 1] {
        for slab in 0..4 {
            let mut p = hf_pack(&t);
            p[byte] |= 0b11 << (2 * slab);
            let ck = HfCheckpoint::from_file(
                crate::io::safetensors::SafetensorsFile::from_bytes(
                    {
                        let f = d.0.join(format!("c3_{byte}_{slab}.safetensors"));
                        write_st(
                            &f,
                            &[
                                ("w", u8raw(vec![r, k], p)),
                                ("w_scale", bf16raw(vec![1], &[2.0])),
                            ],
                        );
                        std::fs::read(&f).unwrap()
                    },
                    "mem",
                )
                .unwrap(),
            );
            let e = ck.ternary("w").unwrap_err().to_string();
            let want = format!("row {}, column {}", slab * r + byte / k, byte % k);
            assert!(e.contains(&want), "{e} (want {want})");
        }
    }
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

fn matrix(rows: usize, cols: usize, g: Granularity, seed: u64) -> TernaryMatrix {
    let ns = g.num_scales(rows, cols);
    // f16-exact scales (multiples of 1/32 below 64: 11 significant bits).
    let s: Vec<f32> = (0..ns)
        .map(|i| (crate::rng::hash2(seed, i as u64) % 2000) as f32 / 32.0 + 0.03125)
        .collect();
    TernaryMatrix::from_ternary(trits(rows, cols, seed).view(), &s, g).unwrap()
}

#[test]
fn safetensors_save_round_trips_matrices_and_floats() {
    use crate::ternary::matmul::layout::ComputeFormat;
    let d = TmpDir::new("save");
    let path = d.0.join("m.safetensors");
    let mats: Vec<(String, TernaryMatrix)> = [
        (0usize, 0usize, Granularity::PerTensor),
        (1, 1, Granularity::PerRow),
        (3, 5, Granularity::PerGroup(2)),
        (33, 257, Granularity::PerGroup(64)),
        (4, 256, Granularity::PerRow),
    ]
    .iter()
    .enumerate()
    .map(|(i, &(r, c, g))| {
        let m = matrix(r, c, g, i as u64);
        let m = if i == 3 {
            m.with_compute_format(ComputeFormat::Base3)
        } else {
            m
        };
        (format!("layer{i}.weight"), m)
    })
    .collect();
    let fl = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[3, 2, 5]), |ix| {
        (ix[0] * 10 + ix[1] * 5 + ix[2]) as f32 / 3.0 - 4.0
    });
    let mut items: Vec<(String, SaveItem)> = mats
        .iter()
        .map(|(n, m)| (n.clone(), SaveItem::Ternary(m)))
        .collect();
    for dt in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        items.push((format!("f_{dt}"), SaveItem::Float(fl.view(), dt)));
    }
    checkpoint::save(
        &path,
        &items,
        SaveFormat::Safetensors,
        &[("note".into(), "hello".into())],
    )
    .unwrap();
    let ck = Checkpoint::open(&path).unwrap();
    for (n, m) in &mats {
        assert!(ck.is_ternary(n), "{n}");
        let back = ck.ternary(n).unwrap();
        assert_eq!(&back, m, "{n}");
        assert_eq!(back.compute_format(), m.compute_format());
        assert_eq!(back.scales(), m.scales());
    }
    for dt in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let n = format!("f_{dt}");
        assert_eq!(ck.info(&n).unwrap().dtype, dt);
        let got = ck.tensor_f32(&n).unwrap();
        assert_eq!(got.shape(), &[3, 2, 5]);
        for (a, &b) in got.iter().zip(fl.iter()) {
            let want = match dt {
                Dtype::F16 => crate::precision::convert::f16_bits_to_f32(
                    crate::precision::convert::f32_to_f16_bits(b),
                ),
                Dtype::BF16 => bf16_bits_to_f32(f32_to_bf16_bits(b)),
                _ => b,
            };
            assert_eq!(a.to_bits(), want.to_bits());
        }
    }
    let Checkpoint::Hf(h) = &ck else { panic!() };
    let meta = h.files()[0].metadata();
    assert_eq!(
        meta.get("format").map(String::as_str),
        Some("tritter-accel")
    );
    assert_eq!(meta.get("format_version").map(String::as_str), Some("1"));
    assert_eq!(meta.get("note").map(String::as_str), Some("hello"));
    // Duplicate names and `.scales` collisions are refused.
    let m0 = &mats[0].1;
    let dup = [
        ("a".to_string(), SaveItem::Ternary(m0)),
        (
            "a.scales".to_string(),
            SaveItem::Float(fl.view(), Dtype::F32),
        ),
    ];
    assert!(checkpoint::save(&path, &dup, SaveFormat::Safetensors, &[]).is_err());
}

#[test]
fn gguf_save_round_trips_and_matches_the_layout() {
    let d = TmpDir::new("gguf");
    let mats: Vec<(String, TernaryMatrix)> = [
        (1usize, 256usize, Granularity::PerTensor),
        (3, 512, Granularity::PerRow),
        (5, 768, Granularity::PerGroup(256)),
        (2, 1024, Granularity::PerGroup(512)),
    ]
    .iter()
    .enumerate()
    .map(|(i, &(r, c, g))| (format!("blk.{i}.w"), matrix(r, c, g, 10 + i as u64)))
    .collect();
    let fl = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[2, 3]), |ix| {
        ix[0] as f32 - ix[1] as f32 * 0.5
    });
    for dt in [Dtype::TQ2_0, Dtype::TQ1_0] {
        let path = d.0.join(format!("m-{dt}.gguf"));
        let mut items: Vec<(String, SaveItem)> = mats
            .iter()
            .map(|(n, m)| (n.clone(), SaveItem::Ternary(m)))
            .collect();
        items.push(("norm".into(), SaveItem::Float(fl.view(), Dtype::F32)));
        items.push(("norm16".into(), SaveItem::Float(fl.view(), Dtype::F16)));
        items.push(("normbf".into(), SaveItem::Float(fl.view(), Dtype::BF16)));
        checkpoint::save(
            &path,
            &items,
            SaveFormat::Gguf(dt),
            &[("general.name".into(), "t".into())],
        )
        .unwrap();
        let ck = Checkpoint::open(&path).unwrap();
        let Checkpoint::Gguf(g) = &ck else {
            panic!("not gguf")
        };
        assert_eq!(g.version(), 3);
        assert_eq!(
            g.get("general.architecture").and_then(|v| v.as_str()),
            Some("tritter")
        );
        assert_eq!(g.get("general.name").and_then(|v| v.as_str()), Some("t"));
        for t in g.tensors() {
            assert_eq!(t.offset % 32, 0);
        }
        for (n, m) in &mats {
            let back = ck.ternary(n).unwrap();
            assert_eq!(back.granularity(), Granularity::PerGroup(256));
            assert_eq!(back.to_ternary(), m.to_ternary(), "{dt} {n}");
            assert_eq!(back.to_f32(), m.to_f32(), "{dt} {n}");
            let deq = ck.tensor_f32(n).unwrap();
            assert_eq!(deq.as_slice().unwrap(), m.to_f32().as_slice().unwrap());
            assert_eq!(ck.info(n).unwrap().dtype, dt);
        }
        assert_eq!(
            ck.tensor_f32("norm").unwrap().as_slice().unwrap(),
            fl.as_slice().unwrap()
        );
        assert_eq!(
            ck.tensor_f32("normbf").unwrap().as_slice().unwrap(),
            fl.as_slice().unwrap()
        );
        let e = ck.ternary("norm").unwrap_err().to_string();
        assert!(e.contains("`norm`"), "{e}");
    }
    // A matrix GGUF cannot hold is refused, naming it.
    let bad = matrix(2, 100, Granularity::PerRow, 1);
    let e = checkpoint::save(
        d.0.join("x.gguf"),
        &[("odd".into(), SaveItem::Ternary(&bad))],
        SaveFormat::Gguf(Dtype::TQ2_0),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`odd`"), "{e}");
}

/// A small valid GGUF file (bytes) with every metadata type.
fn gguf_bytes() -> Vec<u8> {
    use gguf::{GgufArray, GgufValue, GgufWriteTensor};
    let d = TmpDir::new("gb");
    let m = matrix(2, 256, Granularity::PerRow, 5);
    let meta = vec![
        ("a.u8".to_string(), GgufValue::U8(7)),
        ("a.i8".into(), GgufValue::I8(-7)),
        ("a.u16".into(), GgufValue::U16(700)),
        ("a.i16".into(), GgufValue::I16(-700)),
        ("a.u32".into(), GgufValue::U32(70000)),
        ("a.i32".into(), GgufValue::I32(-70000)),
        ("a.f32".into(), GgufValue::F32(0.5)),
        ("a.bool".into(), GgufValue::Bool(true)),
        ("a.str".into(), GgufValue::String("hi".into())),
        ("a.u64".into(), GgufValue::U64(1 << 40)),
        ("a.i64".into(), GgufValue::I64(-(1 << 40))),
        ("a.f64".into(), GgufValue::F64(0.25)),
        (
            "a.arr".into(),
            GgufValue::Array(GgufArray::String(vec!["x".into(), "yz".into()])),
        ),
        (
            "a.arri".into(),
            GgufValue::Array(GgufArray::I32(vec![1, -2, 3])),
        ),
        ("general.alignment".into(), GgufValue::U32(64)),
    ];
    let ts = vec![
        GgufWriteTensor {
            name: "w2".into(),
            dtype: Dtype::TQ2_0,
            shape: vec![2, 256],
            data: gguf::matrix_to_tq(&m, Dtype::TQ2_0, "w2").unwrap(),
        },
        GgufWriteTensor {
            name: "w1".into(),
            dtype: Dtype::TQ1_0,
            shape: vec![2, 256],
            data: gguf::matrix_to_tq(&m, Dtype::TQ1_0, "w1").unwrap(),
        },
        GgufWriteTensor {
            name: "f".into(),
            dtype: Dtype::F32,
            shape: vec![3],
            data: [1f32, 2.0, 3.0]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        },
    ];
    let p = d.0.join("a.gguf");
    gguf::write(&p, &meta, &ts).unwrap();
    let g = gguf::GgufFile::open(&p).unwrap();
    assert_eq!(g.alignment(), 64);
    for (k, v) in &meta {
        assert_eq!(g.get(k), Some(v), "{k}");
    }
    std::fs::read(&p).unwrap()
}

fn st_bytes() -> Vec<u8> {
    let d = TmpDir::new("sb");
    let t = trits(8, 5, 3);
    let p = d.0.join("x.safetensors");
    write_st(
        &p,
        &[
            ("a.weight", u8raw(vec![2, 5], hf_pack(&t))),
            ("a.weight_scale", bf16raw(vec![1], &[2.0])),
            ("e", bf16raw(vec![2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
        ],
    );
    std::fs::read(&p).unwrap()
}

fn st_with_header(h: &str, data_len: usize) -> Vec<u8> {
    let mut v = (h.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(h.as_bytes());
    v.resize(v.len() + data_len, 0);
    v
}

#[test]
fn bad_safetensors_files_are_refused_naming_the_tensor() {
    let ok = st_bytes();
    assert!(Checkpoint::from_bytes(ok.clone())
        .unwrap()
        .read_all()
        .is_ok());
    // Every truncation is an error, never a panic.
    for n in 0..ok.len() {
        assert!(
            Checkpoint::from_bytes(ok[..n].to_vec()).is_err(),
            "prefix {n}"
        );
    }
    let cases: &[(&str, usize, &str)] = &[
        (
            r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#,
            8,
            "overlaps",
        ),
        (
            r#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}"#,
            8,
            "gap",
        ),
        (
            r#"{"a": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}"#,
            4,
            "`a`",
        ),
        (
            r#"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#,
            8,
            "needs 12 bytes",
        ),
        (
            r#"{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#,
            8,
            "after the last",
        ),
        (
            r#"{"a": {"dtype": "U8", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 4]}}"#,
            4,
            "`a`",
        ),
        (
            r#"{"a": {"dtype": "U8", "shape": [1099511627776], "data_offsets": [0, 1099511627776]}}"#,
            4,
            "run past",
        ),
        (
            r#"{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}"#,
            4,
            "`a`",
        ),
        (r#"{"__metadata__": {"k": 1}}"#, 0, "__metadata__"),
        (r#"[1, 2]"#, 0, "not a JSON object"),
        (r#"{"a": "#, 0, "JSON"),
    ];
    for (h, n, want) in cases {
        let e = Checkpoint::from_bytes(st_with_header(h, *n))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{h}: {e}");
    }
    // A header length of terabytes.
    let mut v = ok.clone();
    v[..8].copy_from_slice(&(1u64 << 42).to_le_bytes());
    let e = Checkpoint::from_bytes(v).unwrap_err().to_string();
    assert!(e.contains("exceeds"), "{e}");
}

#[test]
fn bad_gguf_files_are_refused() {
    let ok = gguf_bytes();
    let ck = Checkpoint::from_bytes(ok.clone()).unwrap();
    ck.read_all().unwrap();
    // Every truncation into the data is an error (the last tensor's
    // trailing padding, 52 bytes here, may go).
    for n in 0..ok.len() {
        let r = Checkpoint::from_bytes(ok[..n].to_vec());
        assert!(
            r.is_err() || n >= ok.len() - 52,
            "prefix {n} of {}",
            ok.len()
        );
    }
    let err = |v: Vec<u8>| Checkpoint::from_bytes(v).unwrap_err().to_string();
    let mut v = ok.clone();
    v[4] = 4;
    assert!(err(v).contains("version 4"));
    let mut v = ok.clone();
    v[0] = b'X';
    assert!(Checkpoint::from_bytes(v).is_err());
    // Lying counts and lengths.
    let mut v = ok.clone();
    v[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err(v).contains("tensor count"));
    let mut v = ok.clone();
    v[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(err(v).contains("lying"));
    let mut v = ok.clone();
    v[24..32].copy_from_slice(&(1u64 << 50).to_le_bytes()); // first key's length
    assert!(err(v).contains("string length"));
    // Tensor infos: find "w2" (the first tensor) and corrupt its fields.
    let at = ok
        .windows(10)
        .position(|w| w == b"\x02\0\0\0\0\0\0\0w2")
        .unwrap()
        + 10;
    let mut v = ok.clone();
    v[at..at + 4].copy_from_slice(&5u32.to_le_bytes());
    assert!(err(v).contains("5 dimensions"));
    let mut v = ok.clone();
    v[at + 4..at + 12].copy_from_slice(&100u64.to_le_bytes()); // ne0 = 100
    assert!(err(v).contains("`w2`"));
    let mut v = ok.clone();
    v[at + 20..at + 24].copy_from_slice(&99u32.to_le_bytes());
    assert!(err(v).contains("unknown ggml type 99"));
    let mut v = ok.clone();
    v[at + 24..at + 32].copy_from_slice(&8u64.to_le_bytes());
    assert!(err(v).contains("alignment"));
    let mut v = ok.clone();
    v[at + 24..at + 32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(err(v).contains("run past"));
    // w1 (second tensor) moved onto w2.
    let at1 = ok
        .windows(10)
        .position(|w| w == b"\x02\0\0\0\0\0\0\0w1")
        .unwrap()
        + 10;
    let mut v = ok.clone();
    v[at1 + 24..at1 + 32].copy_from_slice(&64u64.to_le_bytes());
    assert!(err(v).contains("overlaps"));
}

/// Seeded mutations of valid files through every reader: each must return
/// Ok or Err, never panic, hang or allocate without bound. Bounded by
/// iterations and time (`TRITTER_MUTATION_SECS`, default 2 s a reader).
#[test]
fn seeded_mutations_never_crash_any_reader() {
    let secs: f64 = std::env::var("TRITTER_MUTATION_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    for (label, base) in [("safetensors", st_bytes()), ("gguf", gguf_bytes())] {
        let start = std::time::Instant::now();
        let (mut runs, mut oks) = (0usize, 0usize);
        let mut rng = 0x5eed_u64 ^ base.len() as u64;
        let mut next = move || {
            rng = rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
            crate::rng::hash2(rng, 1)
        };
        while runs < 200_000 && start.elapsed().as_secs_f64() < secs {
            let mut v = base.clone();
            let k = 1 + next() % 4;
            for _ in 0..k {
                if v.is_empty() {
                    break;
                }
                let i = (next() as usize) % v.len();
                match next() % 6 {
                    0 => v[i] ^= 1 << (next() % 8),
                    1 => v[i] = next() as u8,
                    2 => v.truncate(i),
                    3 if i + 8 <= v.len() => {
                        let big = [u64::MAX, 1 << 40, 1 << 32, 0, 255][next() as usize % 5];
                        v[i..i + 8].copy_from_slice(&big.to_le_bytes());
                    }
                    4 => v.insert(i, next() as u8),
                    _ => {
                        if i < v.len() {
                            v.remove(i);
                        }
                    }
                }
            }
            if let Ok(ck) = Checkpoint::from_bytes(v) {
                oks += 1;
                let _ = ck.read_all();
                let _ = ck.ternary_quantized("e", &QuantConfig::default());
            }
            runs += 1;
        }
        println!(
            "mutations {label}: {runs} runs in {:.1} s, {oks} parsed",
            start.elapsed().as_secs_f64()
        );
        assert!(runs > 100, "{label}: only {runs} runs");
    }
}
