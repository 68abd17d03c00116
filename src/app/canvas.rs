//! Drawing charts on `<canvas>` elements, sharp on HiDPI screens, and exporting them as SVG.
//!
//! The canvas's backing store is sized to CSS size × `devicePixelRatio` and the 2-D context is
//! scaled by the same factor, while the chart code sees the CSS size: lines and text come out
//! at the screen's resolution with the layout of a 1× drawing. [`Canvases`] holds what the
//! page's canvases share: their CSS sizes (kept by a `ResizeObserver`), the text measurer, and
//! the queue of chart drawings.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind, FontTransform,
};
use plotters_canvas::CanvasBackend;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use wasm_bindgen::prelude::Closure;
use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement};

/// A canvas backend that reports the CSS size and draws through a context scaled by the DPR.
pub struct HiDpi {
    inner: CanvasBackend,
    size: (u32, u32),
    ctx: CanvasRenderingContext2d,
    /// The fill colour last set here (colour, alpha bits): heat-map cells and labels come in
    /// runs, and plotters-canvas would format and set it again for each.
    fill: Option<((u8, u8, u8), u64)>,
    /// The text font, baseline and alignment last set by [`HiDpi::draw_text`].
    text: (Option<String>, Option<&'static str>, Option<&'static str>),
    /// Device pixels per CSS pixel (the context's scale).
    ratio: f64,
    /// Measures text for the chart layout.
    measure: Rc<TextMeasure>,
}

impl HiDpi {
    /// Sets the fill colour unless it is the one set last.
    fn set_fill(&mut self, c: BackendColor) {
        let key = (c.rgb, c.alpha.to_bits());
        if self.fill != Some(key) {
            let css = if c.alpha == 1.0 {
                hex(c.rgb)
            } else {
                format!("rgba({},{},{},{})", c.rgb.0, c.rgb.1, c.rgb.2, c.alpha)
            };
            self.ctx.set_fill_style_str(&css);
            self.fill = Some(key);
        }
    }
}

/// `#rrggbb` for an opaque colour (cheaper to build and for the browser to parse than the
/// `rgba(r,g,b,1)` that plotters-canvas formats, float included, for every rectangle).
fn hex(rgb: (u8, u8, u8)) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(7);
    s.push('#');
    for v in [rgb.0, rgb.1, rgb.2] {
        s.push(D[(v >> 4) as usize] as char);
        s.push(D[(v & 15) as usize] as char);
    }
    s
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
        self.fill = None;
        self.inner.draw_pixel(p, c)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        s: &S,
    ) -> Result<(), CanvasErr> {
        self.fill = None;
        self.inner.draw_line(a, b, s)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        a: BackendCoord,
        b: BackendCoord,
        s: &S,
        fill: bool,
    ) -> Result<(), CanvasErr> {
        let color = s.color();
        if !fill || color.alpha == 0.0 {
            // plotters-canvas sets its own styles: forget the cached fill.
            self.fill = None;
            return self.inner.draw_rect(a, b, s, fill);
        }
        self.set_fill(color);
        let (w, h) = (b.0 - a.0, b.1 - a.1);
        self.ctx.fill_rect(a.0 as f64, a.1 as f64, w as f64, h as f64);
        Ok(())
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        s: &S,
    ) -> Result<(), CanvasErr> {
        self.fill = None;
        self.inner.draw_path(path, s)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        c: BackendCoord,
        r: u32,
        s: &S,
        fill: bool,
    ) -> Result<(), CanvasErr> {
        self.fill = None;
        self.inner.draw_circle(c, r, s, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        s: &S,
    ) -> Result<(), CanvasErr> {
        self.fill = None;
        self.inner.fill_polygon(vert, s)
    }
    /// As plotters-canvas draws it, setting only the styles that changed since the last label
    /// (font strings are parsed by the browser on every set). Rotated text goes to plotters-canvas,
    /// inside its own save/restore, which leaves the cached styles as they were.
    fn draw_text<T: BackendTextStyle>(
        &mut self,
        text: &str,
        s: &T,
        pos: BackendCoord,
    ) -> Result<(), CanvasErr> {
        let color = s.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        if !matches!(s.transform(), FontTransform::None) {
            return self.inner.draw_text(text, s, pos);
        }
        let anchor = s.anchor();
        let baseline = match anchor.v_pos {
            VPos::Top => "top",
            VPos::Center => "middle",
            VPos::Bottom => "bottom",
        };
        let align = match anchor.h_pos {
            HPos::Left => "start",
            HPos::Right => "end",
            HPos::Center => "center",
        };
        if self.text.1 != Some(baseline) {
            self.ctx.set_text_baseline(baseline);
            self.text.1 = Some(baseline);
        }
        if self.text.2 != Some(align) {
            self.ctx.set_text_align(align);
            self.text.2 = Some(align);
        }
        self.set_fill(color);
        let font = format!("{} {}px {}", s.style().as_str(), s.size(), s.family().as_str());
        if self.text.0.as_deref() != Some(font.as_str()) {
            self.ctx.set_font(&font);
            self.text.0 = Some(font);
        }
        self.ctx
            .fill_text(text, pos.0 as f64, pos.1 as f64)
            .map_err(|e| DrawingErrorKind::FontError(format!("drawing text: {e:?}").into()))
    }
    /// The pixels put straight onto the canvas at device resolution (`putImageData`, which the
    /// context's transform does not apply to): each device pixel takes the bitmap pixel under its
    /// centre (nearest neighbour, as the heat maps' cells are blocks). Drawing them through a
    /// scratch canvas instead cost 0.6–0.8 ms per bitmap whatever its size (micro-benchmark): the
    /// browser copies the whole scratch canvas on every `drawImage` from it that follows a write.
    fn blit_bitmap(&mut self, pos: BackendCoord, (w, h): (u32, u32), src: &[u8]) -> Result<(), CanvasErr> {
        // (plotters-canvas's error type cannot be built outside it: the error travels as text.)
        let fail =
            |e: wasm_bindgen::JsValue| DrawingErrorKind::FontError(format!("drawing a bitmap: {e:?}").into());
        if src.len() != (w as usize) * (h as usize) * 3 || w == 0 || h == 0 {
            return Ok(());
        }
        let r = self.ratio;
        let device = |v: i32| (v as f64 * r).round() as i64;
        let (x0, y0) = (device(pos.0), device(pos.1));
        let (dw, dh) = (
            (device(pos.0 + w as i32) - x0).max(1) as usize,
            (device(pos.1 + h as i32) - y0).max(1) as usize,
        );
        let (w, h) = (w as usize, h as usize);
        // The source column of each device column (the identity at a ratio of 1).
        let source = |d: usize, n: usize, dn: usize| {
            if n == dn {
                d
            } else {
                (((d as f64 + 0.5) * n as f64 / dn as f64) as usize).min(n - 1)
            }
        };
        let cols: Vec<usize> = (0..dw).map(|d| source(d, w, dw)).collect();
        let mut rgba = vec![255u8; dw * dh * 4];
        for (py, row) in rgba.chunks_exact_mut(dw * 4).enumerate() {
            let line = &src[source(py, h, dh) * w * 3..][..w * 3];
            for (px, &c) in row.chunks_exact_mut(4).zip(&cols) {
                px[..3].copy_from_slice(&line[c * 3..c * 3 + 3]);
            }
        }
        let data = web_sys::ImageData::new_with_u8_clamped_array_and_sh(
            wasm_bindgen::Clamped(&rgba),
            dw as u32,
            dh as u32,
        )
        .map_err(fail)?;
        self.ctx.put_image_data(&data, x0 as f64, y0 as f64).map_err(fail)
    }
    fn estimate_text_size<T: BackendTextStyle>(&self, text: &str, s: &T) -> Result<(u32, u32), CanvasErr> {
        let font = format!("{} {}px {}", s.style().as_str(), s.size(), s.family().as_str());
        match self.measure.size(&font, text) {
            Some(size) => Ok(size),
            None => self.inner.estimate_text_size(text, s),
        }
    }
}

/// Measures text with `measureText` on a canvas outside the document (plotters' own estimate
/// inserts a `<span>` into the page and reads its size, which lays out the whole page again for
/// every label of every chart), remembering the sizes: charts measure the same labels on every
/// redraw. The height is the font's ascent + descent, as a line box of the text would be.
struct TextMeasure {
    ctx: Option<CanvasRenderingContext2d>,
    sizes: RefCell<HashMap<(String, String), (u32, u32)>>,
}

impl TextMeasure {
    fn new() -> Self {
        let ctx = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.create_element("canvas").ok())
            .and_then(|c| c.dyn_into::<HtmlCanvasElement>().ok())
            .and_then(|c| c.get_context("2d").ok().flatten())
            .and_then(|c| c.dyn_into().ok());
        TextMeasure { ctx, sizes: RefCell::new(HashMap::new()) }
    }

    /// Width and height of `text` in the CSS `font`.
    fn size(&self, font: &str, text: &str) -> Option<(u32, u32)> {
        let key = (font.to_string(), text.to_string());
        if let Some(size) = self.sizes.borrow().get(&key).copied() {
            return Some(size);
        }
        let ctx = self.ctx.as_ref()?;
        ctx.set_font(font);
        let m = ctx.measure_text(text).ok()?;
        let h = m.font_bounding_box_ascent() + m.font_bounding_box_descent();
        let size = (h.is_finite() && h > 0.0).then(|| (m.width().ceil().max(0.0) as u32, h.ceil() as u32))?;
        let mut sizes = self.sizes.borrow_mut();
        // Bounded: labels are few, but numbers change with the data.
        if sizes.len() > 4096 {
            sizes.clear();
        }
        sizes.insert(key, size);
        Some(size)
    }
}

/// The device pixel ratio (at least 1).
pub fn dpr() -> f64 {
    web_sys::window().map(|w| w.device_pixel_ratio()).unwrap_or(1.0).max(1.0)
}

/// A chart's drawing, to run later.
pub type DrawJob = Box<dyn FnOnce()>;

/// Time a task of queued drawings may take before the rest waits for the next task (ms). A
/// cold first view draws a chart in 10–35 ms: most of a new layer's charts share a task or two,
/// instead of paying a frame (the canvases' hand-over to the compositor, 10–25 ms each here)
/// between every two of them, and no task comes near the 100 ms an input may wait.
const DRAW_BUDGET_MS: f64 = 40.0;

struct Shared {
    measure: Rc<TextMeasure>,
    /// CSS sizes of the canvases drawn so far (see [`Canvases::css_size`]).
    sizes: RefCell<Vec<(HtmlCanvasElement, (u32, u32))>>,
    /// The observer that keeps `sizes` (created on first use).
    observer: RefCell<Option<web_sys::ResizeObserver>>,
    /// Called after a canvas changed size (the app redraws its charts).
    on_resize: RefCell<Option<Box<dyn Fn()>>>,
    /// Chart drawings waiting for their own task (at most one per chart key), in order.
    queue: RefCell<Vec<(&'static str, DrawJob)>>,
}

/// What the page's canvases share (cheap to clone).
#[derive(Clone)]
pub struct Canvases(Rc<Shared>);

impl Canvases {
    pub fn new() -> Self {
        Canvases(Rc::new(Shared {
            measure: Rc::new(TextMeasure::new()),
            sizes: RefCell::new(Vec::new()),
            observer: RefCell::new(None),
            on_resize: RefCell::new(None),
            queue: RefCell::new(Vec::new()),
        }))
    }

    /// Sets what to do when a canvas drawn before changes size (window resize, a scroll bar
    /// appearing, the layout reflowing).
    pub fn on_resize(&self, f: impl Fn() + 'static) {
        *self.0.on_resize.borrow_mut() = Some(Box::new(f));
    }

    /// The CSS size of `canvas` (at least 1 × 1). Measured once (which may lay the page out),
    /// then kept up to date by a `ResizeObserver`: reading `clientWidth` on every redraw would
    /// force the browser to lay out the whole page again each time a setting changes the text
    /// around it.
    pub fn css_size(&self, canvas: &HtmlCanvasElement) -> (u32, u32) {
        if let Some(size) = self.0.sizes.borrow().iter().find(|(c, _)| c == canvas).map(|e| e.1) {
            return size;
        }
        let size = (canvas.client_width().max(1) as u32, canvas.client_height().max(1) as u32);
        self.0.sizes.borrow_mut().push((canvas.clone(), size));
        let mut o = self.0.observer.borrow_mut();
        if o.is_none() {
            let weak = Rc::downgrade(&self.0);
            let cb = Closure::<dyn FnMut(js_sys::Array)>::new(move |entries: js_sys::Array| {
                if let Some(shared) = weak.upgrade() {
                    Canvases(shared).resized(entries);
                }
            });
            *o = web_sys::ResizeObserver::new(cb.as_ref().unchecked_ref()).ok();
            cb.forget();
        }
        if let Some(obs) = o.as_ref() {
            obs.observe(canvas);
        }
        size
    }

    /// The observer's callback: records the new sizes; if any changed, calls the app's hook.
    fn resized(&self, entries: js_sys::Array) {
        let mut changed = false;
        for entry in entries.iter() {
            let Ok(entry) = entry.dyn_into::<web_sys::ResizeObserverEntry>() else { continue };
            let Ok(canvas) = entry.target().dyn_into::<HtmlCanvasElement>() else { continue };
            let rect = entry.content_rect();
            let size = ((rect.width().round() as u32).max(1), (rect.height().round() as u32).max(1));
            for (c, old) in self.0.sizes.borrow_mut().iter_mut() {
                if *c == canvas && *old != size {
                    *old = size;
                    changed = true;
                }
            }
        }
        if changed {
            if let Some(f) = self.0.on_resize.borrow().as_ref() {
                f()
            }
        }
    }

    /// Prepares `canvas` for drawing at its CSS size: backing store × DPR, scaled context.
    /// Returns None if the canvas has no 2-D context or no size yet.
    fn hidpi(&self, canvas: &HtmlCanvasElement) -> Option<HiDpi> {
        self.hidpi_at(canvas, self.css_size(canvas))
    }

    /// [`Canvases::hidpi`] at a given CSS size (a canvas outside the document has none of its own).
    fn hidpi_at(&self, canvas: &HtmlCanvasElement, (css_w, css_h): (u32, u32)) -> Option<HiDpi> {
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
        let measure = self.0.measure.clone();
        Some(HiDpi { inner, size: (css_w, css_h), ctx, fill: None, text: (None, None, None), ratio, measure })
    }

    /// Draws `chart` on `canvas`; errors are returned as text.
    pub fn draw_on<F>(&self, canvas: &HtmlCanvasElement, chart: F) -> Result<(), String>
    where
        F: FnOnce(&DrawingArea<HiDpi, Shift>) -> Result<(), String>,
    {
        let backend = self.hidpi(canvas).ok_or("this browser gives no 2-D canvas")?;
        draw_filled(backend, chart)
    }

    /// Draws `chart` on `canvas` (e.g. one outside the document) at the CSS size `size`.
    pub fn draw_sized<F>(&self, canvas: &HtmlCanvasElement, size: (u32, u32), chart: F) -> Result<(), String>
    where
        F: FnOnce(&DrawingArea<HiDpi, Shift>) -> Result<(), String>,
    {
        let backend = self.hidpi_at(canvas, size).ok_or("this browser gives no 2-D canvas")?;
        draw_filled(backend, chart)
    }

    /// Draws `chart` on the transparent overlay `canvas` (cleared first, not filled): the marks
    /// layer of a chart whose base is drawn on the canvas beneath.
    pub fn draw_overlay_on<F>(&self, canvas: &HtmlCanvasElement, chart: F) -> Result<(), String>
    where
        F: FnOnce(&DrawingArea<HiDpi, Shift>) -> Result<(), String>,
    {
        let backend = self.hidpi(canvas).ok_or("this browser gives no 2-D canvas")?;
        let (w, h) = backend.size;
        backend.ctx.clear_rect(0.0, 0.0, w as f64, h as f64);
        let area = backend.into_drawing_area();
        chart(&area)?;
        area.present().map_err(|e| e.to_string())
    }

    /// Queues `job` (a chart's full drawing), replacing a job of the same chart still waiting,
    /// and makes sure a task will run the queue (a few jobs per task, see
    /// [`Canvases::run_queued`]; input events get in between).
    pub fn queue_draw(&self, chart: &'static str, job: DrawJob) {
        let first = {
            let mut q = self.0.queue.borrow_mut();
            let first = q.is_empty();
            match q.iter_mut().find(|(c, _)| *c == chart) {
                Some(entry) => entry.1 = job,
                None => q.push((chart, job)),
            }
            first
        };
        if first {
            self.run_later();
        }
    }

    fn run_later(&self) {
        let this = self.clone();
        leptos::prelude::set_timeout(move || this.run_queued(), std::time::Duration::ZERO);
    }

    /// Runs queued drawings, oldest first, until [`DRAW_BUDGET_MS`] have passed; schedules the
    /// rest in a new task.
    fn run_queued(&self) {
        let start = super::hooks::now_ms();
        loop {
            let job = {
                let mut q = self.0.queue.borrow_mut();
                (!q.is_empty()).then(|| q.remove(0).1)
            };
            let Some(job) = job else { return };
            job();
            if super::hooks::now_ms() - start >= DRAW_BUDGET_MS {
                break;
            }
        }
        if !self.0.queue.borrow().is_empty() {
            self.run_later();
        }
    }
}

fn draw_filled<F>(backend: HiDpi, chart: F) -> Result<(), String>
where
    F: FnOnce(&DrawingArea<HiDpi, Shift>) -> Result<(), String>,
{
    let area = backend.into_drawing_area();
    area.fill(&WHITE).map_err(|e| e.to_string())?;
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
    download(name, &js_sys::Array::of1(&wasm_bindgen::JsValue::from_str(text)), "image/svg+xml")
}

/// Offers a Blob made of `parts` (strings or typed arrays) as a download named `name`.
pub fn download(name: &str, parts: &js_sys::Array, mime: &str) -> Result<(), String> {
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let blob =
        web_sys::Blob::new_with_u8_array_sequence_and_options(parts, &opts).map_err(|e| format!("{e:?}"))?;
    let url = web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| format!("{e:?}"))?;
    let doc = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let a = doc.create_element("a").map_err(|e| format!("{e:?}"))?;
    a.set_attribute("href", &url).map_err(|e| format!("{e:?}"))?;
    a.set_attribute("download", name).map_err(|e| format!("{e:?}"))?;
    a.dyn_ref::<web_sys::HtmlElement>().ok_or("no anchor")?.click();
    let _ = web_sys::Url::revoke_object_url(&url);
    Ok(())
}
