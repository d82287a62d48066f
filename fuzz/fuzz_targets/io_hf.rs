//! Any bytes as a Hugging Face `config.json` and as a transformers-packed
//! BitNet weight (`[r, c]` with the shape taken from the first bytes).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tritter_accel::io::hf::{hf_to_2bit, HfConfig};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = HfConfig::parse(s);
    }
    if data.len() >= 2 {
        let r = data[0] as usize % 9;
        let c = data[1] as usize % 17;
        let _ = hf_to_2bit(&data[2..], r, c, "fuzz.weight");
    }
});
