//! Seeded mutation test of every decoder: the cargo-fuzz targets of
//! `fuzz/` (their checks, `fuzz/src/targets.rs`, are compiled in here), fed
//! with seeded mutations of valid inputs instead of libFuzzer's, so it runs
//! on the stable toolchain and in CI.
//!
//! Deterministic: input `i` of a target is a pure function of
//! `(TRITTER_MUTATION_SEED, target, i)`; a time budget only decides how many
//! inputs run. A failure prints the seed, the index and the input (hex) so it
//! can be replayed (`TRITTER_MUTATION_REPLAY=target:hex`) or handed to
//! `cargo fuzz run target input-file`.
//!
//! Environment:
//! * `TRITTER_MUTATION_SECS` (default 1): wall-clock budget per target;
//! * `TRITTER_MUTATION_MIN` (default 200): inputs per target at least (the
//!   budget never cuts below it);
//! * `TRITTER_MUTATION_SEED` (default 1);
//! * `TRITTER_MUTATION_REPLAY=target:hex`: run one input only.
//! * `TRITTER_MUTATION_WRITE_CORPUS=dir`: write the seed inputs to
//!   `dir/<target>/seed-<n>` (a starting corpus for cargo fuzz) and stop.

#[path = "../fuzz/src/targets.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// SplitMix64: the input stream's generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Values that sit on the edges the decoders check.
const INT_EDGES: [u32; 10] = [
    0,
    1,
    2,
    3,
    4,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    0xFFFF_FFFE,
    256,
];
const FLOAT_EDGES: [f32; 10] = [
    f32::MAX,
    -f32::MAX,
    1.7014117e38, // f32::MAX / 2
    3e38,
    f32::NAN,
    f32::INFINITY,
    -0.0,
    f32::MIN_POSITIVE,
    1e-45,
    -1.0,
];

/// One to four stacked mutations of `input`.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let n = v.len();
        match rng.below(11) {
            0 if n > 0 => {
                let i = rng.below(n);
                v[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                v[i] = [0u8, 0xFF, 0x7F, 0x80, 0x03, 0xF3, 242, 243][rng.below(8)];
            }
            2 if n > 0 => {
                let i = rng.below(n);
                v[i] = rng.next() as u8;
            }
            3 => {
                let i = rng.below(n + 1);
                v.insert(i, rng.next() as u8);
            }
            4 if n > 0 => {
                v.remove(rng.below(n));
            }
            5 => v.truncate(rng.below(n + 1)),
            6 => {
                let extra = 1 + rng.below(16);
                v.extend((0..extra).map(|_| rng.next() as u8));
            }
            7 if n >= 4 => {
                let i = rng.below(n - 3);
                let x = INT_EDGES[rng.below(INT_EDGES.len())];
                v[i..i + 4].copy_from_slice(&x.to_le_bytes());
            }
            8 if n >= 4 => {
                // a float edge at a 4-aligned offset (bodies are f32 arrays)
                let i = rng.below(n / 4) * 4;
                if i + 4 <= n {
                    let x = FLOAT_EDGES[rng.below(FLOAT_EDGES.len())];
                    v[i..i + 4].copy_from_slice(&x.to_le_bytes());
                }
            }
            9 if n >= 2 => {
                // copy a chunk over another place
                let len = 1 + rng.below(n.min(16));
                let (a, b) = (rng.below(n - len + 1), rng.below(n - len + 1));
                let chunk = v[a..a + len].to_vec();
                v[b..b + len].copy_from_slice(&chunk);
            }
            _ if n > 0 => {
                // a run of one byte
                let i = rng.below(n);
                let len = (1 + rng.below(8)).min(n - i);
                let b = rng.next() as u8;
                v[i..i + len].fill(b);
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        })
        .unwrap_or(default)
}

#[test]
fn seeded_mutation_of_every_decoder() {
    if let Ok(r) = std::env::var("TRITTER_MUTATION_REPLAY") {
        let (name, h) = r.split_once(':').expect("target:hex");
        let t = targets::TARGETS
            .iter()
            .find(|t| t.0 == name)
            .expect("no such target");
        (t.1)(&unhex(h));
        return;
    }
    if let Ok(dir) = std::env::var("TRITTER_MUTATION_WRITE_CORPUS") {
        for (name, _, seeds) in targets::TARGETS {
            let d = std::path::Path::new(&dir).join(name);
            std::fs::create_dir_all(&d).unwrap();
            for (i, s) in seeds().iter().enumerate() {
                std::fs::write(d.join(format!("seed-{i}")), s).unwrap();
            }
        }
        return;
    }
    let budget = Duration::from_secs_f64(env_num("TRITTER_MUTATION_SECS", 1) as f64);
    let min = env_num("TRITTER_MUTATION_MIN", 200);
    let seed = env_num("TRITTER_MUTATION_SEED", 1);
    // The checks panic on failure; keep the default hook's report for the
    // first one only (catch_unwind below adds the replay line).
    let mut total = 0u64;
    for (ti, (name, check, seeds)) in targets::TARGETS.iter().enumerate() {
        let seeds = seeds();
        // the seeds themselves must pass
        for s in &seeds {
            check(s);
        }
        let start = Instant::now();
        let mut rng = Rng(seed ^ (ti as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
        let mut pool: Vec<Vec<u8>> = seeds.clone();
        let mut i = 0u64;
        while i < min || start.elapsed() < budget {
            let base = &pool[rng.below(pool.len())];
            let input = mutate(&mut rng, base);
            if let Err(e) = catch_unwind(AssertUnwindSafe(|| check(&input))) {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "target {name}, seed {seed}, input {i}: {msg}\n\
                     replay: TRITTER_MUTATION_REPLAY={name}:{} cargo test --test fuzz_mutation",
                    hex(&input)
                );
            }
            // keep some mutants as bases (stacked mutations reach deeper)
            if i.is_multiple_of(16) && pool.len() < 256 {
                pool.push(input);
            }
            i += 1;
        }
        eprintln!(
            "{name}: {i} inputs in {:.2} s ({} seeds)",
            start.elapsed().as_secs_f64(),
            seeds.len()
        );
        total += i;
    }
    eprintln!(
        "seeded mutation (seed {seed}): {total} inputs over {} targets",
        targets::TARGETS.len()
    );
}
