//! The page: controls, numbers and plot cards, and the effects that keep them in step.

use super::canvas::{download_svg, to_svg};
use super::controls::{Controls, ErrorBanner, Numbers};
use super::hooks::now_ms;
use super::model::DEFAULT_HW;
use super::{plots, Ctx};
use leptos::html;
use leptos::prelude::*;
use ndlab_charts::ChartLayer;
use ndlab_core::Order;
use ndlab_lab::page::Control;
use ndlab_lab::state::View;
use wasm_bindgen::JsCast;

/// Longest wait before the secondary sections are mounted (ms).
const EXTRAS_AFTER_MS: u64 = 3000;

/// The app's root component.
#[component]
pub fn App() -> impl IntoView {
    let ctx = Ctx::new();
    provide_context(ctx);
    ctx.start();
    wire_url(ctx);
    wire_keyboard(ctx);
    let _ = window_event_listener(leptos::ev::resize, move |_| ctx.resize.update(|r| *r += 1));
    ctx.canvases.with_value(|c| c.on_resize(move || ctx.resize.update(|r| *r += 1)));
    // The secondary sections come after the first plots (see `mark_ready`), or after this delay
    // if some plot cannot be drawn (no image, an error).
    set_timeout(move || ctx.extras.set(true), std::time::Duration::from_millis(EXTRAS_AFTER_MS));
    let network_seen = StoredValue::new(false);
    // While the worker computes the first view, compile the chart and message code on a made-up
    // layer (see `prewarm`), unless the layer is already here.
    set_timeout(
        move || {
            let pending = move || ctx.layer.with_untracked(Option::is_none);
            if pending() {
                super::prewarm::prewarm(ctx.canvases.get_value(), pending);
            }
        },
        std::time::Duration::from_millis(0),
    );

    view! {
        <header>
            <h1>"Network Decoupling Lab"</h1>
            <p class="lede">
                "A regular convolution is exactly a sum of depthwise-separable ones. Keep the T strongest terms of each slice's SVD and you get the best T-term approximation: see how much of the layer survives, what it costs, and what it does to a real image."
            </p>
        </header>
        <ErrorBanner/>
        <nav class="views" aria-label="views">
            <button data-testid="view-lab" class="tab" class:active=move || ctx.state.with(|s| s.view == View::Lab)
                on:click=move |_| ctx.control(Control::View(View::Lab))>"One layer"</button>
            <button data-testid="view-network" class="tab" class:active=move || ctx.state.with(|s| s.view == View::Network)
                on:click=move |_| ctx.control(Control::View(View::Network))>"A whole network"</button>
        </nav>
        <main>
            <div class="lab" class:hidden=move || ctx.state.with(|s| s.view == View::Network)>
            <Controls/>
            <super::files::FilePanel/>
            <Numbers/>
            <section class="grid">
                <PlotCard id="spectrum" title="Singular-value spectra" testid="spectrum-plot"
                    blurb="Each slice of the kernel is a small matrix; its singular values say how many depthwise terms it really needs. The red line is the cut at T."/>
                <PlotCard id="error" title="Energy kept and weight error" testid="error-plot"
                    blurb="Energy kept (dark lines, rising to 1) and relative weight error ‖W − W_T‖ / ‖W‖ (light dotted lines, falling to 0 at full rank) against T, for both orderings."/>
                <PlotCard id="cost" title="Cost (theoretical)" testid="cost-plot" span=2
                    blurb="Multiply-accumulates of the decoupled layer against T, with the original layer's line: below it, the decoupled layer is cheaper."/>
                <PlotCard id="filters" title="Filters of one channel" testid="filters-plot" span=2
                    blurb="Original filters of the chosen slice, rebuilt from T terms, their difference; below, the depthwise filters and pointwise weights that make them."/>
                <PlotCard id="outerr" title="Output error" testid="output-error-plot" span=2
                    blurb="Relative error of the whole output against T on this image. It follows the image's statistics, not the weights: it need not be monotone."/>
                <PlotCard id="maps" title="Feature maps on the image" testid="feature-maps" span=3
                    blurb="One output channel of the original layer, of the decoupled layer at T, and their difference, on the chosen image."/>
            </section>
            </div>
            // Mounted once the network view is first shown (not while a visitor stays with the lab).
            <Show when=move || {
                let shown = ctx.state.with(|s| s.view == View::Network);
                if shown {
                    network_seen.set_value(true);
                }
                shown || network_seen.get_value()
            }>
                <super::network::NetworkSection/>
            </Show>
            <Show when=move || ctx.extras.get()>
                <div class:hidden=move || ctx.state.with(|s| s.view == View::Network)>
                    <super::relatives::RelativesSection/>
                </div>
            </Show>
        </main>
        <footer>
            <p>"Guo et al., “Network Decoupling: From Regular to Depthwise Separable Convolutions”, BMVC 2018. Everything runs in your browser; nothing is uploaded."</p>
        </footer>
    }
}

/// Keeps the address bar in step with the state.
/// The address is rewritten once the state has been still for [`URL_SETTLE`] (`replaceState`
/// costs the browser several milliseconds, too much to pay on every step of a slider drag).
fn wire_url(ctx: Ctx) {
    let generation = StoredValue::new(0u64);
    Effect::new(move |_| {
        let q = ctx.state.with(|s| s.to_query());
        let mine = generation.get_value().wrapping_add(1);
        generation.set_value(mine);
        set_timeout(
            move || {
                if generation.get_value() == mine {
                    replace_query(&q);
                }
            },
            URL_SETTLE,
        );
    });
}

/// How long the state must stay unchanged before the address bar follows it.
const URL_SETTLE: std::time::Duration = std::time::Duration::from_millis(120);

/// `history.replaceState` to `?query` (nothing when the address already says so).
fn replace_query(q: &str) {
    let Some(w) = web_sys::window() else { return };
    let path = w.location().pathname().unwrap_or_default();
    let current = w.location().search().unwrap_or_default();
    if current.strip_prefix('?') == Some(q) {
        return;
    }
    if let Ok(h) = w.history() {
        let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&format!("{path}?{q}")));
    }
}

/// The address of the current view (for "copy link": the address bar may lag by [`URL_SETTLE`]).
pub(super) fn view_url(ctx: Ctx) -> Option<String> {
    let w = web_sys::window()?;
    let loc = w.location();
    let q = ctx.state.with_untracked(|s| s.to_query());
    Some(format!("{}{}?{q}", loc.origin().ok()?, loc.pathname().ok()?))
}

/// ←/→ change T, `o` toggles the ordering (not while typing in a field).
fn wire_keyboard(ctx: Ctx) {
    let _ = window_event_listener(leptos::ev::keydown, move |ev: web_sys::KeyboardEvent| {
        if ev.ctrl_key() || ev.meta_key() || ev.alt_key() {
            return;
        }
        let in_field = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .map(|el| matches!(el.tag_name().as_str(), "INPUT" | "SELECT" | "TEXTAREA"))
            .unwrap_or(false);
        if in_field {
            return;
        }
        match ev.key().as_str() {
            "ArrowLeft" => ctx.control(Control::StepT(-1)),
            "ArrowRight" => ctx.control(Control::StepT(1)),
            "o" | "O" => ctx.control(Control::ToggleOrder),
            _ => return,
        }
        ev.prevent_default();
    });
}

/// Which chart a card holds.
#[derive(Clone, Copy, PartialEq)]
enum Which {
    Spectrum,
    Error,
    Cost,
    Filters,
    Maps,
    OutErr,
}

impl Which {
    fn from_id(id: &str) -> Which {
        match id {
            "spectrum" => Which::Spectrum,
            "error" => Which::Error,
            "cost" => Which::Cost,
            "filters" => Which::Filters,
            "maps" => Which::Maps,
            _ => Which::OutErr,
        }
    }

    /// Charts whose only T-dependent part is a marker: their base is drawn once per layer,
    /// ordering and size, and a T change redraws only the marks on a transparent overlay.
    fn layered(self) -> bool {
        matches!(self, Which::Spectrum | Which::Error | Which::Cost | Which::OutErr)
    }

    /// Tracks the worker results the chart is drawn from (inside an effect).
    fn track_data(self, ctx: Ctx) {
        ctx.layer.track();
        ctx.resize.track();
        match self {
            Which::Filters => ctx.slice.track(),
            // (The maps track their own content: see `PlotCard`.)
            Which::Maps => {}
            Which::OutErr => {
                ctx.curves.track();
                ctx.input.track();
            }
            Which::Cost => ctx.input.track(),
            _ => {}
        }
    }
}

/// Draws `layer` of chart `which` on any backend from the current signals (untracked reads: the
/// caller's effect decides what it depends on). Ok(false) when there is nothing to draw yet.
fn draw_chart<DB: plotters::prelude::DrawingBackend>(
    ctx: Ctx,
    which: Which,
    area: &plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    layer: ChartLayer,
) -> Result<bool, String> {
    let style = plots::style(layer);
    let (t, order) = ctx.state.with_untracked(|s| (s.t, s.order));
    let summary = ctx.layer.read_untracked();
    let Some(summary) = summary.as_ref() else { return Ok(false) };
    match which {
        Which::Spectrum => match summary.order(order) {
            Some(o) => ctx.charts.with_value(|c| plots::spectrum(area, c, &o.spectra, t, &style))?,
            None => return Ok(false),
        },
        Which::Error => ctx.charts.with_value(|c| plots::errors(area, c, summary, t, order, &style))?,
        Which::Cost => {
            let hw = ctx.input.with_untracked(|i| i.as_ref().map(|i| (i.h, i.w))).unwrap_or(DEFAULT_HW);
            plots::cost(area, summary, t, order, hw, &style)?
        }
        Which::Filters => match ctx.slice.read_untracked().as_ref() {
            Some(s) if s.order == order => plots::filters(area, s, t, &style)?,
            _ => return Ok(false),
        },
        Which::Maps => match ctx.fwd.read_untracked().as_ref() {
            Some(f) => plots::feature_maps(area, f, &style)?,
            None => return Ok(false),
        },
        Which::OutErr => {
            let curves = ctx.curves.get_untracked();
            if curves.is_empty() {
                return Ok(false);
            }
            let curves: Vec<(Order, Vec<f64>)> = curves.into_iter().map(|c| (c.order, c.errors)).collect();
            let label = ctx
                .input
                .with_untracked(|i| i.as_ref().map(|i| format!("{}×{} input", i.h, i.w)))
                .unwrap_or_default();
            plots::output_error(area, &curves, t, order, &label, &style)?
        }
    }
    Ok(true)
}

#[component]
fn PlotCard(
    id: &'static str,
    title: &'static str,
    testid: &'static str,
    blurb: &'static str,
    /// Columns the card spans (1, 2, or 3 = the whole row).
    #[prop(optional)]
    span: u8,
) -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let which = Which::from_id(id);
    let canvas = NodeRef::<html::Canvas>::new();
    let overlay = NodeRef::<html::Canvas>::new();
    let drawn = RwSignal::new(false);
    let base_draws = StoredValue::new(0u32);
    // Memos: an effect that read `state` directly would rerun on every change of any setting.
    let t = Memo::new(move |_| ctx.state.with(|s| s.t));
    let order = Memo::new(move |_| ctx.state.with(|s| s.order));
    // The feature maps' content: a forward answer that brings the maps already shown (the
    // worker's answer after the page made them from the term maps; settled timings) is no
    // reason to draw them again.
    let maps = Memo::new(move |_| {
        (which == Which::Maps)
            .then(|| ctx.fwd.with(|f| f.as_ref().map(|f| (f.t, f.order, f.out_channel, f.maps.clone()))))
    });
    // Bumped whenever the chart's data, the ordering or the size change (not on T changes).
    let data_version = Memo::new(move |prev: Option<&u64>| {
        which.track_data(ctx);
        maps.with(|_| ());
        let _ = order.get();
        prev.map_or(0, |p| p + 1)
    });
    // The version the canvas shows (u64::MAX: nothing drawn yet).
    let shown = StoredValue::new(u64::MAX);
    let draw_base = move || {
        let Some(el) = canvas.get_untracked() else { return };
        let layer = if which.layered() { ChartLayer::Base } else { ChartLayer::All };
        let start = now_ms();
        let mut ok = false;
        let res = ctx.canvases.with_value(|c| {
            c.draw_on(&el, |area| {
                ok = draw_chart(ctx, which, area, layer)?;
                Ok(())
            })
        });
        match res {
            Ok(()) => {
                drawn.set(ok);
                if ok {
                    let ms = format!("{:.2}", now_ms() - start);
                    let _ = el.set_attribute("data-drawn-ms", &ms);
                    let _ = el.set_attribute("data-base-ms", &ms);
                    // Counted for the e2e check that a T change leaves layered bases alone.
                    base_draws.update_value(|n| *n += 1);
                    let _ = el.set_attribute("data-base-draws", &base_draws.get_value().to_string());
                    if which == Which::Maps {
                        let t = ctx.fwd.with_untracked(|f| f.as_ref().map(|f| f.t).unwrap_or(0));
                        let _ = el.set_attribute("data-t", &t.to_string());
                    }
                    ctx.chart_drawn(which as u8);
                }
            }
            Err(e) => ctx.control(Control::Error(format!("{title}: {e}"))),
        }
    };
    // The marks of a layered chart (current T) on its overlay.
    let draw_marks = move || {
        let (Some(el), Some(base)) = (overlay.get_untracked(), canvas.get_untracked()) else { return };
        let start = now_ms();
        let drawn = ctx.canvases.with_value(|c| {
            c.draw_overlay_on(&el, |area| draw_chart(ctx, which, area, ChartLayer::Marks).map(|_| ()))
        });
        if let Err(e) = drawn {
            ctx.control(Control::Error(format!("{title}: {e}")));
            return;
        }
        let ms = format!("{:.2}", now_ms() - start);
        let _ = base.set_attribute("data-drawn-ms", &ms);
        let _ = base.set_attribute("data-marks-ms", &ms);
    };
    // New data: the whole chart is drawn later, in a task of queued drawings (see
    // `run_one_draw`), so a new layer does not become one long task of six charts. A T change alone redraws the marks
    // of layered charts and the filters chart at once, in the same frame.
    Effect::new(move |_| {
        let version = data_version.get();
        if which == Which::Filters {
            let _ = t.get();
        }
        if shown.get_value() == version {
            draw_base();
            return;
        }
        // Once drawn, the maps are redrawn at once: at a T change the page made them itself,
        // and they belong in the frame of the change with the other charts.
        if which == Which::Maps && shown.get_value() != u64::MAX {
            shown.set_value(version);
            draw_base();
            return;
        }
        ctx.canvases.with_value(|c| {
            c.queue_draw(
                id,
                Box::new(move || {
                    shown.set_value(data_version.get_untracked());
                    draw_base();
                    if which.layered() {
                        draw_marks();
                    }
                }),
            )
        });
    });
    Effect::new(move |_| {
        let _ = t.get();
        if which.layered() && shown.get_value() == data_version.get() {
            draw_marks();
        }
    });
    let export = move |_| {
        let svg = to_svg(900, 560, |area| draw_chart(ctx, which, area, ChartLayer::All).map(|_| ()));
        if let Err(e) = svg.and_then(|text| download_svg(&format!("ndlab-{id}.svg"), &text)) {
            ctx.control(Control::Error(e));
        }
    };
    view! {
        <article class=match span { 3 => "card wide", 2 => "card span2", _ => "card" } data-testid=testid>
            <div class="card-head">
                <h2>{title}</h2>
                <button class="svg" title="download as SVG" on:click=export>"SVG"</button>
            </div>
            <p class="blurb">{blurb}</p>
            <div class="plot-stack">
                <canvas node_ref=canvas class=format!("plot plot-{id}") data-chart=id
                    data-drawn=move || drawn.get().to_string() role="img" aria-label=title></canvas>
                {which.layered().then(|| view! {
                    <canvas node_ref=overlay class="plot-overlay" aria-hidden="true"></canvas>
                })}
            </div>
        </article>
    }
}
