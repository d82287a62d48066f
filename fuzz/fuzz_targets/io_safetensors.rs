//! Any bytes as a safetensors file: open, then read every tensor every way
//! (f32, ternary where it applies). Must return errors, never crash or hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tritter_accel::io::checkpoint::Checkpoint;
use tritter_accel::io::hf::HfCheckpoint;
use tritter_accel::io::safetensors::SafetensorsFile;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = SafetensorsFile::from_bytes(data.to_vec(), "fuzz.safetensors") {
        let ck = Checkpoint::Hf(Box::new(HfCheckpoint::from_file(f)));
        let _ = ck.read_all();
    }
});
