#![no_main]
//! `cargo fuzz run unpack_base3` (see fuzz/README.md); the checks live in
//! `src/targets.rs`, shared with the seeded mutation test.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tritter_accel_fuzz::targets::unpack_base3(data));
