//! The Web Worker entry point (wasm only): a thin executor of [`ndlab_lab::scheduler::WorkerQueue`].
//!
//! Messages are JSON strings ([`ndlab_lab::protocol`]), or `[json, File]` when they carry the
//! user's file. Each message goes to the queue; the queue says what to do next (fetch a file,
//! run a request through the engine and post its answers, warm up, settle timings, wait), and
//! this file does it: `fetch` relative to the worker's own script (so the app works under any
//! sub-path), `postMessage`, timers. All policy (boot, coalescing, newest wins, settling) lives
//! in the queue and is tested natively.

#[cfg(target_arch = "wasm32")]
mod glue {
    use ndlab_lab::engine::Engine;
    use ndlab_lab::network::messages::NetworkSource;
    use ndlab_lab::protocol::{from_json, to_json, Request, RequestBody, Response, ResponseBody};
    use ndlab_lab::scheduler::{Action, WorkerQueue, BOOT_ID};
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;
    use wasm_bindgen::prelude::*;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

    /// Everything the worker holds.
    struct Host {
        engine: Engine,
        queue: WorkerQueue,
        /// Whether the drain loop is running (a message then only queues).
        running: bool,
        /// Files sent with `OpenFile`, `OpenNetwork` and `NetworkData` requests, by request id
        /// (a `File` is a `Blob`; an IDX pair is two).
        files: HashMap<u64, Vec<web_sys::Blob>>,
        /// Downloads started ahead of need (path → promise of the response).
        prefetch: HashMap<String, js_sys::Promise>,
        /// Bumped by each drain timer set: only the newest one starts the loop.
        timer: u64,
    }

    type Shared = Rc<RefCell<Host>>;

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

    /// Installs the message handler, says so, and queues the boot requests of the page's query
    /// (`?boot&<query>` in the script URL; none without it).
    pub fn start() {
        console_error_panic_hook::set_once();
        let engine = Engine::new(now_ms);
        let (queue, boot) = match boot_query() {
            Some(query) => WorkerQueue::boot(&query, &engine),
            None => (WorkerQueue::new(), Vec::new()),
        };
        let host: Shared = Rc::new(RefCell::new(Host {
            engine,
            queue,
            running: false,
            files: HashMap::new(),
            prefetch: HashMap::new(),
            timer: 0,
        }));
        let h = host.clone();
        let onmessage = Closure::<dyn FnMut(MessageEvent)>::new(move |ev: MessageEvent| on_message(&h, ev));
        scope().set_onmessage(Some(onmessage.as_ref().unchecked_ref()));
        onmessage.forget();
        post(&Response { id: 0, body: ResponseBody::Ready });
        execute_all(&host, boot);
        wake(&host);
    }

    /// The page's query after `?boot&` in the script URL, if the worker was started with it.
    fn boot_query() -> Option<String> {
        let search = js_sys::Reflect::get(&js_sys::global(), &"location".into())
            .and_then(|l| js_sys::Reflect::get(&l, &"search".into()))
            .ok()
            .and_then(|s| s.as_string())?;
        search.strip_prefix("?boot").map(|q| q.trim_start_matches('&').to_string())
    }

    fn on_message(host: &Shared, ev: MessageEvent) {
        let (text, blob) = split_message(ev.data());
        let Some(text) = text else {
            return post_error(0, "the worker expects JSON text messages".into());
        };
        match from_json::<Request>(&text) {
            Ok(req) => {
                let actions = {
                    let mut h = host.borrow_mut();
                    if !blob.is_empty() {
                        h.files.insert(req.id, blob);
                    }
                    let Host { engine, queue, .. } = &mut *h;
                    queue.on_request(req, engine)
                };
                execute_all(host, actions);
                wake(host);
            }
            Err(e) => post_error(0, e.to_string()),
        }
    }

    /// Starts the drain loop unless it runs.
    fn wake(host: &Shared) {
        let mut h = host.borrow_mut();
        if !h.running {
            h.running = true;
            h.timer += 1;
            wasm_bindgen_futures::spawn_local(drain(host.clone()));
        }
    }

    /// Executes the immediate actions (downloads).
    fn execute_all(host: &Shared, actions: Vec<Action>) {
        for a in actions {
            if let Action::Prefetch(path) = a {
                fetch_ahead(host, path);
            }
        }
    }

    /// Asks the queue what to do and does it, until it says wait or idle. Yields before each
    /// step, so that messages posted meanwhile are queued (and coalesced) first.
    async fn drain(host: Shared) {
        loop {
            sleep0().await;
            let action = {
                let mut h = host.borrow_mut();
                let Host { engine, queue, .. } = &mut *h;
                queue.next(now_ms(), engine)
            };
            match action {
                Action::Prefetch(path) => fetch_ahead(&host, path),
                Action::Reply(resp) => post(&resp),
                Action::WarmUp(rounds) => {
                    for _ in 0..rounds {
                        let _ = ndlab_lab::engine::warm_up();
                        sleep0().await;
                    }
                }
                Action::Run { req, quiet_errors } => run(&host, req, quiet_errors).await,
                Action::Settle => {
                    // (A failure the forward itself did not hit keeps the first times.)
                    let settled = host.borrow_mut().engine.settle_timings();
                    if let Ok(Some(f)) = settled {
                        post(&Response { id: BOOT_ID, body: ResponseBody::Forward(Box::new(f)) });
                    }
                }
                Action::Wait(ms) => {
                    let mut h = host.borrow_mut();
                    h.running = false;
                    drain_after(&host, h.timer, ms);
                    return;
                }
                Action::Idle => {
                    host.borrow_mut().running = false;
                    return;
                }
            }
        }
    }

    /// Runs one request: fetches the files it needs, hands them and the user's file to the
    /// engine, runs it and posts its answers.
    async fn run(host: &Shared, req: Request, quiet_errors: bool) {
        let say = |resp: &Response| {
            if !(quiet_errors && matches!(resp.body, ResponseBody::Error { .. })) {
                post(resp)
            }
        };
        hand_over_file(host, &req);
        let needed = host.borrow().engine.assets_needed(&req.body);
        for path in needed {
            let stage = format!("downloading {path}");
            say(&Response { id: req.id, body: ResponseBody::Progress { stage, fraction: 0.0 } });
            match fetch_bytes(host, &path).await {
                Ok(bytes) => host.borrow_mut().engine.provide(&path, bytes),
                Err(msg) => {
                    let message = format!("could not load {path}: {msg}");
                    say(&Response { id: req.id, body: ResponseBody::Error { message } });
                    host.borrow_mut().queue.finished(&req, false, now_ms());
                    return;
                }
            }
        }
        let resp = host.borrow_mut().engine.handle(req.clone(), &mut |p| say(&p));
        let ok = !matches!(resp.body, ResponseBody::Error { .. });
        say(&resp);
        host.borrow_mut().queue.finished(&req, ok, now_ms());
    }

    /// A message is a JSON string, or `[json, Blob]` when it carries the user's file.
    fn split_message(data: JsValue) -> (Option<String>, Vec<web_sys::Blob>) {
        if let Some(text) = data.as_string() {
            return (Some(text), Vec::new());
        }
        let Ok(a) = data.dyn_into::<js_sys::Array>() else { return (None, Vec::new()) };
        let second = a.get(1);
        let blobs = match second.dyn_into::<web_sys::Blob>() {
            Ok(b) => vec![b],
            Err(v) => match v.dyn_into::<js_sys::Array>() {
                Ok(list) => list.iter().filter_map(|f| f.dyn_into::<web_sys::Blob>().ok()).collect(),
                Err(_) => Vec::new(),
            },
        };
        (a.get(0).as_string(), blobs)
    }

    /// Hands the files sent with a request to the engine (older files are dropped): the model
    /// file of an `OpenFile`, the ONNX file of an `OpenNetwork`, the data files of a
    /// `NetworkData`, each read by range.
    fn hand_over_file(host: &Shared, req: &Request) {
        let network = match &req.body {
            RequestBody::OpenFile { .. } => false,
            RequestBody::OpenNetwork { source: NetworkSource::File { .. }, .. }
            | RequestBody::NetworkData { .. } => true,
            _ => return,
        };
        let mut h = host.borrow_mut();
        let blobs = h.files.remove(&req.id).unwrap_or_default();
        h.files.retain(|&id, _| id > req.id);
        let mut srcs: Vec<Box<dyn ndlab_io::formats::ByteSource>> = Vec::new();
        for blob in blobs {
            match super::blob::BlobSource::new(blob) {
                Ok(src) => srcs.push(Box::new(src)),
                Err(msg) => return post_error(req.id, msg),
            }
        }
        if network {
            h.engine.provide_files(srcs);
        } else if let Some(src) = srcs.into_iter().next() {
            h.engine.provide_file(src);
        }
    }

    /// Starts downloading `path` unless that has started already.
    fn fetch_ahead(host: &Shared, path: String) {
        if host.borrow().prefetch.contains_key(&path) {
            return;
        }
        if let Ok(promise) = start_fetch(&path) {
            host.borrow_mut().prefetch.insert(path, promise);
        }
    }

    async fn sleep0() {
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
        });
        let _ = JsFuture::from(promise).await;
    }

    /// Starts the drain loop after `ms`, unless it runs then or a newer timer was set.
    fn drain_after(host: &Shared, timer: u64, ms: f64) {
        let h = host.clone();
        let start = Closure::once_into_js(move || {
            if h.borrow().timer == timer {
                wake(&h);
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

    /// The bytes of `path`: from a download started ahead, or fetched now.
    async fn fetch_bytes(host: &Shared, path: &str) -> Result<Vec<u8>, String> {
        let started = host.borrow_mut().prefetch.remove(path);
        let promise = match started {
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

/// The user's file as a [`ndlab_io::formats::ByteSource`]: `FileReaderSync` on `Blob.slice`
/// ranges, so only the bytes the readers ask for are copied into wasm memory.
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
