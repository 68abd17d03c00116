//! The page's comparison job (pure; run by the relatives Web Worker): every method at its
//! equal-cost rank with weight error, output error on real activations through the method's own
//! layers, and measured times; then a Pareto sweep (error against MACs over each method's ranks).
//!
//! Rows and progress are emitted as they are ready through a callback that can cancel the job.

use super::{
    compare::largest_rank, error_curve, ChannelDecomposition, CompareOptions, Cp4, CpMobile, Dims, Method,
    Rank, Relative, SpatialDecomposition, Tucker2,
};
use crate::decouple::Decomposition;
use crate::error::{Error, Result};
use crate::layer::{ConvLayer, FeatureMap, Order};
use serde::{Deserialize, Serialize};

/// Largest speed-up accepted for a budget.
pub const MAX_SPEEDUP: f64 = 1024.0;

/// What the page asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareRequest {
    /// Budget: the regular layer's MACs per output pixel divided by this (≥ 1).
    pub speedup: f64,
    /// Sweep cap of CP-ALS and HOOI at the equal-cost rank.
    pub max_sweeps: usize,
    /// Sweep cap of the iterative methods at the Pareto sweep's extra ranks.
    pub sweep_max_sweeps: usize,
    /// Speed-ups whose budgets give the Pareto sweep's ranks of the iterative methods.
    pub sweep_speedups: Vec<f64>,
}

impl Default for CompareRequest {
    fn default() -> Self {
        CompareRequest {
            speedup: 4.0,
            max_sweeps: 200,
            sweep_max_sweeps: 25,
            sweep_speedups: vec![32.0, 16.0, 8.0, 2.0],
        }
    }
}

/// One method at the equal-cost rank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodRow {
    /// Method id (as on the command line).
    pub method: String,
    /// Its rank (None when not even rank 1 fits the budget).
    pub rank: Option<Rank>,
    /// MACs per output pixel at stride 1.
    pub macs: u64,
    /// Parameters (no bias).
    pub params: u64,
    /// ‖W − Ŵ‖_F / ‖W‖_F.
    pub weight_error: f64,
    /// ‖y_method − y‖ / ‖y‖ on the current input, when there is one.
    pub output_error: Option<f64>,
    /// Time to compute the decomposition, milliseconds.
    pub decompose_ms: f64,
    /// Time of the method's forward pass on the input, milliseconds.
    pub forward_ms: Option<f64>,
    /// Sweeps run (iterative methods), 0 for closed forms.
    pub sweeps: usize,
    /// Stop reason, degeneracy, or why nothing fits.
    pub note: String,
}

/// One point of a Pareto series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParetoPoint {
    /// The rank.
    pub rank: Rank,
    /// MACs per output pixel at stride 1.
    pub macs: u64,
    /// Relative weight error.
    pub error: f64,
}

/// A method's error across its ranks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParetoSeries {
    /// Method id.
    pub method: String,
    /// Points in increasing MACs.
    pub points: Vec<ParetoPoint>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareReport {
    /// Kernel shape N, C, Kh, Kw.
    pub shape: [usize; 4],
    /// The speed-up asked.
    pub speedup: f64,
    /// Regular layer's MACs per output pixel.
    pub regular_macs: u64,
    /// Budget in MACs per output pixel (stride 1).
    pub budget: u64,
    /// Output size (h, w) of the layer on the current input, when there is one.
    pub output_hw: Option<(usize, usize)>,
    /// Time of the regular layer's forward on the input, milliseconds.
    pub regular_forward_ms: Option<f64>,
    /// Every method at the budget, in [`Method::ALL`] order.
    pub rows: Vec<MethodRow>,
    /// Every method's error across ranks.
    pub pareto: Vec<ParetoSeries>,
}

/// What the job reports while running; returning `false` from the callback cancels.
#[derive(Debug, Clone, PartialEq)]
pub enum CompareEvent {
    /// What is being done and how far (0..=1).
    Progress(String, f64),
    /// A finished row.
    Row(MethodRow),
}

/// The inputs of a comparison.
pub struct CompareInput<'a> {
    /// The layer (ungrouped).
    pub layer: &'a ConvLayer,
    /// ND's decompositions when already computed (else computed here).
    pub nd: &'a [Decomposition],
    /// The layer's input and its regular output, when there is an input.
    pub activations: Option<(&'a FeatureMap, &'a FeatureMap)>,
    /// Milliseconds from an arbitrary origin.
    pub clock: fn() -> f64,
}

/// The budget of a speed-up: regular MACs / X, rounded down.
pub fn budget_of(d: Dims, speedup: f64) -> Result<u64> {
    if !(speedup.is_finite() && (1.0..=MAX_SPEEDUP).contains(&speedup)) {
        return Err(Error::Param(format!("speed-up {speedup} is outside 1..={MAX_SPEEDUP}")));
    }
    Ok((d.regular_macs() as f64 / speedup).floor() as u64)
}

/// A decomposition ready to run: weight error and forward pass.
enum Built {
    Nd(Decomposition, usize),
    Other(Box<dyn Relative>),
}

impl Built {
    fn weight_error(&self) -> f64 {
        match self {
            Built::Nd(d, t) => d.rel_weight_error().get(t - 1).copied().unwrap_or(f64::NAN),
            Built::Other(r) => r.rel_weight_error(),
        }
    }

    fn forward(&self, x: &FeatureMap, layer: &ConvLayer) -> Result<FeatureMap> {
        let (bias, geom) = (layer.bias.as_deref(), &layer.geometry);
        match self {
            Built::Nd(d, t) => crate::conv::decoupled_forward(x, &d.merged(*t)?, bias, geom),
            Built::Other(r) => r.forward(x, bias, geom),
        }
    }
}

/// Cancel-aware progress adaptor for the iterative methods.
struct Reporter<'e> {
    emit: &'e mut dyn FnMut(CompareEvent) -> bool,
    cancelled: bool,
}

impl Reporter<'_> {
    fn say(&mut self, stage: String, fraction: f64) -> bool {
        if !self.cancelled && !(self.emit)(CompareEvent::Progress(stage, fraction)) {
            self.cancelled = true;
        }
        !self.cancelled
    }
}

fn cancelled() -> Error {
    Error::Param("comparison cancelled".into())
}

/// Builds `method` at scalar rank `r` with sweep cap `sweeps`, reporting sweeps.
fn build(
    input: &CompareInput<'_>,
    method: Method,
    r: usize,
    opts: &CompareOptions,
    rep: &mut Reporter<'_>,
    label: &str,
    fraction: f64,
) -> Result<(Built, usize, String)> {
    let kernel = &input.layer.kernel;
    let d = Dims::of(kernel);
    let mut progress =
        |it: usize, err: f64| rep.say(format!("{label}: sweep {it}, error {err:.4}"), fraction);
    let nd = |order: Order| -> Result<Built> {
        let dec = match input.nd.iter().find(|x| x.order == order) {
            Some(x) => x.clone(),
            None => Decomposition::new(kernel, 1, order)?,
        };
        Ok(Built::Nd(dec, r))
    };
    let note = |rep: &super::AlsReport| {
        let mut s = format!("{:?}", rep.stop).to_lowercase();
        if let Some(g) = &rep.degeneracy {
            s.push_str(&format!(
                "; degenerate at sweep {} (cancellation {:.1}×)",
                g.iteration, g.cancellation_ratio
            ));
        }
        s
    };
    Ok(match method {
        Method::NdDwPw => (nd(Order::DwPw)?, 0, String::new()),
        Method::NdPwDw => (nd(Order::PwDw)?, 0, String::new()),
        Method::Channel => (Built::Other(Box::new(ChannelDecomposition::new(kernel, r)?)), 0, String::new()),
        Method::Spatial => (Built::Other(Box::new(SpatialDecomposition::new(kernel, r)?)), 0, String::new()),
        Method::Cp => {
            let m = Cp4::best_of(kernel, r, &opts.als, opts.restarts, &mut progress)?;
            let (it, n) = (m.report.iterations, note(&m.report));
            (Built::Other(Box::new(m)), it, n)
        }
        Method::CpMobilenet => {
            let m = CpMobile::best_of(kernel, r, &opts.als, opts.restarts, &mut progress)?;
            let (it, n) = (m.report.iterations, note(&m.report));
            (Built::Other(Box::new(m)), it, n)
        }
        Method::Tucker2 => {
            let (r3, r4) = match d.tucker_ranks(r) {
                Rank::Two(a, b) => (a, b),
                Rank::One(a) => (a, a),
            };
            let m = Tucker2::new(kernel, r3, r4, &opts.tucker, &mut progress)?;
            let (it, n) = (m.report.iterations, note(&m.report));
            (Built::Other(Box::new(m)), it, n)
        }
    })
}

/// Options of the iterative methods with a sweep cap.
fn options(max_sweeps: usize) -> CompareOptions {
    let mut o = CompareOptions::default();
    o.als.max_iter = max_sweeps.max(1);
    o.tucker.max_iter = max_sweeps.max(1);
    o
}

/// One row: `method` at its largest rank within `budget`.
fn row(
    input: &CompareInput<'_>,
    method: Method,
    budget: u64,
    req: &CompareRequest,
    rep: &mut Reporter<'_>,
    fraction: f64,
) -> Result<MethodRow> {
    let d = Dims::of(&input.layer.kernel);
    let Some(r) = largest_rank(d, method, budget) else {
        return Ok(MethodRow {
            method: method.id().into(),
            rank: None,
            macs: 0,
            params: 0,
            weight_error: 1.0,
            output_error: None,
            decompose_ms: 0.0,
            forward_ms: None,
            sweeps: 0,
            note: "rank 1 does not fit the budget".into(),
        });
    };
    let rank = d.rank_of(method, r);
    let label = format!("{} at rank {rank}", method.id());
    rep.say(label.clone(), fraction);
    let t0 = (input.clock)();
    let (built, sweeps, note) = build(input, method, r, &options(req.max_sweeps), rep, &label, fraction)?;
    let decompose_ms = (input.clock)() - t0;
    if rep.cancelled {
        return Err(cancelled());
    }
    let (mut output_error, mut forward_ms) = (None, None);
    if let Some((x, y)) = input.activations {
        let t1 = (input.clock)();
        let out = built.forward(x, input.layer)?;
        forward_ms = Some((input.clock)() - t1);
        output_error = Some(out.rel_error(y)?);
    }
    let macs = d.macs(method, rank);
    Ok(MethodRow {
        method: method.id().into(),
        rank: Some(rank),
        macs,
        params: macs,
        weight_error: built.weight_error(),
        output_error,
        decompose_ms,
        forward_ms,
        sweeps,
        note,
    })
}

/// The Pareto series of one method: every rank for the closed forms, the ranks of the sweep's
/// budgets (and the main budget's row) for the iterative ones.
fn series(
    input: &CompareInput<'_>,
    method: Method,
    req: &CompareRequest,
    main: Option<&MethodRow>,
    rep: &mut Reporter<'_>,
    fraction: f64,
) -> Result<ParetoSeries> {
    let kernel = &input.layer.kernel;
    let d = Dims::of(kernel);
    let mut points = if !method.is_iterative() {
        error_curve(kernel, method, &[], &CompareOptions::default())?
            .into_iter()
            .map(|p| ParetoPoint { rank: p.rank, macs: p.macs, error: p.rel_weight_error })
            .collect()
    } else {
        let mut pts = Vec::new();
        let mut ranks: Vec<usize> = Vec::new();
        let main_rank = main.and_then(|m| m.rank);
        for &x in &req.sweep_speedups {
            if let Some(r) = budget_of(d, x).ok().and_then(|b| largest_rank(d, method, b)) {
                if !ranks.contains(&r) && main_rank != Some(d.rank_of(method, r)) {
                    ranks.push(r);
                }
            }
        }
        for r in ranks {
            let rank = d.rank_of(method, r);
            let label = format!("sweep: {} at rank {rank}", method.id());
            let (built, _, _) =
                build(input, method, r, &options(req.sweep_max_sweeps), rep, &label, fraction)?;
            if rep.cancelled {
                return Err(cancelled());
            }
            pts.push(ParetoPoint { rank, macs: d.macs(method, rank), error: built.weight_error() });
        }
        if let Some(m) = main.and_then(|m| m.rank.map(|k| (k, m))) {
            pts.push(ParetoPoint { rank: m.0, macs: m.1.macs, error: m.1.weight_error });
        }
        pts
    };
    points.sort_by_key(|p| p.macs);
    Ok(ParetoSeries { method: method.id().into(), points })
}

/// Runs the comparison: rows first (each emitted when ready), then the Pareto sweep.
pub fn run(
    input: &CompareInput<'_>,
    req: &CompareRequest,
    emit: &mut dyn FnMut(CompareEvent) -> bool,
) -> Result<CompareReport> {
    super::check_kernel(&input.layer.kernel)?;
    super::check_ungrouped(&input.layer.geometry)?;
    let d = Dims::of(&input.layer.kernel);
    let budget = budget_of(d, req.speedup)?;
    let mut rep = Reporter { emit, cancelled: false };
    let mut regular_forward_ms = None;
    if let Some((x, _)) = input.activations {
        let t = (input.clock)();
        crate::conv::layer_forward(x, input.layer)?;
        regular_forward_ms = Some((input.clock)() - t);
    }
    let total = 2.0 * Method::ALL.len() as f64;
    let mut rows = Vec::new();
    for (i, &m) in Method::ALL.iter().enumerate() {
        let r = row(input, m, budget, req, &mut rep, i as f64 / total)?;
        if !(rep.emit)(CompareEvent::Row(r.clone())) {
            return Err(cancelled());
        }
        rows.push(r);
    }
    let mut pareto = Vec::new();
    for (i, (&m, r)) in Method::ALL.iter().zip(&rows).enumerate() {
        let f = (Method::ALL.len() + i) as f64 / total;
        if !rep.say(format!("Pareto sweep: {}", m.id()), f) {
            return Err(cancelled());
        }
        pareto.push(series(input, m, req, Some(r), &mut rep, f)?);
    }
    Ok(CompareReport {
        shape: [d.n, d.c, d.kh, d.kw],
        speedup: req.speedup,
        regular_macs: d.regular_macs(),
        budget,
        output_hw: input.activations.map(|(_, y)| (y.h, y.w)),
        regular_forward_ms,
        rows,
        pareto,
    })
}
