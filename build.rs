//! Build script. With the `cuda` feature it compiles every `cuda/*.cu` with
//! nvcc into one fat binary embedded in the library (DESIGN.md, "CUDA"):
//! SASS for sm_80, sm_86, sm_89 and sm_90 plus PTX for compute_80, all from
//! one compute_80 front-end pass (the kernels use nothing newer than sm_80's
//! `mma.sync`/`ldmatrix`), so the cost is one `cicc` run and four `ptxas`
//! runs of one translation unit that `#include`s the domain files.
//!
//! It also records `ptxas -v` resource use per kernel and architecture
//! (registers, shared memory, stack frame, spills) in
//! `$OUT_DIR/ptxas_report.txt` (embedded too, see `cuda::resource_report`)
//! and fails the build when a kernel uses local memory (a stack frame or
//! spill stores/loads): every kernel here is on a hot path.
//!
//! nvcc is found through `NVCC`, then `CUDA_HOME`/`CUDA_PATH`, then `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Real architectures that get SASS; PTX is embedded for the first's
/// virtual architecture so newer GPUs JIT-compile it.
const SASS: [&str; 4] = ["sm_80", "sm_86", "sm_89", "sm_90"];
const PTX: &str = "compute_80";

const HOW_TO_GET_NVCC: &str = "feature `cuda` needs nvcc (CUDA 12.x or 13.x). Set NVCC to its path, or \
CUDA_HOME/CUDA_PATH to a toolkit, or put it on PATH. Without a system toolkit, nvcc 13.0 \
installs from PyPI into any directory:\n\n    python3 -m pip install --target .cuda-toolchain \
nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96\n    \
export NVCC=$PWD/.cuda-toolchain/nvidia/cu13/bin/nvcc\n\n(pin nvidia-nvvm: a newer one emits PTX \
the 13.0 assembler rejects). scripts/test.sh does exactly this.";

fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NVCC") {
        return Some(PathBuf::from(p));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(h) = std::env::var_os(var) {
            let p = PathBuf::from(h).join("bin/nvcc");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nvcc"))
            .find(|p| p.is_file())
    })
}

/// One kernel's `ptxas -v` figures for one architecture.
#[derive(Default, Clone)]
struct Usage {
    kernel: String,
    arch: String,
    registers: u32,
    smem: u32,
    stack: u32,
    spill_stores: u32,
    spill_loads: u32,
}

/// The first unsigned integer in `s` right before `unit` (e.g. "12 bytes stack frame").
fn number_before(s: &str, unit: &str) -> Option<u32> {
    let i = s.find(unit)?;
    s[..i].split_whitespace().last()?.parse().ok()
}

/// Parses nvcc's `-Xptxas -v` output (stderr) into one entry per kernel and arch.
fn parse_ptxas(log: &str) -> Vec<Usage> {
    let mut out: Vec<Usage> = Vec::new();
    let mut cur: Option<Usage> = None;
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            if let Some(u) = cur.take() {
                out.push(u);
            }
            let kernel = rest.split('\'').next().unwrap_or("").to_string();
            let arch = rest
                .split("for '")
                .nth(1)
                .and_then(|a| a.split('\'').next())
                .unwrap_or("")
                .to_string();
            cur = Some(Usage {
                kernel,
                arch,
                ..Usage::default()
            });
        } else if let Some(u) = cur.as_mut() {
            if line.contains("bytes stack frame") {
                u.stack = number_before(line, "bytes stack frame").unwrap_or(0);
                u.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
                u.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
            } else if line.contains("Used") && line.contains("registers") {
                u.registers = number_before(line, "registers").unwrap_or(0);
                u.smem = number_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    if let Some(u) = cur {
        out.push(u);
    }
    out
}

fn report(usages: &[Usage], nvcc_version: &str) -> String {
    let mut s = format!(
        "ptxas resource use per kernel (nvcc: {nvcc_version})\n{:<44} {:>6} {:>5} {:>7} {:>6} {:>7} {:>7}\n",
        "kernel", "arch", "regs", "smem", "stack", "spill-st", "spill-ld"
    );
    for u in usages {
        s += &format!(
            "{:<44} {:>6} {:>5} {:>7} {:>6} {:>7} {:>7}\n",
            u.kernel, u.arch, u.registers, u.smem, u.stack, u.spill_stores, u.spill_loads
        );
    }
    s
}

fn compile_cuda(out_dir: &Path) {
    let nvcc = find_nvcc().unwrap_or_else(|| panic!("{HOW_TO_GET_NVCC}"));
    let version = Command::new(&nvcc)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run nvcc at {}: {e}\n\n{HOW_TO_GET_NVCC}",
                nvcc.display()
            )
        });
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .find(|l| l.contains("release"))
        .unwrap_or("unknown")
        .trim()
        .to_string();

    let cuda_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&cuda_dir)
        .expect("read cuda/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu"))
        .collect();
    sources.sort();
    assert!(!sources.is_empty(), "no cuda/*.cu files");
    let mut tu =
        String::from("// Generated by build.rs: every cuda/*.cu in one translation unit.\n");
    for s in &sources {
        tu += &format!("#include \"{}\"\n", s.display());
    }
    let tu_path = out_dir.join("tritter_kernels.cu");
    std::fs::write(&tu_path, tu).expect("write translation unit");

    let fatbin = out_dir.join("tritter_kernels.fatbin");
    let report_path = out_dir.join("ptxas_report.txt");
    let mut codes: Vec<&str> = SASS.to_vec();
    codes.push(PTX);
    let gencode = format!("-gencode=arch={PTX},code=[{}]", codes.join(","));
    // IEEE rounding, no contraction: integer/ternary results must match the CPU.
    let flags = [
        "-O3",
        "-std=c++17",
        "-ftz=false",
        "-prec-div=true",
        "-prec-sqrt=true",
        "-fmad=false",
        "-Xptxas",
        "-v",
        "-Werror",
        "all-warnings",
    ];

    // The check, test, clippy and release builds all need the same image:
    // compile once per (sources, flags, nvcc) and reuse it from a cache in
    // the target directory.
    let mut key = std::collections::hash_map::DefaultHasher::new();
    use std::hash::{Hash, Hasher};
    (&version, &gencode, &flags).hash(&mut key);
    let mut headers: Vec<PathBuf> = std::fs::read_dir(&cuda_dir)
        .expect("read cuda/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cu" || x == "cuh"))
        .collect();
    headers.sort();
    for p in &headers {
        (p.file_name(), std::fs::read(p).expect("read cuda source")).hash(&mut key);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let cache = target
        .join("cuda-kernels")
        .join(format!("{:016x}", key.finish()));
    if cache.join("ok").is_file() {
        std::fs::copy(cache.join("tritter_kernels.fatbin"), &fatbin).expect("copy cached image");
        std::fs::copy(cache.join("ptxas_report.txt"), &report_path).expect("copy cached report");
        return;
    }

    let jobs = std::env::var("NUM_JOBS").unwrap_or_else(|_| "2".into());
    let mut cmd = Command::new(&nvcc);
    cmd.arg("-fatbin")
        .arg(&gencode)
        .args(["--threads", &jobs])
        .args(flags)
        .arg("-I")
        .arg(&cuda_dir)
        .arg("-o")
        .arg(&fatbin)
        .arg(&tu_path);
    let t0 = std::time::Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run nvcc at {}: {e}", nvcc.display()));
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        panic!(
            "nvcc failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            log
        );
    }
    let usages = parse_ptxas(&log);
    let rep = report(&usages, &version);
    std::fs::write(&report_path, &rep).expect("write report");
    println!(
        "cargo:warning=compiled cuda/*.cu ({} kernels x {} archs) with {} in {:.1} s",
        usages.iter().filter(|u| u.arch == SASS[0]).count(),
        SASS.len(),
        version,
        t0.elapsed().as_secs_f64()
    );
    let bad: Vec<String> = usages
        .iter()
        .filter(|u| u.stack > 0 || u.spill_stores > 0 || u.spill_loads > 0)
        .map(|u| {
            format!(
                "{} ({}): {} bytes stack, {} spill stores, {} spill loads",
                u.kernel, u.arch, u.stack, u.spill_stores, u.spill_loads
            )
        })
        .collect();
    if !bad.is_empty() {
        panic!(
            "kernels use local memory (stack frame or register spills):\n  {}\n\n{rep}",
            bad.join("\n  ")
        );
    }
    // Only a clean image is cached (a failing one fails every build).
    if std::fs::create_dir_all(&cache).is_ok()
        && std::fs::copy(&fatbin, cache.join("tritter_kernels.fatbin")).is_ok()
        && std::fs::copy(&report_path, cache.join("ptxas_report.txt")).is_ok()
    {
        let _ = std::fs::write(cache.join("ok"), "");
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        println!("cargo:rerun-if-changed=cuda");
        for v in [
            "NVCC",
            "CUDA_HOME",
            "CUDA_PATH",
            "PATH",
            "NVCC_CCBIN",
            "CARGO_TARGET_DIR",
        ] {
            println!("cargo:rerun-if-env-changed={v}");
        }
        let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
        compile_cuda(&out_dir);
    }
}
