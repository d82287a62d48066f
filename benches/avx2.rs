//! AVX2 parity report: every figure of issue 19 at every CPU level this
//! machine runs, each beside a baseline measured in the same run, one thread.
//!
//! ```sh
//! cargo bench --bench avx2                    # everything (~3 minutes)
//! cargo bench --bench avx2 -- quant vsa       # only some groups
//! scripts/bench-avx2.sh                       # this, then the NumPy twin and ratios
//! ```
//!
//! Groups: `quant` (from_float / quantize + pack, 4096x4096), `stoch`
//! (ternary stochastic quantization, 10M f32), `sketch` (count sketch, 10M
//! f32), `qtopk` (quantized top-k encode and decode, 10M f32), `prec`
//! (bf16/f16 conversion and stochastic bf16 rounding, 1 Mi f32), `vsa` (item-memory top-10
//! over 10,000 x 10,000 trits; bundle, bind, cosine at dim 10,000).
//!
//! Method: variants of one group are timed interleaved (round-robin, one
//! sample each per round; a sample repeats a call for at least ~20 ms) and
//! the median per variant is reported, so a load change hits every variant
//! alike. Time is the process's CPU time (`CLOCK_PROCESS_CPUTIME_ID`), which
//! leaves out the time other processes hold the core on a shared machine;
//! `TRITTER_BENCH_WALL=1` measures wall time. `TRITTER_CPU_LEVEL` caps the
//! levels measured. `--json PATH` also writes the medians for
//! `benches/avx2_numpy.py`.

use std::time::Duration;

use ndarray::Array2;
use tritter_accel::cpu::{self, CpuLevel};
use tritter_accel::ternary::matmul::layout::{ComputeFormat, ComputeLayout};
use tritter_accel::ternary::{quant, QuantConfig, TernaryMatrix};

fn now_ns() -> u64 {
    let wall = std::env::var_os("TRITTER_BENCH_WALL").is_some();
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let clock = if wall {
        libc::CLOCK_MONOTONIC
    } else {
        libc::CLOCK_PROCESS_CPUTIME_ID
    };
    // SAFETY: a valid timespec out-pointer.
    unsafe { libc::clock_gettime(clock, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// One measured variant: a label and the call to time.
struct Variant<'a> {
    name: String,
    f: Box<dyn FnMut() + 'a>,
}

fn variant<'a>(name: impl Into<String>, f: impl FnMut() + 'a) -> Variant<'a> {
    Variant {
        name: name.into(),
        f: Box::new(f),
    }
}

/// A result line: group, variant, median seconds per call, bytes per call.
struct Row {
    group: String,
    name: String,
    secs: f64,
    bytes: f64,
}

struct Report {
    rows: Vec<Row>,
    verdicts: Vec<String>,
}

impl Report {
    /// Times `vs` interleaved; returns the median seconds of each.
    fn run(&mut self, group: &str, bytes: f64, rounds: usize, mut vs: Vec<Variant>) -> Vec<f64> {
        let target = Duration::from_millis(20).as_nanos() as u64;
        // Warm-up and calibration: calls per sample.
        let mut iters = Vec::new();
        for v in &mut vs {
            (v.f)();
            let t0 = now_ns();
            (v.f)();
            let dt = (now_ns() - t0).max(1);
            iters.push((target / dt).clamp(1, 1_000_000) as usize);
        }
        let mut samples = vec![Vec::new(); vs.len()];
        for _ in 0..rounds {
            for (i, v) in vs.iter_mut().enumerate() {
                let t0 = now_ns();
                for _ in 0..iters[i] {
                    (v.f)();
                }
                samples[i].push((now_ns() - t0) as f64 / iters[i] as f64 * 1e-9);
            }
        }
        let meds: Vec<f64> = samples
            .iter_mut()
            .map(|s| {
                s.sort_by(|a, b| a.total_cmp(b));
                s[s.len() / 2]
            })
            .collect();
        println!("\n[{group}] ({rounds} rounds, medians)");
        let base = meds[0];
        for (v, &m) in vs.iter().zip(&meds) {
            let rate = if bytes > 0.0 {
                format!("{:8.2} GB/s", bytes / m / 1e9)
            } else {
                String::new()
            };
            println!(
                "  {:<46} {:>12} {rate}   {:6.2}x vs {}",
                v.name,
                fmt_secs(m),
                base / m,
                vs[0].name
            );
            self.rows.push(Row {
                group: group.to_string(),
                name: v.name.clone(),
                secs: m,
                bytes,
            });
        }
        meds
    }

    fn verdict(&mut self, what: &str, met: bool, figure: String) {
        let line = format!(
            "{:<58} {:<28} {}",
            what,
            figure,
            if met { "MET" } else { "NOT MET" }
        );
        self.verdicts.push(line);
    }
}

fn fmt_secs(s: f64) -> String {
    if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else if s >= 1e-6 {
        format!("{:.2} µs", s * 1e6)
    } else {
        format!("{:.0} ns", s * 1e9)
    }
}

/// The levels to measure: those this CPU supports, up to the active one.
fn levels() -> Vec<CpuLevel> {
    cpu::supported_levels()
        .into_iter()
        .filter(|l| l.allowed_under(cpu::active()))
        .collect()
}

fn rand_f32(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| tritter_accel::rng::uniform_f32(seed, i as u64) * 2.0 - 1.0)
        .collect()
}

/// Sum of the bit patterns' maximum: vectorizes, so it streams the buffer at
/// the speed one core reads (the read floor).
fn read_floor(x: &[f32]) -> u32 {
    x.iter().fold(0u32, |a, &v| a.max(v.to_bits()))
}

fn bench_quant(r: &mut Report) {
    let n = 4096;
    let w = Array2::from_shape_vec((n, n), rand_f32(n * n, 3)).unwrap();
    let bytes = (n * n * 4) as f64;
    let cfg = QuantConfig::default();
    let ws = w.as_slice().unwrap();
    let (packed, _) = quant::quantize_pack_2bit(w.view(), &cfg).unwrap();
    let mut vs = vec![variant("read floor (max of f32 bit patterns)", || {
        std::hint::black_box(read_floor(std::hint::black_box(ws)));
    })];
    for l in levels() {
        let w = &w;
        vs.push(variant(
            format!("quantize_pack_2bit absmean/row @{l}"),
            move || {
                std::hint::black_box(quant::quantize_pack_2bit_at(l, w.view(), &cfg).unwrap());
            },
        ));
    }
    vs.push(variant(
        "  compute layout from 2-bit (layout.rs, not AVX2)",
        || {
            std::hint::black_box(ComputeLayout::from_2bit(
                &packed,
                n,
                n,
                ComputeFormat::TwoBit,
            ));
        },
    ));
    vs.push(variant(
        format!("TernaryMatrix::from_f32 end to end @{}", cpu::active()),
        || {
            std::hint::black_box(TernaryMatrix::from_f32(w.view(), &cfg).unwrap());
        },
    ));
    let meds = r.run("quant 4096x4096 f32, AbsMean per row", bytes, 9, vs);
    let ff = bytes / meds[meds.len() - 1] / 1e9;
    r.verdict(
        "from_float (quantize + pack + compute layout) >= 4 GB/s",
        ff >= 4.0,
        format!("{ff:.2} GB/s"),
    );
}

/// 10M f32 (40 MB): the gradient size of ANCHORS.md.
const GRAD_N: usize = 10_000_000;

fn bench_stoch(r: &mut Report, g: &[f32]) {
    use tritter_accel::grad::compress::ternary;
    let block = ternary::DEFAULT_BLOCK;
    let mut vs = vec![variant("read floor (max of f32 bit patterns)", || {
        std::hint::black_box(read_floor(std::hint::black_box(g)));
    })];
    for l in levels() {
        let mut s = vec![0.0f32; ternary::num_blocks(g.len(), block)];
        let mut p = vec![0u8; ternary::packed_len(g.len())];
        vs.push(variant(
            format!("ternary stochastic quantize, block 256 @{l}"),
            move || ternary::quantize_into_level(g, block, 3, &mut s, &mut p, l).unwrap(),
        ));
    }
    let bytes = (g.len() * 4) as f64;
    let meds = r.run("ternary stochastic quantization, 10M f32", bytes, 9, vs);
    let v = bytes / meds[meds.len() - 1] / 1e9;
    r.verdict(
        "ternary stochastic quantization >= 8 GB/s",
        v >= 8.0,
        format!("{v:.2} GB/s"),
    );
}

fn bench_sketch(r: &mut Report, g: &[f32]) {
    use tritter_accel::grad::compress::CountSketch;
    let n = g.len();
    let bytes = (n * 4) as f64;
    let mut last = 0.0;
    for (rows, cols, what) in [
        (1usize, 312_500usize, "1 row x 312,500 buckets (32x)"),
        (3, n / 96, "3 rows x n/96 (32x)"),
    ] {
        let cs = CountSketch::new(n, rows, cols, 7).unwrap();
        let table = cs.sketch(g).unwrap();
        let mut vs = vec![variant("read floor (max of f32 bit patterns)", || {
            std::hint::black_box(read_floor(std::hint::black_box(g)));
        })];
        for l in levels() {
            let mut t = vec![0.0f32; cs.table_len()];
            vs.push(variant(
                format!("count sketch accumulate @{l}"),
                move || {
                    t.fill(0.0);
                    cs.accumulate_level(g, &mut t, l).unwrap();
                },
            ));
        }
        for l in levels() {
            let mut est = vec![0.0f32; n];
            let table = &table;
            vs.push(variant(
                format!("count sketch estimate (unsketch) @{l}"),
                move || {
                    cs.estimate_level(table, &mut est, l).unwrap();
                },
            ));
        }
        let nl = levels().len();
        let meds = r.run(&format!("count sketch, 10M f32, {what}"), bytes, 7, vs);
        if rows == 1 {
            last = bytes / meds[nl] / 1e9;
        }
    }
    r.verdict(
        "count sketch (1 row, 312,500 buckets) >= 2 GB/s",
        last >= 2.0,
        format!("{last:.2} GB/s"),
    );
}

fn bench_qtopk(r: &mut Report, g: &[f32]) {
    use tritter_accel::grad::compress::{qtopk, topk, Compressor, CompressorConfig, Method};
    let n = g.len();
    let bytes = (n * 4) as f64;
    let (k, rice) = qtopk::params_for_ratio(n, 32.0, qtopk::DEFAULT_VALUE_BITS);
    let mut vs = vec![variant("read floor (max of f32 bit patterns)", || {
        std::hint::black_box(read_floor(std::hint::black_box(g)));
    })];
    for l in levels() {
        vs.push(variant(
            format!("qtopk encode 32x (k = n/{}, v = 2) @{l}", n / k),
            move || {
                std::hint::black_box(
                    qtopk::compress_level(g, k, rice, qtopk::DEFAULT_VALUE_BITS, l).unwrap(),
                );
            },
        ));
    }
    let kt = topk::k_for_ratio(n, 32.0);
    for l in levels() {
        vs.push(variant(
            format!("top-k selection (k = n/64) @{l}"),
            move || {
                std::hint::black_box(topk::top_k_indices_level(g, kt, l).unwrap());
            },
        ));
    }
    let mut comp = Compressor::new(
        n,
        CompressorConfig {
            method: Method::QTopK,
            ratio: 32.0,
            ..Default::default()
        },
    )
    .unwrap();
    vs.push(variant(
        format!("Compressor qtopk 32x + error feedback @{}", cpu::active()),
        move || {
            std::hint::black_box(comp.compress(g).unwrap());
        },
    ));
    let (_, stream) = qtopk::compress(g, k, rice, qtopk::DEFAULT_VALUE_BITS).unwrap();
    let lv: Vec<f32> = (0..1usize << qtopk::DEFAULT_VALUE_BITS)
        .map(|i| 0.1 * (i + 1) as f32)
        .collect();
    let mut dec = vec![0.0f32; n];
    vs.push(variant(
        format!(
            "qtopk decode into 10M f32 (k = n/{}, scalar bit reader)",
            n / k
        ),
        move || {
            qtopk::decompress_into(&lv, k, rice, &stream, &mut dec).unwrap();
            std::hint::black_box(&dec);
        },
    ));
    let nl = levels().len();
    let meds = r.run("quantized top-k, 10M f32", bytes, 7, vs);
    let v = bytes / meds[nl] / 1e9;
    r.verdict(
        "qtopk encode (32x) >= 1 GB/s",
        v >= 1.0,
        format!("{v:.2} GB/s"),
    );
}

fn bench_vsa(r: &mut Report) {
    use tritter_accel::vsa::{bundle, dense, ops, Algebra, ItemMemory, Metric, PackedHv, TieRule};
    const DIM: usize = 10_000;
    let n = 10_000usize;
    let mut top = [0.0; 2];
    for (t, (name, density)) in [("bipolar", 1.0), ("ternary, density 0.5", 0.5)]
        .into_iter()
        .enumerate()
    {
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
        let bytes = (n * DIM.div_ceil(64) * 8 * planes) as f64;
        let floor_buf = vec![1f32; bytes as usize / 4];
        let mut vs = vec![variant("read floor (the same bytes as f32)", move || {
            std::hint::black_box(read_floor(std::hint::black_box(&floor_buf)));
        })];
        for l in levels() {
            let (mem, q) = (&mem, &q);
            vs.push(variant(
                format!("item memory top-10 cosine @{l}"),
                move || {
                    std::hint::black_box(mem.query_at(l, q, 10, Metric::Cosine).unwrap());
                },
            ));
        }
        let meds = r.run(
            &format!("VSA top-10 of 10,000 x 10,000 trits, {name} (bytes = planes read)"),
            bytes,
            9,
            vs,
        );
        top[t] = meds[meds.len() - 1];
    }
    r.verdict(
        "VSA top-10 over 10,000 x 10,000 trits (bipolar) <= 1.0 ms",
        top[0] <= 1e-3,
        fmt_secs(top[0]),
    );
    r.verdict(
        "VSA top-10 over 10,000 x 10,000 trits (ternary) <= 1.0 ms",
        top[1] <= 1e-3,
        fmt_secs(top[1]),
    );

    // Single operations at dim 10,000 against the dense i8 reference (the
    // NumPy ratios come from benches/avx2_numpy.py on these medians).
    let (a, b) = (
        PackedHv::random(DIM, 1, 1.0).unwrap(),
        PackedHv::random(DIM, 2, 1.0).unwrap(),
    );
    let (da, db) = (a.to_trits(), b.to_trits());
    let vs100: Vec<PackedHv> = (0..100)
        .map(|i| PackedHv::random(DIM, 100 + i, 1.0).unwrap())
        .collect();
    let refs: Vec<&PackedHv> = vs100.iter().collect();
    let dv: Vec<Vec<i8>> = vs100.iter().map(|v| v.to_trits()).collect();
    let dr: Vec<&[i8]> = dv.iter().map(|v| &v[..]).collect();
    let mut out = vec![0u64; a.words().len()];
    let groups: Vec<(&str, Vec<Variant>)> = vec![
        (
            "VSA bundle of 100 bipolar vectors, dim 10,000",
            vec![
                variant("bundle dense i8 reference", || {
                    std::hint::black_box(dense::bundle(DIM, &dr, None, TieRule::Zero).unwrap());
                }),
                variant(format!("bundle packed @{}", cpu::active()), || {
                    std::hint::black_box(bundle::bundle(DIM, &refs, None, TieRule::Zero).unwrap());
                }),
            ],
        ),
        (
            "VSA cosine of two bipolar vectors, dim 10,000",
            vec![
                variant("cosine dense i8 reference", || {
                    std::hint::black_box(dense::similarity(&da, &db, Metric::Cosine).unwrap());
                }),
                variant(format!("cosine packed @{}", cpu::active()), || {
                    std::hint::black_box(ops::cosine(&a, &b).unwrap());
                }),
            ],
        ),
        (
            "VSA bind (MAP) into a buffer, dim 10,000",
            vec![
                variant("bind dense i8 reference", || {
                    std::hint::black_box(dense::bind(&da, &db, Algebra::Map).unwrap());
                }),
                variant(
                    format!("bind packed into a buffer @{}", cpu::active()),
                    || {
                        ops::bind_words(a.words(), b.words(), Algebra::Map, &mut out);
                        std::hint::black_box(&out);
                    },
                ),
            ],
        ),
    ];
    for (g, vs) in groups {
        r.run(g, 0.0, 15, vs);
    }
}

/// Precision loops (1 Mi f32, as benches/precision.rs): conversions at each
/// kernel level and stochastic bf16 rounding at each CPU level, against
/// copying the input.
fn bench_prec(r: &mut Report) {
    use tritter_accel::precision::convert::{self, Level};
    use tritter_accel::precision::stochastic;
    const N: usize = 1 << 20;
    let x: Vec<f32> = rand_f32(N, 11).iter().map(|v| v * 500.0).collect();
    let bytes = (N * 4) as f64;
    let mut vs = vec![variant("copy 1 Mi f32 (baseline)", {
        let mut o = vec![0f32; N];
        let x = &x;
        move || {
            o.copy_from_slice(std::hint::black_box(x));
            std::hint::black_box(&o);
        }
    })];
    let xr = &x;
    for l in Level::available() {
        let mut h = vec![0u16; N];
        vs.push(variant(format!("f32 -> bf16 RNE @{l:?}"), move || {
            convert::f32_to_bf16_with(l, xr, &mut h).unwrap()
        }));
        let mut h = vec![0u16; N];
        vs.push(variant(format!("f32 -> f16 RNE @{l:?}"), move || {
            convert::f32_to_f16_with(l, xr, &mut h).unwrap()
        }));
    }
    for l in levels() {
        let (x, mut h) = (xr, vec![0u16; N]);
        vs.push(variant(format!("f32 -> bf16 stochastic @{l}"), move || {
            stochastic::f32_to_bf16_stochastic_level(x, &mut h, 7, 0, l).unwrap()
        }));
    }
    r.run("precision, 1 Mi f32", bytes, 9, vs);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut json = None;
    let mut groups = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = it.next().cloned(),
            "--bench" => {}
            s if s.starts_with('-') => {}
            s => groups.push(s.to_string()),
        }
    }
    let want = |g: &str| groups.is_empty() || groups.iter().any(|x| x == g);
    tritter_accel::parallel::set_num_threads(1);
    println!("{}", cpu::describe());
    println!(
        "features: {} | load average: {} | clock: {}",
        cpu::features().names(),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim(),
        if std::env::var_os("TRITTER_BENCH_WALL").is_some() {
            "wall"
        } else {
            "process CPU time"
        }
    );
    let mut r = Report {
        rows: Vec::new(),
        verdicts: Vec::new(),
    };
    if want("quant") {
        bench_quant(&mut r);
    }
    if want("prec") {
        bench_prec(&mut r);
    }
    let g = rand_f32(GRAD_N, 1);
    if want("stoch") {
        bench_stoch(&mut r, &g);
    }
    if want("sketch") {
        bench_sketch(&mut r, &g);
    }
    if want("qtopk") {
        bench_qtopk(&mut r, &g);
    }
    drop(g);
    if want("vsa") {
        bench_vsa(&mut r);
    }
    println!("\ntargets (one thread, level {}):", cpu::active());
    for v in &r.verdicts {
        println!("  {v}");
    }
    if let Some(p) = json {
        let rows: Vec<String> = r
            .rows
            .iter()
            .map(|x| {
                format!(
                    "{{\"group\": {:?}, \"name\": {:?}, \"secs\": {:e}, \"bytes\": {}}}",
                    x.group, x.name, x.secs, x.bytes
                )
            })
            .collect();
        let s = format!(
            "{{\"cpu\": {:?}, \"level\": {:?}, \"rows\": [\n{}\n]}}\n",
            cpu::describe(),
            cpu::active().name(),
            rows.join(",\n")
        );
        std::fs::write(&p, s).expect("write --json file");
    }
}
