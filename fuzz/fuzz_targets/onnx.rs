//! Fuzz target: arbitrary bytes as a `.onnx` file through the format detector and readers.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::read_file(data, "fuzz.onnx");
});
