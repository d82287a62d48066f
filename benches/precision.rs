//! Mixed-precision conversion throughput (scalar reference vs the SIMD kernel
//! vs the `half` crate's slice conversion as the named baseline). The phase
//! trainer's costs are in `benches/predict.rs`.
//!
//! `cargo bench --bench precision`; throughput is in f32 elements.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::slice::HalfFloatSliceExt;
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

criterion_group!(benches, conversions);
criterion_main!(benches);
