//! Arbitrary text → the config parser and everything `jko run` builds from a config
//! (see `fuzz/src/harness.rs`). Non-UTF-8 inputs are not configs and are skipped.
#![no_main]

#[path = "../src/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = harness::fuzz_config(text);
    }
});
