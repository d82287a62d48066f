//! Load-time benchmark of a Hugging Face BitNet checkpoint (see
//! `scripts/bench-load.sh`): every ternary weight into a `TernaryMatrix`,
//! every float tensor to f32 (`--floats f32`) or left mapped and touched once
//! (`--floats mapped`, zero-copy); against a plain read of the same files in
//! the same run. Prints medians, GB/s, the ratio, and resident memory.
//!
//! `cargo run --release --example load_checkpoint -- DIR [--floats f32|mapped] [--reps 3]`

use std::time::Instant;

use tritter_accel::io::{Dtype, HfCheckpoint};

fn rss_kib(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

struct Loaded {
    matrices: Vec<tritter_accel::ternary::TernaryMatrix>,
    floats: Vec<ndarray::ArrayD<f32>>,
    packed_bytes: usize,
    float_bytes_stored: usize,
    touched: u64,
}

fn load(dir: &str, mapped: bool) -> (HfCheckpoint, Loaded) {
    let ck = HfCheckpoint::open(dir).expect("open");
    let mut l = Loaded {
        matrices: vec![],
        floats: vec![],
        packed_bytes: 0,
        float_bytes_stored: 0,
        touched: 0,
    };
    for n in ck.names() {
        let info = ck.info(n).unwrap().clone();
        if ck.is_ternary(n) {
            l.matrices.push(ck.ternary(n).expect("ternary"));
            l.packed_bytes += info.nbytes;
            ck.release(n);
        } else if n.ends_with("_scale") {
            continue;
        } else if info.dtype.is_float() || info.dtype == Dtype::U8 {
            l.float_bytes_stored += info.nbytes;
            if mapped {
                // Zero-copy: bring the pages in once (one read of each page).
                let b = ck.bytes(n).unwrap();
                l.touched += b.iter().step_by(4096).map(|&x| x as u64).sum::<u64>();
            } else {
                l.floats.push(ck.tensor_f32(n).unwrap());
                ck.release(n);
            }
        }
    }
    (ck, l)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .expect("usage: load_checkpoint DIR [--floats f32|mapped] [--reps N]");
    let mapped = args
        .windows(2)
        .any(|w| w[0] == "--floats" && w[1] == "mapped");
    let reps: usize = args
        .windows(2)
        .find(|w| w[0] == "--reps")
        .map_or(3, |w| w[1].parse().unwrap());
    let files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    let total: u64 = files.iter().map(|p| p.metadata().unwrap().len()).sum();
    // Warm the page cache once, so both sides read from memory.
    for p in &files {
        drop(std::fs::read(p).unwrap());
    }
    let (mut t_read, mut t_load) = (vec![], vec![]);
    let mut last = None;
    for _ in 0..reps {
        let t = Instant::now();
        let mut sum = 0usize;
        for p in &files {
            let v = std::fs::read(p).unwrap();
            sum += v.len();
        }
        assert_eq!(sum as u64, total);
        t_read.push(t.elapsed().as_secs_f64());
        drop(last.take());
        let t = Instant::now();
        let r = load(dir, mapped);
        t_load.push(t.elapsed().as_secs_f64());
        last = Some(r);
    }
    let (ck, l) = last.unwrap();
    let rss = rss_kib("VmRSS:") as f64 * 1024.0;
    let hwm = rss_kib("VmHWM:") as f64 * 1024.0;
    let (tr, tl) = (median(t_read), median(t_load));
    let held: usize = l.matrices.iter().map(|m| m.memory_bytes()).sum::<usize>()
        + l.floats.iter().map(|a| a.len() * 4).sum::<usize>();
    let floats_as_loaded = if mapped {
        l.float_bytes_stored
    } else {
        l.floats.iter().map(|a| a.len() * 4).sum()
    };
    let base = (l.packed_bytes + floats_as_loaded) as f64;
    println!(
        "checkpoint: {dir} ({:.3} GB in {} file(s), {} ternary matrices)",
        total as f64 / 1e9,
        files.len(),
        l.matrices.len()
    );
    println!(
        "floats: {}",
        if mapped {
            "mapped (zero-copy, touched once)"
        } else {
            "converted to f32"
        }
    );
    println!(
        "plain read (std::fs::read, warm cache): median {:.3} s = {:.2} GB/s",
        tr,
        total as f64 / tr / 1e9
    );
    println!(
        "load: median {:.3} s = {:.2} GB/s of file; load / plain read = {:.2}x",
        tl,
        total as f64 / tl / 1e9,
        tl / tr
    );
    println!("packed ternary bytes {:.3} GB, floats as loaded {:.3} GB (stored {:.3} GB), held by the library {:.3} GB",
        l.packed_bytes as f64 / 1e9, floats_as_loaded as f64 / 1e9, l.float_bytes_stored as f64 / 1e9, held as f64 / 1e9);
    println!("RSS after load {:.3} GB = {:.3}x (packed + floats as loaded); peak RSS {:.3} GB (includes the plain-read buffers)",
        rss / 1e9, rss / base, hwm / 1e9);
    std::hint::black_box((&ck, l.touched));
}
