//! What the page tells its tests and benchmarks, in one place: `data-*` attributes on `<body>`
//! (when the charts were first drawn, when the page is ready) and the clock they are read with.

/// Milliseconds since navigation (`performance.now()`).
pub fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or(0.0)
}

fn body() -> Option<web_sys::HtmlElement> {
    web_sys::window().and_then(|w| w.document()).and_then(|d| d.body())
}

fn set_body_data(key: &str, value: &str) {
    if let Some(body) = body() {
        let _ = body.set_attribute(&format!("data-{key}"), value);
    }
}

fn body_has(attr: &str) -> bool {
    body().map(|b| b.has_attribute(attr)).unwrap_or(false)
}

/// Bits of the charts drawn at least once: the four layer charts, the feature maps and the
/// output-error curve.
pub const LAYER_CHARTS: u8 = 0b1111;
/// All six charts of the first view.
pub const ALL_CHARTS: u8 = 0b11_1111;

/// Records that the charts in `drawn` (bits) have been drawn at least once: sets
/// `data-main-plots-ms` (time since navigation) once the four layer charts have, and
/// `data-plots-ms` and `data-ready` once all six have. True when the page just became ready.
pub fn charts_drawn(drawn: u8) -> bool {
    if drawn & LAYER_CHARTS == LAYER_CHARTS && !body_has("data-main-plots-ms") {
        set_body_data("main-plots-ms", &format!("{:.0}", now_ms()));
    }
    if drawn == ALL_CHARTS && !body_has("data-ready") {
        set_body_data("plots-ms", &format!("{:.0}", now_ms()));
        set_body_data("ready", "1");
        return true;
    }
    false
}
