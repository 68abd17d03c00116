//! The browser app (wasm only). What the page shows and which requests follow live in
//! [`ndlab_lab::page::PageModel`]; here the components bind signals to it, and the hosts run
//! the workers ([`client::WorkerClient`]) and draw the charts ([`canvas::Canvases`]).

mod canvas;
mod client;
mod controls;
mod files;
mod hooks;
mod image;
mod model;
mod network;
mod plots;
mod prewarm;
mod relatives;
mod view;

use client::WorkerClient;
use leptos::prelude::*;
use ndlab_lab::files::FileListing;
use ndlab_lab::page::{Control, PageModel, Send, Update};
use ndlab_lab::protocol::{
    ErrorCurve, ForwardResult, InputSummary, LayerSummary, RequestBody, Response, SliceView,
};
use ndlab_lab::state::AppState;
use wasm_bindgen::JsValue;

/// Mounts the app on `<body>`.
pub fn mount() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(view::App);
}

/// Everything the views read, shared by context: the model's parts as signals (set from the
/// model after each event), and the hosts.
#[derive(Clone, Copy)]
pub(crate) struct Ctx {
    /// The user's choices (mirrored in the URL).
    pub state: RwSignal<AppState>,
    /// The loaded layer's summary (both orderings).
    pub layer: RwSignal<Option<LayerSummary>>,
    /// The chosen slice's factors.
    pub slice: RwSignal<Option<SliceView>>,
    /// The forward result shown.
    pub fwd: RwSignal<Option<ForwardResult>>,
    /// Output error curves of the layer and input shown, by ordering.
    pub curves: RwSignal<Vec<ErrorCurve>>,
    /// The current input's description.
    pub input: RwSignal<Option<InputSummary>>,
    /// Progress of the worker's current task.
    pub progress: RwSignal<Option<(String, f64)>>,
    /// The last error, shown in a banner.
    pub error: RwSignal<Option<String>>,
    /// The opened model file's layers (see `files.rs`).
    pub file: RwSignal<Option<FileListing>>,
    /// Bumped on window resize (charts redraw).
    pub resize: RwSignal<u32>,
    /// Whether the secondary sections (the comparison with its relatives) are mounted: only
    /// once the first plots are drawn (or a few seconds have passed), so that their DOM, styles
    /// and fonts do not delay them.
    pub extras: RwSignal<bool>,
    /// The page model (the signals above mirror it).
    model: StoredValue<PageModel, LocalStorage>,
    /// The worker.
    client: StoredValue<Option<WorkerClient>, LocalStorage>,
    /// The request to send after the next frame (the newest wins), and whether a frame is awaited.
    after_frame: StoredValue<(Option<RequestBody>, bool)>,
    /// The canvases' shared state (sizes, text measure, drawing queue).
    pub canvases: StoredValue<canvas::Canvases, LocalStorage>,
    /// The whole network's pool and view (see `network.rs`).
    net: StoredValue<network::NetHosts, LocalStorage>,
    /// The comparison's worker (see `relatives.rs`).
    pool: StoredValue<relatives::Pool, LocalStorage>,
    /// The chart data computed from the spectra shown.
    pub charts: StoredValue<plots::Cache, LocalStorage>,
    /// Bits of the charts drawn at least once (`hooks::charts_drawn`).
    drawn: StoredValue<u8>,
}

impl Ctx {
    fn new() -> Self {
        let search = web_sys::window().and_then(|w| w.location().search().ok()).unwrap_or_default();
        let state = AppState::from_query(&search);
        Ctx {
            state: RwSignal::new(state.clone()),
            layer: RwSignal::new(None),
            slice: RwSignal::new(None),
            fwd: RwSignal::new(None),
            curves: RwSignal::new(Vec::new()),
            input: RwSignal::new(None),
            progress: RwSignal::new(None),
            error: RwSignal::new(None),
            file: RwSignal::new(None),
            resize: RwSignal::new(0),
            extras: RwSignal::new(false),
            model: StoredValue::new_local(PageModel::new(state)),
            client: StoredValue::new_local(None),
            after_frame: StoredValue::new((None, false)),
            canvases: StoredValue::new_local(canvas::Canvases::new()),
            charts: StoredValue::new_local(plots::Cache::default()),
            pool: StoredValue::new_local(relatives::Pool::new()),
            net: StoredValue::new_local(network::NetHosts::default()),
            drawn: StoredValue::new(0),
        }
    }

    /// Starts the worker and sends the address's first requests.
    fn start(&self) {
        let ctx = *self;
        match WorkerClient::adopt_or_start(move |r| ctx.on_response(r)) {
            Ok(c) => self.client.set_value(Some(c)),
            Err(e) => self.control(Control::Error(e)),
        }
        let up = self.model.try_update_value(|m| m.start()).unwrap_or_default();
        self.bind(up, None);
    }

    /// A control changed.
    pub fn control(&self, c: Control) {
        let up = self.model.try_update_value(|m| m.on_control(c)).unwrap_or_default();
        self.bind(up, None);
    }

    /// A control whose request carries the user's file (structured-cloned, never uploaded).
    pub fn control_with_file(&self, c: Control, file: &web_sys::File) {
        let up = self.model.try_update_value(|m| m.on_control(c)).unwrap_or_default();
        self.bind(up, Some(file.clone().into()));
    }

    /// A worker answer.
    fn on_response(&self, resp: Response) {
        let up = self.model.try_update_value(|m| m.apply(resp)).unwrap_or_default();
        self.bind(up, None);
    }

    /// Copies the changed parts of the model into the signals and sends the requests.
    fn bind(&self, up: Update, mut attachment: Option<JsValue>) {
        let ch = up.changed;
        self.model.with_value(|m| {
            if ch.state {
                self.state.set(m.state.clone());
            }
            if ch.layer {
                self.layer.set(m.layer.clone());
            }
            if ch.slice {
                self.slice.set(m.slice.clone());
            }
            if ch.forward {
                self.fwd.set(m.forward.clone());
            }
            if ch.curves {
                self.curves.set(m.curves.clone());
            }
            if ch.input {
                self.input.set(m.input.clone());
            }
            if ch.progress {
                self.progress.set(m.progress.clone());
            }
            if ch.error {
                self.error.set(m.error.clone());
            }
            if ch.file {
                self.file.set(m.file.clone());
            }
        });
        for s in up.sends {
            match s {
                Send::Now(body) => self.send(body, attachment.take()),
                Send::AfterFrame(body) => self.send_after_frame(body),
            }
        }
    }

    fn send(&self, body: RequestBody, attachment: Option<JsValue>) {
        self.pool.update_value(|p| p.mirror(&body, attachment.as_ref()));
        self.client.with_value(|c| {
            if let Some(c) = c {
                c.send_with(body, attachment);
            }
        });
    }

    /// Sends `body` once the page has drawn its next frame (the newest such request wins); a
    /// timer sends it too, for a hidden tab, which draws no frames.
    fn send_after_frame(&self, body: RequestBody) {
        let waiting = self.after_frame.try_update_value(|(slot, waiting)| {
            *slot = Some(body);
            std::mem::replace(waiting, true)
        });
        if waiting.unwrap_or(true) {
            return;
        }
        let ctx = *self;
        let flush = move || {
            let body = ctx.after_frame.try_update_value(|(slot, waiting)| {
                *waiting = false;
                slot.take()
            });
            if let Some(Some(body)) = body {
                ctx.send(body, None);
            }
        };
        request_animation_frame(move || set_timeout(flush, std::time::Duration::ZERO));
        set_timeout(flush, std::time::Duration::from_millis(100));
    }

    /// Full rank of the current ordering (9 before a layer is loaded); reactive.
    pub fn full_rank(&self) -> usize {
        let order = self.state.with(|s| s.order);
        self.layer.with(|l| l.as_ref().and_then(|l| l.order(order)).map(|o| o.spectra.full_rank).unwrap_or(9))
    }

    /// Records that chart `bit` has been drawn; mounts the secondary sections once all have.
    pub fn chart_drawn(&self, bit: u8) {
        let drawn = self.drawn.try_update_value(|d| {
            *d |= 1 << bit;
            *d
        });
        if drawn.is_some_and(hooks::charts_drawn) {
            self.extras.set(true);
        }
    }
}
