//! The whole network in the page: a pool of Web Workers (one per core the browser offers) runs
//! [`NetworkView`]'s actions: worker 0 prepares plans, every worker evaluates its shard of the
//! test items, worker 0 times the network and writes the decoupled model. The built-in network
//! runs on ndlab's own kernels; a user's ONNX model too when it only uses the operators they run
//! (anything else is refused with its operator's name). Nothing is uploaded.

mod cards;
mod section;

pub use section::NetworkSection;

use super::client::WorkerClient;
use super::hooks::now_ms;
use super::Ctx;
use leptos::prelude::*;
use ndlab_lab::engine::base64_decode;
use ndlab_lab::network::messages::NetworkSource;
use ndlab_lab::network::pool::PoolAction;
use ndlab_lab::network::view::{NetAction, NetworkView};
use ndlab_lab::page::Control;
use ndlab_lab::protocol::{RequestBody, Response, ResponseBody};
use ndlab_lab::state::{NetStrategy, View};

/// Most workers in the pool.
const MAX_WORKERS: usize = 4;

/// The pool and the view it serves.
pub(crate) struct NetHost {
    generation: u64,
    workers: Vec<WorkerClient>,
    view: NetworkView,
    /// Request ids of worker 0's preparations (an error on one of them is a preparation's).
    preparing: Vec<u64>,
    /// Request ids of the data files sent to the workers (an error on one is the data's).
    data: Vec<(usize, u64)>,
    stage: Option<(String, f64)>,
}

/// The pool in use, and the one opening a network to replace it: the current pool stays until
/// the new network has opened, so a file that cannot be opened loses nothing.
#[derive(Default)]
pub(crate) struct NetHosts {
    current: Option<NetHost>,
    pending: Option<NetHost>,
    generation: u64,
}

/// The section's signals (the view is in `Ctx::net`; `version` is bumped at each change).
#[derive(Clone, Copy)]
struct Net {
    version: RwSignal<u64>,
}

fn workers_wanted() -> usize {
    let n = web_sys::window().map(|w| w.navigator().hardware_concurrency()).unwrap_or(2.0);
    (n as usize).clamp(1, MAX_WORKERS)
}

/// Starts a pool on `source`; it replaces the current one once the network has opened.
fn start(ctx: Ctx, net: Net, source: NetworkSource, file: Option<web_sys::File>) {
    let generation = ctx.net.with_value(|h| h.generation) + 1;
    let n = workers_wanted();
    let network_id = (now_ms() * 1000.0) as u64 + 1;
    let mut workers = Vec::new();
    for w in 0..n {
        match WorkerClient::start(move |r| on_response(ctx, net, generation, w, r)) {
            Ok(c) => workers.push(c),
            Err(e) => {
                workers.iter().for_each(WorkerClient::terminate);
                ctx.control(Control::Error(e));
                return;
            }
        }
    }
    for c in &workers {
        let body = RequestBody::OpenNetwork { source: source.clone(), network_id };
        c.send_with(body, file.clone().map(Into::into));
    }
    let mut view = NetworkView::new(n);
    view.set_choice(ctx.state.with_untracked(|s| s.net.request()));
    let what = match &source {
        NetworkSource::BuiltIn => "opening the built-in network".to_string(),
        NetworkSource::File { name } => format!("opening {name}"),
    };
    let host = NetHost {
        generation,
        workers,
        view,
        preparing: Vec::new(),
        data: Vec::new(),
        stage: Some((what, 0.0)),
    };
    ctx.net.update_value(|h| {
        if let Some(old) = h.pending.replace(host) {
            old.workers.iter().for_each(WorkerClient::terminate);
        }
        h.generation = generation;
    });
    net.version.update(|v| *v += 1);
}

/// The pending pool's network opened: it becomes the current pool.
fn promote(h: &mut NetHosts) {
    if let Some(p) = h.pending.take() {
        if let Some(old) = h.current.replace(p) {
            old.workers.iter().for_each(WorkerClient::terminate);
        }
    }
}

/// Runs `f` on the current pool's host, if there is one.
fn with_current(ctx: Ctx, f: impl FnOnce(&mut NetHost)) {
    ctx.net.update_value(|h| {
        if let Some(c) = h.current.as_mut() {
            f(c);
        }
    });
}

/// Runs `f` on the view and executes the actions it returns.
fn act(ctx: Ctx, net: Net, f: impl FnOnce(&mut NetworkView) -> Vec<NetAction>) {
    ctx.net.update_value(|h| {
        let Some(h) = h.current.as_mut() else { return };
        let actions = f(&mut h.view);
        execute(h, actions);
    });
    net.version.update(|v| *v += 1);
}

fn execute(h: &mut NetHost, actions: Vec<NetAction>) {
    for a in actions {
        match a {
            NetAction::Prepare(req) => {
                if let Some(w) = h.workers.first() {
                    h.preparing.push(w.send(RequestBody::PreparePlan(req)));
                }
            }
            NetAction::Evaluate(PoolAction::Send { worker, req }) => {
                if let Some(w) = h.workers.get(worker) {
                    w.send(RequestBody::Evaluate(Box::new(req)));
                }
            }
            NetAction::Evaluate(PoolAction::Done(_)) => {}
            NetAction::Time(req) => {
                if let Some(w) = h.workers.first() {
                    w.send(RequestBody::TimeNetwork(Box::new(req)));
                }
            }
        }
    }
}

fn on_response(ctx: Ctx, net: Net, generation: u64, worker: usize, resp: Response) {
    let Some(pending) = ctx.net.with_value(|h| match (&h.current, &h.pending) {
        (Some(c), _) if c.generation == generation => Some(false),
        (_, Some(p)) if p.generation == generation => Some(true),
        _ => None,
    }) else {
        return;
    };
    if pending {
        // Only the opening's outcome matters until the network has opened.
        match resp.body {
            ResponseBody::Network(s) if worker == 0 => {
                ctx.net.update_value(|h| {
                    promote(h);
                    if let Some(c) = h.current.as_mut() {
                        c.stage = None;
                    }
                });
                act(ctx, net, |v| v.on_summary(*s));
            }
            ResponseBody::Error { message } if worker == 0 => {
                ctx.net.update_value(|h| {
                    let failed = h.pending.take();
                    failed.iter().flat_map(|p| &p.workers).for_each(WorkerClient::terminate);
                    match h.current.as_mut() {
                        Some(c) => c.view.error = Some(format!("{message} (the network before stays)")),
                        None => {
                            // Nothing to go back to: show the failed pool's message.
                            if let Some(mut p) = failed {
                                p.view.error = Some(message);
                                p.stage = None;
                                p.workers.clear();
                                h.current = Some(p);
                            }
                        }
                    }
                });
                net.version.update(|v| *v += 1);
            }
            ResponseBody::Progress { stage, fraction } if worker == 0 => {
                ctx.net.update_value(|h| {
                    if let Some(p) = h.pending.as_mut() {
                        p.stage = Some((stage, fraction));
                    }
                });
                net.version.update(|v| *v += 1);
            }
            _ => {}
        }
        return;
    }
    match resp.body {
        ResponseBody::Network(s) if worker == 0 => {
            with_current(ctx, |c| {
                c.stage = None;
                c.data.clear();
            });
            act(ctx, net, |v| v.on_summary(*s));
        }
        ResponseBody::Plan(p) => {
            with_current(ctx, |c| c.stage = None);
            act(ctx, net, |v| v.on_prepared(*p))
        }
        ResponseBody::Evaluated(r) => act(ctx, net, |v| v.on_evaluated(worker, *r)),
        ResponseBody::Timed(t) => act(ctx, net, |v| v.on_timed(t)),
        ResponseBody::Exported { name, base64 } => {
            let saved = base64_decode(&base64)
                .ok_or_else(|| "the exported model is garbled".to_string())
                .and_then(|b| download_bytes(&name, &b, "application/octet-stream"));
            if let Err(e) = saved {
                ctx.control(Control::Error(e));
            }
        }
        ResponseBody::NetworkLayer(d) => {
            let label = format!("loading {} from {} into the lab", d.name, d.network);
            ctx.control(Control::View(View::Lab));
            ctx.control(Control::Request(RequestBody::LoadLayerData(d), label));
            scroll_to_top();
        }
        ResponseBody::Progress { stage, fraction } if worker == 0 => {
            ctx.net.update_value(|h| {
                if let Some(c) = h.current.as_mut() {
                    c.stage = Some((stage, fraction));
                }
            });
            net.version.update(|v| *v += 1);
        }
        ResponseBody::Error { message } => {
            let (was_preparing, was_data) = ctx.net.with_value(|h| {
                h.current.as_ref().map_or((false, false), |c| {
                    (worker == 0 && c.preparing.contains(&resp.id), c.data.contains(&(worker, resp.id)))
                })
            });
            if was_data {
                // The data could not be read: the data before stays (every worker says so; once is enough).
                ctx.net.update_value(|h| {
                    if let Some(c) = h.current.as_mut() {
                        // Every worker says so; the message stays the data's whatever order they come in.
                        c.data.retain(|&d| d != (worker, resp.id));
                        c.stage = None;
                        c.view.error = Some(format!("{message} (the data before stays)"));
                    }
                });
                net.version.update(|v| *v += 1);
                return;
            }
            if was_preparing {
                with_current(ctx, |c| c.stage = None);
            }
            let w = if was_preparing || resp.id == 0 { None } else { Some(worker) };
            act(ctx, net, |v| v.on_error(w, message));
        }
        _ => {}
    }
}

fn scroll_to_top() {
    if let Some(w) = web_sys::window() {
        w.scroll_to_with_x_and_y(0.0, 0.0);
    }
}

/// Asks worker 0 for conv `conv` with its real input on the first test item the current
/// choice classifies differently (the first item when none is).
fn open_in_lab(ctx: Ctx, conv: usize) {
    ctx.net.with_value(|h| {
        let Some(h) = h.current.as_ref() else { return };
        let item = h.view.result.as_ref().and_then(|r| r.changed.first().map(|c| c.0)).unwrap_or(0);
        if let Some(w) = h.workers.first() {
            w.send(RequestBody::NetworkLayer { conv, item });
        }
    });
}

/// Offers `bytes` as a download named `name`.
fn download_bytes(name: &str, bytes: &[u8], mime: &str) -> Result<(), String> {
    crate::app::canvas::download(name, &js_sys::Array::of1(&js_sys::Uint8Array::from(bytes)), mime)
}

fn strategy_label(s: NetStrategy) -> &'static str {
    match s {
        NetStrategy::Uniform => "one T for all",
        NetStrategy::Mean => "energy threshold, mean rule (paper)",
        NetStrategy::Max => "energy threshold, max rule",
        NetStrategy::Budget => "MAC budget, by measured sensitivity",
    }
}
