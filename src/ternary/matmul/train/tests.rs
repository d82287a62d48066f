//! The training kernels against f64 sums of the definition, at every CPU
//! level this machine has, on boundary shapes, every granularity, both
//! weight sources, f32 and bf16 in and out, f32 and int8 activation modes.

use half::bf16;
use ndarray::{Array1, Array2};

use super::*;
use crate::ternary::pack;

const BOUNDARY: [usize; 12] = [0, 1, 3, 4, 5, 31, 32, 33, 255, 256, 257, 300];

fn levels() -> Vec<CpuLevel> {
    let l = crate::cpu::supported_levels();
    eprintln!(
        "training kernels: levels run {:?}, skipped {:?}",
        l.iter().map(|l| l.name()).collect::<Vec<_>>(),
        crate::cpu::unsupported_levels()
            .iter()
            .map(|l| l.name())
            .collect::<Vec<_>>()
    );
    l
}

fn trits(rows: usize, cols: usize, seed: u64) -> Array2<i8> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        (crate::rng::hash2(seed, (i * cols + j) as u64) % 3) as i8 - 1
    })
}

fn uniform(rows: usize, cols: usize, seed: u64, lo: f32, hi: f32) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |(i, j)| {
        lo + (hi - lo) * crate::rng::uniform_f32(seed, (i * cols + j) as u64)
    })
}

fn scales(g: Granularity, rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    (0..g.num_scales(rows, cols))
        .map(|i| {
            // one zero scale now and then (an all-zero group)
            if i % 7 == 3 {
                0.0
            } else {
                0.01 + crate::rng::uniform_f32(seed, i as u64)
            }
        })
        .collect()
}

fn scale_of(s: &[f32], g: Granularity, cols: usize, r: usize, k: usize) -> f32 {
    match g {
        Granularity::PerTensor => s[0],
        _ => {
            let glen = g.group_len(cols);
            s[r * cols.div_ceil(glen).max(1) + k / glen]
        }
    }
}

/// A weight set in both sources: canonical bytes and a matrix (planes).
struct Case {
    t: Array2<i8>,
    s: Vec<f32>,
    g: Granularity,
    bytes: Vec<u8>,
    m: TernaryMatrix,
}

impl Case {
    fn new(rows: usize, cols: usize, g: Granularity, seed: u64) -> Case {
        let t = trits(rows, cols, seed);
        let s = scales(g, rows, cols, seed + 1);
        let bytes = pack::pack_2bit(t.view()).unwrap();
        let m = TernaryMatrix::from_ternary(t.view(), &s, g).unwrap();
        Case { t, s, g, bytes, m }
    }
    fn sources(&self) -> [(&'static str, TernaryWeights<'_>); 2] {
        let (r, c) = self.t.dim();
        [
            (
                "canonical",
                TernaryWeights::canonical(&self.bytes, r, c, &self.s, self.g).unwrap(),
            ),
            ("planes", TernaryWeights::of_matrix(&self.m).unwrap()),
        ]
    }
    fn w(&self, r: usize, k: usize) -> f64 {
        let cols = self.t.ncols();
        self.t[[r, k]] as f64 * scale_of(&self.s, self.g, cols, r, k) as f64
    }
}

/// What the forward multiplies: x, or its int8 fake quantization.
fn effective_x(x: &Array2<f32>, mode: ActivationMode) -> Array2<f32> {
    let mut e = x.clone();
    if mode == ActivationMode::Int8 {
        for mut row in e.rows_mut() {
            let mut r = row.to_vec();
            let mut q = vec![0i8; r.len()];
            let a = quant::act_scale(&r);
            quant::quantize_act_row(&r, a, &mut q);
            for (v, &qi) in r.iter_mut().zip(&q) {
                *v = qi as f32 / a;
            }
            row.assign(&Array1::from(r));
        }
    }
    e
}

const U: f64 = 1.0 / (1u64 << 24) as f64;

fn check_forward(c: &Case, x: &Array2<f32>, bias: Option<&Array1<f32>>, what: &str) {
    let (rows, cols) = c.t.dim();
    let batch = x.nrows();
    let xb = x.mapv(bf16::from_f32);
    for mode in [ActivationMode::F32, ActivationMode::Int8] {
        // with bf16 input, the reference multiplies the widened bf16 values
        for bf16_in in [false, true] {
            let xin = if bf16_in {
                xb.mapv(|v| v.to_f32())
            } else {
                x.clone()
            };
            let xe = effective_x(&xin, mode);
            let mut want = Array2::<f64>::zeros((batch, rows));
            let mut mag = Array2::<f64>::zeros((batch, rows));
            for b in 0..batch {
                for r in 0..rows {
                    let (mut s, mut m) = (0f64, 0f64);
                    for k in 0..cols {
                        let p = c.w(r, k) * xe[[b, k]] as f64;
                        s += p;
                        m += p.abs();
                    }
                    let bv = bias.map_or(0.0, |bv| bv[r] as f64);
                    want[[b, r]] = s + bv;
                    mag[[b, r]] = m + bv.abs();
                }
            }
            for level in levels() {
                for (src, w) in c.sources() {
                    for bf16_out in [false, true] {
                        let xa = if bf16_in {
                            ActIn::Bf16(xb.view())
                        } else {
                            ActIn::F32(x.view())
                        };
                        let got: Array2<f32> = if bf16_out {
                            let mut y = Array2::from_elem((batch, rows), bf16::NAN);
                            linear(
                                &w,
                                xa,
                                bias.map(|b| b.view()),
                                mode,
                                ActOut::Bf16(y.view_mut()),
                                level,
                            )
                            .unwrap();
                            y.mapv(|v| v.to_f32())
                        } else {
                            let mut y = Array2::from_elem((batch, rows), f32::NAN);
                            linear(
                                &w,
                                xa,
                                bias.map(|b| b.view()),
                                mode,
                                ActOut::F32(y.view_mut()),
                                level,
                            )
                            .unwrap();
                            y
                        };
                        for ((b, r), &g) in got.indexed_iter() {
                            let exact = want[[b, r]];
                            // FMA dot-product bound, the bias add, then bf16 rounding
                            let mut bound = (cols + 1) as f64 * U * mag[[b, r]] * 1.0001;
                            if bf16_out {
                                bound += (exact.abs() + bound) / 256.0;
                            }
                            assert!(
                                (g as f64 - exact).abs() <= bound,
                                "{what} {src} {} {mode:?} in-bf16 {bf16_in} out-bf16 {bf16_out} \
                                 [{b},{r}]: {g} vs {exact} (bound {bound})",
                                level.name()
                            );
                        }
                    }
                }
            }
        }
    }
}

fn check_grad_input(c: &Case, dy: &Array2<f32>, what: &str) {
    let (rows, cols) = c.t.dim();
    let batch = dy.nrows();
    let dyb = dy.mapv(bf16::from_f32);
    for bf16_in in [false, true] {
        let d = if bf16_in {
            dyb.mapv(|v| v.to_f32())
        } else {
            dy.clone()
        };
        let mut want = Array2::<f64>::zeros((batch, cols));
        let mut mag = Array2::<f64>::zeros((batch, cols));
        for b in 0..batch {
            for k in 0..cols {
                let (mut s, mut m) = (0f64, 0f64);
                for r in 0..rows {
                    let p = d[[b, r]] as f64 * c.w(r, k);
                    s += p;
                    m += p.abs();
                }
                want[[b, k]] = s;
                mag[[b, k]] = m;
            }
        }
        for level in levels() {
            for (src, w) in c.sources() {
                for bf16_out in [false, true] {
                    let din = if bf16_in {
                        ActIn::Bf16(dyb.view())
                    } else {
                        ActIn::F32(dy.view())
                    };
                    let got: Array2<f32> = if bf16_out {
                        let mut o = Array2::from_elem((batch, cols), bf16::NAN);
                        linear_grad_input(&w, din, ActOut::Bf16(o.view_mut()), level).unwrap();
                        o.mapv(|v| v.to_f32())
                    } else {
                        let mut o = Array2::from_elem((batch, cols), f32::NAN);
                        linear_grad_input(&w, din, ActOut::F32(o.view_mut()), level).unwrap();
                        o
                    };
                    for ((b, k), &g) in got.indexed_iter() {
                        let exact = want[[b, k]];
                        let mut bound = (rows + 1) as f64 * U * mag[[b, k]] * 1.0001;
                        if bf16_out {
                            bound += (exact.abs() + bound) / 256.0;
                        }
                        assert!(
                            (g as f64 - exact).abs() <= bound,
                            "{what} {src} {} grad-input in-bf16 {bf16_in} out-bf16 {bf16_out} \
                             [{b},{k}]: {g} vs {exact} (bound {bound})",
                            level.name()
                        );
                    }
                }
            }
        }
    }
}

const GRANS: [Granularity; 5] = [
    Granularity::PerTensor,
    Granularity::PerRow,
    Granularity::PerGroup(3),
    Granularity::PerGroup(64),
    Granularity::PerGroup(300),
];

#[test]
fn forward_boundary_shapes() {
    for (i, &rows) in BOUNDARY.iter().enumerate() {
        for (j, &cols) in BOUNDARY.iter().enumerate() {
            if rows * cols > 40_000 && (i + j) % 3 != 0 {
                continue; // keep the debug-build test short; every size still runs
            }
            let g = GRANS[(i + j) % GRANS.len()];
            let c = Case::new(rows, cols, g, (i * 31 + j) as u64);
            let batch = [2usize, 3, 7, 16, 17][(i + 2 * j) % 5];
            let x = uniform(batch, cols, 7 + i as u64, -2.0, 2.0);
            let bias = uniform(1, rows, 9, -1.0, 1.0).row(0).to_owned();
            let b = if (i + j) % 2 == 0 { Some(&bias) } else { None };
            check_forward(
                &c,
                &x,
                b,
                &format!("rows {rows} cols {cols} batch {batch} {g:?}"),
            );
        }
    }
}

#[test]
fn forward_every_granularity_and_batch() {
    for (gi, &g) in GRANS.iter().enumerate() {
        for batch in [0usize, 1, 2, 5, 6, 15, 16, 17, 33] {
            let c = Case::new(101, 531, g, 50 + gi as u64);
            let x = uniform(batch, 531, 60 + batch as u64, -1.0, 1.0);
            let bias = uniform(1, 101, 61, -1.0, 1.0).row(0).to_owned();
            check_forward(&c, &x, Some(&bias), &format!("{g:?} batch {batch}"));
        }
    }
}

#[test]
fn grad_input_boundary_shapes() {
    for (i, &rows) in BOUNDARY.iter().enumerate() {
        for (j, &cols) in BOUNDARY.iter().enumerate() {
            if rows * cols > 40_000 && (i + j) % 3 != 0 {
                continue;
            }
            let g = GRANS[(i + 3 * j) % GRANS.len()];
            let c = Case::new(rows, cols, g, 500 + (i * 31 + j) as u64);
            let batch = [2usize, 5, 6, 13, 1][(i + j) % 5];
            let dy = uniform(batch, rows, 70 + j as u64, -2.0, 2.0);
            check_grad_input(
                &c,
                &dy,
                &format!("rows {rows} cols {cols} batch {batch} {g:?}"),
            );
        }
    }
}

#[test]
fn grad_input_every_granularity_and_batch() {
    for (gi, &g) in GRANS.iter().enumerate() {
        for batch in [0usize, 1, 2, 6, 7, 12, 13, 40] {
            let c = Case::new(300, 513, g, 80 + gi as u64);
            let dy = uniform(batch, 300, 90 + batch as u64, -1.0, 1.0);
            check_grad_input(&c, &dy, &format!("{g:?} batch {batch}"));
        }
    }
}

#[test]
fn strided_inputs_and_outputs() {
    let c = Case::new(37, 300, Granularity::PerRow, 5);
    let x = uniform(300, 9, 6, -1.0, 1.0); // transposed view: strides (1, 9)
    let xt = x.t();
    let dy = uniform(37, 9, 7, -1.0, 1.0);
    let dyt = dy.t();
    for level in levels() {
        for (src, w) in c.sources() {
            let mut y1 = Array2::<f32>::zeros((9, 37));
            let mut y2 = Array2::<f32>::zeros((37, 9));
            let xc = xt.to_owned();
            linear(
                &w,
                ActIn::F32(xc.view()),
                None,
                ActivationMode::F32,
                ActOut::F32(y1.view_mut()),
                level,
            )
            .unwrap();
            linear(
                &w,
                ActIn::F32(xt),
                None,
                ActivationMode::F32,
                ActOut::F32(y2.view_mut().reversed_axes()),
                level,
            )
            .unwrap();
            assert_eq!(y1, y2.t(), "{src} {}", level.name());
            let mut d1 = Array2::<f32>::zeros((9, 300));
            let mut d2 = Array2::<f32>::zeros((300, 9));
            let dyc = dyt.to_owned();
            linear_grad_input(
                &w,
                ActIn::F32(dyc.view()),
                ActOut::F32(d1.view_mut()),
                level,
            )
            .unwrap();
            linear_grad_input(
                &w,
                ActIn::F32(dyt),
                ActOut::F32(d2.view_mut().reversed_axes()),
                level,
            )
            .unwrap();
            assert_eq!(d1, d2.t(), "{src} {}", level.name());
        }
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let c = Case::new(250, 700, Granularity::PerGroup(100), 11);
    let x = uniform(40, 700, 12, -1.0, 1.0);
    let dy = uniform(40, 250, 13, -1.0, 1.0);
    let level = crate::cpu::active();
    for (src, w) in c.sources() {
        let mut outs = Vec::new();
        for threads in [1usize, 2, 3] {
            crate::parallel::set_num_threads(threads);
            let mut y = Array2::<f32>::zeros((40, 250));
            linear(
                &w,
                ActIn::F32(x.view()),
                None,
                ActivationMode::F32,
                ActOut::F32(y.view_mut()),
                level,
            )
            .unwrap();
            let mut d = Array2::<f32>::zeros((40, 700));
            linear_grad_input(&w, ActIn::F32(dy.view()), ActOut::F32(d.view_mut()), level).unwrap();
            outs.push((y, d));
        }
        crate::parallel::set_num_threads(0);
        for o in &outs[1..] {
            let same = |a: &Array2<f32>, b: &Array2<f32>| {
                a.iter()
                    .zip(b.iter())
                    .all(|(p, q)| p.to_bits() == q.to_bits())
            };
            assert!(same(&o.0, &outs[0].0) && same(&o.1, &outs[0].1), "{src}");
        }
    }
}

#[test]
fn errors_name_the_argument() {
    let c = Case::new(8, 12, Granularity::PerRow, 1);
    let w = TernaryWeights::canonical(&c.bytes, 8, 12, &c.s, c.g).unwrap();
    let x = Array2::<f32>::zeros((3, 12));
    let lvl = CpuLevel::Scalar;
    let mut y = Array2::<f32>::zeros((3, 8));
    let bad_x = Array2::<f32>::zeros((3, 11));
    let e = linear(
        &w,
        ActIn::F32(bad_x.view()),
        None,
        ActivationMode::F32,
        ActOut::F32(y.view_mut()),
        lvl,
    )
    .unwrap_err();
    assert!(e.to_string().contains("x"), "{e}");
    let mut bad_y = Array2::<f32>::zeros((3, 7));
    let e = linear(
        &w,
        ActIn::F32(x.view()),
        None,
        ActivationMode::F32,
        ActOut::F32(bad_y.view_mut()),
        lvl,
    )
    .unwrap_err();
    assert!(e.to_string().contains("y"), "{e}");
    let bias = Array1::<f32>::zeros(7);
    let e = linear(
        &w,
        ActIn::F32(x.view()),
        Some(bias.view()),
        ActivationMode::F32,
        ActOut::F32(y.view_mut()),
        lvl,
    )
    .unwrap_err();
    assert!(e.to_string().contains("bias"), "{e}");
    let dy = Array2::<f32>::zeros((3, 9));
    let mut dx = Array2::<f32>::zeros((3, 12));
    let e =
        linear_grad_input(&w, ActIn::F32(dy.view()), ActOut::F32(dx.view_mut()), lvl).unwrap_err();
    assert!(e.to_string().contains("dy"), "{e}");
    let dy = Array2::<f32>::zeros((3, 8));
    let mut dx = Array2::<f32>::zeros((3, 13));
    let e =
        linear_grad_input(&w, ActIn::F32(dy.view()), ActOut::F32(dx.view_mut()), lvl).unwrap_err();
    assert!(e.to_string().contains("dx"), "{e}");
    // wrong byte and scale counts, non-finite scales
    assert!(TernaryWeights::canonical(&c.bytes[1..], 8, 12, &c.s, c.g).is_err());
    assert!(TernaryWeights::canonical(&c.bytes, 8, 12, &c.s[1..], c.g).is_err());
    let mut s = c.s.clone();
    s[2] = f32::NAN;
    assert!(TernaryWeights::canonical(&c.bytes, 8, 12, &s, c.g).is_err());
    // invalid code 11 in the bytes: an error at every level, both products
    let mut bytes = c.bytes.clone();
    bytes[5] |= 0b11 << 4;
    let w = TernaryWeights::canonical(&bytes, 8, 12, &c.s, c.g).unwrap();
    for level in levels() {
        let e = linear(
            &w,
            ActIn::F32(x.view()),
            None,
            ActivationMode::F32,
            ActOut::F32(y.view_mut()),
            level,
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidData { .. }), "{e}");
        let mut dx = Array2::<f32>::zeros((3, 12));
        let e = linear_grad_input(&w, ActIn::F32(y.view()), ActOut::F32(dx.view_mut()), level)
            .unwrap_err();
        assert!(matches!(e, Error::InvalidData { .. }), "{e}");
    }
}

#[test]
fn decoders_equal_the_scalar_decode() {
    // every 8-weight chunk and tail of a K block, both sources, SIMD vs scalar
    if !simd_at(crate::cpu::detected()) {
        eprintln!("no AVX2 + FMA: SIMD decoders skipped");
        return;
    }
    for cols in [1usize, 7, 8, 9, 63, 64, 65, 255, 256, 257, 511, 600] {
        for g in [Granularity::PerRow, Granularity::PerGroup(5)] {
            let c = Case::new(9, cols, g, cols as u64);
            for (src, w) in c.sources() {
                let mut k0 = 0;
                while k0 < cols {
                    let kc = KB.min(cols - k0);
                    let kw = kc.div_ceil(NR) * NR;
                    let mut a = vec![f32::NAN; 12 * KB];
                    let mut b = vec![f32::NAN; 12 * KB];
                    w.decode(false, 0, 12, k0, kc, kw, &mut a, KB);
                    w.decode(true, 0, 12, k0, kc, kw, &mut b, KB);
                    for i in 0..12 {
                        for j in 0..kw {
                            let (p, q) = (a[i * KB + j], b[i * KB + j]);
                            assert_eq!(
                                p.to_bits(),
                                q.to_bits(),
                                "{src} cols {cols} k0 {k0} [{i},{j}]"
                            );
                            let want = if i < 9 && j < kc {
                                c.w(i, k0 + j) as f32
                            } else {
                                0.0
                            };
                            assert_eq!(p, want, "{src} cols {cols} [{i},{k0}+{j}]");
                        }
                    }
                    k0 += kc;
                }
            }
        }
    }
}

#[test]
fn simd_fake_quant_equals_the_scalar_rule() {
    // bit for bit, on boundary lengths, ties, signed zeros, huge values,
    // infinities and NaN (a row's scale comes from its largest |x|)
    if !simd_at(crate::cpu::detected()) {
        eprintln!("no AVX2 + FMA: SIMD fake quantization skipped");
        return;
    }
    let specials = [
        0.0f32,
        -0.0,
        0.5,
        -0.5,
        1.5,
        -2.5,
        1e-30,
        -1e-30,
        3.0e38,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    for n in BOUNDARY.iter().copied().chain([7, 8, 9, 15, 16, 17, 4096]) {
        for variant in 0..6u64 {
            let mut x = uniform(1, n, 1000 + n as u64 + variant, -3.0, 3.0)
                .row(0)
                .to_vec();
            match variant {
                // exact ties after scaling: max 127 gives a = 1
                1 => x.iter_mut().enumerate().for_each(|(i, v)| {
                    *v = if i == 0 {
                        127.0
                    } else {
                        (i % 255) as f32 * 0.5 - 63.5
                    }
                }),
                2 if n > 0 => {
                    for (i, v) in x.iter_mut().enumerate() {
                        *v = specials[i % (specials.len() - 3)];
                    }
                }
                3 if n > 0 => x[n / 2] = f32::INFINITY,
                4 if n > 0 => x[n - 1] = f32::NAN,
                5 => x.iter_mut().for_each(|v| *v *= 1e-7), // tiny rows: the 1e-5 floor
                _ => {}
            }
            let (mut a, mut b) = (x.clone(), x.clone());
            let mut q = vec![0i8; n];
            fake_quant_row(false, &mut a, &mut q);
            fake_quant_row(true, &mut b, &mut q);
            for (i, (p, r)) in a.iter().zip(&b).enumerate() {
                assert_eq!(
                    p.to_bits(),
                    r.to_bits(),
                    "n {n} variant {variant} [{i}]: {p} vs {r}"
                );
            }
        }
    }
}

#[test]
fn dispatcher_sends_f32_batches_here_at_simd_levels() {
    use super::super::gemm_with_level;
    let c = Case::new(70, 300, Granularity::PerGroup(64), 3);
    let x = uniform(9, 300, 4, -1.0, 1.0);
    for level in crate::cpu::supported_levels() {
        let mut y = Array2::<f32>::zeros((9, 70));
        gemm_with_level(
            &c.m,
            x.view(),
            None,
            ActivationMode::F32,
            y.view_mut(),
            level,
        )
        .unwrap();
        if handles(&c.m, 9, ActivationMode::F32, level) {
            let w = TernaryWeights::of_matrix(&c.m).unwrap();
            let mut z = Array2::<f32>::zeros((9, 70));
            linear(
                &w,
                ActIn::F32(x.view()),
                None,
                ActivationMode::F32,
                ActOut::F32(z.view_mut()),
                level,
            )
            .unwrap();
            assert_eq!(y, z, "{level:?}");
        }
    }
}

#[test]
fn quantize_pack_equals_the_library_quantizer() {
    use crate::ternary::quant::{QuantConfig, QuantMethod};
    let levels = levels();
    for (rows, cols) in [
        (0usize, 5usize),
        (3, 0),
        (1, 1),
        (5, 31),
        (4, 32),
        (7, 33),
        (9, 257),
        (33, 640),
    ] {
        // a weight exactly on each rounding boundary, and a NaN-free rest
        let mut w = uniform(rows, cols, (rows * 7 + cols) as u64, -1.0, 1.0);
        for g in [
            Granularity::PerTensor,
            Granularity::PerRow,
            Granularity::PerGroup(32),
            Granularity::PerGroup(64),
            Granularity::PerGroup(5),
        ] {
            for (method, threshold) in [
                (QuantMethod::AbsMean, None),
                (QuantMethod::AbsMax, Some(0.05f32)),
                (QuantMethod::AbsMax, None),
                (QuantMethod::AbsMean, Some(0.7)),
            ] {
                let cfg = QuantConfig {
                    method,
                    granularity: g,
                    threshold,
                    eps: 1e-5,
                };
                if rows > 0 && cols > 2 {
                    // ties: w / d == 0.5 exactly (d = s + eps of row 0's group 0)
                    let s =
                        quant::compute_scales(w.as_slice().unwrap(), rows, cols, &cfg).unwrap()[0];
                    w[[0, 1]] = 0.5 * (s + 1e-5);
                    w[[0, 2]] = -0.05 * s;
                }
                let want = quant::quantize_pack_2bit(w.view(), &cfg).unwrap();
                for &level in &levels {
                    let got = quantize_pack_2bit(w.view(), &cfg, level).unwrap();
                    assert_eq!(
                        got,
                        want,
                        "{rows}x{cols} {g:?} {method:?} {threshold:?} {}",
                        level.name()
                    );
                    // strided input: the same bytes
                    let wt = w.t().to_owned();
                    let got = quantize_pack_2bit(wt.t(), &cfg, level).unwrap();
                    assert_eq!(got, want, "strided {rows}x{cols} {g:?} {}", level.name());
                }
            }
        }
        if rows * cols > 0 {
            for bad in [f32::NAN, f32::INFINITY] {
                let mut w2 = w.clone();
                w2[[rows - 1, cols - 1]] = bad;
                for method in [QuantMethod::AbsMean, QuantMethod::AbsMax] {
                    let cfg = QuantConfig {
                        method,
                        ..QuantConfig::default()
                    };
                    let want = quant::quantize_pack_2bit(w2.view(), &cfg)
                        .unwrap_err()
                        .to_string();
                    for &level in &levels {
                        let got = quantize_pack_2bit(w2.view(), &cfg, level)
                            .unwrap_err()
                            .to_string();
                        assert_eq!(got, want, "{}", level.name());
                    }
                }
            }
        }
    }
}
