//! The worker's engine: holds the loaded layer, its two decompositions (computed once per layer
//! and ordering; a change of T only truncates), the input activations, and answers
//! [`Request`]s with [`Response`]s. Pure Rust: bytes in, messages out, so it is tested natively.
//!
//! Its rooms: `assets` (the two phases of a host's world: [`Engine::assets_needed`] lists what a
//! request needs, the host fetches it and hands it over with [`Engine::provide`]; natively
//! [`Engine::handle_with`] does both through an [`AssetSource`]), `input` (the layer's input for
//! the current image), `forward` (outputs, errors and the term cache), `timing` (settling the
//! measured times), `compare` (the relatives). Every loaded layer gets a fresh [`LayerId`], every
//! prepared input a fresh [`InputId`]; the answers carry them. The host supplies the clock
//! (`performance.now()` in the browser).

use crate::examples::{self, Example, KernelSource};
use crate::files::FileListing;
use crate::network::messages::NetworkLayerData;
use crate::protocol::{
    LayerId, LayerSummary, OrderSummary, Request, RequestBody, Response, ResponseBody, SliceView,
};
use ndlab_core::decouple::{slice_matrix, Decomposition};
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{ConvLayer, FeatureMap, Order};
use ndlab_io::formats::{ByteSource, Layout};
use ndlab_io::picture::RgbaImage;
use ndlab_io::vgg::VggPrefix;
use std::collections::HashMap;

mod assets;
mod compare;
mod forward;
mod input;
mod network;
mod timing;

#[cfg(not(target_arch = "wasm32"))]
pub use assets::DirAssets;
pub use assets::{precomputed_input_asset, AssetSource, MODEL_ASSET, PRECOMPUTED_INPUTS};
pub use forward::{PAGE_TERMS_MAX, TERM_CACHE_MAX};
use input::Prepared;
pub use input::{compute_vgg_input, WORKING_SIDE};
pub use network::{FASHION_CLASSES, NETWORK_ASSET, NETWORK_CALIB_ASSET, NETWORK_TEST_ASSET};
pub use timing::warm_up;

/// Milliseconds from an arbitrary origin (`performance.now()` in the browser).
pub type Clock = fn() -> f64;

/// Where the loaded layer comes from.
enum Origin {
    /// A built-in example.
    Example(&'static Example),
    /// A layer of the user's file (see [`crate::files`]).
    File(FileOrigin),
}

/// The file layer's description for the page.
struct FileOrigin {
    /// Unique per file-layer load (the page re-requests slices and maps when it changes).
    id: String,
    title: String,
    source: String,
    note: String,
    /// Its real input and the input's description, for a conv taken from a network (it replaces
    /// the image's).
    input: Option<(FeatureMap, String)>,
}

/// The user's opened file.
struct OpenedFile {
    name: String,
    layout: Layout,
    src: Box<dyn ByteSource>,
}

/// A loaded layer (example or file) and both decompositions.
struct Loaded {
    id: LayerId,
    origin: Origin,
    layer: ConvLayer,
    /// DW→PW then PW→DW.
    decs: Vec<Decomposition>,
    decouple_ms: Vec<f64>,
}

impl Loaded {
    /// The example this layer is, if it is one.
    fn example(&self) -> Option<&'static Example> {
        match self.origin {
            Origin::Example(e) => Some(e),
            Origin::File(_) => None,
        }
    }

    /// The input that replaces the image's (a conv taken from a network).
    fn fixed_input(&self) -> Option<&(FeatureMap, String)> {
        match &self.origin {
            Origin::File(f) => f.input.as_ref(),
            Origin::Example(_) => None,
        }
    }

    fn dec(&self, order: Order) -> Result<&Decomposition> {
        self.decs
            .iter()
            .find(|d| d.order == order)
            .ok_or_else(|| Error::Param(format!("no {} decomposition", order.label())))
    }
}

/// The engine behind the worker.
pub struct Engine {
    clock: Clock,
    /// The last id given to a layer or an input.
    last_id: u64,
    assets: HashMap<String, Vec<u8>>,
    loaded: Option<Loaded>,
    image: Option<RgbaImage>,
    /// The built-in image id `image` was decoded from (None for the page's RGBA).
    image_key: Option<String>,
    prepared: Option<Prepared>,
    vgg: Option<VggPrefix>,
    /// The file handed over for the next [`RequestBody::OpenFile`].
    pending_file: Option<Box<dyn ByteSource>>,
    /// Files handed over for the next network request (the network, or its data), in order.
    pending_files: std::collections::VecDeque<Box<dyn ByteSource>>,
    /// The opened whole network.
    network: Option<network::NetworkHost>,
    /// The opened file, if any (kept when opening another one fails).
    file: Option<OpenedFile>,
    /// Number of file layers loaded so far.
    file_loads: u64,
    /// Most floats of term outputs kept per ordering ([`TERM_CACHE_MAX`] by default).
    term_cache_max: usize,
}

impl Engine {
    /// An empty engine using `clock` for its timings.
    pub fn new(clock: Clock) -> Self {
        Engine {
            clock,
            last_id: 0,
            assets: HashMap::new(),
            loaded: None,
            image: None,
            image_key: None,
            prepared: None,
            vgg: None,
            pending_file: None,
            pending_files: std::collections::VecDeque::new(),
            network: None,
            file: None,
            file_loads: 0,
            term_cache_max: TERM_CACHE_MAX,
        }
    }

    /// The same engine keeping at most `floats` floats of term outputs per ordering (see
    /// [`Engine::forward`]); past that, the shown output channel's only.
    pub fn with_term_cache_max(mut self, floats: usize) -> Self {
        self.term_cache_max = floats;
        self
    }

    /// Hands over the user's model file for the next [`RequestBody::OpenFile`] (read by range,
    /// never copied whole).
    pub fn provide_file(&mut self, src: Box<dyn ByteSource>) {
        self.pending_file = Some(src);
    }

    /// Hands over the files of the next network request ([`RequestBody::OpenNetwork`] with the
    /// user's ONNX file, [`RequestBody::NetworkData`]), in order.
    pub fn provide_files(&mut self, srcs: Vec<Box<dyn ByteSource>>) {
        self.pending_files = srcs.into();
    }

    /// A new id for a layer or an input.
    fn fresh_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    /// Answers one request. `progress` receives progress messages during long work.
    /// Never panics on bad input: failures become [`ResponseBody::Error`].
    pub fn handle(&mut self, req: Request, progress: &mut dyn FnMut(Response)) -> Response {
        let id = req.id;
        if let RequestBody::Compare(c) = &req.body {
            return self.handle_compare(id, c, progress);
        }
        let mut emit = |body: ResponseBody| progress(Response { id, body });
        let body = match self.dispatch(req.body, &mut emit) {
            Ok(body) => body,
            Err(e) => ResponseBody::Error { message: e.to_string() },
        };
        Response { id, body }
    }

    /// `emit` sends messages before the final answer: progress, and partial results.
    fn dispatch(&mut self, body: RequestBody, emit: &mut dyn FnMut(ResponseBody)) -> Result<ResponseBody> {
        let mut report = |stage: &str, fraction: f64| {
            emit(ResponseBody::Progress { stage: stage.to_string(), fraction });
        };
        let report: &mut dyn FnMut(&str, f64) = &mut report;
        match body {
            RequestBody::LoadExample { example, slice } => {
                let summary = self.load_example(&example, slice, report)?;
                if self.image.is_none() {
                    return Ok(ResponseBody::Layer(Box::new(summary)));
                }
                // The layer's charts need no input: send them on before running the network.
                emit(ResponseBody::Partial(Box::new(ResponseBody::Layer(Box::new(summary)))));
                let mut report = |stage: &str, fraction: f64| {
                    emit(ResponseBody::Progress { stage: stage.to_string(), fraction });
                };
                Ok(ResponseBody::Input(self.ensure_prepared(&mut report)?))
            }
            RequestBody::LoadImage { rgba, width, height } => {
                self.image = Some(RgbaImage::new(rgba, width, height)?);
                self.image_key = None;
                self.prepared = None;
                Ok(ResponseBody::Input(self.prepare(report)?))
            }
            RequestBody::LoadBuiltinImage { image } => {
                self.load_builtin_image(&image)?;
                Ok(ResponseBody::Input(self.ensure_prepared(report)?))
            }
            RequestBody::Slice { order, slice } => {
                Ok(ResponseBody::Slice(Box::new(self.slice(order, slice)?)))
            }
            RequestBody::Forward { t, order, out_channel } => {
                Ok(ResponseBody::Forward(Box::new(self.forward(t, order, out_channel, report)?)))
            }
            RequestBody::OutputErrorCurve { order } => {
                Ok(ResponseBody::OutputErrorCurve(self.output_error_curve(order, report)?))
            }
            RequestBody::OpenFile { name, layout } => {
                Ok(ResponseBody::FileListing(Box::new(self.open_file(&name, layout)?)))
            }
            RequestBody::LoadFileLayer { layer, fold_bn } => {
                Ok(ResponseBody::Layer(Box::new(self.load_file_layer(&layer, fold_bn, report)?)))
            }
            RequestBody::Compare(_) => Err(Error::Param("a comparison is answered by handle_compare".into())),
            RequestBody::OpenNetwork { source, network_id } => {
                report("reading the network", 0.0);
                Ok(ResponseBody::Network(Box::new(self.open_network(&source, network_id)?)))
            }
            RequestBody::NetworkData { names } => {
                Ok(ResponseBody::Network(Box::new(self.network_data(&names)?)))
            }
            RequestBody::PreparePlan(req) => {
                Ok(ResponseBody::Plan(Box::new(self.prepare_plan(&req, report)?)))
            }
            RequestBody::Evaluate(req) => Ok(ResponseBody::Evaluated(Box::new(self.evaluate_network(&req)?))),
            RequestBody::TimeNetwork(req) => Ok(ResponseBody::Timed(self.time_network(&req)?)),
            RequestBody::ExportNetwork(req) => {
                let (name, bytes) = self.export_network(&req, report)?;
                Ok(ResponseBody::Exported { name, base64: base64(&bytes) })
            }
            RequestBody::NetworkLayer { conv, item } => {
                Ok(ResponseBody::NetworkLayer(Box::new(self.network_layer(conv, item)?)))
            }
            RequestBody::LoadLayerData(data) => {
                Ok(ResponseBody::Layer(Box::new(self.load_layer_data(*data, report)?)))
            }
        }
    }

    /// Loads and decouples an example in both orderings, with the view of `slice` (clamped to
    /// the layer) when asked. The input for it is prepared later, on demand.
    pub fn load_example(
        &mut self,
        id: &str,
        slice: Option<(Order, usize)>,
        report: &mut dyn FnMut(&str, f64),
    ) -> Result<LayerSummary> {
        let info = examples::find(id).ok_or_else(|| Error::Param(format!("unknown example '{id}'")))?;
        // Already loaded (the worker loads the address's example on its own at start-up): its
        // decompositions and prepared input stay.
        if self.loaded.as_ref().and_then(|l| l.example()).is_none_or(|e| e.id != info.id) {
            report("reading the layer", 0.0);
            let layer = self.build_layer(info)?;
            self.install(Origin::Example(info), layer, report)?;
        }
        let mut summary = self.summary()?;
        if let Some((order, index)) = slice {
            let count =
                self.loaded.as_ref().and_then(|l| l.dec(order).ok()).map(|d| d.slices.len()).unwrap_or(0);
            summary.slice = Some(self.slice(order, index.min(count.saturating_sub(1)))?);
        }
        Ok(summary)
    }

    /// Decouples `layer` in both orderings and makes it the loaded layer (the previous one stays
    /// if decoupling fails).
    fn install(&mut self, origin: Origin, layer: ConvLayer, report: &mut dyn FnMut(&str, f64)) -> Result<()> {
        let mut decs = Vec::new();
        let mut decouple_ms = Vec::new();
        for (i, order) in [Order::DwPw, Order::PwDw].into_iter().enumerate() {
            report(&format!("decoupling {}", order.label()), 0.1 + 0.4 * i as f64);
            let start = (self.clock)();
            decs.push(Decomposition::new(&layer.kernel, layer.geometry.groups, order)?);
            decouple_ms.push((self.clock)() - start);
        }
        let id = self.fresh_id();
        self.loaded = Some(Loaded { id, origin, layer, decs, decouple_ms });
        self.prepared = None;
        Ok(())
    }

    /// Opens the file handed over with [`Engine::provide_file`] and lists its conv layers. On
    /// failure the previously opened file (and the loaded layer) stay.
    pub fn open_file(&mut self, name: &str, layout: Layout) -> Result<FileListing> {
        let src = self
            .pending_file
            .take()
            .ok_or_else(|| Error::Param(format!("the file '{name}' did not reach the worker")))?;
        let listing = crate::files::list_file(src.as_ref(), name, layout)?;
        self.file = Some(OpenedFile { name: name.to_string(), layout: listing.layout, src });
        Ok(listing)
    }

    /// Loads one layer of the opened file (only its tensors are read), decouples it and prepares
    /// its input. On failure the previously loaded layer stays loaded.
    pub fn load_file_layer(
        &mut self,
        layer_name: &str,
        fold_bn: bool,
        report: &mut dyn FnMut(&str, f64),
    ) -> Result<LayerSummary> {
        let f = self.file.as_ref().ok_or_else(|| Error::Param("no model file is open".into()))?;
        report(&format!("reading '{layer_name}'"), 0.0);
        let layer =
            crate::files::load_file_layer(f.src.as_ref(), &f.name, layer_name, f.layout, fold_bn, report)?;
        self.file_loads += 1;
        let (n, c, kh, kw) = (layer.kernel.n, layer.kernel.c, layer.kernel.kh, layer.kernel.kw);
        let folded = if fold_bn { ", BatchNorm folded in" } else { "" };
        let origin = FileOrigin {
            id: format!("file#{}", self.file_loads),
            title: format!("{layer_name} from {}", f.name),
            source: format!("your file {} (read in this browser, never uploaded)", f.name),
            note: format!("{n}×{c}×{kh}×{kw}{folded}; geometry {:?}", layer.geometry),
            input: None,
        };
        let previous = self.loaded.take();
        let prepared = self.prepared.take();
        if let Err(e) = self.install(Origin::File(origin), layer, report) {
            self.loaded = previous;
            self.prepared = prepared;
            return Err(e);
        }
        let mut summary = self.summary()?;
        if self.image.is_some() {
            summary.input = Some(self.prepare(report)?);
        }
        Ok(summary)
    }

    /// Loads a conv taken from a network with its real input ([`RequestBody::LoadLayerData`]);
    /// on failure the previously loaded layer stays.
    pub fn load_layer_data(
        &mut self,
        data: NetworkLayerData,
        report: &mut dyn FnMut(&str, f64),
    ) -> Result<LayerSummary> {
        if data.input.c != data.layer.in_channels() {
            return Err(Error::Shape(format!(
                "conv '{}' takes {} channels, its input has {}",
                data.name,
                data.layer.in_channels(),
                data.input.c
            )));
        }
        if data.layer.kernel.data.iter().chain(&data.input.data).any(|v| !v.is_finite()) {
            return Err(Error::Param(format!(
                "conv '{}' or its input holds NaN or infinite values",
                data.name
            )));
        }
        self.file_loads += 1;
        let k = &data.layer.kernel;
        let labelled = data.label.as_ref().map(|l| format!(" (a {l})")).unwrap_or_default();
        let description = format!(
            "the real activations that feed {} in {} on its test item #{}{labelled}",
            data.name, data.network, data.item
        );
        let origin = FileOrigin {
            id: format!("file#{}", self.file_loads),
            title: format!("{} from {}", data.name, data.network),
            source: format!("{}, with its input on test item #{}{labelled}", data.network, data.item),
            note: format!("{}×{}×{}×{}; geometry {:?}", k.n, k.c, k.kh, k.kw, data.layer.geometry),
            input: Some((data.input, description)),
        };
        let previous = self.loaded.take();
        let prepared = self.prepared.take();
        if let Err(e) = self.install(Origin::File(origin), data.layer, report) {
            self.loaded = previous;
            self.prepared = prepared;
            return Err(e);
        }
        let mut summary = self.summary()?;
        summary.input = Some(self.prepare(report)?);
        Ok(summary)
    }

    fn summary(&self) -> Result<LayerSummary> {
        let l = self.loaded.as_ref().ok_or_else(no_layer)?;
        let k = &l.layer.kernel;
        let orders = l
            .decs
            .iter()
            .zip(&l.decouple_ms)
            .map(|(d, &ms)| OrderSummary { spectra: d.spectra(), decouple_ms: ms })
            .collect();
        let (example, title, source, note, preset_t, preset_order) = match &l.origin {
            Origin::Example(info) => (
                info.id.to_string(),
                info.title.to_string(),
                format!("{} — licence: {}", info.source, info.licence),
                info.note.to_string(),
                info.preset_t,
                info.preset_order,
            ),
            Origin::File(f) => {
                let t = l.decs.first().map(|d| d.full_rank.min(2)).unwrap_or(1);
                (f.id.clone(), f.title.clone(), f.source.clone(), f.note.clone(), t, Order::DwPw)
            }
        };
        Ok(LayerSummary {
            layer_id: l.id,
            example,
            title,
            source,
            note,
            preset_t,
            preset_order,
            n: k.n,
            c: k.c,
            kh: k.kh,
            kw: k.kw,
            geometry: l.layer.geometry,
            orders,
            input: None,
            slice: None,
        })
    }

    /// Builds the example's layer from its weights file or its generator.
    fn build_layer(&self, info: &Example) -> Result<ConvLayer> {
        let kernel = match info.kernel {
            KernelSource::Asset(p) => {
                let bytes =
                    self.assets.get(p).ok_or_else(|| Error::Param(format!("file {p} was not provided")))?;
                ndlab_io::npy::read_npy(bytes)?.into_kernel()?
            }
            KernelSource::Generated(g) => g.kernel()?,
        };
        let k = &kernel;
        if (k.n, k.c, k.kh, k.kw) != info.shape {
            return Err(Error::Shape(format!(
                "{} should be {:?}, the file holds {}×{}×{}×{}",
                info.id, info.shape, k.n, k.c, k.kh, k.kw
            )));
        }
        ConvLayer::new(kernel, None, info.geometry())
    }

    /// The chosen slice's matrix and factors.
    pub fn slice(&self, order: Order, index: usize) -> Result<SliceView> {
        let l = self.loaded.as_ref().ok_or_else(no_layer)?;
        let dec = l.dec(order)?;
        let factors =
            dec.slices.get(index).cloned().ok_or_else(|| {
                Error::Param(format!("slice {index} out of range (0..{})", dec.slices.len()))
            })?;
        let matrix = slice_matrix(&l.layer.kernel, l.layer.geometry.groups.max(1), order, index)?;
        let k2 = dec.kh * dec.kw;
        Ok(SliceView {
            layer_id: l.id,
            order,
            index,
            rows: matrix.len() / k2.max(1),
            k2,
            kh: dec.kh,
            kw: dec.kw,
            matrix,
            factors,
        })
    }
}

/// Standard base64 with padding (the exported network travels in the JSON answer).
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            s.push(if i <= c.len() { A[(n >> shift & 63) as usize] as char } else { '=' });
        }
    }
    s
}

/// Decodes standard base64 (padding optional); None on a character outside the alphabet.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Option<Vec<u8>> = chunk.iter().map(|&c| val(c)).collect();
        let v = v?;
        let n = v.iter().enumerate().fold(0u32, |n, (i, &x)| n | (x as u32) << (18 - 6 * i));
        out.extend([(n >> 16) as u8, (n >> 8) as u8, n as u8].into_iter().take(v.len().saturating_sub(1)));
    }
    Some(out)
}

fn no_layer() -> Error {
    Error::Param("no layer loaded yet".into())
}

#[cfg(test)]
mod base64_tests {
    #[test]
    fn round_trips_and_known_values() {
        assert_eq!(super::base64(b"Man"), "TWFu");
        assert_eq!(super::base64(b"Ma"), "TWE=");
        assert_eq!(super::base64(b"M"), "TQ==");
        for n in 0..40 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(super::base64_decode(&super::base64(&data)), Some(data));
        }
        assert_eq!(super::base64_decode("T!=="), None);
    }
}
