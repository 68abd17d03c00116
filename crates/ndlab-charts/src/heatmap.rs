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

    /// The colour of cell (column `i`, row `j`) for the range `±range` (a missing cell is 0).
    fn cell_color(&self, i: usize, j: usize, range: f64) -> RGBColor {
        diverging_color(self.values.get(j * self.w + i).copied().unwrap_or(0.0) as f64, range)
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
    let color = |i: usize, j: usize| map.cell_color(i, j, range);
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
        let mut rgb = vec![0; w * h * 3];
        paint_cells(&mut rgb, w, (0, 0), map, (w, h), color);
        Raster { pos: (x, y), size: (w as u32, h as u32), rgb }
    }
}

/// Paints `map`'s cells, scaled to `w` × `h` pixels, into the RGB buffer `rgb` (rows of `stride`
/// pixels) with their top-left corner at pixel `(ox, oy)`: each pixel takes the colour of the
/// cell whose rectangle covers it in [`draw_heatmap`]'s rectangle path. The rectangle must lie
/// inside the buffer.
fn paint_cells(
    rgb: &mut [u8],
    stride: usize,
    (ox, oy): (usize, usize),
    map: &HeatMap,
    (w, h): (usize, usize),
    color: impl Fn(usize, usize) -> RGBColor,
) {
    // The cell of pixel column px is the largest i with i·w / map.w ≤ px.
    let cell = |p: usize, n: usize, len: usize| ((((p + 1) * n).saturating_sub(1)) / len).min(n - 1);
    let cols: Vec<usize> = (0..w).map(|px| cell(px, map.w, w)).collect();
    // One colour per cell, looked up per pixel (a cell spans many pixels).
    let mut row_colors = Vec::with_capacity(map.w);
    let mut last_j = usize::MAX;
    for py in 0..h {
        let j = cell(py, map.h, h);
        if j != last_j {
            row_colors.clear();
            row_colors.extend((0..map.w).map(|i| color(i, j)));
            last_j = j;
        }
        let start = ((oy + py) * stride + ox) * 3;
        for (px, &i) in rgb[start..start + w * 3].chunks_exact_mut(3).zip(&cols) {
            let c: RGBColor = row_colors[i];
            px.copy_from_slice(&[c.0, c.1, c.2]);
        }
    }
}

/// Heat maps drawn together. Under [`ChartStyle::raster`] they are painted, with their frames and
/// the background between them, into one bitmap drawn with a single `blit_bitmap` (a grid of
/// small filters would otherwise cost a fill style and a rectangle per cell); otherwise each is
/// drawn by [`draw_heatmap`].
#[derive(Default)]
pub(crate) struct Mosaic {
    tiles: Vec<Tile>,
}

/// A heat map, its pixel rectangle `(x, y, w, h)` and its colour range `±range`.
type Tile = (HeatMap, (i32, i32, i32, i32), f64);

impl Mosaic {
    /// Adds `map` in the pixel rectangle `(x, y, w, h)` with colour range `±range`.
    pub(crate) fn push(&mut self, map: HeatMap, rect: (i32, i32, i32, i32), range: f64) {
        self.tiles.push((map, rect, range));
    }

    /// Draws every tile, as one bitmap under [`ChartStyle::raster`].
    pub(crate) fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        style: &ChartStyle,
    ) -> DrawResult {
        if !style.raster {
            for (map, rect, range) in &self.tiles {
                draw_heatmap(area, map, *rect, *range, style)?;
            }
            return Ok(());
        }
        let (aw, ah) = area.dim_in_pixel();
        let (tiles, others): (Vec<&Tile>, Vec<&Tile>) =
            self.tiles.iter().partition(|(m, (x, y, w, h), _)| {
                m.w > 0
                    && m.h > 0
                    && *w > 0
                    && *h > 0
                    && *x >= 0
                    && *y >= 0
                    && x + w < aw as i32
                    && y + h < ah as i32
            });
        // Tiles that do not fit the area (never, at the page's sizes) are drawn one by one.
        for (map, rect, range) in others {
            draw_heatmap(area, map, *rect, *range, style)?;
        }
        let Some(x0) = tiles.iter().map(|t| t.1 .0).min() else { return Ok(()) };
        let y0 = tiles.iter().map(|t| t.1 .1).min().unwrap_or(0);
        // A frame's right and bottom edges lie on x + w and y + h.
        let x1 = tiles.iter().map(|t| t.1 .0 + t.1 .2 + 1).max().unwrap_or(x0);
        let y1 = tiles.iter().map(|t| t.1 .1 + t.1 .3 + 1).max().unwrap_or(y0);
        let (bw, bh) = ((x1 - x0) as usize, (y1 - y0) as usize);
        let bg = style.background;
        let mut rgb: Vec<u8> = [bg.0, bg.1, bg.2].repeat(bw * bh);
        let frame = style.foreground;
        for (map, (x, y, w, h), range) in tiles {
            let (ox, oy) = ((x - x0) as usize, (y - y0) as usize);
            let color = |i: usize, j: usize| map.cell_color(i, j, *range);
            paint_cells(&mut rgb, bw, (ox, oy), map, (*w as usize, *h as usize), color);
            // The frame: the foreground at 40 % over the rectangle's outline, as draw_heatmap strokes it.
            let (w, h) = (*w as usize, *h as usize);
            let mut blend = |px: usize, py: usize| {
                let i = ((oy + py) * bw + ox + px) * 3;
                for (v, f) in rgb[i..i + 3].iter_mut().zip([frame.0, frame.1, frame.2]) {
                    *v = (0.4 * f as f64 + 0.6 * *v as f64).round() as u8;
                }
            };
            for px in 0..=w {
                blend(px, 0);
                blend(px, h);
            }
            for py in 1..h {
                blend(0, py);
                blend(w, py);
            }
        }
        area.draw(&Raster { pos: (x0, y0), size: (bw as u32, bh as u32), rgb }).map_err(err)
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
    draw_heatmap(area, &color_bar_map(range), rect, range, style)?;
    color_bar_labels(area, rect, range, style)
}

/// The cells of a colour bar for `±range` (drawn in its rectangle with range `±range`).
pub(crate) fn color_bar_map(range: f64) -> HeatMap {
    let steps = 32usize;
    let bar: Vec<f32> =
        (0..steps).map(|i| ((2.0 * i as f64 / (steps - 1) as f64 - 1.0) * range) as f32).collect();
    HeatMap::new(steps, 1, bar)
}

/// The end values under a colour bar drawn in `(x, y, w, h)`.
pub(crate) fn color_bar_labels<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y, w, h): (i32, i32, i32, i32),
    range: f64,
    style: &ChartStyle,
) -> DrawResult {
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
