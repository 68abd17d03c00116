//! Heat maps drawn as grids of rectangles, with a diverging colour map over a symmetric range.

use super::{err, ChartStyle, DrawResult};
use plotters::coord::Shift;
use plotters::element::{Drawable, PointCollection};
use plotters::prelude::*;
use plotters_backend::{BackendCoord, DrawingErrorKind};

/// A `w` × `h` grid of values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    /// Columns.
    pub w: usize,
    /// Rows.
    pub h: usize,
    /// `h·w` values, row-major.
    pub values: Vec<f32>,
}

impl HeatMap {
    /// A heat map; `values.len()` must be `w·h` (otherwise the missing cells are drawn as 0).
    pub fn new(w: usize, h: usize, values: Vec<f32>) -> Self {
        HeatMap { w, h, values }
    }

    /// Block-averages an `h` × `w` row-major image down so that neither side exceeds `max_side`.
    pub fn downsampled(values: &[f32], w: usize, h: usize, max_side: usize) -> Self {
        let max_side = max_side.max(1);
        let f = w.max(h).div_ceil(max_side).max(1);
        let (ow, oh) = (w.div_ceil(f), h.div_ceil(f));
        let mut out = vec![0.0f32; ow * oh];
        for (oy, row) in out.chunks_mut(ow.max(1)).enumerate() {
            for (ox, cell) in row.iter_mut().enumerate() {
                let (mut sum, mut cnt) = (0.0f64, 0usize);
                for y in oy * f..((oy + 1) * f).min(h) {
                    for x in ox * f..((ox + 1) * f).min(w) {
                        if let Some(v) = values.get(y * w + x).filter(|v| v.is_finite()) {
                            sum += *v as f64;
                            cnt += 1;
                        }
                    }
                }
                *cell = if cnt > 0 { (sum / cnt as f64) as f32 } else { 0.0 };
            }
        }
        HeatMap { w: ow, h: oh, values: out }
    }

    /// Largest finite |value| (0 if none).
    pub fn max_abs(&self) -> f32 {
        self.values.iter().filter(|v| v.is_finite()).fold(0.0f32, |m, v| m.max(v.abs()))
    }
}

/// Diverging colour map (blue – white – red) for `v` in `[-range, range]`; NaN and a zero range
/// map to white.
pub fn diverging_color(v: f64, range: f64) -> RGBColor {
    let t = if range > 0.0 && v.is_finite() { (v / range).clamp(-1.0, 1.0) } else { 0.0 };
    let (end, a) = if t >= 0.0 { ((178.0, 24.0, 43.0), t) } else { ((33.0, 102.0, 172.0), -t) };
    let mix = |e: f64| (255.0 + (e - 255.0) * a).round().clamp(0.0, 255.0) as u8;
    RGBColor(mix(end.0), mix(end.1), mix(end.2))
}

/// Fewest cells drawn as one bitmap under [`ChartStyle::raster`]: a bitmap costs a fixed
/// `putImageData` + `drawImage` on a canvas, more than a few filled rectangles (a 3 × 3 filter, a
/// colour bar), so small maps stay rectangles.
pub(crate) const RASTER_MIN_CELLS: usize = 64;

/// Draws `map` into the pixel rectangle `(x, y, w, h)` of `area` with a frame, colour range
/// `±range`.
pub(crate) fn draw_heatmap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    map: &HeatMap,
    rect: (i32, i32, i32, i32),
    range: f64,
    style: &ChartStyle,
) -> DrawResult {
    let (x, y, w, h) = rect;
    if map.w == 0 || map.h == 0 || w <= 0 || h <= 0 {
        return Ok(());
    }
    let cell_x = |i: usize| x + (i as i64 * w as i64 / map.w as i64) as i32;
    let cell_y = |j: usize| y + (j as i64 * h as i64 / map.h as i64) as i32;
    let color = |i: usize, j: usize| {
        diverging_color(map.values.get(j * map.w + i).copied().unwrap_or(0.0) as f64, range)
    };
    if style.raster && map.w * map.h > RASTER_MIN_CELLS {
        area.draw(&Raster::of(map, (x, y, w, h), color)).map_err(err)?;
    } else {
        for j in 0..map.h {
            for i in 0..map.w {
                let r = Rectangle::new(
                    [(cell_x(i), cell_y(j)), (cell_x(i + 1), cell_y(j + 1))],
                    color(i, j).filled(),
                );
                area.draw(&r).map_err(err)?;
            }
        }
    }
    let frame = Rectangle::new([(x, y), (x + w, y + h)], style.foreground.mix(0.4).stroke_width(1));
    area.draw(&frame).map_err(err)
}

/// A heat map rendered to RGB pixels at its drawn size (each pixel takes the colour of the cell
/// it falls in, the same cells as the rectangles), drawn with one `blit_bitmap`.
struct Raster {
    pos: (i32, i32),
    size: (u32, u32),
    rgb: Vec<u8>,
}

impl Raster {
    fn of(
        map: &HeatMap,
        (x, y, w, h): (i32, i32, i32, i32),
        color: impl Fn(usize, usize) -> RGBColor,
    ) -> Self {
        let (w, h) = (w.max(1) as usize, h.max(1) as usize);
        // The cell of pixel column px is the largest i with i·w / map.w ≤ px.
        let cell = |p: usize, n: usize, len: usize| ((((p + 1) * n).saturating_sub(1)) / len).min(n - 1);
        let cols: Vec<usize> = (0..w).map(|px| cell(px, map.w, w)).collect();
        // One colour per cell, looked up per pixel (a cell spans many pixels).
        let mut row_colors = Vec::with_capacity(map.w);
        let mut rgb = Vec::with_capacity(w * h * 3);
        let mut last_j = usize::MAX;
        for py in 0..h {
            let j = cell(py, map.h, h);
            if j != last_j {
                row_colors.clear();
                row_colors.extend((0..map.w).map(|i| color(i, j)));
                last_j = j;
            }
            for &i in &cols {
                let c = row_colors[i];
                rgb.extend_from_slice(&[c.0, c.1, c.2]);
            }
        }
        Raster { pos: (x, y), size: (w as u32, h as u32), rgb }
    }
}

impl<'a> PointCollection<'a, (i32, i32)> for &'a Raster {
    type Point = &'a (i32, i32);
    type IntoIter = std::iter::Once<&'a (i32, i32)>;
    fn point_iter(self) -> Self::IntoIter {
        std::iter::once(&self.pos)
    }
}

impl<DB: DrawingBackend> Drawable<DB> for Raster {
    fn draw<I: Iterator<Item = BackendCoord>>(
        &self,
        mut points: I,
        backend: &mut DB,
        _: (u32, u32),
    ) -> Result<(), DrawingErrorKind<DB::ErrorType>> {
        match points.next() {
            Some(pos) => backend.blit_bitmap(pos, self.size, &self.rgb),
            None => Ok(()),
        }
    }
}

/// Draws a label with its top-left corner at `pos`.
pub(crate) fn label<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    pos: (i32, i32),
    scale: f64,
    style: &ChartStyle,
) -> DrawResult {
    area.draw(&Text::new(text.to_string(), pos, style.text(scale))).map_err(err)
}

/// Draws a horizontal colour bar for `±range` with its end values, in `(x, y, w, h)`.
pub(crate) fn color_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rect: (i32, i32, i32, i32),
    range: f64,
    style: &ChartStyle,
) -> DrawResult {
    let (x, y, w, h) = rect;
    let steps = 32usize;
    let bar: Vec<f32> =
        (0..steps).map(|i| ((2.0 * i as f64 / (steps - 1) as f64 - 1.0) * range) as f32).collect();
    draw_heatmap(area, &HeatMap::new(steps, 1, bar), (x, y, w, h), range, style)?;
    let fs = style.font_size as i32;
    label(area, &format!("−{}", fmt_value(range)), (x, y + h + 2), 0.85, style)?;
    let right = fmt_value(range);
    let tw = (right.chars().count() as i32 * fs * 6 / 10).max(fs);
    label(area, &format!("+{right}"), (x + w - tw, y + h + 2), 0.85, style)
}

/// A short value for colour-bar ends.
pub(crate) fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&v.abs()) {
        format!("{v:.2e}")
    } else {
        format!("{v:.3}")
    }
}
