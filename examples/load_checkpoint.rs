//! Load-time benchmark of a Hugging Face BitNet checkpoint (see
//! `scripts/bench-load.sh`): every ternary weight into a `TernaryMatrix`,
//! every float tensor to f32 (`--floats f32`) or left mapped and touched once
//! (`--floats mapped`, zero-copy); against a plain read of the same files in
//! the same run. Prints medians, GB/s, the ratio, and resident memory.
//!
//! Tensors load in file order (each file's `names()`), so
//! the loader's read-ahead runs in front of the conversion. `--cold` evicts
//! the files from the page cache (`posix_fadvise(DONTNEED)`) before every
//! timed read and load, so both sides read the disk; without it both read
//! from the page cache.
//!
//! `cargo run --release --example load_checkpoint -- DIR [--floats f32|mapped] [--reps 3] [--cold]`

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

/// Drops the page-cache pages of `p` (clean pages of a file nobody maps).
fn evict(p: &std::path::Path) {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::open(p).unwrap();
    // SAFETY: a valid descriptor; the advice only drops clean cached pages.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise");
}

/// CPU seconds (user + system, all threads) of this process so far.
fn cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
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
    let order: Vec<String> = ck
        .files()
        .iter()
        .flat_map(|f| f.names().map(str::to_string))
        .collect();
    for n in &order {
        let n = n.as_str();
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
    let cold = args.iter().any(|a| a == "--cold");
    // Warm the page cache once, so both sides read from memory.
    if !cold {
        for p in &files {
            drop(std::fs::read(p).unwrap());
        }
    }
    let (mut t_read, mut t_load, mut c_read, mut c_load) = (vec![], vec![], vec![], vec![]);
    let mut last = None;
    for _ in 0..reps {
        if cold {
            files.iter().for_each(|p| evict(p));
        }
        let (t, c) = (Instant::now(), cpu_s());
        let mut sum = 0usize;
        for p in &files {
            let v = std::fs::read(p).unwrap();
            sum += v.len();
        }
        assert_eq!(sum as u64, total);
        t_read.push(t.elapsed().as_secs_f64());
        c_read.push(cpu_s() - c);
        drop(last.take());
        if cold {
            files.iter().for_each(|p| evict(p));
        }
        let (t, c) = (Instant::now(), cpu_s());
        let r = load(dir, mapped);
        t_load.push(t.elapsed().as_secs_f64());
        c_load.push(cpu_s() - c);
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
        "plain read (std::fs::read, {} cache): median {:.3} s = {:.2} GB/s",
        if cold { "cold" } else { "warm" },
        tr,
        total as f64 / tr / 1e9
    );
    println!(
        "load: median {:.3} s = {:.2} GB/s of file; load / plain read = {:.2}x",
        tl,
        total as f64 / tl / 1e9,
        tl / tr
    );
    println!(
        "CPU time (user + system, all threads): plain read {:.3} s, load {:.3} s",
        median(c_read),
        median(c_load)
    );
    println!("packed ternary bytes {:.3} GB, floats as loaded {:.3} GB (stored {:.3} GB), held by the library {:.3} GB",
        l.packed_bytes as f64 / 1e9, floats_as_loaded as f64 / 1e9, l.float_bytes_stored as f64 / 1e9, held as f64 / 1e9);
    println!("RSS after load {:.3} GB = {:.3}x (packed + floats as loaded); peak RSS {:.3} GB (includes the plain-read buffers)",
        rss / 1e9, rss / base, hwm / 1e9);
    std::hint::black_box((&ck, l.touched));
}
