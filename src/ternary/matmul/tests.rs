//! Every fast kernel against the scalar reference, on every level this CPU
//! has, both compute formats, both activation modes, boundary shapes,
//! seeded random and adversarial inputs.

use ndarray::{Array1, Array2};

use super::layout::ComputeFormat;
use super::{driver, gemm_with_level, kernels, reference, ActivationMode};
use crate::cpu::CpuLevel;
use crate::ternary::{Granularity, TernaryMatrix};

const BOUNDARY: [usize; 14] = [0, 1, 3, 4, 5, 31, 32, 33, 127, 128, 129, 255, 256, 257];
const FORMATS: [ComputeFormat; 2] = [ComputeFormat::TwoBit, ComputeFormat::Base3];

/// Every level this CPU supports (each test runs all of them); prints, once
/// per test binary, which levels ran and which this CPU cannot run.
fn levels() -> Vec<CpuLevel> {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let names = |v: Vec<CpuLevel>| v.iter().map(|l| l.name()).collect::<Vec<_>>().join(" ");
        let skipped = names(crate::cpu::unsupported_levels());
        let line = format!(
            "matmul kernels tested at levels: {} | skipped (not on this CPU, no emulator): {}\n",
            names(crate::cpu::supported_levels()),
            if skipped.is_empty() {
                "none".into()
            } else {
                skipped
            }
        );
        // straight to file descriptor 2: the test harness captures the
        // output of passing tests (eprintln! and io::stderr alike)
        #[cfg(unix)]
        // SAFETY: writes line.len() bytes from a live buffer to fd 2.
        let _ = unsafe { libc::write(2, line.as_ptr() as *const libc::c_void, line.len()) };
        #[cfg(not(unix))]
        eprint!("{line}");
    });
    crate::cpu::supported_levels()
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

fn matrix(t: &Array2<i8>, g: Granularity, seed: u64, fmt: ComputeFormat) -> TernaryMatrix {
    let (r, c) = t.dim();
    let n = g.num_scales(r, c);
    let s: Vec<f32> = (0..n)
        .map(|i| 0.01 + crate::rng::uniform_f32(seed, i as u64))
        .collect();
    TernaryMatrix::from_ternary(t.view(), &s, g)
        .unwrap()
        .with_compute_format(fmt)
}

/// The documented f32 bound `(cols + cols/256 + 3) · 2⁻²³ · (Σ_g |s| Σ_k |x| + |bias|)`.
fn f32_bound(m: &TernaryMatrix, x: &Array2<f32>, bias: &Array1<f32>, b: usize, o: usize) -> f32 {
    let glen = m.granularity().group_len(m.cols());
    let mut s = 0f64;
    for k in 0..m.cols() {
        s += m.scale(o, k / glen).abs() as f64 * x[[b, k]].abs() as f64;
    }
    let c = m.cols() as f64;
    ((c + c / 256.0 + 3.0) * f64::powi(2.0, -23) * (s + bias[o].abs() as f64)) as f32
}

/// Runs `m` on every level and mode and compares with the reference.
fn check(m: &TernaryMatrix, x: &Array2<f32>, bias: &Array1<f32>, what: &str) {
    for mode in [ActivationMode::F32, ActivationMode::Int8] {
        let mut want = Array2::zeros((x.nrows(), m.rows()));
        reference::gemm(m, x.view(), Some(bias.view()), mode, want.view_mut());
        for level in levels() {
            let mut got = Array2::from_elem((x.nrows(), m.rows()), f32::NAN);
            gemm_with_level(m, x.view(), Some(bias.view()), mode, got.view_mut(), level).unwrap();
            for ((b, o), &g) in got.indexed_iter() {
                let w = want[[b, o]];
                match mode {
                    ActivationMode::Int8 => assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "{what} {level:?} {:?} int8 [{b},{o}]: {g} vs {w}",
                        m.compute_format()
                    ),
                    ActivationMode::F32 => {
                        let bound = f32_bound(m, x, bias, b, o);
                        assert!(
                            (g - w).abs() <= bound,
                            "{what} {level:?} {:?} f32 [{b},{o}]: {g} vs {w} (bound {bound})",
                            m.compute_format()
                        );
                    }
                }
            }
            if mode == ActivationMode::F32 && x.nrows() >= 4 {
                // the kernels the FMA tiles replace (still reachable through
                // gemm_without_train, which the benches compare against)
                let mut want0 = Array2::zeros((x.nrows(), m.rows()));
                reference::gemm(m, x.view(), None, mode, want0.view_mut());
                let mut got = Array2::from_elem((x.nrows(), m.rows()), f32::NAN);
                super::gemm_without_train(m, x.view(), mode, got.view_mut(), level).unwrap();
                for ((b, o), &g) in got.indexed_iter() {
                    let (w, bound) = (want0[[b, o]], f32_bound(m, x, bias, b, o));
                    assert!(
                        (g - w).abs() <= bound,
                        "{what} {level:?} {:?} f32 without train [{b},{o}]: {g} vs {w}",
                        m.compute_format()
                    );
                }
            }
        }
    }
}

#[test]
fn levels_include_the_best_and_scalar() {
    let l = levels();
    assert!(l.contains(&CpuLevel::Scalar));
    assert!(l.contains(&crate::cpu::active()));
    println!("{}", crate::cpu::describe());
}

#[test]
fn boundary_rows_and_cols() {
    let gs = [Granularity::PerRow, Granularity::PerTensor];
    for fmt in FORMATS {
        for (i, &rows) in BOUNDARY.iter().enumerate() {
            for cols in [33usize, 257] {
                let g = gs[i % 2];
                let m = matrix(&trits(rows, cols, i as u64), g, 1, fmt);
                let x = uniform(3, cols, 2, -1.0, 1.0);
                let bias = uniform(1, rows, 3, -1.0, 1.0).row(0).to_owned();
                check(&m, &x, &bias, &format!("rows {rows} cols {cols}"));
            }
        }
        for (i, &cols) in BOUNDARY
            .iter()
            .chain(&[319, 320, 321, 640, 1000])
            .enumerate()
        {
            for rows in [5usize, 33] {
                let g = gs[i % 2];
                let m = matrix(&trits(rows, cols, 100 + i as u64), g, 4, fmt);
                let x = uniform(2, cols, 5, -3.0, 3.0);
                let bias = uniform(1, rows, 6, -1.0, 1.0).row(0).to_owned();
                check(&m, &x, &bias, &format!("rows {rows} cols {cols}"));
            }
        }
    }
}

#[test]
fn boundary_batch() {
    for fmt in FORMATS {
        let m = matrix(&trits(33, 257, 7), Granularity::PerRow, 8, fmt);
        let bias = uniform(1, 33, 9, -1.0, 1.0).row(0).to_owned();
        for &batch in &BOUNDARY {
            let x = uniform(batch, 257, 10 + batch as u64, -2.0, 2.0);
            check(&m, &x, &bias, &format!("batch {batch}"));
        }
        // more than one int8 and f32 batch cache block
        let x = uniform(150, 257, 11, -2.0, 2.0);
        check(&m, &x, &bias, "batch 150");
    }
}

#[test]
fn per_group_scales_aligned_and_not() {
    // 256 / 512 (2-bit) and 320 / 640 (base-3) align with the K block; the
    // others run the SIMD kernels on activations masked to each group (blocks
    // shared by two groups run once per group); every result must match.
    for fmt in FORMATS {
        for g in [5usize, 32, 64, 100, 256, 320, 512, 640, 2000] {
            for (rows, cols) in [(9usize, 1300usize), (4, 257), (3, 640)] {
                let m = matrix(
                    &trits(rows, cols, g as u64),
                    Granularity::PerGroup(g),
                    12,
                    fmt,
                );
                let x = uniform(5, cols, 13, -1.0, 1.0);
                let bias = uniform(1, rows, 14, -1.0, 1.0).row(0).to_owned();
                check(&m, &x, &bias, &format!("group {g} {rows}x{cols}"));
            }
        }
    }
}

#[test]
fn random_larger_shapes() {
    for fmt in FORMATS {
        for (i, &(rows, cols, batch)) in
            [(300, 1024, 1), (130, 2560, 1), (64, 777, 9), (17, 4096, 4)]
                .iter()
                .enumerate()
        {
            let m = matrix(
                &trits(rows, cols, 20 + i as u64),
                Granularity::PerRow,
                21,
                fmt,
            );
            let x = uniform(batch, cols, 22 + i as u64, -4.0, 4.0);
            let bias = uniform(1, rows, 23, -1.0, 1.0).row(0).to_owned();
            check(&m, &x, &bias, &format!("{rows}x{cols} b{batch}"));
        }
    }
}

#[test]
fn adversarial_activations_and_weights() {
    // Activations that quantize to all +127, all -127, alternating, and one
    // spike (everything else rounds to 0); weights all +1, all -1, random.
    let cols = 1100;
    let xs: Vec<Array2<f32>> = vec![
        Array2::from_elem((2, cols), 3.5),
        Array2::from_elem((2, cols), -1e-3),
        Array2::from_shape_fn((2, cols), |(_, k)| if k % 2 == 0 { 7.0 } else { -7.0 }),
        Array2::from_shape_fn((2, cols), |(_, k)| if k == 5 { -1e4 } else { 1.0 }),
        Array2::from_shape_fn((1, cols), |(_, k)| if k % 3 == 0 { 1e30 } else { -1e30 }),
    ];
    for fmt in FORMATS {
        for (wi, t) in [
            Array2::from_elem((6, cols), 1i8),
            Array2::from_elem((6, cols), -1i8),
            trits(6, cols, 30),
        ]
        .iter()
        .enumerate()
        {
            for g in [
                Granularity::PerRow,
                Granularity::PerGroup(256),
                Granularity::PerGroup(320),
            ] {
                let m = matrix(t, g, 31, fmt);
                let bias = Array1::zeros(6);
                for (xi, x) in xs.iter().enumerate() {
                    check(&m, x, &bias, &format!("adversarial w{wi} x{xi} {g:?}"));
                }
            }
        }
    }
}

#[test]
fn results_do_not_depend_on_thread_count() {
    for fmt in FORMATS {
        let m = matrix(&trits(203, 700, 40), Granularity::PerRow, 41, fmt);
        for batch in [1usize, 7, 70] {
            let x = uniform(batch, 700, 42, -1.0, 1.0);
            for mode in [ActivationMode::F32, ActivationMode::Int8] {
                let mut outs = Vec::new();
                for threads in [1usize, 2, 3] {
                    crate::parallel::set_num_threads(threads);
                    outs.push(m.matmul(x.view(), None, mode).unwrap());
                }
                crate::parallel::set_num_threads(0);
                for o in &outs[1..] {
                    let same = o
                        .iter()
                        .zip(outs[0].iter())
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{fmt:?} batch {batch} {mode:?} differs across thread counts"
                    );
                }
            }
        }
    }
}

#[test]
fn chunked_k_ranges_stay_bit_identical() {
    // Groups spanning several kernel calls (chunk of 1 or 2 K blocks).
    for fmt in FORMATS {
        for g in [
            Granularity::PerRow,
            Granularity::PerGroup(1280),
            Granularity::PerGroup(1000),
            Granularity::PerGroup(100),
        ] {
            let m = matrix(&trits(9, 3000, 50), g, 51, fmt);
            for batch in [1usize, 6] {
                let x = uniform(batch, 3000, 52, -1.0, 1.0);
                let mut want = Array2::zeros((batch, 9));
                reference::gemm(&m, x.view(), None, ActivationMode::Int8, want.view_mut());
                for level in levels() {
                    for chunk in [1usize, 2, 3] {
                        let mut got = Array2::zeros((batch, 9));
                        driver::gemm(
                            level,
                            &m,
                            x.view(),
                            None,
                            ActivationMode::Int8,
                            got.view_mut(),
                            chunk,
                        )
                        .unwrap();
                        assert!(
                            got.iter()
                                .zip(want.iter())
                                .all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{fmt:?} {g:?} {level:?} chunk {chunk} batch {batch}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn compute_format_does_not_change_equality_or_results() {
    let t = trits(10, 300, 60);
    let a = matrix(&t, Granularity::PerRow, 61, ComputeFormat::TwoBit);
    let b = a.clone().with_compute_format(ComputeFormat::Base3);
    assert_eq!(a, b);
    assert_eq!(b.compute_format(), ComputeFormat::Base3);
    let x = uniform(1, 300, 62, -1.0, 1.0);
    let ya = a.matmul(x.view(), None, ActivationMode::Int8).unwrap();
    let yb = b.matmul(x.view(), None, ActivationMode::Int8).unwrap();
    assert_eq!(ya, yb);
}

/// The raw int8 kernels on extreme codes and activations (q = -128 cannot
/// come out of the activation quantizer, but the kernels must still be
/// exact for it), at the longest chunk the driver passes.
#[cfg(target_arch = "x86_64")]
#[test]
fn raw_int8_kernels_exact_on_extremes() {
    use super::layout::{ComputeLayout, TILE_ROWS};
    use super::{avx2, x86};
    let nkb = driver::MAX_CHUNK_BLOCKS;
    for fmt in FORMATS {
        let bk = fmt.block_k();
        let kp = nkb * bk;
        for (wi, tv) in [1i8, -1, 0].iter().enumerate() {
            let t = Array2::from_elem((TILE_ROWS, kp), *tv);
            let p = crate::ternary::pack::pack_2bit(t.view()).unwrap();
            let lay = ComputeLayout::from_2bit(&p, TILE_ROWS, kp, fmt);
            for qv in [-128i8, 127] {
                let q = vec![qv; kp];
                let want = (*tv as i64 + 1) * qv as i64 * kp as i64;
                let want = want as i32;
                let tile = lay.tile(0).as_ptr();
                // SAFETY: features checked per level below; sizes as documented.
                unsafe {
                    if CpuLevel::Avx2.is_supported() {
                        // 1..=3 activation rows: q, then the other extreme, then q
                        let q2 = vec![if qv == 127 { -128i8 } else { 127 }; kp];
                        let want2 = ((*tv as i64 + 1) * q2[0] as i64 * kp as i64) as i32;
                        let f = match fmt {
                            ComputeFormat::TwoBit => avx2::i8_gemv_n_2bit,
                            ComputeFormat::Base3 => avx2::i8_gemv_n_base3,
                        };
                        for na in 1..=3 {
                            let mut out = vec![0i32; TILE_ROWS * na];
                            let qs = [q.as_ptr(), q2.as_ptr(), q.as_ptr()];
                            f(tile, lay.tile_bytes(), &qs, na, nkb, 1, out.as_mut_ptr());
                            for (i, &v) in out.iter().enumerate() {
                                let w = if i % na == 1 { want2 } else { want };
                                assert_eq!(v, w, "avx2 gemv_n {fmt:?} na{na} w{wi} q{qv}");
                            }
                        }
                    }
                    let mut gemv: Vec<(&str, kernels::GemvI8)> = Vec::new();
                    if CpuLevel::Avx512.is_supported() && fmt == ComputeFormat::TwoBit {
                        gemv.push(("avx512", x86::i8_gemv_2bit_avx512));
                    }
                    if CpuLevel::Avx512Vnni.is_supported() {
                        gemv.push(match fmt {
                            ComputeFormat::TwoBit => ("vnni", x86::i8_gemv_2bit_vnni),
                            ComputeFormat::Base3 => ("vnni3", x86::i8_gemv_base3_vnni),
                        });
                    }
                    for (name, f) in gemv {
                        assert_eq!(f(tile, q.as_ptr(), nkb), [want; 4], "{name} w{wi} q{qv}");
                    }
                    let mut dec = vec![0u8; TILE_ROWS * kp];
                    let mut gemm: Vec<(&str, kernels::GemmI8)> = Vec::new();
                    if CpuLevel::Avx2.is_supported() {
                        let d: kernels::Decode = match fmt {
                            ComputeFormat::TwoBit => x86::decode_2bit_avx2,
                            ComputeFormat::Base3 => x86::decode_base3_avx2,
                        };
                        d(tile, nkb, dec.as_mut_ptr(), kp);
                        assert!(dec.iter().all(|&c| c as i8 == tv + 1), "avx2 decode");
                        gemm.push(("avx2", avx2::i8_gemm));
                    }
                    if CpuLevel::Avx512.is_supported() {
                        dec.fill(9);
                        let d: kernels::Decode = match fmt {
                            ComputeFormat::TwoBit => x86::decode_2bit_avx512,
                            ComputeFormat::Base3 => x86::decode_base3_avx512,
                        };
                        d(tile, nkb, dec.as_mut_ptr(), kp);
                        assert!(dec.iter().all(|&c| c as i8 == tv + 1), "avx512 decode");
                        gemm.push(("avx512", x86::i8_gemm_avx512));
                    }
                    if CpuLevel::Avx512Vnni.is_supported() {
                        gemm.push(("vnni", x86::i8_gemm_vnni));
                    }
                    for (name, f) in gemm {
                        let w: [*const u8; 4] = std::array::from_fn(|r| dec[r * kp..].as_ptr());
                        for nb in 1..=4 {
                            let qp = [q.as_ptr(); 4];
                            let got = f(&w, &qp, nb, kp);
                            for row in got {
                                assert_eq!(
                                    &row[..nb],
                                    &vec![want; nb][..],
                                    "{name} nb{nb} w{wi} q{qv}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The AVX2 activation quantizer is bit-identical to the scalar one on every
/// length and on the rounding ties and clamps.
#[cfg(target_arch = "x86_64")]
#[test]
fn avx2_activation_quantizer_equals_the_scalar_one() {
    if !CpuLevel::Avx2.is_supported() {
        return;
    }
    use crate::ternary::quant::{abs_max, quantize_act_row};
    let ties = [
        0.5f32, -0.5, 1.5, -1.5, 2.5, 126.5, 127.5, -127.5, -128.5, 128.0, -129.0, 1e30, -1e30,
        0.0, -0.0, 1e-30, 63.49999, 63.5, 63.50001,
    ];
    for &n in &BOUNDARY {
        for seed in 0..3u64 {
            let x: Vec<f32> = (0..n)
                .map(|i| match seed {
                    0 => ties[i % ties.len()],
                    1 => crate::rng::uniform_f32(7, i as u64) * 300.0 - 150.0,
                    _ => (i as f32 - n as f32 / 2.0) * 0.5,
                })
                .collect();
            // SAFETY: AVX2 checked above.
            let m = unsafe { super::avx2::abs_max(&x) };
            assert_eq!(
                m.to_bits(),
                abs_max(&x).to_bits(),
                "abs_max n{n} seed{seed}"
            );
            for s in [1.0f32, 127.0 / m.max(1e-5), 0.37] {
                let (mut a, mut b) = (vec![0i8; n], vec![0i8; n]);
                quantize_act_row(&x, s, &mut a);
                // SAFETY: AVX2 checked above.
                unsafe { super::avx2::quantize_act(&x, s, &mut b) };
                assert_eq!(a, b, "quantize n{n} seed{seed} s{s}");
            }
        }
    }
}

/// f32 activations that are hard for a fixed-point split: one spike, values
/// over 60 orders of magnitude in one scale group, all-zero groups, and
/// per-group scales a million apart; every level within the f32 bound.
#[test]
fn f32_activations_with_extreme_dynamic_range() {
    let cols = 777;
    let xs: Vec<Array2<f32>> = vec![
        Array2::from_shape_fn((1, cols), |(_, k)| if k == 400 { 3e6 } else { 1e-3 }),
        Array2::from_shape_fn((1, cols), |(_, k)| {
            let e = (k % 61) as i32 - 30;
            (if k % 2 == 0 { 1.0 } else { -1.0 }) * 10f32.powi(e)
        }),
        Array2::from_shape_fn((1, cols), |(_, k)| if k < 300 { 0.0 } else { 0.25 }),
        Array2::from_shape_fn((2, cols), |(b, k)| ((k * 7 + b) % 13) as f32 - 6.0),
    ];
    for fmt in FORMATS {
        for g in [
            Granularity::PerRow,
            Granularity::PerGroup(256),
            Granularity::PerGroup(100),
        ] {
            let rows = 9;
            let t = trits(rows, cols, 70);
            let n = g.num_scales(rows, cols);
            // scales alternating between 1e-3 and 1e3
            let s: Vec<f32> = (0..n)
                .map(|i| if i % 2 == 0 { 1e-3 } else { 1e3 })
                .collect();
            let m = TernaryMatrix::from_ternary(t.view(), &s, g)
                .unwrap()
                .with_compute_format(fmt);
            let bias = uniform(1, rows, 71, -1.0, 1.0).row(0).to_owned();
            for (i, x) in xs.iter().enumerate() {
                check(&m, x, &bias, &format!("dynamic range x{i} {g:?}"));
            }
        }
    }
}

/// K lengths around the AVX2 kernels' i16 widening points (8 two-bit or
/// 6 base-3 K blocks for the GEMV, 2048 codes for the GEMM).
#[test]
fn k_lengths_around_the_widening_points() {
    for fmt in FORMATS {
        for cols in [1535usize, 1536, 1537, 1920, 2047, 2048, 2049, 2080, 4097] {
            let m = matrix(&trits(6, cols, cols as u64), Granularity::PerRow, 80, fmt);
            let bias = uniform(1, 6, 81, -1.0, 1.0).row(0).to_owned();
            for batch in [1usize, 3, 6] {
                let x = uniform(batch, cols, 82 + batch as u64, -2.0, 2.0);
                check(&m, &x, &bias, &format!("cols {cols} batch {batch}"));
            }
        }
    }
}
