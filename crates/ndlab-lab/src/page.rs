//! The page as a pure model: what it shows (state, layer, slice, forward result, curves, input,
//! progress, error, file listing), how a worker answer or a control changes it, and which
//! requests follow. The page's components only bind signals to it (`src/app/`); everything here
//! is tested natively.
//!
//! Which requests follow is decided as the page's effects used to decide it: each request
//! depends on some keys (the example, the image, the ordering and slice, T, the output channel,
//! the loaded layer and input ids) and is sent when one of its keys changes:
//! - the example → load it (with the view of the slice shown);
//! - the image → load it (built-in images only: the user's own is sent by the page as RGBA);
//! - (ordering, slice, layer) → the slice view, unless the layer brought it;
//! - (input, ordering, output channel, T, layer) → the forward pass, after the next frame: a T
//!   change alone first shows the maps at the new T made here from the kept term maps (the same
//!   sum as the worker's: the same bits), in the frame of the change;
//! - (input, ordering, layer) → the output-error curve.

use crate::examples::{self, IMAGES};
use crate::files::FileListing;
use crate::protocol::{
    ErrorCurve, ForwardResult, InputId, InputSummary, LayerId, LayerSummary, RequestBody, Response,
    ResponseBody, SliceView, TermMaps, Timings,
};
use crate::state::{AppState, NetStrategy, View, MAX_NET_LAYERS, MAX_NET_T};
use ndlab_core::decouple::terms::sum_terms;
use ndlab_core::decouple::ThresholdRule;
use ndlab_core::layer::Order;

/// A user's action on the page's controls.
#[derive(Debug, Clone, PartialEq)]
pub enum Control {
    /// T from the slider (clamped to the layer; clears τ).
    T(usize),
    /// T one step up or down (the arrow keys; clears τ).
    StepT(isize),
    /// The other ordering.
    ToggleOrder,
    /// An energy threshold τ (and its rule): T follows it.
    Threshold(f64),
    /// The rule that turns τ into T (T follows τ, or 0.90 when none is set).
    Rule(ThresholdRule),
    /// The slice shown in the filters view.
    Channel(usize),
    /// The output channel shown in the feature maps.
    OutChannel(usize),
    /// A built-in example (its preset T and ordering).
    Example(String),
    /// A built-in image, or `upload` (the page sends the user's pixels itself).
    Image(String),
    /// The comparison's budget (speed-up over the regular layer).
    Speedup(f64),
    /// The built-in example again (after a file's layer).
    ReloadExample,
    /// A request the page makes itself (a file to open, one of its layers, the user's image),
    /// with what the progress line says meanwhile.
    Request(RequestBody, String),
    /// An error the page found itself (a file it could not decode, a chart it could not draw).
    Error(String),
    /// The error banner dismissed.
    DismissError,
    /// The view (the lab, or the whole network alone).
    View(View),
    /// A setting of the whole-network view.
    Net(NetControl),
}

/// A setting of the whole-network view.
#[derive(Debug, Clone, PartialEq)]
pub enum NetControl {
    /// How T is chosen (per-layer values set by hand are dropped).
    Strategy(NetStrategy),
    /// The other ordering.
    ToggleOrder,
    /// T of one T for all.
    T(usize),
    /// τ of the threshold rules.
    Tau(f64),
    /// The budget's speed-up.
    Speedup(f64),
    /// Data-aware decoupling on or off.
    Aware(bool),
    /// T per layer set by hand (0 keeps a layer); None goes back to the strategy.
    Ts(Option<Vec<usize>>),
}

/// Which parts of the model changed (the host updates those signals only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    pub state: bool,
    pub layer: bool,
    pub slice: bool,
    pub forward: bool,
    pub curves: bool,
    pub input: bool,
    pub progress: bool,
    pub error: bool,
    pub file: bool,
}

/// When a request goes to the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Send {
    /// Now.
    Now(RequestBody),
    /// Once the page has drawn its next frame (the newest such request wins): a T change redraws
    /// the charts in that frame, and the worker's answer then neither competes with it for the
    /// CPU nor lands in it.
    AfterFrame(RequestBody),
}

/// What an event did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Update {
    /// The parts that changed.
    pub changed: Changed,
    /// The requests to send.
    pub sends: Vec<Send>,
}

/// The shown output channel's term maps, as the worker last sent them.
#[derive(Debug, Clone, PartialEq)]
struct KeptTerms {
    layer_id: LayerId,
    input_id: InputId,
    order: Order,
    out_channel: usize,
    terms: TermMaps,
}

/// The keys the requests depend on (see the module's documentation).
#[derive(Debug, Clone, PartialEq)]
struct Keys {
    example: String,
    image: String,
    order: Order,
    channel: usize,
    out_channel: usize,
    t: usize,
    layer: Option<LayerId>,
    input: Option<InputId>,
}

/// Everything the page shows (see the module's documentation).
#[derive(Debug, Clone)]
pub struct PageModel {
    /// The user's choices (mirrored in the URL).
    pub state: AppState,
    /// The loaded layer.
    pub layer: Option<LayerSummary>,
    /// The chosen slice's factors.
    pub slice: Option<SliceView>,
    /// The latest forward result shown.
    pub forward: Option<ForwardResult>,
    /// Output-error curves of the layer and input shown, by ordering.
    pub curves: Vec<ErrorCurve>,
    /// The layer's current input.
    pub input: Option<InputSummary>,
    /// The worker's current task and how far along it is.
    pub progress: Option<(String, f64)>,
    /// The last error, for the banner.
    pub error: Option<String>,
    /// The opened model file's layers.
    pub file: Option<FileListing>,
    kept: Option<KeptTerms>,
    /// The forward request's (input, ordering, output channel) when it was last sent.
    forward_key: Option<(Option<InputId>, Order, usize)>,
}

impl PageModel {
    /// The page for `state` (from the address), nothing loaded.
    pub fn new(state: AppState) -> Self {
        PageModel {
            state,
            layer: None,
            slice: None,
            forward: None,
            curves: Vec::new(),
            input: None,
            progress: None,
            error: None,
            file: None,
            kept: None,
            forward_key: None,
        }
    }

    /// The first requests: the example and the image of the address.
    pub fn start(&mut self) -> Update {
        let mut up = Update::default();
        self.follow(None, &mut up);
        up
    }

    /// Full rank of the shown ordering (9 before a layer is loaded).
    pub fn full_rank(&self) -> usize {
        self.layer.as_ref().and_then(|l| l.order(self.state.order)).map_or(9, |o| o.spectra.full_rank)
    }

    /// The error curve of `order` for the layer and input shown.
    pub fn curve(&self, order: Order) -> Option<&ErrorCurve> {
        self.curves.iter().find(|c| c.order == order)
    }

    /// A control changed.
    pub fn on_control(&mut self, control: Control) -> Update {
        let before = self.keys();
        let mut up = Update::default();
        let state_before = self.state.clone();
        let full = self.full_rank();
        match control {
            Control::T(t) => {
                self.state.t = t.clamp(1, full);
                self.state.tau = None;
            }
            Control::StepT(d) => {
                self.state.t = self.state.t.saturating_add_signed(d).clamp(1, full);
                self.state.tau = None;
            }
            Control::ToggleOrder => {
                self.state.order = self.state.order.flip();
                self.clamp_state();
            }
            Control::Threshold(tau) if tau.is_finite() => {
                self.state.tau = Some(tau.clamp(0.01, 1.0));
                self.apply_threshold(&mut up);
            }
            Control::Threshold(_) => {}
            Control::Rule(rule) => {
                self.state.rule = rule;
                self.apply_threshold(&mut up);
            }
            Control::Channel(c) => {
                self.state.channel = c;
                self.clamp_state();
            }
            Control::OutChannel(c) => {
                self.state.out_channel = c;
                self.clamp_state();
            }
            Control::Example(id) => {
                if let Some(ex) = examples::find(&id) {
                    self.state.example = id;
                    self.state.t = ex.preset_t;
                    self.state.order = ex.preset_order;
                    self.state.tau = None;
                }
            }
            Control::Image(id) => self.state.image = id,
            Control::Speedup(x) => {
                if let Some(x) = crate::state::parse_speedup(&x.to_string()) {
                    self.state.speedup = x;
                }
            }
            Control::ReloadExample => {
                let body = self.load_example();
                self.set_progress(&mut up, Some((format!("loading {}", self.state.example), 0.0)));
                up.sends.push(Send::Now(body));
            }
            Control::Request(body, label) => {
                self.set_progress(&mut up, Some((label, 0.0)));
                up.sends.push(Send::Now(body));
            }
            Control::Error(message) => self.set_error(&mut up, Some(message)),
            Control::DismissError => self.set_error(&mut up, None),
            Control::View(v) => self.state.view = v,
            Control::Net(c) => self.net_control(c),
        }
        up.changed.state |= self.state != state_before;
        self.follow(Some(before), &mut up);
        up
    }

    /// A worker answer arrived (one the request book delivers: not stale).
    pub fn apply(&mut self, resp: Response) -> Update {
        let before = self.keys();
        let mut up = Update::default();
        self.apply_body(resp.id, resp.body, &mut up);
        self.follow(Some(before), &mut up);
        up
    }

    fn apply_body(&mut self, id: u64, body: ResponseBody, up: &mut Update) {
        match body {
            ResponseBody::Ready | ResponseBody::SameAsBoot => {}
            ResponseBody::Partial(body) => self.apply_body(id, *body, up),
            ResponseBody::Progress { stage, fraction } => self.set_progress(up, Some((stage, fraction))),
            ResponseBody::Layer(summary) => self.take_layer(*summary, up),
            ResponseBody::Input(input) => self.take_input(input, up),
            ResponseBody::Slice(s) => {
                if self.layer.as_ref().is_some_and(|l| l.layer_id == s.layer_id) {
                    self.slice = Some(*s);
                    up.changed.slice = true;
                }
            }
            ResponseBody::Forward(mut f) => {
                self.set_progress(up, None);
                self.keep_terms(&mut f);
                // Answers with id 0 come from the worker on its own (the boot's view, settled
                // timings): they count only while the page still shows their view.
                let shown = self.is_shown(f.layer_id, f.input_id);
                let s = &self.state;
                if shown && (id != 0 || f.is_for(f.layer_id, f.input_id, s.t, s.order, s.out_channel)) {
                    self.forward = Some(*f);
                    up.changed.forward = true;
                }
            }
            ResponseBody::OutputErrorCurve(c) => {
                self.set_progress(up, None);
                if self.is_shown(c.layer_id, c.input_id) {
                    self.curves.retain(|k| k.order != c.order);
                    self.curves.push(c);
                    up.changed.curves = true;
                }
            }
            ResponseBody::FileListing(listing) => {
                self.set_progress(up, None);
                self.set_error(up, None);
                self.file = Some(*listing);
                up.changed.file = true;
            }
            // (The comparison and the whole network have sections of their own.)
            ResponseBody::CompareRow(_)
            | ResponseBody::Compare(_)
            | ResponseBody::Network(_)
            | ResponseBody::Plan(_)
            | ResponseBody::Evaluated(_)
            | ResponseBody::Timed(_)
            | ResponseBody::Exported { .. }
            | ResponseBody::NetworkLayer(_) => {}
            ResponseBody::Error { message } => {
                self.set_progress(up, None);
                self.set_error(up, Some(message));
            }
        }
    }

    /// Whether (`layer`, `input`) is what the page shows.
    fn is_shown(&self, layer: LayerId, input: InputId) -> bool {
        self.layer.as_ref().is_some_and(|l| l.layer_id == layer)
            && self.input.as_ref().is_some_and(|i| i.input_id == input)
    }

    fn take_layer(&mut self, summary: LayerSummary, up: &mut Update) {
        self.set_progress(up, None);
        self.set_error(up, None);
        // The same layer again (the page asks for what the worker sent on its own at start-up):
        // keep what was computed for it.
        if self.layer.as_ref().is_some_and(|l| l.layer_id == summary.layer_id) {
            if let Some(input) = summary.input {
                self.take_input(input, up);
            }
            return;
        }
        let state_before = self.state.clone();
        if let Some(o) = summary.order(self.state.order) {
            self.state.clamp_to(o.spectra.full_rank, o.spectra.slices.len(), summary.n);
        }
        up.changed.state |= self.state != state_before;
        // The slice view that came with the layer counts only if it is the one shown now.
        let (order, channel) = (self.state.order, self.state.channel);
        self.slice = summary.slice.clone().filter(|v| v.order == order && v.index == channel);
        self.input = summary.input.clone();
        self.forward = None;
        self.curves.clear();
        self.layer = Some(summary);
        up.changed =
            Changed { layer: true, slice: true, input: true, forward: true, curves: true, ..up.changed };
    }

    fn take_input(&mut self, input: InputSummary, up: &mut Update) {
        self.set_progress(up, None);
        if self.input.as_ref() != Some(&input) {
            self.curves.clear();
            self.input = Some(input);
            up.changed.curves = true;
            up.changed.input = true;
        }
    }

    /// Keeps the term maps of a forward answer (any answer, even one not shown: the worker sends
    /// them once per ordering, channel and input).
    fn keep_terms(&mut self, f: &mut ForwardResult) {
        if let Some(terms) = f.terms.take() {
            self.kept = Some(KeptTerms {
                layer_id: f.layer_id,
                input_id: f.input_id,
                order: f.order,
                out_channel: f.out_channel,
                terms,
            });
        }
    }

    /// The forward result at `t` made from the kept term maps, when they belong to the shown
    /// result's layer, input, ordering and channel and the ordering's error curve is here: the
    /// sum of the first T maps (the worker's summation: the same bits), the error from the curve,
    /// no time for the decoupled layer at this T yet (the worker's answer brings it).
    fn local_forward(&self, t: usize) -> Option<ForwardResult> {
        let shown = self.forward.as_ref()?;
        let k = self.kept.as_ref()?;
        let same = (k.layer_id, k.input_id, k.order, k.out_channel)
            == (shown.layer_id, shown.input_id, shown.order, shown.out_channel);
        let plane = shown.maps.h * shown.maps.w;
        if !same || t == 0 || t > k.terms.maps.len() || k.terms.maps.iter().any(|m| m.len() != plane) {
            return None;
        }
        let weight_error =
            self.layer.as_ref()?.order(shown.order)?.spectra.rel_weight_error().get(t - 1).copied()?;
        let rel_error = *self.curve(shown.order)?.errors.get(t - 1)?;
        let mut f = shown.clone();
        f.t = t;
        f.maps.decoupled = sum_terms(&k.terms.maps[..t], k.terms.bias);
        f.rel_error = rel_error;
        f.weight_error = weight_error;
        f.timings = Timings { decoupled_ms: 0.0, settled: false, ..shown.timings.clone() };
        Some(f)
    }

    fn net_control(&mut self, c: NetControl) {
        let n = &mut self.state.net;
        match c {
            NetControl::Strategy(s) => {
                n.strategy = s;
                n.ts = None;
            }
            NetControl::ToggleOrder => {
                n.order = n.order.flip();
                n.ts = None;
            }
            NetControl::T(t) => {
                n.t = t.clamp(1, MAX_NET_T);
                n.ts = None;
            }
            NetControl::Tau(x) if x.is_finite() => {
                n.tau = (x.clamp(0.01, 1.0) * 1000.0).round() / 1000.0;
                n.ts = None;
            }
            NetControl::Tau(_) => {}
            NetControl::Speedup(x) => {
                if let Some(x) = crate::state::parse_speedup(&x.to_string()) {
                    n.speedup = x;
                    n.ts = None;
                }
            }
            NetControl::Aware(a) => n.aware = a,
            NetControl::Ts(ts) => {
                n.ts = ts
                    .filter(|t| !t.is_empty() && t.len() <= MAX_NET_LAYERS)
                    .map(|t| t.into_iter().map(|x| x.min(MAX_NET_T)).collect())
            }
        }
    }

    /// T from the energy threshold τ (0.90 when none is set) and the rule, on the shown layer.
    fn apply_threshold(&mut self, up: &mut Update) {
        let (tau, rule, order) = (self.state.tau.unwrap_or(0.9), self.state.rule, self.state.order);
        let t = self.layer.as_ref().and_then(|l| l.order(order)).map(|o| o.spectra.threshold_t(tau, rule));
        match t {
            Some(Ok(t)) => self.state.t = t,
            Some(Err(e)) => self.set_error(up, Some(e.to_string())),
            None => {}
        }
    }

    fn clamp_state(&mut self) {
        if let Some(l) = &self.layer {
            if let Some(o) = l.order(self.state.order) {
                self.state.clamp_to(o.spectra.full_rank, o.spectra.slices.len(), l.n);
            }
        }
    }

    fn set_progress(&mut self, up: &mut Update, p: Option<(String, f64)>) {
        if self.progress != p {
            self.progress = p;
            up.changed.progress = true;
        }
    }

    fn set_error(&mut self, up: &mut Update, e: Option<String>) {
        if self.error != e {
            self.error = e;
            up.changed.error = true;
        }
    }

    fn load_example(&self) -> RequestBody {
        let s = &self.state;
        RequestBody::LoadExample { example: s.example.clone(), slice: Some((s.order, s.channel)) }
    }

    fn keys(&self) -> Keys {
        let s = &self.state;
        Keys {
            example: s.example.clone(),
            image: s.image.clone(),
            order: s.order,
            channel: s.channel,
            out_channel: s.out_channel,
            t: s.t,
            layer: self.layer.as_ref().map(|l| l.layer_id),
            input: self.input.as_ref().map(|i| i.input_id),
        }
    }

    /// The requests whose keys changed since `before` (all of them at the start).
    fn follow(&mut self, before: Option<Keys>, up: &mut Update) {
        let now = self.keys();
        let changed = |f: &dyn Fn(&Keys) -> bool| before.as_ref().is_none_or(f);
        if changed(&|b| b.example != now.example) {
            self.set_progress(up, Some((format!("loading {}", now.example), 0.0)));
            up.sends.push(Send::Now(self.load_example()));
        }
        if changed(&|b| b.image != now.image) && IMAGES.iter().any(|i| i.id == now.image) {
            up.sends.push(Send::Now(RequestBody::LoadBuiltinImage { image: now.image.clone() }));
        }
        if changed(&|b| (b.order, b.channel, b.layer) != (now.order, now.channel, now.layer)) {
            let have = self.slice.as_ref().is_some_and(|v| v.order == now.order && v.index == now.channel);
            if now.layer.is_some() && !have {
                up.sends.push(Send::Now(RequestBody::Slice { order: now.order, slice: now.channel }));
            }
        }
        let forward_key = (now.input, now.order, now.out_channel);
        if changed(&|b| {
            (b.input, b.order, b.out_channel, b.t, b.layer)
                != (now.input, now.order, now.out_channel, now.t, now.layer)
        }) {
            let previous = self.forward_key.replace(forward_key);
            if now.layer.is_some() && now.input.is_some() {
                // A T change alone: the maps at the new T are made here, in the frame of the change.
                if previous == Some(forward_key) {
                    let local = self
                        .forward
                        .as_ref()
                        .filter(|f| f.t != now.t)
                        .and_then(|_| self.local_forward(now.t));
                    if let Some(f) = local {
                        self.forward = Some(f);
                        up.changed.forward = true;
                    }
                }
                let (t, order, out_channel) = (now.t, now.order, now.out_channel);
                up.sends.push(Send::AfterFrame(RequestBody::Forward { t, order, out_channel }));
            }
        }
        if changed(&|b| (b.input, b.order, b.layer) != (now.input, now.order, now.layer))
            && now.layer.is_some()
            && now.input.is_some()
        {
            up.sends.push(Send::Now(RequestBody::OutputErrorCurve { order: now.order }));
        }
    }
}

#[cfg(test)]
mod tests;
