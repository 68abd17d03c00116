//! The UI thread's side of the worker protocol.
//!
//! [`WorkerClient`] tags requests with increasing ids and keeps, per [`RequestKind`], at most one
//! request in flight and one waiting (a newer waiting request replaces an older one). A response
//! whose id is older than the newest request of its kind is dropped, so results never arrive
//! out of order and rapid slider moves never queue work.

use ndlab_lab::protocol::{from_json, to_json, Request, RequestBody, RequestKind, Response, ResponseBody};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, Worker};

/// Where the worker's loader script is, relative to the page (Trunk's loader shim): the SIMD128
/// build, which every browser with wasm SIMD loads.
const WORKER_URL: &str = "./ndlab-worker_loader.js";
/// The relaxed-SIMD (FMA) build of the same worker, for browsers that validate [`RELAXED_PROBE`].
const WORKER_FMA_URL: &str = "./ndlab-worker-fma_loader.js";

/// The smallest module using relaxed SIMD: `() -> v128` = `f32x4.relaxed_madd` of three zero
/// `v128.const`s. Validates only where relaxed SIMD is supported (same bytes as in index.html).
const RELAXED_PROBE: [u8; 82] = [
    0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 61, 1, 59, 0, 253, 12, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 253, 12, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 253, 133, 2, 11,
];

/// The worker build this browser can run: the FMA one where relaxed SIMD validates (also used
/// for the relatives panel's worker, `relatives.rs`).
pub(crate) fn worker_url() -> &'static str {
    let probe = js_sys::Uint8Array::from(&RELAXED_PROBE[..]);
    match js_sys::WebAssembly::validate(&probe.into()) {
        Ok(true) => WORKER_FMA_URL,
        _ => WORKER_URL,
    }
}

#[derive(Default)]
struct KindState {
    /// Id of the newest request sent or waiting for this kind.
    newest: u64,
    /// Id of the request in flight, if any.
    in_flight: Option<u64>,
    /// The newest request not sent yet (because one is in flight).
    waiting: Option<Request>,
}

struct Inner {
    worker: Worker,
    /// False until the worker says it is listening; requests are held in `unsent` until then.
    ready: bool,
    unsent: Vec<Request>,
    next_id: u64,
    kinds: HashMap<RequestKind, KindState>,
    /// Kind of every request in flight, by id.
    kind_of: HashMap<u64, RequestKind>,
    /// Objects sent next to a request's JSON (the user's file), by request id.
    attachments: HashMap<u64, JsValue>,
}

/// A handle on the worker; cheap to clone.
#[derive(Clone)]
pub struct WorkerClient {
    inner: Rc<RefCell<Inner>>,
}

impl WorkerClient {
    /// Starts the worker; `on_response` receives every response that is not stale (progress
    /// included) and every worker error as a [`ResponseBody::Error`].
    pub fn start(on_response: impl Fn(Response) + 'static) -> Result<Self, String> {
        let (worker, early) = match adopt_early_worker() {
            Some(found) => found,
            None => {
                (Worker::new(worker_url()).map_err(|e| format!("cannot start the worker: {e:?}"))?, vec![])
            }
        };
        let inner = Rc::new(RefCell::new(Inner {
            worker,
            ready: false,
            unsent: Vec::new(),
            next_id: 1,
            kinds: HashMap::new(),
            kind_of: HashMap::new(),
            attachments: HashMap::new(),
        }));
        let client = WorkerClient { inner };
        let on_response = Rc::new(on_response);
        let this = client.clone();
        let handler = on_response.clone();
        let on_text = move |text: String| match from_json::<Response>(&text) {
            Ok(mut resp) => {
                if let ResponseBody::Forward(f) = &mut resp.body {
                    super::keep_term_maps(f);
                }
                if this.accept(&resp) {
                    handler(resp);
                }
            }
            Err(e) => handler(Response { id: 0, body: ResponseBody::Error { message: e.to_string() } }),
        };
        for text in early {
            on_text(text);
        }
        let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            on_text(ev.data().as_string().unwrap_or_default());
        });
        let onerror = Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
            ev.prevent_default();
            on_response(Response {
                id: 0,
                body: ResponseBody::Error { message: format!("the worker failed: {}", ev.message()) },
            });
        });
        {
            let inner = client.inner.borrow();
            inner.worker.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
            inner.worker.set_onerror(Some(onerror.as_ref().unchecked_ref()));
        }
        onmessage.forget();
        onerror.forget();
        Ok(client)
    }

    /// Sends a request (or parks it until the one in flight of its kind answers). Returns its id.
    pub fn send(&self, body: RequestBody) -> u64 {
        self.send_with(body, None)
    }

    /// Like [`WorkerClient::send`], with an object (a `File`) structured-cloned next to the JSON.
    pub fn send_with(&self, body: RequestBody, attachment: Option<JsValue>) -> u64 {
        let mut guard = self.inner.borrow_mut();
        let inner = &mut *guard;
        let id = inner.next_id;
        inner.next_id += 1;
        if let Some(a) = attachment {
            inner.attachments.insert(id, a);
        }
        let kind = body.kind();
        let req = Request { id, body };
        let state = inner.kinds.entry(kind).or_default();
        state.newest = id;
        if state.in_flight.is_some() {
            // A replaced waiting request is never sent, nor its attachment.
            if let Some(old) = state.waiting.replace(req) {
                inner.attachments.remove(&old.id);
            }
        } else {
            state.in_flight = Some(id);
            inner.kind_of.insert(id, kind);
            inner.post(req);
        }
        id
    }

    /// True when `resp` is the answer to the newest request of its kind (or a message not tied
    /// to a request). Final answers free the kind's slot and send the waiting request, if any.
    fn accept(&self, resp: &Response) -> bool {
        let mut inner = self.inner.borrow_mut();
        if resp.body == ResponseBody::Ready {
            inner.ready = true;
            for req in std::mem::take(&mut inner.unsent) {
                let a = inner.attachments.remove(&req.id);
                post(&inner.worker, &req, a);
            }
            return false;
        }
        let Some(&kind) = inner.kind_of.get(&resp.id) else {
            return resp.id == 0;
        };
        let is_final = !matches!(resp.body, ResponseBody::Progress { .. } | ResponseBody::Partial(_));
        let newest = inner.kinds.get(&kind).map(|s| s.newest).unwrap_or(0);
        if is_final {
            inner.kind_of.remove(&resp.id);
            let next = inner.kinds.get_mut(&kind).and_then(|s| {
                s.in_flight = None;
                s.waiting.take()
            });
            if let Some(req) = next {
                if let Some(s) = inner.kinds.get_mut(&kind) {
                    s.in_flight = Some(req.id);
                }
                inner.kind_of.insert(req.id, kind);
                inner.post(req);
            }
        }
        resp.id >= newest
    }
}

/// The worker `index.html` started before the app loaded (`window.__ndlabWorker`), with the
/// messages it sent meanwhile; taken once.
fn adopt_early_worker() -> Option<(Worker, Vec<String>)> {
    let window = web_sys::window()?;
    let key = JsValue::from_str("__ndlabWorker");
    let found = js_sys::Reflect::get(&window, &key).ok().filter(|v| v.is_object())?;
    let _ = js_sys::Reflect::delete_property(&window, &key);
    let worker: Worker = js_sys::Reflect::get(&found, &"worker".into()).ok()?.dyn_into().ok()?;
    let early = js_sys::Reflect::get(&found, &"early".into()).ok()?;
    let early: Vec<String> = js_sys::Array::from(&early).iter().filter_map(|v| v.as_string()).collect();
    Some((worker, early))
}

impl Inner {
    /// Posts now, or holds the request until the worker is ready.
    fn post(&mut self, req: Request) {
        if self.ready {
            let a = self.attachments.remove(&req.id);
            post(&self.worker, &req, a);
        } else {
            self.unsent.push(req);
        }
    }
}

fn post(worker: &Worker, req: &Request, attachment: Option<JsValue>) {
    let text = JsValue::from_str(&to_json(req));
    let msg = match attachment {
        Some(a) => js_sys::Array::of2(&text, &a).into(),
        None => text,
    };
    if let Err(e) = worker.post_message(&msg) {
        web_sys::console::warn_1(&e);
    }
}
