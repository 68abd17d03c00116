//! The whole network in the page: a pool of Web Workers (one per core the browser offers) runs
//! [`NetworkView`]'s actions: worker 0 prepares plans, every worker evaluates its shard of the
//! test items, worker 0 times the network and writes the decoupled model. The built-in network
//! runs on ndlab's own kernels; a user's ONNX model too when it only uses the operators they run
//! (anything else is refused with its operator's name). Nothing is uploaded.

use super::canvas::{download_svg, to_svg};
use super::client::WorkerClient;
use super::hooks::now_ms;
use super::{plots, Ctx};
use leptos::html;
use leptos::prelude::*;
use ndlab_charts::{draw_accuracy, AccuracyData, AccuracySeries};
use ndlab_core::layer::Order;
use ndlab_lab::engine::base64_decode;
use ndlab_lab::network::messages::{ConvSummary, NetworkSource};
use ndlab_lab::network::pool::PoolAction;
use ndlab_lab::network::view::{NetAction, NetworkView};
use ndlab_lab::page::{Control, NetControl};
use ndlab_lab::protocol::{RequestBody, Response, ResponseBody};
use ndlab_lab::state::{NetStrategy, View};
use wasm_bindgen::JsCast;

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
    data: Vec<u64>,
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
            ctx.net.update_value(|h| {
                if let Some(c) = h.current.as_mut() {
                    c.stage = None;
                    c.data.clear();
                }
            });
            act(ctx, net, |v| v.on_summary(*s));
        }
        ResponseBody::Plan(p) => act(ctx, net, |v| v.on_prepared(*p)),
        ResponseBody::Evaluated(r) => act(ctx, net, |v| v.on_evaluated(worker, *r)),
        ResponseBody::Timed(t) => act(ctx, net, |v| {
            v.on_timed(t);
            Vec::new()
        }),
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
                h.current
                    .as_ref()
                    .map_or((false, false), |c| (c.preparing.contains(&resp.id), c.data.contains(&resp.id)))
            });
            if was_data {
                // The data could not be read: the data before stays (every worker says so; once is enough).
                ctx.net.update_value(|h| {
                    if let Some(c) = h.current.as_mut() {
                        c.data.clear();
                        c.stage = None;
                        c.view.error = Some(format!("{message} (the data before stays)"));
                    }
                });
                net.version.update(|v| *v += 1);
                return;
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
    let arr = js_sys::Uint8Array::from(bytes);
    let parts = js_sys::Array::of1(&arr);
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let blob =
        web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &opts).map_err(|e| format!("{e:?}"))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| format!("{e:?}"))?;
    let doc = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let a = doc.create_element("a").map_err(|e| format!("{e:?}"))?;
    a.set_attribute("href", &url).map_err(|e| format!("{e:?}"))?;
    a.set_attribute("download", name).map_err(|e| format!("{e:?}"))?;
    a.dyn_ref::<web_sys::HtmlElement>().ok_or("no anchor")?.click();
    let _ = web_sys::Url::revoke_object_url(&url);
    Ok(())
}

fn strategy_label(s: NetStrategy) -> &'static str {
    match s {
        NetStrategy::Uniform => "one T for all",
        NetStrategy::Mean => "energy threshold, mean rule (paper)",
        NetStrategy::Max => "energy threshold, max rule",
        NetStrategy::Budget => "MAC budget, by measured sensitivity",
    }
}

/// The whole-network section.
#[component]
pub fn NetworkSection() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let net = Net { version: RwSignal::new(0) };
    let started = StoredValue::new(false);
    let section = NodeRef::<html::Section>::new();
    let on_screen = RwSignal::new(false);
    Effect::new(move |_| {
        if let Some(el) = section.get() {
            super::relatives::observe_on_screen(&el, move |seen| on_screen.set(seen));
        }
    });
    // Started once on screen (or in the network view), not before: the pool takes every core.
    Effect::new(move |_| {
        let wanted = on_screen.get() || ctx.state.with(|s| s.view == View::Network);
        if wanted && !started.get_value() {
            started.set_value(true);
            start(ctx, net, NetworkSource::BuiltIn, None);
        }
    });
    // The current choice follows the settings.
    let request = Memo::new(move |_| ctx.state.with(|s| s.net.request()));
    Effect::new(move |_| {
        let req = request.get();
        act(ctx, net, move |v| if v.choice.as_ref() == Some(&req) { Vec::new() } else { v.set_choice(req) });
    });
    let read = move |f: &dyn Fn(&NetworkView) -> String| -> String {
        net.version.track();
        ctx.net.with_value(|h| h.current.as_ref().map(|h| f(&h.view)).unwrap_or_default())
    };
    let summary_line = move || {
        read(&|v| {
            match &v.summary {
            Some(s) => format!(
                "{} — {} convs, {:.1} M conv MACs per item at {:?}; {}",
                s.name,
                s.convs.len(),
                s.macs as f64 / 1e6,
                s.input,
                s.data.as_ref().map_or("no test data: accuracy needs labelled data (.npz with x and y, or IDX images and labels)".into(), |d| format!("{} test items ({}), {} calibration items", d.n, d.name, s.calibration))
            ),
            None => "opening the network…".into(),
        }
        })
    };
    let accuracy = move || {
        read(&|v| match (&v.result, &v.original) {
            (Some(r), Some(o)) if r.n > 0 => format!(
                "{:.1} % (original {:.1} %, {} test items)",
                100.0 * r.correct as f64 / r.n as f64,
                100.0 * o.correct as f64 / o.n.max(1) as f64,
                r.n
            ),
            (Some(r), None) if r.n > 0 => {
                format!("{:.1} % ({} test items)", 100.0 * r.correct as f64 / r.n as f64, r.n)
            }
            _ if v.summary.as_ref().is_some_and(|s| s.data.is_none()) => {
                "accuracy needs labelled data".into()
            }
            _ => "computing…".into(),
        })
    };
    let speedup = move || {
        read(&|v| {
            let theo = v.prepared.as_ref().map(|p| format!("{:.2}× fewer conv MACs", p.plan.speedup()));
            let measured = v.timing.as_ref().map(|t| {
                format!(
                    "measured in this browser {:.2}× ({:.0} ms against {:.0} ms for {} items)",
                    t.original_ms / t.decoupled_ms.max(1e-9),
                    t.decoupled_ms,
                    t.original_ms,
                    t.items
                )
            });
            match (theo, measured) {
                (Some(a), Some(b)) => format!("{a}; {b}"),
                (Some(a), None) => format!("{a}; timing in this browser…"),
                _ => "…".into(),
            }
        })
    };
    let status = move || {
        read(&|v| {
            let (done, total) = v.curve_progress();
            let stage = ctx
                .net
                .with_value(|h| h.pending.as_ref().or(h.current.as_ref()).and_then(|h| h.stage.clone()));
            let mut parts = Vec::new();
            if let Some((s, f)) = stage {
                parts.push(format!("{s} ({:.0} %)", f * 100.0));
            }
            if v.curve_running() {
                parts.push(format!("curve: {done} of {total} points"));
            } else if total > 0 {
                parts.push(format!("curve: {done} points"));
            }
            if let Some(e) = &v.error {
                parts.push(format!("last problem: {e}"));
            }
            parts.join(" · ")
        })
    };
    let strategy = Memo::new(move |_| ctx.state.with(|s| (s.net.strategy, s.net.ts.is_some())));
    let order = Memo::new(move |_| ctx.state.with(|s| s.net.order));
    let aware = Memo::new(move |_| ctx.state.with(|s| s.net.aware));
    let param = move || {
        ctx.state.with(|s| match s.net.strategy {
            NetStrategy::Uniform => ("T".to_string(), s.net.t.to_string(), "1", "1"),
            NetStrategy::Mean | NetStrategy::Max => {
                ("τ".to_string(), format!("{}", s.net.tau), "0.01", "0.01")
            }
            NetStrategy::Budget => {
                ("fewer conv MACs ×".to_string(), format!("{}", s.net.speedup), "1", "0.25")
            }
        })
    };
    let on_param = move |ev: leptos::ev::Event| {
        let v = event_target_value(&ev);
        let Ok(x) = v.trim().parse::<f64>() else { return };
        let c = match ctx.state.with_untracked(|s| s.net.strategy) {
            NetStrategy::Uniform if x.is_finite() && x >= 1.0 => NetControl::T(x.round() as usize),
            NetStrategy::Mean | NetStrategy::Max => NetControl::Tau(x),
            NetStrategy::Budget => NetControl::Speedup(x),
            _ => return,
        };
        ctx.control(Control::Net(c));
    };
    let export = move |_| {
        let req = ctx.state.with_untracked(|s| s.net.request());
        ctx.net.with_value(|h| {
            if let Some(w) = h.current.as_ref().and_then(|h| h.workers.first()) {
                w.send(RequestBody::ExportNetwork(req));
            }
        });
    };
    let csv = move |_| {
        let text = ctx.net.with_value(|h| h.current.as_ref().map(|h| table_csv(&h.view)).unwrap_or_default());
        if let Err(e) = download_bytes("ndlab-network-layers.csv", text.as_bytes(), "text/csv") {
            ctx.control(Control::Error(e));
        }
    };
    let on_model = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        if let Some(file) = input.files().and_then(|f| f.get(0)) {
            start(ctx, net, NetworkSource::File { name: file.name() }, Some(file));
        }
        input.set_value("");
    };
    let on_data = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(list) = input.files() else { return };
        let mut files: Vec<web_sys::File> = (0..list.length()).filter_map(|i| list.get(i)).collect();
        // IDX: the images file first, then the labels.
        files.sort_by_key(|f| f.name().contains("labels"));
        if files.is_empty() {
            return;
        }
        let names: Vec<String> = files.iter().map(|f| f.name()).collect();
        let arr = js_sys::Array::new();
        files.iter().for_each(|f| {
            arr.push(f);
        });
        ctx.net.update_value(|h| {
            if let Some(h) = h.current.as_mut() {
                for w in &h.workers {
                    let id = w.send_with(
                        RequestBody::NetworkData { names: names.clone() },
                        Some(arr.clone().into()),
                    );
                    h.data.push(id);
                }
                h.stage = Some((format!("reading {}", names.join(" and ")), 0.0));
            }
        });
        net.version.update(|v| *v += 1);
        input.set_value("");
    };
    let curve = move |_| {
        let aware = ctx.state.with_untracked(|s| s.net.aware);
        act(ctx, net, move |v| v.start_curve(aware));
    };
    let cancel = move |_| act(ctx, net, |v| v.cancel_curve());
    let curve_running = move || {
        net.version.track();
        ctx.net.with_value(|h| h.current.as_ref().is_some_and(|h| h.view.curve_running()))
    };
    view! {
        <section node_ref=section class="network" data-testid="network" aria-label="the whole network">
            <h2>"The whole network: accuracy against MACs"</h2>
            <p class="blurb">"Every 3×3 conv of a classifier decoupled at its own T (1×1 convs and those not cheaper at their T stay as they are); the decoupled network runs on the test images in this browser, on every core it offers. Data-aware decoupling weights each conv's factors by the statistics of its input on calibration images and refits the pointwise weights, in closed form: no training."</p>
            <div class="rel-controls">
                <label>"Network "
                    <select data-testid="network-select" on:change=move |ev| {
                        if event_target_value(&ev) == "builtin" {
                            start(ctx, net, NetworkSource::BuiltIn, None);
                        }
                    }>
                        <option value="builtin" selected=true>"Fashion-MNIST CNN (built in)"</option>
                    </select>
                </label>
                <label class="file">"or your ONNX classifier: "
                    <input type="file" accept=".onnx" data-testid="network-file" on:change=on_model/>
                </label>
                <label class="file">"its labelled data (.npz with x, y; or IDX images + labels): "
                    <input type="file" multiple=true accept=".npz,.gz,.idx,.ubyte,*" data-testid="network-data" on:change=on_data/>
                </label>
            </div>
            <p class="source" data-testid="network-summary">{summary_line}</p>
            <div class="rel-controls">
                <label>"Strategy "
                    <select data-testid="strategy-select" on:change=move |ev| {
                        let v = event_target_value(&ev);
                        if let Some(s) = NetStrategy::ALL.into_iter().find(|s| s.as_str() == v) {
                            ctx.control(Control::Net(NetControl::Strategy(s)));
                        }
                    }>
                        {NetStrategy::ALL.into_iter().map(|s| view! {
                            <option value=s.as_str() prop:selected=move || strategy.get().0 == s>{strategy_label(s)}</option>
                        }).collect_view()}
                    </select>
                </label>
                <label>{move || param().0} " "
                    <input type="number" data-testid="strategy-param" prop:value=move || param().1
                        min=move || param().2 step=move || param().3 on:change=on_param/>
                </label>
                <button data-testid="network-order" class="toggle" on:click=move |_| ctx.control(Control::Net(NetControl::ToggleOrder))>
                    {move || format!("ordering: {}", order.get().label())}
                </button>
                <label><input type="checkbox" data-testid="network-aware" prop:checked=move || aware.get()
                    on:change=move |ev| ctx.control(Control::Net(NetControl::Aware(event_target_checked(&ev))))/>
                    " data-aware (calibration images)"</label>
                <Show when=move || strategy.get().1>
                    <button data-testid="network-reset-ts" on:click=move |_| ctx.control(Control::Net(NetControl::Ts(None)))>"T per layer: back to the strategy"</button>
                </Show>
            </div>
            <div class="stats">
                <div class="stat wide"><span class="k">"top-1 accuracy"</span><span class="v" data-testid="network-accuracy">{accuracy}</span></div>
                <div class="stat wide"><span class="k">"speed-up"</span><span class="v small" data-testid="network-speedup">{speedup}</span></div>
            </div>
            <div class="rel-controls">
                <button data-testid="curve-run" disabled=curve_running on:click=curve>"compute the curve (every strategy, both orderings)"</button>
                <button data-testid="curve-cancel" disabled=move || !curve_running() on:click=cancel>"cancel"</button>
                <button data-testid="download-onnx" on:click=export>"download the decoupled network (ONNX)"</button>
                <button data-testid="download-csv" on:click=csv>"the table as CSV"</button>
                <span class="status" data-testid="network-status">{status}</span>
            </div>
            <AccuracyCard net=net/>
            <LayerTable net=net/>
            <Changed net=net/>
        </section>
    }
}

/// The per-layer table's rows as CSV.
fn table_csv(v: &NetworkView) -> String {
    let mut s = String::from("name,shape,group,full_rank,t,decoupled,macs,macs_decoupled,energy_kept,rel_weight_error,layer_output_error,note\n");
    let (Some(sum), Some(p)) = (&v.summary, &v.prepared) else { return s };
    let errs = v.result.as_ref().map(|r| r.layer_errors.clone()).unwrap_or_default();
    for (i, (c, l)) in sum.convs.iter().zip(&p.plan.layers).enumerate() {
        s.push_str(&format!(
            "{},{}x{}x{}x{},{},{},{},{},{},{},{:.6},{:.6},{},\"{}\"\n",
            c.name,
            c.shape[0],
            c.shape[1],
            c.shape[2],
            c.shape[3],
            c.group,
            l.full_rank,
            l.t,
            l.decoupled,
            l.macs,
            l.macs_decoupled,
            l.energy_kept,
            l.rel_weight_error,
            errs.get(i).map(|e| format!("{e:.6}")).unwrap_or_default(),
            l.note.replace('"', "'")
        ));
    }
    s
}

#[component]
fn LayerTable(net: Net) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let rows = move || {
        net.version.track();
        ctx.net.with_value(|h| {
            let Some(h) = h.current.as_ref() else { return Vec::new() };
            let v = &h.view;
            let (Some(sum), Some(p)) = (&v.summary, &v.prepared) else { return Vec::new() };
            let errs = v.result.as_ref().map(|r| r.layer_errors.clone()).unwrap_or_default();
            let ts = p.plan.ts();
            sum.convs
                .iter()
                .zip(&p.plan.layers)
                .enumerate()
                .map(|(i, (c, l))| (i, c.clone(), l.clone(), errs.get(i).copied(), ts.clone()))
                .collect()
        })
    };
    let set_t = move |i: usize, t: usize, mut ts: Vec<usize>| {
        if let Some(x) = ts.get_mut(i) {
            *x = t;
        }
        ctx.control(Control::Net(NetControl::Ts(Some(ts))));
    };
    view! {
        <div class="table-wrap">
        <table class="compare" data-testid="network-table">
            <thead><tr>
                <th>"conv"</th><th>"shape"</th><th>"full rank"</th><th>"T"</th><th>"MACs before"</th><th>"after"</th>
                <th>"energy kept"</th><th>"weight error"</th><th>"output error (test images)"</th><th>"decoupled"</th><th></th>
            </tr></thead>
            <tbody>
                {move || rows().into_iter().map(|(i, c, l, err, ts): (usize, ConvSummary, _, Option<f64>, Vec<usize>)| {
                    let full = l.full_rank;
                    let t_now = if l.decoupled { l.t } else { 0 };
                    view! {
                        <tr data-layer=i.to_string()>
                            <td>{c.name.clone()}</td>
                            <td>{format!("{}×{}×{}×{}{}", c.shape[0], c.shape[1], c.shape[2], c.shape[3], if c.group > 1 { format!(" /{}", c.group) } else { String::new() })}</td>
                            <td>{full}</td>
                            <td><input type="number" class="channel" min="0" max=full.to_string() step="1" data-testid="layer-t"
                                prop:value=t_now.to_string()
                                title="0 keeps the conv as it is"
                                on:change=move |ev| {
                                    if let Ok(t) = event_target_value(&ev).trim().parse::<usize>() {
                                        set_t(i, t.min(full), ts.clone());
                                    }
                                }/></td>
                            <td>{format!("{:.2} M", l.macs as f64 / 1e6)}</td>
                            <td>{format!("{:.2} M", l.macs_decoupled as f64 / 1e6)}</td>
                            <td>{format!("{:.3}", l.energy_kept)}</td>
                            <td>{format!("{:.3}", l.rel_weight_error)}</td>
                            <td>{err.map(|e| format!("{e:.3}")).unwrap_or_else(|| "…".into())}</td>
                            <td title=l.note.clone()>{if l.decoupled { "yes".to_string() } else { format!("no: {}", l.note) }}</td>
                            <td><button data-testid="layer-open" title="this conv in the single-layer lab, with what feeds it in this network on a test image"
                                on:click=move |_| open_in_lab(ctx, i)>"open in the lab"</button></td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        </div>
    }
}

/// The accuracy-against-MACs plot's data.
fn accuracy_data(v: &NetworkView) -> Option<AccuracyData> {
    let s = v.summary.as_ref()?;
    let o = v.original.as_ref()?;
    let original = o.correct as f64 / o.n.max(1) as f64;
    let mut series: Vec<AccuracySeries> = Vec::new();
    for p in &v.curve {
        let label = format!(
            "{}, {}{}",
            strategy_label(NetStrategy::ALL[p.series.strategy.min(3)]),
            if p.series.dw_pw { Order::DwPw.label() } else { Order::PwDw.label() },
            if p.series.aware { ", data-aware" } else { "" }
        );
        match series.iter_mut().find(|x| x.label == label) {
            Some(x) => x.points.push((p.macs as f64, p.accuracy)),
            None => series.push(AccuracySeries {
                label,
                strategy: p.series.strategy,
                dw_pw: p.series.dw_pw,
                points: vec![(p.macs as f64, p.accuracy)],
            }),
        }
    }
    let current = match (&v.prepared, &v.result) {
        (Some(p), Some(r)) if r.n > 0 => Some((p.plan.macs_decoupled as f64, r.correct as f64 / r.n as f64)),
        _ => None,
    };
    Some(AccuracyData { series, original, original_macs: s.macs as f64, current, items: o.n })
}

#[component]
fn AccuracyCard(net: Net) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let canvas = NodeRef::<html::Canvas>::new();
    let drawn = RwSignal::new(false);
    Effect::new(move |_| {
        net.version.track();
        ctx.resize.track();
        let Some(el) = canvas.get() else { return };
        let data = ctx.net.with_value(|h| h.current.as_ref().and_then(|h| accuracy_data(&h.view)));
        let Some(data) = data else { return };
        let style = plots::style(ndlab_charts::ChartLayer::All);
        match ctx.canvases.with_value(|c| {
            c.draw_on(&el, |area| draw_accuracy(area, &data, &style).map_err(|e| e.to_string()))
        }) {
            Ok(()) => {
                drawn.set(true);
                let _ = el.set_attribute(
                    "data-points",
                    &data.series.iter().map(|s| s.points.len()).sum::<usize>().to_string(),
                );
            }
            Err(e) => ctx.control(Control::Error(format!("accuracy plot: {e}"))),
        }
    });
    let export = move |_| {
        let Some(data) = ctx.net.with_value(|h| h.current.as_ref().and_then(|h| accuracy_data(&h.view)))
        else {
            return;
        };
        let style = plots::style(ndlab_charts::ChartLayer::All);
        let svg = to_svg(900, 560, |area| draw_accuracy(area, &data, &style).map_err(|e| e.to_string()));
        if let Err(e) = svg.and_then(|text| download_svg("ndlab-accuracy.svg", &text)) {
            ctx.control(Control::Error(e));
        }
    };
    view! {
        <article class="card wide" data-testid="accuracy-plot">
            <div class="card-head">
                <h2>"Accuracy against MACs"</h2>
                <button class="svg" title="download as SVG" on:click=export>"SVG"</button>
            </div>
            <p class="blurb">"Top-1 accuracy on the test images against the network's conv MACs: your choice, the original network, and, once computed, every strategy in both orderings."</p>
            <div class="plot-stack">
                <canvas node_ref=canvas class="plot plot-accuracy" data-drawn=move || drawn.get().to_string() role="img" aria-label="accuracy against MACs"></canvas>
            </div>
        </article>
    }
}

#[component]
fn Changed(net: Net) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let items = move || {
        net.version.track();
        ctx.net.with_value(|h| {
            let Some(h) = h.current.as_ref() else { return Vec::new() };
            let v = &h.view;
            let (Some(r), Some(s)) = (&v.result, &v.summary) else { return Vec::new() };
            let name = |k: usize| s.classes.get(k).cloned().unwrap_or_else(|| format!("class {k}"));
            r.thumbs
                .iter()
                .take(8)
                .filter_map(|t| {
                    let (_, o, d) = r.changed.iter().find(|c| c.0 == t.index)?;
                    Some((t.clone(), name(*o), name(*d)))
                })
                .collect()
        })
    };
    let count = move || {
        net.version.track();
        ctx.net.with_value(|h| {
            h.current.as_ref().and_then(|h| h.view.result.as_ref().map(|r| r.changed.len())).unwrap_or(0)
        })
    };
    view! {
        <article class="card wide" data-testid="network-changed">
            <div class="card-head"><h2>"What changed"</h2></div>
            <p class="blurb">{move || format!("{} test items are classified differently by the decoupled network; a few of them, with both predictions:", count())}</p>
            <div class="thumbs">
                {move || items().into_iter().map(|(t, o, d)| {
                    let canvas = NodeRef::<html::Canvas>::new();
                    let grey = t.grey.clone();
                    let (w, h) = (t.w as u32, t.h as u32);
                    Effect::new(move |_| {
                        let Some(el) = canvas.get() else { return };
                        el.set_width(w);
                        el.set_height(h);
                        let rgba: Vec<u8> = grey.iter().flat_map(|&g| [g, g, g, 255]).collect();
                        let ctx2: Option<web_sys::CanvasRenderingContext2d> = el.get_context("2d").ok().flatten().and_then(|c| c.dyn_into().ok());
                        if let (Some(c), Ok(img)) = (ctx2, web_sys::ImageData::new_with_u8_clamped_array_and_sh(wasm_bindgen::Clamped(&rgba), w, h)) {
                            let _ = c.put_image_data(&img, 0.0, 0.0);
                        }
                    });
                    view! {
                        <figure class="thumb">
                            <canvas node_ref=canvas class="thumb-img"></canvas>
                            <figcaption>{format!("#{}: {o} → {d}", t.index)}</figcaption>
                        </figure>
                    }
                }).collect_view()}
            </div>
        </article>
    }
}
