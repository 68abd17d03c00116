//! Small derived values the views show (adapters over the core's summaries).

use crate::protocol::{LayerSummary, SliceView};
use crate::Order;

/// Costs of one configuration (METHOD.md "Costs"), MACs for an output of `hw`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostRow {
    /// MACs of the original layer.
    pub original_macs: f64,
    /// MACs of the decoupled layer.
    pub macs: f64,
    /// Parameters of the original layer (no bias).
    pub original_params: f64,
    /// Parameters of the decoupled layer (no bias).
    pub params: f64,
}

impl CostRow {
    /// Theoretical speed-up (original MACs / decoupled MACs).
    pub fn speedup(&self) -> f64 {
        self.original_macs / self.macs.max(1.0)
    }
}

/// Costs of `layer` decoupled in `order` with T terms, output `hw` (input = output × stride).
pub fn cost_row(layer: &LayerSummary, order: Order, t: usize, hw: (usize, usize)) -> CostRow {
    let (n, c, k2, s) =
        (layer.n as f64, (layer.c * layer.groups) as f64, (layer.kh * layer.kw) as f64, layer.stride as f64);
    let cpg = layer.c as f64;
    let g = layer.groups as f64;
    let (ho, wo) = (hw.0 as f64, hw.1 as f64);
    let t = t as f64;
    let original_macs = n * cpg * k2 * ho * wo;
    let original_params = n * cpg * k2;
    let (macs, params) = match order {
        Order::DwPw => (c * t * k2 * ho * wo + c * t * (n / g) * ho * wo, c * t * k2 + (n / g) * c * t),
        Order::PwDw => (n * t * cpg * ho * wo * s * s + n * t * k2 * ho * wo, n * t * cpg + n * t * k2),
    };
    CostRow { original_macs, macs, original_params, params }
}

/// The slice matrix rebuilt from its first `t` terms: Σ_k pw_k[r] · dw_k[j] (pw holds σ·u).
pub fn reconstruct_slice(s: &SliceView, t: usize) -> Vec<f64> {
    let mut out = vec![0.0; s.rows * s.k2];
    let t = t.min(s.factors.sigma.len());
    for k in 0..t {
        let dw = &s.factors.dw[k * s.k2..(k + 1) * s.k2];
        let pw = &s.factors.pw[k * s.rows..(k + 1) * s.rows];
        for (r, &p) in pw.iter().enumerate() {
            for (j, &d) in dw.iter().enumerate() {
                out[r * s.k2 + j] += p * d;
            }
        }
    }
    out
}

/// "2.90×".
pub fn format_speedup(x: f64) -> String {
    format!("{x:.2}×")
}

/// "0.4751".
pub fn format_error(x: f64) -> String {
    format!("{x:.4}")
}
