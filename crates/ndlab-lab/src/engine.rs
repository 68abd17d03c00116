//! The worker's engine: holds the loaded layer, its two decompositions (computed once per layer
//! and ordering; a change of T only truncates), the input activations, and answers
//! [`Request`]s with [`Response`]s. Pure Rust: bytes in, messages out, so it is tested natively.
//!
//! The host (the Web Worker, or a test) fetches the files a request needs, which
//! [`Engine::assets_needed`] lists, hands them over with [`Engine::provide`], then calls
//! [`Engine::handle`]. The host also supplies the clock (`performance.now()` in the browser).

use crate::examples::{self, Example, InputSpec, KernelSource};
use crate::files::FileListing;
use crate::protocol::{
    ForwardResult, InputSummary, LayerSummary, OrderSummary, Request, RequestBody, Response, ResponseBody,
    SliceView,
};
use ndlab_core::decouple::{Decomposition, Slice};
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{ConvLayer, FeatureMap, Order};
use ndlab_io::formats::{ByteSource, Layout};
use ndlab_io::picture::RgbaImage;
use ndlab_io::vgg::{image_to_map, Normalisation, VggLayer, VggPrefix};
use std::collections::HashMap;

mod compare;

/// Milliseconds from an arbitrary origin (`performance.now()` in the browser).
pub type Clock = fn() -> f64;

/// Longer side of the image the layers are run on (it is resized, aspect kept).
pub const WORKING_SIDE: usize = 160;

/// The VGG16-BN prefix weights, relative to the page.
pub const MODEL_ASSET: &str = "assets/models/vgg16bn_craft_conv1_1-conv3_3.safetensors";

/// (built-in image, example) pairs whose layer input ships precomputed: the page's default view,
/// which most visitors see and never change. The file holds exactly what the VGG16-BN prefix
/// computes for that image (written by `cargo run --release --example make_activations`; a test
/// recomputes it), so the first view needs neither the 7 MB prefix nor its 2.9 GMAC. Every other
/// image or layer runs the prefix in the browser.
pub const PRECOMPUTED_INPUTS: &[(&str, &str)] = &[("astronaut", "vgg16bn_conv3_2")];

/// Path of the precomputed input of `example` for the built-in `image`, if it ships one. The
/// working side is in the name: changing [`WORKING_SIDE`] leaves no stale file in use.
pub fn precomputed_input_asset(image: &str, example: &str) -> Option<String> {
    PRECOMPUTED_INPUTS
        .iter()
        .any(|&(i, e)| i == image && e == example)
        .then(|| format!("assets/activations/{image}.{example}.{WORKING_SIDE}.npy"))
}

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
}

/// The user's opened file.
struct OpenedFile {
    name: String,
    layout: Layout,
    src: Box<dyn ByteSource>,
}

/// A loaded layer (example or file) and both decompositions.
struct Loaded {
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

    fn dec(&self, order: Order) -> Result<&Decomposition> {
        self.decs
            .iter()
            .find(|d| d.order == order)
            .ok_or_else(|| Error::Param(format!("no {} decomposition", order.label())))
    }
}

/// Input activations and the original layer's output on them (both cached until the layer or
/// image changes).
struct Prepared {
    summary: InputSummary,
    input: FeatureMap,
    /// The original layer's output on the input: None until the first forward or curve on it,
    /// which computes it as the sum of the layer's depthwise-separable terms (see
    /// [`decoupled_by_terms`]).
    reference: Option<FeatureMap>,
    /// The original layer's timing on this input ([`Engine::settle_timings`]).
    original: Timing,
    /// The decoupled layer's timings on this input, by ordering and T.
    decoupled: HashMap<(Order, usize), Timing>,
    curves: HashMap<Order, Vec<f64>>,
    /// Each term's output on this input, by ordering (from the terms pass; not kept when
    /// larger than [`TERM_CACHE_MAX`]): a later forward at any T or output channel is a sum of
    /// them, with no conv run.
    terms: HashMap<Order, TermCache>,
    /// The last forward result (asked again when the page repeats a request the worker already
    /// answered on its own at start-up).
    forward: Option<ForwardResult>,
    /// The (ordering, output channel) whose term maps went out with a forward answer on this
    /// input ([`ForwardResult::terms`]).
    terms_sent: Option<(Order, usize)>,
}

impl Prepared {
    /// The timing of the decoupled layer at (`order`, `t`) so far.
    fn decoupled_timing(&self, order: Order, t: usize) -> Timing {
        self.decoupled.get(&(order, t)).copied().unwrap_or_default()
    }

    /// Whether both layers of a forward at (`order`, `t`) have been timed [`SETTLE_RUNS`] times.
    fn settled(&self, order: Order, t: usize) -> bool {
        self.original.runs >= SETTLE_RUNS && self.decoupled_timing(order, t).runs >= SETTLE_RUNS
    }

    /// Keeps what a terms pass in `order` computed (its curve, its term outputs, and the original
    /// output if none is held yet); returns its output at T, if it computed one.
    fn keep_pass(&mut self, order: Order, pass: TermsPass) -> Option<FeatureMap> {
        self.curves.insert(order, pass.errors);
        if !pass.terms.is_empty() {
            let plane = pass.original.h * pass.original.w;
            self.terms.insert(order, TermCache { plane, channels: pass.terms_channels, terms: pass.terms });
        }
        self.reference.get_or_insert(pass.original);
        pass.at_t
    }
}

/// The shortest of a layer's timed runs on one input.
#[derive(Clone, Copy, Default, Debug)]
struct Timing {
    /// The shortest run (ms; 0 before the first).
    best_ms: f64,
    runs: usize,
}

impl Timing {
    /// Counts a run; its time (None: the run failed) is kept if it is the shortest.
    fn add(&mut self, ms: Option<f64>) {
        if let Some(ms) = ms {
            self.best_ms = shorter(self.best_ms, ms);
        }
        self.runs += 1;
    }
}

/// Most floats the per-term outputs of one ordering may hold (32 MB): the default view holds
/// 9 × 256 × 40 × 40 ≈ 3.7 M, VGG's conv1_1 on a 160 × 106 image 3 × 64 × 160 × 106 ≈ 3.3 M.
/// Larger layers keep the shown output channel's only.
pub const TERM_CACHE_MAX: usize = 8 << 20;

/// Which term outputs a terms pass keeps (see [`decoupled_by_terms`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeepTerms {
    /// Most floats they may hold (0: none are kept).
    pub max_floats: usize,
    /// The output channel to keep when all channels would not fit.
    pub channel: Option<usize>,
}

impl KeepTerms {
    /// Keep nothing.
    pub const NONE: KeepTerms = KeepTerms { max_floats: 0, channel: None };
}

/// Each term's output of one ordering on one input (see [`TermsPass::terms`]).
struct TermCache {
    plane: usize,
    /// The output channels held: all of them, or only the one shown when all would not fit.
    channels: std::ops::Range<usize>,
    /// Term k's output on those channels (channels × h × w).
    terms: Vec<Vec<f32>>,
}

impl TermCache {
    /// Output channel `ch` of the decoupled layer at T: Σ_{k<T} term k + bias, in f64 from the
    /// last term down (as [`decoupled_by_terms`] sums).
    fn channel_at(&self, t: usize, ch: usize, bias: Option<&[f32]>) -> Result<Vec<f32>> {
        if t == 0 || t > self.terms.len() {
            return Err(Error::Param(format!("no cached term outputs for T = {t}")));
        }
        let maps = self.channel_terms(ch)?;
        let b = bias.and_then(|b| b.get(ch)).copied().unwrap_or(0.0);
        Ok(sum_terms(&maps[..t], b))
    }

    /// Output channel `ch`'s map of every kept term.
    fn channel_terms(&self, ch: usize) -> Result<Vec<&[f32]>> {
        if !self.channels.contains(&ch) {
            return Err(Error::Param(format!("no cached term outputs for channel {ch}")));
        }
        let at = ch - self.channels.start;
        let range = at * self.plane..(at + 1) * self.plane;
        self.terms
            .iter()
            .map(|term| term.get(range.clone()).ok_or_else(|| Error::Shape("a cached term is short".into())))
            .collect()
    }
}

/// The sum of term maps plus a bias, in f64 from the last term down, rounded once to f32: how
/// the worker sums its kept terms for a forward at T (the first T maps), and how the page sums
/// the term maps it was sent ([`ForwardResult::terms`]), so that both give the same bits.
pub fn sum_terms<T: AsRef<[f32]>>(maps: &[T], bias: f32) -> Vec<f32> {
    let plane = maps.first().map_or(0, |m| m.as_ref().len());
    let mut acc = vec![0.0f64; plane];
    for term in maps.iter().rev() {
        for (a, &v) in acc.iter_mut().zip(term.as_ref()) {
            *a += v as f64;
        }
    }
    acc.into_iter().map(|v| (v + bias as f64) as f32).collect()
}

/// Largest term maps sent to the page with a forward answer (floats: full rank × h·w of one
/// output channel; 9 × 40 × 40 = 14 400 on the default view). Past it the page waits for the
/// worker's maps at each T.
pub const PAGE_TERMS_MAX: usize = 1 << 16;

/// The engine behind the worker.
pub struct Engine {
    clock: Clock,
    assets: HashMap<String, Vec<u8>>,
    loaded: Option<Loaded>,
    image: Option<RgbaImage>,
    /// The built-in image id `image` was decoded from (None for the page's RGBA).
    image_key: Option<String>,
    prepared: Option<Prepared>,
    vgg: Option<VggPrefix>,
    /// The file handed over for the next [`RequestBody::OpenFile`].
    pending_file: Option<Box<dyn ByteSource>>,
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
            assets: HashMap::new(),
            loaded: None,
            image: None,
            image_key: None,
            prepared: None,
            vgg: None,
            pending_file: None,
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

    /// Files (paths relative to the page) that `body` needs and the engine does not hold yet.
    pub fn assets_needed(&self, body: &RequestBody) -> Vec<String> {
        let mut paths = Vec::new();
        let (example, image_set, image_key) = match body {
            RequestBody::LoadExample { example, .. } => {
                (examples::find(example), self.image.is_some(), self.image_key.as_deref())
            }
            RequestBody::LoadImage { .. } => (self.loaded.as_ref().and_then(|l| l.example()), true, None),
            RequestBody::LoadBuiltinImage { image } => {
                if let Some(info) = self.image_to_decode(image) {
                    paths.push(info.path.to_string());
                }
                (self.loaded.as_ref().and_then(|l| l.example()), true, Some(image.as_str()))
            }
            _ => (None, false, None),
        };
        if let Some(ex) = example {
            if let (RequestBody::LoadExample { .. }, KernelSource::Asset(p)) = (body, ex.kernel) {
                paths.push(p.to_string());
            }
            if image_set && needs_model(ex) && self.vgg.is_none() {
                match image_key.and_then(|i| precomputed_input_asset(i, ex.id)) {
                    Some(p) => paths.push(p),
                    None => paths.push(MODEL_ASSET.to_string()),
                }
            }
        }
        paths.retain(|p| !self.assets.contains_key(p));
        paths
    }

    /// Hands over the user's model file for the next [`RequestBody::OpenFile`] (read by range,
    /// never copied whole).
    pub fn provide_file(&mut self, src: Box<dyn ByteSource>) {
        self.pending_file = Some(src);
    }

    /// Files that `body` makes likely to be needed soon (the network prefix of a VGG example,
    /// before any image is set): a host may start downloading them while the engine works.
    pub fn assets_to_prefetch(&self, body: &RequestBody) -> Vec<String> {
        let mut paths = Vec::new();
        match body {
            RequestBody::LoadExample { example, .. }
                if examples::find(example).is_some_and(needs_model) && self.vgg.is_none() =>
            {
                paths.push(MODEL_ASSET.to_string());
            }
            RequestBody::LoadBuiltinImage { image } => {
                if let Some(info) = self.image_to_decode(image) {
                    paths.push(info.path.to_string());
                }
            }
            _ => {}
        }
        paths.retain(|p| !self.assets.contains_key(p));
        paths
    }

    /// The built-in image `id` when it is not the current image already (None when it is, or
    /// when no such image exists: the request then fails with a message).
    fn image_to_decode(&self, id: &str) -> Option<&'static examples::ImageInfo> {
        if self.image.is_some() && self.image_key.as_deref() == Some(id) {
            return None;
        }
        examples::IMAGES.iter().find(|i| i.id == id)
    }

    /// Hands over the bytes of a file listed by [`Engine::assets_needed`].
    pub fn provide(&mut self, path: &str, bytes: Vec<u8>) {
        self.assets.insert(path.to_string(), bytes);
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
                Ok(ResponseBody::OutputErrorCurve { order, errors: self.output_error_curve(order, report)? })
            }
            RequestBody::OpenFile { name, layout } => {
                Ok(ResponseBody::FileListing(Box::new(self.open_file(&name, layout)?)))
            }
            RequestBody::LoadFileLayer { layer, fold_bn } => {
                Ok(ResponseBody::Layer(Box::new(self.load_file_layer(&layer, fold_bn, report)?)))
            }
            RequestBody::Compare(_) => Err(Error::Param("a comparison is answered by handle_compare".into())),
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
        self.loaded = Some(Loaded { origin, layer, decs, decouple_ms });
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

    fn summary(&self) -> Result<LayerSummary> {
        let l = self.loaded.as_ref().ok_or_else(no_layer)?;
        let k = &l.layer.kernel;
        let orders = l
            .decs
            .iter()
            .zip(&l.decouple_ms)
            .map(|(d, &ms)| OrderSummary { spectra: strip(d), decouple_ms: ms })
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

    /// Decodes the built-in image `id` (provided with [`Engine::provide`]) and makes it the
    /// current image, unless it already is.
    fn load_builtin_image(&mut self, id: &str) -> Result<()> {
        if self.image.is_some() && self.image_key.as_deref() == Some(id) {
            return Ok(());
        }
        let info = examples::IMAGES
            .iter()
            .find(|i| i.id == id)
            .ok_or_else(|| Error::Param(format!("unknown image '{id}'")))?;
        let bytes = self
            .assets
            .remove(info.path)
            .ok_or_else(|| Error::Param(format!("file {} was not provided", info.path)))?;
        self.image = Some(ndlab_io::picture::rgba_from_png(&bytes, ndlab_io::picture::PAGE_SIDE)?);
        self.image_key = Some(id.to_string());
        self.prepared = None;
        Ok(())
    }

    /// The prepared input's summary, preparing it first if the layer or image changed.
    fn ensure_prepared(&mut self, report: &mut dyn FnMut(&str, f64)) -> Result<InputSummary> {
        match &self.prepared {
            Some(p) => Ok(p.summary.clone()),
            None => self.prepare(report),
        }
    }

    /// Computes the input activations for the current layer and image, and the original output.
    fn prepare(&mut self, report: &mut dyn FnMut(&str, f64)) -> Result<InputSummary> {
        let info = self.loaded.as_ref().ok_or_else(no_layer)?.example();
        let shipped = match (info, self.image_key.as_deref()) {
            (Some(ex), Some(image)) if self.vgg.is_none() => {
                // Kept (1.6 MB): the page's repeats of the boot requests, and a return to this
                // view, find it here instead of downloading it again.
                precomputed_input_asset(image, ex.id).and_then(|p| self.assets.get(&p).cloned())
            }
            _ => None,
        };
        if shipped.is_none() && info.is_some_and(needs_model) && self.vgg.is_none() {
            report("reading the VGG16-BN prefix", 0.5);
            let bytes = self
                .assets
                .remove(MODEL_ASSET)
                .ok_or_else(|| Error::Param(format!("file {MODEL_ASSET} was not provided")))?;
            self.vgg = Some(VggPrefix::from_safetensors(&bytes)?);
        }
        let image = self.image.as_ref().ok_or_else(|| Error::Param("no image loaded yet".into()))?;
        let l = self.loaded.as_ref().ok_or_else(no_layer)?;
        report("computing the layer's input", 0.6);
        let start = (self.clock)();
        let (input, description) = match (info, shipped) {
            (Some(info), Some(bytes)) => shipped_input(info, image, &bytes)?,
            (Some(info), None) => layer_input(info, image, self.vgg.as_ref())?,
            (None, _) => crate::files::file_layer_input(
                &l.layer,
                &image.rgba,
                image.width,
                image.height,
                WORKING_SIDE,
            )?,
        };
        let prefix_ms = (self.clock)() - start;
        if input.c != l.layer.in_channels() {
            return Err(Error::Shape(format!(
                "the layer takes {} channels, its input has {}",
                l.layer.in_channels(),
                input.c
            )));
        }
        let summary = InputSummary { c: input.c, h: input.h, w: input.w, description, prefix_ms };
        self.prepared = Some(Prepared {
            summary: summary.clone(),
            input,
            reference: None,
            original: Timing::default(),
            decoupled: HashMap::new(),
            curves: HashMap::new(),
            terms: HashMap::new(),
            forward: None,
            terms_sent: None,
        });
        Ok(summary)
    }

    /// The chosen slice's matrix and factors.
    pub fn slice(&self, order: Order, index: usize) -> Result<SliceView> {
        let l = self.loaded.as_ref().ok_or_else(no_layer)?;
        let dec = l.dec(order)?;
        let factors =
            dec.slices.get(index).cloned().ok_or_else(|| {
                Error::Param(format!("slice {index} out of range (0..{})", dec.slices.len()))
            })?;
        let matrix = slice_matrix(&l.layer, order, index)?;
        let k2 = dec.kh * dec.kw;
        Ok(SliceView {
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

    /// Original vs decoupled output at T for one output channel, with the timings so far.
    ///
    /// The first forward (or curve) on an input in an ordering runs the decoupled layer term by
    /// term ([`decoupled_by_terms`]): the sum of all terms is the original output, the sum of the
    /// first T the decoupled one, and the running sums give the output error for every T, all for
    /// about the cost of one regular conv (running the original layer, the decoupled one and the
    /// curve's terms separately costs twice that). Each term's output is kept (up to
    /// [`TERM_CACHE_MAX`] floats, see [`Engine::with_term_cache_max`]; past that, the output
    /// channel asked for only), so a later forward at another T (or output channel) is a sum of
    /// a few maps: a T change costs the worker microseconds, not a conv that would compete with
    /// the page's redraw for the CPU. No forward is timed: [`Engine::settle_timings`] times both
    /// layers once the worker is idle, and the result carries the times measured so far for its
    /// T (0: not yet). (A forward on a channel whose terms were not kept runs the decoupled layer
    /// at T, which counts as its first timed run.)
    pub fn forward(
        &mut self,
        t: usize,
        order: Order,
        out_channel: usize,
        report: &mut dyn FnMut(&str, f64),
    ) -> Result<ForwardResult> {
        let mut result = self.forward_maps(t, order, out_channel, report)?;
        // The first answer for this ordering and channel on this input carries the channel's
        // term maps, if they are kept and small.
        if let Some(p) = self.prepared.as_mut() {
            if p.terms_sent != Some((order, out_channel)) {
                let maps = p.terms.get(&order).and_then(|c| c.channel_terms(out_channel).ok());
                if let Some(maps) =
                    maps.filter(|m| m.iter().map(|t| t.len()).sum::<usize>() <= PAGE_TERMS_MAX)
                {
                    result.terms = maps.into_iter().map(<[f32]>::to_vec).collect();
                    p.terms_sent = Some((order, out_channel));
                }
            }
        }
        Ok(result)
    }

    /// [`Engine::forward`] without the term maps (and what [`Prepared::forward`] keeps).
    fn forward_maps(
        &mut self,
        t: usize,
        order: Order,
        out_channel: usize,
        report: &mut dyn FnMut(&str, f64),
    ) -> Result<ForwardResult> {
        if self.prepared.is_none() {
            self.prepare(report)?;
        }
        let l = self.loaded.as_ref().ok_or_else(no_layer)?;
        let p = self.prepared.as_mut().ok_or_else(no_layer)?;
        let dec = l.dec(order)?;
        check_t(t, dec.full_rank)?;
        if out_channel >= l.layer.kernel.n {
            return Err(Error::Param(format!(
                "output channel {out_channel} out of range (0..{})",
                l.layer.kernel.n
            )));
        }
        if let Some(f) =
            p.forward.as_ref().filter(|f| (f.t, f.order, f.out_channel) == (t, order, out_channel))
        {
            return Ok(f.clone());
        }
        let bias = l.layer.bias.as_deref();
        let cached =
            p.terms.get(&order).filter(|c| c.channels.contains(&out_channel)).zip(p.curves.get(&order));
        let (decoupled, rel_error) = match (cached, &p.reference) {
            (Some((terms, curve)), Some(_)) => {
                let rel_error = curve.get(t - 1).copied().ok_or_else(no_layer)?;
                (terms.channel_at(t, out_channel, bias)?, rel_error)
            }
            // The terms of this ordering ran, and this channel's were not kept.
            (None, Some(reference)) if p.curves.contains_key(&order) => {
                let merged = dec.merged(t)?;
                let start = (self.clock)();
                let y = ndlab_core::conv::decoupled_forward(&p.input, &merged, bias, &l.layer.geometry)?;
                let ms = (self.clock)() - start;
                p.decoupled.entry((order, t)).or_default().add(Some(ms));
                (y.channel(out_channel).to_vec(), y.rel_error(reference)?)
            }
            _ => {
                let pass = decoupled_by_terms(
                    dec,
                    &p.input,
                    bias,
                    &l.layer.geometry,
                    Some(t),
                    KeepTerms { max_floats: self.term_cache_max, channel: Some(out_channel) },
                    report,
                )?;
                let rel_error = pass.errors[t - 1];
                let y = p
                    .keep_pass(order, pass)
                    .ok_or_else(|| Error::Param("the decoupled output at T is missing".into()))?;
                (y.channel(out_channel).to_vec(), rel_error)
            }
        };
        let reference = p.reference.as_ref().ok_or_else(no_layer)?;
        let weight_error = dec.rel_weight_error().get(t - 1).copied().unwrap_or(f64::NAN);
        let result = ForwardResult {
            t,
            order,
            out_channel,
            h: reference.h,
            w: reference.w,
            original: reference.channel(out_channel).to_vec(),
            decoupled,
            rel_error,
            weight_error,
            original_ms: p.original.best_ms,
            decoupled_ms: p.decoupled_timing(order, t).best_ms,
            kernels: ndlab_core::conv::kernels().to_string(),
            settled: p.settled(order, t),
            terms: Vec::new(),
            bias: bias.and_then(|b| b.get(out_channel)).copied().unwrap_or(0.0),
        };
        p.forward = Some(result.clone());
        Ok(result)
    }

    /// Whether [`Engine::settle_timings`] has work to do: a forward result on this input whose
    /// layers have not both been timed [`SETTLE_RUNS`] times.
    pub fn timings_unsettled(&self) -> bool {
        self.prepared.as_ref().is_some_and(|p| p.forward.as_ref().is_some_and(|f| !p.settled(f.order, f.t)))
    }

    /// One timed run, the shorter time kept: of the original layer and of the last forward's
    /// decoupled layer in turn, until each has [`SETTLE_RUNS`] runs (in turn, so that both see
    /// the same conditions: timing one layer's runs before the other's skewed their ratio by up
    /// to 1.5× while the page was drawing). The original layer's runs count for every T on the
    /// input, the decoupled layer's for its ordering and T. The step that completes both returns
    /// the last forward result with its times, marked settled. In a browser the first runs on
    /// an input execute code that may still be in the engine's baseline tier, so a single run
    /// can be several times too long and the measured speed-up off by as much. The worker calls
    /// this while it is idle, one step per task, so that a request never waits for more than
    /// one run. None while steps remain (or when there is nothing to settle).
    pub fn settle_timings(&mut self) -> Result<Option<ForwardResult>> {
        if !self.timings_unsettled() {
            return Ok(None);
        }
        let l = self.loaded.as_ref().ok_or_else(no_layer)?;
        let p = self.prepared.as_mut().ok_or_else(no_layer)?;
        let Some((order, t)) = p.forward.as_ref().map(|f| (f.order, f.t)) else { return Ok(None) };
        // (A run that fails, which the forward did not, counts with no time: each layer is tried
        // SETTLE_RUNS times, and the last step still hands back the result.)
        let start = (self.clock)();
        if p.original.runs < SETTLE_RUNS && p.original.runs <= p.decoupled_timing(order, t).runs {
            let ok = ndlab_core::conv::layer_forward(&p.input, &l.layer).is_ok();
            let ms = (self.clock)() - start;
            p.original.add(ok.then_some(ms));
        } else {
            let run = l.dec(order).and_then(|d| d.merged(t)).and_then(|merged| {
                ndlab_core::conv::decoupled_forward(
                    &p.input,
                    &merged,
                    l.layer.bias.as_deref(),
                    &l.layer.geometry,
                )
            });
            let ms = (self.clock)() - start;
            p.decoupled.entry((order, t)).or_default().add(run.is_ok().then_some(ms));
        }
        let (original_ms, decoupled_ms) = (p.original.best_ms, p.decoupled_timing(order, t).best_ms);
        let settled = p.settled(order, t);
        let Some(f) = p.forward.as_mut() else { return Ok(None) };
        (f.original_ms, f.decoupled_ms, f.settled) = (original_ms, decoupled_ms, settled);
        Ok(settled.then(|| f.clone()))
    }

    /// Output relative error for T = 1..=full rank (cached per ordering and input; the pass that
    /// computes it keeps the terms' outputs for later forwards, see [`Engine::forward`]).
    pub fn output_error_curve(
        &mut self,
        order: Order,
        report: &mut dyn FnMut(&str, f64),
    ) -> Result<Vec<f64>> {
        if self.prepared.is_none() {
            self.prepare(report)?;
        }
        let l = self.loaded.as_ref().ok_or_else(no_layer)?;
        let p = self.prepared.as_mut().ok_or_else(no_layer)?;
        if let Some(c) = p.curves.get(&order) {
            return Ok(c.clone());
        }
        let dec = l.dec(order)?;
        let bias = l.layer.bias.as_deref();
        // (Past the cap, the terms of the last forward's output channel are kept.)
        let keep = KeepTerms {
            max_floats: self.term_cache_max,
            channel: Some(p.forward.as_ref().map_or(0, |f| f.out_channel)),
        };
        let pass = decoupled_by_terms(dec, &p.input, bias, &l.layer.geometry, None, keep, report)?;
        let errors = pass.errors.clone();
        p.keep_pass(order, pass);
        Ok(errors)
    }
}

/// The shorter of a time kept so far (0: none yet) and a new one.
fn shorter(kept: f64, new: f64) -> f64 {
    if kept > 0.0 {
        kept.min(new)
    } else {
        new
    }
}

/// Runs the heavy code paths (decoupling in both orderings, regular, depthwise, pointwise and
/// decoupled convs, the output error by terms) once on tiny inputs, in a few milliseconds.
/// In a browser, wasm starts in a baseline tier and a long call never switches tiers midway:
/// calling these paths first lets the engine optimise them before the first real request.
/// Returns the sum of the outputs (so nothing is optimised away).
pub fn warm_up() -> Result<f64> {
    let geometry = ndlab_core::layer::ConvGeometry::new(1, 1, 1);
    let layer = ndlab_core::layer::ConvLayer::new(
        ndlab_core::random::gaussian_kernel(24, 16, 3, 0.1, 7)?,
        None,
        geometry,
    )?;
    let x = ndlab_core::random::random_input(16, 14, 14, 8)?;
    let y = ndlab_core::conv::layer_forward(&x, &layer)?;
    let mut sum = y.data.iter().map(|&v| v as f64).sum::<f64>();
    for order in [Order::DwPw, Order::PwDw] {
        let dec = Decomposition::new(&layer.kernel, 1, order)?;
        let out = ndlab_core::conv::decoupled_forward(&x, &dec.merged(2)?, None, &geometry)?;
        sum += out.data.iter().map(|&v| v as f64).sum::<f64>();
        let keep = KeepTerms { max_floats: usize::MAX, channel: None };
        let pass = decoupled_by_terms(&dec, &x, None, &geometry, Some(2), keep, &mut |_, _| {})?;
        sum += pass.errors.iter().sum::<f64>();
    }
    Ok(sum)
}

/// What [`decoupled_by_terms`] computes.
#[derive(Debug, Clone)]
pub struct TermsPass {
    /// The sum of all terms plus the bias: the original layer's output (to f32 rounding: the
    /// decomposition at full rank is exact).
    pub original: FeatureMap,
    /// ‖y_T − y‖ / ‖y‖ for T = 1..=r: y_T differs from y by −Σ_{k ≥ T} conv(x, term k) (the bias
    /// cancels), so the running sums give every T (exact zero at full rank).
    pub errors: Vec<f64>,
    /// The decoupled layer's output at the T asked for (with the bias).
    pub at_t: Option<FeatureMap>,
    /// Term k's output (no bias) at index k, on the channels `terms_channels`: all of them when
    /// they fit in the floats allowed, else the one channel asked for when it fits, else none
    /// (empty).
    pub terms: Vec<Vec<f32>>,
    /// The output channels [`TermsPass::terms`] hold.
    pub terms_channels: std::ops::Range<usize>,
}

/// The decoupled layer on `x` term by term: one single-term decoupled conv per term, from the
/// last, summed in f64. Their sum (with the bias) is the original layer's output, the sum of the
/// first T the decoupled layer's at T, and the running sums give the output error for every T:
/// all three for about the cost of one regular conv. Each term's output is kept too, as `keep`
/// allows.
pub fn decoupled_by_terms(
    dec: &Decomposition,
    x: &FeatureMap,
    bias: Option<&[f32]>,
    geometry: &ndlab_core::layer::ConvGeometry,
    t: Option<usize>,
    keep: KeepTerms,
    report: &mut dyn FnMut(&str, f64),
) -> Result<TermsPass> {
    let r = dec.full_rank;
    if let Some(t) = t {
        check_t(t, r)?;
    }
    let mut tails = tail_sums(dec, x, geometry, t.filter(|&t| t < r), keep, report)?;
    let terms = std::mem::take(&mut tails.terms);
    let terms_channels = tails.terms_channels.clone();
    let (c, h, w) = tails.shape;
    let plane = h * w;
    let bias_of = |i: usize| match bias {
        Some(b) => b.get(i / plane.max(1)).copied().unwrap_or(0.0) as f64,
        None => 0.0,
    };
    let acc = &tails.sum;
    let original: Vec<f32> = acc.iter().enumerate().map(|(i, &v)| (v + bias_of(i)) as f32).collect();
    let den: f64 = original.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let at_t = match (t, &tails.kept) {
        (None, _) => None,
        (Some(_), None) => Some(FeatureMap::new(c, h, w, original.clone())?),
        (Some(_), Some(tail)) => {
            let y =
                acc.iter().zip(tail).enumerate().map(|(i, (&a, &b))| (a - b + bias_of(i)) as f32).collect();
            Some(FeatureMap::new(c, h, w, y)?)
        }
    };
    Ok(TermsPass {
        original: FeatureMap::new(c, h, w, original)?,
        errors: tails.errors(den),
        at_t,
        terms,
        terms_channels,
    })
}

/// Running sums of the terms' outputs, from the last term down (see [`tail_sums`]).
struct Tails {
    /// Σ_j conv(x, term j), in f64 (empty when no term was run).
    sum: Vec<f64>,
    /// (c, h, w) of a term's output.
    shape: (usize, usize, usize),
    /// ‖Σ_{j ≥ T} conv(x, term j)‖² for T = 1..r (index T − 1; 0 at T = r).
    norms: Vec<f64>,
    /// Σ_{j ≥ keep} conv(x, term j), when asked for.
    kept: Option<Vec<f64>>,
    /// conv(x, term j) at index j on the channels `terms_channels` (see [`KeepTerms`]).
    terms: Vec<Vec<f32>>,
    terms_channels: std::ops::Range<usize>,
}

impl Tails {
    /// ‖y_T − y‖ / ‖y‖ for T = 1..=r from the tail norms and ‖y‖² = `den` (exact zero at r).
    fn errors(&self, den: f64) -> Vec<f64> {
        let r = self.norms.len();
        self.norms
            .iter()
            .enumerate()
            .map(|(i, &num)| {
                if i + 1 >= r {
                    0.0
                } else if den == 0.0 {
                    num.sqrt()
                } else {
                    (num / den).sqrt()
                }
            })
            .collect()
    }
}

/// One single-term decoupled conv per term k = r−1 down to 0, summed in f64 as they come (the
/// sum kept at k = `keep`, and the terms' outputs as `keep_terms` allows: all channels, or the
/// one asked for).
fn tail_sums(
    dec: &Decomposition,
    x: &FeatureMap,
    geometry: &ndlab_core::layer::ConvGeometry,
    keep: Option<usize>,
    keep_terms: KeepTerms,
    report: &mut dyn FnMut(&str, f64),
) -> Result<Tails> {
    let r = dec.full_rank;
    let mut tails = Tails {
        sum: Vec::new(),
        shape: (0, 0, 0),
        norms: vec![0.0; r],
        kept: None,
        terms: Vec::new(),
        terms_channels: 0..0,
    };
    for k in (0..r).rev() {
        report(&format!("decoupled layer, term {} of {r}", r - k), (r - k) as f64 / (r + 1) as f64);
        let d = ndlab_core::conv::decoupled_forward(x, &dec.term(k)?.merged(1)?, None, geometry)?;
        if tails.sum.is_empty() {
            tails.sum = vec![0.0; d.data.len()];
            tails.shape = (d.c, d.h, d.w);
            let plane = d.h * d.w;
            tails.terms_channels = if d.data.len().saturating_mul(r) <= keep_terms.max_floats {
                0..d.c
            } else {
                match keep_terms.channel {
                    Some(ch) if ch < d.c && plane.saturating_mul(r) <= keep_terms.max_floats => ch..ch + 1,
                    _ => 0..0,
                }
            };
        } else if d.data.len() != tails.sum.len() {
            return Err(Error::Shape("a term's output differs in size from the layer's".into()));
        }
        for (a, &v) in tails.sum.iter_mut().zip(&d.data) {
            *a += v as f64;
        }
        if k >= 1 {
            tails.norms[k - 1] = tails.sum.iter().map(|v| v * v).sum();
        }
        if keep == Some(k) {
            tails.kept = Some(tails.sum.clone());
        }
        if !tails.terms_channels.is_empty() {
            let plane = d.h * d.w;
            let range = tails.terms_channels.start * plane..tails.terms_channels.end * plane;
            let part = d.data.get(range).ok_or_else(|| Error::Shape("a term's output is short".into()))?;
            tails.terms.push(part.to_vec());
        }
    }
    // (Run from the last term down.)
    tails.terms.reverse();
    Ok(tails)
}

fn no_layer() -> Error {
    Error::Param("no layer loaded yet".into())
}

fn check_t(t: usize, full_rank: usize) -> Result<()> {
    if t == 0 || t > full_rank {
        return Err(Error::Param(format!("T = {t} out of range (1..={full_rank})")));
    }
    Ok(())
}

/// The decomposition without its factors: σ and energies only.
fn strip(d: &Decomposition) -> Decomposition {
    let slices = d
        .slices
        .iter()
        .map(|s| Slice { sigma: s.sigma.clone(), dw: Vec::new(), pw: Vec::new(), energy: s.energy })
        .collect();
    Decomposition {
        order: d.order,
        n: d.n,
        c: d.c,
        kh: d.kh,
        kw: d.kw,
        groups: d.groups,
        full_rank: d.full_rank,
        slices,
    }
}

/// The slice matrix of METHOD.md: DW→PW slice c = rows W[n, c] over the n of c's group;
/// PW→DW slice n = rows W[n, i] over the inputs i of n's group. Row-major, K² columns, f64.
fn slice_matrix(layer: &ConvLayer, order: Order, index: usize) -> Result<Vec<f64>> {
    let k = &layer.kernel;
    let groups = layer.geometry.groups.max(1);
    let n_per_group = k.n / groups;
    let mut out = Vec::new();
    match order {
        Order::DwPw => {
            if index >= k.c * groups {
                return Err(Error::Param(format!("input channel {index} out of range")));
            }
            let (g, i) = (index / k.c, index % k.c);
            for o in g * n_per_group..(g + 1) * n_per_group {
                out.extend(k.filter(o, i).iter().map(|&v| v as f64));
            }
        }
        Order::PwDw => {
            if index >= k.n {
                return Err(Error::Param(format!("output channel {index} out of range")));
            }
            for i in 0..k.c {
                out.extend(k.filter(index, i).iter().map(|&v| v as f64));
            }
        }
    }
    Ok(out)
}

/// True when the example's input comes from the VGG16-BN prefix.
fn needs_model(ex: &Example) -> bool {
    matches!(ex.input, InputSpec::Vgg(l) if l != VggLayer::Conv1_1)
}

/// What the VGG16-BN prefix (`model`: its safetensors bytes) feeds `example`'s layer for the
/// built-in image `png`, computed as the engine computes it (same decoding, resizing and prefix):
/// the contents of the example's precomputed input file, if it ships one.
pub fn compute_vgg_input(example: &str, png: &[u8], model: &[u8]) -> Result<FeatureMap> {
    let ex = examples::find(example).ok_or_else(|| Error::Param(format!("unknown example '{example}'")))?;
    if !needs_model(ex) {
        return Err(Error::Param(format!("{example} does not take VGG16-BN activations")));
    }
    let image = ndlab_io::picture::rgba_from_png(png, ndlab_io::picture::PAGE_SIDE)?;
    let vgg = VggPrefix::from_safetensors(model)?;
    Ok(layer_input(ex, &image, Some(&vgg))?.0)
}

/// Runs of each layer in [`Engine::settle_timings`].
const SETTLE_RUNS: usize = 3;

/// The precomputed input of `ex`'s VGG layer (a `.npy` of shape C × H × W or 1 × C × H × W),
/// checked against the shape the prefix gives for `image`.
fn shipped_input(ex: &Example, image: &RgbaImage, bytes: &[u8]) -> Result<(FeatureMap, String)> {
    let InputSpec::Vgg(layer) = ex.input else {
        return Err(Error::Param(format!("{} takes no VGG16-BN activations", ex.id)));
    };
    let a = ndlab_io::npy::read_npy(bytes)?;
    let (mut h, mut w) = ndlab_io::vgg::working_size(image.width, image.height, WORKING_SIDE);
    for l in VggLayer::ALL.iter().take(layer.position()) {
        if l.pool_after() {
            (h, w) = (h / 2, w / 2);
        }
    }
    let c = layer.channels().1;
    if a.shape != [c, h, w] && a.shape != [1, c, h, w] {
        return Err(Error::Shape(format!(
            "the precomputed input has shape {:?}, the prefix gives {c}×{h}×{w}",
            a.shape
        )));
    }
    let x = FeatureMap::new(c, h, w, a.data)?;
    Ok((
        x,
        format!(
            "the real VGG16-BN activations that feed {} for this image (shipped precomputed)",
            layer.name()
        ),
    ))
}

/// The input of `ex`'s layer for `image`, and a sentence saying what it is.
fn layer_input(ex: &Example, image: &RgbaImage, vgg: Option<&VggPrefix>) -> Result<(FeatureMap, String)> {
    let rgb = |norm| image_to_map(&image.rgba, image.width, image.height, WORKING_SIDE, norm);
    match ex.input {
        InputSpec::Vgg(VggLayer::Conv1_1) => Ok((
            rgb(Normalisation::ImageNet)?,
            "the image, normalised as in ImageNet training (VGG16-BN's input)".into(),
        )),
        InputSpec::Vgg(layer) => {
            let vgg = vgg.ok_or_else(|| Error::Param("the VGG16-BN prefix is not loaded".into()))?;
            let x = vgg.input_of(&rgb(Normalisation::ImageNet)?, layer)?;
            Ok((x, format!("the real VGG16-BN activations that feed {} for this image", layer.name())))
        }
        InputSpec::Image(norm) => Ok((rgb(norm)?, "the image itself, normalised".to_string())),
        InputSpec::Random { seed } => {
            let (h, w) = ndlab_io::vgg::working_size(image.width, image.height, WORKING_SIDE);
            let x = ndlab_core::random::random_input(ex.shape.1, h, w, seed)?;
            Ok((
                x,
                "Gaussian noise: this network's activations are not shipped, so the output error is \
                 measured on noise"
                    .to_string(),
            ))
        }
    }
}

#[cfg(test)]
mod term_cache_tests {
    use super::TermCache;

    /// Hand-computed sums: two terms, two channels of two pixels, with and without a bias.
    #[test]
    fn channel_at_sums_the_first_t_terms_and_adds_the_bias() {
        let cache = TermCache {
            plane: 2,
            channels: 0..2,
            terms: vec![vec![1.0, 2.0, 3.0, 4.0], vec![10.0, 20.0, 30.0, 40.0]],
        };
        let bias = [0.5f32, -1.0];
        assert_eq!(cache.channel_at(1, 1, Some(&bias)).expect("T = 1"), vec![2.0, 3.0]);
        assert_eq!(cache.channel_at(2, 0, Some(&bias)).expect("T = 2"), vec![11.5, 22.5]);
        assert_eq!(cache.channel_at(2, 1, None).expect("no bias"), vec![33.0, 44.0]);
        for (t, ch) in [(0, 0), (3, 0), (1, 2)] {
            assert!(cache.channel_at(t, ch, None).is_err(), "T = {t}, channel {ch}");
        }
        // Channel 1 only (a layer whose terms do not all fit).
        let one = TermCache { plane: 2, channels: 1..2, terms: vec![vec![3.0, 4.0], vec![30.0, 40.0]] };
        assert_eq!(one.channel_at(2, 1, Some(&bias)).expect("channel 1"), vec![32.0, 43.0]);
        assert!(one.channel_at(1, 0, None).is_err(), "channel 0 is not held");
    }
}
