//! ndlab's file formats: bytes in, the core's plain structs out (and back).
//!
//! Every reader validates sizes against the bytes it has before allocating and refuses hostile
//! input with one clear [`ndlab_core::Error`]; none panics on user data.

pub mod dataset;
pub mod formats;
pub mod npy;
pub mod onnx_graph;
pub mod picture;
pub mod vgg;
