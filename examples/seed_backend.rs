//! The integration handoff's backend (`../shared/seeds/`: `TriterAccelBackend`,
//! `AccelerationStage`, `GradientCompressionHook`, `AcceleratedInference`),
//! written only against `tritter_accel::core`, the paths the handoff uses.
//! The framework types it plugged into (aphelion's `Backend`, `BuildGraph`)
//! are stood in for by a small graph of named linear layers.
//!
//! ```text
//! cargo run --release --example seed_backend            # a random model in memory
//! cargo run --release --example seed_backend -- DIR     # a BitNet checkpoint directory
//! ```
//!
//! It trains the graph's layers on a least-squares task with compressed
//! gradients (training stage), converts them to ternary layers and compares
//! their outputs with f32 (inference stage), and generates tokens with the
//! engine and its KV cache. `cargo test --example seed_backend` runs it.

use ndarray::{Array1, Array2, Axis};
use tritter_accel::core::{
    device::Device,
    inference::{
        ActivationMode, CacheDtype, FloatTensor, GenerateOptions, InferenceEngine, KVCache,
        KvCacheShape, MemoryStore, Model, ModelConfig, SessionOptions, TernaryLayer,
    },
    quantization::{quantize_absmean, QuantizeConfig},
    training::{GradientCompressor, TernaryCompressedGradient, TrainingConfig},
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A stand-in for the framework's build graph: named linear layers.
struct BuildGraph {
    linears: Vec<Linear>,
    metadata: Vec<(String, String)>,
}

struct Linear {
    name: String,
    weight: Array2<f32>, // [out, in]
}

impl BuildGraph {
    /// A 3-layer linear stack `in -> hidden -> hidden -> out`, seeded weights.
    fn mlp(dims: &[usize], seed: u64) -> Self {
        let linears = dims
            .windows(2)
            .enumerate()
            .map(|(l, d)| Linear {
                name: format!("layer{l}"),
                weight: Array2::from_shape_fn((d[1], d[0]), |(i, j)| {
                    let h = splitmix(seed ^ ((l as u64) << 40) ^ ((i * d[0] + j) as u64));
                    (unit(h) - 0.5) * 2.0 / (d[0] as f32).sqrt()
                }),
            })
            .collect();
        BuildGraph {
            linears,
            metadata: vec![],
        }
    }

    fn forward(&self, x: &Array2<f32>) -> Array2<f32> {
        self.linears
            .iter()
            .fold(x.clone(), |h, l| h.dot(&l.weight.t()))
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(h: u64) -> f32 {
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// The handoff's backend: a device, and the engine and compressor it enables.
struct TritterAccelBackend {
    device: Device,
    inference_engine: Option<InferenceEngine>,
    gradient_compressor: Option<GradientCompressor>,
}

impl TritterAccelBackend {
    fn new() -> Result<Self> {
        Ok(TritterAccelBackend {
            device: Device::cuda_if_available(0)?,
            inference_engine: None,
            gradient_compressor: None,
        })
    }

    /// The seed built an empty engine from a device; the engine here runs a
    /// model, so this takes one (loaded from a checkpoint or built in memory).
    fn with_inference(mut self, model: Model) -> Result<Self> {
        self.inference_engine = Some(InferenceEngine::new(model));
        Ok(self)
    }

    fn with_training(mut self, compression_ratio: f32) -> Result<Self> {
        let config = TrainingConfig::default().with_compression_ratio(compression_ratio);
        self.gradient_compressor = Some(GradientCompressor::new(config));
        Ok(self)
    }

    fn name(&self) -> &str {
        "tritter-accel"
    }
}

enum AccelerationMode {
    Training {
        compression_ratio: f32,
        steps: usize,
    },
    Inference {
        batch_size: usize,
    },
}

/// The handoff's pipeline stage.
struct AccelerationStage {
    mode: AccelerationMode,
}

/// What the inference stage made: the graph's layers as ternary layers.
struct AcceleratedInference {
    layers: Vec<TernaryLayer>,
}

impl AcceleratedInference {
    fn forward(&self, x: &Array2<f32>) -> Result<Array2<f32>> {
        let mut h = x.clone();
        for l in &self.layers {
            let mut y = Array2::zeros((h.nrows(), l.out_features()));
            l.forward_into(h.view(), y.view_mut())?;
            h = y;
        }
        Ok(h)
    }
}

impl AccelerationStage {
    fn training(compression_ratio: f32) -> Self {
        AccelerationStage {
            mode: AccelerationMode::Training {
                compression_ratio,
                steps: 100,
            },
        }
    }

    fn inference(batch_size: usize) -> Self {
        AccelerationStage {
            mode: AccelerationMode::Inference { batch_size },
        }
    }

    fn name(&self) -> &str {
        "tritter-acceleration"
    }

    /// Training: fits the graph to a teacher graph by SGD where every
    /// layer's gradient goes through the compressor (with its error
    /// feedback), as a data-parallel step would send it. Returns the loss
    /// before and after.
    fn train(&self, graph: &mut BuildGraph, backend: &TritterAccelBackend) -> Result<(f32, f32)> {
        let AccelerationMode::Training {
            compression_ratio,
            steps,
        } = self.mode
        else {
            return Err("not a training stage".into());
        };
        let compressor = backend
            .gradient_compressor
            .as_ref()
            .ok_or("backend built without with_training()")?;
        let dims: Vec<usize> = std::iter::once(graph.linears[0].weight.ncols())
            .chain(graph.linears.iter().map(|l| l.weight.nrows()))
            .collect();
        let teacher = BuildGraph::mlp(&dims, 99);
        let batch = 64;
        let x = Array2::from_shape_fn((batch, dims[0]), |(i, j)| {
            unit(splitmix(7 ^ (i * dims[0] + j) as u64)) - 0.5
        });
        let target = teacher.forward(&x);
        let loss = |g: &BuildGraph| {
            let d = g.forward(&x) - &target;
            d.mapv(|v| v * v).mean().unwrap_or(0.0)
        };
        let first = loss(graph);
        let (mut sent, mut dense) = (0usize, 0usize);
        let lr = 20.0;
        for _ in 0..steps {
            // forward, keeping every layer's input
            let mut acts = vec![x.clone()];
            for l in &graph.linears {
                let next = acts.last().unwrap().dot(&l.weight.t());
                acts.push(next);
            }
            let mut delta = (acts.last().unwrap() - &target) * (2.0 / (batch as f32));
            for li in (0..graph.linears.len()).rev() {
                let grad = delta.t().dot(&acts[li]) / dims.last().copied().unwrap() as f32;
                let next_delta = delta.dot(&graph.linears[li].weight);
                let g = grad.as_standard_layout();
                let name = graph.linears[li].name.clone();
                let c: TernaryCompressedGradient =
                    compressor.compress_named(&name, g.as_slice().unwrap())?;
                sent += c.wire_bytes();
                dense += g.len() * 4;
                let restored = compressor.decompress(&c)?;
                let r = Array2::from_shape_vec(g.raw_dim(), restored)?;
                graph.linears[li].weight.scaled_add(-lr, &r);
                delta = next_delta;
            }
        }
        graph.metadata.push((
            "gradient_compression".into(),
            format!(
                "{:.1}x on the wire (asked for {compression_ratio})",
                dense as f64 / sent as f64
            ),
        ));
        Ok((first, loss(graph)))
    }

    /// Inference: every linear layer becomes a ternary layer (AbsMean,
    /// int8 activations); returns them and the batch size.
    fn convert(&self, graph: &mut BuildGraph) -> Result<(AcceleratedInference, usize)> {
        let AccelerationMode::Inference { batch_size } = self.mode else {
            return Err("not an inference stage".into());
        };
        let layers = graph
            .linears
            .iter()
            .map(|l| {
                let q = quantize_absmean(l.weight.view(), &QuantizeConfig::default())?;
                let packed = q.to_packed()?;
                Ok(TernaryLayer::new(
                    packed.into_matrix(),
                    None,
                    ActivationMode::Int8,
                )?)
            })
            .collect::<Result<Vec<_>>>()?;
        graph
            .metadata
            .push(("batch_size".into(), batch_size.to_string()));
        Ok((AcceleratedInference { layers }, batch_size))
    }
}

/// A small BitNet model with random weights, built in memory from the
/// `core` quantizer (the engine takes any `TensorStore`).
fn random_model(seed: u64) -> Result<Model> {
    let cfg = ModelConfig::from_json_str(
        r#"{"model_type": "bitnet", "vocab_size": 97, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 64, "tie_word_embeddings": true,
            "hidden_act": "relu2"}"#,
    )?;
    let mut store = MemoryStore::default();
    let mut n = 0u64;
    let mut rand = |shape: (usize, usize), lo: f32, span: f32| {
        n += 1;
        Array2::from_shape_fn(shape, |(i, j)| {
            lo + span * unit(splitmix(seed ^ (n << 32) ^ (i * shape.1 + j) as u64))
        })
    };
    let (h, i, kv) = (cfg.hidden_size, cfg.intermediate_size, cfg.kv_dim());
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        for (name, rows, cols) in [
            ("self_attn.q_proj", h, h),
            ("self_attn.k_proj", kv, h),
            ("self_attn.v_proj", kv, h),
            ("self_attn.o_proj", h, h),
            ("mlp.gate_proj", i, h),
            ("mlp.up_proj", i, h),
            ("mlp.down_proj", h, i),
        ] {
            let w = rand((rows, cols), -1.0, 2.0);
            let q = quantize_absmean(w.view(), &QuantizeConfig::default())?;
            store
                .ternary
                .insert(format!("{p}.{name}.weight"), q.to_packed()?.into_matrix());
        }
        for (name, len) in [
            ("input_layernorm", h),
            ("self_attn.attn_sub_norm", h),
            ("post_attention_layernorm", h),
            ("mlp.ffn_sub_norm", i),
        ] {
            let v = rand((1, len), 0.5, 1.0).into_raw_vec_and_offset().0;
            store
                .float
                .insert(format!("{p}.{name}.weight"), FloatTensor::f32(vec![len], v));
        }
    }
    let norm = rand((1, h), 0.5, 1.0).into_raw_vec_and_offset().0;
    store
        .float
        .insert("model.norm.weight".into(), FloatTensor::f32(vec![h], norm));
    let emb = rand((cfg.vocab_size, h), -1.0, 2.0)
        .into_raw_vec_and_offset()
        .0;
    store.float.insert(
        "model.embed_tokens.weight".into(),
        FloatTensor::f32(vec![cfg.vocab_size, h], emb),
    );
    Ok(Model::from_store(cfg, &store)?)
}

fn run(checkpoint: Option<&str>) -> Result<()> {
    let model = match checkpoint {
        Some(dir) => tritter_accel::core::inference::load(std::path::Path::new(dir))?,
        None => random_model(5)?,
    };
    let backend = TritterAccelBackend::new()?
        .with_inference(model)?
        .with_training(0.1)?;
    println!("backend {} on {:?}", backend.name(), backend.device);

    // Training stage: compressed gradients, with error feedback.
    let mut graph = BuildGraph::mlp(&[32, 48, 48, 16], 1);
    let stage = AccelerationStage::training(0.1);
    let (before, after) = stage.train(&mut graph, &backend)?;
    println!(
        "{}: training, loss {before:.3e} -> {after:.3e}; {}",
        stage.name(),
        graph.metadata[0].1
    );
    if after.is_nan() || after >= 0.5 * before {
        return Err(format!(
            "training with compressed gradients did not converge: {before} -> {after}"
        )
        .into());
    }

    // Inference stage: ternary layers against the f32 graph.
    let stage = AccelerationStage::inference(8);
    let (accel, batch) = stage.convert(&mut graph)?;
    let x = Array2::from_shape_fn((batch, 32), |(i, j)| {
        unit(splitmix(11 ^ (i * 32 + j) as u64)) - 0.5
    });
    let (want, got) = (graph.forward(&x), accel.forward(&x)?);
    let rel = (&got - &want).mapv(|v| v * v).sum().sqrt() / want.mapv(|v| v * v).sum().sqrt();
    let f32_bytes: usize = graph.linears.iter().map(|l| l.weight.len() * 4).sum();
    let tern_bytes: usize = accel.layers.iter().map(|l| l.memory_bytes()).sum();
    println!(
        "{}: inference, {} ternary layers, batch {batch}: relative error vs f32 {rel:.3}, weights {f32_bytes} -> {tern_bytes} bytes",
        stage.name(),
        accel.layers.len()
    );
    if rel.is_nan() || rel >= 1.0 {
        return Err(format!("ternary layers too far from f32: {rel}").into());
    }
    let norms: Array1<f32> = got.map_axis(Axis(1), |r| r.dot(&r).sqrt());
    assert!(norms.iter().all(|v| v.is_finite()));

    // The engine: a KV cache sized before allocation, then generation.
    let engine = backend.inference_engine.as_ref().ok_or("no engine")?;
    let cfg = engine.model().config().clone();
    let opts = SessionOptions {
        max_seq_len: 32.min(cfg.max_position_embeddings),
        ..SessionOptions::for_model(engine.model())
    };
    let shape = KvCacheShape {
        layers: cfg.num_layers,
        batch: opts.max_batch,
        kv_heads: cfg.num_kv_heads,
        max_seq_len: opts.max_seq_len,
        head_dim: cfg.head_dim,
    };
    let bytes = KVCache::memory_bytes(shape, CacheDtype::F16)?;
    let cache = KVCache::new(shape, CacheDtype::F16)?;
    println!(
        "KV cache: {bytes} bytes for {shape:?} (f16), empty = {}",
        cache.is_empty()
    );
    let prompt: Vec<u32> = (1..6).map(|t| t % cfg.vocab_size as u32).collect();
    let gen = GenerateOptions {
        max_new_tokens: 8,
        ..GenerateOptions::default()
    };
    let out = engine.generate(&[&prompt], &gen)?;
    let mut session = engine.session(opts)?;
    let mut logits = vec![0f32; cfg.vocab_size];
    session.prefill(0, &prompt, &mut logits)?;
    let first = (0..logits.len())
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap() as u32;
    println!("prompt {prompt:?} -> greedy {:?}", &out[0][prompt.len()..]);
    if out[0].get(prompt.len()) != Some(&first) {
        return Err("the session's greedy token differs from generate's".into());
    }
    Ok(())
}

fn main() {
    let arg = std::env::args().nth(1);
    if let Err(e) = run(arg.as_deref()) {
        eprintln!("seed_backend: {e}");
        std::process::exit(1);
    }
}

#[test]
fn seed_backend_runs() {
    run(None).unwrap();
}
