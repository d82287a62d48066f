//! The seeds' Rust API: every path of the integration handoff resolves, and
//! each facade call agrees with the module that does the work.

use ndarray::{Array1, Array2};
use tritter_accel::core::{
    device::Device,
    quantization::{quantize_absmax, quantize_absmean, QuantizationResult, QuantizeConfig},
    ternary::{dot, matmul, PackedTernary},
    training::mixed_precision::LossScaler,
    training::{
        GradientAccumulator, GradientCompressor, TernaryCompressedGradient, TrainingConfig,
    },
    vsa::{VsaConfig, VsaOps},
};
use tritter_accel::grad::compress::Method;
use tritter_accel::ternary::{ActivationMode, Granularity, QuantMethod, TernaryMatrix};

fn weights(rows: usize, cols: usize, seed: u32) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        ((i * 131 + j * 17 + seed as usize) as f32 * 0.618).sin()
    })
}

#[test]
fn quantization_matches_the_core_quantizer() {
    let w = weights(33, 70, 1);
    let cfg = QuantizeConfig {
        method: QuantMethod::AbsMax, // overridden by quantize_absmean
        ..QuantizeConfig::default()
    };
    let r: QuantizationResult = quantize_absmean(w.view(), &cfg).unwrap();
    let direct = tritter_accel::ternary::quant::quantize(
        w.view(),
        &QuantizeConfig {
            method: QuantMethod::AbsMean,
            ..cfg
        },
    )
    .unwrap();
    assert_eq!(r.values, direct.values);
    assert_eq!(r.scales, direct.scales.iter().copied().collect::<Vec<_>>());
    assert_eq!(r.shape, (33, 70));
    let m = quantize_absmax(w.view(), &QuantizeConfig::default()).unwrap();
    // AbsMax scales are max |w| per row: never below AbsMean's.
    for (a, b) in m.scales.iter().zip(&r.scales) {
        assert!(a >= b);
    }
    let back = r.dequantize().unwrap();
    assert_eq!(
        back,
        TernaryMatrix::from_f32(w.view(), &QuantizeConfig::default())
            .unwrap()
            .to_f32()
    );
}

#[test]
fn packed_ternary_round_trips_and_multiplies() {
    let w = weights(17, 45, 2);
    let r = quantize_absmean(w.view(), &QuantizeConfig::default()).unwrap();
    let p: PackedTernary = r.to_packed().unwrap();
    assert_eq!(p.shape(), (17, 45));
    assert_eq!(p.data().len(), 17 * 45usize.div_ceil(4));
    let q = PackedTernary::from_parts(&p.data(), p.scales(), p.shape(), p.granularity()).unwrap();
    assert_eq!(p, q);
    // Corrupt code 11 is refused.
    let mut bad = p.data();
    bad[0] |= 0b11;
    assert!(PackedTernary::from_parts(&bad, p.scales(), p.shape(), Granularity::PerRow).is_err());

    let x = weights(3, 45, 9);
    let bias = Array1::from_shape_fn(17, |i| i as f32 * 0.1);
    let y = matmul(x.view(), &p, Some(bias.view())).unwrap();
    let m: TernaryMatrix = p.clone().into();
    let y2 = m
        .matmul(x.view(), Some(bias.view()), ActivationMode::F32)
        .unwrap();
    assert_eq!(y, y2);
    // Shape errors surface, not panics.
    assert!(matmul(weights(3, 44, 0).view(), &p, None).is_err());
}

#[test]
fn dot_equals_the_naive_sum() {
    for n in [0usize, 1, 5, 63, 64, 65, 1000] {
        let a: Vec<i8> = (0..n).map(|i| ((i * 7 + 1) % 3) as i8 - 1).collect();
        let b: Vec<i8> = (0..n).map(|i| ((i * 5 + 2) % 3) as i8 - 1).collect();
        let naive: i64 = a.iter().zip(&b).map(|(&x, &y)| x as i64 * y as i64).sum();
        assert_eq!(dot(&a, &b).unwrap(), naive, "n = {n}");
    }
    assert!(dot(&[1, 0], &[1]).is_err());
    assert!(dot(&[2], &[1]).is_err());
}

#[test]
fn compression_ratio_follows_the_seed() {
    assert_eq!(
        TrainingConfig::default()
            .with_compression_ratio(0.1)
            .compression_factor,
        10.0
    );
    assert_eq!(
        TrainingConfig::default()
            .with_compression_ratio(32.0)
            .compression_factor,
        32.0
    );
    let c = GradientCompressor::new(TrainingConfig::default().with_compression_ratio(-1.0));
    assert!(c.compress(&[1.0; 100], None).is_err());
}

#[test]
fn compressor_keeps_error_feedback_per_name() {
    let n = 20_000;
    let g: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.013).sin()).collect();
    for method in [Method::QTopK, Method::TopK, Method::Ternary] {
        let c = GradientCompressor::new(
            TrainingConfig::default()
                .with_compression_ratio(0.05)
                .with_method(method),
        );
        let p1: TernaryCompressedGradient = c.compress_named("w", &g).unwrap();
        assert_eq!(p1.dim(), n);
        assert!(p1.len() < n, "{method:?}");
        assert!(p1.compression_ratio() > 1.0);
        // The same stream through the core compressor gives the same bytes.
        let mut core = tritter_accel::grad::compress::Compressor::new(
            n,
            tritter_accel::grad::compress::CompressorConfig {
                method,
                ratio: 20.0,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(p1.to_bytes(), core.compress(&g).unwrap().to_bytes());
        let p2 = c.compress_named("w", &g).unwrap();
        assert_eq!(p2.to_bytes(), core.compress(&g).unwrap().to_bytes());
        // Another name starts its own stream.
        let q1 = c.compress_named("b", &g).unwrap();
        assert_eq!(q1.to_bytes(), p1.to_bytes());
        let back = TernaryCompressedGradient::from_bytes(&p2.to_bytes()).unwrap();
        assert_eq!(c.decompress(&back).unwrap(), p2.decompress().unwrap());
    }
    let c = GradientCompressor::new(TrainingConfig::default());
    c.compress(&g, Some(42)).unwrap();
    assert!(
        c.compress(&g, Some(43)).is_err(),
        "another seed for the same stream"
    );
    assert!(c.compress(&g[..10], Some(42)).is_err(), "another length");
}

#[test]
fn accumulator_mean_is_close() {
    let n = 4096;
    let mut acc = GradientAccumulator::new(n).unwrap();
    let g: Vec<f32> = (0..n).map(|i| ((i as f32) * 0.07).cos()).collect();
    for _ in 0..8 {
        acc.accumulate(&g).unwrap();
    }
    assert_eq!(acc.count(), 8);
    let mean = acc.get_accumulated().unwrap();
    let err: f32 = mean.iter().zip(&g).map(|(a, b)| (a - b).abs()).sum::<f32>() / n as f32;
    // Stochastic ternary rounding: unbiased, each coordinate within the
    // block scale of its mean; the mean absolute error stays well below 1.
    assert!(err < 0.5, "mean abs error {err}");
    acc.reset();
    assert!(acc.get_accumulated().unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn vsa_loss_scaler_and_device_resolve() {
    let ops = VsaOps::new(VsaConfig::default()).unwrap();
    let a = ops.random(42).unwrap();
    let b = ops.random(43).unwrap();
    assert_eq!(ops.unbind(&ops.bind(&a, &b).unwrap(), &b).unwrap(), a);
    let s = LossScaler::new(Default::default()).unwrap();
    assert!(s.scale() > 0.0);
    let d = Device::cuda_if_available(0).unwrap();
    assert_eq!(d.is_cuda(), tritter_accel::cuda::is_available());
    assert!(Device::new_cuda(0).is_ok() == tritter_accel::cuda::is_available());
}
