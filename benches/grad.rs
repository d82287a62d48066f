//! Gradient compression throughput, one thread (per-core figures), in bytes
//! of f32 gradient per second, each beside a named baseline in the same run:
//! `read floor` (summing the same f32 buffer: what one core can stream) and
//! the portable scalar level of the ternary quantizer.
//!
//! Run: `cargo bench --bench grad` (set `GRAD_BENCH_N` to change the size,
//! default 10M floats = 40 MB, as in ANCHORS.md's NumPy count sketch).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tritter_accel::grad::accumulate::TernaryAccumulator;
use tritter_accel::grad::compress::{
    payload::crc32, projection::Projection, ternary, topk, Compressor, CompressorConfig,
    CountSketch, FetchSgd, Method,
};
use tritter_accel::rng;

fn n() -> usize {
    std::env::var("GRAD_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn grad(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| rng::uniform_f32(1, i as u64) * 2.0 - 1.0)
        .collect()
}

fn benches(c: &mut Criterion) {
    eprintln!("# {}", tritter_accel::cpu::describe());
    tritter_accel::parallel::set_num_threads(1);
    let n = n();
    let g = grad(n);
    let mut grp = c.benchmark_group("grad_1thread");
    grp.throughput(Throughput::Bytes(4 * n as u64));
    grp.sample_size(10);

    // Integer max of the bit patterns: vectorizes, so it runs at the speed
    // one core streams the buffer.
    grp.bench_function("baseline/read_floor", |b| {
        b.iter(|| black_box(&g).iter().fold(0u32, |a, &v| a.max(v.to_bits())))
    });

    // Count sketch into n/32 buckets (1 row) and 3 rows of n/96.
    for (rows, cols) in [(1usize, n / 32), (3, n / 96)] {
        let cs = CountSketch::new(n, rows, cols, 7).unwrap();
        let mut t = vec![0.0f32; cs.table_len()];
        grp.bench_function(format!("count_sketch/rows{rows}_ratio32"), |b| {
            b.iter(|| {
                t.fill(0.0);
                cs.accumulate(black_box(&g), &mut t).unwrap();
            })
        });
    }
    // ANCHORS.md's NumPy shape: 10M into 312,500 buckets.
    let cs = CountSketch::new(n, 1, 312_500, 7).unwrap();
    let mut t = vec![0.0f32; cs.table_len()];
    grp.bench_function("count_sketch/rows1_312500_buckets", |b| {
        b.iter(|| {
            t.fill(0.0);
            cs.accumulate(black_box(&g), &mut t).unwrap();
        })
    });

    let block = ternary::DEFAULT_BLOCK;
    let mut s = vec![0.0f32; ternary::num_blocks(n, block)];
    let mut p = vec![0u8; ternary::packed_len(n)];
    for lv in tritter_accel::cpu::supported_levels() {
        grp.bench_function(format!("ternary_quantize/{lv}"), |b| {
            b.iter(|| {
                ternary::quantize_into_level(black_box(&g), block, 3, &mut s, &mut p, lv).unwrap()
            })
        });
    }
    let mut out = vec![0.0f32; n];
    grp.bench_function("ternary_dequantize", |b| {
        b.iter(|| ternary::dequantize_into(&s, &p, block, &mut out, None).unwrap())
    });
    grp.bench_function("topk/ratio32", |b| {
        b.iter(|| topk::top_k(black_box(&g), topk::k_for_ratio(n, 32.0)).unwrap())
    });
    let pr = Projection::new(n, n / 32, 5).unwrap();
    let mut y = vec![0.0f32; n / 32];
    grp.bench_function("projection/ratio32", |b| {
        b.iter(|| pr.project(black_box(&g), &mut y).unwrap())
    });
    for (name, method) in [
        ("compressor_ef/topk32", Method::TopK),
        ("compressor_ef/ternary", Method::Ternary),
        ("compressor_ef/qtopk32_v2", Method::QTopK),
    ] {
        let mut comp = Compressor::new(
            n,
            CompressorConfig {
                method,
                ratio: 32.0,
                ..Default::default()
            },
        )
        .unwrap();
        grp.bench_function(name, |b| b.iter(|| comp.compress(black_box(&g)).unwrap()));
    }
    let cs = CountSketch::new(n, 3, n / 96, 7).unwrap();
    let tab = cs.sketch(&g).unwrap();
    let mut f = FetchSgd::new(cs, n / 96 / 4, 0.9).unwrap();
    grp.bench_function("fetchsgd_step/rows3_ratio32", |b| {
        b.iter(|| f.step(black_box(&tab)).unwrap())
    });
    let mut acc = TernaryAccumulator::new(n, block, 1).unwrap();
    grp.bench_function("ternary_accumulate_add", |b| {
        b.iter(|| acc.add(black_box(&g), 1.0).unwrap())
    });
    grp.finish();

    let bytes: Vec<u8> = p.clone();
    let mut grp = c.benchmark_group("payload");
    grp.throughput(Throughput::Bytes(bytes.len() as u64));
    grp.sample_size(10);
    grp.bench_function("crc32", |b| b.iter(|| crc32(black_box(&bytes))));
    grp.finish();
}

/// The two-phase region exchange on the char LM's large DDP bucket (271,968
/// floats) at 8 ranks, quantized top-k 32x with 3-bit levels and error
/// feedback: one rank's three calls per step (what the DDP hook spends in
/// the library), on one thread and on two, beside the read floor of the same
/// bucket. `cargo bench --bench grad -- region` (`REGION_BENCH_RATIO=24`
/// for another ratio, `REGION_BENCH_N` for another bucket length; the group
/// keeps its name).
fn region_benches(c: &mut Criterion) {
    use tritter_accel::grad::compress::RegionExchange;
    tritter_accel::parallel::set_num_threads(1);
    let n: usize = std::env::var("REGION_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(271_968);
    let ratio: f64 = std::env::var("REGION_BENCH_RATIO")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32.0);
    let world = 8;
    let cfg = CompressorConfig {
        method: Method::QTopK,
        ratio,
        value_bits: 3,
        error_feedback: true,
        ..Default::default()
    };
    let grads: Vec<Vec<f32>> = (0..world)
        .map(|r| {
            (0..n)
                .map(|i| {
                    let u = rng::uniform_f32(100 + r as u64, i as u64) * 2.0 - 1.0;
                    u * u * u // heavier tails than uniform, like a gradient
                })
                .collect()
        })
        .collect();
    let mut ranks: Vec<RegionExchange> = (0..world)
        .map(|r| RegionExchange::new(n, world, r, cfg, cfg, None).unwrap())
        .collect();
    let slot = ranks[0].slot_bytes();
    let oslot = ranks[0].owner_slot_bytes();
    // one step of every rank, so the received and gathered rows are real
    let mut slots = vec![vec![0u8; world * slot]; world];
    for r in 0..world {
        ranks[r].compress(&grads[r], &mut slots[r]).unwrap();
    }
    let mut gathered = vec![0u8; world * oslot];
    let mut received0 = vec![0u8; world * slot];
    for j in 0..world {
        let mut recv = vec![0u8; world * slot];
        for i in 0..world {
            recv[i * slot..(i + 1) * slot].copy_from_slice(&slots[i][j * slot..(j + 1) * slot]);
        }
        if j == 0 {
            received0.copy_from_slice(&recv);
        }
        ranks[j]
            .reduce(&recv, &mut gathered[j * oslot..(j + 1) * oslot])
            .unwrap();
    }
    let mut grp = c.benchmark_group("region_8ranks_qtopk32_3bit");
    grp.throughput(Throughput::Bytes(4 * n as u64));
    grp.sample_size(20);
    let g0 = &grads[0];
    grp.bench_function("baseline/read_floor", |b| {
        b.iter(|| black_box(g0).iter().fold(0u32, |a, &v| a.max(v.to_bits())))
    });
    let mut out = vec![0u8; world * slot];
    let mut own = vec![0u8; oslot];
    let mut upd = vec![0f32; n];
    // one thread, and the regions on two (same bits)
    for threads in [1usize, 2] {
        tritter_accel::parallel::set_num_threads(threads);
        grp.bench_function(format!("compress/{threads}t"), |b| {
            b.iter(|| ranks[0].compress(black_box(g0), &mut out).unwrap())
        });
        grp.bench_function(format!("reduce/{threads}t"), |b| {
            b.iter(|| ranks[0].reduce(black_box(&received0), &mut own).unwrap())
        });
        grp.bench_function(format!("decode/{threads}t"), |b| {
            b.iter(|| ranks[0].decode(black_box(&gathered), &mut upd).unwrap())
        });
    }
    tritter_accel::parallel::set_num_threads(1);
    grp.finish();
}

/// The quantized top-k codec alone on fixed data (no error-feedback state,
/// so every iteration does the same work): one region of the char LM's
/// large bucket at 8 ranks (33,996 floats), 3-bit levels, at 32x and 24x;
/// encode, and decode into a dense buffer. `cargo bench --bench grad -- qtopk_codec`.
fn qtopk_codec_benches(c: &mut Criterion) {
    use tritter_accel::grad::compress::qtopk;
    tritter_accel::parallel::set_num_threads(1);
    let n = 33_996usize;
    let x: Vec<f32> = (0..n)
        .map(|i| {
            let u = rng::uniform_f32(7, i as u64) * 2.0 - 1.0;
            u * u * u
        })
        .collect();
    let mut grp = c.benchmark_group("qtopk_codec_33996_3bit");
    grp.throughput(Throughput::Bytes(4 * n as u64));
    grp.sample_size(30);
    for ratio in [32.0f64, 24.0] {
        let (k, r) = qtopk::params_for_ratio(n, ratio, 3);
        grp.bench_function(format!("encode/{ratio}x"), |b| {
            b.iter(|| qtopk::compress(black_box(&x), k, r, 3).unwrap())
        });
        let (levels, stream) = qtopk::compress(&x, k, r, 3).unwrap();
        let mut out = vec![0f32; n];
        grp.bench_function(format!("decode/{ratio}x"), |b| {
            b.iter(|| qtopk::decompress_into(&levels, k, r, black_box(&stream), &mut out).unwrap())
        });
    }
    grp.finish();
}

criterion_group!(grad_benches, benches, region_benches, qtopk_codec_benches);
criterion_main!(grad_benches);
