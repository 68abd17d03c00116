//! The messages of the whole-network view (they travel inside [`crate::protocol`]'s request and
//! response bodies): opening a network and its data, preparing a plan (its factors, and the
//! decoupled model as ONNX for a runtime that runs user graphs), evaluating a plan on a range of
//! test items, and timing the network in the browser.

use super::Choice;
use ndlab_core::layer::Order;
use ndlab_core::network::plan::NetworkPlan;
use ndlab_core::network::ConvImpl;
use serde::{Deserialize, Serialize};

/// Names an opened network (a new one at every open).
pub type NetworkId = u64;

/// Which network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NetworkSource {
    /// The Fashion-MNIST CNN trained for ndlab, with its test subset and calibration images.
    BuiltIn,
    /// The user's ONNX file (it travels next to the request, never uploaded).
    File {
        /// The file's name.
        name: String,
    },
}

/// One conv of an opened network, as the per-layer table shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvSummary {
    /// The node's label.
    pub name: String,
    /// N, C per group, Kh, Kw.
    pub shape: [usize; 4],
    /// Groups.
    pub group: usize,
    /// Input and output height and width at batch 1.
    pub in_hw: (usize, usize),
    /// Output height and width.
    pub out_hw: (usize, usize),
    /// Regular MACs at batch 1.
    pub macs: u64,
    /// Full rank, DW→PW then PW→DW.
    pub full_rank: [usize; 2],
    /// The decoupled layer's MACs at T = 1..=full rank, DW→PW then PW→DW.
    pub macs_at_t: [Vec<u64>; 2],
    /// Energy kept at T = 1..=full rank (data-free), DW→PW then PW→DW.
    pub energy: [Vec<f64>; 2],
    /// Relative weight error at T (data-free), DW→PW then PW→DW.
    pub weight_error: [Vec<f64>; 2],
}

impl ConvSummary {
    /// Index of an ordering in the pairs.
    pub fn at(order: Order) -> usize {
        match order {
            Order::DwPw => 0,
            Order::PwDw => 1,
        }
    }
}

/// An opened network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkSummary {
    /// This opening.
    pub network_id: NetworkId,
    /// A name for the page.
    pub name: String,
    /// Where it comes from (and its licence).
    pub source: String,
    /// The input's dims at batch 1.
    pub input: Vec<usize>,
    /// Every conv.
    pub convs: Vec<ConvSummary>,
    /// All convs' MACs at batch 1.
    pub macs: u64,
    /// Whether ndlab's own kernels run the whole network (else a runtime of user graphs must).
    pub runs_here: bool,
    /// Class names, when known (the built-in network's).
    pub classes: Vec<String>,
    /// The test data, when there is some.
    pub data: Option<DataSummary>,
    /// Calibration items (data-aware decoupling and the budget's sensitivity).
    pub calibration: usize,
}

/// Test data of a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// Where it comes from.
    pub name: String,
    /// Items.
    pub n: usize,
    /// Whether it has labels (accuracy needs them).
    pub labelled: bool,
}

/// A plan to prepare: how T is chosen, in which ordering, and whether data-aware.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRequest {
    /// The ordering.
    pub order: Order,
    /// How T is chosen.
    pub choice: Choice,
    /// Data-aware decoupling (weighted factors, pointwise weights refit) on the calibration data.
    pub data_aware: bool,
}

/// A prepared plan: what each conv does, and how each runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedPlan {
    /// The network it is for.
    pub network_id: NetworkId,
    /// What was asked.
    pub request: PlanRequest,
    /// The plan (per layer: T, MACs, weight error, …).
    pub plan: NetworkPlan,
    /// How each conv runs (the decoupled ones' factors).
    pub impls: Vec<ConvImpl>,
    /// How the budget was allocated, when it was.
    pub allocation: Option<String>,
}

/// Evaluate a plan on test items `range` (items `start..end` of the network's test data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRequest {
    /// The network.
    pub network_id: NetworkId,
    /// A key the page gives the point (answers carry it).
    pub key: u64,
    /// How each conv runs.
    pub impls: Vec<ConvImpl>,
    /// The items.
    pub range: (usize, usize),
    /// Also each decoupled conv's own output error on these items (the table's column).
    pub layer_errors: bool,
}

/// A plan evaluated on a range of test items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// The network.
    pub network_id: NetworkId,
    /// The request's key.
    pub key: u64,
    /// The items.
    pub range: (usize, usize),
    /// Items predicted right (0 without labels).
    pub correct: usize,
    /// Items the original network predicts right.
    pub correct_original: usize,
    /// Items whose prediction differs from the original network's: (index, original, decoupled).
    pub changed: Vec<(usize, usize, usize)>,
    /// Per conv, (‖ΔY‖², ‖Y‖²) of the conv's own output on these items (its input from the
    /// original network), when asked; empty otherwise.
    pub layer_errors: Vec<(f64, f64)>,
    /// ‖Δz‖², ‖z‖² of the network's first output against the original's.
    pub output_error: (f64, f64),
    /// Pictures of the first few changed items (when layer errors are asked: the current choice).
    #[serde(default)]
    pub thumbs: Vec<Thumb>,
}

/// A test item as a small grey picture (its first channel, scaled to 0–255).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thumb {
    /// The item.
    pub index: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// h·w grey values.
    pub grey: Vec<u8>,
}

/// The whole network timed in this browser: original against a plan, on `items` test items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeRequest {
    /// The network.
    pub network_id: NetworkId,
    /// The request's key.
    pub key: u64,
    /// How each conv runs.
    pub impls: Vec<ConvImpl>,
    /// Items per run.
    pub items: usize,
}

/// Times measured (the median of interleaved runs), milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeResult {
    /// The request's key.
    pub key: u64,
    /// Original network.
    pub original_ms: f64,
    /// The plan.
    pub decoupled_ms: f64,
    /// Items per run.
    pub items: usize,
}

/// One conv of the opened network with its real input on one test item, for the single-layer
/// lab ([`crate::protocol::RequestBody::NetworkLayer`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkLayerData {
    /// The conv's label.
    pub name: String,
    /// The network's name.
    pub network: String,
    /// The conv (raw kernel, its bias, geometry resolved for this input size).
    pub layer: ndlab_core::layer::ConvLayer,
    /// What feeds it on the item (the network's own activations).
    pub input: ndlab_core::layer::FeatureMap,
    /// The test item.
    pub item: usize,
    /// Its label's name, when the data is labelled.
    pub label: Option<String>,
}
