//! Each policy of the worker's queue that the page relies on (and the end-to-end tests measure).

use super::*;
use crate::engine::Engine;
use ndlab_core::layer::Order;
use std::cell::Cell;

fn clock() -> f64 {
    0.0
}

/// An engine stand-in: needs nothing, and says whether timings are unsettled.
#[derive(Default)]
struct Fake {
    unsettled: Cell<bool>,
}

impl EngineView for Fake {
    fn assets_needed(&self, _: &RequestBody) -> Vec<String> {
        Vec::new()
    }
    fn assets_to_prefetch(&self, _: &RequestBody) -> Vec<String> {
        Vec::new()
    }
    fn timings_unsettled(&self) -> bool {
        self.unsettled.get()
    }
}

fn forward(t: usize) -> RequestBody {
    RequestBody::Forward { t, order: Order::DwPw, out_channel: 0 }
}

fn example(id: &str) -> RequestBody {
    RequestBody::LoadExample { example: id.into(), slice: Some((Order::DwPw, 0)) }
}

/// Runs the queue until it has nothing to run, answering every request `ok`; returns what ran.
fn run_all(q: &mut WorkerQueue, e: &impl EngineView, now: f64) -> Vec<Request> {
    let mut ran = Vec::new();
    loop {
        match q.next(now, e) {
            Action::Run { req, .. } => {
                q.finished(&req, true, now);
                ran.push(req);
            }
            Action::WarmUp(_) | Action::Prefetch(_) | Action::Reply(_) => {}
            _ => return ran,
        }
    }
}

fn prefetches(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Prefetch(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn boot_queues_the_views_four_requests_and_starts_their_downloads() {
    let engine = Engine::new(clock);
    let (mut q, actions) =
        WorkerQueue::boot("example=vgg16bn_conv2_2&t=3&order=pw-dw&image=chelsea", &engine);
    let paths = prefetches(&actions);
    assert!(paths.contains(&"assets/layers/craft_vgg16bn_conv2_2_128x128x3x3.npy".to_string()), "{paths:?}");
    assert!(paths.contains(&"assets/images/chelsea.png".to_string()), "{paths:?}");
    assert!(paths.contains(&MODEL_ASSET.to_string()), "no shipped input: the prefix at once: {paths:?}");
    let ran = run_all(&mut q, &engine, 0.0);
    assert!(ran.iter().all(|r| r.id == BOOT_ID));
    let bodies: Vec<RequestBody> = ran.into_iter().map(|r| r.body).collect();
    assert_eq!(
        bodies,
        vec![
            RequestBody::LoadExample { example: "vgg16bn_conv2_2".into(), slice: Some((Order::PwDw, 0)) },
            RequestBody::LoadBuiltinImage { image: "chelsea".into() },
            RequestBody::Forward { t: 3, order: Order::PwDw, out_channel: 0 },
            RequestBody::OutputErrorCurve { order: Order::PwDw },
        ]
    );
}

#[test]
fn a_shipped_input_defers_the_network_prefix_until_the_queue_is_empty() {
    let engine = Engine::new(clock);
    let (mut q, actions) = WorkerQueue::boot("", &engine);
    let paths = prefetches(&actions);
    let shipped =
        precomputed_input_asset("astronaut", "vgg16bn_conv3_2").expect("the default view ships its input");
    assert_eq!(paths.first(), Some(&shipped));
    assert!(!paths.contains(&MODEL_ASSET.to_string()), "{paths:?}");
    // The page's copy of a boot request does not start the deferred download either.
    let copy = q.on_request(
        Request { id: 1, body: RequestBody::LoadBuiltinImage { image: "astronaut".into() } },
        &engine,
    );
    assert!(!prefetches(&copy).contains(&MODEL_ASSET.to_string()), "{copy:?}");
    // Once the queue is empty, the prefix is downloaded (before anything else is done).
    let mut saw_prefix_after_runs = false;
    let mut runs = 0;
    loop {
        match q.next(0.0, &engine) {
            Action::Run { req, .. } => {
                runs += 1;
                q.finished(&req, true, 0.0);
            }
            Action::Prefetch(p) => {
                assert_eq!(p, MODEL_ASSET);
                assert_eq!(q.pending(), 0, "deferred until the queue is empty");
                saw_prefix_after_runs = runs > 0;
            }
            Action::WarmUp(_) | Action::Reply(_) => {}
            _ => break,
        }
    }
    assert!(saw_prefix_after_runs);
}

#[test]
fn only_the_newest_request_of_a_kind_runs_and_page_requests_overtake_boot_requests() {
    let e = Fake::default();
    let (mut q, _) = WorkerQueue::boot("", &e);
    for (id, t) in [(1, 1), (2, 5), (3, 2)] {
        q.on_request(Request { id, body: forward(t) }, &e);
    }
    q.on_request(Request { id: 4, body: RequestBody::Slice { order: Order::DwPw, slice: 7 } }, &e);
    let ran = run_all(&mut q, &e, 0.0);
    let ids: Vec<u64> = ran.iter().map(|r| r.id).collect();
    // The page's forward (newest, id 3) replaced the boot's forward and the older ones; the
    // page's requests first, then what is left of the boot's.
    assert_eq!(ids, vec![3, 4, BOOT_ID, BOOT_ID, BOOT_ID]);
    assert_eq!(ran[0].body, forward(2));
    assert!(!ran.iter().any(|r| r.id == BOOT_ID && matches!(r.body, RequestBody::Forward { .. })));
}

#[test]
fn the_pages_copy_of_an_answered_boot_layer_request_is_answered_same_as_boot() {
    let e = Fake::default();
    let (mut q, _) = WorkerQueue::boot("example=mtcnn_onet_conv1&t=2&order=dw-pw", &e);
    let boot_layer = example("mtcnn_onet_conv1");
    run_all(&mut q, &e, 0.0);
    q.on_request(Request { id: 1, body: boot_layer.clone() }, &e);
    assert_eq!(q.next(1.0, &e), Action::Reply(Response { id: 1, body: ResponseBody::SameAsBoot }));
    // Another example is run (and forgets the boot's).
    q.on_request(Request { id: 2, body: example("vgg16bn_conv1_2") }, &e);
    assert!(matches!(q.next(1.0, &e), Action::Run { req, .. } if req.id == 2));
    q.on_request(Request { id: 3, body: boot_layer }, &e);
    assert!(matches!(q.next(1.0, &e), Action::Run { req, .. } if req.id == 3));
}

#[test]
fn a_failed_boot_layer_request_is_not_a_reason_to_skip_the_pages() {
    let e = Fake::default();
    let (mut q, _) = WorkerQueue::boot("example=mtcnn_onet_conv1", &e);
    assert_eq!(q.next(0.0, &e), Action::WarmUp(WARM_UP_ROUNDS));
    let Action::Run { req, quiet_errors } = q.next(0.0, &e) else { panic!() };
    assert!(quiet_errors && req.id == BOOT_ID);
    q.finished(&req, false, 0.0);
    q.on_request(Request { id: 1, body: req.body.clone() }, &e);
    let Action::Run { req, quiet_errors } = q.next(0.0, &e) else { panic!() };
    assert!(req.id == 1 && !quiet_errors, "the page's own request reports its errors");
}

#[test]
fn a_page_request_for_another_layer_drops_the_queued_boot_requests() {
    let e = Fake::default();
    let (mut q, _) = WorkerQueue::boot("example=mtcnn_onet_conv1", &e);
    q.on_request(Request { id: 1, body: example("vgg16bn_conv1_2") }, &e);
    let ran = run_all(&mut q, &e, 0.0);
    assert_eq!(ran.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1]);
    // A slice or forward request does not (they apply to whatever layer is loaded).
    let (mut q, _) = WorkerQueue::boot("example=mtcnn_onet_conv1", &e);
    q.on_request(Request { id: 1, body: RequestBody::Slice { order: Order::DwPw, slice: 1 } }, &e);
    assert_eq!(run_all(&mut q, &e, 0.0).len(), 5);
}

#[test]
fn kernels_are_warmed_up_once_before_the_first_request_that_runs_convs() {
    let e = Fake::default();
    let mut q = WorkerQueue::new();
    q.on_request(Request { id: 1, body: example("vgg16bn_conv1_2") }, &e);
    assert!(matches!(q.next(0.0, &e), Action::Run { .. }), "loading a layer runs no conv");
    q.on_request(Request { id: 2, body: RequestBody::Slice { order: Order::DwPw, slice: 1 } }, &e);
    assert!(matches!(q.next(0.0, &e), Action::Run { .. }), "nor does a slice view");
    q.on_request(Request { id: 3, body: forward(2) }, &e);
    assert_eq!(q.next(0.0, &e), Action::WarmUp(WARM_UP_ROUNDS));
    assert!(matches!(q.next(0.0, &e), Action::Run { req, .. } if req.id == 3));
    q.on_request(Request { id: 4, body: forward(3) }, &e);
    assert!(matches!(q.next(0.0, &e), Action::Run { req, .. } if req.id == 4), "once");
    // The boot's layer request warms up too (its input follows at once).
    let (mut q, _) = WorkerQueue::boot("", &e);
    assert_eq!(q.next(0.0, &e), Action::WarmUp(WARM_UP_ROUNDS));
}

#[test]
fn timings_settle_only_after_a_quiet_spell_and_requests_come_first() {
    let e = Fake::default();
    let mut q = WorkerQueue::new();
    q.on_request(Request { id: 1, body: RequestBody::Slice { order: Order::DwPw, slice: 0 } }, &e);
    let Action::Run { req, .. } = q.next(1000.0, &e) else { panic!() };
    q.finished(&req, true, 1000.0);
    assert_eq!(q.next(1100.0, &e), Action::Idle, "nothing to settle");
    e.unsettled.set(true);
    assert_eq!(q.next(1100.0, &e), Action::Wait(SETTLE_QUIET_MS - 100.0));
    assert_eq!(q.next(1000.0 + SETTLE_QUIET_MS, &e), Action::Settle);
    // A request that arrives meanwhile runs first, and restarts the quiet spell.
    q.on_request(Request { id: 2, body: RequestBody::Slice { order: Order::DwPw, slice: 1 } }, &e);
    let Action::Run { req, .. } = q.next(2000.0, &e) else { panic!() };
    q.finished(&req, true, 2000.0);
    assert_eq!(q.next(2001.0, &e), Action::Wait(SETTLE_QUIET_MS - 1.0));
    e.unsettled.set(false);
    assert_eq!(q.next(2001.0, &e), Action::Idle);
}
