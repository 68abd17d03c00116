//! The page's client of a worker: a thin executor of [`RequestBook`] (ids, in flight, waiting,
//! stale answers), posting what it is told to. One client per worker: the page's own and each
//! of the comparison pool's.

use ndlab_lab::client::{Post, RequestBook};
use ndlab_lab::protocol::{from_json, to_json, Request, RequestBody, Response, ResponseBody};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{MessageEvent, Worker};

/// The SIMD128 worker build, which every browser with wasm SIMD loads.
const WORKER_URL: &str = "./ndlab-worker_loader.js";

/// The worker build this browser runs: the one `index.html`'s inline script chose with its
/// relaxed-SIMD probe (`window.__ndlabWorkerUrl`: the FMA build where the probe validates), so
/// the probe is defined once; the SIMD128 build if the script did not run.
pub(crate) fn worker_url() -> String {
    web_sys::window()
        .and_then(|w| js_sys::Reflect::get(&w, &"__ndlabWorkerUrl".into()).ok())
        .and_then(|v| v.as_string())
        .filter(|u| u.starts_with("./ndlab-worker") && u.ends_with("_loader.js"))
        .unwrap_or_else(|| WORKER_URL.to_string())
}

struct Inner {
    worker: Worker,
    book: RequestBook,
    /// Objects sent next to a request's JSON (the user's file), by request id.
    attachments: HashMap<u64, JsValue>,
}

/// A handle on one worker; cheap to clone.
#[derive(Clone)]
pub struct WorkerClient {
    inner: Rc<RefCell<Inner>>,
}

impl WorkerClient {
    /// Adopts the worker `index.html` started before the app loaded (replaying the messages it
    /// sent meanwhile), or starts one. `on_response` receives every answer the book delivers and
    /// every worker error as a [`ResponseBody::Error`].
    pub fn adopt_or_start(on_response: impl Fn(Response) + 'static) -> Result<Self, String> {
        let (worker, early) = match adopt_early_worker() {
            Some(found) => found,
            None => (new_worker()?, Vec::new()),
        };
        Ok(Self::wire(worker, early, on_response))
    }

    /// Starts a fresh worker.
    pub fn start(on_response: impl Fn(Response) + 'static) -> Result<Self, String> {
        Ok(Self::wire(new_worker()?, Vec::new(), on_response))
    }

    fn wire(worker: Worker, early: Vec<String>, on_response: impl Fn(Response) + 'static) -> Self {
        let inner =
            Rc::new(RefCell::new(Inner { worker, book: RequestBook::new(), attachments: HashMap::new() }));
        let client = WorkerClient { inner };
        let on_response = Rc::new(on_response);
        let this = client.clone();
        let handler = on_response.clone();
        let on_text = move |text: String| match from_json::<Response>(&text) {
            Ok(resp) => {
                let (deliver, posts) = this.inner.borrow_mut().book.on_response(&resp);
                this.execute(posts);
                if deliver {
                    handler(resp);
                }
            }
            Err(e) => handler(Response { id: 0, body: ResponseBody::Error { message: e.to_string() } }),
        };
        let on_text = Rc::new(on_text);
        // The early messages are replayed once the caller holds the client (a microtask: before
        // any message that arrives later), since the answers they bring send requests.
        let replay = on_text.clone();
        wasm_bindgen_futures::spawn_local(async move {
            for text in early {
                replay(text);
            }
        });
        let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| {
            on_text(ev.data().as_string().unwrap_or_default());
        });
        let onerror = Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(move |ev: web_sys::ErrorEvent| {
            ev.prevent_default();
            let message = format!("the worker failed: {}", ev.message());
            on_response(Response { id: 0, body: ResponseBody::Error { message } });
        });
        {
            let inner = client.inner.borrow();
            inner.worker.set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
            inner.worker.set_onerror(Some(onerror.as_ref().unchecked_ref()));
        }
        onmessage.forget();
        onerror.forget();
        client
    }

    /// Sends a request (or parks it until the one in flight of its kind answers). Returns its id.
    pub fn send(&self, body: RequestBody) -> u64 {
        self.send_with(body, None)
    }

    /// Like [`WorkerClient::send`], with an object (a `File`) structured-cloned next to the JSON.
    pub fn send_with(&self, body: RequestBody, attachment: Option<JsValue>) -> u64 {
        let (id, posts) = {
            let mut inner = self.inner.borrow_mut();
            let (id, posts) = inner.book.send(body);
            if let Some(a) = attachment {
                inner.attachments.insert(id, a);
            }
            (id, posts)
        };
        self.execute(posts);
        id
    }

    /// Stops the worker at once (its messages stop too).
    pub fn terminate(&self) {
        let inner = self.inner.borrow();
        inner.worker.set_onmessage(None);
        inner.worker.set_onerror(None);
        inner.worker.terminate();
    }

    fn execute(&self, posts: Vec<Post>) {
        let mut inner = self.inner.borrow_mut();
        for p in posts {
            match p {
                Post::Send(req) => {
                    let a = inner.attachments.remove(&req.id);
                    post(&inner.worker, &req, a);
                }
                Post::Forget(id) => {
                    inner.attachments.remove(&id);
                }
            }
        }
    }
}

fn new_worker() -> Result<Worker, String> {
    Worker::new(&worker_url()).map_err(|e| format!("cannot start the worker: {e:?}"))
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
