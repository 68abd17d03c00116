//! A whole network's accuracy against its conv MACs: one line per strategy and ordering over the
//! points computed so far, the original network's accuracy as a horizontal line and its MACs as a
//! vertical one, the current choice marked.

use super::lines::{draw_panel, HMark, Line, Panel, VMark};
use super::{clear, ChartStyle, DrawResult};
use plotters::coord::Shift;
use plotters::prelude::*;

/// One strategy in one ordering: its points (conv MACs, top-1 accuracy in [0, 1]).
#[derive(Debug, Clone, PartialEq)]
pub struct AccuracySeries {
    /// Legend label (e.g. "one T for all, PW→DW").
    pub label: String,
    /// Index of the strategy (its line colour's hue).
    pub strategy: usize,
    /// Whether it is DW→PW (dark) or PW→DW (light).
    pub dw_pw: bool,
    /// Points, any order (sorted by MACs when drawn).
    pub points: Vec<(f64, f64)>,
}

/// Input of [`draw_accuracy`].
#[derive(Debug, Clone, PartialEq)]
pub struct AccuracyData {
    /// One entry per strategy and ordering.
    pub series: Vec<AccuracySeries>,
    /// The original network's accuracy.
    pub original: f64,
    /// The original network's conv MACs.
    pub original_macs: f64,
    /// The current choice (MACs, accuracy), when evaluated.
    pub current: Option<(f64, f64)>,
    /// Test items the accuracies are measured on.
    pub items: usize,
}

/// The strategies' colours (dark for DW→PW, light for PW→DW).
fn strategy_color(strategy: usize, dw_pw: bool) -> RGBColor {
    const DARK: [RGBColor; 4] =
        [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 140, 44), RGBColor(148, 103, 189)];
    const LIGHT: [RGBColor; 4] =
        [RGBColor(120, 175, 220), RGBColor(240, 130, 120), RGBColor(140, 200, 130), RGBColor(196, 170, 220)];
    let i = strategy % DARK.len();
    if dw_pw {
        DARK[i]
    } else {
        LIGHT[i]
    }
}

/// Draws accuracy against conv MACs.
pub fn draw_accuracy<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &AccuracyData,
    style: &ChartStyle,
) -> DrawResult {
    clear(area, style)?;
    let x_max = if data.original_macs.is_finite() && data.original_macs > 0.0 {
        data.original_macs * 1.05
    } else {
        1.0
    };
    let lines: Vec<Line> = data
        .series
        .iter()
        .map(|s| {
            let mut points: Vec<(f64, f64)> = s
                .points
                .iter()
                .map(|&(m, a)| (m, a * 100.0))
                .filter(|(m, a)| m.is_finite() && a.is_finite())
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Line { label: s.label.clone(), points, color: strategy_color(s.strategy, s.dw_pw), dots: true }
        })
        .collect();
    let lowest =
        lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)).fold(data.original * 100.0, f64::min);
    let y_lo = if lowest.is_finite() { (lowest - 5.0).max(0.0).floor() } else { 0.0 };
    let y_hi = (data.original * 100.0 + 3.0).min(100.0).max(y_lo + 1.0);
    let mut vmarks = vec![VMark {
        x: data.original_macs,
        label: "original".into(),
        color: style.reference,
        row: 0,
        label_left: true,
        moves: false,
        in_legend: false,
    }];
    if let Some((m, _)) = data.current {
        vmarks.push(VMark {
            x: m,
            label: "your choice".into(),
            color: style.marker,
            row: 1,
            label_left: false,
            moves: false,
            in_legend: false,
        });
    }
    let mut current_line = Vec::new();
    if let Some((m, a)) = data.current {
        current_line.push(Line {
            label: "your choice".into(),
            points: vec![(m, a * 100.0)],
            color: style.marker,
            dots: true,
        });
    }
    let panel = Panel {
        caption: format!("Top-1 accuracy against conv MACs ({} test images)", data.items),
        caption_moves: false,
        x_label: "conv MACs per image".into(),
        y_label: "top-1 accuracy (%)".into(),
        x_range: (0.0, x_max),
        y_range: (y_lo, y_hi),
        bands: vec![],
        lines: lines.into_iter().chain(current_line).collect(),
        vmarks,
        hmarks: vec![HMark {
            y: data.original * 100.0,
            label: format!("original {:.1} %", data.original * 100.0),
            color: style.reference,
        }],
        legend: Some(SeriesLabelPosition::LowerRight),
    };
    draw_panel(area, &panel, style)
}
