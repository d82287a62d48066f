//! Mixed-precision conversion throughput (scalar reference vs the SIMD kernel
//! vs the `half` crate's slice conversion as the named baseline), and the
//! phase trainer's per-step cost against a plain copy of the gradients.
//!
//! `cargo bench --bench precision`; throughput is in f32 elements.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::slice::HalfFloatSliceExt;
use tritter_accel::grad::predict::{PhaseConfig, PhaseTrainer};
use tritter_accel::precision::convert::{self, Level};
use tritter_accel::precision::stochastic::f32_to_bf16_stochastic;

const N: usize = 1 << 20;

fn data() -> Vec<f32> {
    (0..N)
        .map(|i| (tritter_accel::rng::uniform_f32(1, i as u64) - 0.5) * 1000.0)
        .collect()
}

fn conversions(c: &mut Criterion) {
    eprintln!("# {}", tritter_accel::cpu::describe());
    tritter_accel::parallel::set_num_threads(1);
    let x = data();
    let mut h = vec![0u16; N];
    let mut y = vec![0f32; N];
    let mut g = c.benchmark_group("f32_to_bf16");
    g.throughput(Throughput::Elements(N as u64));
    for level in Level::available() {
        g.bench_function(BenchmarkId::new("tritter", format!("{level:?}")), |b| {
            b.iter(|| convert::f32_to_bf16_with(level, black_box(&x), &mut h).unwrap())
        });
    }
    let mut hb = vec![half::bf16::ZERO; N];
    g.bench_function("baseline_half_crate", |b| {
        b.iter(|| hb.convert_from_f32_slice(black_box(&x)))
    });
    g.bench_function("stochastic", |b| {
        b.iter(|| f32_to_bf16_stochastic(black_box(&x), &mut h, 7, 0).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("f32_to_f16");
    g.throughput(Throughput::Elements(N as u64));
    for level in Level::available() {
        g.bench_function(BenchmarkId::new("tritter", format!("{level:?}")), |b| {
            b.iter(|| convert::f32_to_f16_with(level, black_box(&x), &mut h).unwrap())
        });
    }
    let mut hf = vec![half::f16::ZERO; N];
    g.bench_function("baseline_half_crate", |b| {
        b.iter(|| hf.convert_from_f32_slice(black_box(&x)))
    });
    g.finish();

    convert::f32_to_f16(&x, &mut h).unwrap();
    let mut g = c.benchmark_group("f16_to_f32");
    g.throughput(Throughput::Elements(N as u64));
    for level in Level::available() {
        g.bench_function(BenchmarkId::new("tritter", format!("{level:?}")), |b| {
            b.iter(|| convert::f16_to_f32_with(level, black_box(&h), &mut y).unwrap())
        });
    }
    let hf: Vec<half::f16> = h.iter().map(|&b| half::f16::from_bits(b)).collect();
    g.bench_function("baseline_half_crate", |b| {
        b.iter(|| hf.convert_to_f32_slice(&mut y))
    });
    g.finish();
    tritter_accel::parallel::set_num_threads(0);
}

/// One backward step (record) and one predicted step for a 1M-element
/// parameter with the default window of 8, against copying the gradient.
fn phase_trainer(c: &mut Criterion) {
    tritter_accel::parallel::set_num_threads(1);
    let grad = data();
    let mut out = vec![0f32; N];
    let mut g = c.benchmark_group("phase_trainer_1M");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(20);
    g.bench_function("baseline_copy", |b| {
        b.iter(|| out.copy_from_slice(black_box(&grad)))
    });
    for bf16 in [false, true] {
        let cfg = PhaseConfig {
            warmup_steps: 1_000_000,
            history_bf16: bf16,
            ..Default::default()
        };
        let mut tr = PhaseTrainer::new(cfg).unwrap();
        tr.add_parameter(&[N]).unwrap();
        for _ in 0..8 {
            tr.begin_step().unwrap();
            tr.record_gradient(0, &grad).unwrap();
            tr.end_step(1.0, None).unwrap();
        }
        let name = if bf16 { "bf16_history" } else { "f32_history" };
        g.bench_function(BenchmarkId::new("record", name), |b| {
            b.iter(|| {
                tr.begin_step().unwrap();
                tr.record_gradient(0, black_box(&grad)).unwrap();
                tr.end_step(1.0, None).unwrap();
            })
        });
        // A trainer whose next step is a Predict step, kept open.
        let cfg = PhaseConfig {
            warmup_steps: 8,
            full_steps: 0,
            predict_steps: 1_000_000,
            correct_every: 0,
            adaptive_phases: false,
            history_bf16: bf16,
            ..Default::default()
        };
        let mut tr = PhaseTrainer::new(cfg).unwrap();
        tr.add_parameter(&[N]).unwrap();
        for _ in 0..8 {
            tr.begin_step().unwrap();
            tr.record_gradient(0, &grad).unwrap();
            tr.end_step(1.0, None).unwrap();
        }
        tr.begin_step().unwrap();
        g.bench_function(BenchmarkId::new("predict", name), |b| {
            b.iter(|| tr.predict_gradient(0, black_box(&mut out)).unwrap())
        });
    }
    g.finish();
    tritter_accel::parallel::set_num_threads(0);
}

criterion_group!(benches, conversions, phase_trainer);
criterion_main!(benches);
