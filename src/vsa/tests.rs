//! Tests of the VSA module: every packed/SIMD path against the dense
//! reference, the algebraic properties, and statistics with bounds derived
//! from the math.

use super::dense;
use super::packed::{packed_words, validate_words};
use super::*;
use crate::cpu::{levels_for_test, CpuLevel};
use crate::rng;

const SIZES: [usize; 14] = [1, 3, 4, 5, 31, 32, 33, 63, 64, 65, 255, 256, 257, 1000];
const DENSITIES: [f64; 4] = [1.0, 0.5, 0.1, 0.0];

fn rnd(dim: usize, seed: u64, density: f64) -> PackedHv {
    PackedHv::random(dim, seed, density).unwrap()
}

fn bipolar(dim: usize, seed: u64) -> PackedHv {
    rnd(dim, seed, 1.0)
}

#[test]
fn pack_roundtrip_and_layout() {
    for &d in SIZES.iter().chain(&[0]) {
        let t = dense::random(d, 7, 0.6).unwrap();
        let p = PackedHv::from_trits(&t).unwrap();
        assert_eq!(p.words().len(), packed_words(d));
        assert_eq!(p.to_trits(), t);
        for (i, &x) in t.iter().enumerate() {
            assert_eq!(p.get(i), x);
            let w = d.div_ceil(64);
            assert_eq!((p.words()[i / 64] >> (i % 64)) & 1, (x == 1) as u64);
            assert_eq!((p.words()[w + i / 64] >> (i % 64)) & 1, (x == -1) as u64);
        }
        assert_eq!(p.nnz(), t.iter().filter(|&&x| x != 0).count() as u64);
        assert_eq!(DenseHv::from_packed(&p).as_slice(), &t[..]);
    }
    assert!(matches!(
        PackedHv::from_trits(&[0, 1, 2]),
        Err(crate::Error::InvalidData { arg: "trits", .. })
    ));
    assert!(DenseHv::new(vec![1, -2]).is_err());
}

#[test]
fn validate_rejects_corrupt_words() {
    let d = 70; // 2 words per plane, 6 valid bits in the last
    let good = bipolar(d, 1).into_words();
    assert!(validate_words(d, &good, "v").is_ok());
    let mut both = good.clone();
    both[0] |= 1 << 5;
    both[2] |= 1 << 5;
    let e = validate_words(d, &both, "v").unwrap_err();
    assert!(e.to_string().contains("trit 5"), "{e}");
    let mut pad = vec![0u64; 4];
    pad[1] = 1 << 6;
    assert!(matches!(
        validate_words(d, &pad, "v"),
        Err(crate::Error::InvalidData { .. })
    ));
    pad[1] = 1 << 5; // the last valid bit is fine
    assert!(validate_words(d, &pad, "v").is_ok());
    assert!(matches!(
        validate_words(d, &good[..3], "v"),
        Err(crate::Error::ShapeMismatch { .. })
    ));
    assert!(PackedHv::from_words(d, both).is_err());
}

#[test]
fn random_is_counter_based_and_matches_dense() {
    for &d in &SIZES {
        for &rho in &DENSITIES {
            let p = rnd(d, 99, rho);
            assert_eq!(p.to_trits(), dense::random(d, 99, rho).unwrap());
            // A prefix of a longer vector is the shorter vector: a pure function of (seed, i).
            let long = rnd(d + 77, 99, rho);
            assert_eq!(&long.to_trits()[..d], &p.to_trits()[..]);
        }
    }
    assert_ne!(bipolar(100, 1), bipolar(100, 2));
    assert!(bipolar(1000, 3).is_bipolar());
    assert_eq!(rnd(1000, 3, 0.0).nnz(), 0);
    for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        assert!(PackedHv::random(10, 0, bad).is_err());
        assert!(dense::random(10, 0, bad).is_err());
    }
}

#[test]
fn random_density_and_sign_balance() {
    // nnz ~ Binomial(d, rho); positives | nnz ~ Binomial(nnz, 1/2). 6-sigma bounds.
    let d = 100_000;
    for &rho in &[1.0, 0.5, 0.1] {
        let t = dense::random(d, 5, rho).unwrap();
        let nnz = t.iter().filter(|&&x| x != 0).count() as f64;
        let pos = t.iter().filter(|&&x| x == 1).count() as f64;
        let sd = (d as f64 * rho * (1.0 - rho)).sqrt();
        assert!(
            (nnz - d as f64 * rho).abs() <= 6.0 * sd + 1e-9,
            "rho {rho}: nnz {nnz}"
        );
        assert!(
            (pos - nnz / 2.0).abs() <= 6.0 * (nnz / 4.0).sqrt(),
            "rho {rho}: pos {pos}"
        );
    }
}

#[test]
fn bind_unbind_match_dense_reference() {
    for &d in &SIZES {
        for &alg in &[Algebra::Map, Algebra::Modular] {
            for (i, &ra) in DENSITIES.iter().enumerate() {
                let rb = DENSITIES[(i + 1) % 4];
                let (a, b) = (rnd(d, 11, ra), rnd(d, 12, rb));
                let (ta, tb) = (a.to_trits(), b.to_trits());
                let c = ops::bind(&a, &b, alg).unwrap();
                assert_eq!(c.to_trits(), dense::bind(&ta, &tb, alg).unwrap());
                assert!(validate_words(d, c.words(), "c").is_ok());
                let u = ops::unbind(&c, &b, alg).unwrap();
                assert_eq!(
                    u.to_trits(),
                    dense::unbind(&c.to_trits(), &tb, alg).unwrap()
                );
            }
        }
    }
    // The full 3 x 3 tables.
    let a = PackedHv::from_trits(&[-1, -1, -1, 0, 0, 0, 1, 1, 1]).unwrap();
    let b = PackedHv::from_trits(&[-1, 0, 1, -1, 0, 1, -1, 0, 1]).unwrap();
    assert_eq!(
        ops::bind(&a, &b, Algebra::Map).unwrap().to_trits(),
        vec![1, 0, -1, 0, 0, 0, -1, 0, 1]
    );
    assert_eq!(
        ops::bind(&a, &b, Algebra::Modular).unwrap().to_trits(),
        vec![1, -1, 0, -1, 0, 1, 0, 1, -1]
    );
    assert_eq!(
        ops::unbind(&a, &b, Algebra::Modular).unwrap().to_trits(),
        vec![0, -1, 1, 1, 0, -1, -1, 1, 0]
    );
    assert!(ops::bind(&bipolar(10, 1), &bipolar(11, 1), Algebra::Map).is_err());
}

#[test]
fn algebraic_properties() {
    let d = 1001;
    for &rho in &[1.0, 0.4] {
        let (a, b, c) = (rnd(d, 1, rho), rnd(d, 2, rho), rnd(d, 3, rho));
        for &alg in &[Algebra::Map, Algebra::Modular] {
            let bind = |x: &PackedHv, y: &PackedHv| ops::bind(x, y, alg).unwrap();
            // commutative, associative
            assert_eq!(bind(&a, &b), bind(&b, &a));
            assert_eq!(bind(&bind(&a, &b), &c), bind(&a, &bind(&b, &c)));
        }
        // Modular: unbind inverts bind exactly for any operands; identity 0; inverse -b.
        let m = Algebra::Modular;
        assert_eq!(
            ops::unbind(&ops::bind(&a, &b, m).unwrap(), &b, m).unwrap(),
            a
        );
        assert_eq!(ops::bind(&a, &PackedHv::zeros(d), m).unwrap(), a);
        assert_eq!(
            ops::bind(&b, &ops::negate(&b), m).unwrap(),
            PackedHv::zeros(d)
        );
    }
    // MAP: self-inverse on bipolar keys for any a; identity all-ones.
    let key = bipolar(d, 4);
    for &rho in &[1.0, 0.3] {
        let a = rnd(d, 5, rho);
        let bound = ops::bind(&a, &key, Algebra::Map).unwrap();
        assert_eq!(ops::unbind(&bound, &key, Algebra::Map).unwrap(), a);
        assert_eq!(ops::bind(&bound, &key, Algebra::Map).unwrap(), a);
    }
    let ones = PackedHv::from_trits(&vec![1i8; d]).unwrap();
    assert_eq!(ops::bind(&key, &ones, Algebra::Map).unwrap(), key);
    // MAP with a sparse key recovers a exactly where the key is non-zero, 0 elsewhere.
    let sparse = rnd(d, 6, 0.3);
    let a = bipolar(d, 7);
    let back = ops::unbind(
        &ops::bind(&a, &sparse, Algebra::Map).unwrap(),
        &sparse,
        Algebra::Map,
    )
    .unwrap()
    .to_trits();
    for (i, &k) in sparse.to_trits().iter().enumerate() {
        assert_eq!(back[i], if k == 0 { 0 } else { a.get(i) });
    }
    // Modular is not self-inverse: bind(bind(a, b), b) = a - b != a for b != 0.
    let (a, b) = (bipolar(d, 8), bipolar(d, 9));
    let twice = ops::bind(
        &ops::bind(&a, &b, Algebra::Modular).unwrap(),
        &b,
        Algebra::Modular,
    )
    .unwrap();
    assert_eq!(twice, ops::unbind(&a, &b, Algebra::Modular).unwrap());
    assert_ne!(twice, a);
}

#[test]
fn map_distributes_over_bundle_modular_does_not() {
    let d = 999;
    let xs: Vec<PackedHv> = (0..6).map(|s| rnd(d, 100 + s, 0.7)).collect();
    let refs: Vec<&PackedHv> = xs.iter().collect();
    let w = [3, -1, 2, 1, 1, -2];
    for &rho in &[1.0, 0.5] {
        let b = rnd(d, 50, rho);
        for weights in [None, Some(&w[..])] {
            let lhs = ops::bind(
                &b,
                &bundle::bundle(d, &refs, weights, TieRule::Zero).unwrap(),
                Algebra::Map,
            )
            .unwrap();
            let bound: Vec<PackedHv> = xs
                .iter()
                .map(|x| ops::bind(&b, x, Algebra::Map).unwrap())
                .collect();
            let br: Vec<&PackedHv> = bound.iter().collect();
            assert_eq!(lhs, bundle::bundle(d, &br, weights, TieRule::Zero).unwrap());
        }
    }
    // Counterexample for modular: b = +1, x = (+1, +1, -1): bundle = +1, b + 1 = -1;
    // bundle(b + x) = bundle(-1, -1, 0) = -1 ... and x = (+1, -1, 0): bundle 0, b + 0 = +1;
    // b + x = (-1, 0, +1) bundles to 0.
    let one = PackedHv::from_trits(&[1]).unwrap();
    let x: Vec<PackedHv> = [1i8, -1, 0]
        .iter()
        .map(|&t| PackedHv::from_trits(&[t]).unwrap())
        .collect();
    let xr: Vec<&PackedHv> = x.iter().collect();
    let lhs = ops::bind(
        &one,
        &bundle::bundle(1, &xr, None, TieRule::Zero).unwrap(),
        Algebra::Modular,
    )
    .unwrap();
    let bx: Vec<PackedHv> = x
        .iter()
        .map(|v| ops::bind(&one, v, Algebra::Modular).unwrap())
        .collect();
    let bxr: Vec<&PackedHv> = bx.iter().collect();
    let rhs = bundle::bundle(1, &bxr, None, TieRule::Zero).unwrap();
    assert_eq!((lhs.get(0), rhs.get(0)), (1, 0));
}

#[test]
fn bundle_matches_dense_on_every_level() {
    let levels = levels_for_test("vsa bundle");
    for &d in &SIZES {
        for &n in &[0usize, 1, 2, 3, 4, 7, 8, 100] {
            let vs: Vec<PackedHv> = (0..n)
                .map(|k| rnd(d, rng::derive(d as u64, k as u64), DENSITIES[k % 3]))
                .collect();
            let refs: Vec<&PackedHv> = vs.iter().collect();
            let dv: Vec<Vec<i8>> = vs.iter().map(|v| v.to_trits()).collect();
            let dr: Vec<&[i8]> = dv.iter().map(|v| &v[..]).collect();
            let w: Vec<i32> = (0..n as i32).map(|k| (k * 7 % 5) - 2).collect();
            for tie in [TieRule::Zero, TieRule::Random(17)] {
                let want = dense::bundle(d, &dr, None, tie).unwrap();
                assert_eq!(
                    bundle::bundle(d, &refs, None, tie).unwrap().to_trits(),
                    want
                );
                let rows: Vec<&[u64]> = vs.iter().map(|v| v.words()).collect();
                let tv = match tie {
                    TieRule::Random(s) => Some(bipolar(d, s)),
                    TieRule::Zero => None,
                };
                for &l in &levels {
                    let mut out = vec![0u64; packed_words(d)];
                    bundle::bundle_bitsliced_at(
                        l,
                        d,
                        &rows,
                        tv.as_ref().map(|t| t.words()),
                        &mut out,
                    );
                    assert_eq!(
                        PackedHv::from_words(d, out).unwrap().to_trits(),
                        want,
                        "{l:?}"
                    );
                }
                let wwant = dense::bundle(d, &dr, Some(&w), tie).unwrap();
                assert_eq!(
                    bundle::bundle(d, &refs, Some(&w), tie).unwrap().to_trits(),
                    wwant
                );
                // Streaming accumulator: same result.
                let mut acc = BundleAccumulator::new(d).unwrap();
                for (v, &wk) in vs.iter().zip(&w) {
                    acc.add(v, wk).unwrap();
                }
                assert_eq!(acc.finish(tie).to_trits(), wwant);
                assert_eq!(acc.len(), n as u64);
                if tie == TieRule::Random(17) {
                    assert!(acc.finish(tie).is_bipolar());
                }
            }
        }
    }
    // Errors name the argument.
    let a = bipolar(10, 1);
    let e = bundle::bundle(11, &[&a], None, TieRule::Zero).unwrap_err();
    assert!(e.to_string().contains("vectors"));
    let e = bundle::bundle(10, &[&a], Some(&[1, 2]), TieRule::Zero).unwrap_err();
    assert!(e.to_string().contains("weights"));
    let mut acc = BundleAccumulator::new(10).unwrap();
    assert!(acc.add(&bipolar(11, 1), 1).is_err());
    acc.add(&a, 1).unwrap();
    acc.reset();
    assert!(acc.is_empty() && acc.counts().iter().all(|&c| c == 0));
}

#[test]
fn accumulate_levels_agree() {
    let levels = levels_for_test("vsa accumulate");
    for &d in &SIZES {
        let v = rnd(d, 3, 0.6);
        for &wt in &[1i64, -3, i32::MIN as i64, i32::MAX as i64] {
            let mut want = vec![5i64; d];
            bundle::accumulate_at(CpuLevel::Scalar, &mut want, v.words(), wt);
            for (i, &t) in v.to_trits().iter().enumerate() {
                assert_eq!(want[i], 5 + wt * t as i64);
            }
            for &l in &levels {
                let mut got = vec![5i64; d];
                bundle::accumulate_at(l, &mut got, v.words(), wt);
                assert_eq!(got, want, "{l:?} d {d}");
            }
        }
    }
}

#[test]
fn bundle_majority_small_cases() {
    // (+, +, -) -> +; (+, -) -> tie; weights (1, 2) on (+, -) -> -.
    let p = PackedHv::from_trits(&[1, 1, 0]).unwrap();
    let m = PackedHv::from_trits(&[-1, 1, 0]).unwrap();
    let b = bundle::bundle(3, &[&p, &p, &m], None, TieRule::Zero).unwrap();
    assert_eq!(b.to_trits(), vec![1, 1, 0]);
    let b = bundle::bundle(3, &[&p, &m], None, TieRule::Zero).unwrap();
    assert_eq!(b.to_trits(), vec![0, 1, 0]);
    let b = bundle::bundle(3, &[&p, &m], Some(&[1, 2]), TieRule::Zero).unwrap();
    assert_eq!(b.to_trits(), vec![-1, 1, 0]);
    let tv = bipolar(3, 5).to_trits();
    let b = bundle::bundle(3, &[&p, &m], None, TieRule::Random(5)).unwrap();
    assert_eq!(b.to_trits(), vec![tv[0], 1, tv[2]]);
}

#[test]
fn permute_matches_dense_and_inverts() {
    for &d in &SIZES {
        let a = rnd(d, 21, 0.7);
        let t = a.to_trits();
        for &k in &[
            0i64,
            1,
            -1,
            5,
            63,
            64,
            65,
            d as i64 - 1,
            d as i64,
            3 * d as i64 + 2,
            -(d as i64) - 7,
        ] {
            let p = ops::permute(&a, k);
            assert_eq!(p.to_trits(), dense::permute(&t, k), "d {d} k {k}");
            assert!(validate_words(d, p.words(), "p").is_ok());
            assert_eq!(ops::inverse_permute(&p, k), a);
            assert_eq!(ops::permute(&p, -k), a);
        }
        // Permute distributes over bind (both algebras) and composes additively.
        let b = rnd(d, 22, 1.0);
        for alg in [Algebra::Map, Algebra::Modular] {
            assert_eq!(
                ops::permute(&ops::bind(&a, &b, alg).unwrap(), 3),
                ops::bind(&ops::permute(&a, 3), &ops::permute(&b, 3), alg).unwrap()
            );
        }
        assert_eq!(ops::permute(&ops::permute(&a, 2), 5), ops::permute(&a, 7));
    }
    let t: Vec<i8> = vec![1, 0, -1, 0, 0];
    assert_eq!(dense::permute(&t, 1), vec![0, 1, 0, -1, 0]);
}

/// Every shift of every dim up to 300 (run 1 / seam / run 2 / partial-word
/// cases of the word-level rotation), plus random shifts at larger dims.
#[test]
fn permute_every_shift_matches_dense() {
    for d in 1..=300usize {
        let a = rnd(d, 23 + d as u64, 0.8);
        let t = a.to_trits();
        for k in 0..d as i64 {
            let p = ops::permute(&a, k);
            assert_eq!(p.to_trits(), dense::permute(&t, k), "d {d} k {k}");
            assert!(validate_words(d, p.words(), "p").is_ok(), "d {d} k {k}");
        }
    }
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for &d in &[1000usize, 4096, 9999, 10_000, 10_048, 65_537] {
        let a = rnd(d, 29, 0.5);
        let t = a.to_trits();
        for _ in 0..20 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let k = (rng >> 33) as i64 % (2 * d as i64) - d as i64;
            assert_eq!(
                ops::permute(&a, k).to_trits(),
                dense::permute(&t, k),
                "d {d} k {k}"
            );
        }
    }
}

#[test]
fn similarity_matches_dense_on_every_level() {
    let levels = levels_for_test("vsa similarity");
    for &d in SIZES.iter().chain(&[2000, 8191, 10_000]) {
        for (i, &ra) in DENSITIES.iter().enumerate() {
            let rb = DENSITIES[(i + 2) % 4];
            let (a, b) = (rnd(d, 31, ra), rnd(d, 32, rb));
            let (ta, tb) = (a.to_trits(), b.to_trits());
            for m in [Metric::Dot, Metric::Cosine, Metric::Hamming] {
                let want = dense::similarity(&ta, &tb, m).unwrap();
                assert_eq!(ops::similarity(&a, &b, m).unwrap(), want);
                for &l in &levels {
                    assert_eq!(ops::similarity_words_at(l, a.words(), b.words(), m), want);
                }
            }
            assert_eq!(ops::dot(&a, &b).unwrap(), dense::dot(&ta, &tb).unwrap());
            // Bipolar-row kernel against the general one.
            let bb = bipolar(d, 33);
            let w = d.div_ceil(64);
            for &l in &levels {
                let (ap, am) = a.words().split_at(w);
                let (bp, bm) = bb.words().split_at(w);
                assert_eq!(
                    simd::counts_bipolar_at(l, ap, am, bp),
                    simd::counts_at(CpuLevel::Scalar, ap, am, bp, bm),
                    "{l:?} d {d}"
                );
            }
        }
    }
    let a = bipolar(100, 1);
    assert_eq!(ops::cosine(&a, &a).unwrap(), 1.0);
    assert_eq!(ops::cosine(&a, &ops::negate(&a)).unwrap(), -1.0);
    assert_eq!(ops::cosine(&a, &PackedHv::zeros(100)).unwrap(), 0.0);
    assert_eq!(ops::hamming(&a, &ops::negate(&a)).unwrap(), 100);
}

#[test]
fn similarity_many_matches_pairwise() {
    let d = 300;
    let q = rnd(d, 1, 0.8);
    let rows: Vec<PackedHv> = (0..700)
        .map(|i| rnd(d, 1000 + i, [1.0, 0.3][i as usize % 2]))
        .collect();
    let flat: Vec<u64> = rows.iter().flat_map(|r| r.words().to_vec()).collect();
    for m in [Metric::Dot, Metric::Cosine, Metric::Hamming] {
        let mut out = vec![0.0; rows.len()];
        ops::similarity_many(&q, &flat, m, &mut out).unwrap();
        for (r, &s) in rows.iter().zip(&out) {
            assert_eq!(
                s,
                dense::similarity(&q.to_trits(), &r.to_trits(), m).unwrap()
            );
        }
    }
    let mut out = vec![0.0; 700];
    assert!(ops::similarity_many(&q, &flat[..flat.len() - 1], Metric::Dot, &mut out).is_err());
    assert!(ops::similarity_many(&q, &flat, Metric::Dot, &mut out[..699]).is_err());
    let mut bad = flat.clone();
    bad[3 * packed_words(d) + 4] = !0; // row 3: plus and minus both set somewhere
    let e = ops::similarity_many(&q, &bad, Metric::Dot, &mut out).unwrap_err();
    assert!(e.to_string().contains("row 3"), "{e}");
}

/// Brute force: score every row with the dense reference, sort by (nearer, index).
fn brute_topk(rows: &[PackedHv], q: &PackedHv, k: usize, m: Metric) -> Vec<(usize, f64)> {
    let mut s: Vec<(usize, f64)> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                i,
                dense::similarity(&q.to_trits(), &r.to_trits(), m).unwrap(),
            )
        })
        .collect();
    s.sort_by(|a, b| {
        let o = if m.larger_is_nearer() {
            b.1.total_cmp(&a.1)
        } else {
            a.1.total_cmp(&b.1)
        };
        o.then(a.0.cmp(&b.0))
    });
    s.truncate(k);
    s
}

#[test]
fn item_memory_topk_matches_brute_force_any_level_any_threads() {
    // 9 words a plane: one full 8-word SIMD step plus a masked tail; integer
    // scores in a narrow range give many exact ties, so the tie order is exercised.
    let d = 520;
    let mut rows: Vec<PackedHv> = (0..2500u64)
        .map(|i| rnd(d, 5000 + i, [1.0, 0.5, 0.05][i as usize % 3]))
        .collect();
    // Exact duplicates at different indices.
    rows[2100] = rows[7].clone();
    rows[1500] = rows[7].clone();
    let levels = levels_for_test("vsa item memory query");
    let mut mem = ItemMemory::new(d).unwrap();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(mem.add(r, 10_000 + i as u64).unwrap(), i);
    }
    assert_eq!(mem.len(), rows.len());
    assert_eq!(mem.get(1500).unwrap(), rows[7]);
    assert_eq!(mem.label(3).unwrap(), 10_003);
    for (qi, q) in [
        rows[7].clone(),
        rnd(d, 77, 1.0),
        rnd(d, 78, 0.2),
        PackedHv::zeros(d),
    ]
    .iter()
    .enumerate()
    {
        for m in [Metric::Dot, Metric::Cosine, Metric::Hamming] {
            for &k in &[1usize, 10, 100, 5000] {
                let want = brute_topk(&rows, q, k, m);
                for &l in &levels {
                    for threads in [1, 3] {
                        crate::parallel::set_num_threads(threads);
                        let got = mem.query_at(l, q, k, m).unwrap();
                        let got: Vec<(usize, f64)> =
                            got.iter().map(|h| (h.index, h.score)).collect();
                        assert_eq!(got, want, "query {qi} {m:?} k {k} {l:?} threads {threads}");
                    }
                }
            }
            let sims = mem.similarities(q, m).unwrap();
            for (i, r) in rows.iter().enumerate().step_by(97) {
                assert_eq!(
                    sims[i],
                    dense::similarity(&q.to_trits(), &r.to_trits(), m).unwrap()
                );
            }
        }
    }
    crate::parallel::set_num_threads(0);
    let hits = mem.query(&rows[7], 3, Metric::Cosine).unwrap();
    assert_eq!(
        hits.iter().map(|h| h.index).collect::<Vec<_>>(),
        vec![7, 1500, 2100]
    );
    assert_eq!(hits[0].label, 10_007);
    assert!(mem.query(&rows[7], 0, Metric::Dot).unwrap().is_empty());
    assert!(mem.query(&bipolar(521, 1), 1, Metric::Dot).is_err());
    assert!(mem.add(&bipolar(521, 1), 0).is_err());
    assert!(mem.get(2500).is_err());
    // dim 0 is valid, as for every other VSA call (empty vectors score as all-zero ones)
    let mut empty = ItemMemory::new(0).unwrap();
    let z = PackedHv::from_trits(&[]).unwrap();
    assert_eq!(empty.add(&z, 5).unwrap(), 0);
    let hits = empty.query(&z, 1, Metric::Cosine).unwrap();
    assert_eq!((hits[0].label, hits[0].score), (5, 0.0));
}

#[test]
fn quasi_orthogonality_of_random_vectors() {
    // cos of independent random vectors: mean 0, variance 1/d (bipolar: exactly
    // (1/d) Σ of d independent ±1; sparse: ≈ 1/d). |cos| < 5/sqrt(d) for all 300
    // pairs, and the mean of d cos² is 1 within 6 sd of a chi-square(1) mean
    // (sd sqrt(2/300)).
    let d = 10_000usize;
    for &rho in &[1.0, 0.3] {
        let n = 300u64;
        let mut sum_sq = 0.0;
        for i in 0..n {
            let a = rnd(d, rng::derive(1, i), rho);
            let b = rnd(d, rng::derive(2, i), rho);
            let c = ops::cosine(&a, &b).unwrap();
            assert!(
                c.abs() < 5.0 / (d as f64).sqrt(),
                "rho {rho} pair {i}: cos {c}"
            );
            sum_sq += c * c * d as f64;
        }
        let mean = sum_sq / n as f64;
        assert!(
            (mean - 1.0).abs() < 6.0 * (2.0 / n as f64).sqrt(),
            "rho {rho}: mean d cos² {mean}"
        );
    }
}

/// ln C(n, k).
fn ln_choose(n: u64, k: u64) -> f64 {
    (1..=k)
        .map(|i| ((n - k + i) as f64).ln() - (i as f64).ln())
        .sum()
}

/// P(Binomial(n, p) >= t), exactly (summed in f64).
fn binom_tail(n: u64, p: f64, t: u64) -> f64 {
    (t..=n)
        .map(|k| (ln_choose(n, k) + k as f64 * p.ln() + (n - k) as f64 * (1.0 - p).ln()).exp())
        .sum()
}

#[test]
fn bundle_capacity_follows_the_binomial_curve() {
    // Bundle n (odd) random bipolar vectors at dim d. Per trit, a member agrees
    // with the bundle with probability (1 + mu)/2, mu = C(n-1, (n-1)/2) / 2^(n-1)
    // (it decides the sign exactly when the other n-1 tie); a non-member with
    // probability 1/2; trits are independent. So the agreement count A is exactly
    // Binomial(d, (1+mu)/2) for a member and Binomial(d, 1/2) for a non-member.
    // Classify "member" iff A >= a0 (the midpoint) and compare the measured miss
    // and false-alarm rates with those exact tails (6 sd of the rate estimate).
    let d = 1000u64;
    let trials = 150u64;
    for &n in &[15u64, 31, 63] {
        let mu = (ln_choose(n - 1, (n - 1) / 2) - (n - 1) as f64 * 2f64.ln()).exp();
        let p_member = (1.0 + mu) / 2.0;
        let a0 = (d as f64 * (0.5 + mu / 4.0)).round() as u64;
        let p_miss = 1.0 - binom_tail(d, p_member, a0);
        let p_false = binom_tail(d, 0.5, a0);
        let (mut miss, mut false_alarm) = (0u64, 0u64);
        for t in 0..trials {
            let items: Vec<PackedHv> = (0..n)
                .map(|k| bipolar(d as usize, rng::derive(rng::derive(n, t), k)))
                .collect();
            let refs: Vec<&PackedHv> = items.iter().collect();
            let b = bundle::bundle(d as usize, &refs, None, TieRule::Zero).unwrap();
            assert!(b.is_bipolar());
            for (k, it) in items.iter().enumerate() {
                let agree = (ops::dot(&b, it).unwrap() + d as i64) as u64 / 2;
                miss += (agree < a0) as u64;
                let other = bipolar(d as usize, rng::derive(rng::derive(n + 1000, t), k as u64));
                let agree = (ops::dot(&b, &other).unwrap() + d as i64) as u64 / 2;
                false_alarm += (agree >= a0) as u64;
            }
        }
        let total = (trials * n) as f64;
        for (what, count, p) in [
            ("miss", miss, p_miss),
            ("false alarm", false_alarm, p_false),
        ] {
            let rate = count as f64 / total;
            let sd = (p * (1.0 - p) / total).sqrt();
            assert!(
                (rate - p).abs() <= 6.0 * sd + 1.0 / total,
                "n {n}: {what} rate {rate:.5}, theory {p:.5} (sd {sd:.5})"
            );
        }
    }
}

#[test]
fn dollar_of_mexico() {
    // Kanerva's analogy: records USA = [country: usa, capital: wdc, currency: dollar],
    // MEX = [country: mex, capital: mxc, currency: peso]; F = USA * MEX maps
    // fillers across records, so dollar * F ≈ peso.
    let ops = VsaOps::new(VsaConfig::default()).unwrap();
    let names = [
        "country", "capital", "currency", "usa", "wdc", "dollar", "mex", "mxc", "peso",
    ];
    let hv: Vec<PackedHv> = (0..names.len() as u64)
        .map(|i| ops.random(1000 + i).unwrap())
        .collect();
    let record = |r: [usize; 3]| {
        let pairs: Vec<PackedHv> = (0..3)
            .map(|j| ops.bind(&hv[j], &hv[r[j]]).unwrap())
            .collect();
        ops.bundle(&pairs.iter().collect::<Vec<_>>()).unwrap()
    };
    let usa = record([3, 4, 5]);
    let mex = record([6, 7, 8]);
    let f = ops.bind(&usa, &mex).unwrap();
    let mut mem = ops.item_memory().unwrap();
    for (i, v) in hv.iter().enumerate() {
        mem.add(v, i as u64).unwrap();
    }
    let ask = |v: &PackedHv| names[mem.query(v, 1, Metric::Cosine).unwrap()[0].label as usize];
    assert_eq!(ask(&ops.bind(&hv[5], &f).unwrap()), "peso"); // the dollar of Mexico
    assert_eq!(ask(&ops.bind(&hv[4], &f).unwrap()), "mxc"); // the Washington of Mexico
    assert_eq!(ask(&ops.unbind(&mex, &hv[1]).unwrap()), "mxc"); // role-filler: capital of MEX
    assert_eq!(ask(&ops.unbind(&usa, &hv[2]).unwrap()), "dollar");
    // Sequence by permutation: s = p^2(a) + p(b) + c; unpermuting recovers a.
    let s = ops
        .bundle(&[&ops.permute(&hv[3], 2), &ops.permute(&hv[4], 1), &hv[5]])
        .unwrap();
    assert_eq!(ask(&ops.inverse_permute(&s, 2)), "usa");
}

#[test]
fn item_memory_scan_every_level_equals_scalar() {
    // Mixed bipolar and ternary rows (the two one-row kernels, prefetching
    // past the last row), at plane lengths below the popcnt cutoff, with
    // every tail length, and past the 31-vector flush of the byte counters.
    let levels = levels_for_test("vsa item memory scan");
    for &d in &[
        1usize, 63, 64, 65, 255, 256, 257, 449, 500, 1000, 8191, 10_000,
    ] {
        let n = 23;
        let rows: Vec<PackedHv> = (0..n as u64)
            .map(|i| {
                let h = rng::hash2(d as u64, i) % 10;
                rnd(
                    d,
                    900 + i,
                    if h < 7 {
                        1.0
                    } else {
                        [0.5, 0.1, 0.0][h as usize % 3]
                    },
                )
            })
            .collect();
        let mut mem = ItemMemory::new(d).unwrap();
        for (i, r) in rows.iter().enumerate() {
            mem.add(r, i as u64).unwrap();
        }
        let w = d.div_ceil(64);
        let plus: Vec<u64> = rows.iter().flat_map(|r| r.plus().to_vec()).collect();
        let minus: Vec<u64> = rows.iter().flat_map(|r| r.minus().to_vec()).collect();
        let bip: Vec<bool> = rows.iter().map(|r| r.is_bipolar()).collect();
        let st = simd::Rows {
            plus: &plus,
            minus: &minus,
            bipolar: &bip,
            w,
        };
        for q in [rnd(d, 5, 1.0), rnd(d, 6, 0.5), PackedHv::zeros(d)] {
            let mut want = vec![(0, 0); n];
            simd::scan_rows_at(
                CpuLevel::Scalar,
                q.plus(),
                q.minus(),
                st,
                0..n,
                |i, a, dd| want[i] = (a, dd),
            );
            for (i, r) in rows.iter().enumerate() {
                let (ta, tb) = (q.to_trits(), r.to_trits());
                let agree = ta
                    .iter()
                    .zip(&tb)
                    .filter(|(x, y)| **x != 0 && x == y)
                    .count();
                let dis = ta
                    .iter()
                    .zip(&tb)
                    .filter(|(x, y)| **x != 0 && **x == -**y)
                    .count();
                assert_eq!(want[i], (agree as u64, dis as u64), "d {d} row {i}");
            }
            for &l in &levels {
                for start in [0usize, 1, 3] {
                    let mut got = vec![(0, 0); n];
                    simd::scan_rows_at(l, q.plus(), q.minus(), st, start..n, |i, a, dd| {
                        got[i] = (a, dd)
                    });
                    assert_eq!(&got[start..], &want[start..], "d {d} {l} start {start}");
                }
            }
        }
    }
}
