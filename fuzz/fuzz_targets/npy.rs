//! Arbitrary bytes → the `.npy` reader and the checks applied to mask, potential and initial
//! density arrays (see `fuzz/src/harness.rs`).
#![no_main]

#[path = "../src/harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = harness::fuzz_npy(data);
});
