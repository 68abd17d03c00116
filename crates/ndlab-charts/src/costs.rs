//! MACs and parameters vs T for both orderings, the original layer's cost, the break-even T.

use super::lines::{
    draw_legend_strip, draw_panel, t_range, value_range, HMark, LegendItem, Line, Panel, VMark,
};
use super::{clear, ChartStyle, DrawResult};
use ndlab_core::cost::CostModel;
use ndlab_core::error::Result;
use ndlab_core::layer::{ConvLayer, Order};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The cost of one ordering for T = 1..=len (index T − 1).
#[derive(Debug, Clone, PartialEq)]
pub struct CostSeries {
    /// The ordering.
    pub order: Order,
    /// MACs of the decoupled layer.
    pub macs: Vec<f64>,
    /// Parameters of the decoupled layer (no bias).
    pub params: Vec<f64>,
    /// The (real-valued) T at which the MACs equal the original layer's; faster below it.
    pub break_even_t: f64,
}

/// Input of [`draw_costs`] (formulas of METHOD.md "Costs"; biases not counted).
#[derive(Debug, Clone, PartialEq)]
pub struct CostData {
    /// MACs of the original layer.
    pub original_macs: f64,
    /// Parameters of the original layer (no bias).
    pub original_params: f64,
    /// One series per ordering.
    pub series: Vec<CostSeries>,
    /// The current T (marked).
    pub t: usize,
    /// The current ordering (its speed-up is in the caption).
    pub order: Order,
}

impl CostData {
    /// Costs of `layer` on an `h` × `w` input for T = 1..=full rank of each ordering.
    pub fn for_layer(layer: &ConvLayer, h: usize, w: usize, t: usize, order: Order) -> Result<Self> {
        let k = &layer.kernel;
        let model = CostModel::new(k.n, layer.in_channels(), k.kh, k.kw, h, w, &layer.geometry)?;
        Ok(Self::from_model(&model, t, order))
    }

    /// Costs from a [`CostModel`] for T = 1..=full rank of each ordering
    /// (DW→PW: min(N/groups, K²); PW→DW: min(C/groups, K²)).
    pub fn from_model(m: &CostModel, t: usize, order: Order) -> Self {
        let k2 = m.kh * m.kw;
        let groups = m.groups.max(1);
        let series = [(Order::DwPw, (m.n / groups).min(k2)), (Order::PwDw, (m.c / groups).min(k2))]
            .into_iter()
            .map(|(o, r)| CostSeries {
                order: o,
                macs: (1..=r.max(1)).map(|t| m.decoupled_macs(o, t) as f64).collect(),
                params: (1..=r.max(1)).map(|t| m.decoupled_params(o, t) as f64).collect(),
                break_even_t: m.break_even(o),
            })
            .collect();
        CostData {
            original_macs: m.regular_macs() as f64,
            original_params: m.regular_params() as f64,
            series,
            t,
            order,
        }
    }
}

/// The MACs caption with the theoretical speed-up at the current T.
fn macs_caption(data: &CostData) -> String {
    let cur =
        data.series.iter().find(|s| s.order == data.order).and_then(|s| s.macs.get(data.t.wrapping_sub(1)));
    match cur {
        Some(&m) if m > 0.0 => format!(
            "MACs: {} at T = {} is {:.2}× fewer (theoretical)",
            data.order.label(),
            data.t,
            data.original_macs / m
        ),
        _ => "MACs vs T (theoretical)".to_string(),
    }
}

/// One legend for both panels: the orderings' lines and the break-even marks.
fn cost_legend(data: &CostData, style: &ChartStyle) -> Vec<LegendItem> {
    let lines = data.series.iter().map(|s| LegendItem {
        label: s.order.label().to_string(),
        color: style.order_color(s.order),
        dots: true,
        vertical: false,
        band: 0.0,
    });
    let breaks = data.series.iter().filter(|s| s.break_even_t.is_finite()).map(|s| LegendItem {
        label: format!("break-even {} T = {:.2}", s.order.label(), s.break_even_t),
        color: style.order_color_light(s.order),
        dots: false,
        vertical: true,
        band: 0.0,
    });
    lines.chain(breaks).collect()
}

/// Draws two panels side by side: MACs vs T and parameters vs T.
pub fn draw_costs<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &CostData,
    style: &ChartStyle,
) -> DrawResult {
    clear(area, style)?;
    let area = draw_legend_strip(area, &cost_legend(data, style), style)?;
    let (left, right) = area.split_horizontally(area.dim_in_pixel().0 / 2);
    let max_t = data.series.iter().map(|s| s.macs.len()).max().unwrap_or(1);
    let (x0, x1) = t_range(max_t);
    let panel = |what: &str, pick: fn(&CostSeries) -> &Vec<f64>, original: f64, breaks: bool| {
        let lines = data
            .series
            .iter()
            .map(|s| Line {
                label: format!("{} {}", s.order.label(), what),
                points: pick(s).iter().enumerate().map(|(i, &v)| ((i + 1) as f64, v)).collect(),
                color: style.order_color(s.order),
                dots: true,
            })
            .collect();
        let mut vmarks = vec![];
        if breaks {
            for (row, s) in data.series.iter().enumerate() {
                if s.break_even_t.is_finite() && s.break_even_t >= x0 && s.break_even_t <= x1 {
                    vmarks.push(VMark {
                        x: s.break_even_t,
                        label: format!("break-even {} T = {:.2}", s.order.label(), s.break_even_t),
                        color: style.order_color_light(s.order),
                        // Below the original layer's line and its label (rows 0–2 are above it).
                        row: row + 3,
                        label_left: true,
                        moves: false,
                        in_legend: true,
                    });
                }
            }
        }
        vmarks.push(VMark {
            x: data.t as f64,
            label: format!("T = {}", data.t),
            color: style.marker,
            row: 0,
            label_left: false,
            moves: true,
            in_legend: false,
        });
        let all = data.series.iter().flat_map(|s| pick(s).iter().copied()).chain([original, 0.0]);
        // Head room above the original layer's line keeps its label clear of the T label.
        let hi = value_range(all, (0.0, 1.0)).1.max(original * 1.25);
        Panel {
            caption: if breaks { macs_caption(data) } else { format!("{what} vs T") },
            caption_moves: breaks,
            x_label: "T (terms per slice)".into(),
            y_label: what.to_string(),
            x_range: (x0, x1),
            y_range: (0.0, hi),
            bands: vec![],
            lines,
            vmarks,
            hmarks: vec![HMark { y: original, label: "original layer".into(), color: style.reference }],
            legend: None,
        }
    };
    draw_panel(&left, &panel("MACs", |s| &s.macs, data.original_macs, true), style)?;
    draw_panel(&right, &panel("params", |s| &s.params, data.original_params, false), style)
}
