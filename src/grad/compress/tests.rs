//! Cross-cutting tests: payload round trips and rejection, error feedback,
//! summing linear payloads.

use super::*;

fn randn(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let a = rng::uniform_f64(seed, 2 * i as u64).max(1e-300);
            let b = rng::uniform_f64(seed, 2 * i as u64 + 1);
            ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
        })
        .collect()
}

fn cfg(method: Method, ratio: f64, ef: bool) -> CompressorConfig {
    CompressorConfig {
        method,
        ratio,
        rows: 3,
        block: 64,
        value_bits: 2,
        seed: 11,
        worker: 0,
        error_feedback: ef,
    }
}

const METHODS: [Method; 5] = [
    Method::CountSketch,
    Method::Ternary,
    Method::TopK,
    Method::Projection,
    Method::QTopK,
];

#[test]
fn payload_round_trip_and_exact_sizes() {
    for dim in [1usize, 3, 5, 257, 10_000] {
        for m in METHODS {
            let mut c = Compressor::new(dim, cfg(m, 10.0, false)).unwrap();
            let g = randn(dim, dim as u64);
            let p = c.compress(&g).unwrap();
            let bytes = p.to_bytes();
            assert_eq!(bytes.len(), p.wire_bytes());
            assert_eq!(bytes.len(), c.wire_bytes());
            let back = Compressed::from_bytes(&bytes).unwrap();
            assert_eq!(back, p);
            assert_eq!(back.decompress().unwrap(), p.decompress().unwrap());
            let h = payload::header(&bytes).unwrap();
            assert_eq!((h.method, h.dim, h.seed), (m, dim, p.seed));
        }
    }
    // Sizes from the formulas.
    let n = 1_000_000;
    let wire = |m, r| Compressor::new(n, cfg(m, r, false)).unwrap().wire_bytes();
    assert_eq!(wire(Method::TopK, 32.0), 44 + 8 * 15_625);
    assert_eq!(wire(Method::CountSketch, 32.0), 44 + 4 * 3 * 10_416);
    assert_eq!(wire(Method::Projection, 10.0), 44 + 4 * 100_000);
    assert_eq!(wire(Method::Ternary, 1.0), 44 + 4 * 15_625 + 250_000);
}

#[test]
fn every_single_byte_corruption_is_rejected() {
    for m in METHODS {
        let mut c = Compressor::new(300, cfg(m, 4.0, false)).unwrap();
        let bytes = c.compress(&randn(300, 1)).unwrap().to_bytes();
        for i in 0..bytes.len() {
            for flip in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= flip;
                let e = Compressed::from_bytes(&b).unwrap_err();
                assert!(
                    matches!(e, Error::InvalidData { arg: "payload", .. }),
                    "{m:?} byte {i}: {e:?}"
                );
            }
        }
        for len in 0..bytes.len() {
            assert!(
                Compressed::from_bytes(&bytes[..len]).is_err(),
                "{m:?} truncated to {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Compressed::from_bytes(&longer).is_err());
    }
}

#[test]
fn semantically_invalid_payloads_with_valid_crc_are_rejected() {
    let reseal = |mut b: Vec<u8>| {
        let end = b.len() - 4;
        let crc = payload::crc32(&b[..end]);
        b[end..].copy_from_slice(&crc.to_le_bytes());
        b
    };
    // Top-k with a repeated index.
    let mut c = Compressor::new(100, cfg(Method::TopK, 10.0, false)).unwrap();
    let mut b = c.compress(&randn(100, 2)).unwrap().to_bytes();
    let first = b[40..44].to_vec();
    b[44..48].copy_from_slice(&first);
    let e = Compressed::from_bytes(&reseal(b)).unwrap_err();
    assert!(e.to_string().contains("not increasing"), "{e}");
    // Ternary with a `11` code and with a NaN scale.
    let mut c = Compressor::new(100, cfg(Method::Ternary, 1.0, false)).unwrap();
    let good = c.compress(&randn(100, 3)).unwrap().to_bytes();
    let mut b = good.clone();
    b[40 + 8] = 0xFF; // first code byte (2 scales of 4 bytes before it)
    assert!(Compressed::from_bytes(&reseal(b))
        .unwrap_err()
        .to_string()
        .contains("code 11"));
    let mut b = good.clone();
    b[40..44].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(Compressed::from_bytes(&reseal(b))
        .unwrap_err()
        .to_string()
        .contains("non-finite"));
    let mut b = good;
    b[6] = 9;
    assert!(Compressed::from_bytes(&reseal(b))
        .unwrap_err()
        .to_string()
        .contains("unknown method"));
}

/// `decompress_bytes_into` (one pass) against `from_bytes` then
/// `decompress_into`: the same output, or the same error with `out` zeroed
/// (or unchanged on a shape error).
#[test]
fn one_pass_decode_equals_parse_then_decode() {
    let reseal = |b: &mut Vec<u8>| {
        let end = b.len() - 4;
        let crc = payload::crc32(&b[..end]);
        b[end..].copy_from_slice(&crc.to_le_bytes());
    };
    let two_pass = |b: &[u8], n: usize| -> std::result::Result<Vec<f32>, String> {
        let mut out = vec![0.0f32; n];
        Compressed::from_bytes(b)
            .and_then(|c| c.decompress_into(&mut out))
            .map(|_| out)
            .map_err(|e| e.to_string())
    };
    let one_pass = |b: &[u8], n: usize| -> std::result::Result<Vec<f32>, String> {
        let mut out = vec![7.0f32; n];
        match Compressed::decompress_bytes_into(b, &mut out) {
            Ok(()) => Ok(out),
            Err(e) => {
                assert!(out.iter().all(|&x| x == 0.0) || out.iter().all(|&x| x == 7.0));
                Err(e.to_string())
            }
        }
    };
    for m in METHODS {
        for dim in [1usize, 64, 300, 4097] {
            let mut c = Compressor::new(dim, cfg(m, 6.0, false)).unwrap();
            let bytes = c.compress(&randn(dim, dim as u64 + 5)).unwrap().to_bytes();
            assert_eq!(one_pass(&bytes, dim), two_pass(&bytes, dim), "{m:?} {dim}");
            assert!(one_pass(&bytes, dim).is_ok());
            // wrong length of out
            let e = one_pass(&bytes, dim + 1).unwrap_err();
            assert!(e.contains("out"), "{e}");
            assert_eq!(one_pass(&bytes, dim + 1), two_pass(&bytes, dim + 1));
            // every byte of the body flipped, with and without a valid CRC
            for i in (payload::HEADER..bytes.len() - 4).step_by(1 + dim / 64) {
                for flip in [0x01u8, 0x10, 0x80] {
                    let mut b = bytes.clone();
                    b[i] ^= flip;
                    assert_eq!(one_pass(&b, dim), two_pass(&b, dim), "{m:?} {dim} byte {i}");
                    reseal(&mut b);
                    assert_eq!(
                        one_pass(&b, dim),
                        two_pass(&b, dim),
                        "{m:?} {dim} byte {i} resealed"
                    );
                    // an invalid body is reported before a wrong length of out
                    assert_eq!(one_pass(&b, dim + 1), two_pass(&b, dim + 1));
                }
            }
        }
    }
}

#[test]
fn error_feedback_invariant() {
    // e_t + D(C(g_t + e_{t-1})) == g_t + e_{t-1}, to f32 rounding of one
    // subtraction and one addition: |err| <= 2u (|x| + |d|).
    for m in METHODS {
        let dim = 2000;
        let mut c = Compressor::new(dim, cfg(m, 8.0, true)).unwrap();
        for t in 0..4 {
            let g = randn(dim, 50 + t);
            let e0 = c.residual().to_vec();
            let p = c.compress(&g).unwrap();
            let d = p.decompress().unwrap();
            for i in 0..dim {
                let x = g[i] + e0[i];
                let lhs = c.residual()[i] + d[i];
                let tol = 2.0 * f32::EPSILON * (x.abs() + d[i].abs());
                assert!(
                    (lhs - x).abs() <= tol,
                    "{m:?} step {t} coord {i}: {lhs} vs {x}"
                );
            }
        }
        assert_eq!(c.step(), 4);
        // Bad input leaves the state untouched.
        let before = c.residual().to_vec();
        let mut g = randn(dim, 1);
        g[17] = f32::INFINITY;
        assert_eq!(
            c.compress(&g),
            Err(Error::NonFinite {
                arg: "grad",
                index: 17
            })
        );
        assert!(c.compress(&g[1..]).is_err());
        assert_eq!(c.residual(), &before[..]);
        assert_eq!(c.step(), 4);
    }
}

#[test]
fn linear_payloads_sum_before_decoding() {
    // Two workers at the same step share the seed: decode(sum) == decode of
    // the sketch of the summed gradient, up to rounding.
    for m in [Method::CountSketch, Method::Projection] {
        let dim = 5000;
        let mut w0 = Compressor::new(dim, cfg(m, 10.0, false)).unwrap();
        let mut w1 = Compressor::new(
            dim,
            CompressorConfig {
                worker: 1,
                ..cfg(m, 10.0, false)
            },
        )
        .unwrap();
        let mut w01 = Compressor::new(dim, cfg(m, 10.0, false)).unwrap();
        let (a, b) = (randn(dim, 1), randn(dim, 2));
        let ab: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        let mut pa = w0.compress(&a).unwrap();
        let pb = w1.compress(&b).unwrap();
        let pab = w01.compress(&ab).unwrap();
        pa.add_assign(&pb).unwrap();
        let (Body::Sketch { table: x, .. } | Body::Projection { values: x }) = &pa.body else {
            unreachable!()
        };
        let (Body::Sketch { table: y, .. } | Body::Projection { values: y }) = &pab.body else {
            unreachable!()
        };
        for (u, v) in x.iter().zip(y) {
            assert!((u - v).abs() <= 1e-3 * (1.0 + v.abs()), "{m:?}");
        }
        // Mismatched seeds (different step) are rejected.
        let pc = w1.compress(&b).unwrap();
        assert!(pa.add_assign(&pc).is_err());
    }
    let mut t = Compressor::new(10, cfg(Method::TopK, 2.0, false)).unwrap();
    let mut p = t.compress(&[1.0; 10]).unwrap();
    let q = p.clone();
    assert!(p.add_assign(&q).is_err());
}

#[test]
fn ternary_workers_round_independently() {
    let dim = 4096;
    let g = randn(dim, 5);
    let mut a = Compressor::new(dim, cfg(Method::Ternary, 1.0, false)).unwrap();
    let mut b = Compressor::new(
        dim,
        CompressorConfig {
            worker: 1,
            ..cfg(Method::Ternary, 1.0, false)
        },
    )
    .unwrap();
    assert_ne!(a.compress(&g).unwrap().body, b.compress(&g).unwrap().body);
}

#[test]
fn config_errors_name_arguments() {
    let bad = |c: CompressorConfig, dim: usize| Compressor::new(dim, c).unwrap_err().to_string();
    assert!(bad(cfg(Method::TopK, 0.5, true), 10).contains("ratio"));
    assert!(bad(cfg(Method::TopK, f64::NAN, true), 10).contains("ratio"));
    assert!(bad(cfg(Method::TopK, 2.0, true), 0).contains("dim"));
    assert!(bad(
        CompressorConfig {
            block: 6,
            ..cfg(Method::Ternary, 2.0, true)
        },
        10
    )
    .contains("block"));
    assert!(bad(
        CompressorConfig {
            rows: 0,
            ..cfg(Method::CountSketch, 2.0, true)
        },
        10
    )
    .contains("rows"));
    assert!(Method::from_code(0).is_err() && Method::from_code(6).is_err());
}

/// Sizes on both sides of the kernels' 8-coordinate steps and 256-coordinate
/// chunks.
const SIZES: [usize; 13] = [1, 3, 4, 5, 7, 8, 9, 31, 32, 33, 255, 256, 257];

#[test]
fn count_sketch_every_level_equals_scalar() {
    let levels = crate::cpu::levels_for_test("count sketch accumulate / estimate");
    for n in SIZES.into_iter().chain([1000, 4099]) {
        let g = randn(n, n as u64);
        for (rows, cols) in [(1usize, 1usize), (1, 7), (3, 13), (5, 64), (2, 1000)] {
            let cs = CountSketch::new(n, rows, cols, 9 + n as u64).unwrap();
            let mut want = vec![0.5f32; cs.table_len()];
            cs.accumulate_level(&g, &mut want, crate::cpu::CpuLevel::Scalar)
                .unwrap();
            let mut want_est = vec![0.0f32; n];
            cs.estimate_level(&want, &mut want_est, crate::cpu::CpuLevel::Scalar)
                .unwrap();
            for &l in &levels {
                let mut t = vec![0.5f32; cs.table_len()];
                cs.accumulate_level(&g, &mut t, l).unwrap();
                assert_eq!(t, want, "accumulate n {n} {rows}x{cols} {l}");
                let mut est = vec![0.0f32; n];
                cs.estimate_level(&want, &mut est, l).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&est),
                    bits(&want_est),
                    "estimate n {n} {rows}x{cols} {l}"
                );
            }
            // The definition: bucket and sign of every coordinate.
            for i in [0, n / 2, n - 1] {
                let mut one = vec![0.0f32; n];
                one[i] = 1.0;
                for &l in &levels {
                    let mut t = vec![0.0f32; cs.table_len()];
                    cs.accumulate_level(&one, &mut t, l).unwrap();
                    for r in 0..rows {
                        let (b, s) = cs.bucket(r, i);
                        assert_eq!(t[r * cols + b], s, "n {n} i {i} row {r} {l}");
                    }
                }
            }
        }
    }
}

#[test]
fn count_sketch_large_rows_every_level_equals_scalar() {
    // Rows larger than L2 (65,537 buckets and up) over inputs of 2^17 and
    // more; values of mixed scales so that a changed addition order would
    // show in the bits.
    let levels = crate::cpu::levels_for_test("count sketch, rows larger than L2");
    for n in [131_072usize, 131_075, 600_001] {
        let g: Vec<f32> = randn(n, 77 + n as u64)
            .iter()
            .enumerate()
            .map(|(i, v)| v * if i % 3 == 0 { 1e4 } else { 1e-3 })
            .collect();
        for (rows, cols) in [
            (1usize, 65_537usize),
            (1, 3 * 65_536 + 7),
            (2, 16 * 65_536),
            (1, 17 * 65_536),
        ] {
            if n == 131_075 && cols > 65_537 {
                continue;
            }
            let cs = CountSketch::new(n, rows, cols, 3).unwrap();
            let init: Vec<f32> = (0..cs.table_len())
                .map(|i| (i % 13) as f32 * 0.25)
                .collect();
            let mut want = init.clone();
            cs.accumulate_level(&g, &mut want, crate::cpu::CpuLevel::Scalar)
                .unwrap();
            for &l in &levels {
                let mut t = init.clone();
                cs.accumulate_level(&g, &mut t, l).unwrap();
                assert!(
                    t.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "n {n} {rows}x{cols} {l}"
                );
            }
        }
    }
}

#[test]
fn top_k_and_qtopk_every_level_equal_scalar() {
    let levels = crate::cpu::levels_for_test("top-k selection / quantized top-k encode");
    let sizes = SIZES.into_iter().chain([1000, 70_001, 140_000]);
    for n in sizes {
        // Ties (quantized values), zeros and signs.
        let x: Vec<f32> = randn(n, 3 + n as u64)
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i % 5 == 0 {
                    (v * 4.0).round() / 4.0
                } else {
                    *v
                }
            })
            .collect();
        for k in [0, 1, n / 64, n / 7, n / 2, n] {
            let want = topk::top_k_indices_level(&x, k, crate::cpu::CpuLevel::Scalar).unwrap();
            for &l in &levels {
                assert_eq!(
                    topk::top_k_indices_level(&x, k, l).unwrap(),
                    want,
                    "n {n} k {k} {l}"
                );
            }
            for v in [0usize, 2, 4] {
                let r = 2;
                let want =
                    qtopk::compress_level(&x, k, r, v, crate::cpu::CpuLevel::Scalar).unwrap();
                for &l in &levels {
                    assert_eq!(
                        qtopk::compress_level(&x, k, r, v, l).unwrap(),
                        want,
                        "n {n} k {k} v {v} {l}"
                    );
                }
            }
        }
    }
}

#[test]
fn top_k_and_qtopk_bracketed_path_every_level_equal_scalar() {
    // Inputs long enough for the sampled bracket and the fused qtopk pass
    // (topk::BRACKET_MIN and up): ties at many magnitudes (quantized values),
    // exact zeros, signs, heavy and light tails.
    let levels = crate::cpu::levels_for_test("top-k / qtopk, bracketed path (n >= 2^13)");
    let m = topk::BRACKET_MIN;
    // the sample grows with n (about (1.5 n)^(2/3))
    for (n, kind) in [
        (m, 0u64),
        (m + 3, 1),
        (m + 257, 2),
        (5 * m + 1, 0),
        ((1 << 18) + 5, 2),
        ((1 << 20) + 1, 1),
    ] {
        let x: Vec<f32> = randn(n, 40 + kind)
            .iter()
            .enumerate()
            .map(|(i, v)| match kind {
                0 => (v * 8.0).round() / 8.0,
                1 if i % 3 == 0 => 0.0,
                1 => v * v * v,
                _ if i % 5 == 0 => (v * 4.0).round() / 4.0,
                _ => *v,
            })
            .collect();
        for k in [1, 2, n / 64, n / 7, n / 2, n - 1] {
            let want = topk::top_k_indices_level(&x, k, crate::cpu::CpuLevel::Scalar).unwrap();
            for &l in &levels {
                assert_eq!(
                    topk::top_k_indices_level(&x, k, l).unwrap(),
                    want,
                    "n {n} k {k} {l}"
                );
            }
            #[cfg(target_arch = "x86_64")]
            if crate::cpu::CpuLevel::Avx2.allowed_under(crate::cpu::detected()) {
                // the fused path runs (the bracket holds the k-th largest)
                assert!(
                    topk::bracket_kth(crate::cpu::Kernel::Avx2, &x, k).is_some(),
                    "n {n} k {k}"
                );
            }
            for (r, v) in [(0usize, 0usize), (2, 2), (3, 4), (31, 1)] {
                let want = qtopk::compress_kept(&x, k, r, v, crate::cpu::CpuLevel::Scalar).unwrap();
                for &l in &levels {
                    assert!(
                        qtopk::compress_kept(&x, k, r, v, l).unwrap() == want,
                        "n {n} k {k} r {r} v {v} {l}"
                    );
                }
            }
        }
    }
}

#[test]
fn error_feedback_add_every_level_equals_scalar() {
    use crate::cpu::CpuLevel;
    use std::mem::MaybeUninit;
    let levels = crate::cpu::levels_for_test("error feedback add + finiteness");
    let bits = |v: &[MaybeUninit<f32>]| {
        // SAFETY: every element was written by add_check_finite.
        v.iter()
            .map(|x| unsafe { x.assume_init() }.to_bits())
            .collect::<Vec<_>>()
    };
    for n in [0usize, 1, 3, 4, 5, 15, 16, 17, 31, 32, 33, 255, 256, 257] {
        let g: Vec<f32> = (0..n)
            .map(|i| rng::uniform_f32(1, i as u64) - 0.5)
            .collect();
        let e: Vec<f32> = (0..n)
            .map(|i| rng::uniform_f32(2, i as u64) * 1e-3)
            .collect();
        // finite, then one bad value at each of a few positions (vector body and tail)
        let mut cases = vec![(g.clone(), true)];
        for pos in [0, n / 2, n.saturating_sub(1)] {
            for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
                if n > 0 {
                    let mut gb = g.clone();
                    gb[pos] = bad;
                    cases.push((gb, false));
                }
            }
        }
        // a finite sum that overflows is not a non-finite gradient
        if n > 0 {
            let mut gb = g.clone();
            gb[n - 1] = f32::MAX;
            let mut eb = e.clone();
            eb[n - 1] = f32::MAX;
            let mut want = vec![MaybeUninit::uninit(); n];
            for &l in &levels {
                let mut got = vec![MaybeUninit::uninit(); n];
                assert!(super::add_check_finite(l, &gb, &eb, &mut got), "{l} n={n}");
                assert!(super::add_check_finite(
                    CpuLevel::Scalar,
                    &gb,
                    &eb,
                    &mut want
                ));
                assert_eq!(bits(&got), bits(&want));
            }
        }
        for (gc, finite) in cases {
            let mut want = vec![MaybeUninit::uninit(); n];
            assert_eq!(
                super::add_check_finite(CpuLevel::Scalar, &gc, &e, &mut want),
                finite
            );
            for &l in &levels {
                let mut got = vec![MaybeUninit::uninit(); n];
                assert_eq!(
                    super::add_check_finite(l, &gc, &e, &mut got),
                    finite,
                    "{l} n={n}"
                );
                assert_eq!(bits(&got), bits(&want), "{l} n={n}");
            }
        }
    }
}
