//! The page model against the real engine, natively: the requests it sends go through the
//! engine (as through the worker), the answers come back through the request book, and what
//! the page shows is checked against the engine's own answers and the core.

use super::*;
use crate::client::{Post, RequestBook};
use crate::engine::{DirAssets, Engine};
use crate::protocol::Request;
use std::path::Path;

fn clock() -> f64 {
    0.0
}

/// The page, the worker's engine between them a request book, all synchronous: a request is
/// answered as soon as it is sent (requests after a frame wait for [`Harness::frame`]).
struct Harness {
    page: PageModel,
    engine: Engine,
    book: RequestBook,
    after_frame: Option<RequestBody>,
    /// Every request the engine answered, in order.
    sent: Vec<RequestBody>,
    /// The changes the page reported.
    changed: Vec<Changed>,
}

impl Harness {
    fn new(query: &str) -> Self {
        let mut h = Harness {
            page: PageModel::new(AppState::from_query(query)),
            engine: Engine::new(clock),
            book: RequestBook::new(),
            after_frame: None,
            sent: Vec::new(),
            changed: Vec::new(),
        };
        h.book.on_response(&Response { id: 0, body: ResponseBody::Ready });
        let up = h.page.start();
        h.run(up);
        h
    }

    fn run(&mut self, up: Update) {
        self.changed.push(up.changed);
        for s in up.sends {
            match s {
                Send::Now(body) => self.send(body),
                Send::AfterFrame(body) => self.after_frame = Some(body),
            }
        }
    }

    fn send(&mut self, body: RequestBody) {
        let (_, posts) = self.book.send(body);
        self.post(posts);
    }

    fn post(&mut self, posts: Vec<Post>) {
        for p in posts {
            if let Post::Send(req) = p {
                self.answer(req);
            }
        }
    }

    fn answer(&mut self, req: Request) {
        self.sent.push(req.body.clone());
        let repo = DirAssets(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
        let mut partial = Vec::new();
        let resp = self.engine.handle_with(&repo, req, &mut |p| partial.push(p));
        for r in partial.into_iter().chain([resp]) {
            self.deliver(r);
        }
    }

    fn deliver(&mut self, r: Response) {
        let (ok, posts) = self.book.on_response(&r);
        if ok {
            let up = self.page.apply(r);
            self.run(up);
        }
        self.post(posts);
    }

    /// The page drew a frame: the request waiting for it goes.
    fn frame(&mut self) {
        if let Some(body) = self.after_frame.take() {
            self.send(body);
        }
    }

    fn control(&mut self, c: Control) -> Update {
        let up = self.page.on_control(c);
        self.run(up.clone());
        up
    }

    fn count(&self, f: impl Fn(&RequestBody) -> bool) -> usize {
        self.sent.iter().filter(|b| f(b)).count()
    }
}

const ONET: &str = "example=mtcnn_onet_conv1&t=2&order=dw-pw&image=camera&out=3";

/// The user's own small image (as the page sends it: RGBA), so that one channel's term maps are
/// small enough to travel with the first forward answer.
fn small_image(h: &mut Harness) {
    let (w, ht) = (24, 20);
    let rgba = (0..w * ht).flat_map(|i| [(i * 7 % 256) as u8, (i / w * 11 % 256) as u8, 60, 255]).collect();
    h.control(Control::Image("upload".into()));
    h.control(Control::Request(RequestBody::LoadImage { rgba, width: w, height: ht }, "decoding".into()));
}

#[test]
fn the_first_view_loads_the_layer_and_image_then_asks_for_its_forward_and_curve() {
    let mut h = Harness::new(ONET);
    let layer = h.page.layer.clone().expect("layer");
    assert_eq!((layer.n, layer.c), (32, 3));
    assert!(h.page.input.is_some());
    // The layer came with the slice view: no second request for it.
    assert_eq!(h.count(|b| matches!(b, RequestBody::Slice { .. })), 0);
    assert_eq!(h.page.slice.as_ref().map(|s| (s.order, s.index)), Some((Order::DwPw, 0)));
    assert_eq!(h.count(|b| matches!(b, RequestBody::OutputErrorCurve { .. })), 1);
    assert!(h.page.curve(Order::DwPw).is_some());
    // The forward waits for a frame.
    assert!(h.page.forward.is_none());
    h.frame();
    let f = h.page.forward.clone().expect("forward");
    assert_eq!((f.t, f.order, f.out_channel), (2, Order::DwPw, 3));
    assert_eq!(f.layer_id, layer.layer_id);
    assert!(h.page.progress.is_none() && h.page.error.is_none());
}

#[test]
fn a_t_change_shows_the_maps_at_once_from_the_kept_terms_then_asks_the_worker() {
    let mut h = Harness::new(ONET);
    small_image(&mut h);
    h.frame();
    let sent = h.sent.len();
    let up = h.control(Control::T(5));
    assert!(up.changed.forward && up.changed.state);
    assert_eq!(h.sent.len(), sent, "nothing sent before the frame");
    let local = h.page.forward.clone().expect("local forward");
    assert_eq!(local.t, 5);
    assert_eq!(local.timings.decoupled_ms, 0.0);
    // The worker's answer brings the same maps, bit for bit, and the same error.
    h.frame();
    let worker = h.page.forward.clone().expect("worker forward");
    assert_eq!(worker.t, 5);
    assert_eq!(local.maps, worker.maps);
    assert_eq!(local.rel_error, worker.rel_error);
    assert_eq!(local.weight_error, worker.weight_error);
    // Only the forward was asked for (not the curve or the slice again).
    assert_eq!(h.sent[sent..], [RequestBody::Forward { t: 5, order: Order::DwPw, out_channel: 3 }]);
}

#[test]
fn answers_for_another_view_are_not_shown() {
    let mut h = Harness::new(ONET);
    h.frame();
    let shown = h.page.forward.clone().expect("forward");
    // The worker's own answer (id 0) for another T: not shown.
    let mut other = shown.clone();
    other.t = 7;
    h.page.apply(Response { id: 0, body: ResponseBody::Forward(Box::new(other.clone())) });
    assert_eq!(h.page.forward.as_ref().map(|f| f.t), Some(2));
    // An answer for another input (even to a request of the page): not shown.
    other.t = 2;
    other.input_id += 100;
    h.page.apply(Response { id: 9, body: ResponseBody::Forward(Box::new(other)) });
    assert_eq!(h.page.forward.as_ref(), Some(&shown));
    // Nor a curve of another layer.
    let mut curve = h.page.curve(Order::DwPw).cloned().expect("curve");
    curve.layer_id += 100;
    curve.errors = vec![0.5; curve.errors.len()];
    h.page.apply(Response { id: 9, body: ResponseBody::OutputErrorCurve(curve) });
    assert!(h.page.curve(Order::DwPw).is_some_and(|c| c.errors[0] != 0.5));
}

#[test]
fn the_ordering_toggle_clamps_t_and_asks_for_slice_forward_and_curve() {
    let mut h = Harness::new("example=mtcnn_onet_conv1&t=7&order=dw-pw&image=camera");
    h.frame();
    h.control(Control::ToggleOrder);
    // PW→DW of a 3-input layer has full rank 3.
    assert_eq!((h.page.state.order, h.page.state.t), (Order::PwDw, 3));
    h.frame();
    assert_eq!(h.page.slice.as_ref().map(|s| s.order), Some(Order::PwDw));
    assert!(h.page.curve(Order::PwDw).is_some());
    let f = h.page.forward.clone().expect("forward");
    assert_eq!((f.order, f.t), (Order::PwDw, 3));
    assert!(f.rel_error < 1e-5, "full rank is exact");
}

#[test]
fn a_threshold_sets_t_by_its_rule_and_a_t_change_clears_it() {
    let mut h = Harness::new(ONET);
    let spectra =
        h.page.layer.as_ref().and_then(|l| l.order(Order::DwPw)).map(|o| o.spectra.clone()).unwrap();
    h.control(Control::Threshold(0.95));
    assert_eq!(h.page.state.tau, Some(0.95));
    assert_eq!(h.page.state.t, spectra.threshold_t(0.95, ThresholdRule::Mean).unwrap());
    h.control(Control::Rule(ThresholdRule::Max));
    assert_eq!(h.page.state.t, spectra.threshold_t(0.95, ThresholdRule::Max).unwrap());
    h.control(Control::StepT(-1));
    assert_eq!(h.page.state.tau, None, "T and τ never contradict each other");
    h.control(Control::T(1000));
    assert_eq!(h.page.state.t, 9, "clamped to the full rank");
}

#[test]
fn a_new_example_loads_with_its_presets_and_drops_the_old_results() {
    let mut h = Harness::new(ONET);
    h.frame();
    let old = h.page.layer.as_ref().map(|l| l.layer_id);
    h.control(Control::Example("classic_bank".into()));
    let ex = examples::find("classic_bank").unwrap();
    assert_eq!((h.page.state.t, h.page.state.order), (ex.preset_t, ex.preset_order));
    let layer = h.page.layer.clone().expect("the new layer");
    assert_ne!(Some(layer.layer_id), old);
    assert!(h.page.input.as_ref().is_some_and(|i| i.layer_id == layer.layer_id));
    assert!(h.page.forward.is_none(), "the old layer's maps are gone until the frame");
    h.frame();
    assert_eq!(h.page.forward.as_ref().map(|f| f.layer_id), Some(layer.layer_id));
    // Asking for the same example again changes nothing.
    let curves = h.page.curves.clone();
    h.control(Control::ReloadExample);
    assert_eq!(h.page.layer.as_ref().map(|l| l.layer_id), Some(layer.layer_id));
    assert_eq!(h.page.curves, curves);
}

#[test]
fn errors_are_shown_until_something_loads_and_a_bad_threshold_is_an_error() {
    let mut h = Harness::new(ONET);
    h.control(Control::Request(
        RequestBody::LoadFileLayer { layer: "x".into(), fold_bn: false },
        "loading x".into(),
    ));
    let e = h.page.error.clone().expect("no file is open");
    assert!(e.contains("no model file"), "{e}");
    assert!(h.page.progress.is_none());
    h.control(Control::DismissError);
    assert!(h.page.error.is_none());
    h.control(Control::Threshold(f64::NAN));
    assert_eq!(h.page.state.tau, None, "not a number: ignored");
}

#[test]
fn a_new_image_drops_the_curves_and_the_forward_follows_the_new_input() {
    let mut h = Harness::new(ONET);
    h.frame();
    let before = h.page.input.as_ref().map(|i| i.input_id);
    h.control(Control::Image("chelsea".into()));
    let input = h.page.input.clone().expect("input");
    assert_ne!(Some(input.input_id), before);
    assert!(h.page.curve(Order::DwPw).is_some_and(|c| c.input_id == input.input_id));
    h.frame();
    assert_eq!(h.page.forward.as_ref().map(|f| f.input_id), Some(input.input_id));
    // `upload`: nothing is sent (the page sends the pixels itself).
    let n = h.sent.len();
    h.control(Control::Image("upload".into()));
    assert_eq!(h.sent.len(), n);
}
