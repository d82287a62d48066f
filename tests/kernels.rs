//! Cross-target check of the NEON kernels (they cannot run on the x86 CI
//! machines). Slow (a full `cargo check` of the crate for aarch64), so it is
//! ignored by default: `cargo test --test kernels -- --ignored`.
//! The kernel-vs-reference tests themselves are unit tests in
//! `src/ternary/matmul/tests.rs`.

use std::process::Command;

#[test]
#[ignore = "runs cargo check for aarch64 (minutes); needs the rustup target"]
fn neon_kernels_type_check_for_aarch64() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("aarch64-unknown-linux-gnu"))
        .unwrap_or(false);
    assert!(
        installed,
        "rustup target aarch64-unknown-linux-gnu is not installed (rustup target add aarch64-unknown-linux-gnu)"
    );
    let status = Command::new(env!("CARGO"))
        .args(["check", "--lib", "--target", "aarch64-unknown-linux-gnu"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "cargo check for aarch64 failed");
}
