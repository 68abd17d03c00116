//! The shared line-chart panel behind the spectrum, error and cost charts (not public).

use super::{err, ChartLayer, ChartStyle, DrawResult};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One polyline with a legend entry. Non-finite points are dropped before drawing.
pub(crate) struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    /// Draw a dot at every point (tells apart lines of the same hue).
    pub dots: bool,
}

/// A vertical marker line across the plot with a text label at its top.
pub(crate) struct VMark {
    pub x: f64,
    pub label: String,
    pub color: RGBColor,
    /// Label row from the top (0 = topmost), so several labels do not overlap.
    pub row: usize,
    /// Put the label left of the line (for lines near the right edge).
    pub label_left: bool,
    /// It follows the current T (drawn in [`ChartLayer::Marks`], not in the base).
    pub moves: bool,
    /// Its label is in a legend (a [`draw_legend_strip`]): no text next to the line.
    pub in_legend: bool,
}

/// A horizontal reference line with a label at its right end.
pub(crate) struct HMark {
    pub y: f64,
    pub label: String,
    pub color: RGBColor,
}

/// A shaded band between `lo` and `hi` at each x, with a legend entry.
pub(crate) struct Band {
    pub label: String,
    pub points: Vec<(f64, f64, f64)>,
    pub color: RGBColor,
    pub opacity: f64,
}

/// Everything one panel shows.
pub(crate) struct Panel {
    pub caption: String,
    /// The caption names the current T (drawn with the marks, not in the base).
    pub caption_moves: bool,
    pub x_label: String,
    pub y_label: String,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
    pub bands: Vec<Band>,
    pub lines: Vec<Line>,
    pub vmarks: Vec<VMark>,
    pub hmarks: Vec<HMark>,
    /// Where the in-plot legend goes; None for none (e.g. a [`draw_legend_strip`] instead).
    pub legend: Option<SeriesLabelPosition>,
}

/// Finite (x, y) points only.
fn finite(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect()
}

/// A finite, non-empty range covering `values` (padded by 5 %), or `fallback`.
pub(crate) fn value_range(values: impl IntoIterator<Item = f64>, fallback: (f64, f64)) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.into_iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return fallback;
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let pad = hi.abs().max(1.0) * 0.5;
        return (lo - pad, hi + pad);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// x range for T = 1..=max_t with half a step of margin.
pub(crate) fn t_range(max_t: usize) -> (f64, f64) {
    (0.5, max_t.max(1) as f64 + 0.5)
}

/// Compact number format for axis labels (1.2k, 3.4M, 5.6G).
pub(crate) fn short_number(v: f64) -> String {
    let a = v.abs();
    let (d, s) = if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / d;
    if s.is_empty() && a < 10.0 && a != a.trunc() {
        format!("{v:.2}")
    } else if x.abs() >= 100.0 || x == x.trunc() {
        format!("{x:.0}{s}")
    } else {
        format!("{x:.1}{s}")
    }
}

/// Font scale for a caption: 1.2× the base size, shrunk (down to 0.8×) so that the caption fits
/// the panel's width (about 0.55 em per character).
pub(crate) fn caption_scale(caption: &str, width_px: u32, style: &ChartStyle) -> f64 {
    let chars = caption.chars().count().max(1) as f64;
    let fit = width_px as f64 / (chars * 0.55 * style.font_size.max(1.0));
    fit.clamp(0.8, 1.2)
}

/// Draws one panel into `area`: the layer `style.layer` of it (see [`ChartLayer`]).
pub(crate) fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    style: &ChartStyle,
) -> DrawResult {
    let (x0, x1) = sane(panel.x_range);
    let (y0, y1) = sane(panel.y_range);
    let layer = style.layer;
    // Both layers reserve the caption's space; each shows it only if it belongs to that layer.
    let caption_shown = match layer {
        ChartLayer::All => true,
        ChartLayer::Base => !panel.caption_moves,
        ChartLayer::Marks => panel.caption_moves,
    };
    let invisible = style.background.mix(0.0);
    let caption_style = style.text(caption_scale(&panel.caption, area.dim_in_pixel().0, style));
    let caption_style = if caption_shown { caption_style } else { caption_style.color(&invisible) };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.caption, caption_style)
        .margin(8)
        .x_label_area_size(style.font_size * 3.0)
        .y_label_area_size(style.font_size * 4.5)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    if layer != ChartLayer::Marks {
        draw_base(&mut chart, panel, (x0, x1), style)?;
    }
    for v in panel.vmarks.iter().filter(|v| match layer {
        ChartLayer::All => true,
        ChartLayer::Base => !v.moves,
        ChartLayer::Marks => v.moves,
    }) {
        draw_vmark(&mut chart, v, (x0, x1), (y0, y1), style)?;
    }
    let has_legend =
        panel.lines.iter().any(|l| !l.label.is_empty()) || panel.bands.iter().any(|b| !b.label.is_empty());
    if let (true, false, Some(position)) = (has_legend, layer == ChartLayer::Marks, panel.legend.as_ref()) {
        chart
            .configure_series_labels()
            .position(position.clone())
            .label_font(style.text(0.9))
            .background_style(style.background.mix(0.85))
            .border_style(style.foreground.mix(0.3))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// Mesh, bands, lines and horizontal marks: the part of a panel that does not follow T.
fn draw_base<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    panel: &Panel,
    (x0, x1): (f64, f64),
    style: &ChartStyle,
) -> DrawResult {
    let int_x = x1 - x0 < 80.0;
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .x_labels(((x1 - x0).round() as usize).clamp(2, 12))
        .x_label_formatter(&|x| if int_x { format!("{x:.0}") } else { short_number(*x) })
        .y_label_formatter(&|y| short_number(*y))
        .label_style(style.text(0.9))
        .axis_desc_style(style.text(1.0))
        .axis_style(style.foreground)
        .light_line_style(style.background.mix(0.0))
        .bold_line_style(style.foreground.mix(0.12))
        .draw()
        .map_err(err)?;
    for band in &panel.bands {
        draw_band(chart, band)?;
    }
    for line in &panel.lines {
        draw_line(chart, line, style)?;
    }
    for h in &panel.hmarks {
        draw_hmark(chart, h, (x0, x1), style)?;
    }
    Ok(())
}

type Chart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A valid, non-empty range.
fn sane((a, b): (f64, f64)) -> (f64, f64) {
    if !a.is_finite() || !b.is_finite() {
        return (0.0, 1.0);
    }
    if b > a {
        (a, b)
    } else {
        (a - 0.5, a + 0.5)
    }
}

fn draw_band<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>, band: &Band) -> DrawResult {
    let pts: Vec<_> = band
        .points
        .iter()
        .copied()
        .filter(|(x, l, h)| x.is_finite() && l.is_finite() && h.is_finite())
        .collect();
    if pts.len() < 2 {
        return Ok(());
    }
    let mut poly: Vec<(f64, f64)> = pts.iter().map(|&(x, _, h)| (x, h)).collect();
    poly.extend(pts.iter().rev().map(|&(x, l, _)| (x, l)));
    let color = band.color.mix(band.opacity);
    let anno = chart.draw_series(std::iter::once(Polygon::new(poly, color.filled()))).map_err(err)?;
    if !band.label.is_empty() {
        anno.label(band.label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled()));
    }
    Ok(())
}

fn draw_line<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    line: &Line,
    style: &ChartStyle,
) -> DrawResult {
    let pts = finite(&line.points);
    if pts.is_empty() {
        return Ok(());
    }
    let color = line.color;
    let shape = color.stroke_width(style.stroke);
    let anno = chart.draw_series(LineSeries::new(pts.clone(), shape)).map_err(err)?;
    if !line.label.is_empty() {
        let dots = line.dots;
        anno.label(line.label.as_str()).legend(move |(x, y)| {
            let bar = Rectangle::new([(x, y - 2), (x + 16, y + 2)], color.filled());
            let dot = Circle::new((x + 8, y), if dots { 4 } else { 0 }, color.filled());
            EmptyElement::at((0, 0)) + bar + dot
        });
    }
    if line.dots {
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
    }
    Ok(())
}

fn draw_vmark<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    v: &VMark,
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    style: &ChartStyle,
) -> DrawResult {
    if !v.x.is_finite() {
        return Ok(());
    }
    let shape = v.color.stroke_width(style.stroke);
    chart.draw_series(std::iter::once(PathElement::new(vec![(v.x, y0), (v.x, y1)], shape))).map_err(err)?;
    if v.in_legend {
        return Ok(());
    }
    let h = if v.label_left { HPos::Right } else { HPos::Left };
    let text = style.text(0.95).color(&v.color).pos(Pos::new(h, VPos::Top));
    let top = y1 - (y1 - y0) * (0.02 + 0.07 * v.row as f64);
    let x = v.x + (x1 - x0) * if v.label_left { -0.01 } else { 0.01 };
    chart.draw_series(std::iter::once(Text::new(v.label.clone(), (x, top), text))).map_err(err)?;
    Ok(())
}

fn draw_hmark<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    h: &HMark,
    (x0, x1): (f64, f64),
    style: &ChartStyle,
) -> DrawResult {
    if !h.y.is_finite() {
        return Ok(());
    }
    let shape = h.color.stroke_width(1);
    chart.draw_series(std::iter::once(PathElement::new(vec![(x0, h.y), (x1, h.y)], shape))).map_err(err)?;
    let text = style.text(0.9).color(&h.color).pos(Pos::new(HPos::Left, VPos::Bottom));
    let x = x0 + (x1 - x0) * 0.01;
    chart.draw_series(std::iter::once(Text::new(h.label.clone(), (x, h.y), text))).map_err(err)?;
    Ok(())
}

/// One entry of a legend strip.
pub(crate) struct LegendItem {
    pub label: String,
    pub color: RGBColor,
    /// A dot on the swatch (for lines drawn with dots).
    pub dots: bool,
    /// A vertical swatch (for vertical marks).
    pub vertical: bool,
    /// A shaded block drawn at this opacity (for bands); 0 for none.
    pub band: f64,
}

impl LegendItem {
    /// The entry of a line.
    pub fn line(l: &Line) -> Self {
        LegendItem { label: l.label.clone(), color: l.color, dots: l.dots, vertical: false, band: 0.0 }
    }

    /// The entry of a band.
    pub fn band(b: &Band) -> Self {
        LegendItem { label: b.label.clone(), color: b.color, dots: false, vertical: false, band: b.opacity }
    }

    /// Width in pixels: swatch, gap, text at about 0.62 em per character (generous: capitals and
    /// arrows are wide), spacing.
    fn width(&self, style: &ChartStyle) -> i32 {
        (40.0 + self.label.chars().count() as f64 * 0.62 * style.font_size * 0.9).ceil() as i32
    }
}

/// Rows of item indices that fit `width` pixels, in order.
fn legend_rows(items: &[LegendItem], width: i32, style: &ChartStyle) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = vec![];
    let mut used = width;
    for (i, item) in items.iter().enumerate() {
        let w = item.width(style);
        match rows.last_mut() {
            Some(row) if used + w <= width => row.push(i),
            _ => {
                rows.push(vec![i]);
                used = 8;
            }
        }
        used += w;
    }
    rows
}

/// Splits a strip off the bottom of `area` for a legend of `items` below the plots (so that it
/// never covers a curve), draws the legend there (not in [`ChartLayer::Marks`]: both layers
/// split alike) and returns the area above it.
pub(crate) fn draw_legend_strip<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    items: &[LegendItem],
    style: &ChartStyle,
) -> std::result::Result<DrawingArea<DB, Shift>, String> {
    let (w, h) = area.dim_in_pixel();
    let rows = legend_rows(items, w as i32, style);
    let line_h = (style.font_size * 1.5).ceil() as i32;
    let strip = (rows.len() as i32 * line_h + 6).min(h as i32 / 2);
    let (top, bottom) = area.split_vertically(h as i32 - strip);
    if style.layer == ChartLayer::Marks {
        return Ok(top);
    }
    for (r, row) in rows.iter().enumerate() {
        let total: i32 = row.iter().filter_map(|&i| items.get(i)).map(|it| it.width(style)).sum();
        let mut x = ((w as i32 - total) / 2).max(4);
        let y = r as i32 * line_h + line_h / 2;
        for item in row.iter().filter_map(|&i| items.get(i)) {
            let c = item.color.filled();
            if item.band > 0.0 {
                let fill = item.color.mix(item.band).filled();
                bottom.draw(&Rectangle::new([(x, y - 5), (x + 20, y + 5)], fill)).map_err(err)?;
            } else if item.vertical {
                bottom.draw(&Rectangle::new([(x + 8, y - 7), (x + 10, y + 7)], c)).map_err(err)?;
            } else {
                bottom.draw(&Rectangle::new([(x, y - 1), (x + 20, y + 2)], c)).map_err(err)?;
                if item.dots {
                    bottom.draw(&Circle::new((x + 10, y), 4, c)).map_err(err)?;
                }
            }
            let text = style.text(0.9).pos(Pos::new(HPos::Left, VPos::Center));
            bottom.draw(&Text::new(item.label.clone(), (x + 26, y), text)).map_err(err)?;
            x += item.width(style);
        }
    }
    Ok(top)
}
