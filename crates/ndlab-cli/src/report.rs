//! `ndlab report`: the spectra, energy, errors and cost of a layer for every T, as a table or JSON.

use super::{in_file, model, Host, ReportOpts};
use ndlab_core::cost::{self, CostModel};
use ndlab_core::decouple::{Decomposition, ThresholdRule};
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{Kernel, Order};
use serde::Serialize;
use std::fmt::Write as _;

/// MACs or parameters of the regular layer and of the decoupled one for T = 1..=full_rank.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostRow {
    /// The original layer.
    pub regular: u64,
    /// The decoupled layer, index T−1.
    pub decoupled: Vec<u64>,
}

/// T chosen from an energy threshold by both rules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdT {
    /// τ.
    pub tau: f64,
    /// Official code: mean over non-zero slices of e_s(t) ≥ τ.
    pub mean_rule: usize,
    /// TRP code: max over slices of the per-slice T.
    pub max_rule: usize,
}

/// Everything `ndlab report` prints (its JSON form; arrays indexed by T−1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// [N, C per group, Kh, Kw].
    pub shape: [usize; 4],
    /// `dw-pw` or `pw-dw`.
    pub order: String,
    /// Groups of the layer.
    pub groups: usize,
    /// Terms of the exact decoupling.
    pub full_rank: usize,
    /// True for 1×1 kernels, which are already pointwise convs.
    pub already_separable: bool,
    /// Singular values, one descending list per slice.
    pub singular_values: Vec<Vec<f64>>,
    /// Energy kept for each T.
    pub energy_kept: Vec<f64>,
    /// Relative weight error ‖W − W_T‖_F / ‖W‖_F for each T.
    pub rel_weight_error: Vec<f64>,
    /// What the MACs count: per output pixel at stride 1, or the whole layer at an input size.
    pub macs_basis: String,
    /// Multiply-accumulates.
    pub macs: CostRow,
    /// Parameters (no bias).
    pub params: CostRow,
    /// Per-output-pixel speed-up at stride 1 for each T (METHOD.md's formula).
    pub speedup: Vec<f64>,
    /// Real-valued break-even T at stride 1.
    pub break_even_t: f64,
    /// Largest integer T faster than the regular layer at stride 1, if any.
    pub largest_faster_t: Option<usize>,
    /// T from `--threshold`, both rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold_t: Option<ThresholdT>,
}

/// Builds the report of one kernel.
pub fn build_report(kernel: &Kernel, opts: &ReportOpts) -> Result<Report> {
    let (g, order) = (opts.geometry.groups, opts.order);
    let d = Decomposition::new(kernel, g, order)?;
    let ts: Vec<usize> = (1..=d.full_rank).collect();
    let c_total = kernel.c * g;
    let (model, basis) = match opts.size {
        None => (
            CostModel::per_output_pixel(kernel.n, c_total, kernel.kh, kernel.kw, g)?,
            "per output pixel, stride 1".to_string(),
        ),
        Some((h, w)) => {
            let m = CostModel::new(kernel.n, c_total, kernel.kh, kernel.kw, h, w, &opts.geometry)?;
            let gm = &opts.geometry;
            let basis = format!(
                "whole layer, input {c_total}×{h}×{w} → output {}×{}×{}, stride {}, padding {}, dilation {}",
                kernel.n, m.ho, m.wo, gm.stride.0, gm.padding.top, gm.dilation.0
            );
            (m, basis)
        }
    };
    let k2 = kernel.k2();
    let threshold_t = match opts.threshold {
        None => None,
        Some(tau) => Some(ThresholdT {
            tau,
            mean_rule: d.threshold_t(tau, ThresholdRule::Mean)?,
            max_rule: d.threshold_t(tau, ThresholdRule::Max)?,
        }),
    };
    let t_star = cost::break_even_t(order, kernel.n, kernel.c, k2, g);
    Ok(Report {
        shape: [kernel.n, kernel.c, kernel.kh, kernel.kw],
        order: order.as_str().to_string(),
        groups: g,
        full_rank: d.full_rank,
        already_separable: k2 == 1,
        singular_values: d.slices.iter().map(|s| s.sigma.clone()).collect(),
        energy_kept: d.energy_kept(),
        rel_weight_error: d.rel_weight_error(),
        macs_basis: basis,
        macs: CostRow {
            regular: model.regular_macs(),
            decoupled: ts.iter().map(|&t| model.decoupled_macs(order, t)).collect(),
        },
        params: CostRow {
            regular: model.regular_params(),
            decoupled: ts.iter().map(|&t| model.decoupled_params(order, t)).collect(),
        },
        speedup: ts.iter().map(|&t| cost::pixel_speedup(order, kernel.n, kernel.c, k2, g, t)).collect(),
        break_even_t: t_star,
        largest_faster_t: cost::largest_below(t_star),
        threshold_t,
    })
}

/// `ndlab report`: JSON or a table.
pub fn report(opts: &ReportOpts, host: &mut dyn Host) -> Result<String> {
    let loaded = model::load(host, &opts.kernel, &opts.source)?;
    let mut opts = opts.clone();
    if let (Some(g), false) = (loaded.geometry, opts.source.explicit_geometry) {
        opts.geometry = g;
    }
    let opts = &opts;
    let kernel = loaded.kernel;
    let r = build_report(&kernel, opts).map_err(|e| in_file(&opts.kernel, e))?;
    if opts.json {
        let mut s = serde_json::to_string_pretty(&r).map_err(|e| Error::Numeric(format!("JSON: {e}")))?;
        s.push('\n');
        Ok(s)
    } else {
        Ok(render_table(&opts.kernel, &r))
    }
}

/// The readable form of a report: a header line and an aligned table.
pub fn render_table(name: &str, r: &Report) -> String {
    let [n, c, kh, kw] = r.shape;
    let order: Order = r.order.parse().unwrap_or_default();
    let mut s = format!(
        "{name}: kernel {n}×{c}×{kh}×{kw} (N×C×Kh×Kw), groups {}, {}, full rank {} ({} slices)\n",
        r.groups,
        order.label(),
        r.full_rank,
        r.singular_values.len()
    );
    if r.already_separable {
        s.push_str("1×1 kernel: already separable (a pointwise conv), nothing to decouple.\n");
        return s;
    }
    let _ = writeln!(s, "MACs: {} (regular {}, params {})", r.macs_basis, r.macs.regular, r.params.regular);
    let _ = writeln!(
        s,
        "{:>4}  {:>10}  {:>10}  {:>14}  {:>10}  {:>8}",
        "T", "energy", "rel.error", "MACs", "params", "speed-up"
    );
    for i in 0..r.full_rank {
        let _ = writeln!(
            s,
            "{:>4}  {:>10.6}  {:>10.6}  {:>14}  {:>10}  {:>7.2}×",
            i + 1,
            r.energy_kept.get(i).copied().unwrap_or(f64::NAN),
            r.rel_weight_error.get(i).copied().unwrap_or(f64::NAN),
            r.macs.decoupled.get(i).copied().unwrap_or(0),
            r.params.decoupled.get(i).copied().unwrap_or(0),
            r.speedup.get(i).copied().unwrap_or(f64::NAN),
        );
    }
    let faster = match r.largest_faster_t {
        Some(t) => format!("T ≤ {t} is faster than the regular layer"),
        None => "no T is faster than the regular layer".to_string(),
    };
    let _ = writeln!(s, "break-even T = {:.2} at stride 1: {faster}", r.break_even_t);
    if let Some(th) = &r.threshold_t {
        let _ = writeln!(
            s,
            "threshold τ = {}: T = {} (mean rule, official code), T = {} (max rule, TRP code)",
            th.tau, th.mean_rule, th.max_rule
        );
    }
    s
}
