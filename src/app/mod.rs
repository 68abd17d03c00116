//! The browser app (wasm only). Components hold signals and views; the maths runs in the core,
//! the heavy work in the Web Worker (`src/bin/worker.rs`), reached through [`client::WorkerClient`].

mod canvas;
mod client;
mod files;
mod image;
mod model;
mod plots;
mod prewarm;
mod relatives;
mod view;

use client::WorkerClient;
use leptos::prelude::*;
use ndlab_core::Order;
use ndlab_lab::protocol::{
    ForwardResult, InputSummary, LayerSummary, RequestBody, Response, ResponseBody, SliceView,
};
use ndlab_lab::state::AppState;

/// The shown output channel's term maps, as the worker last sent them ([`ForwardResult::terms`]).
struct TermMaps {
    order: Order,
    out_channel: usize,
    /// The original map of the answer they came with (the same input and channel as the one
    /// shown when equal).
    original: Vec<f32>,
    bias: f32,
    maps: Vec<Vec<f32>>,
}

thread_local! {
    static TERM_MAPS: std::cell::RefCell<Option<TermMaps>> = const { std::cell::RefCell::new(None) };
}

/// Takes the term maps out of a forward answer (any answer, even one the page drops as stale:
/// the worker sends them once per ordering, channel and input) and keeps them.
fn keep_term_maps(f: &mut ForwardResult) {
    if f.terms.is_empty() {
        return;
    }
    let maps = std::mem::take(&mut f.terms);
    let kept = TermMaps {
        order: f.order,
        out_channel: f.out_channel,
        original: f.original.clone(),
        bias: f.bias,
        maps,
    };
    TERM_MAPS.with(|t| *t.borrow_mut() = Some(kept));
}

/// The forward result at `t` made on the page from the kept term maps, when they belong to the
/// shown result's ordering, channel and input and the output-error curve of the ordering is
/// here: the sum of the first T maps (as the worker sums them: the same bits), the error from
/// the curve, and no time for the decoupled layer at this T yet (the worker's answer brings it).
fn local_forward(
    shown: &ForwardResult,
    t: usize,
    curve: &[f64],
    layer: &LayerSummary,
) -> Option<ForwardResult> {
    TERM_MAPS.with(|k| {
        let k = k.borrow();
        let k = k.as_ref()?;
        let same =
            (k.order, k.out_channel) == (shown.order, shown.out_channel) && k.original == shown.original;
        if !same || t == 0 || t > k.maps.len() || k.maps.iter().any(|m| m.len() != shown.h * shown.w) {
            return None;
        }
        let weight_error = layer.order(shown.order)?.spectra.rel_weight_error().get(t - 1).copied()?;
        Some(ForwardResult {
            t,
            decoupled: ndlab_lab::engine::sum_terms(&k.maps[..t], k.bias),
            rel_error: *curve.get(t - 1)?,
            weight_error,
            decoupled_ms: 0.0,
            settled: false,
            terms: Vec::new(),
            ..shown.clone()
        })
    })
}

/// Mounts the app on `<body>`.
pub fn mount() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(view::App);
}

/// Everything the views read and write, shared by context.
#[derive(Clone, Copy)]
pub(crate) struct Ctx {
    /// The user's choices (mirrored in the URL).
    pub state: RwSignal<AppState>,
    /// The loaded layer's summary (both orderings).
    pub layer: RwSignal<Option<LayerSummary>>,
    /// The chosen slice's factors.
    pub slice: RwSignal<Option<SliceView>>,
    /// The latest forward result.
    pub fwd: RwSignal<Option<ForwardResult>>,
    /// Output error curves received, by ordering.
    pub curves: RwSignal<Vec<(Order, Vec<f64>)>>,
    /// The current input's description.
    pub input: RwSignal<Option<InputSummary>>,
    /// Progress of the worker's current task.
    pub progress: RwSignal<Option<(String, f64)>>,
    /// The last error, shown in a banner.
    pub error: RwSignal<Option<String>>,
    /// Bumped on window resize (charts redraw).
    pub resize: RwSignal<u32>,
    /// The worker.
    pub client: StoredValue<Option<WorkerClient>, LocalStorage>,
    /// The opened model file's layers (see `files.rs`).
    pub file: RwSignal<Option<ndlab_lab::files::FileListing>>,
    /// Whether the secondary sections (the comparison with its relatives) are mounted: only
    /// once the first plots are drawn (or a few seconds have passed), so that their DOM, styles
    /// and fonts do not delay them.
    pub extras: RwSignal<bool>,
}

impl Ctx {
    fn new() -> Self {
        let search = web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default();
        Ctx {
            state: RwSignal::new(AppState::from_query(&search)),
            layer: RwSignal::new(None),
            slice: RwSignal::new(None),
            fwd: RwSignal::new(None),
            curves: RwSignal::new(Vec::new()),
            input: RwSignal::new(None),
            progress: RwSignal::new(None),
            error: RwSignal::new(None),
            resize: RwSignal::new(0),
            client: StoredValue::new_local(None),
            file: RwSignal::new(None),
            extras: RwSignal::new(false),
        }
    }

    /// Sends a request with the user's file next to it (no-op if the worker failed to start).
    pub fn send_file(&self, body: RequestBody, file: &web_sys::File) {
        let file: wasm_bindgen::JsValue = file.clone().into();
        relatives::mirror(&body, Some(&file));
        self.client.with_value(|c| {
            if let Some(c) = c {
                c.send_with(body, Some(file));
            }
        });
    }

    /// Sends a request to the worker (no-op if the worker failed to start).
    pub fn send(&self, body: RequestBody) {
        relatives::mirror(&body, None);
        self.client.with_value(|c| {
            if let Some(c) = c {
                c.send(body);
            }
        });
    }

    /// Applies a worker response to the signals.
    fn on_response(&self, resp: Response) {
        match resp.body {
            // (The boot's answers, with id 0, have been taken as they came.)
            ResponseBody::Ready | ResponseBody::SameAsBoot => {}
            ResponseBody::Partial(body) => self.on_response(Response { id: resp.id, body: *body }),
            ResponseBody::Progress { stage, fraction } => self.progress.set(Some((stage, fraction))),
            ResponseBody::Layer(summary) => {
                self.progress.set(None);
                self.error.set(None);
                let summary = *summary;
                // The same layer again (the page asks for what the worker already sent on its own
                // at start-up): keep what was computed for it.
                if self.layer.with_untracked(|l| l.as_ref().is_some_and(|l| same_layer(l, &summary))) {
                    if let Some(input) = summary.input {
                        self.on_response(Response { id: resp.id, body: ResponseBody::Input(input) });
                    }
                    return;
                }
                self.state.update(|s| clamp_to_layer(s, &summary));
                self.input.set(summary.input.clone());
                // The slice view that came with the layer counts only if it is the one shown now.
                let (order, channel) = self.state.with_untracked(|s| (s.order, s.channel));
                self.slice.set(summary.slice.clone().filter(|v| v.order == order && v.index == channel));
                self.fwd.set(None);
                self.curves.set(Vec::new());
                self.layer.set(Some(summary));
            }
            ResponseBody::Input(input) => {
                self.progress.set(None);
                if self.input.with_untracked(|i| i.as_ref() != Some(&input)) {
                    self.curves.set(Vec::new());
                    self.input.set(Some(input));
                }
            }
            ResponseBody::Slice(s) => self.slice.set(Some(*s)),
            ResponseBody::Forward(f) => {
                self.progress.set(None);
                // Answers with id 0 come from the worker on its own (the boot's view, settled
                // timings): they count only while the page still shows that view.
                // (The same original map: the same layer, input and channel as the one shown.)
                let current = self.state.with_untracked(|s| (s.t, s.order, s.out_channel));
                let same_input =
                    self.fwd.with_untracked(|g| g.as_ref().is_none_or(|g| g.original == f.original));
                if resp.id != 0 || ((f.t, f.order, f.out_channel) == current && same_input) {
                    self.fwd.set(Some(*f));
                }
            }
            ResponseBody::OutputErrorCurve { order, errors } => {
                self.progress.set(None);
                self.curves.update(|c| {
                    c.retain(|(o, _)| *o != order);
                    c.push((order, errors));
                });
            }
            ResponseBody::FileListing(listing) => {
                self.progress.set(None);
                self.error.set(None);
                self.file.set(Some(*listing));
            }
            ResponseBody::CompareRow(_) | ResponseBody::Compare(_) => {}
            ResponseBody::Error { message } => {
                self.progress.set(None);
                self.error.set(Some(message));
            }
        }
    }

    /// Full rank of the current ordering (9 before a layer is loaded).
    pub fn full_rank(&self) -> usize {
        let order = self.state.with(|s| s.order);
        self.layer.with(|l| l.as_ref().and_then(|l| l.order(order)).map(|o| o.spectra.full_rank).unwrap_or(9))
    }
}

/// Clamps T and the channels to what `layer` allows.
fn clamp_to_layer(s: &mut AppState, layer: &LayerSummary) {
    if let Some(o) = layer.order(s.order) {
        s.clamp_to(o.spectra.full_rank, o.spectra.slices.len(), layer.n);
    }
}

/// Starts the worker and wires its responses into `ctx`.
fn start_worker(ctx: Ctx) {
    match WorkerClient::start(move |r| ctx.on_response(r)) {
        Ok(c) => ctx.client.set_value(Some(c)),
        Err(e) => ctx.error.set(Some(e)),
    }
}

/// True when two layer summaries describe the same layer and spectra (the slice view and the
/// input that may come with them aside).
fn same_layer(a: &ndlab_lab::protocol::LayerSummary, b: &ndlab_lab::protocol::LayerSummary) -> bool {
    let bare = |l: &ndlab_lab::protocol::LayerSummary| ndlab_lab::protocol::LayerSummary {
        input: None,
        slice: None,
        ..l.clone()
    };
    bare(a) == bare(b)
}
