//! The Web Worker entry point (wasm only): `onmessage` → [`ndlab::engine::Engine`] → `postMessage`.
//!
//! Messages are JSON strings ([`ndlab::protocol`]). Requests that arrive while the engine is busy
//! are queued; before working, the queue is coalesced so that only the newest request of each
//! kind runs (rapid slider moves never pile up work). The worker fetches the files a request
//! needs itself, with URLs relative to its own script, so the app works under a sub-path.

#[cfg(target_arch = "wasm32")]
mod glue {
    use ndlab::engine::Engine;
    use ndlab::protocol::{from_json, to_json, Request, RequestKind, Response, ResponseBody};
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

    thread_local! {
        static ENGINE: RefCell<Engine> = RefCell::new(Engine::new(now_ms));
        static QUEUE: RefCell<Vec<Request>> = const { RefCell::new(Vec::new()) };
        static RUNNING: Cell<bool> = const { Cell::new(false) };
        /// Downloads started ahead of need (path → promise of the response's bytes).
        static PREFETCH: RefCell<HashMap<String, js_sys::Promise>> = RefCell::new(HashMap::new());
    }

    /// Rounds of [`ndlab::engine::warm_up`] at start (0 disables it; see its doc).
    const WARM_UP_ROUNDS: usize = 4;

    fn scope() -> DedicatedWorkerGlobalScope {
        js_sys::global().unchecked_into()
    }

    /// `performance.now()` in the worker.
    fn now_ms() -> f64 {
        js_sys::Reflect::get(&js_sys::global(), &"performance".into())
            .ok()
            .and_then(|p| p.dyn_into::<web_sys::Performance>().ok())
            .map(|p| p.now())
            .unwrap_or(0.0)
    }

    fn post(resp: &Response) {
        // A failed postMessage (worker closing) has nobody left to tell.
        let _ = scope().post_message(&JsValue::from_str(&to_json(resp)));
    }

    fn post_error(id: u64, message: String) {
        post(&Response { id, body: ResponseBody::Error { message } });
    }

    /// Installs the message handler.
    pub fn start() {
        console_error_panic_hook::set_once();
        let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(|ev: MessageEvent| {
            let Some(text) = ev.data().as_string() else {
                post_error(0, "the worker expects JSON text messages".into());
                return;
            };
            match from_json::<Request>(&text) {
                Ok(req) => {
                    prefetch(&req);
                    QUEUE.with(|q| q.borrow_mut().push(req));
                    if !RUNNING.with(|r| r.replace(true)) {
                        wasm_bindgen_futures::spawn_local(drain());
                    }
                }
                Err(e) => post_error(0, e.to_string()),
            }
        });
        scope().set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
        onmessage.forget();
        post(&Response { id: 0, body: ResponseBody::Ready });
        // Requests that arrive meanwhile queue up behind this (a few milliseconds).
        RUNNING.with(|r| r.set(true));
        wasm_bindgen_futures::spawn_local(async {
            for _ in 0..WARM_UP_ROUNDS {
                let _ = ndlab::engine::warm_up();
                sleep0().await;
            }
            drain().await;
        });
    }

    /// Keeps only the newest request of each kind, in id order.
    fn coalesce(reqs: Vec<Request>) -> Vec<Request> {
        let mut newest: HashMap<RequestKind, Request> = HashMap::new();
        for r in reqs {
            let kind = r.body.kind();
            if newest.get(&kind).is_none_or(|old| old.id < r.id) {
                newest.insert(kind, r);
            }
        }
        let mut out: Vec<Request> = newest.into_values().collect();
        out.sort_by_key(|r| r.id);
        out
    }

    /// Runs queued requests until the queue is empty.
    async fn drain() {
        // Yield once so that messages posted together are coalesced together.
        sleep0().await;
        loop {
            let batch = coalesce(QUEUE.with(|q| std::mem::take(&mut *q.borrow_mut())));
            if batch.is_empty() {
                break;
            }
            for req in batch {
                run(req).await;
                // A newer request of the same kind may have arrived meanwhile: the next loop
                // iteration coalesces it with whatever else is queued.
                sleep0().await;
            }
        }
        RUNNING.with(|r| r.set(false));
    }

    async fn run(req: Request) {
        let needed = ENGINE.with(|e| e.borrow().assets_needed(&req.body));
        for path in needed {
            post(&Response {
                id: req.id,
                body: ResponseBody::Progress { stage: format!("downloading {path}"), fraction: 0.0 },
            });
            match fetch_bytes(&path).await {
                Ok(bytes) => ENGINE.with(|e| e.borrow_mut().provide(&path, bytes)),
                Err(msg) => return post_error(req.id, format!("could not load {path}: {msg}")),
            }
        }
        let resp = ENGINE.with(|e| e.borrow_mut().handle(req, &mut |p| post(&p)));
        post(&resp);
    }

    /// Starts downloading what `req` will soon need, so the download overlaps the work before it.
    fn prefetch(req: &Request) {
        for path in ENGINE.with(|e| e.borrow().assets_to_prefetch(&req.body)) {
            if PREFETCH.with(|p| p.borrow().contains_key(&path)) {
                continue;
            }
            if let Ok(promise) = start_fetch(&path) {
                PREFETCH.with(|p| p.borrow_mut().insert(path, promise));
            }
        }
    }

    async fn sleep0() {
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
        });
        let _ = JsFuture::from(promise).await;
    }

    /// Starts `fetch(path)` (relative to the worker script, i.e. the app's root).
    fn start_fetch(path: &str) -> Result<js_sys::Promise, String> {
        let fetch = js_sys::Reflect::get(&js_sys::global(), &"fetch".into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
            .ok_or("fetch is not available")?;
        fetch
            .call1(&JsValue::NULL, &JsValue::from_str(path))
            .map_err(|e| format!("{e:?}"))?
            .dyn_into()
            .map_err(|_| "fetch did not return a promise".to_string())
    }

    /// The bytes of `path`: from a download started ahead by [`prefetch`], or fetched now.
    async fn fetch_bytes(path: &str) -> Result<Vec<u8>, String> {
        let promise = match PREFETCH.with(|p| p.borrow_mut().remove(path)) {
            Some(p) => p,
            None => start_fetch(path)?,
        };
        let resp: web_sys::Response = JsFuture::from(promise)
            .await
            .map_err(|e| format!("{e:?}"))?
            .dyn_into()
            .map_err(|_| "no response")?;
        if !resp.ok() {
            return Err(format!("HTTP {}", resp.status()));
        }
        let buf = JsFuture::from(resp.array_buffer().map_err(|e| format!("{e:?}"))?)
            .await
            .map_err(|e| format!("{e:?}"))?;
        Ok(js_sys::Uint8Array::new(&buf).to_vec())
    }
}

fn main() {
    #[cfg(target_arch = "wasm32")]
    glue::start();
}
