//! Messages between the browser's UI thread and the Web Worker that runs the [`crate::engine::Engine`].
//!
//! Every request carries an id chosen by the UI thread (strictly increasing); every response
//! repeats the id of the request it answers. The UI keeps only the newest response of each
//! [`RequestKind`] and drops older ones ("newest wins", [`crate::client::RequestBook`]). The
//! engine names what it computes: every loaded layer gets a [`LayerId`] and every prepared input
//! an [`InputId`], carried on each answer derived from them, so whether an answer belongs to what
//! the page shows is an id comparison. Messages travel as JSON strings, so the same types are
//! tested natively.

use crate::network::messages::{
    EvalRequest, EvalResult, NetworkSource, NetworkSummary, PlanRequest, PreparedPlan, TimeRequest,
    TimeResult,
};
use ndlab_core::decouple::{Slice, Spectra};
use ndlab_core::layer::{ConvGeometry, Order};
use serde::{Deserialize, Serialize};

/// Names a loaded layer (and its decompositions): a new one at every load of a layer.
pub type LayerId = u64;

/// Names a prepared input (the layer's input activations for the current image): a new one
/// whenever the layer or the image changes.
pub type InputId = u64;

/// A request from the UI thread to the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the UI thread, strictly increasing.
    pub id: u64,
    /// What is asked.
    pub body: RequestBody,
}

/// What the UI asks the worker to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RequestBody {
    /// Load a built-in example (by id) and decouple it in both orderings (once).
    LoadExample {
        /// Example id from the catalogue.
        example: String,
        /// The slice (ordering, index) the page shows first: its view comes with the layer, so
        /// the first charts need no second round trip (clamped to the layer; None for none).
        #[serde(default)]
        slice: Option<(Order, usize)>,
    },
    /// Use an image decoded by the page (RGBA, row-major, 4 bytes per pixel).
    LoadImage {
        /// RGBA bytes, `width · height · 4` of them.
        rgba: Vec<u8>,
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
    },
    /// Use a built-in image (by id, [`crate::examples::IMAGES`]): the worker fetches and decodes
    /// it itself, so it can start before the page has loaded (and the page's thread decodes nothing).
    LoadBuiltinImage {
        /// Image id.
        image: String,
    },
    /// The factors and original filters of one slice (the channel picker).
    Slice {
        /// Ordering whose slice is wanted.
        order: Order,
        /// Slice index (input channel for DW→PW, output channel for PW→DW).
        slice: usize,
    },
    /// Run the original and the decoupled layer at T on the current input.
    Forward {
        /// Number of terms kept.
        t: usize,
        /// Ordering of the decoupled layer.
        order: Order,
        /// Output channel whose maps are returned.
        out_channel: usize,
    },
    /// Relative output error for every T = 1..=full rank, in one ordering.
    OutputErrorCurve {
        /// Ordering.
        order: Order,
    },
    /// Open the user's model file and list its conv layers. The file itself travels next to the
    /// JSON (a `File`/`Blob`, structured-cloned; the host hands it to the engine with
    /// [`crate::engine::Engine::provide_file`]); it never leaves the machine.
    OpenFile {
        /// The file's name (for messages and the format of `.onnx` files).
        name: String,
        /// Layout of raw 4-D arrays (npy, npz, safetensors).
        layout: ndlab_io::formats::Layout,
    },
    /// Load one conv layer of the opened file into the lab (replaces the loaded layer on success).
    LoadFileLayer {
        /// The layer's name as listed.
        layer: String,
        /// Fold the BatchNorm that follows, when there is one.
        fold_bn: bool,
    },
    /// The related decompositions at an equal cost and their Pareto sweep (issue 5; run by the
    /// page's second worker, which it terminates to cancel).
    Compare(ndlab_core::relatives::session::CompareRequest),
    /// Open a whole network (the built-in one, or the user's ONNX file sent next to the JSON).
    OpenNetwork {
        /// Which.
        source: NetworkSource,
        /// The page's name for this opening (every worker of its pool gets the same).
        network_id: u64,
    },
    /// Test data for the opened network: the user's `.npz` (x, y) or IDX images and labels
    /// files, sent next to the JSON (in that order).
    NetworkData {
        /// The files' names.
        names: Vec<String>,
    },
    /// Prepare a plan of the opened network: its per-layer T and factors.
    PreparePlan(PlanRequest),
    /// Evaluate a prepared plan on a range of test items.
    Evaluate(Box<EvalRequest>),
    /// Time the whole network, original against a plan.
    TimeNetwork(Box<TimeRequest>),
    /// The decoupled network of a plan as ONNX.
    ExportNetwork(PlanRequest),
    /// One conv of the opened network with its real input on a test item (for the lab).
    NetworkLayer {
        /// The conv's index.
        conv: usize,
        /// The test item.
        item: usize,
    },
    /// Load a conv taken from a network, with its real input ([`ResponseBody::NetworkLayer`]),
    /// into the lab: it replaces the loaded layer, and its input replaces the image's.
    LoadLayerData(Box<crate::network::messages::NetworkLayerData>),
}

/// Requests of the same kind supersede each other: only the newest one matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RequestKind {
    /// [`RequestBody::LoadExample`].
    Example,
    /// [`RequestBody::LoadImage`] and [`RequestBody::LoadBuiltinImage`].
    Image,
    /// [`RequestBody::Slice`].
    Slice,
    /// [`RequestBody::Forward`].
    Forward,
    /// [`RequestBody::OutputErrorCurve`].
    Curve,
    /// [`RequestBody::OpenFile`].
    File,
    /// [`RequestBody::Compare`].
    Compare,
    /// [`RequestBody::OpenNetwork`] and [`RequestBody::NetworkData`].
    Network,
    /// [`RequestBody::PreparePlan`].
    Plan,
    /// [`RequestBody::Evaluate`].
    Evaluate,
    /// [`RequestBody::TimeNetwork`].
    Time,
    /// [`RequestBody::ExportNetwork`].
    Export,
    /// [`RequestBody::NetworkLayer`].
    NetworkLayer,
}

impl RequestBody {
    /// The kind of this request (newer requests of a kind make older ones stale).
    pub fn kind(&self) -> RequestKind {
        match self {
            RequestBody::LoadExample { .. } => RequestKind::Example,
            RequestBody::LoadImage { .. } | RequestBody::LoadBuiltinImage { .. } => RequestKind::Image,
            RequestBody::Slice { .. } => RequestKind::Slice,
            RequestBody::Forward { .. } => RequestKind::Forward,
            RequestBody::OutputErrorCurve { .. } => RequestKind::Curve,
            RequestBody::OpenFile { .. } => RequestKind::File,
            // A file layer replaces the loaded layer, as an example does.
            RequestBody::LoadFileLayer { .. } => RequestKind::Example,
            RequestBody::Compare(_) => RequestKind::Compare,
            RequestBody::OpenNetwork { .. } | RequestBody::NetworkData { .. } => RequestKind::Network,
            RequestBody::PreparePlan(_) => RequestKind::Plan,
            RequestBody::Evaluate(_) => RequestKind::Evaluate,
            RequestBody::TimeNetwork(_) => RequestKind::Time,
            RequestBody::ExportNetwork(_) => RequestKind::Export,
            RequestBody::NetworkLayer { .. } => RequestKind::NetworkLayer,
            // It replaces the loaded layer, as an example does.
            RequestBody::LoadLayerData(_) => RequestKind::Example,
        }
    }
}

/// A message from the worker to the UI thread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Id of the request this answers (0 for messages not tied to a request).
    pub id: u64,
    /// The answer.
    pub body: ResponseBody,
}

/// What the worker answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ResponseBody {
    /// The worker has installed its message handler (sent once, id 0). Messages posted to a
    /// worker before that would be lost, so the UI holds its requests until it sees this.
    Ready,
    /// Work in progress (sent during long requests).
    Progress {
        /// What is being done, for a person.
        stage: String,
        /// 0..=1.
        fraction: f64,
    },
    /// A layer was loaded and decoupled in both orderings.
    Layer(Box<LayerSummary>),
    /// A result that is not the last for its request: more answers to the same id follow (the
    /// layer is sent as soon as it is decoupled, then its input once the image has been run
    /// through the network prefix).
    Partial(Box<ResponseBody>),
    /// A new input is ready (image decoded and, when needed, run through the network prefix).
    Input(InputSummary),
    /// One slice's factors.
    Slice(Box<SliceView>),
    /// Original and decoupled output maps of one channel, with timings.
    Forward(Box<ForwardResult>),
    /// Output relative error for T = 1..=full rank.
    OutputErrorCurve(ErrorCurve),
    /// The conv layers of an opened file.
    FileListing(Box<crate::files::FileListing>),
    /// One finished row of a comparison (sent while it runs).
    CompareRow(Box<ndlab_core::relatives::session::MethodRow>),
    /// The finished comparison.
    Compare(Box<ndlab_core::relatives::session::CompareReport>),
    /// An opened network (or its new test data).
    Network(Box<NetworkSummary>),
    /// A prepared plan.
    Plan(Box<PreparedPlan>),
    /// A plan evaluated on a range of test items.
    Evaluated(Box<EvalResult>),
    /// The network timed.
    Timed(TimeResult),
    /// The decoupled network as ONNX.
    Exported {
        /// A file name for it.
        name: String,
        /// The file's bytes, base64.
        base64: String,
    },
    /// One conv of the network with its real input ([`RequestBody::NetworkLayer`]).
    NetworkLayer(Box<crate::network::messages::NetworkLayerData>),
    /// The answer to a page request that repeats a boot request already answered with id 0
    /// (the worker loads the address's view on its own at start-up, see `src/bin/worker.rs`):
    /// the page has that answer already (a layer summary is ≈ 200 KB of JSON to encode and decode
    /// again while the first view is being drawn).
    SameAsBoot,
    /// The request failed; the message is for a person.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// Everything the UI draws without another round trip, for one ordering: the decomposition
/// stripped of its factors (σ and slice energies only, so `energy_kept`, `rel_weight_error` and
/// `threshold_t` work on it), plus the time the decoupling took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderSummary {
    /// Every slice's singular values and energy.
    pub spectra: Spectra,
    /// Wall time of the decoupling in the worker, milliseconds.
    pub decouple_ms: f64,
}

/// A loaded layer: its shape, geometry and both orderings' summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// This load of the layer (the same layer asked for again keeps its id).
    pub layer_id: LayerId,
    /// Example id.
    pub example: String,
    /// Human title.
    pub title: String,
    /// Where the weights come from and their licence, for the page.
    pub source: String,
    /// A short explanation of the example.
    pub note: String,
    /// The example's suggested T.
    pub preset_t: usize,
    /// The example's suggested ordering.
    pub preset_order: Order,
    /// Output channels.
    pub n: usize,
    /// Input channels (per group).
    pub c: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride, padding, dilation, groups.
    pub geometry: ConvGeometry,
    /// DW→PW then PW→DW.
    pub orders: Vec<OrderSummary>,
    /// The input prepared for this layer, when an image was already loaded.
    pub input: Option<InputSummary>,
    /// The view of the slice the request asked for (clamped to the layer), if it asked.
    #[serde(default)]
    pub slice: Option<SliceView>,
}

impl LayerSummary {
    /// The summary of one ordering.
    pub fn order(&self, order: Order) -> Option<&OrderSummary> {
        self.orders.iter().find(|o| o.spectra.order == order)
    }
}

/// The chosen slice: its matrix and its factors (untruncated; the UI truncates to T).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceView {
    /// The layer it belongs to.
    pub layer_id: LayerId,
    /// The ordering.
    pub order: Order,
    /// Slice index.
    pub index: usize,
    /// Rows of the slice matrix (N for DW→PW, c for PW→DW).
    pub rows: usize,
    /// K² (columns).
    pub k2: usize,
    /// Kernel height and width.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// The slice matrix, `rows × k2`, row-major (row r = one original filter).
    pub matrix: Vec<f64>,
    /// Its SVD factors.
    pub factors: Slice,
}

/// What the inference views show after a new input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSummary {
    /// This input (new whenever the layer or the image changes).
    pub input_id: InputId,
    /// The layer it feeds.
    pub layer_id: LayerId,
    /// Channels, height, width of the layer's input.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// How the input was made (for the page).
    pub description: String,
    /// Time to compute the input activations, milliseconds.
    pub prefix_ms: f64,
}

/// Output relative error ‖Y_T − Y‖ / ‖Y‖ for T = 1..=full rank, in one ordering, on one input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorCurve {
    /// The layer.
    pub layer_id: LayerId,
    /// The input.
    pub input_id: InputId,
    /// Ordering.
    pub order: Order,
    /// Index T−1.
    pub errors: Vec<f64>,
}

/// One output channel of the original and the decoupled layer at T, with its errors and times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardResult {
    /// The layer.
    pub layer_id: LayerId,
    /// The input.
    pub input_id: InputId,
    /// Terms kept.
    pub t: usize,
    /// Ordering.
    pub order: Order,
    /// Output channel shown.
    pub out_channel: usize,
    /// The output maps of that channel.
    pub maps: OutputMaps,
    /// Relative output error over all channels, ‖Y_T − Y‖ / ‖Y‖.
    pub rel_error: f64,
    /// Relative weight error at T (from the σ tails), as the core reports it.
    pub weight_error: f64,
    /// The measured times so far.
    pub timings: Timings,
    /// The shown output channel's map of every term, in the first answer for this ordering,
    /// channel and input when the worker holds them and they are small
    /// (`engine::PAGE_TERMS_MAX`): the page then makes the maps at any T itself, in the frame of
    /// the change.
    #[serde(default)]
    pub terms: Option<TermMaps>,
}

impl ForwardResult {
    /// Whether this result is for (`layer`, `input`, `t`, `order`, `out_channel`).
    pub fn is_for(&self, layer: LayerId, input: InputId, t: usize, order: Order, out_channel: usize) -> bool {
        (self.layer_id, self.input_id, self.t, self.order, self.out_channel)
            == (layer, input, t, order, out_channel)
    }
}

/// One output channel's maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputMaps {
    /// Output height.
    pub h: usize,
    /// Output width.
    pub w: usize,
    /// The original layer's output map (h·w).
    pub original: Vec<f32>,
    /// The decoupled layer's output map (h·w).
    pub decoupled: Vec<f32>,
}

/// Wall times of the original and the decoupled layer on the input (the shortest runs so far;
/// forwards are computed from the layer's terms, untimed, and the worker times the layers when
/// idle, see `Engine::settle_timings`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// The original layer, milliseconds (0: not measured yet).
    pub original_ms: f64,
    /// The decoupled layer at this T (merged form), milliseconds (0: not measured yet).
    pub decoupled_ms: f64,
    /// The GEMM kernels the times were measured with ([`ndlab_core::conv::kernels`]).
    pub kernels: String,
    /// Whether both layers have been timed three times; false: the times are missing or come
    /// from a first run, which may be several times too long.
    pub settled: bool,
}

/// One output channel's map of every term: decoupled at T = Σ_{k<T} maps[k] + bias
/// ([`ndlab_core::decouple::terms::sum_terms`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TermMaps {
    /// Term k's map (h·w) at index k, full rank of them.
    pub maps: Vec<Vec<f32>>,
    /// The channel's bias (0 without one).
    pub bias: f32,
}

/// Encodes a message as JSON (never fails for these types; a failure becomes an error string).
pub fn to_json<T: Serialize>(msg: &T) -> String {
    serde_json::to_string(msg)
        .unwrap_or_else(|e| format!("{{\"id\":0,\"body\":{{\"Error\":{{\"message\":\"encode: {e}\"}}}}}}"))
}

/// Decodes a message from JSON, with a readable error.
pub fn from_json<T: for<'de> Deserialize<'de>>(text: &str) -> ndlab_core::Result<T> {
    serde_json::from_str(text).map_err(|e| ndlab_core::Error::Format(format!("bad message: {e}")))
}
