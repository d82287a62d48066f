//! Tests of the phase trainer: the WLS coefficients against a direct solve,
//! the fixed schedule against its documented rules, the guarded schedule on
//! noisy and smooth synthetic training tasks, predictor selection, the
//! measured errors against f64 definitions, and determinism across CPU
//! levels and thread counts.

use super::*;
use crate::rng::{hash2, uniform_f32};

/// Independent WLS: normal equations in absolute time, solved by Cramer
/// on the un-centred sums, evaluated at the extrapolation point.
fn direct(times: &[u64], vals: &[f64], decay: f64, target: u64, horizon: u64) -> f64 {
    let newest = *times.last().unwrap();
    let (mut a, mut b, mut c, mut y0, mut y1) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (&t, &g) in times.iter().zip(vals) {
        let w = decay.powi((newest - t) as i32);
        let t = t as f64;
        a += w;
        b += w * t;
        c += w * t * t;
        y0 += w * g;
        y1 += w * t * g;
    }
    let det = a * c - b * b;
    let icept = (c * y0 - b * y1) / det;
    let slope = (a * y1 - b * y0) / det;
    let at = newest + (target - newest).min(horizon);
    icept + slope * at as f64
}

#[test]
fn coefficients_equal_a_direct_solve() {
    for case in 0..200u64 {
        let n = 2 + (hash2(1, case) % 7) as usize;
        let mut t = hash2(2, case) % 50;
        let mut times = vec![];
        for i in 0..n {
            t += 1 + hash2(3, case * 16 + i as u64) % 4;
            times.push(t);
        }
        let vals: Vec<f64> = (0..n)
            .map(|i| uniform_f32(4, case * 16 + i as u64) as f64 * 2.0 - 1.0)
            .collect();
        let decay = 0.5 + 0.5 * uniform_f32(5, case) as f64;
        let target = t + hash2(6, case) % 5;
        let horizon = hash2(7, case) % 4;
        let c = wls_coefficients(&times, target, decay, horizon).unwrap();
        let got: f64 = c.iter().zip(&vals).map(|(c, v)| c * v).sum();
        let want = direct(&times, &vals, decay, target, horizon);
        assert!(
            (got - want).abs() < 1e-9 * (1.0 + want.abs()),
            "case {case}: {got} vs {want}"
        );
    }
    // One record: the value itself; a constant history predicts the constant.
    assert_eq!(wls_coefficients(&[7], 9, 0.9, 3).unwrap(), vec![1.0]);
    let c = wls_coefficients(&[1, 2, 4], 10, 0.8, 100).unwrap();
    assert!((c.iter().sum::<f64>() - 1.0).abs() < 1e-12);
}

fn cfg(warmup: usize, full: usize, predict: usize, ce: usize) -> PhaseConfig {
    PhaseConfig {
        warmup_steps: warmup,
        full_steps: full,
        predict_steps: predict,
        correct_every: ce,
        ..PhaseConfig::seed()
    }
}

/// Runs `steps` steps feeding `grad(step, id)` and `loss(step)`; returns the phases.
fn drive(
    tr: &mut PhaseTrainer,
    steps: usize,
    mut grad: impl FnMut(u64, usize, usize) -> f32,
    loss: impl Fn(u64) -> f32,
    mut on_predict: impl FnMut(u64, usize, &[f32]),
) -> Vec<Phase> {
    let mut phases = vec![];
    for _ in 0..steps {
        let info = tr.begin_step().unwrap();
        for id in 0..tr.num_parameters() {
            let n = tr.parameter_numel(id).unwrap();
            if info.needs_backward {
                let g: Vec<f32> = (0..n).map(|e| grad(info.step, id, e)).collect();
                tr.record_gradient(id, &g).unwrap();
            } else {
                let mut out = vec![0f32; n];
                tr.predict_gradient(id, &mut out).unwrap();
                on_predict(info.step, id, &out);
            }
        }
        phases.push(tr.end_step(loss(info.step), None).unwrap());
    }
    phases
}

#[test]
fn linear_sequences_are_predicted_exactly() {
    for bf16 in [false, true] {
        let mut c = cfg(8, 2, 12, 0);
        c.prediction_horizon = 1000;
        c.history_bf16 = bf16;
        let mut tr = PhaseTrainer::new(c).unwrap();
        tr.add_parameter(&[3, 5]).unwrap();
        tr.add_parameter(&[7]).unwrap();
        tr.add_parameter(&[]).unwrap();
        // bf16-exact values: small integers and slopes keep every g exact in bf16.
        let g = |t: u64, id: usize, e: usize| -> f32 {
            let a = (e as f32 - 3.0) * (id as f32 + 1.0);
            let s = [0.25f32, -0.5, 1.0][id] * ((e % 3) as f32 - 1.0);
            a + s * t as f32
        };
        let mut checked = 0;
        let times = std::cell::RefCell::new(Vec::<u64>::new());
        let phases = drive(
            &mut tr,
            60,
            |t, id, e| {
                let mut v = times.borrow_mut();
                if v.last() != Some(&t) {
                    v.push(t);
                }
                g(t, id, e)
            },
            |_| 1.0,
            |t, id, out| {
                // f32 arithmetic: k products and sums, each rounded (and the
                // coefficients rounded to f32): |err| <= (k + 2) 2^-24 Σ|c_i g_i|.
                let v = times.borrow();
                let hist = &v[v.len().saturating_sub(8)..];
                let c = wls_coefficients(hist, t, 0.95, 1000).unwrap();
                for (e, &got) in out.iter().enumerate() {
                    let want = g(t, id, e);
                    let mag: f64 = c
                        .iter()
                        .zip(hist)
                        .map(|(c, &s)| (c * g(s, id, e) as f64).abs())
                        .sum();
                    let bound = (hist.len() as f64 + 2.0) * 2f64.powi(-24) * mag;
                    assert!(
                        ((got - want) as f64).abs() <= bound + 1e-30,
                        "t {t} id {id} e {e}: {got} vs {want} (bound {bound})"
                    );
                }
                checked += 1;
            },
        );
        assert!(phases.contains(&Phase::Predict));
        assert!(checked > 20);
        assert!(tr.stats().mean_prediction_error < 1e-6);
    }
}

/// The schedule written out independently from the documented rules.
fn expected_schedule(c: &PhaseConfig, steps: usize) -> Vec<Phase> {
    let mut v: Vec<Phase> = vec![Phase::Warmup; c.warmup_steps.min(steps)];
    while v.len() < steps {
        v.extend(std::iter::repeat_n(Phase::Full, c.full_steps));
        for k in 1..=c.predict_steps {
            v.push(if c.correct_every > 0 && k % c.correct_every == 0 {
                Phase::Correct
            } else {
                Phase::Predict
            });
        }
    }
    v.truncate(steps);
    v
}

#[test]
fn schedule_follows_the_documented_rules() {
    for c in [
        PhaseConfig::seed(),
        PhaseConfig::conservative(),
        cfg(0, 1, 3, 0),
        cfg(3, 0, 4, 2),
        cfg(2, 3, 1, 1),
    ] {
        let mut tr = PhaseTrainer::new(c).unwrap();
        tr.add_parameter(&[4]).unwrap();
        let got = drive(
            &mut tr,
            137,
            |t, _, e| (t + e as u64) as f32,
            |_| 1.0,
            |_, _, _| {},
        );
        assert_eq!(got, expected_schedule(&c, 137), "{c:?}");
        let s = tr.stats();
        let count = |p| got.iter().filter(|&&x| x == p).count() as u64;
        assert_eq!(s.predict_steps, count(Phase::Predict));
        assert_eq!(s.correct_steps, count(Phase::Correct));
        assert_eq!(s.backward_passes, 137 - count(Phase::Predict));
        assert_eq!(s.backoffs, 0);
    }
    // Seed: 10 warmup, then per 25-step cycle 5 full + 16 predict + 4 correct.
    let mut tr = PhaseTrainer::new(PhaseConfig::seed()).unwrap();
    tr.add_parameter(&[1]).unwrap();
    drive(&mut tr, 110, |t, _, _| t as f32, |_| 1.0, |_, _, _| {});
    assert_eq!(tr.stats().predict_steps, 64);
    // No prediction at all with predict_steps = 0.
    let mut tr = PhaseTrainer::new(cfg(2, 3, 0, 5)).unwrap();
    tr.add_parameter(&[1]).unwrap();
    let got = drive(&mut tr, 20, |t, _, _| t as f32, |_| 1.0, |_, _, _| {});
    assert!(got[2..].iter().all(|&p| p == Phase::Full));
}

#[test]
fn adaptive_backoff_halves_then_regrows() {
    let c = cfg(2, 2, 8, 0);
    let mut tr = PhaseTrainer::new(c).unwrap();
    tr.add_parameter(&[2]).unwrap();
    // Loss 1 on backward steps; during segments 1.5 (a 50% rise) until step 40, then 1.
    let phases = std::cell::RefCell::new(vec![]);
    for _ in 0..80 {
        let info = tr.begin_step().unwrap();
        if info.needs_backward {
            tr.record_gradient(0, &[1.0, 2.0]).unwrap();
        }
        let loss = if info.phase == Phase::Predict && info.step < 40 {
            1.5
        } else {
            1.0
        };
        tr.end_step(loss, None).unwrap();
        phases
            .borrow_mut()
            .push((info.phase, tr.stats().current_predict_steps));
    }
    let p = phases.into_inner();
    // Warmup 2, Full 2, Predict -> rise -> P = 4, Full 2, Predict -> P = 2, ...
    let seq: Vec<Phase> = p.iter().map(|x| x.0).collect();
    assert_eq!(
        &seq[..6],
        &[
            Phase::Warmup,
            Phase::Warmup,
            Phase::Full,
            Phase::Full,
            Phase::Predict,
            Phase::Full
        ]
    );
    assert_eq!(p[4].1, 4);
    assert_eq!(&seq[6..9], &[Phase::Full, Phase::Predict, Phase::Full]);
    assert_eq!(p[7].1, 2);
    assert_eq!(p[10].1, 1);
    // Never below 1; after step 40 segments complete and P doubles back to 8.
    assert!(p.iter().all(|x| x.1 >= 1));
    assert_eq!(p.last().unwrap().1, 8);
    let tail: Vec<Phase> = seq[60..].to_vec();
    assert!(tail
        .windows(8)
        .any(|w| w.iter().all(|&x| x == Phase::Predict)));
    // Non-adaptive: no back-off at all.
    let mut c2 = c;
    c2.adaptive_phases = false;
    let mut tr = PhaseTrainer::new(c2).unwrap();
    tr.add_parameter(&[1]).unwrap();
    drive(
        &mut tr,
        40,
        |_, _, _| 1.0,
        |t| t as f32 * 10.0,
        |_, _, _| {},
    );
    assert_eq!(tr.stats().backoffs, 0);
    // A NaN loss in a segment backs off too.
    let mut tr = PhaseTrainer::new(c).unwrap();
    tr.add_parameter(&[1]).unwrap();
    drive(
        &mut tr,
        6,
        |_, _, _| 1.0,
        |t| if t == 4 { f32::NAN } else { 1.0 },
        |_, _, _| {},
    );
    assert_eq!(tr.stats().backoffs, 1);
}

#[test]
fn bf16_history_error_is_bounded() {
    let mk = |bf16: bool| {
        let mut c = cfg(8, 0, 50, 0);
        c.history_bf16 = bf16;
        c.adaptive_phases = false;
        let mut tr = PhaseTrainer::new(c).unwrap();
        tr.add_parameter(&[300]).unwrap();
        tr
    };
    let g = |t: u64, _: usize, e: usize| uniform_f32(t, e as u64) * 4.0 - 2.0;
    let (mut a, mut b) = (mk(false), mk(true));
    assert_eq!(a.memory_bytes(), 300 * 8 * 4);
    assert_eq!(b.memory_bytes(), 300 * 8 * 2);
    let mut pa = vec![];
    drive(&mut a, 12, g, |_| 1.0, |_, _, o| pa.push(o.to_vec()));
    let mut pb = vec![];
    drive(&mut b, 12, g, |_| 1.0, |_, _, o| pb.push(o.to_vec()));
    let c = wls_coefficients(&(0..8).collect::<Vec<_>>(), 8, 0.95, 1).unwrap();
    let bound: f64 = c.iter().map(|c| c.abs()).sum::<f64>() * 2.0 * 2f64.powi(-9);
    for (x, y) in pa.iter().flatten().zip(pb.iter().flatten()) {
        assert!(
            ((x - y) as f64).abs() <= bound + 1e-6,
            "{x} {y} bound {bound}"
        );
    }
    assert_ne!(pa, pb);
}

#[test]
fn identical_for_any_thread_count() {
    let run = |threads: usize| {
        crate::parallel::set_num_threads(threads);
        let mut c = cfg(4, 1, 6, 3);
        c.predictors = 7;
        c.history_window = 5;
        let mut tr = PhaseTrainer::new(c).unwrap();
        tr.add_parameter(&[3 * BLOCK + 5]).unwrap();
        tr.add_parameter(&[17]).unwrap();
        let mut preds = vec![];
        drive(
            &mut tr,
            30,
            |t, id, e| uniform_f32(t * 7 + id as u64, e as u64) - 0.5 + t as f32 * 0.01,
            |t| 1.0 / (1.0 + t as f32),
            |_, _, o| preds.push(o.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
        );
        let s = tr.stats();
        (
            preds,
            s.mean_prediction_error.to_bits(),
            s.mean_last_gradient_error.to_bits(),
        )
    };
    let one = run(1);
    let three = run(3);
    crate::parallel::set_num_threads(0);
    assert!(!one.0.is_empty());
    assert_eq!(one, three);
}

#[test]
fn call_order_and_argument_errors() {
    let mut tr = PhaseTrainer::new(cfg(1, 0, 2, 0)).unwrap();
    assert!(matches!(tr.begin_step(), Err(Error::InvalidState(_))));
    assert!(matches!(
        tr.add_parameter(&[2, 0]),
        Err(Error::InvalidArgument { arg: "shape", .. })
    ));
    assert!(matches!(
        tr.add_parameter(&[usize::MAX, 2]),
        Err(Error::SizeOverflow { arg: "shape", .. })
    ));
    tr.add_parameter(&[2]).unwrap();
    tr.add_parameter(&[1]).unwrap();
    assert!(matches!(
        tr.end_step(1.0, None),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        tr.record_gradient(0, &[1.0, 2.0]),
        Err(Error::InvalidState(_))
    ));
    let info = tr.begin_step().unwrap();
    assert_eq!(info.phase, Phase::Warmup);
    assert!(matches!(tr.begin_step(), Err(Error::InvalidState(_))));
    assert!(matches!(
        tr.add_parameter(&[1]),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        tr.predict_gradient(0, &mut [0.0; 2]),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        tr.record_gradient(2, &[1.0]),
        Err(Error::InvalidArgument { arg: "param", .. })
    ));
    assert!(matches!(
        tr.record_gradient(0, &[1.0]),
        Err(Error::ShapeMismatch { arg: "grad", .. })
    ));
    assert!(matches!(
        tr.record_gradient(0, &[1.0, f32::NAN]),
        Err(Error::NonFinite {
            arg: "grad",
            index: 1
        })
    ));
    tr.record_gradient(0, &[1.0, 2.0]).unwrap();
    assert!(matches!(
        tr.record_gradient(0, &[1.0, 2.0]),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        tr.end_step(1.0, None),
        Err(Error::InvalidState(_))
    )); // param 1 missing
    tr.record_gradient(1, &[3.0]).unwrap();
    assert!(matches!(
        tr.end_step(1.0, Some(-1.0)),
        Err(Error::InvalidArgument { arg: "seconds", .. })
    ));
    tr.end_step(1.0, Some(0.5)).unwrap();
    let info = tr.begin_step().unwrap();
    assert_eq!(info.phase, Phase::Predict);
    assert!(matches!(
        tr.record_gradient(0, &[1.0, 2.0]),
        Err(Error::InvalidState(_))
    ));
    assert!(matches!(
        tr.predict_gradient(0, &mut [0.0; 3]),
        Err(Error::ShapeMismatch { arg: "out", .. })
    ));
    let mut out = [0f32; 2];
    tr.predict_gradient(0, &mut out).unwrap();
    assert_eq!(out, [1.0, 2.0]);
    tr.end_step(1.0, Some(0.1)).unwrap();
    let s = tr.stats();
    assert_eq!((s.timed_backward_steps, s.timed_predict_steps), (1, 1));
    assert!((s.measured_speedup() - 2.0 * 0.5 / 0.6).abs() < 1e-12);
    for (c, arg) in [
        (
            PhaseConfig {
                history_window: 0,
                ..Default::default()
            },
            "history_window",
        ),
        (
            PhaseConfig {
                history_decay: 0.0,
                ..Default::default()
            },
            "history_decay",
        ),
        (
            PhaseConfig {
                loss_increase_threshold: f32::NAN,
                ..Default::default()
            },
            "loss_increase_threshold",
        ),
        (
            PhaseConfig {
                ema_decay: 1.5,
                ..Default::default()
            },
            "ema_decay",
        ),
        (
            PhaseConfig {
                max_error: f32::INFINITY,
                ..Default::default()
            },
            "max_error",
        ),
        (
            PhaseConfig {
                predictors: 8,
                ..Default::default()
            },
            "predictors",
        ),
        (
            PhaseConfig {
                predictors: 0,
                ..Default::default()
            },
            "predictors",
        ),
        (
            PhaseConfig {
                min_checks: 0,
                ..Default::default()
            },
            "min_checks",
        ),
    ] {
        match PhaseTrainer::new(c).unwrap_err() {
            Error::InvalidArgument { arg: a, .. } => assert_eq!(a, arg),
            e => panic!("{e:?}"),
        }
    }
}

// ----------------------------------------------------------------------------
// The guarded schedule on synthetic training tasks
// ----------------------------------------------------------------------------

/// A standard normal from (seed, index) (Box-Muller over two hashed uniforms).
fn normal(seed: u64, i: u64) -> f64 {
    let u1 = (uniform_f32(seed, 2 * i) as f64).max(1e-12);
    let u2 = uniform_f32(seed, 2 * i + 1) as f64;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Momentum SGD on f(θ) = ½ Σ a_j (θ_j − θ*_j)² (two parameters, 48 and 16
/// values, curvatures in [0.05, 1]) with gradient noise of standard deviation
/// `sigma` per element. With `trainer`, predicted gradients replace the real
/// ones on Predict steps. Returns (mean loss over the last 50 steps, phases,
/// the trainer's stats).
fn quadratic_task(
    seed: u64,
    steps: usize,
    sigma: f64,
    start: f64,
    (lr, beta): (f64, f64),
    trainer: Option<PhaseConfig>,
) -> (f64, Vec<Phase>, Option<PhaseStats>) {
    let sizes = [48usize, 16];
    let n: usize = sizes.iter().sum();
    let a: Vec<f64> = (0..n)
        .map(|j| 0.05 + 0.95 * uniform_f32(seed ^ 0xa5, j as u64) as f64)
        .collect();
    let opt: Vec<f64> = (0..n).map(|j| normal(seed ^ 0x5a, j as u64)).collect();
    let mut th: Vec<f64> = (0..n)
        .map(|j| opt[j] + start * normal(seed ^ 0x77, j as u64))
        .collect();
    let mut mom = vec![0.0f64; n];
    let mut tr = trainer.map(|c| {
        let mut t = PhaseTrainer::new(c).unwrap();
        for &s in &sizes {
            t.add_parameter(&[s]).unwrap();
        }
        t
    });
    let loss = |th: &[f64]| -> f64 { (0..n).map(|j| 0.5 * a[j] * (th[j] - opt[j]).powi(2)).sum() };
    let mut phases = vec![];
    let mut tail = 0.0;
    for t in 0..steps {
        let info = tr.as_mut().map(|t| t.begin_step().unwrap());
        let backward = info.is_none_or(|i| i.needs_backward);
        let mut g = vec![0f32; n];
        if backward {
            for j in 0..n {
                let noise = sigma * normal(seed ^ 0x1234, (t * n + j) as u64);
                g[j] = (a[j] * (th[j] - opt[j]) + noise) as f32;
            }
        }
        if let Some(tr) = tr.as_mut() {
            let mut off = 0;
            for (id, &s) in sizes.iter().enumerate() {
                if backward {
                    tr.record_gradient(id, &g[off..off + s]).unwrap();
                } else {
                    tr.predict_gradient(id, &mut g[off..off + s]).unwrap();
                }
                off += s;
            }
            let l = if backward { loss(&th) as f32 } else { f32::NAN };
            phases.push(tr.end_step(l, None).unwrap());
        }
        for j in 0..n {
            mom[j] = beta * mom[j] + g[j] as f64;
            th[j] -= lr * mom[j];
        }
        if t + 50 >= steps {
            tail += loss(&th) / 50.0;
        }
    }
    (tail, phases, tr.map(|t| t.stats()))
}

#[test]
fn guard_keeps_every_backward_pass_on_pure_noise() {
    // Start at the optimum: the gradient is noise (plus what the noise itself
    // causes), so no predictor can be within max_error.
    let mut base = vec![];
    let mut with = vec![];
    for seed in 0..5 {
        let (b, _, _) = quadratic_task(seed, 400, 1.0, 0.0, (0.1, 0.9), None);
        let (w, phases, s) = quadratic_task(
            seed,
            400,
            1.0,
            0.0,
            (0.1, 0.9),
            Some(PhaseConfig::default()),
        );
        let s = s.unwrap();
        let predicted = phases.iter().filter(|&&p| p == Phase::Predict).count();
        assert!(predicted <= 4, "seed {seed}: {predicted} predicted steps");
        assert!(s.mean_prediction_error > 0.9, "{s:?}");
        assert_eq!(s.last_reason, Reason::ErrorAboveThreshold);
        base.push(b);
        with.push(w);
    }
    // Quality equal to the baseline within the seed-to-seed noise.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let sd = |v: &[f64]| {
        let m = mean(v);
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    };
    let diff = (mean(&with) - mean(&base)).abs();
    assert!(
        diff <= 0.5 * sd(&base) / (base.len() as f64).sqrt(),
        "baseline {base:?} guarded {with:?}"
    );
    // The seed's fixed schedule on the same task predicts blindly (and loses).
    let seed_loss: Vec<f64> = (0..5)
        .map(|s| quadratic_task(s, 400, 1.0, 0.0, (0.1, 0.9), Some(PhaseConfig::seed())).0)
        .collect();
    assert!(
        mean(&seed_loss) > mean(&base) + 3.0 * sd(&base),
        "{seed_loss:?} {base:?}"
    );
}

/// Full-batch gradient descent with a small step: gradients change smoothly.
const SMOOTH: (f64, f64) = (0.05, 0.0);

#[test]
fn guard_predicts_on_a_smooth_task_and_keeps_its_quality() {
    for seed in 0..3 {
        let (b, _, _) = quadratic_task(seed, 400, 0.0, 3.0, SMOOTH, None);
        let (w, phases, s) =
            quadratic_task(seed, 400, 0.0, 3.0, SMOOTH, Some(PhaseConfig::default()));
        let s = s.unwrap();
        let predicted = phases.iter().filter(|&&p| p == Phase::Predict).count();
        assert!(
            predicted >= 120,
            "seed {seed}: only {predicted} of 400 predicted; {s:?}"
        );
        assert!(s.runs > 0 && s.predict_steps == predicted as u64);
        // Quality kept: the guarded run's final loss at most 5% above the
        // baseline's (its extrapolated steps may even make it lower).
        eprintln!(
            "seed {seed}: predicted {predicted}/400, loss {w:.4e} vs baseline {b:.4e}; {s:?}"
        );
        assert!(w <= 1.05 * b, "baseline {b}, guarded {w}");
    }
}

#[test]
fn guard_backs_off_at_once_when_the_error_rises() {
    // Smooth (linear in t) gradients for 200 steps, then pure noise.
    let mut tr = PhaseTrainer::new(PhaseConfig::default()).unwrap();
    tr.add_parameter(&[40]).unwrap();
    let mut phases = vec![];
    let mut first_fail = None;
    for t in 0..400u64 {
        let info = tr.begin_step().unwrap();
        if info.needs_backward {
            let g: Vec<f32> = (0..40u64)
                .map(|e| {
                    if t < 200 {
                        1.0 + e as f32 * 0.1 + 0.01 * t as f32
                    } else {
                        normal(9, t * 40 + e) as f32
                    }
                })
                .collect();
            tr.record_gradient(0, &g).unwrap();
        } else {
            let mut o = vec![0f32; 40];
            tr.predict_gradient(0, &mut o).unwrap();
        }
        tr.end_step(1.0, None).unwrap();
        if t >= 200 && info.needs_backward && first_fail.is_none() {
            assert_eq!(tr.stats().last_reason, Reason::ErrorAboveThreshold);
            first_fail = Some(t);
        }
        phases.push((info.phase, info.reason));
    }
    let pred_before = phases[..200]
        .iter()
        .filter(|p| p.0 == Phase::Predict)
        .count();
    assert!(pred_before > 120, "{pred_before}");
    // After the first backward step on noise, never again a Predict step.
    let f = first_fail.unwrap() as usize;
    assert!(f <= 200 + PhaseConfig::default().predict_steps);
    assert!(phases[f + 1..].iter().all(|p| p.0 != Phase::Predict));
    assert!(phases[f + 1..]
        .iter()
        .all(|p| p.1 == Reason::ErrorAboveThreshold || p.1 == Reason::Probing));
    let s = tr.stats();
    assert_eq!(s.backoffs, 1);
    // Far above max_error the checks are spaced out (gaps 1, 2, 4, 8, 16,
    // 16, ...): about 15 checks over the 195 noise steps, every one failed.
    let backward_after = phases[f..].iter().filter(|p| p.0 != Phase::Predict).count() as u64;
    let skipped = s.backward_passes - s.warmup_steps - s.error_samples;
    eprintln!(
        "{s:?}; backward steps from the first failure {backward_after}, skipped checks {skipped}"
    );
    assert!((8..=30).contains(&s.failed_checks), "{s:?}");
    assert!(skipped >= 150 && skipped < backward_after, "{s:?}");
}

#[test]
fn guard_spaces_out_far_checks_and_resumes_when_the_error_falls() {
    // Pure noise for 150 steps (error far above max_error: checks spaced
    // out), then a constant gradient (the last-gradient predictor is exact):
    // checks return to every backward step and prediction resumes soon.
    let mut tr = PhaseTrainer::new(PhaseConfig::default()).unwrap();
    tr.add_parameter(&[40]).unwrap();
    let phases = drive(
        &mut tr,
        300,
        |t, _, e| {
            if t < 150 {
                normal(4, t * 40 + e as u64) as f32
            } else {
                1.0 + e as f32 * 0.01
            }
        },
        |_| 1.0,
        |_, _, _| {},
    );
    let s = tr.stats();
    assert!(phases[..150].iter().all(|&p| p != Phase::Predict));
    let first = phases[150..]
        .iter()
        .position(|&p| p == Phase::Predict)
        .expect("prediction resumes");
    eprintln!("first predicted step after the switch: +{first}; {s:?}");
    // At most one longest gap, the clean checks and the score change.
    assert!(first <= MAX_CHECK_GAP + 12, "{first}");
    let predicted = phases[150..]
        .iter()
        .filter(|&&p| p == Phase::Predict)
        .count();
    assert!(predicted >= 80, "{predicted}");
}

#[test]
fn guard_waits_for_clean_checks_and_doubles_runs() {
    // Constant gradients: every check passes (error 0).
    let c = PhaseConfig {
        warmup_steps: 2,
        min_checks: 3,
        predict_steps: 4,
        ..Default::default()
    };
    let mut tr = PhaseTrainer::new(c).unwrap();
    tr.add_parameter(&[3]).unwrap();
    let phases = drive(
        &mut tr,
        24,
        |_, _, e| e as f32 + 1.0,
        |_| 1.0,
        |_, _, o| {
            assert_eq!(o, &[1.0, 2.0, 3.0]);
        },
    );
    use Phase::*;
    // 2 warmup; checks at steps 2, 3, 4 (step 2 is the first with history and
    // passes); run of 1, Correct, run of 2, Correct, run of 4, Correct, run of 4 ...
    assert_eq!(
        phases,
        vec![
            Warmup, Warmup, Full, Full, Full, Predict, Correct, Predict, Predict, Correct, Predict,
            Predict, Predict, Predict, Correct, Predict, Predict, Predict, Predict, Correct,
            Predict, Predict, Predict, Predict
        ]
    );
    let s = tr.stats();
    assert_eq!((s.runs, s.current_predict_steps, s.backoffs), (5, 4, 0));
    assert_eq!(s.last_error, 0.0);
    assert_eq!(s.last_cosine, 1.0);
    // predict_steps = 0 disables prediction.
    let mut tr = PhaseTrainer::new(PhaseConfig {
        predict_steps: 0,
        warmup_steps: 1,
        ..Default::default()
    })
    .unwrap();
    tr.add_parameter(&[1]).unwrap();
    let phases = drive(&mut tr, 10, |_, _, _| 1.0, |_| 1.0, |_, _, _| {});
    assert!(phases.iter().all(|&p| p != Phase::Predict));
    assert_eq!(tr.stats().last_reason, Reason::Disabled);
}

#[test]
fn a_non_finite_loss_stops_prediction() {
    let c = PhaseConfig {
        warmup_steps: 2,
        min_checks: 1,
        ..Default::default()
    };
    let mut tr = PhaseTrainer::new(c).unwrap();
    tr.add_parameter(&[2]).unwrap();
    let phases = drive(
        &mut tr,
        30,
        |_, _, _| 1.0,
        |t| if t == 12 { f32::INFINITY } else { 1.0 },
        |_, _, _| {},
    );
    // Step 12 is a backward step (checks pass, L grows: runs at 3, 5-6, 8-11, Correct 12).
    assert_eq!(phases[12], Phase::Correct);
    assert_eq!(phases[13], Phase::Full);
    assert_eq!(tr.stats().backoffs, 1);
    // A NaN loss on a Predict step is ignored (the forward pass may be skipped).
    assert!(phases[14..].contains(&Phase::Predict));
}

#[test]
fn each_parameter_gets_the_predictor_that_measures_best() {
    let c = PhaseConfig {
        predict_steps: 0, // measure only
        ..Default::default()
    };
    let mut tr = PhaseTrainer::new(c).unwrap();
    for _ in 0..3 {
        tr.add_parameter(&[64]).unwrap();
    }
    let mut walk = vec![0f32; 64];
    drive(
        &mut tr,
        120,
        |t, id, e| match id {
            // A straight line: WLS is exact, the others lag.
            0 => 1.0 + 0.05 * t as f32 * (e as f32 - 30.0),
            // A constant plus noise: the mean removes most of the noise.
            1 => 1.0 + 0.3 * normal(5, t * 64 + e as u64) as f32,
            // A random walk: the last value is the best guess.
            _ => {
                if e == 0 {
                    for (k, w) in walk.iter_mut().enumerate() {
                        *w += normal(6, t * 64 + k as u64) as f32;
                    }
                }
                walk[e] + 0.0 * t as f32
            }
        },
        |_| 1.0,
        |_, _, _| {},
    );
    let p: Vec<ParamStats> = (0..3).map(|i| tr.parameter_stats(i).unwrap()).collect();
    assert_eq!(p[0].predictor, Predictor::Wls, "{:?}", p[0]);
    assert_eq!(p[1].predictor, Predictor::Ema, "{:?}", p[1]);
    assert_eq!(p[2].predictor, Predictor::Last, "{:?}", p[2]);
    // Exact up to the Gram form's resolution (err = pp − 2 dot + gg from f32
    // lane sums: about 1e-4 relative here; Last and EMA lag by 1e-2 and more).
    assert!(p[0].rel_error[2] < 1e-3, "{:?}", p[0]);
    assert!(p[0].rel_error[2] * 50.0 < p[0].rel_error[0], "{:?}", p[0]);
    assert_eq!(tr.stats().predictor_params, [1, 1, 1]);
    // Only WLS enabled: every parameter uses it; Last is still measured (the baseline).
    let mut tr = PhaseTrainer::new(PhaseConfig::seed()).unwrap();
    tr.add_parameter(&[4]).unwrap();
    drive(
        &mut tr,
        12,
        |t, _, e| (t + e as u64) as f32,
        |_| 1.0,
        |_, _, _| {},
    );
    let p = tr.parameter_stats(0).unwrap();
    assert_eq!(p.predictor, Predictor::Wls);
    assert!(p.rel_error[0].is_finite() && p.rel_error[1].is_nan() && p.score[0].is_nan());
}

#[test]
fn measured_errors_equal_their_definitions() {
    // Guarded, measuring only; check after each backward step that the
    // per-parameter and overall errors and cosines equal f64 computations
    // from the recorded history and the coefficient functions.
    let c = PhaseConfig {
        predict_steps: 0,
        history_window: 5,
        prediction_horizon: 2,
        ..Default::default()
    };
    let mut tr = PhaseTrainer::new(c).unwrap();
    let sizes = [37usize, 5];
    for &s in &sizes {
        tr.add_parameter(&[s]).unwrap();
    }
    let gf = |t: u64, id: usize, e: usize| {
        (normal(3, t * 100 + (id * 50 + e) as u64) * 0.5 + (t as f64 * 0.1 + e as f64).sin()) as f32
    };
    let mut times: Vec<u64> = vec![];
    for t in 0..30u64 {
        tr.begin_step().unwrap();
        for (id, &s) in sizes.iter().enumerate() {
            let g: Vec<f32> = (0..s).map(|e| gf(t, id, e)).collect();
            tr.record_gradient(id, &g).unwrap();
        }
        let chosen: Vec<Predictor> = (0..2)
            .map(|i| tr.parameter_stats(i).unwrap().predictor)
            .collect();
        tr.end_step(1.0, None).unwrap();
        if !times.is_empty() {
            let hist = &times[times.len().saturating_sub(5)..];
            let mut tot = [0.0f64; 4];
            for (id, &s) in sizes.iter().enumerate() {
                let ps = tr.parameter_stats(id).unwrap();
                for pr in Predictor::all() {
                    let c = tr.coefficients(pr, hist, t);
                    let (mut err, mut dot, mut pp, mut gg) = (0.0, 0.0, 0.0, 0.0);
                    for e in 0..s {
                        let p: f64 = c
                            .iter()
                            .zip(hist)
                            .map(|(c, &u)| c * gf(u, id, e) as f64)
                            .sum();
                        let g = gf(t, id, e) as f64;
                        err += (p - g).powi(2);
                        dot += p * g;
                        pp += p * p;
                        gg += g * g;
                    }
                    let k = pr.code() as usize;
                    let rel = (err / gg).sqrt();
                    let cos = dot / (pp * gg).sqrt();
                    assert!(
                        (ps.rel_error[k] - rel).abs() <= 1e-5 * (1.0 + rel),
                        "{t} {id} {pr:?}"
                    );
                    assert!((ps.cosine[k] - cos).abs() <= 1e-5, "{t} {id} {pr:?}");
                    // The overall figure uses the predictor chosen after this check.
                    if pr == ps.predictor {
                        tot[0] += err;
                        tot[1] += dot;
                        tot[2] += pp;
                        tot[3] += gg;
                    }
                }
            }
            let _ = chosen;
            let s = tr.stats();
            let e = (tot[0] / tot[3]).sqrt();
            assert!(
                (s.last_error - e).abs() <= 1e-5 * (1.0 + e),
                "{t}: {} vs {e}",
                s.last_error
            );
            assert!((s.last_cosine - tot[1] / (tot[2] * tot[3]).sqrt()).abs() <= 1e-5);
        }
        times.push(t);
    }
}

#[test]
fn identical_at_every_cpu_level() {
    let levels = crate::cpu::supported_levels();
    eprintln!(
        "phase trainer: levels {:?} (kernels {:?}); skipped {:?}",
        levels,
        levels
            .iter()
            .map(|&l| kernels::kernel_level(l))
            .collect::<Vec<_>>(),
        crate::cpu::unsupported_levels()
    );
    for bf16 in [false, true] {
        let run = |level: CpuLevel| {
            let c = PhaseConfig {
                warmup_steps: 3,
                min_checks: 1,
                max_error: 10.0,
                history_bf16: bf16,
                ..Default::default()
            };
            let mut tr = PhaseTrainer::new(c).unwrap();
            tr.set_cpu_level(level).unwrap();
            for s in [1usize, 7, 33, 257, 2 * BLOCK + 9] {
                tr.add_parameter(&[s]).unwrap();
            }
            let mut preds = vec![];
            drive(
                &mut tr,
                25,
                |t, id, e| uniform_f32(t * 7 + id as u64, e as u64) - 0.5 + t as f32 * 0.05,
                |_| 1.0,
                |_, _, o| preds.push(o.iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
            );
            let ps: Vec<_> = (0..5)
                .map(|i| format!("{:?}", tr.parameter_stats(i).unwrap()))
                .collect();
            (preds, format!("{:?}", tr.stats()), ps)
        };
        let want = run(CpuLevel::Scalar);
        assert!(want.0.len() > 20);
        for &l in &levels {
            assert_eq!(run(l), want, "level {l:?} bf16 {bf16}");
        }
    }
}

// ----------------------------------------------------------------------------
// The Gram form of the check
// ----------------------------------------------------------------------------

/// Gradients of four kinds (by parameter): a straight line in time (WLS is
/// near-perfect), trend plus noise with a relative error near the default
/// threshold 0.3, pure noise, and a slow sine.
fn gram_task_grad(t: u64, id: usize, e: usize) -> f32 {
    let x = e as f64 * 0.37 + id as f64;
    let trend = 1.0 + 0.05 * t as f64 * (x.sin() + 0.2);
    let noise = normal(11 + id as u64, t * 1_000_003 + e as u64);
    (match id % 4 {
        0 => trend,
        1 => trend + 0.12 * noise,
        2 => noise,
        _ => (0.1 * t as f64 + x).sin() * 3.0,
    }) as f32
}

#[test]
fn gram_check_matches_direct_f64_sums() {
    // Every check's per-predictor err, dot, pp and gg from the Gram form
    // against the f64 definitions over the stored history and the stored
    // gradient (bf16 rounds both), within the first-order rounding bound of
    // f32 lane sums over a block: |Δerr| <= (BLOCK/8 + 2) 2^-24 Σ_e (Σ_i
    // |c_i h_i[e]| + |g[e]|)² (the same bound for dot and pp). Reports the
    // largest deviation of the relative error where it is near the threshold.
    for bf16 in [false, true] {
        let c = PhaseConfig {
            predict_steps: 0,
            history_bf16: bf16,
            ..Default::default()
        };
        let mut tr = PhaseTrainer::new(c).unwrap();
        let sizes = [1usize, 17, 4097, 3 * BLOCK + 5, 64, 1000, 2 * BLOCK, 333];
        for &s in &sizes {
            tr.add_parameter(&[s]).unwrap();
        }
        let round = |x: f32| -> f64 {
            if bf16 {
                crate::precision::convert::bf16_bits_to_f32(
                    crate::precision::convert::f32_to_bf16_bits(x),
                ) as f64
            } else {
                x as f64
            }
        };
        let mut times: Vec<u64> = vec![];
        let (mut near, mut max_dev, mut checks) = (0, 0.0f64, 0);
        for t in 0..40u64 {
            let info = tr.begin_step().unwrap();
            assert!(info.needs_backward);
            let hist = times[times.len().saturating_sub(8)..].to_vec();
            let coefs: Vec<Vec<f64>> = tr
                .combos
                .iter()
                .map(|&p| {
                    if hist.is_empty() {
                        vec![]
                    } else {
                        tr.coefficients(p, &hist, t)
                            .iter()
                            .map(|&c| c as f32 as f64)
                            .collect()
                    }
                })
                .collect();
            let checking = tr.checking;
            for (id, &s) in sizes.iter().enumerate() {
                let g: Vec<f32> = (0..s).map(|e| gram_task_grad(t, id, e)).collect();
                tr.record_gradient(id, &g).unwrap();
                let Some(sums) = tr.params[id].sums else {
                    continue;
                };
                assert!(checking && !hist.is_empty());
                checks += 1;
                for (q, c) in coefs.iter().enumerate() {
                    let (mut err, mut dot, mut pp, mut gg, mut scale) = (0.0, 0.0, 0.0, 0.0, 0.0);
                    for (e, &ge) in g.iter().enumerate() {
                        let (mut p, mut mag) = (0.0f64, 0.0f64);
                        for (ci, &u) in c.iter().zip(&hist) {
                            let h = round(gram_task_grad(u, id, e));
                            p += ci * h;
                            mag += (ci * h).abs();
                        }
                        let gv = round(ge);
                        err += (p - gv).powi(2);
                        dot += p * gv;
                        pp += p * p;
                        gg += gv * gv;
                        scale += (mag + gv.abs()).powi(2);
                    }
                    let tol = (BLOCK as f64 / 8.0 + 2.0) * 2f64.powi(-24) * scale;
                    let what = format!("bf16 {bf16} t {t} id {id} combo {q}");
                    assert!(
                        (sums.err[q] - err).abs() <= tol,
                        "{what}: err {} vs {err} (tol {tol})",
                        sums.err[q]
                    );
                    assert!(
                        (sums.dot[q] - dot).abs() <= tol,
                        "{what}: dot {} vs {dot}",
                        sums.dot[q]
                    );
                    assert!(
                        (sums.pp[q] - pp).abs() <= tol,
                        "{what}: pp {} vs {pp}",
                        sums.pp[q]
                    );
                    assert!(
                        (sums.gg - gg).abs() <= tol,
                        "{what}: gg {} vs {gg}",
                        sums.gg
                    );
                    let (rel, want) = ((sums.err[q] / sums.gg).sqrt(), (err / gg).sqrt());
                    if (0.15..0.6).contains(&want) {
                        near += 1;
                        max_dev = max_dev.max((rel - want).abs());
                    }
                }
            }
            tr.end_step(1.0, None).unwrap();
            times.push(t);
        }
        eprintln!(
            "gram check (bf16 {bf16}): {checks} parameter checks; {near} errors in [0.15, 0.6): largest |Δ relative error| {max_dev:.2e}"
        );
        assert!(checks > 100 && near > 20, "{checks} {near}");
        assert!(max_dev < 1e-4, "{max_dev}");
    }
}

#[test]
fn gram_matrix_equals_a_rebuild_from_the_history() {
    // After every step, checked or store-only (pure noise makes the guard
    // skip checks), the incremental Gram matrix has the bits of one rebuilt
    // from the stored history; and a trainer whose matrices are thrown away
    // (and rebuilt) at some steps runs bit for bit like one whose are not.
    for bf16 in [false, true] {
        let mk = || {
            let c = PhaseConfig {
                warmup_steps: 3,
                history_window: 5,
                history_bf16: bf16,
                ..Default::default()
            };
            let mut tr = PhaseTrainer::new(c).unwrap();
            for s in [3usize, 4097, 40] {
                tr.add_parameter(&[s]).unwrap();
            }
            tr
        };
        let (mut a, mut b) = (mk(), mk());
        let grad = |t: u64, id: usize, e: usize| {
            if t < 30 {
                gram_task_grad(t, 2, e + id) // noise: far checks, skipped checks
            } else {
                gram_task_grad(t, id, e)
            }
        };
        let mut store_only = 0;
        for t in 0..60u64 {
            if t % 7 == 3 {
                for p in &mut b.params {
                    p.gram_ok = false;
                    p.gram.iter_mut().for_each(|x| *x = f64::NAN);
                }
            }
            let run = |tr: &mut PhaseTrainer| {
                let info = tr.begin_step().unwrap();
                let checking = tr.checking;
                let mut preds = vec![];
                for id in 0..3 {
                    let n = tr.parameter_numel(id).unwrap();
                    if info.needs_backward {
                        let g: Vec<f32> = (0..n).map(|e| grad(t, id, e)).collect();
                        tr.record_gradient(id, &g).unwrap();
                    } else {
                        let mut out = vec![0f32; n];
                        tr.predict_gradient(id, &mut out).unwrap();
                        preds.push(out.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
                    }
                }
                tr.end_step(1.0, None).unwrap();
                (info, checking, preds, format!("{:?}", tr.stats()))
            };
            let ra = run(&mut a);
            let rb = run(&mut b);
            assert_eq!(ra, rb, "bf16 {bf16} step {t}");
            if ra.0.needs_backward && !ra.1 {
                store_only += 1;
            }
            let w = a.cfg.history_window;
            let slots: Vec<usize> = a.entries.iter().map(|e| e.1).collect();
            for (id, p) in a.params.iter().enumerate() {
                let mut r = p.clone();
                r.rebuild_gram(a.level, &slots, w);
                for &i in &slots {
                    for &j in &slots {
                        assert_eq!(
                            p.gram[i * w + j].to_bits(),
                            r.gram[i * w + j].to_bits(),
                            "bf16 {bf16} step {t} param {id} ({i}, {j})"
                        );
                    }
                }
            }
        }
        assert!(store_only >= 5, "{store_only}");
        assert!(a.stats().predict_steps > 0);
    }
}

#[test]
fn history_buffers_start_at_staggered_page_offsets() {
    // Buffer i of a parameter (the bf16 spare last) starts i · 448 bytes
    // past a page boundary, modulo 4096, and holds exactly `numel` values.
    for bf16 in [false, true] {
        let mut tr = PhaseTrainer::new(PhaseConfig {
            history_bf16: bf16,
            ..Default::default()
        })
        .unwrap();
        for n in [1usize, 3, 4097, 65536] {
            tr.add_parameter(&[n]).unwrap();
        }
        for p in &tr.params {
            let mut bufs: Vec<(usize, usize)> = match &p.hist {
                History::F32(h) => h.iter().map(|b| (b.as_ptr() as usize, b.len())).collect(),
                History::Bf16(h) => h.iter().map(|b| (b.as_ptr() as usize, b.len())).collect(),
            };
            if bf16 {
                bufs.push((p.spare.as_ptr() as usize, p.spare.len()));
            }
            for (i, &(at, len)) in bufs.iter().enumerate() {
                assert_eq!(
                    at % 4096,
                    i * 448 % 4096,
                    "bf16 {bf16} n {} buffer {i}",
                    p.numel
                );
                assert_eq!(len, p.numel);
            }
        }
    }
}
