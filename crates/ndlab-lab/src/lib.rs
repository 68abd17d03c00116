//! ndlab's lab: everything between the maths and the browser, pure and tested natively.
//!
//! - [`engine`]: the worker's brain (loaded layer, decompositions, inputs, caches, timings);
//! - [`protocol`]: the messages between the page and the worker;
//! - [`state`]: every user-visible setting, one struct ↔ the URL;
//! - [`examples`], [`files`]: the built-in catalogue and the user's model files in the lab;
//! - the request lifecycle as pure state machines: [`scheduler`] (the worker's queue), [`client`]
//!   (the page's book of requests), [`page`] (what the page shows and which requests follow).

pub mod client;
pub mod compare_pool;
pub mod engine;
pub mod examples;
pub mod files;
pub mod network;
pub mod page;
pub mod protocol;
pub mod scheduler;
pub mod state;
