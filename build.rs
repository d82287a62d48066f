//! Build script. With the `cuda` feature it will compile `cuda/*.cu` with nvcc
//! (DESIGN.md, "CUDA"); the kernels are a later issue, so today it only checks
//! that nvcc can be found and says how to get it when it cannot.

use std::path::PathBuf;

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

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cuda");
    println!("cargo:rerun-if-env-changed=NVCC");
    println!("cargo:rerun-if-env-changed=CUDA_HOME");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_some() {
        match find_nvcc() {
            Some(p) => println!("cargo:warning=nvcc found at {}; no CUDA kernels exist yet (later issue)", p.display()),
            None => panic!(
                "feature `cuda` needs nvcc: set NVCC or CUDA_HOME, or install it from PyPI with \
                 `pip install nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
                 nvidia-cuda-runtime==13.0.96` (the binary lands in site-packages/nvidia/cu13/bin)"
            ),
        }
    }
}
