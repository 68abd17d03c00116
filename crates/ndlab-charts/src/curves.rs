//! Energy kept and relative weight error vs T (both orderings), and the output relative error vs T.

use super::lines::{draw_legend_strip, draw_panel, t_range, value_range, LegendItem, Line, Panel, VMark};
use super::{clear, ChartStyle, DrawResult};
use ndlab_core::conv::{conv2d, layer_forward};
use ndlab_core::decouple::{Decomposition, Spectra};
use ndlab_core::error::Result;
use ndlab_core::layer::{ConvLayer, FeatureMap, Order};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The curves of one ordering; index T − 1, T = 1..=len.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderCurves {
    /// The ordering.
    pub order: Order,
    /// Energy kept 1 − Σ_{k>T}σ² / Σσ².
    pub energy: Vec<f64>,
    /// Relative weight error ‖W − W_T‖_F / ‖W‖_F.
    pub error: Vec<f64>,
}

impl OrderCurves {
    /// The curves of one ordering's spectra.
    pub fn from_spectra(d: &Spectra) -> Self {
        OrderCurves { order: d.order, energy: d.energy_kept(), error: d.rel_weight_error() }
    }
}

/// Input of [`draw_energy_error`]: one [`OrderCurves`] per ordering (usually both) and the
/// current T and ordering.
#[derive(Debug, Clone, PartialEq)]
pub struct EnergyErrorData {
    /// One entry per ordering.
    pub curves: Vec<OrderCurves>,
    /// The current T (marked).
    pub t: usize,
    /// The current ordering (named in the marker label).
    pub order: Order,
}

impl EnergyErrorData {
    /// From the spectra of the same kernel in (usually) both orderings.
    pub fn from_spectra(ds: &[&Spectra], t: usize, order: Order) -> Self {
        EnergyErrorData { curves: ds.iter().map(|d| OrderCurves::from_spectra(d)).collect(), t, order }
    }
}

/// Points (T, v) for T = 1..
fn by_t(v: &[f64]) -> Vec<(f64, f64)> {
    v.iter().enumerate().map(|(i, &y)| ((i + 1) as f64, y)).collect()
}

/// The current-T marker.
fn t_mark(t: usize, order: Order, style: &ChartStyle) -> VMark {
    VMark {
        x: t as f64,
        label: format!("T = {} ({})", t, order.label()),
        color: style.marker,
        row: 0,
        label_left: false,
        moves: true,
        in_legend: false,
    }
}

/// Draws energy kept and relative weight error vs T: one line of each per ordering, the current
/// T, and a legend below the plot (the curves cross the whole plot).
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
            label: format!("energy {l}"),
            points: by_t(&c.energy),
            color: style.order_color(c.order),
            dots: false,
        });
        lines.push(Line {
            label: format!("error {l}"),
            points: by_t(&c.error),
            color: style.order_color_light(c.order),
            dots: true,
        });
    }
    let max_t = data.curves.iter().map(|c| c.energy.len().max(c.error.len())).max().unwrap_or(1);
    let panel = Panel {
        caption: "Energy kept and weight error vs T".into(),
        caption_moves: false,
        x_label: "T (terms per slice)".into(),
        y_label: "fraction".into(),
        x_range: t_range(max_t),
        y_range: (0.0, 1.05),
        bands: vec![],
        lines,
        vmarks: vec![t_mark(data.t, data.order, style)],
        hmarks: vec![],
        legend: None,
    };
    let items: Vec<LegendItem> = panel.lines.iter().map(LegendItem::line).collect();
    let plot = draw_legend_strip(area, &items, style)?;
    draw_panel(&plot, &panel, style)
}

/// Input of [`draw_output_error`]: ‖y_T − y‖ / ‖y‖ on the current input for T = 1..=len, per
/// ordering (as measured: it need not be monotone).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputErrorData {
    /// (ordering, error for T = 1..) pairs.
    pub series: Vec<(Order, Vec<f64>)>,
    /// The current T (marked).
    pub t: usize,
    /// The current ordering (named in the marker label).
    pub order: Order,
    /// What the input was (e.g. "astronaut, conv3_2 input"), shown in the caption.
    pub input_label: String,
}

impl OutputErrorData {
    /// Measures the output relative error ‖conv(x, W − W_T)‖ / ‖conv(x, W) + b‖ for
    /// T = 1..=full rank of each decomposition of `layer`'s kernel (the decoupled layer computes
    /// exactly conv(x, W_T) + b, METHOD.md). Costs one conv per T and ordering: run it off the UI
    /// thread for big layers. A zero original output gives the absolute error.
    pub fn measure(
        x: &FeatureMap,
        layer: &ConvLayer,
        ds: &[&Decomposition],
        t: usize,
        order: Order,
        input_label: &str,
    ) -> Result<Self> {
        let y = layer_forward(x, layer)?;
        let y_norm = y.data.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
        let mut series = Vec::with_capacity(ds.len());
        for d in ds {
            let mut errs = Vec::with_capacity(d.full_rank);
            for tt in 1..=d.full_rank {
                let mut diff = d.reconstruct(tt)?;
                for (w_t, &w) in diff.data.iter_mut().zip(&layer.kernel.data) {
                    *w_t = w - *w_t;
                }
                let e = conv2d(x, &diff, None, &layer.geometry)?;
                let e_norm = e.data.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>().sqrt();
                errs.push(if y_norm > 0.0 { e_norm / y_norm } else { e_norm });
            }
            series.push((d.order, errs));
        }
        Ok(OutputErrorData { series, t, order, input_label: input_label.to_string() })
    }
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
        caption_moves: false,
        x_label: "T (terms per slice)".into(),
        y_label: "‖y_T − y‖ / ‖y‖".into(),
        x_range: t_range(max_t),
        y_range: (0.0, hi.max(1e-12)),
        bands: vec![],
        lines,
        vmarks: vec![t_mark(data.t, data.order, style)],
        hmarks: vec![],
        legend: Some(SeriesLabelPosition::UpperRight),
    };
    draw_panel(area, &panel, style)
}
