//! Fuzz target: arbitrary bytes as a pickle stream (the data-only reader behind `.pt`/`.pth`):
//! it must build values or refuse, never execute, panic or exhaust memory.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ndlab_io::formats::pickle::load(data);
});
