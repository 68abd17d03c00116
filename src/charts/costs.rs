//! MACs and parameters vs T for both orderings, the original layer's cost, the break-even T.

use super::lines::{draw_panel, t_range, value_range, HMark, Line, Panel, VMark};
use super::{clear, ChartStyle, DrawResult};
use crate::error::Result;
use crate::layer::{ConvLayer, Order};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The cost of one ordering for T = 1..=len (index T − 1).
#[derive(Debug, Clone, PartialEq)]
pub struct CostSeries {
    pub order: Order,
    pub macs: Vec<f64>,
    pub params: Vec<f64>,
    /// The (real-valued) T at which the MACs equal the original layer's; faster below it.
    pub break_even_t: f64,
}

/// Input of [`draw_costs`] (formulas of METHOD.md "Costs"; biases not counted).
#[derive(Debug, Clone, PartialEq)]
pub struct CostData {
    pub original_macs: f64,
    pub original_params: f64,
    pub series: Vec<CostSeries>,
    pub t: usize,
    pub order: Order,
}

impl CostData {
    /// Costs of `layer` on an `h` × `w` input for T = 1..=full rank of each ordering.
    pub fn for_layer(layer: &ConvLayer, h: usize, w: usize, t: usize, order: Order) -> Result<Self> {
        let k = &layer.kernel;
        let g = &layer.geometry;
        let (ho, wo) = g.output_size(h, w, k.kh, k.kw)?;
        let groups = g.groups.max(1);
        let (n, c, k2) = (k.n as f64, k.c as f64, k.k2() as f64);
        let (hw, howo) = ((h * w) as f64, (ho * wo) as f64);
        let c_total = c * groups as f64;
        let n_per_group = n / groups as f64;
        // Per unit of T.
        let dwpw_macs = c_total * k2 * howo + c_total * n_per_group * howo;
        let dwpw_params = c_total * k2 + c_total * n_per_group;
        let pwdw_macs = n * c * hw + n * k2 * howo;
        let pwdw_params = n * c + n * k2;
        let original_macs = n * c * k2 * howo;
        let original_params = n * c * k2;
        let ranks = [(k.n / groups).min(k.k2()), k.c.min(k.k2())];
        let make = |order: Order, m: f64, p: f64, r: usize| CostSeries {
            order,
            macs: (1..=r.max(1)).map(|t| t as f64 * m).collect(),
            params: (1..=r.max(1)).map(|t| t as f64 * p).collect(),
            break_even_t: original_macs / m,
        };
        Ok(CostData {
            original_macs,
            original_params,
            series: vec![
                make(Order::DwPw, dwpw_macs, dwpw_params, ranks[0]),
                make(Order::PwDw, pwdw_macs, pwdw_params, ranks[1]),
            ],
            t,
            order,
        })
    }
}

/// Draws two panels side by side: MACs vs T and parameters vs T.
pub fn draw_costs<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    data: &CostData,
    style: &ChartStyle,
) -> DrawResult {
    clear(area, style)?;
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
            for s in &data.series {
                if s.break_even_t.is_finite() && s.break_even_t >= x0 && s.break_even_t <= x1 {
                    vmarks.push(VMark {
                        x: s.break_even_t,
                        label: format!("break-even {} T = {:.2}", s.order.label(), s.break_even_t),
                        color: style.order_color_light(s.order),
                    });
                }
            }
        }
        vmarks.push(VMark { x: data.t as f64, label: format!("T = {}", data.t), color: style.marker });
        let all = data.series.iter().flat_map(|s| pick(s).iter().copied()).chain([original, 0.0]);
        let (_, hi) = value_range(all, (0.0, 1.0));
        Panel {
            caption: format!("{what} vs T{}", if breaks { " (theoretical speed-up)" } else { "" }),
            x_label: "T (terms per slice)".into(),
            y_label: what.to_string(),
            x_range: (x0, x1),
            y_range: (0.0, hi),
            bands: vec![],
            lines,
            vmarks,
            hmarks: vec![HMark { y: original, label: "original layer".into(), color: style.reference }],
        }
    };
    draw_panel(&left, &panel("MACs", |s| &s.macs, data.original_macs, true), style)?;
    draw_panel(&right, &panel("params", |s| &s.params, data.original_params, false), style)
}
