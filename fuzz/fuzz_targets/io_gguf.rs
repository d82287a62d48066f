//! Any bytes as a GGUF file (the magic is prepended half the time so the
//! fuzzer reaches past it): open, then read every tensor as f32 and, for
//! TQ1_0/TQ2_0, as a ternary matrix. Must return errors, never crash or hang.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tritter_accel::io::checkpoint::Checkpoint;
use tritter_accel::io::gguf::GgufFile;

fuzz_target!(|data: &[u8]| {
    let mut v = Vec::with_capacity(data.len() + 4);
    if data.first().is_some_and(|b| b & 1 == 1) {
        v.extend_from_slice(b"GGUF");
        v.extend_from_slice(&data[1..]);
    } else {
        v.extend_from_slice(data);
    }
    if let Ok(g) = GgufFile::from_bytes(v, "fuzz.gguf") {
        let ck = Checkpoint::Gguf(g);
        let _ = ck.read_all();
    }
});
