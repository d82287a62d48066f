//! End-to-end demo: quantize a weight matrix, pack it, multiply, and print
//! what was measured (error against f32, memory, time).
//!
//! `cargo run --release --example demo -- [rows] [cols] [batch]` (default 4096 4096 1)

use std::time::Instant;

use ndarray::{Array1, Array2};
use tritter_accel::ternary::{ActivationMode, QuantConfig, TernaryMatrix};

/// Standard normal from two counter-based uniforms (Box-Muller).
fn normal(seed: u64, i: u64) -> f32 {
    let u1 = tritter_accel::rng::uniform_f64(seed, 2 * i).max(1e-300);
    let u2 = tritter_accel::rng::uniform_f64(seed, 2 * i + 1);
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time<F: FnMut()>(reps: usize, mut f: F) -> f64 {
    f(); // warm-up
    median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn rel_err(a: &Array2<f32>, b: &Array2<f32>) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-300)).sqrt()
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rows = *args.first().unwrap_or(&4096);
    let cols = *args.get(1).unwrap_or(&4096);
    let batch = *args.get(2).unwrap_or(&1);
    println!(
        "tritter-accel {} demo: W [{rows} x {cols}] (out x in), X [{batch} x {cols}], {} threads",
        tritter_accel::VERSION,
        tritter_accel::parallel::num_threads()
    );

    let w = Array2::from_shape_fn((rows, cols), |(i, j)| {
        0.02 * normal(1, (i * cols + j) as u64)
    });
    let x = Array2::from_shape_fn((batch, cols), |(i, j)| normal(2, (i * cols + j) as u64));
    let bias = Array1::from_shape_fn(rows, |i| 0.01 * normal(3, i as u64));

    // 1. Quantize (AbsMean, per row) + pack into the 2-bit layout.
    let cfg = QuantConfig::default();
    let mut m = None;
    let t_quant = time(5, || {
        m = Some(TernaryMatrix::from_f32(w.view(), &cfg).unwrap())
    });
    let m = m.unwrap();
    let f32_bytes = rows * cols * 4;
    println!(
        "\nquantize + pack      {:>9.3} ms   {:>6.2} GB/s of f32 input",
        t_quant * 1e3,
        f32_bytes as f64 / t_quant / 1e9
    );

    // 2. Memory: what is stored/sent (packed trits + scales) and what the handle holds.
    let n = (rows * cols) as f64;
    let two_bit = m
        .to_packed(tritter_accel::ternary::PackedLayout::TwoBit)
        .len()
        + 4 * m.scales().len();
    let b3 = m
        .to_packed(tritter_accel::ternary::PackedLayout::Base3)
        .len()
        + 4 * m.scales().len();
    println!("memory: f32 {:.2} MB -> 2-bit {:.2} MB ({:.1}x smaller, {:.3} bits/weight); base-3 {:.2} MB ({:.3} bits/weight)",
        f32_bytes as f64 / 1e6, two_bit as f64 / 1e6, f32_bytes as f64 / two_bit as f64, 8.0 * two_bit as f64 / n,
        b3 as f64 / 1e6, 8.0 * b3 as f64 / n);
    println!("        the handle holds {:.2} MB (the kernels' compute layout, its only copy of the weights, + scales)",
        m.memory_bytes() as f64 / 1e6);

    // 3. Multiply: ternary (f32 and int8 activations) vs dense f32 with the original and dequantized weights.
    let mut y = Array2::zeros((batch, rows));
    let t_tern = time(21, || {
        m.matmul_into(
            x.view(),
            Some(bias.view()),
            ActivationMode::F32,
            y.view_mut(),
        )
        .unwrap()
    });
    let mut y8 = Array2::zeros((batch, rows));
    let t_tern8 = time(21, || {
        m.matmul_into(
            x.view(),
            Some(bias.view()),
            ActivationMode::Int8,
            y8.view_mut(),
        )
        .unwrap()
    });
    let wt = w.t();
    let mut y_f32 = Array2::zeros((batch, rows));
    let t_f32 = time(11, || y_f32 = x.dot(&wt) + &bias);
    let wq = m.to_f32();
    let y_deq = x.dot(&wq.t()) + &bias;

    println!("\nmatmul (median)      time          vs f32 (ndarray/matrixmultiply)");
    println!("  f32 dense          {:>9.1} µs   1.00x", t_f32 * 1e6);
    println!(
        "  ternary, f32 act   {:>9.1} µs   {:.2}x",
        t_tern * 1e6,
        t_f32 / t_tern
    );
    println!(
        "  ternary, int8 act  {:>9.1} µs   {:.2}x",
        t_tern8 * 1e6,
        t_f32 / t_tern8
    );

    println!("\nerror (relative L2 of the output)");
    println!(
        "  kernel vs dense product of the dequantized weights: {:.2e} (f32 act), {:.2e} (int8 act)",
        rel_err(&y, &y_deq),
        rel_err(&y8, &y_deq)
    );
    println!(
        "  ternary vs original f32 weights (quantization error): {:.3}",
        rel_err(&y, &y_f32)
    );
    let nz = m.to_ternary().iter().filter(|&&t| t != 0).count();
    println!(
        "  weights: {:.1}% non-zero after AbsMean quantization",
        100.0 * nz as f64 / (rows * cols) as f64
    );
}
