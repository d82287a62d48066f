//! The CUDA backend against the CPU reference.
//!
//! Every GPU test compares a kernel with the CPU path it twins: int8 and
//! ternary outputs bit for bit, float outputs within the documented bound.
//! Without a usable GPU (no `cuda` feature, no driver, no device) each GPU
//! test prints `SKIPPED ...: no GPU (reason)` to stderr (not captured) and
//! passes; with `TRITTER_REQUIRE_GPU=1` it fails instead
//! (`scripts/gpu-check.sh` sets it). The tests of the no-GPU behaviour run
//! everywhere.

use std::io::Write;

use ndarray::{Array1, Array2};
use tritter_accel::cuda::{self, Buffer, DeviceMatrix, Dtype, Stream};
use tritter_accel::ffi::dlpack::{
    tritter_dl_device_t, tritter_dl_dtype_t, tritter_dl_tensor_t, TRITTER_DL_BFLOAT,
    TRITTER_DL_CPU, TRITTER_DL_CUDA, TRITTER_DL_FLOAT, TRITTER_DL_INT,
};
use tritter_accel::ffi::status::tritter_status_t::{self, *};
use tritter_accel::precision::convert;
use tritter_accel::ternary::quant::{self, QuantConfig, QuantMethod};
use tritter_accel::ternary::{ActivationMode, Granularity, TernaryMatrix};
use tritter_accel::{rng, Error};

/// The device to test on, or `None` after printing why the test is skipped
/// (a failure under `TRITTER_REQUIRE_GPU=1`).
fn gpu(test: &str) -> Option<i32> {
    if cuda::is_available() {
        return Some(0);
    }
    let why = cuda::unavailable_reason().unwrap_or_default();
    if std::env::var("TRITTER_REQUIRE_GPU").as_deref() == Ok("1") {
        panic!("{test}: TRITTER_REQUIRE_GPU=1 but CUDA is unavailable: {why}");
    }
    // Written past the test harness's capture, so the skip is visible.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: no GPU ({why})");
    None
}

fn uniform(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    (0..n)
        .map(|i| lo + (hi - lo) * rng::uniform_f32(seed, i as u64))
        .collect()
}

fn trits(rows: usize, cols: usize, seed: u64) -> Array2<i8> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        (rng::hash2(seed, (i * cols + j) as u64) % 3) as i8 - 1
    })
}

fn matrix(rows: usize, cols: usize, g: Granularity, seed: u64) -> TernaryMatrix {
    let t = trits(rows, cols, seed);
    let ns = g.num_scales(rows, cols);
    let s = uniform(ns, seed ^ 7, 0.05, 1.5);
    TernaryMatrix::from_ternary(t.view(), &s, g).unwrap()
}

fn bf16_round(v: &[f32]) -> Vec<f32> {
    v.iter()
        .map(|&x| convert::bf16_bits_to_f32(convert::f32_to_bf16_bits(x)))
        .collect()
}
fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter()
        .map(|&x| convert::f16_bits_to_f32(convert::f32_to_f16_bits(x)))
        .collect()
}

/// `x` as device memory of `dt` (values exactly representable in `dt`).
fn upload_as(dev: i32, x: &[f32], dt: Dtype) -> Buffer {
    match dt {
        Dtype::F32 => Buffer::from_slice(dev, x).unwrap(),
        Dtype::Bf16 => {
            let h: Vec<u16> = x.iter().map(|&v| convert::f32_to_bf16_bits(v)).collect();
            Buffer::from_slice(dev, &h).unwrap()
        }
        Dtype::F16 => {
            let h: Vec<u16> = x.iter().map(|&v| convert::f32_to_f16_bits(v)).collect();
            Buffer::from_slice(dev, &h).unwrap()
        }
        _ => unreachable!(),
    }
}

fn download_f32(b: &Buffer, dt: Dtype) -> Vec<f32> {
    match dt {
        Dtype::F32 => b.to_vec::<f32>().unwrap(),
        Dtype::Bf16 => b
            .to_vec::<u16>()
            .unwrap()
            .into_iter()
            .map(convert::bf16_bits_to_f32)
            .collect(),
        _ => b
            .to_vec::<u16>()
            .unwrap()
            .into_iter()
            .map(convert::f16_bits_to_f32)
            .collect(),
    }
}

/// Runs one GPU matmul and checks it against the CPU: int8 bit for bit
/// (after rounding the CPU's f32 result to the output type), f32 mode
/// within `cols 2^-23 Σ|s||x|` of the exact product (+ the output rounding).
#[allow(clippy::too_many_arguments)]
fn check_matmul(
    dev: i32,
    m: &TernaryMatrix,
    batch: usize,
    mode: ActivationMode,
    xdt: Dtype,
    ydt: Dtype,
    with_bias: bool,
    ld_pad: usize,
    seed: u64,
) {
    let (rows, cols) = (m.rows(), m.cols());
    let ctx = format!(
        "{rows}x{cols} {:?} batch {batch} {mode:?} x {xdt:?} y {ydt:?} bias {with_bias} pad {ld_pad}",
        m.granularity()
    );
    let mut xs = uniform(batch * cols, seed, -2.0, 2.0);
    xs = match xdt {
        Dtype::Bf16 => bf16_round(&xs),
        Dtype::F16 => f16_round(&xs),
        _ => xs,
    };
    let x = Array2::from_shape_vec((batch, cols), xs.clone()).unwrap();
    let bias = Array1::from(uniform(rows, seed ^ 3, -1.0, 1.0));
    let cpu = m
        .matmul(x.view(), with_bias.then(|| bias.view()), mode)
        .unwrap();

    // Device tensors, rows padded by ld_pad elements.
    let ldx = cols + ld_pad;
    let mut xpad = vec![0f32; batch * ldx];
    for b in 0..batch {
        xpad[b * ldx..b * ldx + cols].copy_from_slice(&xs[b * cols..(b + 1) * cols]);
    }
    let xb = upload_as(dev, &xpad, xdt);
    let ldy = rows + ld_pad;
    let yb = Buffer::zeroed(dev, (batch * ldy).max(1) * ydt.size()).unwrap();
    // Poison y so that unwritten outputs show.
    yb.copy_from_slice(&vec![0xA5u8; yb.len_bytes()]).unwrap();
    let bb = Buffer::from_slice(dev, bias.as_slice().unwrap()).unwrap();
    let xv = DeviceMatrix {
        ld: ldx,
        ..xb.matrix(batch, cols, xdt).unwrap()
    };
    let yv = DeviceMatrix {
        rows: batch,
        cols: rows,
        ld: ldy,
        ..yb.matrix(0, 0, ydt).unwrap()
    };
    let bv = with_bias.then(|| bb.vector(rows, Dtype::F32).unwrap());
    unsafe { cuda::ternary_matmul(m, xv, bv, mode, yv, Stream::DEFAULT) }
        .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    cuda::synchronize(dev).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let got = download_f32(&yb, ydt);
    let w = m.to_f32();
    let glen = m.granularity().group_len(cols);
    for b in 0..batch {
        for o in 0..rows {
            let g = got[b * ldy + o];
            let c = cpu[[b, o]];
            match mode {
                ActivationMode::Int8 => {
                    let want = match ydt {
                        Dtype::F32 => c,
                        Dtype::Bf16 => bf16_round(&[c])[0],
                        _ => f16_round(&[c])[0],
                    };
                    assert_eq!(
                        g.to_bits(),
                        want.to_bits(),
                        "{ctx}: y[{b}, {o}] = {g}, CPU {want}"
                    );
                }
                ActivationMode::F32 => {
                    let mut exact = if with_bias { bias[o] as f64 } else { 0.0 };
                    let mut mag = 0f64;
                    for k in 0..cols {
                        exact += w[[o, k]] as f64 * x[[b, k]] as f64;
                        mag +=
                            (m.scale(o, k / glen.max(1)) as f64).abs() * (x[[b, k]] as f64).abs();
                    }
                    let rel = match ydt {
                        Dtype::F32 => 0.0,
                        Dtype::Bf16 => 2f64.powi(-8),
                        _ => 2f64.powi(-10),
                    };
                    // The CPU's bound, the final bias addition, the output rounding.
                    let floor = if ydt == Dtype::F16 {
                        2f64.powi(-24)
                    } else {
                        2f64.powi(-126)
                    };
                    let bound = (cols.max(1) as f64) * 2f64.powi(-23) * mag
                        + (rel + 2f64.powi(-23)) * exact.abs()
                        + floor;
                    assert!(
                        (g as f64 - exact).abs() <= bound,
                        "{ctx}: y[{b}, {o}] = {g}, exact {exact}, bound {bound}"
                    );
                }
            }
        }
        // Padding between rows of y is untouched.
        if ydt == Dtype::F32 {
            for o in rows..ldy {
                let bits = got[b * ldy + o].to_bits();
                assert_eq!(bits, 0xA5A5_A5A5, "{ctx}: padding y[{b}, {o}] written");
            }
        }
    }
}

#[test]
fn matmul_matches_cpu_on_boundary_shapes() {
    let Some(dev) = gpu("matmul_matches_cpu_on_boundary_shapes") else {
        return;
    };
    let grans = [
        Granularity::PerTensor,
        Granularity::PerRow,
        Granularity::PerGroup(32),
        Granularity::PerGroup(64),
    ];
    let mut n = 0u64;
    for &rows in &[1usize, 3, 16, 17, 33, 129] {
        for &cols in &[1usize, 31, 32, 33, 127, 128, 129, 257, 1000] {
            for (gi, &g) in grans.iter().enumerate() {
                let m = matrix(rows, cols, g, n);
                for &batch in &[1usize, 2, 7, 9, 33, 100] {
                    for mode in [ActivationMode::Int8, ActivationMode::F32] {
                        n += 1;
                        let xdt = [Dtype::F32, Dtype::Bf16, Dtype::F16][(n as usize + gi) % 3];
                        let ydt = [Dtype::F32, Dtype::Bf16, Dtype::F16][(n as usize / 3) % 3];
                        check_matmul(
                            dev,
                            &m,
                            batch,
                            mode,
                            xdt,
                            Dtype::F32,
                            n.is_multiple_of(2),
                            (n % 3) as usize,
                            n,
                        );
                        if n.is_multiple_of(5) {
                            check_matmul(dev, &m, batch, mode, xdt, ydt, true, 0, n);
                        }
                    }
                }
            }
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "matmul: {n} shape/mode cases on {}",
        cuda::describe(dev).unwrap()
    );
}

#[test]
fn gemm_path_matches_cpu_for_large_batches() {
    let Some(dev) = gpu("gemm_path_matches_cpu_for_large_batches") else {
        return;
    };
    let mut n = 0u64;
    for &(rows, cols) in &[(128usize, 256usize), (130, 300), (257, 1025), (512, 2048)] {
        for g in [Granularity::PerTensor, Granularity::PerRow] {
            let m = matrix(rows, cols, g, rows as u64);
            for &batch in &[33usize, 64, 127, 128, 129, 256] {
                for mode in [ActivationMode::Int8, ActivationMode::F32] {
                    for xdt in [Dtype::F32, Dtype::Bf16, Dtype::F16] {
                        n += 1;
                        check_matmul(
                            dev,
                            &m,
                            batch,
                            mode,
                            xdt,
                            Dtype::F32,
                            n.is_multiple_of(2),
                            0,
                            n,
                        );
                    }
                }
            }
        }
    }
    // Per-group scales at a large batch (the small kernel over block columns).
    let m = matrix(100, 640, Granularity::PerGroup(128), 9);
    for mode in [ActivationMode::Int8, ActivationMode::F32] {
        check_matmul(dev, &m, 300, mode, Dtype::F32, Dtype::F32, true, 1, 77);
    }
}

#[test]
fn matmul_uploads_once_and_rejects_unsupported_groups() {
    let Some(dev) = gpu("matmul_uploads_once_and_rejects_unsupported_groups") else {
        return;
    };
    let m = matrix(40, 200, Granularity::PerRow, 1);
    assert!(m.devices().is_empty());
    m.to_device(dev).unwrap();
    m.to_device(dev).unwrap();
    assert_eq!(m.devices(), vec![dev]);
    let c = m.clone();
    assert_eq!(c.devices(), vec![dev], "clones share the device copy");
    // Groups of 100 along 200 columns: not a multiple of 32.
    let g = matrix(4, 200, Granularity::PerGroup(100), 2);
    let xb = Buffer::zeroed(dev, 200 * 4).unwrap();
    let yb = Buffer::zeroed(dev, 4 * 4).unwrap();
    let r = unsafe {
        cuda::ternary_matmul(
            &g,
            xb.matrix(1, 200, Dtype::F32).unwrap(),
            None,
            ActivationMode::Int8,
            yb.matrix(1, 4, Dtype::F32).unwrap(),
            Stream::DEFAULT,
        )
    };
    assert!(
        matches!(r, Err(Error::InvalidArgument { arg: "matrix", .. })),
        "{r:?}"
    );
    // A view past its allocation is refused before any launch.
    let r = unsafe {
        cuda::ternary_matmul(
            &m,
            DeviceMatrix {
                rows: 2,
                ..xb.matrix(1, 200, Dtype::F32).unwrap()
            },
            None,
            ActivationMode::F32,
            yb.matrix(1, 4, Dtype::F32).unwrap(),
            Stream::DEFAULT,
        )
    };
    assert!(
        matches!(
            r,
            Err(Error::ShapeMismatch { .. }) | Err(Error::InvalidArgument { .. })
        ),
        "{r:?}"
    );
    let r = unsafe {
        cuda::ternary_matmul(
            &m,
            DeviceMatrix {
                rows: 2,
                ..xb.matrix(1, 200, Dtype::F32).unwrap()
            },
            None,
            ActivationMode::F32,
            DeviceMatrix {
                rows: 2,
                cols: 40,
                ld: 40,
                ..yb.matrix(0, 0, Dtype::F32).unwrap()
            },
            Stream::DEFAULT,
        )
    };
    assert!(
        matches!(r, Err(Error::InvalidArgument { arg: "x", .. })),
        "{r:?}"
    );
}

#[test]
fn quantize_pack_matches_cpu_bit_for_bit() {
    let Some(dev) = gpu("quantize_pack_matches_cpu_bit_for_bit") else {
        return;
    };
    let mut n = 0;
    for &(rows, cols) in &[
        (1usize, 1usize),
        (3, 5),
        (4, 31),
        (17, 33),
        (33, 257),
        (64, 1000),
        (5, 4096),
    ] {
        for method in [QuantMethod::AbsMean, QuantMethod::AbsMax] {
            for g in [
                Granularity::PerTensor,
                Granularity::PerRow,
                Granularity::PerGroup(5),
                Granularity::PerGroup(64),
            ] {
                for threshold in [None, Some(0.7f32)] {
                    n += 1;
                    let cfg = QuantConfig {
                        method,
                        granularity: g,
                        threshold,
                        eps: 1e-5,
                    };
                    let w = uniform(rows * cols, n, -3.0, 3.0);
                    let wa = Array2::from_shape_vec((rows, cols), w.clone()).unwrap();
                    let (p_cpu, s_cpu) = quant::quantize_pack_2bit(wa.view(), &cfg).unwrap();
                    let rb = cols.div_ceil(4);
                    let ns = g.num_scales(rows, cols);
                    let wb = Buffer::from_slice(dev, &w).unwrap();
                    let pb = Buffer::zeroed(dev, rows * rb).unwrap();
                    let sb = Buffer::zeroed(dev, ns * 4).unwrap();
                    unsafe {
                        cuda::quantize_pack_2bit(
                            wb.matrix(rows, cols, Dtype::F32).unwrap(),
                            &cfg,
                            pb.matrix(rows, rb, Dtype::U8).unwrap(),
                            sb.vector(ns, Dtype::F32).unwrap(),
                            Stream::DEFAULT,
                        )
                    }
                    .unwrap();
                    let s_gpu: Vec<f32> = sb.to_vec().unwrap();
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&s_gpu), bits(&s_cpu), "{rows}x{cols} {cfg:?}: scales");
                    assert_eq!(
                        pb.to_vec::<u8>().unwrap(),
                        p_cpu,
                        "{rows}x{cols} {cfg:?}: packed"
                    );
                }
            }
        }
    }
    // Non-finite weights: the same error and index as the CPU.
    let mut w = uniform(3 * 70, 1, -1.0, 1.0);
    w[150] = f32::NAN;
    w[171] = f32::INFINITY;
    let wb = Buffer::from_slice(dev, &w).unwrap();
    let pb = Buffer::zeroed(dev, 3 * 18).unwrap();
    let sb = Buffer::zeroed(dev, 3 * 4).unwrap();
    let r = unsafe {
        cuda::quantize_pack_2bit(
            wb.matrix(3, 70, Dtype::F32).unwrap(),
            &QuantConfig::default(),
            pb.matrix(3, 18, Dtype::U8).unwrap(),
            sb.vector(3, Dtype::F32).unwrap(),
            Stream::DEFAULT,
        )
    };
    assert_eq!(
        r,
        Err(Error::NonFinite {
            arg: "weights",
            index: 150
        })
    );
}

#[test]
fn activation_quantization_matches_cpu() {
    let Some(dev) = gpu("activation_quantization_matches_cpu") else {
        return;
    };
    for &(b, d) in &[(1usize, 1usize), (3, 31), (5, 257), (16, 4096), (2, 10000)] {
        let mut x = uniform(b * d, d as u64, -5.0, 5.0);
        if b > 2 {
            x[d..2 * d].iter_mut().for_each(|v| *v = 0.0); // an all-zero row
        }
        let xa = Array2::from_shape_vec((b, d), x.clone()).unwrap();
        let (q_cpu, s_cpu) = quant::quantize_activations_i8(xa.view()).unwrap();
        let xb = Buffer::from_slice(dev, &x).unwrap();
        let qb = Buffer::zeroed(dev, b * d).unwrap();
        let sb = Buffer::zeroed(dev, b * 4).unwrap();
        unsafe {
            cuda::quantize_activations_i8(
                xb.matrix(b, d, Dtype::F32).unwrap(),
                qb.matrix(b, d, Dtype::I8).unwrap(),
                sb.vector(b, Dtype::F32).unwrap(),
                Stream::DEFAULT,
            )
        }
        .unwrap();
        assert_eq!(
            qb.to_vec::<i8>().unwrap(),
            q_cpu.as_slice().unwrap(),
            "{b}x{d}: q"
        );
        let s: Vec<f32> = sb.to_vec().unwrap();
        assert_eq!(
            s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            s_cpu.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{b}x{d}: scales"
        );
    }
}

#[test]
fn conversion_matches_cpu_bit_for_bit() {
    let Some(dev) = gpu("conversion_matches_cpu_bit_for_bit") else {
        return;
    };
    // Special values, every f16 and bf16 bit pattern, and random f32 bits.
    let mut f: Vec<f32> = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        65504.0,
        65520.0,
        65519.0,
        6e-8,
        3e-8,
        1e-40,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::from_bits(0x7f80_0001),
        f32::from_bits(0xffc1_2345),
    ];
    f.extend((0..200_003u64).map(|i| f32::from_bits(rng::hash2(5, i) as u32)));
    let halves: Vec<u16> = (0..=u16::MAX).collect();
    for offset in [0usize, 1, 3] {
        // Misaligned starts take the scalar path.
        let src = &f[offset..];
        let sb = Buffer::from_slice(dev, src).unwrap();
        for (dt, cpu) in [
            (
                Dtype::Bf16,
                src.iter()
                    .map(|&x| convert::f32_to_bf16_bits(x))
                    .collect::<Vec<u16>>(),
            ),
            (
                Dtype::F16,
                src.iter().map(|&x| convert::f32_to_f16_bits(x)).collect(),
            ),
        ] {
            let db = Buffer::zeroed(dev, src.len() * 2).unwrap();
            unsafe {
                cuda::convert(
                    sb.vector(src.len(), Dtype::F32).unwrap(),
                    db.vector(src.len(), dt).unwrap(),
                    Stream::DEFAULT,
                )
            }
            .unwrap();
            assert_eq!(
                db.to_vec::<u16>().unwrap(),
                cpu,
                "f32 -> {dt:?}, offset {offset}"
            );
        }
        let h = &halves[offset..];
        let hb = Buffer::from_slice(dev, h).unwrap();
        for (dt, cpu) in [
            (
                Dtype::Bf16,
                h.iter()
                    .map(|&x| convert::bf16_bits_to_f32(x).to_bits())
                    .collect::<Vec<u32>>(),
            ),
            (
                Dtype::F16,
                h.iter()
                    .map(|&x| convert::f16_bits_to_f32(x).to_bits())
                    .collect(),
            ),
        ] {
            let db = Buffer::zeroed(dev, h.len() * 4).unwrap();
            unsafe {
                cuda::convert(
                    hb.vector(h.len(), dt).unwrap(),
                    db.vector(h.len(), Dtype::F32).unwrap(),
                    Stream::DEFAULT,
                )
            }
            .unwrap();
            assert_eq!(
                db.to_vec::<u32>().unwrap(),
                cpu,
                "{dt:?} -> f32, offset {offset}"
            );
        }
    }
}

#[test]
fn terngrad_matches_cpu_bit_for_bit() {
    let Some(dev) = gpu("terngrad_matches_cpu_bit_for_bit") else {
        return;
    };
    use tritter_accel::grad::compress::ternary;
    for &(n, block) in &[
        (1usize, 4usize),
        (5, 4),
        (255, 256),
        (256, 256),
        (1000, 256),
        (70_001, 64),
        (4097, 4096),
    ] {
        for seed in [0u64, 7, u64::MAX] {
            let mut g = uniform(n, seed ^ n as u64, -1.0, 1.0);
            if n > 10 {
                g[3] = 0.0;
                g[7] = -g[7] * 1e-30; // tiny magnitudes take the 2^64 path in their block only if max is tiny
            }
            if n >= 2 * block {
                g[block..2 * block].iter_mut().for_each(|v| *v *= 1e-33); // a block with a tiny scale
                g[(2 * block).min(n - 1)..]
                    .iter_mut()
                    .take(block)
                    .for_each(|v| *v = 0.0); // an all-zero block
            }
            let (s_cpu, p_cpu) = ternary::quantize(&g, block, seed).unwrap();
            let gb = Buffer::from_slice(dev, &g).unwrap();
            let sb = Buffer::zeroed(dev, s_cpu.len() * 4).unwrap();
            let pb = Buffer::zeroed(dev, p_cpu.len()).unwrap();
            unsafe {
                cuda::ternary_stochastic_quantize(
                    gb.vector(n, Dtype::F32).unwrap(),
                    block,
                    seed,
                    sb.vector(s_cpu.len(), Dtype::F32).unwrap(),
                    pb.vector(p_cpu.len(), Dtype::U8).unwrap(),
                    Stream::DEFAULT,
                )
            }
            .unwrap();
            let s: Vec<f32> = sb.to_vec().unwrap();
            assert_eq!(
                s.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                s_cpu.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "n {n} block {block} seed {seed}: scales"
            );
            assert_eq!(
                pb.to_vec::<u8>().unwrap(),
                p_cpu,
                "n {n} block {block} seed {seed}: codes"
            );
        }
    }
}

#[test]
fn hypervector_bind_and_similarity_match_cpu() {
    let Some(dev) = gpu("hypervector_bind_and_similarity_match_cpu") else {
        return;
    };
    use tritter_accel::vsa::packed::{packed_words, PackedHv};
    use tritter_accel::vsa::{ops, Algebra, Metric};
    for &dim in &[1usize, 63, 64, 65, 1000, 10_000] {
        let words = packed_words(dim);
        let n = 37;
        let rows: Vec<PackedHv> = (0..n)
            .map(|i| PackedHv::random(dim, i as u64, [0.3, 0.9, 1.0][i % 3]).unwrap())
            .collect();
        let key = PackedHv::random(dim, 999, 1.0).unwrap();
        let flat: Vec<u64> = rows.iter().flat_map(|r| r.words().to_vec()).collect();
        let ab = Buffer::from_slice(dev, &flat).unwrap();
        let kb = Buffer::from_slice(dev, key.words()).unwrap();
        for algebra in [Algebra::Map, Algebra::Modular] {
            for unbind in [false, true] {
                let ob = Buffer::zeroed(dev, flat.len() * 8).unwrap();
                unsafe {
                    cuda::hv_bind(
                        ab.matrix(n, words, Dtype::U64).unwrap(),
                        kb.matrix(1, words, Dtype::U64).unwrap(),
                        dim,
                        algebra,
                        unbind,
                        ob.matrix(n, words, Dtype::U64).unwrap(),
                        Stream::DEFAULT,
                    )
                }
                .unwrap();
                let got: Vec<u64> = ob.to_vec().unwrap();
                for (i, r) in rows.iter().enumerate() {
                    let mut want = vec![0u64; words];
                    if unbind {
                        ops::unbind_words(r.words(), key.words(), algebra, &mut want);
                    } else {
                        ops::bind_words(r.words(), key.words(), algebra, &mut want);
                    }
                    assert_eq!(
                        &got[i * words..(i + 1) * words],
                        &want[..],
                        "dim {dim} {algebra:?} unbind {unbind} row {i}"
                    );
                }
            }
        }
        for metric in [Metric::Dot, Metric::Cosine, Metric::Hamming] {
            let mut want = vec![0f64; n];
            ops::similarity_many(&rows[0], &flat, metric, &mut want).unwrap();
            let qb = Buffer::from_slice(dev, rows[0].words()).unwrap();
            let sb = Buffer::zeroed(dev, n * 8).unwrap();
            unsafe {
                cuda::hv_similarity_many(
                    qb.vector(words, Dtype::U64).unwrap(),
                    ab.matrix(n, words, Dtype::U64).unwrap(),
                    dim,
                    metric,
                    sb.vector(n, Dtype::F64).unwrap(),
                    Stream::DEFAULT,
                )
            }
            .unwrap();
            let got: Vec<f64> = sb.to_vec().unwrap();
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "dim {dim} {metric:?}"
            );
        }
    }
}

// ------------------------------------------------------------ C ABI

fn tensor(
    data: u64,
    device_type: i32,
    dtype: tritter_dl_dtype_t,
    shape: &mut [i64],
) -> tritter_dl_tensor_t {
    tritter_dl_tensor_t {
        data: data as *mut std::ffi::c_void,
        device: tritter_dl_device_t {
            device_type,
            device_id: 0,
        },
        ndim: shape.len() as i32,
        dtype,
        shape: shape.as_mut_ptr(),
        strides: std::ptr::null_mut(),
        byte_offset: 0,
    }
}
const F32: tritter_dl_dtype_t = tritter_dl_dtype_t {
    code: TRITTER_DL_FLOAT,
    bits: 32,
    lanes: 1,
};
const BF16: tritter_dl_dtype_t = tritter_dl_dtype_t {
    code: TRITTER_DL_BFLOAT,
    bits: 16,
    lanes: 1,
};
const I8: tritter_dl_dtype_t = tritter_dl_dtype_t {
    code: TRITTER_DL_INT,
    bits: 8,
    lanes: 1,
};

fn c_matrix(m: TernaryMatrix) -> *mut tritter_accel::ffi::ternary::tritter_ternary_matrix_t {
    use tritter_accel::ffi::ternary::*;
    let t = m.to_ternary();
    let mut out = std::ptr::null_mut();
    let st = unsafe {
        tritter_ternary_matrix_from_ternary(
            t.as_ptr(),
            m.rows(),
            m.cols(),
            m.scales().as_ptr(),
            m.scales().len(),
            m.granularity().code(),
            m.granularity().group_len(m.cols()),
            &mut out,
        )
    };
    assert_eq!(st, TRITTER_OK);
    out
}

fn last_error() -> String {
    let p = tritter_accel::ffi::status::tritter_last_error();
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

/// What every build and machine must do when CUDA cannot run: say so, and
/// answer CUDA tensors with TRITTER_ERR_CUDA_UNAVAILABLE (CI has no GPU).
#[test]
fn without_a_gpu_cuda_tensors_get_cuda_unavailable() {
    use tritter_accel::ffi::runtime::*;
    use tritter_accel::ffi::ternary::*;
    if cuda::is_available() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED without_a_gpu_...: a GPU is present"
        );
        return;
    }
    let why = cuda::unavailable_reason().expect("a reason");
    assert!(!why.is_empty());
    assert!(!tritter_cuda_available());
    assert_eq!(tritter_cuda_check(), TRITTER_ERR_CUDA_UNAVAILABLE);
    assert!(last_error().contains(&why), "{} / {why}", last_error());
    let mut count = 7usize;
    assert_eq!(unsafe { tritter_cuda_device_count(&mut count) }, TRITTER_OK);
    assert_eq!(count, 0);
    assert!(matches!(
        Buffer::zeroed(0, 16),
        Err(Error::CudaUnavailable(_))
    ));
    let m = matrix(4, 8, Granularity::PerRow, 1);
    assert!(matches!(m.to_device(0), Err(Error::CudaUnavailable(_))));
    let xv = DeviceMatrix {
        ptr: 0x1000,
        rows: 1,
        cols: 8,
        ld: 8,
        dtype: Dtype::F32,
        device: 0,
    };
    let yv = DeviceMatrix {
        cols: 4,
        ld: 4,
        ..xv
    };
    let r = unsafe { cuda::ternary_matmul(&m, xv, None, ActivationMode::F32, yv, Stream::DEFAULT) };
    assert!(matches!(r, Err(Error::CudaUnavailable(_))), "{r:?}");

    // Through the C ABI: CUDA x (and y on either device) -> CUDA_UNAVAILABLE
    // naming the tensor; the CPU path still works.
    let h = c_matrix(m);
    let host = [1f32; 8];
    let mut yhost = vec![0f32; 4];
    let (mut sx, mut sy) = ([1i64, 8], [1i64, 4]);
    let xc = tensor(0x1000, TRITTER_DL_CUDA, F32, &mut sx);
    let yc = tensor(0x2000, TRITTER_DL_CUDA, F32, &mut sy);
    let (mut sx2, mut sy2) = ([1i64, 8], [1i64, 4]);
    let xh = tensor(host.as_ptr() as u64, TRITTER_DL_CPU, F32, &mut sx2);
    let yh = tensor(yhost.as_mut_ptr() as u64, TRITTER_DL_CPU, F32, &mut sy2);
    for (x, y) in [(&xc, &yc), (&xc, &yh), (&xh, &yc)] {
        let st = unsafe {
            tritter_ternary_matrix_matmul_dlpack_stream(
                h,
                x,
                std::ptr::null(),
                0,
                y,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(st, TRITTER_ERR_CUDA_UNAVAILABLE, "{}", last_error());
        assert!(
            last_error().contains("CUDA unavailable"),
            "{}",
            last_error()
        );
    }
    assert_eq!(
        unsafe { tritter_ternary_matrix_matmul_dlpack(h, &xh, std::ptr::null(), 0, &yh) },
        TRITTER_OK
    );
    assert_eq!(
        unsafe { tritter_ternary_matrix_to_device(h, 0) },
        TRITTER_ERR_CUDA_UNAVAILABLE
    );
    let mut mo = std::ptr::null_mut();
    let mut sw = [4i64, 8];
    let wc = tensor(0x1000, TRITTER_DL_CUDA, F32, &mut sw);
    assert_eq!(
        unsafe { tritter_ternary_matrix_from_dlpack(&wc, std::ptr::null(), &mut mo) },
        TRITTER_ERR_CUDA_UNAVAILABLE
    );
    assert!(mo.is_null());
    let mut s1 = [8i64];
    let mut s2 = [8i64];
    let a = tensor(0x1000, TRITTER_DL_CUDA, F32, &mut s1);
    let b = tensor(0x2000, TRITTER_DL_CUDA, BF16, &mut s2);
    assert_eq!(
        unsafe {
            tritter_accel::ffi::precision::tritter_convert_dlpack(&a, &b, std::ptr::null_mut())
        },
        TRITTER_ERR_CUDA_UNAVAILABLE
    );
    let mut s3 = [2i64];
    let mut s4 = [2i64];
    let sc = tensor(0x3000, TRITTER_DL_CUDA, F32, &mut s3);
    let pc = tensor(0x4000, TRITTER_DL_CUDA, I8, &mut s4);
    let r = unsafe {
        tritter_accel::ffi::grad::tritter_grad_ternary_quantize_dlpack(
            &a,
            4,
            1,
            &sc,
            &pc,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, TRITTER_ERR_CUDA_UNAVAILABLE);
    let r = unsafe {
        tritter_accel::ffi::vsa::tritter_hv_similarity_many_dlpack(
            &a,
            &b,
            64,
            0,
            &sc,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(r, TRITTER_ERR_CUDA_UNAVAILABLE);
    unsafe { tritter_ternary_matrix_free(h) };
}

/// The DLPack exports' host routes (the same exports route CUDA tensors).
#[test]
fn dlpack_host_routes_match_the_plain_functions() {
    use tritter_accel::ffi::precision::tritter_convert_dlpack;
    use tritter_accel::ffi::ternary::*;
    let (rows, cols) = (5usize, 37usize);
    let w = uniform(rows * cols, 3, -1.0, 1.0);
    let cfg = QuantConfig::default();
    let (p, s) = quant::quantize_pack_2bit(
        Array2::from_shape_vec((rows, cols), w.clone())
            .unwrap()
            .view(),
        &cfg,
    )
    .unwrap();
    let mut pout = vec![0xffu8; rows * cols.div_ceil(4)];
    let mut sout = vec![0f32; rows];
    let (mut sw, mut sp, mut ss) = (
        [rows as i64, cols as i64],
        [rows as i64, cols.div_ceil(4) as i64],
        [rows as i64],
    );
    let u8t = tritter_dl_dtype_t {
        code: tritter_accel::ffi::dlpack::TRITTER_DL_UINT,
        bits: 8,
        lanes: 1,
    };
    let wt = tensor(w.as_ptr() as u64, TRITTER_DL_CPU, F32, &mut sw);
    let pt = tensor(pout.as_mut_ptr() as u64, TRITTER_DL_CPU, u8t, &mut sp);
    let st = tensor(sout.as_mut_ptr() as u64, TRITTER_DL_CPU, F32, &mut ss);
    let r = unsafe {
        tritter_quantize_pack_dlpack(&wt, std::ptr::null(), &pt, &st, std::ptr::null_mut())
    };
    assert_eq!(r, TRITTER_OK, "{}", last_error());
    assert_eq!(pout, p);
    assert_eq!(sout, s);
    // Mixed host/CUDA is refused (CUDA_UNAVAILABLE without a GPU, UNSUPPORTED_DEVICE with one).
    let mut sp2 = [rows as i64, cols.div_ceil(4) as i64];
    let pc = tensor(0x1000, TRITTER_DL_CUDA, u8t, &mut sp2);
    let r = unsafe {
        tritter_quantize_pack_dlpack(&wt, std::ptr::null(), &pc, &st, std::ptr::null_mut())
    };
    let want: tritter_status_t = if cuda::is_available() {
        TRITTER_ERR_UNSUPPORTED_DEVICE
    } else {
        TRITTER_ERR_CUDA_UNAVAILABLE
    };
    assert_eq!(r, want, "{}", last_error());

    // Activation quantization.
    let x = uniform(3 * 20, 4, -2.0, 2.0);
    let (q, sc) =
        quant::quantize_activations_i8(Array2::from_shape_vec((3, 20), x.clone()).unwrap().view())
            .unwrap();
    let mut qo = vec![0i8; 60];
    let mut so = vec![0f32; 3];
    let (mut a, mut b, mut c) = ([3i64, 20], [3i64, 20], [3i64]);
    let xt = tensor(x.as_ptr() as u64, TRITTER_DL_CPU, F32, &mut a);
    let qt = tensor(qo.as_mut_ptr() as u64, TRITTER_DL_CPU, I8, &mut b);
    let stt = tensor(so.as_mut_ptr() as u64, TRITTER_DL_CPU, F32, &mut c);
    let r = unsafe { tritter_quantize_activations_i8_dlpack(&xt, &qt, &stt, std::ptr::null_mut()) };
    assert_eq!(r, TRITTER_OK, "{}", last_error());
    assert_eq!(qo, q.as_slice().unwrap());
    assert_eq!(so, sc.to_vec());

    // Conversion, both directions, against the slice functions.
    let v = uniform(33, 5, -70000.0, 70000.0);
    let mut h = vec![0u16; 33];
    let mut back = vec![0f32; 33];
    let (mut a, mut b, mut c) = ([3i64, 11], [3i64, 11], [3i64, 11]);
    let vt = tensor(v.as_ptr() as u64, TRITTER_DL_CPU, F32, &mut a);
    let ht = tensor(h.as_mut_ptr() as u64, TRITTER_DL_CPU, BF16, &mut b);
    let bt = tensor(back.as_mut_ptr() as u64, TRITTER_DL_CPU, F32, &mut c);
    assert_eq!(
        unsafe { tritter_convert_dlpack(&vt, &ht, std::ptr::null_mut()) },
        TRITTER_OK
    );
    let mut want = vec![0u16; 33];
    convert::f32_to_bf16(&v, &mut want).unwrap();
    assert_eq!(h, want);
    assert_eq!(
        unsafe { tritter_convert_dlpack(&ht, &bt, std::ptr::null_mut()) },
        TRITTER_OK
    );
    assert!(back
        .iter()
        .zip(&h)
        .all(|(f, &b)| f.to_bits() == (b as u32) << 16));
    let mut d = [3i64, 10];
    let bad = tensor(h.as_mut_ptr() as u64, TRITTER_DL_CPU, BF16, &mut d);
    assert_eq!(
        unsafe { tritter_convert_dlpack(&vt, &bad, std::ptr::null_mut()) },
        TRITTER_ERR_SHAPE_MISMATCH
    );

    // TernGrad.
    use tritter_accel::ffi::grad::tritter_grad_ternary_quantize_dlpack;
    let g = uniform(1000, 6, -1.0, 1.0);
    let (sc, pk) = tritter_accel::grad::compress::ternary::quantize(&g, 256, 42).unwrap();
    let mut so = vec![0f32; 4];
    let mut po = vec![0u8; 250];
    let (mut a, mut b, mut c) = ([1000i64], [4i64], [250i64]);
    let u8t = tritter_dl_dtype_t {
        code: tritter_accel::ffi::dlpack::TRITTER_DL_UINT,
        bits: 8,
        lanes: 1,
    };
    let gt = tensor(g.as_ptr() as u64, TRITTER_DL_CPU, F32, &mut a);
    let st = tensor(so.as_mut_ptr() as u64, TRITTER_DL_CPU, F32, &mut b);
    let pt = tensor(po.as_mut_ptr() as u64, TRITTER_DL_CPU, u8t, &mut c);
    let r = unsafe {
        tritter_grad_ternary_quantize_dlpack(&gt, 256, 42, &st, &pt, std::ptr::null_mut())
    };
    assert_eq!(r, TRITTER_OK, "{}", last_error());
    assert_eq!((so, po), (sc, pk));
    let r =
        unsafe { tritter_grad_ternary_quantize_dlpack(&gt, 6, 42, &st, &pt, std::ptr::null_mut()) };
    assert_eq!(r, TRITTER_ERR_INVALID_ARGUMENT);

    // Hypervectors: bind with one key, similarity against many.
    use tritter_accel::ffi::vsa::{tritter_hv_bind_dlpack, tritter_hv_similarity_many_dlpack};
    use tritter_accel::vsa::packed::{packed_words, PackedHv};
    use tritter_accel::vsa::{ops, Algebra, Metric};
    let dim = 100;
    let w = packed_words(dim);
    let rows: Vec<PackedHv> = (0..3)
        .map(|i| PackedHv::random(dim, i, 0.7).unwrap())
        .collect();
    let key = PackedHv::random(dim, 9, 1.0).unwrap();
    let flat: Vec<u64> = rows.iter().flat_map(|r| r.words().to_vec()).collect();
    let mut out = vec![0u64; flat.len()];
    let u64t = tritter_dl_dtype_t {
        code: tritter_accel::ffi::dlpack::TRITTER_DL_UINT,
        bits: 64,
        lanes: 1,
    };
    let (mut sa, mut sk, mut so2) = ([3i64, w as i64], [w as i64], [3i64, w as i64]);
    let at = tensor(flat.as_ptr() as u64, TRITTER_DL_CPU, u64t, &mut sa);
    let kt = tensor(key.words().as_ptr() as u64, TRITTER_DL_CPU, u64t, &mut sk);
    let ot = tensor(out.as_mut_ptr() as u64, TRITTER_DL_CPU, u64t, &mut so2);
    let r = unsafe { tritter_hv_bind_dlpack(&at, &kt, dim, 1, true, &ot, std::ptr::null_mut()) };
    assert_eq!(r, TRITTER_OK, "{}", last_error());
    for (i, row) in rows.iter().enumerate() {
        let mut want = vec![0u64; w];
        ops::unbind_words(row.words(), key.words(), Algebra::Modular, &mut want);
        assert_eq!(&out[i * w..(i + 1) * w], &want[..]);
    }
    let mut scores = vec![0f64; 3];
    let f64t = tritter_dl_dtype_t {
        code: TRITTER_DL_FLOAT,
        bits: 64,
        lanes: 1,
    };
    let mut sc3 = [3i64];
    let sct = tensor(scores.as_mut_ptr() as u64, TRITTER_DL_CPU, f64t, &mut sc3);
    let r =
        unsafe { tritter_hv_similarity_many_dlpack(&kt, &at, dim, 1, &sct, std::ptr::null_mut()) };
    assert_eq!(r, TRITTER_OK, "{}", last_error());
    let mut want = vec![0f64; 3];
    ops::similarity_many(&key, &flat, Metric::Cosine, &mut want).unwrap();
    assert_eq!(scores, want);
    // An invalid row (a trit both +1 and -1) is rejected on the host.
    let mut broken = flat.clone();
    broken[w / 2] |= broken[0] | 1;
    broken[0] |= 1;
    let mut sb2 = [3i64, w as i64];
    let brt = tensor(broken.as_ptr() as u64, TRITTER_DL_CPU, u64t, &mut sb2);
    let r =
        unsafe { tritter_hv_similarity_many_dlpack(&kt, &brt, dim, 1, &sct, std::ptr::null_mut()) };
    assert_eq!(r, TRITTER_ERR_INVALID_DATA, "{}", last_error());
}

/// The C ABI's CUDA route on a GPU: same results as the Rust calls, and
/// device checks (mixed devices, host pointers posing as device memory).
#[test]
fn dlpack_cuda_route_on_a_gpu() {
    use tritter_accel::ffi::ternary::*;
    let Some(dev) = gpu("dlpack_cuda_route_on_a_gpu") else {
        return;
    };
    let m = matrix(70, 300, Granularity::PerTensor, 4);
    let x = uniform(3 * 300, 8, -1.0, 1.0);
    let cpu = m
        .matmul(
            Array2::from_shape_vec((3, 300), x.clone()).unwrap().view(),
            None,
            ActivationMode::Int8,
        )
        .unwrap();
    let h = c_matrix(m);
    let xb = Buffer::from_slice(dev, &x).unwrap();
    let yb = Buffer::zeroed(dev, 3 * 70 * 2).unwrap();
    let (mut sx, mut sy) = ([3i64, 300], [3i64, 70]);
    let xt = tensor(xb.ptr(), TRITTER_DL_CUDA, F32, &mut sx);
    let yt = tensor(yb.ptr(), TRITTER_DL_CUDA, BF16, &mut sy);
    let st = unsafe {
        tritter_ternary_matrix_matmul_dlpack_stream(
            h,
            &xt,
            std::ptr::null(),
            1,
            &yt,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st, TRITTER_OK, "{}", last_error());
    let got: Vec<u16> = yb.to_vec().unwrap();
    let want: Vec<u16> = cpu.iter().map(|&v| convert::f32_to_bf16_bits(v)).collect();
    assert_eq!(got, want);
    // Mixed devices.
    let host = vec![0f32; 3 * 70];
    let mut sy2 = [3i64, 70];
    let yh = tensor(host.as_ptr() as u64, TRITTER_DL_CPU, F32, &mut sy2);
    let st = unsafe {
        tritter_ternary_matrix_matmul_dlpack_stream(
            h,
            &xt,
            std::ptr::null(),
            1,
            &yh,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st, TRITTER_ERR_UNSUPPORTED_DEVICE, "{}", last_error());
    assert!(last_error().contains("one device"), "{}", last_error());
    // A host pointer labelled CUDA.
    let mut sx2 = [3i64, 300];
    let fake = tensor(x.as_ptr() as u64, TRITTER_DL_CUDA, F32, &mut sx2);
    let st = unsafe {
        tritter_ternary_matrix_matmul_dlpack_stream(
            h,
            &fake,
            std::ptr::null(),
            1,
            &yt,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st, TRITTER_ERR_INVALID_ARGUMENT, "{}", last_error());
    assert!(last_error().contains("`x`"), "{}", last_error());
    // A device that does not exist.
    assert_eq!(
        unsafe { tritter_ternary_matrix_to_device(h, 4096) },
        TRITTER_ERR_UNSUPPORTED_DEVICE
    );
    unsafe { tritter_ternary_matrix_free(h) };
}

/// `ptxas -v` figures were recorded for every kernel and architecture (the
/// build itself fails on local memory use).
#[test]
fn resource_report_lists_every_kernel() {
    let rep = cuda::resource_report();
    if !cfg!(feature = "cuda") {
        assert!(rep.is_empty());
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED resource_report_lists_every_kernel: built without `cuda`"
        );
        return;
    }
    for k in [
        "tmm_small_i8",
        "tmm_small_bf16",
        "tmm_small_f16",
        "tmm_gemm_i8",
        "tmm_gemm_bf16",
        "tmm_gemm_f16",
        "act_quant_i8_f32",
        "act_prep_f32",
        "quant_scales",
        "quant_pack",
        "cvt_f32_to_bf16",
    ] {
        for arch in ["sm_80", "sm_86", "sm_89", "sm_90"] {
            let line = rep
                .lines()
                .find(|l| l.split_whitespace().next() == Some(k) && l.contains(arch))
                .unwrap_or_else(|| panic!("{k} {arch} missing from\n{rep}"));
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(&cols[4..], ["0", "0", "0"], "{line}");
        }
    }
    println!("{rep}");
}
