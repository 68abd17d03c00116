//! Energy kept and relative weight error vs T (both orderings), and the output relative error vs T.

use super::lines::{draw_panel, t_range, value_range, Line, Panel, VMark};
use super::{clear, ChartStyle, DrawResult};
use crate::decouple::Decomposition;
use crate::layer::Order;
use plotters::coord::Shift;
use plotters::prelude::*;

/// The curves of one ordering; index T − 1, T = 1..=len.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderCurves {
    pub order: Order,
    /// Energy kept 1 − Σ_{k>T}σ² / Σσ².
    pub energy: Vec<f64>,
    /// Relative weight error ‖W − W_T‖_F / ‖W‖_F.
    pub error: Vec<f64>,
}

impl OrderCurves {
    /// The curves of a decomposition.
    pub fn from_decomposition(d: &Decomposition) -> Self {
        OrderCurves { order: d.order, energy: d.energy_kept(), error: d.rel_weight_error() }
    }
}

/// Input of [`draw_energy_error`]: one [`OrderCurves`] per ordering (usually both) and the
/// current T and ordering.
#[derive(Debug, Clone, PartialEq)]
pub struct EnergyErrorData {
    pub curves: Vec<OrderCurves>,
    pub t: usize,
    pub order: Order,
}

impl EnergyErrorData {
    /// From the decompositions of the same kernel in (usually) both orderings.
    pub fn from_decompositions(ds: &[&Decomposition], t: usize, order: Order) -> Self {
        EnergyErrorData { curves: ds.iter().map(|d| OrderCurves::from_decomposition(d)).collect(), t, order }
    }
}

/// Points (T, v) for T = 1..
fn by_t(v: &[f64]) -> Vec<(f64, f64)> {
    v.iter().enumerate().map(|(i, &y)| ((i + 1) as f64, y)).collect()
}

/// The current-T marker.
fn t_mark(t: usize, order: Order, style: &ChartStyle) -> VMark {
    VMark { x: t as f64, label: format!("T = {} ({})", t, order.label()), color: style.marker }
}

/// Draws energy kept and relative weight error vs T: one line of each per ordering, a legend,
/// and the current T.
pub fn draw_energy_error<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &EnergyErrorData,
    style: &ChartStyle,
) -> DrawResult {
    clear(area, style)?;
    let mut lines = vec![];
    for c in &data.curves {
        let l = c.order.label();
        lines.push(Line {
            label: format!("energy kept, {l}"),
            points: by_t(&c.energy),
            color: style.order_color(c.order),
            dots: false,
        });
        lines.push(Line {
            label: format!("weight error, {l}"),
            points: by_t(&c.error),
            color: style.order_color_light(c.order),
            dots: true,
        });
    }
    let max_t = data.curves.iter().map(|c| c.energy.len().max(c.error.len())).max().unwrap_or(1);
    let panel = Panel {
        caption: "Energy kept and relative weight error vs T".into(),
        x_label: "T (terms per slice)".into(),
        y_label: "fraction".into(),
        x_range: t_range(max_t),
        y_range: (0.0, 1.05),
        bands: vec![],
        lines,
        vmarks: vec![t_mark(data.t, data.order, style)],
        hmarks: vec![],
    };
    draw_panel(area, &panel, style)
}

/// Input of [`draw_output_error`]: ‖y_T − y‖ / ‖y‖ on the current input for T = 1..=len, per
/// ordering (as measured: it need not be monotone).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputErrorData {
    /// (ordering, error for T = 1..) pairs.
    pub series: Vec<(Order, Vec<f64>)>,
    pub t: usize,
    pub order: Order,
    /// What the input was (e.g. "astronaut, conv3_2 input"), shown in the caption.
    pub input_label: String,
}

/// Draws the output relative error vs T with the current T marked.
pub fn draw_output_error<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &OutputErrorData,
    style: &ChartStyle,
) -> DrawResult {
    clear(area, style)?;
    let lines: Vec<Line> = data
        .series
        .iter()
        .map(|(o, v)| Line {
            label: format!("output error, {}", o.label()),
            points: by_t(v),
            color: style.order_color(*o),
            dots: true,
        })
        .collect();
    let max_t = data.series.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
    let hi = value_range(data.series.iter().flat_map(|(_, v)| v.iter().copied()), (0.0, 1.0)).1;
    let caption = if data.input_label.is_empty() {
        "Output relative error vs T".to_string()
    } else {
        format!("Output relative error vs T ({})", data.input_label)
    };
    let panel = Panel {
        caption,
        x_label: "T (terms per slice)".into(),
        y_label: "‖y_T − y‖ / ‖y‖".into(),
        x_range: t_range(max_t),
        y_range: (0.0, hi.max(1e-12)),
        bands: vec![],
        lines,
        vmarks: vec![t_mark(data.t, data.order, style)],
        hmarks: vec![],
    };
    draw_panel(area, &panel, style)
}
