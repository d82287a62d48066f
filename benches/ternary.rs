//! Ternary matmul and quantize+pack benches against named baselines in the
//! same run: the scalar reference kernel, ndarray's f32 matmul, and the
//! NumPy-style two-pass quantizer (`quantize` then `pack_2bit`).
//! Weights here are cache-warm (one matrix); the cold-weight report is
//! `scripts/bench-matmul.sh`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::Array2;
use tritter_accel::cpu::CpuLevel;
use tritter_accel::ternary::matmul::{gemm_with_level, ComputeFormat};
use tritter_accel::ternary::{quant, ActivationMode, Granularity, QuantConfig, TernaryMatrix};

fn rand_f32(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        tritter_accel::rng::uniform_f32(seed, (i * cols + j) as u64) * 2.0 - 1.0
    })
}

fn matmul(c: &mut Criterion) {
    for &(n, batch) in &[(2048usize, 1usize), (4096, 1), (4096, 64)] {
        let w = rand_f32(n, n, 1);
        let m = TernaryMatrix::from_f32(w.view(), &QuantConfig::default()).unwrap();
        let m3 = m.clone().with_compute_format(ComputeFormat::Base3);
        let x = rand_f32(batch, n, 2);
        let mut y = Array2::<f32>::zeros((batch, n));
        let mut g = c.benchmark_group(format!("matmul_{n}x{n}_b{batch}"));
        g.throughput(Throughput::Elements((n * n * batch) as u64));
        g.sample_size(20);
        let level = tritter_accel::cpu::active();
        for (name, mm, mode) in [
            ("int8", &m, ActivationMode::Int8),
            ("int8_base3", &m3, ActivationMode::Int8),
            ("f32", &m, ActivationMode::F32),
            ("f32_base3", &m3, ActivationMode::F32),
        ] {
            g.bench_function(BenchmarkId::new(name, level.name()), |b| {
                b.iter(|| gemm_with_level(mm, x.view(), None, mode, y.view_mut(), level).unwrap())
            });
        }
        if batch == 1 {
            g.bench_function("scalar_reference_int8", |b| {
                b.iter(|| {
                    gemm_with_level(
                        &m,
                        x.view(),
                        None,
                        ActivationMode::Int8,
                        y.view_mut(),
                        CpuLevel::Scalar,
                    )
                    .unwrap()
                })
            });
        }
        g.bench_function("ndarray_f32_baseline", |b| b.iter(|| x.dot(&w.t())));
        g.finish();
    }
}

fn quantize_pack(c: &mut Criterion) {
    let w = rand_f32(1024, 4096, 3);
    let cfg = QuantConfig::default();
    let mut g = c.benchmark_group("quantize_pack_1024x4096");
    g.throughput(Throughput::Bytes((w.len() * 4) as u64));
    g.sample_size(20);
    g.bench_function("quantize_pack_2bit", |b| {
        b.iter(|| quant::quantize_pack_2bit(w.view(), &cfg).unwrap())
    });
    g.bench_function("two_pass_quantize_then_pack_baseline", |b| {
        b.iter(|| {
            let q = quant::quantize(w.view(), &cfg).unwrap();
            tritter_accel::ternary::pack::pack_2bit(q.values.view()).unwrap()
        })
    });
    g.finish();
    let _ = Granularity::PerRow;
}

criterion_group!(benches, matmul, quantize_pack);
criterion_main!(benches);
