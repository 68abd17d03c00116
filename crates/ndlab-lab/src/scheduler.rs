//! The worker's request lifecycle as a pure state machine: the host (`src/bin/worker.rs`) feeds it
//! messages and the clock, and executes the [`Action`]s it returns (fetch, run, post, wait).
//!
//! The policy:
//! - **Boot.** Started with the page's query (`?boot&…`), the worker queues that view's requests
//!   itself (id [`BOOT_ID`]: layer, image, forward, curve) and starts their downloads at once,
//!   while the page's own wasm loads. A view whose input ships precomputed downloads that file and
//!   defers the network prefix until the queue is empty.
//! - **Coalescing, newest wins.** Only the newest request of each [`RequestKind`] runs; the
//!   page's requests run before boot requests still queued, in id order.
//! - **Repeats.** The page's copy of the boot's layer request, once the boot's is answered, is
//!   answered [`ResponseBody::SameAsBoot`] (the page has the layer). A page request for another
//!   layer, image or file drops the boot requests still queued.
//! - **Warm-up.** Before the first request that runs convs, [`WARM_UP_ROUNDS`] rounds of
//!   `engine::warm_up` (wasm starts in a baseline tier; a long call never switches tiers).
//! - **Settling.** Once idle, and [`SETTLE_QUIET_MS`] after the last answer (the page redraws on
//!   it; T stepped a few times a second must not land on a timing run), one timing step at a time.

use crate::engine::{precomputed_input_asset, Engine, MODEL_ASSET};
use crate::protocol::{Request, RequestBody, RequestKind, Response, ResponseBody};
use crate::state::AppState;
use std::collections::HashMap;

/// Id of the worker's own boot requests (the page's ids start at 1).
pub const BOOT_ID: u64 = 0;

/// How long the worker waits after its last answer before it times a layer (ms).
pub const SETTLE_QUIET_MS: f64 = 600.0;

/// Rounds of `engine::warm_up` before the first request that runs convs.
pub const WARM_UP_ROUNDS: usize = 4;

/// What the host does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start downloading this file (relative to the app's root) ahead of need.
    Prefetch(String),
    /// Fetch what the request needs, hand it to the engine, run it and post its answers; when
    /// `quiet_errors`, an error answer is not posted (a boot request: the view came from the
    /// address unclamped, and the page's own request reports its own errors).
    Run {
        /// The request.
        req: Request,
        /// Errors are not posted.
        quiet_errors: bool,
    },
    /// Post this answer; nothing runs.
    Reply(Response),
    /// Run `engine::warm_up` this many times, yielding between rounds, then ask again.
    WarmUp(usize),
    /// One step of `Engine::settle_timings`; post the result it returns (with id [`BOOT_ID`]).
    Settle,
    /// Nothing to do for this long (ms), unless a message arrives: ask again then.
    Wait(f64),
    /// Nothing to do until a message arrives.
    Idle,
}

/// What the queue reads of the engine.
pub trait EngineView {
    /// Files the request needs that the engine does not hold.
    fn assets_needed(&self, body: &RequestBody) -> Vec<String>;
    /// Files the request makes likely to be needed soon.
    fn assets_to_prefetch(&self, body: &RequestBody) -> Vec<String>;
    /// Whether the last forward's timings are still to be settled.
    fn timings_unsettled(&self) -> bool;
}

impl EngineView for Engine {
    fn assets_needed(&self, body: &RequestBody) -> Vec<String> {
        Engine::assets_needed(self, body)
    }
    fn assets_to_prefetch(&self, body: &RequestBody) -> Vec<String> {
        Engine::assets_to_prefetch(self, body)
    }
    fn timings_unsettled(&self) -> bool {
        Engine::timings_unsettled(self)
    }
}

/// The worker's queue (see the module's documentation).
#[derive(Debug, Default)]
pub struct WorkerQueue {
    queue: Vec<Request>,
    /// What the boot requests ask (a page request for another layer, image or file empties it).
    boot: Vec<RequestBody>,
    /// The boot requests answered (not with an error).
    boot_answered: Vec<RequestBody>,
    /// Downloads to start once the queue is empty.
    deferred: Vec<String>,
    warm: bool,
    /// When the last request was answered (ms).
    last_answer: f64,
}

impl WorkerQueue {
    /// An empty queue (a worker started without a boot query: the comparison pool's).
    pub fn new() -> Self {
        WorkerQueue::default()
    }

    /// A queue holding the boot requests of the view in `query` (the page's address query), and
    /// the downloads to start at once.
    pub fn boot(query: &str, engine: &impl EngineView) -> (Self, Vec<Action>) {
        let state = AppState::from_query(query);
        let bodies = vec![
            RequestBody::LoadExample {
                example: state.example.clone(),
                slice: Some((state.order, state.channel)),
            },
            RequestBody::LoadBuiltinImage { image: state.image.clone() },
            RequestBody::Forward { t: state.t, order: state.order, out_channel: state.out_channel },
            RequestBody::OutputErrorCurve { order: state.order },
        ];
        let mut q = WorkerQueue { boot: bodies.clone(), ..WorkerQueue::default() };
        let mut actions = Vec::new();
        // A view whose input ships precomputed needs that file, not the network prefix.
        let shipped = precomputed_input_asset(&state.image, &state.example);
        if let Some(path) = &shipped {
            actions.push(Action::Prefetch(path.clone()));
            q.deferred.push(MODEL_ASSET.to_string());
        }
        for body in bodies {
            let paths = match shipped {
                Some(_) => engine.assets_needed(&body),
                None => q.prefetch_paths(&body, engine),
            };
            actions.extend(paths.into_iter().map(Action::Prefetch));
            q.queue.push(Request { id: BOOT_ID, body });
        }
        (q, actions)
    }

    /// A request from the page: queued; returns the downloads to start now.
    pub fn on_request(&mut self, req: Request, engine: &impl EngineView) -> Vec<Action> {
        let actions = self.prefetch_paths(&req.body, engine).into_iter().map(Action::Prefetch).collect();
        self.drop_obsolete_boot(&req);
        self.queue.push(req);
        actions
    }

    /// What to do now (`now`: the host's clock, ms). The host yields to its message loop before
    /// each call, so that messages posted meanwhile are queued first.
    pub fn next(&mut self, now: f64, engine: &impl EngineView) -> Action {
        self.queue = coalesce(std::mem::take(&mut self.queue));
        if !self.queue.is_empty() {
            let req = self.queue.remove(0);
            if req.id != BOOT_ID
                && matches!(req.body, RequestBody::LoadExample { .. })
                && self.boot.contains(&req.body)
                && self.boot_answered.contains(&req.body)
            {
                self.last_answer = now;
                return Action::Reply(Response { id: req.id, body: ResponseBody::SameAsBoot });
            }
            if !self.warm && runs_convs(&req) {
                self.warm = true;
                self.queue.insert(0, req);
                return Action::WarmUp(WARM_UP_ROUNDS);
            }
            let quiet_errors = req.id == BOOT_ID;
            return Action::Run { req, quiet_errors };
        }
        if let Some(path) = self.deferred.pop() {
            return Action::Prefetch(path);
        }
        if engine.timings_unsettled() {
            let quiet = now - self.last_answer;
            if quiet < SETTLE_QUIET_MS {
                return Action::Wait(SETTLE_QUIET_MS - quiet);
            }
            return Action::Settle;
        }
        Action::Idle
    }

    /// The host finished running `req` at `now`; `ok`: its final answer was not an error.
    pub fn finished(&mut self, req: &Request, ok: bool, now: f64) {
        self.last_answer = now;
        if req.id == BOOT_ID && ok {
            self.boot_answered.push(req.body.clone());
        }
    }

    /// Requests waiting (after coalescing at the next [`WorkerQueue::next`]).
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// The request's downloads: what it needs and what it makes likely, except what the boot
    /// deferred when the request is the page's copy of a boot request.
    fn prefetch_paths(&self, body: &RequestBody, engine: &impl EngineView) -> Vec<String> {
        let mut paths = engine.assets_needed(body);
        paths.extend(engine.assets_to_prefetch(body));
        let deferred: &[String] = if self.boot.contains(body) { &self.deferred } else { &[] };
        paths.retain(|p| !deferred.contains(p));
        paths.dedup();
        paths
    }

    /// Drops the queued boot requests when the page asks for a layer, image or file other than
    /// the boot's (their answers would describe another view).
    fn drop_obsolete_boot(&mut self, req: &Request) {
        if !matches!(req.body.kind(), RequestKind::Example | RequestKind::Image | RequestKind::File) {
            return;
        }
        if self.boot.contains(&req.body) {
            return;
        }
        self.boot.clear();
        self.boot_answered.clear();
        self.queue.retain(|r| r.id != BOOT_ID);
    }
}

/// Whether the request runs convs (and so wants the kernels warm): loading an example before any
/// image, a slice view or opening a file do not; the boot's layer request is followed by its
/// input at once.
fn runs_convs(req: &Request) -> bool {
    let boot_example = req.id == BOOT_ID && matches!(req.body, RequestBody::LoadExample { .. });
    boot_example
        || !matches!(
            req.body,
            RequestBody::LoadExample { .. } | RequestBody::Slice { .. } | RequestBody::OpenFile { .. }
        )
}

/// Keeps only the newest request of each kind: the page's requests in id order, then the boot
/// requests in the order they were queued.
fn coalesce(reqs: Vec<Request>) -> Vec<Request> {
    let mut newest: HashMap<RequestKind, (usize, Request)> = HashMap::new();
    for (seq, r) in reqs.into_iter().enumerate() {
        let kind = r.body.kind();
        if newest.get(&kind).is_none_or(|(_, old)| old.id <= r.id) {
            newest.insert(kind, (seq, r));
        }
    }
    let mut out: Vec<(usize, Request)> = newest.into_values().collect();
    out.sort_by_key(|(seq, r)| (r.id == BOOT_ID, r.id, *seq));
    out.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests;
