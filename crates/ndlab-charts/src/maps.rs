//! A feature-map triple: the original layer's output map, the decoupled layer's, and their difference.

use super::heatmap::{color_bar, draw_heatmap, fmt_value, label, HeatMap};
use super::{clear, ChartStyle, DrawResult};
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::FeatureMap;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Default largest side of a drawn map (cells); larger maps are block-averaged.
pub const MAX_MAP_SIDE: usize = 64;

/// Input of [`draw_feature_maps`]: one output channel of both layers, downsampled.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureTripleData {
    /// The output channel shown.
    pub channel: usize,
    /// Size of the full-resolution maps (h, w).
    pub full_size: (usize, usize),
    /// The original layer's output channel.
    pub original: HeatMap,
    /// The decoupled layer's output channel.
    pub decoupled: HeatMap,
    /// original − decoupled.
    pub difference: HeatMap,
    /// Relative error of this channel at full resolution, ‖Δ‖ / ‖original‖.
    pub rel_error: f64,
    /// Caption, e.g. "T = 2, DW→PW".
    pub label: String,
}

impl FeatureTripleData {
    /// Channel `channel` of both outputs, downsampled to at most `max_side` cells per side.
    pub fn new(
        original: &FeatureMap,
        decoupled: &FeatureMap,
        channel: usize,
        max_side: usize,
        label: &str,
    ) -> Result<Self> {
        if (original.c, original.h, original.w) != (decoupled.c, decoupled.h, decoupled.w) {
            return Err(Error::Shape("original and decoupled outputs differ in shape".into()));
        }
        if channel >= original.c {
            return Err(Error::Param(format!("channel {channel} out of range (output has {})", original.c)));
        }
        let (a, b) = (original.channel(channel), decoupled.channel(channel));
        let diff: Vec<f32> = a.iter().zip(b).map(|(x, y)| x - y).collect();
        let (num, den) = a.iter().zip(&diff).fold((0.0f64, 0.0f64), |(n, d), (&x, &e)| {
            (n + (e as f64) * (e as f64), d + (x as f64) * (x as f64))
        });
        let (w, h) = (original.w, original.h);
        Ok(FeatureTripleData {
            channel,
            full_size: (h, w),
            original: HeatMap::downsampled(a, w, h, max_side),
            decoupled: HeatMap::downsampled(b, w, h, max_side),
            difference: HeatMap::downsampled(&diff, w, h, max_side),
            rel_error: if den > 0.0 { (num / den).sqrt() } else { num.sqrt() },
            label: label.to_string(),
        })
    }
}

/// Draws the three maps side by side. Original and decoupled share one symmetric colour range;
/// the difference has its own (stated under it), so small errors stay visible.
pub fn draw_feature_maps<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &FeatureTripleData,
    style: &ChartStyle,
) -> DrawResult {
    clear(area, style)?;
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let fs = style.font_size as i32;
    let title = format!(
        "Output channel {} ({}×{}){}{}, relative error {}",
        data.channel,
        data.full_size.0,
        data.full_size.1,
        if data.label.is_empty() { "" } else { ", " },
        data.label,
        fmt_value(data.rel_error)
    );
    label(area, &title, (8, 4), 1.2, style)?;
    let range = data.original.max_abs().max(data.decoupled.max_abs()) as f64;
    let diff_range = data.difference.max_abs() as f64;
    let third = (w - 16) / 3;
    let top = fs * 2 + 4;
    let maps = [
        ("original", &data.original, range),
        ("decoupled", &data.decoupled, range),
        ("difference (own scale)", &data.difference, diff_range),
    ];
    for (i, (name, map, r)) in maps.iter().enumerate() {
        let x = 8 + i as i32 * third;
        label(area, name, (x, top), 1.0, style)?;
        let avail_w = third - 12;
        let avail_h = h - top - fs * 6;
        let (mw, mh) = fit(map.w, map.h, avail_w, avail_h);
        draw_heatmap(area, map, (x, top + fs * 2, mw, mh), *r, style)?;
        color_bar(area, (x, top + fs * 2 + mh + 4, mw.max(60), fs / 2 + 2), *r, style)?;
    }
    Ok(())
}

/// Largest size with the map's aspect ratio fitting in `avail_w` × `avail_h`.
fn fit(mw: usize, mh: usize, avail_w: i32, avail_h: i32) -> (i32, i32) {
    let (mw, mh) = (mw.max(1) as f64, mh.max(1) as f64);
    let s = (avail_w.max(2) as f64 / mw).min(avail_h.max(2) as f64 / mh);
    (((mw * s) as i32).max(2), ((mh * s) as i32).max(2))
}
