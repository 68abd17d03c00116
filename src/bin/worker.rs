//! The Web Worker entry point (wasm only).
fn main() {}
