//! The page: controls, numbers and plot cards, and the effects that keep them in step.

use super::canvas::{download_svg, to_svg};
use super::hooks::now_ms;
use super::image::decode_file;
use super::model::{cost_model, format_error, format_speedup, measured as measured_figures, DEFAULT_HW};
use super::{plots, Ctx};
use leptos::html;
use leptos::prelude::*;
use ndlab_charts::ChartLayer;
use ndlab_core::decouple::ThresholdRule;
use ndlab_core::Order;
use ndlab_lab::examples::{self, IMAGES};
use ndlab_lab::page::Control;
use ndlab_lab::protocol::RequestBody;
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
            <Show when=move || ctx.extras.get() || ctx.state.with(|s| s.view == View::Network)>
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
fn view_url(ctx: Ctx) -> Option<String> {
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

/// A number field for a channel in `0..count()`, followed by "of 0–last". Number fields, not
/// drop-downs: a drop-down of 256–512 channels costs an element, an effect and a text layout per
/// option (tens of ms when a layer arrives). A whole number, clamped to the range, is applied
/// (and shown clamped); anything else (empty, negative, fractional, too large to parse) puts the
/// current channel back in the field.
fn channel_field(
    testid: &'static str,
    value: Memo<usize>,
    count: impl Fn() -> usize + Copy + Send + Sync + 'static,
    apply: impl Fn(usize) + 'static,
) -> impl IntoView {
    let last = move || count().saturating_sub(1);
    let on_change = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let v = input.value().trim().parse::<usize>().ok().map(|v| v.min(last()));
        input.set_value(&v.unwrap_or(value.get_untracked()).to_string());
        if let Some(v) = v {
            apply(v);
        }
    };
    view! {
        <input type="number" data-testid=testid class="channel" min="0" step="1"
            max=move || last().to_string() prop:value=move || value.get().to_string() on:change=on_change/>
        {move || format!(" of 0–{}", last())}
    }
}

#[component]
fn ErrorBanner() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    view! {
        <Show when=move || ctx.error.with(|e| e.is_some())>
            <div class="error" role="alert" data-testid="load-error">
                <strong>"Something went wrong: "</strong>
                {move || ctx.error.get().unwrap_or_default()}
                <button on:click=move |_| ctx.control(Control::DismissError)>"dismiss"</button>
            </div>
        </Show>
    }
}

#[component]
fn Controls() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let full_rank = Memo::new(move |_| ctx.full_rank());
    let full = move || full_rank.get();
    // One memo per field: a control re-runs only when its own field changes (a T change must not
    // touch the 2 × 256 channel options).
    let t = Memo::new(move |_| ctx.state.with(|s| s.t));
    let order = Memo::new(move |_| ctx.state.with(|s| s.order));
    let example = Memo::new(move |_| ctx.state.with(|s| s.example.clone()));
    let rule = Memo::new(move |_| ctx.state.with(|s| s.rule));
    let tau = Memo::new(move |_| ctx.state.with(|s| s.tau));
    let channel = Memo::new(move |_| ctx.state.with(|s| s.channel));
    let out_channel = Memo::new(move |_| ctx.state.with(|s| s.out_channel));
    let image = Memo::new(move |_| ctx.state.with(|s| s.image.clone()));
    let t = move || t.get();
    let order = move || order.get();
    let slices = move || {
        let o = order();
        ctx.layer.with(|l| l.as_ref().and_then(|l| l.order(o)).map(|o| o.spectra.slices.len()).unwrap_or(1))
    };
    let outs = move || ctx.layer.with(|l| l.as_ref().map(|l| l.n).unwrap_or(1));
    let on_file = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        if let Some(file) = input.files().and_then(|f| f.get(0)) {
            ctx.control(Control::Image("upload".into()));
            leptos::task::spawn_local(async move {
                match decode_file(&file).await {
                    Ok(px) => {
                        let body =
                            RequestBody::LoadImage { rgba: px.rgba, width: px.width, height: px.height };
                        ctx.control(Control::Request(body, "your image".into()))
                    }
                    Err(e) => ctx.control(Control::Error(e)),
                }
            });
        }
    };
    let copied = RwSignal::new(String::new());
    let copy_link = move |_| {
        let (Some(w), Some(href)) = (web_sys::window(), view_url(ctx)) else { return };
        let promise = w.navigator().clipboard().write_text(&href);
        leptos::task::spawn_local(async move {
            let ok = wasm_bindgen_futures::JsFuture::from(promise).await.is_ok();
            copied.set(if ok { "copied".into() } else { "copy the address bar".into() });
        });
    };

    view! {
        <section class="controls" aria-label="controls">
            <label>"Example "
                <select data-testid="example-select" on:change=move |ev| {
                    ctx.control(Control::Example(event_target_value(&ev)));
                }>
                    {examples::catalogue().iter().map(|e| {
                        let id = e.id;
                        view! { <option value=id prop:selected=move || example.with(|e| e == id)>{e.title}</option> }
                    }).collect_view()}
                </select>
            </label>
            <label class="slider">
                {move || format!("T = {} of {}", t(), full())}
                // Re-created when the full rank changes, so `max` is set before `value` (a value
                // above the old max would otherwise be clamped by the browser).
                {move || {
                    let max = full();
                    view! {
                        <input type="range" data-testid="t-slider" min="1" max=max.to_string() step="1"
                            prop:value=move || t().to_string()
                            aria-valuetext=move || format!("T = {} of {}", t(), max)
                            on:input=move |ev| {
                                if let Ok(v) = event_target_value(&ev).parse::<usize>() {
                                    ctx.control(Control::T(v.clamp(1, max)));
                                }
                            }/>
                    }
                }}
            </label>
            <button data-testid="order-toggle" class="toggle" aria-pressed=move || (order() == Order::PwDw).to_string()
                title="keyboard: o" on:click=move |_| ctx.control(Control::ToggleOrder)>
                {move || format!("ordering: {}", order().label())}
            </button>
            <label>"Energy threshold τ "
                <input type="number" data-testid="threshold-input" min="0.5" max="1" step="0.01"
                    prop:value=move || tau.get().map(|x| format!("{x:.2}")).unwrap_or_default()
                    placeholder="0.90"
                    on:change=move |ev| {
                        if let Ok(v) = event_target_value(&ev).parse::<f64>() {
                            ctx.control(Control::Threshold(v));
                        }
                    }/>
            </label>
            <label>"rule "
                <select data-testid="threshold-rule" on:change=move |ev| {
                    let rule = if event_target_value(&ev) == "max" { ThresholdRule::Max } else { ThresholdRule::Mean };
                    ctx.control(Control::Rule(rule));
                }>
                    <option value="mean" prop:selected=move || rule.get() == ThresholdRule::Mean>"mean over slices (official code)"</option>
                    <option value="max" prop:selected=move || rule.get() == ThresholdRule::Max>"max over slices (TRP code)"</option>
                </select>
            </label>
            // Number fields, not drop-downs: a drop-down of 256–512 channels costs an element, an
            // effect and a text layout per option (tens of ms when a layer arrives).
            <label>{move || if order() == Order::DwPw { "Input channel " } else { "Output channel " }}
                {channel_field("channel-select", channel, slices, move |v| ctx.control(Control::Channel(v)))}
            </label>
            <label>"Output map "
                {channel_field("out-channel-select", out_channel, outs, move |v| ctx.control(Control::OutChannel(v)))}
            </label>
            <label>"Image "
                <select data-testid="image-select" on:change=move |ev| {
                    ctx.control(Control::Image(event_target_value(&ev)));
                }>
                    {IMAGES.iter().map(|info| {
                        let id = info.id;
                        view! { <option value=id prop:selected=move || image.with(|m| m == id)>{info.title}</option> }
                    }).collect_view()}
                    <option value="upload" disabled=true prop:selected=move || image.with(|m| m == "upload")>"your image"</option>
                </select>
            </label>
            <label class="file">"or your own: "
                <input type="file" accept="image/*" data-testid="image-file" on:change=on_file/>
            </label>
            <button data-testid="copy-link" on:click=copy_link>"copy link"</button>
            <span class="copied" aria-live="polite">{move || copied.get()}</span>
        </section>
    }
}

#[component]
fn Numbers() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    let weight_error = move || {
        let (t, o) = ctx.state.with(|s| (s.t, s.order));
        ctx.layer.with(|l| {
            l.as_ref()
                .and_then(|l| l.order(o))
                .and_then(|os| os.spectra.rel_weight_error().get(t.saturating_sub(1)).copied())
                .map(format_error)
                .unwrap_or_else(|| "…".into())
        })
    };
    let speedup = move || {
        let (t, o) = ctx.state.with(|s| (s.t, s.order));
        ctx.layer.with(|l| {
            let hw = ctx.input.with(|i| i.as_ref().map(|i| (i.h, i.w))).unwrap_or(DEFAULT_HW);
            l.as_ref()
                .and_then(|l| cost_model(l, hw).ok())
                .map(|m| format_speedup(m.speedup(o, t)))
                .unwrap_or_else(|| "…".into())
        })
    };
    let measured = move || {
        ctx.fwd.with(|f| match f {
            // Forwards are not timed (the first on an input is computed term by term, later ones
            // from its terms): the worker times both layers once it is idle (see
            // `Engine::forward`), the original once per input, the decoupled layer once per T.
            // (No longer than the line with both times: on a narrow screen a line that wraps
            // where the other does not would move the page below it at every T change.)
            Some(f) if f.timings.original_ms > 0.0 && f.timings.decoupled_ms <= 0.0 => {
                format!("original {:.1} ms; decoupled at T = {}: timing…", f.timings.original_ms, f.t)
            }
            Some(f) if !(f.timings.original_ms > 0.0 && f.timings.decoupled_ms > 0.0) => {
                "timing both layers once the worker is idle…".into()
            }
            Some(f) => format!(
                "original {:.1} ms, decoupled {:.1} ms → measured {:.2}×{}",
                f.timings.original_ms,
                f.timings.decoupled_ms,
                f.timings.original_ms / f.timings.decoupled_ms.max(1e-6),
                if f.timings.settled { "" } else { " (first runs; measuring again…)" }
            ),
            None => "…".into(),
        })
    };
    let kernels =
        move || ctx.fwd.with(|f| f.as_ref().map(|f| f.timings.kernels.clone()).unwrap_or_else(|| "…".into()));
    // Measured speed-up and GMAC/s of the last forward (its own T and ordering, the current input).
    let figures = move || {
        let hw = ctx.input.with(|i| i.as_ref().map(|i| (i.h, i.w))).unwrap_or(DEFAULT_HW);
        let model = ctx.layer.with(|l| l.as_ref().and_then(|l| cost_model(l, hw).ok()));
        ctx.fwd.with(|f| f.as_ref().zip(model.as_ref()).and_then(|(f, m)| measured_figures(f, m)))
    };
    let measured_speedup = move || figures().map(|m| format_speedup(m.speedup)).unwrap_or_else(|| "…".into());
    let gmacs = move || {
        figures()
            .map(|m| format!("original {:.1}, decoupled {:.1} GMAC/s", m.original_gmacs, m.decoupled_gmacs))
            .unwrap_or_else(|| "…".into())
    };
    let out_error =
        move || ctx.fwd.with(|f| f.as_ref().map(|f| format_error(f.rel_error)).unwrap_or_else(|| "…".into()));
    let decouple = move || {
        ctx.layer.with(|l| match l {
            Some(l) => l
                .orders
                .iter()
                // (One decimal under 10 ms: a small layer decouples in well under 1 ms, not "0 ms".)
                .map(|o| {
                    let digits = if o.decouple_ms < 10.0 { 1 } else { 0 };
                    format!("{} {:.*} ms", o.spectra.order.label(), digits, o.decouple_ms)
                })
                .collect::<Vec<_>>()
                .join(", "),
            None => "…".into(),
        })
    };
    let decouple_ms = move || {
        ctx.layer
            .with(|l| l.as_ref().map(|l| l.orders.iter().map(|o| o.decouple_ms).sum::<f64>()).unwrap_or(0.0))
    };
    let title = move || {
        ctx.layer.with(|l| {
            l.as_ref().map(|l| format!("{} — {}×{}×{}×{}", l.title, l.n, l.c, l.kh, l.kw)).unwrap_or_default()
        })
    };
    let source = move || ctx.layer.with(|l| l.as_ref().map(|l| l.source.clone()).unwrap_or_default());
    let input = move || {
        ctx.input.with(|i| {
            i.as_ref()
                .map(|i| format!("Input {}×{}×{}: {}", i.c, i.h, i.w, i.description))
                .unwrap_or_default()
        })
    };
    view! {
        <section class="numbers" aria-label="results">
            <div class="layer-title">{title}</div>
            <div class="stats">
                <div class="stat"><span class="k">"weight error"</span><span class="v" data-testid="weight-error">{weight_error}</span></div>
                <div class="stat"><span class="k">"theoretical speed-up"</span><span class="v" data-testid="speedup">{speedup}</span></div>
                <div class="stat"><span class="k">"measured speed-up"</span><span class="v" data-testid="measured-speedup"
                    data-settled=move || ctx.fwd.with(|f| f.as_ref().is_some_and(|f| f.timings.settled).to_string())>{measured_speedup}</span></div>
                <div class="stat wide"><span class="k">"throughput in this browser"</span><span class="v small" data-testid="gmacs">{gmacs}</span></div>
                <div class="stat"><span class="k">"output error"</span><span class="v" data-testid="output-error">{out_error}</span></div>
                <div class="stat wide"><span class="k">"measured in this browser"</span><span class="v small" data-testid="measured">{measured}</span></div>
                <div class="stat wide"><span class="k">"measured with"</span><span class="v small" data-testid="kernels">{kernels}</span></div>
                <div class="stat wide"><span class="k">"decoupling time"</span><span class="v small" data-testid="decouple-time" data-ms=move || format!("{:.1}", decouple_ms())>{decouple}</span></div>
            </div>
            <p class="source" data-testid="source">"Weights: " {source}</p>
            <p class="source" data-testid="input-description">{input}</p>
            <Progress/>
        </section>
    }
}

#[component]
fn Progress() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    view! {
        <div class="progress" data-testid="progress" aria-live="polite">
            {move || ctx.progress.get().map(|(stage, f)| view! {
                <span>{stage}</span><progress max="1" value=f.to_string()></progress>
            })}
        </div>
    }
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
