//! The page: controls, numbers and plot cards, and the effects that keep them in step.

use super::canvas::{download_svg, draw_on, draw_overlay_on, to_svg};
use super::image::decode_file;
use super::model::{cost_model, format_error, format_speedup, measured as measured_figures, DEFAULT_HW};
use super::{plots, start_worker, Ctx};
use leptos::html;
use leptos::prelude::*;
use ndlab_charts::ChartLayer;
use ndlab_core::decouple::ThresholdRule;
use ndlab_core::Order;
use ndlab_lab::examples::{self, IMAGES};
use ndlab_lab::protocol::RequestBody;
use wasm_bindgen::JsCast;

fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0)
}

fn set_body_data(key: &str, value: &str) {
    if let Some(body) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.body()) {
        let _ = body.set_attribute(&format!("data-{key}"), value);
    }
}

/// Longest wait before the secondary sections are mounted (ms).
const EXTRAS_AFTER_MS: u64 = 3000;

/// The app's root component.
#[component]
pub fn App() -> impl IntoView {
    let ctx = Ctx::new();
    provide_context(ctx);
    start_worker(ctx);
    wire_requests(ctx);
    wire_url(ctx);
    wire_keyboard(ctx);
    let _ = window_event_listener(leptos::ev::resize, move |_| ctx.resize.update(|r| *r += 1));
    super::canvas::on_canvas_resize(move || ctx.resize.update(|r| *r += 1));
    // The secondary sections come after the first plots (see `mark_ready`), or after this delay
    // if some plot cannot be drawn (no image, an error).
    set_timeout(move || ctx.extras.set(true), std::time::Duration::from_millis(EXTRAS_AFTER_MS));
    // While the worker computes the first view, compile the chart and message code on a made-up
    // layer (see `prewarm`), unless the layer is already here.
    set_timeout(
        move || {
            let pending = move || ctx.layer.with_untracked(Option::is_none);
            if pending() {
                super::prewarm::prewarm(pending);
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
        <main>
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
            <Show when=move || ctx.extras.get()>
                <super::relatives::RelativesSection/>
            </Show>
        </main>
        <footer>
            <p>"Guo et al., “Network Decoupling: From Regular to Depthwise Separable Convolutions”, BMVC 2018. Everything runs in your browser; nothing is uploaded."</p>
        </footer>
    }
}

/// Sends worker requests when the inputs they depend on change.
fn wire_requests(ctx: Ctx) {
    let example = Memo::new(move |_| ctx.state.with(|s| s.example.clone()));
    let order = Memo::new(move |_| ctx.state.with(|s| s.order));
    let t = Memo::new(move |_| ctx.state.with(|s| s.t));
    let channel = Memo::new(move |_| ctx.state.with(|s| s.channel));
    let out = Memo::new(move |_| ctx.state.with(|s| s.out_channel));
    let image = Memo::new(move |_| ctx.state.with(|s| s.image.clone()));
    let loaded = Memo::new(move |_| ctx.layer.with(|l| l.as_ref().map(|l| l.example.clone())));
    let has_input = Memo::new(move |_| ctx.input.with(|i| i.is_some()));
    let input_key =
        Memo::new(move |_| ctx.input.with(|i| i.as_ref().map(|i| (i.c, i.h, i.w, i.description.clone()))));

    Effect::new(move |_| {
        let ex = example.get();
        ctx.progress.set(Some((format!("loading {ex}"), 0.0)));
        let slice = ctx.state.with_untracked(|s| (s.order, s.channel));
        ctx.send(RequestBody::LoadExample { example: ex, slice: Some(slice) });
    });
    Effect::new(move |_| {
        let id = image.get();
        // Built-in images are fetched and decoded by the worker (which may hold this one already).
        if IMAGES.iter().any(|i| i.id == id) {
            ctx.send(RequestBody::LoadBuiltinImage { image: id });
        }
    });
    Effect::new(move |_| {
        let (o, c) = (order.get(), channel.get());
        // The layer brings the view of the slice shown when it was asked for.
        let have = ctx.slice.with_untracked(|s| s.as_ref().is_some_and(|v| v.order == o && v.index == c));
        if loaded.get().is_some() && !have {
            ctx.send(RequestBody::Slice { order: o, slice: c });
        }
    });
    Effect::new(move |prev: Option<_>| {
        let key = (input_key.get(), order.get(), out.get());
        let t = t.get();
        if loaded.get().is_some() && has_input.get() {
            // A T change alone: the maps at the new T are made here, in the frame of the change,
            // from the term maps the worker sent (when it did); its own answer follows.
            if prev.as_ref() == Some(&key) {
                show_local_forward(ctx, t);
            }
            send_after_frame(ctx, RequestBody::Forward { t, order: key.1, out_channel: key.2 });
        }
        key
    });
    Effect::new(move |_| {
        let _ = input_key.get();
        if loaded.get().is_some() && has_input.get() {
            ctx.send(RequestBody::OutputErrorCurve { order: order.get() });
        }
    });
}

/// Shows the forward result at `t` made from the kept term maps (see `super::local_forward`),
/// if the shown result is of the current ordering and channel.
fn show_local_forward(ctx: Ctx, t: usize) {
    let (order, out) = ctx.state.with_untracked(|s| (s.order, s.out_channel));
    let local = ctx.fwd.with_untracked(|f| {
        let f = f.as_ref().filter(|f| (f.order, f.out_channel) == (order, out) && f.t != t)?;
        ctx.curves.with_untracked(|c| {
            let curve = c.iter().find(|(o, _)| *o == order)?;
            ctx.layer.with_untracked(|l| super::local_forward(f, t, &curve.1, l.as_ref()?))
        })
    });
    if let Some(f) = local {
        ctx.fwd.set(Some(f));
    }
}

thread_local! {
    /// The forward request waiting for the next frame (see [`send_after_frame`]).
    static PENDING_FORWARD: std::cell::RefCell<Option<RequestBody>> = const { std::cell::RefCell::new(None) };
}

/// Sends `body` once the page has drawn its next frame (the newest such request wins): a T
/// change redraws the layer charts in that frame, and the worker's answer (the feature maps,
/// drawn in the frame after) then neither competes with it for the CPU nor lands in it. A timer
/// sends it too, for a hidden tab, which draws no frames.
fn send_after_frame(ctx: Ctx, body: RequestBody) {
    let first = PENDING_FORWARD.with(|p| p.borrow_mut().replace(body).is_none());
    if !first {
        return;
    }
    let flush = move || {
        if let Some(body) = PENDING_FORWARD.with(|p| p.borrow_mut().take()) {
            ctx.send(body);
        }
    };
    request_animation_frame(move || set_timeout(flush, std::time::Duration::ZERO));
    set_timeout(flush, std::time::Duration::from_millis(100));
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
        let full = ctx.full_rank();
        match ev.key().as_str() {
            "ArrowLeft" => ctx.state.update(|s| s.t = s.t.saturating_sub(1).max(1)),
            "ArrowRight" => ctx.state.update(|s| s.t = (s.t + 1).min(full)),
            "o" | "O" => toggle_order(ctx),
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

fn toggle_order(ctx: Ctx) {
    let layer = ctx.layer.get_untracked();
    ctx.state.update(|s| {
        s.order = s.order.flip();
        if let Some(l) = &layer {
            super::clamp_to_layer(s, l);
        }
    });
}

#[component]
fn ErrorBanner() -> impl IntoView {
    let ctx = expect_context::<Ctx>();
    view! {
        <Show when=move || ctx.error.with(|e| e.is_some())>
            <div class="error" role="alert" data-testid="load-error">
                <strong>"Something went wrong: "</strong>
                {move || ctx.error.get().unwrap_or_default()}
                <button on:click=move |_| ctx.error.set(None)>"dismiss"</button>
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
    let apply_threshold = move || {
        let (tau, rule, o) = ctx.state.with(|s| (s.tau.unwrap_or(0.9), s.rule, s.order));
        let t =
            ctx.layer.with(|l| l.as_ref().and_then(|l| l.order(o)).map(|o| o.spectra.threshold_t(tau, rule)));
        match t {
            Some(Ok(t)) => ctx.state.update(|s| s.t = t),
            Some(Err(e)) => ctx.error.set(Some(e.to_string())),
            None => {}
        }
    };
    let on_file = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        if let Some(file) = input.files().and_then(|f| f.get(0)) {
            ctx.state.update(|s| s.image = "upload".into());
            leptos::task::spawn_local(async move {
                match decode_file(&file).await {
                    Ok(px) => {
                        ctx.send(RequestBody::LoadImage { rgba: px.rgba, width: px.width, height: px.height })
                    }
                    Err(e) => ctx.error.set(Some(e)),
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
                    let v = event_target_value(&ev);
                    if let Some(ex) = examples::find(&v) {
                        ctx.state.update(|s| {
                            s.example = v;
                            s.t = ex.preset_t;
                            s.order = ex.preset_order;
                            s.tau = None;
                        });
                    }
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
                                    ctx.state.update(|s| {
                                        s.t = v.clamp(1, max);
                                        s.tau = None;
                                    });
                                }
                            }/>
                    }
                }}
            </label>
            <button data-testid="order-toggle" class="toggle" aria-pressed=move || (order() == Order::PwDw).to_string()
                title="keyboard: o" on:click=move |_| toggle_order(ctx)>
                {move || format!("ordering: {}", order().label())}
            </button>
            <label>"Energy threshold τ "
                <input type="number" data-testid="threshold-input" min="0.5" max="1" step="0.01"
                    prop:value=move || tau.get().map(|x| format!("{x:.2}")).unwrap_or_default()
                    placeholder="0.90"
                    on:change=move |ev| {
                        if let Ok(v) = event_target_value(&ev).parse::<f64>() {
                            if v.is_finite() {
                                ctx.state.update(|s| s.tau = Some(v.clamp(0.01, 1.0)));
                                apply_threshold();
                            }
                        }
                    }/>
            </label>
            <label>"rule "
                <select data-testid="threshold-rule" on:change=move |ev| {
                    let v = event_target_value(&ev);
                    ctx.state.update(|s| s.rule = if v == "max" { ThresholdRule::Max } else { ThresholdRule::Mean });
                    apply_threshold();
                }>
                    <option value="mean" prop:selected=move || rule.get() == ThresholdRule::Mean>"mean over slices (official code)"</option>
                    <option value="max" prop:selected=move || rule.get() == ThresholdRule::Max>"max over slices (TRP code)"</option>
                </select>
            </label>
            // Number fields, not drop-downs: a drop-down of 256–512 channels costs an element, an
            // effect and a text layout per option (tens of ms when a layer arrives).
            <label>{move || if order() == Order::DwPw { "Input channel " } else { "Output channel " }}
                {channel_field("channel-select", channel, slices, move |v| ctx.state.update(|s| s.channel = v))}
            </label>
            <label>"Output map "
                {channel_field("out-channel-select", out_channel, outs, move |v| ctx.state.update(|s| s.out_channel = v))}
            </label>
            <label>"Image "
                <select data-testid="image-select" on:change=move |ev| {
                    let v = event_target_value(&ev);
                    ctx.state.update(|s| s.image = v);
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
            Some(f) if f.original_ms > 0.0 && f.decoupled_ms <= 0.0 => {
                format!("original {:.1} ms; decoupled at T = {}: timing…", f.original_ms, f.t)
            }
            Some(f) if !(f.original_ms > 0.0 && f.decoupled_ms > 0.0) => {
                "timing both layers once the worker is idle…".into()
            }
            Some(f) => format!(
                "original {:.1} ms, decoupled {:.1} ms → measured {:.2}×{}",
                f.original_ms,
                f.decoupled_ms,
                f.original_ms / f.decoupled_ms.max(1e-6),
                if f.settled { "" } else { " (first runs; measuring again…)" }
            ),
            None => "…".into(),
        })
    };
    let kernels =
        move || ctx.fwd.with(|f| f.as_ref().map(|f| f.kernels.clone()).unwrap_or_else(|| "…".into()));
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
                    data-settled=move || ctx.fwd.with(|f| f.as_ref().is_some_and(|f| f.settled).to_string())>{measured_speedup}</span></div>
                <div class="stat wide"><span class="k">"throughput in this browser"</span><span class="v small" data-testid="gmacs">{gmacs}</span></div>
                <div class="stat"><span class="k">"output error"</span><span class="v" data-testid="output-error">{out_error}</span></div>
                <div class="stat wide"><span class="k">"measured in this browser"</span><span class="v small" data-testid="measured">{measured}</span></div>
                <div class="stat wide"><span class="k">"measured with"</span><span class="v small" data-testid="kernels">{kernels}</span></div>
                <div class="stat wide"><span class="k">"decoupling time"</span><span class="v small" data-testid="decouple-time" data-ms=move || format!("{:.1}", decouple_ms())>{decouple}</span></div>
            </div>
            <p class="source" data-testid="source">"Weights: " {source}</p>
            <p class="source">{input}</p>
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
            Some(o) => plots::spectrum(area, &o.spectra, t, &style)?,
            None => return Ok(false),
        },
        Which::Error => plots::errors(area, summary, t, order, &style)?,
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
        (which == Which::Maps).then(|| {
            ctx.fwd.with(|f| {
                f.as_ref()
                    .map(|f| (f.t, f.order, f.out_channel, f.h, f.w, f.original.clone(), f.decoupled.clone()))
            })
        })
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
        let res = draw_on(&el, |area| {
            ok = draw_chart(ctx, which, area, layer)?;
            Ok(())
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
                    mark_ready(ctx, which);
                }
            }
            Err(e) => ctx.error.set(Some(format!("{title}: {e}"))),
        }
    };
    // The marks of a layered chart (current T) on its overlay.
    let draw_marks = move || {
        let (Some(el), Some(base)) = (overlay.get_untracked(), canvas.get_untracked()) else { return };
        let start = now_ms();
        if let Err(e) =
            draw_overlay_on(&el, |area| draw_chart(ctx, which, area, ChartLayer::Marks).map(|_| ()))
        {
            ctx.error.set(Some(format!("{title}: {e}")));
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
        queue_draw(
            which,
            Box::new(move || {
                shown.set_value(data_version.get_untracked());
                draw_base();
                if which.layered() {
                    draw_marks();
                }
            }),
        );
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
            ctx.error.set(Some(e));
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

/// A chart's drawing, to run later.
type DrawJob = Box<dyn FnOnce()>;

thread_local! {
    /// Chart drawings waiting for their own task (at most one per chart), in order.
    static DRAW_QUEUE: std::cell::RefCell<Vec<(Which, DrawJob)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Queues `job` (a chart's full drawing), replacing a job of the same chart still waiting, and
/// makes sure a task will run the queue (a few jobs per task, see [`run_one_draw`]; input events
/// get in between).
fn queue_draw(which: Which, job: DrawJob) {
    let first = DRAW_QUEUE.with(|q| {
        let mut q = q.borrow_mut();
        let first = q.is_empty();
        match q.iter_mut().find(|(w, _)| *w == which) {
            Some(entry) => entry.1 = job,
            None => q.push((which, job)),
        }
        first
    });
    if first {
        set_timeout(run_one_draw, std::time::Duration::ZERO);
    }
}

/// Time a task of queued drawings may take before the rest waits for the next task (ms). A
/// cold first view draws a chart in 10–35 ms: most of a new layer's charts share a task or two,
/// instead of paying a frame (the canvases' hand-over to the compositor, 10–25 ms each here)
/// between every two of them, and no task comes near the 100 ms an input may wait.
const DRAW_BUDGET_MS: f64 = 40.0;

/// Runs queued drawings, oldest first, until [`DRAW_BUDGET_MS`] have passed; schedules the
/// rest in a new task.
fn run_one_draw() {
    let start = now_ms();
    loop {
        let job = DRAW_QUEUE.with(|q| {
            let mut q = q.borrow_mut();
            (!q.is_empty()).then(|| q.remove(0).1)
        });
        let Some(job) = job else { return };
        job();
        if now_ms() - start >= DRAW_BUDGET_MS {
            break;
        }
    }
    if DRAW_QUEUE.with(|q| !q.borrow().is_empty()) {
        set_timeout(run_one_draw, std::time::Duration::ZERO);
    }
}

thread_local! {
    /// Bit set of the charts drawn at least once.
    static DRAWN: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// Sets `data-plots-ms` (time since navigation) and `data-ready` once all six charts have been
/// drawn (and mounts the secondary sections); `data-main-plots-ms` once the four layer charts
/// have.
fn mark_ready(ctx: Ctx, which: Which) {
    let bits = DRAWN.with(|d| {
        let b = d.get() | (1 << which as u8);
        d.set(b);
        b
    });
    if bits & 0b1111 == 0b1111 && !body_has("data-main-plots-ms") {
        set_body_data("main-plots-ms", &format!("{:.0}", now_ms()));
    }
    if bits == 0b11_1111 && !body_has("data-ready") {
        set_body_data("plots-ms", &format!("{:.0}", now_ms()));
        set_body_data("ready", "1");
        ctx.extras.set(true);
    }
}

fn body_has(attr: &str) -> bool {
    web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.body())
        .map(|b| b.has_attribute(attr))
        .unwrap_or(false)
}
