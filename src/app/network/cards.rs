//! The section's cards: the per-layer table (CSV), accuracy against MACs, what changed.

use super::{open_in_lab, strategy_label, Net};
use crate::app::canvas::{download_svg, to_svg};
use crate::app::{plots, Ctx};
use leptos::html;
use leptos::prelude::*;
use ndlab_charts::{draw_accuracy, AccuracyData, AccuracySeries};
use ndlab_core::layer::Order;
use ndlab_lab::network::messages::ConvSummary;
use ndlab_lab::network::view::NetworkView;
use ndlab_lab::page::{Control, NetControl};
use ndlab_lab::state::NetStrategy;
use wasm_bindgen::JsCast;

/// The per-layer table's rows as CSV.
pub(super) fn table_csv(v: &NetworkView) -> String {
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
pub(super) fn LayerTable(net: Net) -> impl IntoView {
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
pub(super) fn accuracy_data(v: &NetworkView) -> Option<AccuracyData> {
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
pub(super) fn AccuracyCard(net: Net) -> impl IntoView {
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
pub(super) fn Changed(net: Net) -> impl IntoView {
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
