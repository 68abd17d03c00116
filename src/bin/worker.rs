//! The Web Worker entry point (wasm only): `onmessage` → [`ndlab_lab::engine::Engine`] → `postMessage`.
//!
//! Messages are JSON strings ([`ndlab_lab::protocol`]). Requests that arrive while the engine is busy
//! are queued; before each request the queue is coalesced so that only the newest request of each
//! kind runs (rapid slider moves never pile up work). The worker fetches the files a request
//! needs itself, with URLs relative to its own script, so the app works under a sub-path.
//!
//! **Boot.** `index.html` starts this worker before the app's wasm has loaded, with the page's
//! query after `?boot&` in the script URL. The worker then loads that view's example and image,
//! its forward pass and its output-error curve on its own ("boot requests", id 0), while the app
//! loads, and posts the answers with id 0 (the page takes answers with id 0 as they come; a
//! boot request's error is not posted: the page's own request reports it). The
//! page's own requests for the same things are then answered from what the engine holds (its
//! copy of the layer request, once the boot's is answered, with `SameAsBoot`: the page has the
//! layer); they always run before boot requests still queued, and a page request for a different
//! layer, image or file drops the boot requests still queued.

#[cfg(target_arch = "wasm32")]
mod glue {
    use ndlab_lab::engine::Engine;
    use ndlab_lab::protocol::{from_json, to_json, Request, RequestKind, Response, ResponseBody};
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
        /// Files sent with `OpenFile` requests, by request id (a `File` is a `Blob`).
        static FILES: RefCell<HashMap<u64, web_sys::Blob>> = RefCell::new(HashMap::new());
        /// Downloads started ahead of need (path → promise of the response's bytes).
        static PREFETCH: RefCell<HashMap<String, js_sys::Promise>> = RefCell::new(HashMap::new());
        /// What the boot requests ask (a page request for something else makes them obsolete).
        static BOOT: RefCell<Vec<ndlab_lab::protocol::RequestBody>> = const { RefCell::new(Vec::new()) };
        /// The boot requests whose answers have been posted.
        static BOOT_ANSWERED: RefCell<Vec<ndlab_lab::protocol::RequestBody>> = const { RefCell::new(Vec::new()) };
        /// Downloads to start once the queue is empty (the boot's deferred prefetches).
        static LATER: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
        /// Whether the conv kernels have been warmed up.
        static WARM: Cell<bool> = const { Cell::new(false) };
        /// When the last request was answered (`performance.now()`, ms).
        static LAST_ANSWER: Cell<f64> = const { Cell::new(0.0) };
    }

    /// How long the worker waits after its last answer before it times a layer (ms). The page
    /// redraws on the answer (a T change: its next frame); a timing run then (tens of ms on one
    /// core) would compete with that frame for the CPU, and so would every step of a slider drag
    /// or of T stepped with the arrow keys (a few steps a second) that came during the runs.
    const SETTLE_QUIET_MS: f64 = 600.0;

    /// Rounds of [`ndlab_lab::engine::warm_up`] before the first request that runs convs (0 disables
    /// it; see its doc). Loading and decoupling a layer does not wait for it.
    const WARM_UP_ROUNDS: usize = 4;

    /// Id of the boot requests (the page's ids start at 1).
    const BOOT_ID: u64 = 0;

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
            let (text, blob) = split_message(ev.data());
            let Some(text) = text else {
                post_error(0, "the worker expects JSON text messages".into());
                return;
            };
            match from_json::<Request>(&text) {
                Ok(req) => {
                    if let Some(b) = blob {
                        FILES.with(|f| f.borrow_mut().insert(req.id, b));
                    }
                    prefetch(&req);
                    drop_obsolete_boot(&req);
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
        boot();
        wasm_bindgen_futures::spawn_local(drain());
    }

    /// Queues the boot requests for the view in the script URL's query (`?boot&<page query>`),
    /// and starts their downloads at once.
    fn boot() {
        let search = js_sys::Reflect::get(&js_sys::global(), &"location".into())
            .and_then(|l| js_sys::Reflect::get(&l, &"search".into()))
            .ok()
            .and_then(|s| s.as_string())
            .unwrap_or_default();
        let Some(query) = search.strip_prefix("?boot") else { return };
        let state = ndlab_lab::state::AppState::from_query(query.trim_start_matches('&'));
        use ndlab_lab::protocol::RequestBody as B;
        let bodies = [
            B::LoadExample { example: state.example.clone(), slice: Some((state.order, state.channel)) },
            B::LoadBuiltinImage { image: state.image.clone() },
            B::Forward { t: state.t, order: state.order, out_channel: state.out_channel },
            B::OutputErrorCurve { order: state.order },
        ];
        BOOT.with(|b| *b.borrow_mut() = bodies.to_vec());
        // A view whose input ships precomputed needs that file, not the network prefix: the
        // prefix waits until the boot's work is done (see `drain`), off the first view's way.
        let shipped = ndlab_lab::engine::precomputed_input_asset(&state.image, &state.example);
        if let Some(path) = &shipped {
            fetch_ahead(path.clone());
            LATER.with(|l| l.borrow_mut().push(ndlab_lab::engine::MODEL_ASSET.to_string()));
        }
        for body in bodies {
            let req = Request { id: BOOT_ID, body };
            match shipped {
                Some(_) => {
                    ENGINE.with(|e| e.borrow().assets_needed(&req.body)).into_iter().for_each(fetch_ahead)
                }
                None => prefetch(&req),
            }
            QUEUE.with(|q| q.borrow_mut().push(req));
        }
    }

    /// Drops the queued boot requests when the page asks for a layer, image or file other than
    /// the boot's (their answers would describe another view).
    fn drop_obsolete_boot(req: &Request) {
        use ndlab_lab::protocol::RequestKind as K;
        if !matches!(req.body.kind(), K::Example | K::Image | K::File) {
            return;
        }
        if BOOT.with(|b| b.borrow().contains(&req.body)) {
            return;
        }
        BOOT.with(|b| b.borrow_mut().clear());
        BOOT_ANSWERED.with(|b| b.borrow_mut().clear());
        QUEUE.with(|q| q.borrow_mut().retain(|r| r.id != BOOT_ID));
    }

    /// A message is a JSON string, or `[json, Blob]` when it carries the user's file.
    fn split_message(data: JsValue) -> (Option<String>, Option<web_sys::Blob>) {
        if let Some(text) = data.as_string() {
            return (Some(text), None);
        }
        match data.dyn_into::<js_sys::Array>() {
            Ok(a) => (a.get(0).as_string(), a.get(1).dyn_into::<web_sys::Blob>().ok()),
            Err(_) => (None, None),
        }
    }

    /// Hands the file sent with an `OpenFile` request to the engine (older files are dropped).
    fn hand_over_file(req: &Request) {
        if !matches!(req.body, ndlab_lab::protocol::RequestBody::OpenFile { .. }) {
            return;
        }
        let blob = FILES.with(|f| {
            let mut f = f.borrow_mut();
            let b = f.remove(&req.id);
            f.retain(|&id, _| id > req.id);
            b
        });
        if let Some(blob) = blob {
            match super::blob::BlobSource::new(blob) {
                Ok(src) => ENGINE.with(|e| e.borrow_mut().provide_file(Box::new(src))),
                Err(msg) => post_error(req.id, msg),
            }
        }
    }

    /// Keeps only the newest request of each kind: the page's requests in id order, then the
    /// boot requests (in the order they were queued).
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

    /// Runs queued requests one at a time until the queue is empty; before each, what arrived
    /// meanwhile is coalesced with what waits (so the page's requests overtake boot requests).
    async fn drain() {
        // Yield once so that messages posted together are coalesced together.
        sleep0().await;
        loop {
            let next = QUEUE.with(|q| {
                let mut q = q.borrow_mut();
                let mut batch = coalesce(std::mem::take(&mut *q));
                let first = (!batch.is_empty()).then(|| batch.remove(0));
                *q = batch;
                first
            });
            let Some(req) = next else {
                // Idle: re-time the last forward with the code warm (see
                // `Engine::settle_timings`), unless a request arrived meanwhile; not until the
                // page has had its redraw (the loop ends and a timer starts it again; a message
                // arriving meanwhile starts it at once).
                let quiet = now_ms() - LAST_ANSWER.with(Cell::get);
                if quiet < SETTLE_QUIET_MS && ENGINE.with(|e| e.borrow().timings_unsettled()) {
                    drain_after(SETTLE_QUIET_MS - quiet);
                    break;
                }
                if !settle_timings().await {
                    break;
                }
                continue;
            };
            run(req).await;
            LAST_ANSWER.with(|t| t.set(now_ms()));
            sleep0().await;
        }
        RUNNING.with(|r| r.set(false));
        for path in LATER.with(|l| std::mem::take(&mut *l.borrow_mut())) {
            fetch_ahead(path);
        }
    }

    /// One step of re-timing the last forward (see `Engine::settle_timings`); its last step posts
    /// the result (id 0: the page takes it if it still shows that view). False when there was
    /// nothing to settle.
    async fn settle_timings() -> bool {
        if !ENGINE.with(|e| e.borrow().timings_unsettled()) {
            return false;
        }
        // Let messages posted meanwhile arrive first: they take precedence.
        sleep0().await;
        if QUEUE.with(|q| !q.borrow().is_empty()) {
            return true;
        }
        // (A failure the forward itself did not hit keeps the first times.)
        if let Ok(Some(f)) = ENGINE.with(|e| e.borrow_mut().settle_timings()) {
            post(&Response { id: BOOT_ID, body: ResponseBody::Forward(Box::new(f)) });
        }
        true
    }

    /// Warms the conv kernels up once, before the first request that runs them (a layer's
    /// charts need only its decoupling, so they do not wait for this).
    async fn warm_up_once(req: &Request) {
        use ndlab_lab::protocol::RequestBody as B;
        // Loading an example (before any image), a slice view or opening a file runs no conv; an
        // example loaded after an image does, but the image's request has warmed up already.
        let boot_example = req.id == BOOT_ID && matches!(req.body, B::LoadExample { .. });
        let runs_convs =
            boot_example || !matches!(req.body, B::LoadExample { .. } | B::Slice { .. } | B::OpenFile { .. });
        if !runs_convs || WARM.with(|w| w.get()) {
            return;
        }
        for _ in 0..WARM_UP_ROUNDS {
            let _ = ndlab_lab::engine::warm_up();
            sleep0().await;
        }
        WARM.with(|w| w.set(true));
    }

    async fn run(req: Request) {
        // The page's copy of the boot's layer request, answered already: the page has the layer
        // (a page request for another layer, image or file empties `BOOT` first).
        let repeat = |b: &RefCell<Vec<ndlab_lab::protocol::RequestBody>>| b.borrow().contains(&req.body);
        if req.id != BOOT_ID
            && matches!(req.body, ndlab_lab::protocol::RequestBody::LoadExample { .. })
            && BOOT.with(repeat)
            && BOOT_ANSWERED.with(repeat)
        {
            return post(&Response { id: req.id, body: ResponseBody::SameAsBoot });
        }
        warm_up_once(&req).await;
        hand_over_file(&req);
        // A boot request's failure is not reported: its view came from the address unclamped
        // (e.g. a T above the layer's rank), and the page's own request reports its own errors.
        let boot = req.id == BOOT_ID;
        let say = |resp: &Response| {
            if !(boot && matches!(resp.body, ResponseBody::Error { .. })) {
                post(resp)
            }
        };
        let needed = ENGINE.with(|e| e.borrow().assets_needed(&req.body));
        for path in needed {
            say(&Response {
                id: req.id,
                body: ResponseBody::Progress { stage: format!("downloading {path}"), fraction: 0.0 },
            });
            match fetch_bytes(&path).await {
                Ok(bytes) => ENGINE.with(|e| e.borrow_mut().provide(&path, bytes)),
                Err(msg) => {
                    return say(&Response {
                        id: req.id,
                        body: ResponseBody::Error { message: format!("could not load {path}: {msg}") },
                    })
                }
            }
        }
        let body = req.body.clone();
        let resp = ENGINE.with(|e| e.borrow_mut().handle(req, &mut |p| say(&p)));
        if boot && !matches!(resp.body, ResponseBody::Error { .. }) {
            BOOT_ANSWERED.with(|b| b.borrow_mut().push(body));
        }
        say(&resp);
    }

    /// Starts downloading what `req` will soon need, so the download overlaps the work before it.
    fn prefetch(req: &Request) {
        let paths = ENGINE.with(|e| {
            let e = e.borrow();
            let mut paths = e.assets_needed(&req.body);
            paths.extend(e.assets_to_prefetch(&req.body));
            paths
        });
        // What the boot deferred (the network prefix, when the view's input ships precomputed)
        // stays deferred for the page's own copies of the boot requests.
        let is_boot = BOOT.with(|b| b.borrow().contains(&req.body));
        let deferred = if is_boot { LATER.with(|l| l.borrow().clone()) } else { Vec::new() };
        paths.into_iter().filter(|p| !deferred.contains(p)).for_each(fetch_ahead);
    }

    /// Starts downloading `path` unless that has started already.
    fn fetch_ahead(path: String) {
        if PREFETCH.with(|p| p.borrow().contains_key(&path)) {
            return;
        }
        if let Ok(promise) = start_fetch(&path) {
            PREFETCH.with(|p| p.borrow_mut().insert(path, promise));
        }
    }

    async fn sleep0() {
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
        });
        let _ = JsFuture::from(promise).await;
    }

    /// Starts [`drain`] after `ms`, unless it is running then.
    fn drain_after(ms: f64) {
        let start = Closure::once_into_js(|| {
            if !RUNNING.with(|r| r.replace(true)) {
                wasm_bindgen_futures::spawn_local(drain());
            }
        });
        let ms = ms.ceil() as i32;
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(start.unchecked_ref(), ms);
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

/// The user's file as a [`ndlab_io::formats::ByteSource`]: `FileReaderSync` on `Blob.slice` ranges,
/// so only the bytes the readers ask for are copied into wasm memory.
#[cfg(target_arch = "wasm32")]
mod blob {
    use ndlab_core::{Error, Result};
    use ndlab_io::formats::source::check_range;
    use ndlab_io::formats::ByteSource;
    use web_sys::{Blob, FileReaderSync};

    /// A Blob read by range.
    pub struct BlobSource {
        blob: Blob,
        len: u64,
        reader: FileReaderSync,
    }

    impl BlobSource {
        /// Wraps a Blob (a `File`).
        pub fn new(blob: Blob) -> std::result::Result<Self, String> {
            let reader = FileReaderSync::new().map_err(|e| format!("FileReaderSync: {e:?}"))?;
            let len = blob.size() as u64;
            Ok(BlobSource { blob, len, reader })
        }
    }

    impl ByteSource for BlobSource {
        fn len(&self) -> u64 {
            self.len
        }
        fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
            let (s, e) = check_range(offset, len, self.len)?;
            let fail = |what: &str, e: wasm_bindgen::JsValue| {
                Error::Format(format!("the file could not be read ({what}): {e:?}"))
            };
            let part = self.blob.slice_with_f64_and_f64(s as f64, e as f64).map_err(|e| fail("slice", e))?;
            let buf = self.reader.read_as_array_buffer(&part).map_err(|e| fail("read", e))?;
            let bytes = js_sys::Uint8Array::new(&buf).to_vec();
            if bytes.len() != len {
                return Err(Error::Format(format!(
                    "the file changed while reading ({} of {len} bytes)",
                    bytes.len()
                )));
            }
            Ok(bytes)
        }
    }
}

/// Starts the worker (also the entry point of `ndlab-worker-fma`, src/bin/worker_fma.rs).
pub(crate) fn main() {
    #[cfg(target_arch = "wasm32")]
    glue::start();
}
