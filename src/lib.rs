//! ndlab's core: network decoupling (Guo et al., BMVC 2018) and everything it is measured with.
//!
//! The core is pure: it takes bytes and plain structs and returns [`Result`]; it never touches the
//! browser. The web app (`app`, wasm only) and the command line (`src/bin/ndlab.rs`) are thin hosts.

pub mod charts;
pub mod cli;
pub mod conv;
pub mod cost;
pub mod decouple;
pub mod engine;
pub mod error;
pub mod examples;
pub mod files;
pub mod formats;
pub mod layer;
pub mod npy;
pub mod picture;
pub mod protocol;
pub mod relatives;
pub mod state;
pub mod svd;
pub mod vgg;

/// The browser app (wasm only): components hold signals and views, not maths.
#[cfg(target_arch = "wasm32")]
pub mod app;

pub use error::{Error, Result};
pub use layer::{ConvGeometry, ConvLayer, FeatureMap, Kernel, Order, Padding};
