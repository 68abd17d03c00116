//! The lab's controls (example, T, ordering, threshold, channel, image), its numbers (costs,
//! errors, measured times) and the progress and error lines.

use crate::app::image::decode_file;
use crate::app::model::{cost_model, format_error, format_speedup, measured as measured_figures, DEFAULT_HW};
use crate::app::view::view_url;
use crate::app::Ctx;
use leptos::prelude::*;
use ndlab_core::decouple::ThresholdRule;
use ndlab_core::Order;
use ndlab_lab::examples::{self, IMAGES};
use ndlab_lab::page::Control;
use ndlab_lab::protocol::RequestBody;

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
pub(super) fn ErrorBanner() -> impl IntoView {
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
pub(super) fn Controls() -> impl IntoView {
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
pub(super) fn Numbers() -> impl IntoView {
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
pub(super) fn Progress() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    view! {
        <div class="progress" data-testid="progress" aria-live="polite">
            {move || ctx.progress.get().map(|(stage, f)| view! {
                <span>{stage}</span><progress max="1" value=f.to_string()></progress>
            })}
        </div>
    }
}
