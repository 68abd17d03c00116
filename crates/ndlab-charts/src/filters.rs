//! Filters of one slice: original, reconstructed (T terms) and difference K×K filters, and the
//! depthwise filters and pointwise weights that make them.

use super::heatmap::{color_bar_labels, color_bar_map, fmt_value, label, HeatMap, Mosaic};
use super::{clear, ChartStyle, DrawResult};
use ndlab_core::decouple::Decomposition;
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{Kernel, Order};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Most filters shown per grid.
pub const MAX_FILTERS: usize = 16;

/// Input of [`draw_filters`]. Rows are the filters of the slice's matrix: DW→PW slice c has one
/// row per output channel n (filter W[n, c]); PW→DW slice n has one row per input channel c
/// (filter W[n, c]).
#[derive(Debug, Clone, PartialEq)]
pub struct FilterGridData {
    /// The ordering the slice belongs to.
    pub order: Order,
    /// Slice index (DW→PW: input channel; PW→DW: output channel).
    pub slice: usize,
    /// Terms kept.
    pub t: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Channel index of each shown row (DW→PW: n; PW→DW: c), at most [`MAX_FILTERS`].
    pub rows: Vec<usize>,
    /// K² values per shown row.
    pub original: Vec<Vec<f32>>,
    /// The same filters rebuilt from T terms.
    pub reconstructed: Vec<Vec<f32>>,
    /// original − reconstructed.
    pub difference: Vec<Vec<f32>>,
    /// The T depthwise filters v_k (K² values each).
    pub dw: Vec<Vec<f32>>,
    /// Pointwise weights: for each shown row, its T weights σ_k u_k[row].
    pub pw: Vec<Vec<f32>>,
    /// The slice's first T singular values.
    pub sigma: Vec<f64>,
}

impl FilterGridData {
    /// The first up to [`MAX_FILTERS`] filters of `slice`, rebuilt from `t` terms of `d`
    /// (`kernel` is the kernel `d` was computed from).
    pub fn from_decomposition(kernel: &Kernel, d: &Decomposition, slice: usize, t: usize) -> Result<Self> {
        let s = d.slices.get(slice).ok_or_else(|| {
            Error::Param(format!("slice {slice} out of range (layer has {})", d.slices.len()))
        })?;
        if t == 0 || t > d.full_rank {
            return Err(Error::Param(format!("T = {t} outside 1..={}", d.full_rank)));
        }
        let k2 = d.kh * d.kw;
        let m = s.pw.len() / d.full_rank.max(1);
        if k2 != kernel.k2() || s.dw.len() < d.full_rank * k2 || m == 0 {
            return Err(Error::Shape("decomposition does not match the kernel".into()));
        }
        let groups = d.groups.max(1);
        if d.c == 0 || d.n / groups == 0 {
            return Err(Error::Shape("decomposition has no channels".into()));
        }
        let shown: Vec<usize> = (0..m.min(MAX_FILTERS)).collect();
        let mut data = FilterGridData {
            order: d.order,
            slice,
            t,
            kh: d.kh,
            kw: d.kw,
            rows: vec![],
            original: vec![],
            reconstructed: vec![],
            difference: vec![],
            dw: (0..t).map(|k| s.dw[k * k2..(k + 1) * k2].iter().map(|&v| v as f32).collect()).collect(),
            pw: vec![],
            sigma: s.sigma.iter().take(t).copied().collect(),
        };
        for &r in &shown {
            let (n, c, channel) = match d.order {
                Order::DwPw => {
                    ((slice / d.c) * (d.n / groups) + r, slice % d.c, (slice / d.c) * (d.n / groups) + r)
                }
                Order::PwDw => (slice, r, (slice / (d.n / groups)) * d.c + r),
            };
            if n >= kernel.n || c >= kernel.c {
                return Err(Error::Shape("decomposition does not match the kernel".into()));
            }
            let orig = kernel.filter(n, c).to_vec();
            let weights: Vec<f32> = (0..t).map(|k| s.pw[k * m + r] as f32).collect();
            let rec: Vec<f32> = (0..k2)
                .map(|i| (0..t).map(|k| s.pw[k * m + r] * s.dw[k * k2 + i]).sum::<f64>() as f32)
                .collect();
            data.difference.push(orig.iter().zip(&rec).map(|(a, b)| a - b).collect());
            data.rows.push(channel);
            data.original.push(orig);
            data.reconstructed.push(rec);
            data.pw.push(weights);
        }
        Ok(data)
    }
}

/// Max |v| over a set of filters.
fn max_abs(fs: &[Vec<f32>]) -> f64 {
    fs.iter().flatten().filter(|v| v.is_finite()).fold(0.0f64, |m, v| m.max(v.abs() as f64))
}

/// Draws `filters` (each kh × kw) as a grid in `rect` under a title, with a colour bar.
#[allow(clippy::too_many_arguments)]
fn filter_grid<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    filters: &[Vec<f32>],
    (kh, kw): (usize, usize),
    cols: usize,
    rect: (i32, i32, i32, i32),
    range: f64,
    style: &ChartStyle,
) -> DrawResult {
    let (x, y, w, h) = rect;
    let fs = style.font_size as i32;
    label(area, title, (x, y), 1.0, style)?;
    if filters.is_empty() {
        return Ok(());
    }
    let cols = cols.clamp(1, filters.len());
    let rows = filters.len().div_ceil(cols);
    let gap = 3;
    let top = y + fs * 2;
    let avail_h = h - fs * 2 - fs * 3;
    let cell =
        ((w - gap * cols as i32) / cols as i32).min((avail_h - gap * rows as i32) / rows as i32).max(2);
    let mut mosaic = Mosaic::default();
    for (i, f) in filters.iter().enumerate() {
        let (cx, cy) = ((i % cols) as i32, (i / cols) as i32);
        let map = HeatMap::new(kw, kh, f.clone());
        mosaic.push(map, (x + cx * (cell + gap), top + cy * (cell + gap), cell, cell), range);
    }
    let bar_y = top + rows as i32 * (cell + gap) + 2;
    // At least wide enough for its two end labels (one filter alone is narrower).
    let bar = (x, bar_y, (cols as i32 * (cell + gap) - gap).max(fs * 9).min(w.max(20)), fs / 2 + 2);
    mosaic.push(color_bar_map(range), bar, range);
    mosaic.draw(area, style)?;
    color_bar_labels(area, bar, range, style)
}

/// Draws the filter view: three grids (original, reconstructed, difference, shared colour range)
/// over the T depthwise filters and the pointwise weights.
pub fn draw_filters<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &FilterGridData,
    style: &ChartStyle,
) -> DrawResult {
    clear(area, style)?;
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let fs = style.font_size as i32;
    let (slice_kind, row_kind) = match data.order {
        Order::DwPw => ("input channel", "n"),
        Order::PwDw => ("output channel", "c"),
    };
    let title = format!("{} filters of {} {}, T = {}", data.order.label(), slice_kind, data.slice, data.t);
    label(area, &title, (8, 4), 1.2, style)?;
    let top_h = (h - fs * 2) * 3 / 5;
    let third = (w - 16) / 3;
    let range = max_abs(&data.original).max(max_abs(&data.reconstructed));
    let k = (data.kh, data.kw);
    let rows = match (data.rows.first(), data.rows.last()) {
        (Some(a), Some(b)) => format!(" ({row_kind} = {a}..{b})"),
        _ => String::new(),
    };
    let y0 = fs * 2 + 4;
    let grids = [
        (format!("original W{rows}"), &data.original),
        ("reconstructed W_T".to_string(), &data.reconstructed),
        (format!("difference, max |Δ| = {}", fmt_value(max_abs(&data.difference))), &data.difference),
    ];
    for (i, (t, f)) in grids.iter().enumerate() {
        filter_grid(area, t, f, k, 4, (8 + i as i32 * third, y0, third - 12, top_h), range, style)?;
    }
    let y1 = y0 + top_h + 4;
    let bottom_h = h - y1 - 4;
    let half = (w - 16) / 2;
    let dw_title = fitted(&format!("depthwise filters v_k, k = 1..{}", data.t), &data.sigma, half - 12, fs);
    filter_grid(
        area,
        &dw_title,
        &data.dw,
        k,
        data.t.max(1),
        (8, y1, half - 12, bottom_h),
        max_abs(&data.dw),
        style,
    )?;
    draw_pw(area, data, (8 + half, y1, half - 12, bottom_h), style)
}

/// `head` followed by ` (σ = …)` with as many of `sigma` as fit in `width` pixels (text at
/// `fs` px, about 0.6·fs per character), the rest elided with "…".
fn fitted(head: &str, sigma: &[f64], width: i32, fs: i32) -> String {
    let fits = |t: &str| (t.chars().count() as i32) * fs * 6 / 10 <= width;
    let with = |k: usize| {
        let shown: Vec<String> = sigma.iter().take(k).map(|s| fmt_value(*s)).collect();
        let more = if k < sigma.len() { ", …" } else { "" };
        format!("{head} (σ = {}{more})", shown.join(", "))
    };
    (1..=sigma.len()).rev().map(with).find(|t| fits(t)).unwrap_or_else(|| head.to_string())
}

/// The pointwise weights as a rows × T matrix.
fn draw_pw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &FilterGridData,
    rect: (i32, i32, i32, i32),
    style: &ChartStyle,
) -> DrawResult {
    let (x, y, w, h) = rect;
    let fs = style.font_size as i32;
    label(area, &format!("pointwise weights σ_k u_k (rows × {} terms)", data.t), (x, y), 1.0, style)?;
    let rows = data.pw.len();
    let cols = data.pw.iter().map(Vec::len).max().unwrap_or(0);
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let values: Vec<f32> =
        data.pw.iter().flat_map(|r| (0..cols).map(|k| r.get(k).copied().unwrap_or(0.0))).collect();
    let map = HeatMap::new(cols, rows, values);
    let range = max_abs(&data.pw);
    let avail_h = h - fs * 5;
    let (rows_i, cols_i) = (rows.min(4096) as i32, cols.min(4096) as i32);
    let cell_h = (avail_h / rows_i).clamp(2, 24);
    let cell_w = ((w / 2) / cols_i).clamp(2, 40).max(cell_h);
    let (mw, mh) = (cell_w * cols_i, cell_h * rows_i);
    let bar = (x, y + fs * 2 + mh + 4, mw.max(120), fs / 2 + 2);
    let mut mosaic = Mosaic::default();
    mosaic.push(map, (x, y + fs * 2, mw, mh), range);
    mosaic.push(color_bar_map(range), bar, range);
    mosaic.draw(area, style)?;
    color_bar_labels(area, bar, range, style)
}
