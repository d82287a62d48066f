#![no_main]
//! `cargo fuzz run payload_qtopk` (see fuzz/README.md); the checks live in
//! `src/targets.rs`, shared with the seeded mutation test.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tritter_accel_fuzz::targets::payload_qtopk(data));
