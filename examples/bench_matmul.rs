//! Ternary matmul timings for the bench report (`scripts/bench-matmul.sh`).
//!
//! Prints tab-separated lines `impl  rows  cols  batch  threads  median_us`.
//! Weights are cold: each call uses the next of several matrices that
//! together exceed 64 MiB (twice the 32 MiB L3).
//!
//! ```text
//! cargo run --release --example bench_matmul [-- --full] [--no-ref] [--no-ndarray]
//!     [--shapes 4096x4096,2048x2048] [--batches 1,64] [--impls i8,i8_base3,f32,f32_direct]
//!     [--rounds R] [--describe]
//! ```
//!
//! `--rounds R` interleaves: R rounds, each timing every implementation at
//! 1 and 2 threads in turn, and prints the median of the round medians (on a
//! shared machine this compares 1 and 2 threads under the same load).
//! Environment: `TRITTER_BENCH_COLD_MIB` (rotation size, 0 = one matrix),
//! `TRITTER_BENCH_CLOCK=cpu` (process CPU time instead of wall time).
//!
//! ```text
//! ```

use std::time::Instant;

use ndarray::Array2;
use tritter_accel::cpu::CpuLevel;
use tritter_accel::ternary::matmul::{gemm_with_level, ComputeFormat};
use tritter_accel::ternary::{ActivationMode, Granularity, TernaryMatrix};

const COLD_BYTES: usize = 64 << 20;

/// Median; the minimum goes to stderr as a diagnostic (the uncontended
/// time on a shared machine).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprint!("[min {:.1} n {}] ", v[0], v.len());
    v[v.len() / 2]
}

/// Runs `f(i)` (i = call index) until about `budget_s` seconds or `max`
/// calls, at least `min`, after `warm` warm-up calls; returns the median µs.
/// Microseconds of process CPU time (all threads).
fn cpu_us() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// Whether `TRITTER_BENCH_CLOCK=cpu`: time calls by process CPU time
/// instead of wall time. On a loaded machine a call longer than a scheduler
/// slice is preempted, inflating its wall time; its CPU time is not. With
/// more than one thread it is the sum over the threads (spinning included),
/// so use it for one-thread comparisons.
fn cpu_clock() -> bool {
    std::env::var("TRITTER_BENCH_CLOCK").is_ok_and(|v| v == "cpu")
}

fn time(mut f: impl FnMut(usize), warm: usize, min: usize, max: usize, budget_s: f64) -> f64 {
    for i in 0..warm {
        f(i);
    }
    let cpu = cpu_clock();
    let start = Instant::now();
    let mut t = Vec::new();
    let mut i = warm;
    while t.len() < min || (t.len() < max && start.elapsed().as_secs_f64() < budget_s) {
        if cpu {
            let c0 = cpu_us();
            f(i);
            t.push(cpu_us() - c0);
        } else {
            let t0 = Instant::now();
            f(i);
            t.push(t0.elapsed().as_secs_f64() * 1e6);
        }
        i += 1;
    }
    median(t)
}

fn rand_trits(rows: usize, cols: usize, seed: u64) -> Array2<i8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 33) % 3) as i8 - 1
    })
}

fn rand_f32(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array2::from_shape_fn((rows, cols), |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
}

fn emit(name: &str, rows: usize, cols: usize, batch: usize, threads: usize, us: f64) {
    println!("{name}\t{rows}\t{cols}\t{batch}\t{threads}\t{us:.2}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--full");
    let no_ref = args.iter().any(|a| a == "--no-ref");
    let no_nd = args.iter().any(|a| a == "--no-ndarray");
    if args.iter().any(|a| a == "--describe") {
        eprintln!("{}", tritter_accel::cpu::describe());
        return;
    }
    if args.iter().any(|a| a == "--quant") {
        return bench_quant();
    }
    let list = |flag: &str| -> Option<Vec<String>> {
        let i = args.iter().position(|a| a == flag)?;
        let v = args
            .get(i + 1)
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        Some(v.split(',').map(str::to_string).collect())
    };
    let impls =
        list("--impls").unwrap_or_else(|| vec!["i8".into(), "i8_base3".into(), "f32".into()]);
    let shapes: Vec<(usize, usize)> = if let Some(v) = list("--shapes") {
        v.iter()
            .map(|s| {
                let (r, c) = s.split_once('x').expect("--shapes: ROWSxCOLS");
                (r.parse().expect("rows"), c.parse().expect("cols"))
            })
            .collect()
    } else if full {
        vec![
            (2048, 2048),
            (4096, 4096),
            (2560, 2560),
            (6912, 2560),
            (2560, 6912),
        ]
    } else {
        vec![(2048, 2048), (4096, 4096), (6912, 2560)]
    };
    let batches: Vec<usize> = if let Some(v) = list("--batches") {
        v.iter()
            .map(|b| b.parse().expect("--batches: integers"))
            .collect()
    } else if full {
        vec![1, 8, 64, 256]
    } else {
        vec![1, 64]
    };
    let level = tritter_accel::cpu::active();
    let rounds: usize = list("--rounds")
        .map_or(1, |v| v[0].parse().expect("--rounds: an integer"))
        .max(1);
    eprintln!("level {level:?}; shapes {shapes:?}; batches {batches:?}");

    for &(rows, cols) in &shapes {
        // Cold set: enough matrices that the compute copies exceed COLD_BYTES.
        let probe = TernaryMatrix::from_ternary(
            rand_trits(4, cols, 0).view(),
            &[1.0; 4],
            Granularity::PerRow,
        )
        .unwrap();
        let per = probe.memory_bytes() / 4 * rows;
        // TRITTER_BENCH_COLD_MIB: the rotation size (default 64 MiB; 0 = one
        // matrix, cache-warm, to see the kernels' compute bound).
        let cold = std::env::var("TRITTER_BENCH_COLD_MIB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(COLD_BYTES, |m| m << 20);
        let nmat = if cold == 0 {
            1
        } else {
            (cold / per + 1).max(2)
        };
        let scales: Vec<f32> = (0..rows).map(|i| 0.5 + (i % 7) as f32 * 0.1).collect();
        let mats: Vec<TernaryMatrix> = (0..nmat)
            .map(|i| {
                TernaryMatrix::from_ternary(
                    rand_trits(rows, cols, i as u64 + 1).view(),
                    &scales,
                    Granularity::PerRow,
                )
                .unwrap()
            })
            .collect();
        let mats3: Vec<TernaryMatrix> = mats
            .iter()
            .map(|m| m.clone().with_compute_format(ComputeFormat::Base3))
            .collect();
        // ndarray f32 baseline: dense weights, 64 MiB+ in rotation.
        let nf = ((COLD_BYTES / (rows * cols * 4)) + 1).max(2);
        let dense: Vec<Array2<f32>> = if no_nd {
            Vec::new()
        } else {
            (0..nf)
                .map(|i| rand_f32(rows, cols, 100 + i as u64))
                .collect()
        };
        for &batch in &batches {
            let x = rand_f32(batch, cols, 7);
            let mut y = Array2::<f32>::zeros((batch, rows));
            let (min, max) = if batch == 1 { (30, 400) } else { (7, 60) };
            // `--rounds R`: R rounds, each timing every (threads, impl) in
            // turn (1 and 2 threads interleaved), median of the round medians
            let (rmin, rmax, budget) = (
                (min / rounds).max(5),
                (max / rounds).max(5),
                0.6 / rounds as f64,
            );
            let mut res: Vec<(String, usize, Vec<f64>)> = Vec::new();
            let mut record = |name: &str, threads: usize, us: f64| match res
                .iter_mut()
                .find(|(n, t, _)| n == name && *t == threads)
            {
                Some(e) => e.2.push(us),
                None => res.push((name.to_string(), threads, vec![us])),
            };
            for _round in 0..rounds {
                for threads in [1usize, 2] {
                    tritter_accel::parallel::set_num_threads(threads);
                    let mut run = |ms: &[TernaryMatrix], mode: ActivationMode, train: bool| {
                        time(
                            |i| {
                                if train {
                                    gemm_with_level(
                                        &ms[i % nmat],
                                        x.view(),
                                        None,
                                        mode,
                                        y.view_mut(),
                                        level,
                                    )
                                } else {
                                    tritter_accel::ternary::matmul::gemm_without_train(
                                        &ms[i % nmat],
                                        x.view(),
                                        mode,
                                        y.view_mut(),
                                        level,
                                    )
                                }
                                .unwrap()
                            },
                            nmat,
                            rmin,
                            rmax,
                            budget,
                        )
                    };
                    if batch == 1 && !args.iter().any(|a| a == "--no-floor") {
                        // the same run's floor: just reading each matrix's weights
                        let us = time(
                            |i| {
                                std::hint::black_box(
                                    tritter_accel::ternary::matmul::read_floor_probe(
                                        &mats[i % nmat],
                                    ),
                                );
                            },
                            nmat,
                            rmin,
                            rmax,
                            budget,
                        );
                        record("read_floor_2bit", threads, us);
                    }
                    for imp in &impls {
                        let (name, us) = match imp.as_str() {
                            "i8" => ("tritter_i8", run(&mats, ActivationMode::Int8, true)),
                            "i8_base3" => {
                                ("tritter_i8_base3", run(&mats3, ActivationMode::Int8, true))
                            }
                            "f32" => ("tritter_f32", run(&mats, ActivationMode::F32, true)),
                            // f32 without the FMA tiles (batch >= 4): the kernels they replace
                            "f32_direct" => {
                                ("tritter_f32_direct", run(&mats, ActivationMode::F32, false))
                            }
                            other => {
                                panic!("--impls: unknown {other} (i8, i8_base3, f32, f32_direct)")
                            }
                        };
                        record(name, threads, us);
                    }
                }
            }
            for (name, threads, v) in res {
                let us = if v.len() == 1 { v[0] } else { median(v) };
                emit(&name, rows, cols, batch, threads, us);
            }
            if !no_ref && batch <= 8 {
                tritter_accel::parallel::set_num_threads(1);
                let us = time(
                    |i| {
                        gemm_with_level(
                            &mats[i % nmat],
                            x.view(),
                            None,
                            ActivationMode::Int8,
                            y.view_mut(),
                            CpuLevel::Scalar,
                        )
                        .unwrap()
                    },
                    1,
                    3,
                    3,
                    0.0,
                );
                emit("scalar_reference_i8", rows, cols, batch, 1, us);
            }
            if !no_nd {
                // ndarray (matrixmultiply, one thread) f32 x · Wᵀ.
                let us = time(
                    |i| {
                        let r = x.dot(&dense[i % nf].t());
                        std::hint::black_box(r);
                    },
                    nf,
                    if batch == 1 { 10 } else { 3 },
                    if batch == 1 { 100 } else { 10 },
                    0.6,
                );
                emit("ndarray_f32", rows, cols, batch, 1, us);
            }
        }
    }
}

/// `--quant`: AbsMean per-row quantize + 2-bit pack of 4096x4096 f32 (64 MiB),
/// one thread; prints `quantize_pack_2bit  rows  cols  1  1  median_us` and
/// the input rate on stderr.
fn bench_quant() {
    use tritter_accel::ternary::{quant, QuantConfig};
    tritter_accel::parallel::set_num_threads(1);
    let w = rand_f32(4096, 4096, 3);
    let cfg = QuantConfig::default();
    let us = time(
        |_| {
            std::hint::black_box(quant::quantize_pack_2bit(w.view(), &cfg).unwrap());
        },
        1,
        5,
        20,
        2.0,
    );
    eprintln!(
        "{:.2} GB/s of f32 input (wall median)",
        (w.len() * 4) as f64 / us / 1e3
    );
    // Process CPU time (the one pool thread's work; immune to preemption).
    let cpu = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
    };
    let mut cs = Vec::new();
    for _ in 0..10 {
        let c0 = cpu();
        std::hint::black_box(quant::quantize_pack_2bit(w.view(), &cfg).unwrap());
        cs.push(cpu() - c0);
    }
    let c = median(cs);
    eprintln!(
        "cpu-time median {c:.0} µs = {:.2} GB/s of f32 input per core",
        (w.len() * 4) as f64 / c / 1e3
    );
    let ws = w.as_slice().unwrap();
    eprint!("check_finite: ");
    time(
        |_| tritter_accel::check_finite(ws, "w").unwrap(),
        1,
        5,
        20,
        1.0,
    );
    eprint!("\ncompute_scales: ");
    time(
        |_| {
            drop(std::hint::black_box(quant::compute_scales(
                ws, 4096, 4096, &cfg,
            )))
        },
        1,
        5,
        20,
        1.0,
    );
    eprintln!();
    emit("quantize_pack_2bit", 4096, 4096, 1, 1, us);
}
