//! VSA benches at dim 10,000, each against a named baseline in the same run:
//! the dense `i8` scalar reference (`dense_ref`) for bind, bundle, cosine and
//! permute; the portable scalar kernel (`scalar`) for the item-memory top-k,
//! which runs at every CPU level this machine has (`scalar`, `avx2`, ...).
//! `scripts/bench-vsa.sh` runs this and the NumPy twin (`benches/vsa_numpy.py`)
//! and prints the ratios.
//!
//! Top-k runs on one thread (`set_num_threads(1)`).
//!
//! Time is the process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`), not wall time:
//! the build machines are shared (load averages above 10 on 2 cores), and CPU
//! time excludes the time other processes hold the core. Set
//! `TRITTER_BENCH_WALL=1` for wall-clock time. The NumPy twin measures the same way.

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use tritter_accel::vsa::{bundle, dense, ops, Algebra, ItemMemory, Metric, PackedHv, TieRule};

const DIM: usize = 10_000;

/// Process CPU time (or wall time with `TRITTER_BENCH_WALL=1`), in nanoseconds.
struct CpuTime {
    wall: WallTime,
    use_wall: bool,
}

fn now_ns(use_wall: bool) -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let clock = if use_wall {
        libc::CLOCK_MONOTONIC
    } else {
        libc::CLOCK_PROCESS_CPUTIME_ID
    };
    // SAFETY: a valid timespec out-pointer.
    unsafe { libc::clock_gettime(clock, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Measurement for CpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        now_ns(self.use_wall)
    }
    fn end(&self, i: u64) -> u64 {
        now_ns(self.use_wall).saturating_sub(i)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

type C = Criterion<CpuTime>;

fn config() -> C {
    Criterion::default()
        .with_measurement(CpuTime {
            wall: WallTime,
            use_wall: std::env::var_os("TRITTER_BENCH_WALL").is_some(),
        })
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

fn bipolar(seed: u64) -> PackedHv {
    PackedHv::random(DIM, seed, 1.0).unwrap()
}

fn bench_ops(c: &mut C) {
    eprintln!("# {}", tritter_accel::cpu::describe());
    let (a, b) = (bipolar(1), bipolar(2));
    let (da, db) = (a.to_trits(), b.to_trits());

    let mut g = c.benchmark_group("vsa_bind");
    g.throughput(Throughput::Elements(DIM as u64));
    g.bench_function("packed_map", |bn| {
        bn.iter(|| ops::bind(black_box(&a), black_box(&b), Algebra::Map).unwrap())
    });
    let mut out = vec![0u64; a.words().len()];
    g.bench_function("packed_map_into", |bn| {
        bn.iter(|| {
            ops::bind_words(
                black_box(a.words()),
                black_box(b.words()),
                Algebra::Map,
                &mut out,
            )
        })
    });
    g.bench_function("packed_modular", |bn| {
        bn.iter(|| ops::bind(black_box(&a), black_box(&b), Algebra::Modular).unwrap())
    });
    g.bench_function("dense_ref", |bn| {
        bn.iter(|| dense::bind(black_box(&da), black_box(&db), Algebra::Map).unwrap())
    });
    g.finish();

    let vs: Vec<PackedHv> = (0..100).map(|i| bipolar(100 + i)).collect();
    let refs: Vec<&PackedHv> = vs.iter().collect();
    let dv: Vec<Vec<i8>> = vs.iter().map(|v| v.to_trits()).collect();
    let dr: Vec<&[i8]> = dv.iter().map(|v| &v[..]).collect();
    let mut g = c.benchmark_group("vsa_bundle100");
    g.throughput(Throughput::Elements(100 * DIM as u64));
    g.bench_function("packed", |bn| {
        bn.iter(|| bundle::bundle(DIM, black_box(&refs), None, TieRule::Zero).unwrap())
    });
    let w: Vec<i32> = (0..100).map(|i| i % 3 + 1).collect();
    g.bench_function("packed_weighted", |bn| {
        bn.iter(|| bundle::bundle(DIM, black_box(&refs), Some(&w), TieRule::Zero).unwrap())
    });
    g.bench_function("dense_ref", |bn| {
        bn.iter(|| dense::bundle(DIM, black_box(&dr), None, TieRule::Zero).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("vsa_cosine");
    g.throughput(Throughput::Elements(DIM as u64));
    g.bench_function("packed", |bn| {
        bn.iter(|| ops::cosine(black_box(&a), black_box(&b)).unwrap())
    });
    g.bench_function("dense_ref", |bn| {
        bn.iter(|| dense::similarity(black_box(&da), black_box(&db), Metric::Cosine).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("vsa_permute");
    g.throughput(Throughput::Elements(DIM as u64));
    g.bench_function("packed", |bn| bn.iter(|| ops::permute(black_box(&a), 37)));
    g.bench_function("dense_ref", |bn| {
        bn.iter(|| dense::permute(black_box(&da), 37))
    });
    g.finish();
}

fn bench_topk(c: &mut C) {
    let n = 10_000usize;
    let mut g = c.benchmark_group("vsa_topk10_10k");
    g.sample_size(20);
    // Bytes a query must read: one plane for bipolar rows, two for ternary.
    for (name, density) in [("bipolar", 1.0), ("ternary", 0.5)] {
        let mut mem = ItemMemory::new(DIM).unwrap();
        for i in 0..n {
            mem.add(
                &PackedHv::random(DIM, 10_000 + i as u64, density).unwrap(),
                i as u64,
            )
            .unwrap();
        }
        let q = PackedHv::random(DIM, 7, density).unwrap();
        let planes = if density == 1.0 { 1 } else { 2 };
        g.throughput(Throughput::Bytes(
            (n * DIM.div_ceil(64) * 8 * planes) as u64,
        ));
        // (avx512vnni runs the avx512 kernels: not timed twice)
        for level in tritter_accel::cpu::supported_levels()
            .into_iter()
            .filter(|l| l.allowed_under(tritter_accel::cpu::active()))
            .filter(|&l| l != tritter_accel::cpu::CpuLevel::Avx512Vnni)
        {
            let id = level.name();
            tritter_accel::parallel::set_num_threads(1);
            g.bench_with_input(BenchmarkId::new(id, name), &level, |bn, &l| {
                bn.iter(|| mem.query_at(l, black_box(&q), 10, Metric::Cosine).unwrap())
            });
        }
        tritter_accel::parallel::set_num_threads(0);
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_ops, bench_topk
}
criterion_main!(benches);
