//! Small derived values the views show, built from the worker's summaries with the core's cost
//! model.

use ndlab_charts::{CostData, CostSeries};
use ndlab_core::cost::CostModel;
use ndlab_core::layer::Order;
use ndlab_lab::protocol::LayerSummary;

/// Input size assumed before an image has been run through the network (VGG conv3 resolution).
pub const DEFAULT_HW: (usize, usize) = (56, 56);

/// The cost model of `layer` on an `hw` input.
pub fn cost_model(layer: &LayerSummary, hw: (usize, usize)) -> ndlab_core::Result<CostModel> {
    let g = &layer.geometry;
    CostModel::new(layer.n, layer.c * g.groups.max(1), layer.kh, layer.kw, hw.0, hw.1, g)
}

/// The cost chart's data for T = 1..=full rank of each ordering.
pub fn cost_data(
    layer: &LayerSummary,
    hw: (usize, usize),
    t: usize,
    order: Order,
) -> ndlab_core::Result<CostData> {
    let m = cost_model(layer, hw)?;
    let series = layer
        .orders
        .iter()
        .map(|o| {
            let ord = o.spectra.order;
            let ts = 1..=o.spectra.full_rank.max(1);
            CostSeries {
                order: ord,
                macs: ts.clone().map(|t| m.decoupled_macs(ord, t) as f64).collect(),
                params: ts.map(|t| m.decoupled_params(ord, t) as f64).collect(),
                break_even_t: m.break_even(ord),
            }
        })
        .collect();
    Ok(CostData {
        original_macs: m.regular_macs() as f64,
        original_params: m.regular_params() as f64,
        series,
        t,
        order,
    })
}

/// "2.90×".
pub fn format_speedup(x: f64) -> String {
    format!("{x:.2}×")
}

/// "0.4751".
pub fn format_error(x: f64) -> String {
    format!("{x:.4}")
}

/// What the worker measured on the current input: the measured speed-up and the throughput
/// (GMAC/s, from the cost model's MACs) of the original and the decoupled forward.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// Original time / decoupled time.
    pub speedup: f64,
    /// Original layer, G multiply-accumulates per second.
    pub original_gmacs: f64,
    /// Decoupled layer (at the forward's T and ordering), GMAC/s.
    pub decoupled_gmacs: f64,
}

/// The measured figures of a forward result, or None while a time is missing (0 ms).
pub fn measured(f: &ndlab_lab::protocol::ForwardResult, m: &CostModel) -> Option<Measured> {
    if !(f.timings.original_ms > 0.0 && f.timings.decoupled_ms > 0.0) {
        return None;
    }
    Some(Measured {
        speedup: f.timings.original_ms / f.timings.decoupled_ms,
        original_gmacs: m.regular_macs() as f64 / f.timings.original_ms / 1e6,
        decoupled_gmacs: m.decoupled_macs(f.order, f.t) as f64 / f.timings.decoupled_ms / 1e6,
    })
}
