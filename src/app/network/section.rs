//! The whole-network section: its controls, status and the cards of [`super::cards`].

use super::cards::{table_csv, AccuracyCard, Changed, LayerTable};
use super::*;
use crate::app::Ctx;
use leptos::html;
use leptos::prelude::*;
use ndlab_lab::network::messages::NetworkSource;
use ndlab_lab::network::view::NetworkView;
use ndlab_lab::page::{Control, NetControl};
use ndlab_lab::protocol::RequestBody;
use ndlab_lab::state::{NetStrategy, View};

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
            crate::app::relatives::observe_on_screen(&el, move |seen| on_screen.set(seen));
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
            _ if v.choice_failed.is_some() => {
                format!("not computed: {}", v.choice_failed.as_deref().unwrap_or_default())
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
                for (i, w) in h.workers.iter().enumerate() {
                    let id = w.send_with(
                        RequestBody::NetworkData { names: names.clone() },
                        Some(arr.clone().into()),
                    );
                    h.data.push((i, id));
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
