//! The `ndlab` command line (native only).
fn main() {}
