//! The decoders' fuzz targets. `targets.rs` holds every check; it is also
//! compiled into the library's seeded mutation test (`tests/fuzz_mutation.rs`,
//! run by `scripts/test.sh`), so CI exercises the same checks without
//! libFuzzer.
pub mod targets;
