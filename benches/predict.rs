//! Phase trainer: the cost of recording (checking every predictor, then
//! storing the gradient), of a record that only stores (a backward step
//! whose check the guard skips; it still computes the dot products that keep
//! the Gram matrix; timed in a loop of its own after the interleaved rounds,
//! each step with a fresh gradient) and of predicting one parameter, against the named
//! baseline measured in the same run: **reading the history once** (an AVX2
//! max over the bits of every history buffer, 32 bytes a load: what one core
//! can stream). One library thread.
//!
//! `cargo bench --bench predict` prints a Markdown table of medians over
//! interleaved rounds and the ratios to the baseline, in thread CPU time
//! (`CLOCK_PROCESS_CPUTIME_ID`: other processes on a shared machine inflate it
//! far less than wall time) and in wall time. Environment:
//! `PREDICT_BENCH_ROUNDS` (default 31), `PREDICT_BENCH_SIZES` (comma-separated
//! element counts, default `65536,1048576`).

use std::hint::black_box;
use std::time::Instant;

use tritter_accel::grad::predict::{PhaseConfig, PhaseTrainer, Predictor};

const WINDOW: usize = 8;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn grad(n: usize, t: u64) -> Vec<f32> {
    (0..n)
        .map(|i| tritter_accel::rng::uniform_f32(t, i as u64) - 0.5 + 0.01 * t as f32)
        .collect()
}

/// A trainer with a full history whose next step is a Predict step and
/// whose only predictor is `p`.
fn trainer(n: usize, bf16: bool, p: Predictor) -> PhaseTrainer {
    let mut c = PhaseConfig {
        history_bf16: bf16,
        predictors: p.bit(),
        ..PhaseConfig::seed()
    };
    c.warmup_steps = WINDOW;
    c.full_steps = 0;
    c.predict_steps = 1 << 30;
    c.correct_every = 0;
    c.adaptive_phases = false;
    let mut tr = PhaseTrainer::new(c).unwrap();
    tr.add_parameter(&[n]).unwrap();
    for t in 0..WINDOW as u64 {
        tr.begin_step().unwrap();
        tr.record_gradient(0, &grad(n, t)).unwrap();
        tr.end_step(1.0, None).unwrap();
    }
    tr
}

/// Max over the bits of every buffer: a pure streaming read.
fn read_once<T: Copy + Into<u32>>(bufs: &[Vec<T>]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if tritter_accel::cpu::CpuLevel::Avx2.allowed_under(tritter_accel::cpu::active()) {
        // SAFETY: the active level (detected, capped by TRITTER_CPU_LEVEL) includes AVX2.
        return bufs
            .iter()
            .map(|b| unsafe { read_avx2(b) })
            .max()
            .unwrap_or(0);
    }
    bufs.iter()
        .map(|b| b.iter().fold(0u32, |a, &v| a.max(v.into())))
        .max()
        .unwrap_or(0)
}

/// # Safety
/// AVX2 required.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn read_avx2<T: Copy + Into<u32>>(b: &[T]) -> u32 {
    use std::arch::x86_64::*;
    let bytes = std::mem::size_of_val(b);
    let p = b.as_ptr() as *const u8;
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut i = 0;
    // SAFETY: every load is within the buffer's bytes.
    unsafe {
        while i + 128 <= bytes {
            for (k, a) in acc.iter_mut().enumerate() {
                let v = _mm256_loadu_si256(p.add(i + 32 * k) as *const __m256i);
                *a = _mm256_max_epu32(*a, v);
            }
            i += 128;
        }
        let m = _mm256_max_epu32(
            _mm256_max_epu32(acc[0], acc[1]),
            _mm256_max_epu32(acc[2], acc[3]),
        );
        let mut out = [0u32; 8];
        _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, m);
        let tail = b[i / std::mem::size_of::<T>()..]
            .iter()
            .fold(0u32, |a, &v| a.max(v.into()));
        out.iter().fold(tail, |a, &v| a.max(v))
    }
}

/// Seconds of CPU time this process (all its threads) has used.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Runs `f`, returns (process CPU seconds, wall seconds).
fn timed(f: impl FnOnce()) -> (f64, f64) {
    let (c, w) = (thread_cpu(), Instant::now());
    f();
    (thread_cpu() - c, w.elapsed().as_secs_f64())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    tritter_accel::parallel::set_num_threads(1);
    let rounds: usize = env("PREDICT_BENCH_ROUNDS", "31").parse().unwrap();
    let sizes: Vec<usize> = env("PREDICT_BENCH_SIZES", "65536,1048576")
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    println!(
        "# phase trainer kernels: {} | 1 thread | window {WINDOW} | {rounds} interleaved rounds, medians",
        tritter_accel::cpu::describe()
    );
    println!();
    println!("| elements | history | read history once (baseline) | record (3 predictors checked) | record / baseline | record, store only | store only / baseline | predict WLS (8 buffers) | predict / baseline | predict last (1 buffer) | wall: baseline, record, predict WLS |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        for bf16 in [false, true] {
            let g = grad(n, 99);
            // The baseline: every history buffer streamed once.
            // The same bytes as the history (f32 bits, or their top halves for bf16).
            let hist32: Vec<Vec<u32>> = (0..WINDOW as u64)
                .map(|t| grad(n, t).iter().map(|x| x.to_bits()).collect())
                .collect();
            let hist16: Vec<Vec<u16>> = hist32
                .iter()
                .map(|h| h.iter().map(|x| (x >> 16) as u16).collect())
                .collect();
            let mut rec = PhaseTrainer::new(PhaseConfig {
                history_bf16: bf16,
                warmup_steps: 1 << 30,
                ..Default::default()
            })
            .unwrap();
            rec.add_parameter(&[n]).unwrap();
            for t in 0..WINDOW as u64 {
                rec.begin_step().unwrap();
                rec.record_gradient(0, &grad(n, t)).unwrap();
                rec.end_step(1.0, None).unwrap();
            }
            // Guarded default on uncorrelated gradients: the error stays far
            // above max_error, so most backward steps skip the check.
            let mut sto = PhaseTrainer::new(PhaseConfig {
                history_bf16: bf16,
                warmup_steps: WINDOW,
                ..Default::default()
            })
            .unwrap();
            sto.add_parameter(&[n]).unwrap();
            // A fresh noise gradient each step, written (untimed) into one
            // buffer just before the step: as warm in cache as `g` is for
            // the record column.
            let mut ng = vec![0f32; n];
            let mut st = 0u64;
            let mut refill = |ng: &mut Vec<f32>| {
                st += 1;
                for (i, x) in ng.iter_mut().enumerate() {
                    *x = tritter_accel::rng::uniform_f32(1000 + st, i as u64) - 0.5;
                }
            };
            let sto_step = |sto: &mut PhaseTrainer, ng: &[f32]| -> bool {
                let before = sto.stats().error_samples;
                let info = sto.begin_step().unwrap();
                assert!(info.needs_backward);
                sto.record_gradient(0, black_box(ng)).unwrap();
                sto.end_step(1.0, None).unwrap();
                info.phase != tritter_accel::grad::predict::Phase::Warmup
                    && sto.stats().error_samples == before
            };
            for _ in 0..3 * WINDOW {
                refill(&mut ng);
                sto_step(&mut sto, &ng);
            }
            let mut wls = trainer(n, bf16, Predictor::Wls);
            let mut last = trainer(n, bf16, Predictor::Last);
            wls.begin_step().unwrap();
            last.begin_step().unwrap();
            let mut out = vec![0f32; n];
            let (mut cpu, mut wall) = (vec![vec![]; 5], vec![vec![]; 5]);
            for _ in 0..rounds {
                let r = [
                    timed(|| {
                        black_box(if bf16 {
                            read_once(&hist16)
                        } else {
                            read_once(&hist32)
                        });
                    }),
                    timed(|| {
                        rec.begin_step().unwrap();
                        rec.record_gradient(0, black_box(&g)).unwrap();
                        rec.end_step(1.0, None).unwrap();
                    }),
                    timed(|| wls.predict_gradient(0, black_box(&mut out)).unwrap()),
                    timed(|| last.predict_gradient(0, black_box(&mut out)).unwrap()),
                ];
                for (k, (c, w)) in r.into_iter().enumerate() {
                    cpu[k].push(c);
                    wall[k].push(w);
                }
            }
            // Store-only steps in a loop of their own after the interleaved
            // rounds: each needs a fresh gradient written just before it, and
            // writing one inside the rounds slowed the baseline read that
            // followed. Compared with the baseline median above.
            for _ in 0..rounds {
                loop {
                    refill(&mut ng);
                    let mut skipped = false;
                    let (c, w) = timed(|| skipped = sto_step(&mut sto, &ng));
                    if skipped {
                        cpu[4].push(c);
                        wall[4].push(w);
                        break;
                    }
                }
            }
            let m: Vec<f64> = cpu.iter_mut().map(|v| median(v) * 1e6).collect();
            let w: Vec<f64> = wall.iter_mut().map(|v| median(v) * 1e6).collect();
            println!(
                "| {n} | {} | {:.0} µs | {:.0} µs | {:.2}x | {:.0} µs | {:.2}x | {:.0} µs | {:.2}x | {:.0} µs | {:.0}, {:.0}, {:.0} µs |",
                if bf16 { "bf16" } else { "f32" },
                m[0],
                m[1],
                m[1] / m[0],
                m[4],
                m[4] / m[0],
                m[2],
                m[2] / m[0],
                m[3],
                w[0],
                w[1],
                w[2]
            );
        }
    }
}
