//! The quantized top-k codec and the region exchange timed call by call,
//! reporting the least, the 25th percentile and the median of many runs: on
//! a shared host other tenants only ever add time, so the least is the
//! steadiest figure of the code's own cost (criterion's estimates in
//! `cargo bench --bench grad -- qtopk_codec` and `-- region` move with the
//! host's load). One library thread.
//!
//! Run: `cargo bench --bench region_timing` (`REGION_TIMING_RUNS` sets the
//! codec's runs, default 2000; the exchange runs a tenth of that).
//!
//! * codec: one region of the char LM's large DDP bucket at 8 ranks (33,996
//!   floats), 3-bit levels, at 32x and 24x: `qtopk::compress` and
//!   `qtopk::decompress_into` on fixed data;
//! * exchange: rank 0 of 8 on each of the char LM's two DDP buckets (271,968
//!   and 6,144 floats) after three warm steps: `compress` (on a fresh copy of
//!   the state each run, so every run does the same work), `reduce`,
//!   `decode`.

use std::time::Instant;
use tritter_accel::grad::compress::{qtopk, CompressorConfig, Method, RegionExchange};
use tritter_accel::rng;

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    format!(
        "least {:7.1}  p25 {:7.1}  median {:7.1} µs",
        v[0],
        v[v.len() / 4],
        v[v.len() / 2]
    )
}

fn time(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

fn cubed(seed: u64, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let u = rng::uniform_f32(seed, i as u64) * 2.0 - 1.0;
            u * u * u // heavier tails than uniform, like a gradient
        })
        .collect()
}

fn main() {
    // criterion-style arguments (`--bench`) are ignored
    let runs: usize = std::env::var("REGION_TIMING_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
        .max(8);
    tritter_accel::parallel::set_num_threads(1);
    println!("# {}", tritter_accel::cpu::describe());
    let n = 33_996usize;
    let x = cubed(7, n);
    for ratio in [32.0f64, 24.0] {
        let (k, r) = qtopk::params_for_ratio(n, ratio, 3);
        let enc = time(runs, || {
            std::hint::black_box(qtopk::compress(std::hint::black_box(&x), k, r, 3).unwrap());
        });
        let (levels, stream) = qtopk::compress(&x, k, r, 3).unwrap();
        let mut out = vec![0f32; n];
        let dec = time(runs, || {
            qtopk::decompress_into(&levels, k, r, std::hint::black_box(&stream), &mut out).unwrap()
        });
        println!("codec {n} floats {ratio}x 3-bit encode: {}", summary(enc));
        println!("codec {n} floats {ratio}x 3-bit decode: {}", summary(dec));
    }
    let world = 8usize;
    let runs = (runs / 10).max(8);
    for (n, ratio) in [
        (271_968usize, 32.0f64),
        (271_968, 24.0),
        (6_144, 32.0),
        (6_144, 24.0),
    ] {
        let cfg = CompressorConfig {
            method: Method::QTopK,
            ratio,
            value_bits: 3,
            error_feedback: true,
            ..Default::default()
        };
        let grads: Vec<Vec<f32>> = (0..world).map(|r| cubed(100 + r as u64, n)).collect();
        let mut ranks: Vec<RegionExchange> = (0..world)
            .map(|r| RegionExchange::new(n, world, r, cfg, cfg, None).unwrap())
            .collect();
        let (slot, oslot) = (ranks[0].slot_bytes(), ranks[0].owner_slot_bytes());
        let mut slots = vec![vec![0u8; world * slot]; world];
        let mut gathered = vec![0u8; world * oslot];
        let mut received0 = vec![0u8; world * slot];
        for _ in 0..3 {
            for r in 0..world {
                ranks[r].compress(&grads[r], &mut slots[r]).unwrap();
            }
            for j in 0..world {
                let mut recv = vec![0u8; world * slot];
                for i in 0..world {
                    recv[i * slot..(i + 1) * slot]
                        .copy_from_slice(&slots[i][j * slot..(j + 1) * slot]);
                }
                if j == 0 {
                    received0.copy_from_slice(&recv);
                }
                ranks[j]
                    .reduce(&recv, &mut gathered[j * oslot..(j + 1) * oslot])
                    .unwrap();
            }
        }
        let (mut out, mut own, mut upd) =
            (vec![0u8; world * slot], vec![0u8; oslot], vec![0f32; n]);
        let (mut tc, mut tr) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let mut rk = ranks[0].clone();
            tc.extend(time(1, || rk.compress(&grads[0], &mut out).unwrap()));
            let mut rk = ranks[0].clone();
            tr.extend(time(1, || rk.reduce(&received0, &mut own).unwrap()));
        }
        let td = time(runs, || ranks[0].decode(&gathered, &mut upd).unwrap());
        println!(
            "exchange {n} floats, rank 0 of {world}, {ratio}x 3-bit compress: {}",
            summary(tc)
        );
        println!(
            "exchange {n} floats, rank 0 of {world}, {ratio}x 3-bit reduce:   {}",
            summary(tr)
        );
        println!(
            "exchange {n} floats, rank 0 of {world}, {ratio}x 3-bit decode:   {}",
            summary(td)
        );
    }
}
