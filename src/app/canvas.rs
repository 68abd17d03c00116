//! Drawing charts on `<canvas>` elements, sharp on HiDPI screens, and exporting them as SVG.
//!
//! The canvas's backing store is sized to CSS size × `devicePixelRatio` and the 2-D context is
//! scaled by the same factor, while the chart code sees the CSS size: lines and text come out
//! at the screen's resolution with the layout of a 1× drawing.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters_backend::{BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind};
use plotters_canvas::CanvasBackend;
use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

/// A canvas backend that reports the CSS size and draws through a context scaled by the DPR.
pub struct HiDpi {
    inner: CanvasBackend,
    size: (u32, u32),
}

/// Error type of the canvas backend.
pub type CanvasErr = DrawingErrorKind<<CanvasBackend as DrawingBackend>::ErrorType>;

impl DrawingBackend for HiDpi {
    type ErrorType = <CanvasBackend as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.size
    }
    fn ensure_prepared(&mut self) -> Result<(), CanvasErr> {
        self.inner.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), CanvasErr> {
        self.inner.present()
    }
    fn draw_pixel(&mut self, p: BackendCoord, c: BackendColor) -> Result<(), CanvasErr> {
        self.inner.draw_pixel(p, c)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        s: &S,
    ) -> Result<(), CanvasErr> {
        self.inner.draw_line(a, b, s)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        s: &S,
        fill: bool,
    ) -> Result<(), CanvasErr> {
        self.inner.draw_rect(a, b, s, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        s: &S,
    ) -> Result<(), CanvasErr> {
        self.inner.draw_path(path, s)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        c: BackendCoord,
        r: u32,
        s: &S,
        fill: bool,
    ) -> Result<(), CanvasErr> {
        self.inner.draw_circle(c, r, s, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        s: &S,
    ) -> Result<(), CanvasErr> {
        self.inner.fill_polygon(vert, s)
    }
    fn draw_text<T: BackendTextStyle>(
        &mut self,
        text: &str,
        s: &T,
        pos: BackendCoord,
    ) -> Result<(), CanvasErr> {
        self.inner.draw_text(text, s, pos)
    }
    fn estimate_text_size<T: BackendTextStyle>(&self, text: &str, s: &T) -> Result<(u32, u32), CanvasErr> {
        self.inner.estimate_text_size(text, s)
    }
}

/// The device pixel ratio (at least 1).
pub fn dpr() -> f64 {
    web_sys::window().map(|w| w.device_pixel_ratio()).unwrap_or(1.0).max(1.0)
}

/// Prepares `canvas` for drawing at its CSS size: backing store × DPR, scaled context.
/// Returns None if the canvas has no 2-D context or no size yet.
pub fn hidpi(canvas: &HtmlCanvasElement) -> Option<HiDpi> {
    let css_w = canvas.client_width().max(1) as u32;
    let css_h = canvas.client_height().max(1) as u32;
    let ratio = dpr();
    let (pw, ph) = ((css_w as f64 * ratio).round() as u32, (css_h as f64 * ratio).round() as u32);
    if canvas.width() != pw {
        canvas.set_width(pw);
    }
    if canvas.height() != ph {
        canvas.set_height(ph);
    }
    let ctx: CanvasRenderingContext2d = canvas.get_context("2d").ok()??.dyn_into().ok()?;
    ctx.set_transform(ratio, 0.0, 0.0, ratio, 0.0, 0.0).ok()?;
    let inner = CanvasBackend::with_canvas_object(canvas.clone())?;
    Some(HiDpi { inner, size: (css_w, css_h) })
}

/// Draws `chart` on `canvas`; errors are returned as text.
pub fn draw_on<F>(canvas: &HtmlCanvasElement, chart: F) -> Result<(), String>
where
    F: FnOnce(&DrawingArea<HiDpi, Shift>) -> Result<(), String>,
{
    let backend = hidpi(canvas).ok_or("this browser gives no 2-D canvas")?;
    let area = backend.into_drawing_area();
    area.fill(&WHITE).map_err(|e| e.to_string())?;
    chart(&area)?;
    area.present().map_err(|e| e.to_string())
}

/// Draws `chart` on the transparent overlay `canvas` (cleared first, not filled): the marks
/// layer of a chart whose base is drawn on the canvas beneath.
pub fn draw_overlay_on<F>(canvas: &HtmlCanvasElement, chart: F) -> Result<(), String>
where
    F: FnOnce(&DrawingArea<HiDpi, Shift>) -> Result<(), String>,
{
    let backend = hidpi(canvas).ok_or("this browser gives no 2-D canvas")?;
    let ctx: CanvasRenderingContext2d = canvas
        .get_context("2d")
        .ok()
        .flatten()
        .and_then(|c| c.dyn_into().ok())
        .ok_or("this browser gives no 2-D canvas")?;
    let (w, h) = backend.size;
    ctx.clear_rect(0.0, 0.0, w as f64, h as f64);
    let area = backend.into_drawing_area();
    chart(&area)?;
    area.present().map_err(|e| e.to_string())
}

/// Draws `chart` into an SVG string of `w` × `h` pixels.
pub fn to_svg<F>(w: u32, h: u32, chart: F) -> Result<String, String>
where
    F: FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), String>,
{
    let mut text = String::new();
    {
        let area = SVGBackend::with_string(&mut text, (w, h)).into_drawing_area();
        area.fill(&WHITE).map_err(|e| e.to_string())?;
        chart(&area)?;
        area.present().map_err(|e| e.to_string())?;
    }
    Ok(text)
}

/// Offers `text` as a download named `name` (an SVG file).
pub fn download_svg(name: &str, text: &str) -> Result<(), String> {
    let parts = js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(text));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type("image/svg+xml");
    let blob =
        web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts).map_err(|e| format!("{e:?}"))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| format!("{e:?}"))?;
    let doc = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let a = doc.create_element("a").map_err(|e| format!("{e:?}"))?;
    a.set_attribute("href", &url).map_err(|e| format!("{e:?}"))?;
    a.set_attribute("download", name).map_err(|e| format!("{e:?}"))?;
    a.dyn_ref::<web_sys::HtmlElement>().ok_or("no anchor")?.click();
    let _ = web_sys::Url::revoke_object_url(&url);
    Ok(())
}
