//! ndlab in the browser: the page (`src/main.rs` mounts [`app`]) and its Web Worker
//! (`src/bin/worker.rs`). The only crate that sees web-sys, js-sys and leptos; everything it shows
//! is computed by `ndlab-lab` and the crates below it.

/// The browser app (wasm only): components bind signals to the page model; no maths here.
#[cfg(target_arch = "wasm32")]
pub mod app;
