//! Error against cost for network decoupling and its relatives (issue 5): one line per method over
//! its ranks, the equal-cost budget and the regular layer's cost marked.

use super::lines::{draw_panel, value_range, Line, Panel, VMark};
use super::{clear, ChartStyle, DrawResult};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Input of [`draw_pareto`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParetoData {
    /// (method id, points (MACs per output pixel, relative error)) per method.
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    /// The budget in MACs per output pixel (a vertical marker).
    pub budget: f64,
    /// The regular layer's MACs per output pixel (right end of the x axis, marked).
    pub regular: f64,
    /// What the y axis measures, e.g. "relative weight error".
    pub y_label: String,
}

/// The colour of a method's line: ND's two orderings in the orderings' colours, the others fixed.
pub fn method_color(method: &str, style: &ChartStyle) -> RGBColor {
    match method {
        "nd-dw-pw" => style.dw_pw,
        "nd-pw-dw" => style.pw_dw,
        "channel" => RGBColor(44, 160, 44),
        "spatial" => RGBColor(148, 103, 189),
        "cp" => RGBColor(140, 86, 75),
        "cp-mobilenet" => RGBColor(227, 119, 194),
        "tucker2" => RGBColor(23, 190, 207),
        _ => style.reference,
    }
}

/// Draws every method's error against MACs, up to the regular layer's cost.
pub fn draw_pareto<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &ParetoData,
    style: &ChartStyle,
) -> DrawResult {
    clear(area, style)?;
    let x_max = if data.regular.is_finite() && data.regular > 0.0 { data.regular * 1.04 } else { 1.0 };
    let lines: Vec<Line> = data
        .series
        .iter()
        .map(|(m, pts)| Line {
            label: m.clone(),
            points: pts.iter().copied().filter(|&(x, _)| x <= x_max).collect(),
            color: method_color(m, style),
            dots: true,
        })
        .collect();
    let hi = value_range(lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)), (0.0, 1.0)).1;
    let mut vmarks = vec![VMark {
        x: data.regular,
        label: "regular".into(),
        color: style.reference,
        row: 0,
        label_left: true,
        moves: false,
        in_legend: false,
    }];
    if data.budget.is_finite() && data.budget > 0.0 {
        vmarks.push(VMark {
            x: data.budget,
            label: format!("budget {}", super::lines::short_number(data.budget)),
            color: style.marker,
            row: 1,
            label_left: false,
            moves: false,
            in_legend: false,
        });
    }
    let panel = Panel {
        caption: "Error against MACs per output pixel, every method over its ranks".into(),
        caption_moves: false,
        x_label: "MACs per output pixel (stride 1)".into(),
        y_label: data.y_label.clone(),
        x_range: (0.0, x_max),
        y_range: (0.0, hi.clamp(1e-12, 1.05)),
        bands: vec![],
        lines,
        vmarks,
        hmarks: vec![],
        legend: Some(SeriesLabelPosition::UpperRight),
    };
    draw_panel(area, &panel, style)
}
