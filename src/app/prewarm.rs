//! Warms up the page's own code while it waits for the worker's first answer.
//!
//! V8 compiles a wasm function (and the JS glue around canvas calls) only when it first runs,
//! in its baseline tier. Left alone, all of the chart and message code is compiled on the first
//! view's critical path: when the layer arrives, decoding it and drawing four charts pay for
//! their own compilation. Between the app's mount and that answer the main thread is otherwise
//! idle; [`prewarm`] spends it decoding and drawing a made-up layer of the same shape of data on
//! a canvas outside the document, one chart per task, in the order the real charts are drawn,
//! and stops as soon as the real layer is here (a warm-up must never delay what it warms up).
//! Nothing it makes is shown or kept, and a failure here is ignored (the real view reports its
//! own).

use super::canvas::Canvases;
use super::plots;
use ndlab_charts::{ChartLayer, ChartStyle};
use ndlab_core::decouple::{Slice, SliceSpectrum, Spectra};
use ndlab_core::layer::{ConvGeometry, Order};
use ndlab_lab::protocol::{
    from_json, to_json, ForwardResult, LayerSummary, OrderSummary, OutputMaps, Response, ResponseBody,
    SliceView, Timings,
};
use std::rc::Rc;

/// Output channels and input channels of the made-up layer (3×3 kernel).
const N: usize = 4;
const C: usize = 3;
const K2: usize = 9;

/// What the warm-up draws from: the made-up messages after their JSON round trip.
struct Made {
    canvases: Canvases,
    cache: plots::Cache,
    layer: LayerSummary,
    fwd: ForwardResult,
    slice: SliceView,
    canvas: web_sys::HtmlCanvasElement,
}

/// The warm-up canvas's drawing area.
type Area = plotters::prelude::DrawingArea<super::canvas::HiDpi, plotters::coord::Shift>;

/// One chart of the warm-up (each runs in a task of its own).
type Step = fn(&Made);

/// The charts in the order the page draws them: spectrum, errors, cost, filters, output error,
/// feature maps (the layered ones in all three layers, as the page draws them).
const STEPS: [Step; 6] = [
    |m| layers(m, |a, s| plots::spectrum(a, &m.cache, &m.layer.orders[0].spectra, 2, s)),
    |m| layers(m, |a, s| plots::errors(a, &m.cache, &m.layer, 2, Order::DwPw, s)),
    |m| layers(m, |a, s| plots::cost(a, &m.layer, 2, Order::DwPw, (8, 8), s)),
    |m| {
        let _ = m.canvases.draw_sized(&m.canvas, (640, 420), |a| {
            plots::filters(a, &m.slice, 2, &plots::style(ChartLayer::All))
        });
    },
    |m| {
        let curves = vec![(Order::DwPw, vec![0.5, 0.2, 0.1, 0.0]), (Order::PwDw, vec![0.6, 0.3, 0.0])];
        layers(m, |a, s| plots::output_error(a, &curves, 2, Order::DwPw, "8×8 input", s))
    },
    |m| {
        let _ = m.canvases.draw_sized(&m.canvas, (900, 300), |a| {
            plots::feature_maps(a, &m.fwd, &plots::style(ChartLayer::All))
        });
    },
];

/// Draws a layered chart's base, marks and whole on the warm-up canvas.
fn layers(m: &Made, chart: impl Fn(&Area, &ChartStyle) -> plots::Drawn) {
    for layer in [ChartLayer::Base, ChartLayer::Marks, ChartLayer::All] {
        let _ = m.canvases.draw_sized(&m.canvas, (480, 300), |a| chart(a, &plots::style(layer)));
    }
}

/// Starts the warm-up: the JSON round trip, then one chart per task while `pending()` holds
/// (it says whether the real layer is still awaited).
pub fn prewarm(canvases: Canvases, pending: impl Fn() -> bool + 'static) {
    let Some((layer, fwd)) = roundtrip(&made_up_layer(), &made_up_forward()) else { return };
    let Some(slice) = layer.slice.clone() else { return };
    let Some(canvas) = detached_canvas() else { return };
    let made = Made { canvases, cache: plots::Cache::default(), layer, fwd, slice, canvas };
    next_step(Rc::new(made), Rc::new(pending), 0);
}

/// Runs step `i` in a new task if the layer is still awaited, then queues the next.
fn next_step(made: Rc<Made>, pending: Rc<dyn Fn() -> bool>, i: usize) {
    if i >= STEPS.len() {
        return;
    }
    leptos::prelude::set_timeout(
        move || {
            if pending() {
                STEPS[i](&made);
                next_step(made, pending, i + 1);
            }
        },
        std::time::Duration::ZERO,
    );
}

/// The two messages through the same JSON encoding and decoding as the worker's answers.
fn roundtrip(layer: &LayerSummary, fwd: &ForwardResult) -> Option<(LayerSummary, ForwardResult)> {
    let msg = |body| to_json(&Response { id: 0, body });
    let layer = match from_json::<Response>(&msg(ResponseBody::Layer(Box::new(layer.clone())))).ok()?.body {
        ResponseBody::Layer(l) => *l,
        _ => return None,
    };
    let fwd = match from_json::<Response>(&msg(ResponseBody::Forward(Box::new(fwd.clone())))).ok()?.body {
        ResponseBody::Forward(f) => *f,
        _ => return None,
    };
    Some((layer, fwd))
}

/// A canvas outside the document.
fn detached_canvas() -> Option<web_sys::HtmlCanvasElement> {
    use wasm_bindgen::JsCast;
    web_sys::window()?.document()?.create_element("canvas").ok()?.dyn_into().ok()
}

/// Deterministic filler values in (−1, 1).
fn filler(len: usize, seed: usize) -> Vec<f64> {
    (0..len).map(|i| (((i + seed) * 7919 % 199) as f64 / 99.0) - 1.0).collect()
}

/// A slice with `r` terms of `rows` rows (descending σ, filler factors).
fn slice(r: usize, rows: usize, seed: usize) -> Slice {
    let sigma: Vec<f64> = (0..r).map(|k| 1.0 / (k + 1 + seed % 3) as f64).collect();
    let energy = sigma.iter().map(|s| s * s).sum();
    Slice { sigma, dw: filler(r * K2, seed), pw: filler(r * rows, seed + 1), energy }
}

/// A made-up N×C×3×3 layer's summary in both orderings, with the view of slice 0 (DW→PW).
fn made_up_layer() -> LayerSummary {
    let spectra = |order: Order, count: usize, rows: usize| Spectra {
        order,
        n: N,
        c: C,
        kh: 3,
        kw: 3,
        groups: 1,
        full_rank: rows.min(K2),
        slices: (0..count)
            .map(|s| {
                let Slice { sigma, energy, .. } = slice(rows.min(K2), rows, s);
                SliceSpectrum { sigma, energy }
            })
            .collect(),
    };
    let orders = vec![
        OrderSummary { spectra: spectra(Order::DwPw, C, N), decouple_ms: 1.0 },
        OrderSummary { spectra: spectra(Order::PwDw, N, C), decouple_ms: 1.0 },
    ];
    let view = SliceView {
        layer_id: 0,
        order: Order::DwPw,
        index: 0,
        rows: N,
        k2: K2,
        kh: 3,
        kw: 3,
        matrix: filler(N * K2, 5),
        factors: slice(N.min(K2), N, 0),
    };
    LayerSummary {
        layer_id: 0,
        example: "prewarm".into(),
        title: "made-up layer".into(),
        source: String::new(),
        note: String::new(),
        preset_t: 2,
        preset_order: Order::DwPw,
        n: N,
        c: C,
        kh: 3,
        kw: 3,
        geometry: ConvGeometry::new(1, 1, 1),
        orders,
        input: None,
        slice: Some(view),
    }
}

/// A made-up forward result on a 40×40 output.
fn made_up_forward() -> ForwardResult {
    let map = |seed| filler(40 * 40, seed).into_iter().map(|v| v as f32).collect();
    ForwardResult {
        layer_id: 0,
        input_id: 0,
        t: 2,
        order: Order::DwPw,
        out_channel: 0,
        maps: OutputMaps { h: 40, w: 40, original: map(1), decoupled: map(2) },
        rel_error: 0.1,
        weight_error: 0.1,
        timings: Timings { original_ms: 1.0, decoupled_ms: 1.0, kernels: String::new(), settled: false },
        terms: None,
    }
}
