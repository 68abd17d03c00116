//! ndlab's maths: network decoupling (Guo et al., BMVC 2018) and everything it is measured with.
//!
//! Pure: plain structs in, [`Result`] out; no files, no clock, no browser. The file formats are in
//! `ndlab-io`, the lab (engine, protocol, page model) in `ndlab-lab`, the hosts (page, worker,
//! command line) in `ndlab-web` and `ndlab-cli`.

pub mod conv;
pub mod cost;
pub mod decouple;
pub mod error;
pub mod graph;
pub mod layer;
pub mod network;
pub mod random;
pub mod relatives;
pub mod svd;

pub use error::{Error, Result};
pub use layer::{ConvGeometry, ConvLayer, FeatureMap, Kernel, Order, Padding};
