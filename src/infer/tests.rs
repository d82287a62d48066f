//! Engine tests on small random models built in memory: the cache against
//! recomputation, batches against single sequences, chunked prefill, cache
//! dtypes, truncate/reset, bad input, deterministic generation.

use std::sync::Arc;

use ndarray::Array2;

use super::*;
use crate::rng::{hash2, uniform_f32};
use crate::ternary::Granularity;
use crate::ternary::TernaryMatrix;

pub(crate) fn tiny_config(
    tied: bool,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
) -> ModelConfig {
    ModelConfig {
        vocab_size: 61,
        hidden_size: heads * head_dim,
        intermediate_size: 44,
        num_layers: 2,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        hidden_act: HiddenAct::Relu2,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: RopeScaling::Default,
        max_position_embeddings: 64,
        tie_word_embeddings: tied,
        attention_bias: false,
        bos_token_id: None,
        eos_token_ids: vec![],
    }
}

/// A store with every tensor of `cfg`, seeded random values.
pub(crate) fn random_store(cfg: &ModelConfig, seed: u64) -> MemoryStore {
    let mut st = MemoryStore::default();
    let mut n = 0u64;
    let mut next = || {
        n += 1;
        crate::rng::derive(seed, n)
    };
    let mut tern = |name: String, rows: usize, cols: usize, s: u64| {
        let t = Array2::from_shape_fn((rows, cols), |(i, j)| {
            (hash2(s, (i * cols + j) as u64) % 3) as i8 - 1
        });
        let scale = 0.5 + uniform_f32(s, 1 << 40);
        let m = TernaryMatrix::from_ternary(t.view(), &[scale], Granularity::PerTensor).unwrap();
        st.ternary.insert(name, m);
    };
    let (h, i, kv) = (cfg.hidden_size, cfg.intermediate_size, cfg.kv_dim());
    let mut floats: Vec<(String, Vec<usize>, f32, f32)> = vec![];
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}");
        tern(format!("{p}.self_attn.q_proj.weight"), h, h, next());
        tern(format!("{p}.self_attn.k_proj.weight"), kv, h, next());
        tern(format!("{p}.self_attn.v_proj.weight"), kv, h, next());
        tern(format!("{p}.self_attn.o_proj.weight"), h, h, next());
        tern(format!("{p}.mlp.gate_proj.weight"), i, h, next());
        tern(format!("{p}.mlp.up_proj.weight"), i, h, next());
        tern(format!("{p}.mlp.down_proj.weight"), h, i, next());
        for (name, w) in [
            ("input_layernorm", h),
            ("self_attn.attn_sub_norm", h),
            ("post_attention_layernorm", h),
            ("mlp.ffn_sub_norm", i),
        ] {
            floats.push((format!("{p}.{name}.weight"), vec![w], 0.5, 1.0));
        }
    }
    floats.push(("model.norm.weight".into(), vec![h], 0.5, 1.0));
    floats.push((
        "model.embed_tokens.weight".into(),
        vec![cfg.vocab_size, h],
        -1.0,
        2.0,
    ));
    if !cfg.tie_word_embeddings {
        floats.push(("lm_head.weight".into(), vec![cfg.vocab_size, h], -0.2, 0.4));
    }
    for (name, shape, lo, span) in floats {
        let s = next();
        let len: usize = shape.iter().product();
        let v = (0..len)
            .map(|k| lo + span * uniform_f32(s, k as u64))
            .collect();
        st.float.insert(name, FloatTensor::f32(shape, v));
    }
    st
}

fn model(cfg: ModelConfig, seed: u64) -> Arc<Model> {
    let st = random_store(&cfg, seed);
    Arc::new(Model::from_store(cfg, &st).unwrap())
}

fn tokens(n: usize, seed: u64, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|i| (hash2(seed, i as u64) % vocab as u64) as u32)
        .collect()
}

fn opts(batch: usize, len: usize, step: usize, dt: CacheDtype) -> SessionOptions {
    SessionOptions {
        max_batch: batch,
        max_seq_len: len,
        cache_dtype: dt,
        max_step_tokens: step,
    }
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * (1.0 + y.abs()),
            "{what}: [{i}] {x} vs {y}"
        );
    }
}

#[test]
fn decode_with_cache_equals_recomputing_the_sequence() {
    for (tied, heads, kvh, hd) in [(false, 4, 2, 8), (true, 3, 1, 6), (false, 2, 2, 10)] {
        let m = model(tiny_config(tied, heads, kvh, hd), 5);
        let v = m.config().vocab_size;
        let toks = tokens(20, 1, v);
        // all logits at once (GEMM path)
        let mut s = Session::new(m.clone(), opts(1, 32, 256, CacheDtype::F32)).unwrap();
        let mut all = vec![0f32; 20 * v];
        s.forward(&[(0, &toks)], Logits::All, &mut all).unwrap();
        assert_eq!(s.seq_len(0), 20);
        // prefill 7 tokens, then decode one at a time (GEMV path)
        let mut s2 = Session::new(m.clone(), opts(1, 32, 256, CacheDtype::F32)).unwrap();
        let mut out = vec![0f32; v];
        s2.prefill(0, &toks[..7], &mut out).unwrap();
        close(&out, &all[6 * v..7 * v], 1e-5, "prefill last");
        for p in 7..20 {
            s2.decode(&[0], &toks[p..p + 1], &mut out).unwrap();
            close(
                &out,
                &all[p * v..(p + 1) * v],
                1e-5,
                &format!("decode pos {p}"),
            );
        }
        // chunked prefill (steps of 3 rows) gives the same logits
        let mut s3 = Session::new(m.clone(), opts(1, 32, 3, CacheDtype::F32)).unwrap();
        let mut all3 = vec![0f32; 20 * v];
        s3.forward(&[(0, &toks)], Logits::All, &mut all3).unwrap();
        close(&all3, &all, 1e-5, "chunked");
        // truncate to 10 and decode again: the same as before
        s2.truncate(0, 10).unwrap();
        s2.decode(&[0], &toks[10..11], &mut out).unwrap();
        close(&out, &all[10 * v..11 * v], 1e-5, "after truncate");
        // reset and reuse
        s2.reset(0).unwrap();
        s2.prefill(0, &toks[..5], &mut out).unwrap();
        close(&out, &all[4 * v..5 * v], 1e-5, "after reset");
    }
}

#[test]
fn batches_of_different_lengths_equal_single_sequences() {
    let m = model(tiny_config(false, 4, 2, 8), 9);
    let v = m.config().vocab_size;
    let seqs = [tokens(9, 2, v), tokens(3, 3, v), tokens(14, 4, v)];
    let eng = InferenceEngine::from_shared(m.clone());
    let refs: Vec<Vec<f32>> = seqs.iter().map(|t| eng.forward(&[t]).unwrap()).collect();
    let batch: Vec<&[u32]> = seqs.iter().map(|t| t.as_slice()).collect();
    let all = eng.forward(&batch).unwrap();
    let mut o = 0;
    for (t, r) in seqs.iter().zip(&refs) {
        close(&all[o..o + t.len() * v], r, 1e-5, "batched forward");
        o += t.len() * v;
    }
    // decode sequences 2 and 0 together (skip 1)
    let mut s = Session::new(m.clone(), opts(3, 20, 256, CacheDtype::F32)).unwrap();
    let inputs: Vec<(usize, &[u32])> =
        vec![(0, &seqs[0][..5]), (1, &seqs[1][..]), (2, &seqs[2][..8])];
    let mut last = vec![0f32; 3 * v];
    s.forward(&inputs, Logits::Last, &mut last).unwrap();
    close(&last[..v], &refs[0][4 * v..5 * v], 1e-5, "last 0");
    close(&last[v..2 * v], &refs[1][2 * v..3 * v], 1e-5, "last 1");
    close(&last[2 * v..], &refs[2][7 * v..8 * v], 1e-5, "last 2");
    let mut out = vec![0f32; 2 * v];
    s.decode(&[2, 0], &[seqs[2][8], seqs[0][5]], &mut out)
        .unwrap();
    close(&out[..v], &refs[2][8 * v..9 * v], 1e-5, "decode seq 2");
    close(&out[v..], &refs[0][5 * v..6 * v], 1e-5, "decode seq 0");
    assert_eq!(s.cache().lens(), &[6, 3, 9]);
}

#[test]
fn half_caches_stay_close_to_f32() {
    let m = model(tiny_config(true, 4, 2, 8), 11);
    let v = m.config().vocab_size;
    let toks = tokens(16, 5, v);
    let mut r = vec![0f32; 16 * v];
    Session::new(m.clone(), opts(1, 16, 256, CacheDtype::F32))
        .unwrap()
        .forward(&[(0, &toks)], Logits::All, &mut r)
        .unwrap();
    for dt in [CacheDtype::F16, CacheDtype::Bf16] {
        let mut s = Session::new(m.clone(), opts(1, 16, 256, dt)).unwrap();
        let mut o = vec![0f32; 16 * v];
        s.forward(&[(0, &toks)], Logits::All, &mut o).unwrap();
        let scale = r.iter().fold(0f32, |a, x| a.max(x.abs()));
        let diff = o
            .iter()
            .zip(&r)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(diff > 0.0, "{dt:?}: rounding changes something");
        assert!(diff < 0.25 * scale, "{dt:?}: {diff} vs scale {scale}");
        let mem = Session::memory(&m, &opts(1, 16, 256, dt)).unwrap();
        assert_eq!(mem.kv_cache, 2 * 2 * 2 * 16 * 8 * dt.size());
    }
}

#[test]
fn bad_input_is_refused_and_the_session_stays_usable() {
    let m = model(tiny_config(false, 4, 2, 8), 13);
    let v = m.config().vocab_size;
    let mut s = Session::new(m.clone(), opts(2, 8, 256, CacheDtype::F32)).unwrap();
    let mut out = vec![0f32; 2 * v];
    let good = tokens(4, 1, v);
    s.prefill(0, &good, &mut out).unwrap();
    let before = out[..v].to_vec();
    type Case = (Vec<(usize, Vec<u32>)>, &'static str);
    let cases: Vec<Case> = vec![
        (vec![(0, vec![v as u32])], "tokens"),
        (vec![(0, vec![])], "tokens"),
        (vec![(0, vec![1; 5])], "tokens"), // 4 cached + 5 > 8
        (vec![(2, vec![1])], "seq"),
        (vec![(1, vec![1]), (1, vec![2])], "seq"),
        (vec![], "inputs"),
    ];
    for (inp, arg) in cases {
        let inputs: Vec<(usize, &[u32])> = inp.iter().map(|(s, t)| (*s, t.as_slice())).collect();
        let e = s.forward(&inputs, Logits::Last, &mut out).unwrap_err();
        assert!(
            matches!(&e, crate::Error::InvalidArgument { arg: a, .. } if *a == arg),
            "{e}"
        );
    }
    let e = s
        .forward(&[(1, &good)], Logits::Last, &mut out[..v - 1])
        .unwrap_err();
    assert!(matches!(e, crate::Error::BufferTooSmall { .. }));
    assert_eq!(s.cache().lens(), &[4, 0], "nothing changed");
    // still usable: the next token decodes as in a clean session
    s.decode(&[0], &[7], &mut out[..v]).unwrap();
    let mut clean = Session::new(m.clone(), opts(1, 8, 256, CacheDtype::F32)).unwrap();
    let mut o2 = vec![0f32; v];
    let mut seq = good.clone();
    seq.push(7);
    clean.prefill(0, &seq, &mut o2).unwrap();
    close(&out[..v], &o2, 1e-5, "after errors");
    assert_ne!(before, o2);
    // the config and tensors
    let mut st = random_store(m.config(), 1);
    st.float.remove("model.layers.1.mlp.ffn_sub_norm.weight");
    let e = Model::from_store(m.config().clone(), &st).unwrap_err();
    assert!(
        e.to_string()
            .contains("model.layers.1.mlp.ffn_sub_norm.weight"),
        "{e}"
    );
    let mut st = random_store(m.config(), 1);
    st.float.insert(
        "model.norm.weight".into(),
        FloatTensor::f32(vec![3], vec![1.0; 3]),
    );
    let e = Model::from_store(m.config().clone(), &st).unwrap_err();
    assert!(
        e.to_string().contains("model.norm.weight") && e.to_string().contains("shape"),
        "{e}"
    );
    let mut st = random_store(m.config(), 1);
    let w = st
        .ternary
        .remove("model.layers.0.self_attn.k_proj.weight")
        .unwrap();
    st.ternary
        .insert("model.layers.0.self_attn.q_proj.weight".into(), w);
    let e = Model::from_store(m.config().clone(), &st).unwrap_err();
    assert!(e.to_string().contains("q_proj"), "{e}");
    // huge sessions fail cleanly
    let e = Session::new(m.clone(), opts(1 << 20, 1 << 30, 1, CacheDtype::F32)).unwrap_err();
    assert!(
        matches!(
            e,
            crate::Error::SizeOverflow { .. } | crate::Error::OutOfMemory { .. }
        ),
        "{e}"
    );
}

#[test]
fn generate_is_deterministic_and_stops() {
    let m = model(tiny_config(false, 4, 2, 8), 17);
    let eng = InferenceEngine::from_shared(m.clone());
    let v = m.config().vocab_size;
    let p1 = tokens(5, 1, v);
    let p2 = tokens(2, 2, v);
    let greedy = GenerateOptions {
        max_new_tokens: 12,
        ..Default::default()
    };
    let g = eng.generate(&[&p1, &p2], &greedy).unwrap();
    assert_eq!(g[0].len(), 17);
    assert_eq!(g[1].len(), 14);
    // greedy = argmax of the full recomputation at every step
    let logits = eng.forward(&[&g[0][..16]]).unwrap();
    for p in 4..16 {
        let want = sampling::argmax(&logits[p * v..(p + 1) * v]) as u32;
        assert_eq!(g[0][p + 1], want, "step {p}");
    }
    // alone == in a batch
    let alone = eng.generate(&[&p2], &greedy).unwrap();
    assert_eq!(alone[0], g[1]);
    let samp = GenerateOptions {
        max_new_tokens: 12,
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: 20,
            top_p: 0.95,
        },
        seed: 3,
        ..Default::default()
    };
    let a = eng.generate(&[&p1, &p2], &samp).unwrap();
    let b = eng.generate(&[&p1, &p2], &samp).unwrap();
    assert_eq!(a, b);
    let c = eng
        .generate(
            &[&p1, &p2],
            &GenerateOptions {
                seed: 4,
                ..samp.clone()
            },
        )
        .unwrap();
    assert_ne!(a, c);
    // stop at the third generated token of sequence 0
    let stop = GenerateOptions {
        stop: vec![g[0][7]],
        ..greedy.clone()
    };
    let s = eng.generate(&[&p1], &stop).unwrap();
    let first = g[0][5..].iter().position(|&t| t == g[0][7]).unwrap();
    assert_eq!(s[0], g[0][..5 + first + 1]);
}

#[test]
fn int8_lm_head_agrees_at_the_top() {
    let cfg = tiny_config(false, 4, 2, 8);
    let st = random_store(&cfg, 23);
    let m = Arc::new(Model::from_store(cfg.clone(), &st).unwrap());
    let mut m8 = Model::from_store(cfg, &st).unwrap();
    m8.quantize_lm_head_int8().unwrap();
    assert!(m8.weight_bytes() < m.weight_bytes());
    let v = m.config().vocab_size;
    let toks = tokens(30, 9, v);
    let a = InferenceEngine::from_shared(m).forward(&[&toks]).unwrap();
    let b = InferenceEngine::from_shared(Arc::new(m8))
        .forward(&[&toks])
        .unwrap();
    let agree = (0..30)
        .filter(|&p| {
            sampling::argmax(&a[p * v..(p + 1) * v]) == sampling::argmax(&b[p * v..(p + 1) * v])
        })
        .count();
    assert!(agree >= 27, "top-1 agreement {agree}/30");
}

#[test]
fn unjoinable_projections_run_separately_with_the_same_results() {
    // q_proj with per-group scales all equal to its per-tensor scale: the
    // projections cannot be joined with k/v, and the logits stay the same.
    let cfg = tiny_config(false, 4, 2, 8);
    let st = random_store(&cfg, 31);
    let mut st2 = st.clone();
    for l in 0..cfg.num_layers {
        let name = format!("model.layers.{l}.self_attn.q_proj.weight");
        let m = &st.ternary[&name];
        let g = Granularity::PerGroup(16);
        let n = g.num_scales(m.rows(), m.cols());
        let q =
            TernaryMatrix::from_ternary(m.to_ternary().view(), &vec![m.scales()[0]; n], g).unwrap();
        st2.ternary.insert(name, q);
    }
    let a = InferenceEngine::from_shared(Arc::new(Model::from_store(cfg.clone(), &st).unwrap()));
    let b = InferenceEngine::from_shared(Arc::new(Model::from_store(cfg, &st2).unwrap()));
    let v = a.model().config().vocab_size;
    let toks = tokens(12, 3, v);
    let (la, lb) = (a.forward(&[&toks]).unwrap(), b.forward(&[&toks]).unwrap());
    close(&la, &lb, 1e-4, "joined vs separate");
    assert!(
        b.model().weight_bytes() > a.model().weight_bytes(),
        "per-group scales cost bytes"
    );
}
