//! Fuzz target: arbitrary bytes as a `.npy` file through the format detector and readers.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::read_file(data, "fuzz.npy");
    // The `.npy` reader on its own too (the examples and the CLI call it directly).
    let _ = ndlab_io::npy::read_npy(data).and_then(|a| a.into_kernel());
});
