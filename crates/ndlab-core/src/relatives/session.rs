//! The page's comparison job (pure; run by the relatives Web Worker): every method at its
//! equal-cost rank with weight error, output error on real activations through the method's own
//! layers, and measured times; then a Pareto sweep (error against MACs over each method's ranks).
//!
//! Rows and progress are emitted as they are ready through a callback that can cancel the job.
//!
//! **Units.** The job splits into independent units ([`units`]): one method's equal-cost row, or
//! one method's Pareto series. Each unit is a pure function of the layer, the input and the request
//! ([`run_unit`]; no state is shared between units), so running them on one worker or spread over
//! several gives the same rows and series, and [`assemble`] (or [`merge`], on whole partial reports)
//! puts them together deterministically: rows and series in [`Method::ALL`] order, and each
//! iterative method's series gets its row's point at the budget's rank. A host with a pool of
//! workers asks [`units`] for the list with cost estimates, runs the biggest first, and either
//! calls [`run_unit`] directly or sends each worker a [`CompareRequest`] whose `units` field names
//! the units it should run ([`run`] then returns a partial report for [`merge`]).
//!
//! Pareto series of CP and MobileNet CP: the ranks of the sweep's budgets (the budget's own rank is
//! the row's), ascending, the smallest from a cold start and every next one warm-started from the
//! previous rank's solution ([`Cp4::warm`]), each at most `sweep_max_sweeps` sweeps and stopped
//! earlier by the stopping rule. Tucker-2: HOSVD + HOOI at every rank.

use super::{
    compare::largest_rank, error_curve, ChannelDecomposition, CompareOptions, Cp4, CpMobile, Dims, Method,
    Progress, Rank, Relative, SpatialDecomposition, Tucker2, TuckerBasis,
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
    /// Only these units (None: every unit of [`units`]); [`run`] then returns a partial report
    /// for [`merge`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<Vec<Unit>>,
    /// Do not time the regular layer's forward pass (a pool's other row units: one measures it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_regular_forward: bool,
}

impl Default for CompareRequest {
    fn default() -> Self {
        CompareRequest {
            speedup: 4.0,
            max_sweeps: 200,
            sweep_max_sweeps: 25,
            sweep_speedups: vec![32.0, 16.0, 8.0, 2.0],
            units: None,
            skip_regular_forward: false,
        }
    }
}

/// What a unit computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitKind {
    /// The method's row at the budget (emitted as a [`CompareEvent::Row`]).
    Row,
    /// The method's Pareto series (without the budget's point, which [`assemble`] takes from the row).
    Series,
}

/// An independent unit of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Unit {
    /// Row or series.
    pub kind: UnitKind,
    /// Method id (as on the command line).
    pub method: String,
}

impl Unit {
    /// The row of `m`.
    pub fn row(m: Method) -> Unit {
        Unit { kind: UnitKind::Row, method: m.id().into() }
    }

    /// The Pareto series of `m`.
    pub fn series(m: Method) -> Unit {
        Unit { kind: UnitKind::Series, method: m.id().into() }
    }
}

/// A unit with its estimated cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitPlan {
    /// The unit.
    pub unit: Unit,
    /// Estimated single-thread time, milliseconds of native code (the browser's wasm is about
    /// 1.3–2× slower); for scheduling, biggest first. A model of the flops, not a measurement.
    pub cost_ms: f64,
}

/// What a unit produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitOutput {
    /// A row.
    Row(MethodRow),
    /// A Pareto series (without the budget's point).
    Series(ParetoSeries),
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

/// The note of an iterative method's row: why it stopped (the stopping rule in words), and
/// degeneracy when it was seen.
fn note(rep: &super::AlsReport) -> String {
    let mut s = match rep.stop {
        super::StopReason::Converged if rep.window == 1 => {
            format!("converged (a sweep lowered the error by < {} %)", 100.0 * rep.tol)
        }
        super::StopReason::Converged => {
            format!("converged (error fell < {} % per sweep over {} sweeps)", 100.0 * rep.tol, rep.window)
        }
        super::StopReason::MaxIter => format!("sweep cap reached ({})", rep.iterations),
        super::StopReason::Cancelled => "cancelled".into(),
    };
    if let Some(g) = &rep.degeneracy {
        s.push_str(&format!(
            "; degenerate at sweep {} (cancellation {:.1}×)",
            g.iteration, g.cancellation_ratio
        ));
    }
    s
}

/// Tucker-2's (R3, R4) for the scalar rank `r`.
fn tucker_pair(d: Dims, r: usize) -> (usize, usize) {
    match d.tucker_ranks(r) {
        Rank::Two(a, b) => (a, b),
        Rank::One(a) => (a, a),
    }
}

/// Builds `method` at scalar rank `r` with the options `opts`, reporting sweeps.
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
            let (r3, r4) = tucker_pair(d, r);
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

/// The scalar ranks of an iterative method's Pareto series: the ranks of the sweep's budgets,
/// without the main budget's (its point is the row's), ascending, each once.
fn swept_ranks(d: Dims, method: Method, req: &CompareRequest) -> Vec<usize> {
    let main = budget_of(d, req.speedup).ok().and_then(|b| largest_rank(d, method, b));
    let mut ranks: Vec<usize> = Vec::new();
    for &x in &req.sweep_speedups {
        if let Some(r) = budget_of(d, x).ok().and_then(|b| largest_rank(d, method, b)) {
            let same_as_main = main.is_some_and(|m| d.rank_of(method, m) == d.rank_of(method, r));
            if !ranks.contains(&r) && !same_as_main {
                ranks.push(r);
            }
        }
    }
    ranks.sort_unstable();
    ranks
}

/// A CP variant's solution, for warm starts along a Pareto series.
enum CpRun {
    Four(Cp4),
    Mobile(CpMobile),
}

impl CpRun {
    fn fit(
        kernel: &crate::layer::Kernel,
        method: Method,
        r: usize,
        start: Option<&CpRun>,
        opts: &super::AlsOptions,
        progress: Progress<'_>,
    ) -> Result<CpRun> {
        Ok(match (method, start) {
            (Method::Cp, Some(CpRun::Four(s))) => CpRun::Four(Cp4::warm(kernel, r, s, opts, progress)?),
            (Method::Cp, _) => CpRun::Four(Cp4::new(kernel, r, opts, progress)?),
            (_, Some(CpRun::Mobile(s))) => CpRun::Mobile(CpMobile::warm(kernel, r, s, opts, progress)?),
            _ => CpRun::Mobile(CpMobile::new(kernel, r, opts, progress)?),
        })
    }

    fn error(&self) -> f64 {
        match self {
            CpRun::Four(m) => m.rel_weight_error(),
            CpRun::Mobile(m) => m.rel_weight_error(),
        }
    }
}

/// The Pareto series of one method without the budget's point: every rank for the closed forms,
/// the ranks of the sweep's budgets for the iterative ones (CP: a warm-started chain when `warm`).
fn series(
    input: &CompareInput<'_>,
    method: Method,
    req: &CompareRequest,
    warm: bool,
    rep: &mut Reporter<'_>,
    fraction: f64,
) -> Result<ParetoSeries> {
    let kernel = &input.layer.kernel;
    let d = Dims::of(kernel);
    let opts = options(req.sweep_max_sweeps);
    let mut points: Vec<ParetoPoint> = match method {
        Method::NdDwPw | Method::NdPwDw => {
            let order = if method == Method::NdDwPw { Order::DwPw } else { Order::PwDw };
            let errs = match input.nd.iter().find(|x| x.order == order) {
                Some(dec) => dec.rel_weight_error(),
                None => Decomposition::new(kernel, 1, order)?.rel_weight_error(),
            };
            errs.iter()
                .enumerate()
                .map(|(i, &e)| {
                    let rank = d.rank_of(method, i + 1);
                    ParetoPoint { rank, macs: d.macs(method, rank), error: e }
                })
                .collect()
        }
        Method::Channel | Method::Spatial => error_curve(kernel, method, &[], &CompareOptions::default())?
            .into_iter()
            .map(|p| ParetoPoint { rank: p.rank, macs: p.macs, error: p.rel_weight_error })
            .collect(),
        Method::Cp | Method::CpMobilenet => {
            let mut pts = Vec::new();
            let mut prev: Option<CpRun> = None;
            for r in swept_ranks(d, method, req) {
                let rank = d.rank_of(method, r);
                let label = format!("sweep: {} at rank {rank}", method.id());
                let mut progress =
                    |it: usize, err: f64| rep.say(format!("{label}: sweep {it}, error {err:.4}"), fraction);
                let start = if warm { prev.as_ref() } else { None };
                let run = CpRun::fit(kernel, method, r, start, &opts.als, &mut progress)?;
                if rep.cancelled {
                    return Err(cancelled());
                }
                pts.push(ParetoPoint { rank, macs: d.macs(method, rank), error: run.error() });
                prev = Some(run);
            }
            pts
        }
        Method::Tucker2 => {
            // One HOSVD for every rank.
            let ranks = swept_ranks(d, method, req);
            let basis = if ranks.is_empty() { None } else { Some(TuckerBasis::new(kernel)?) };
            let mut pts = Vec::new();
            for (r, basis) in ranks.into_iter().zip(basis.iter().cycle()) {
                let rank = d.rank_of(method, r);
                let label = format!("sweep: {} at rank {rank}", method.id());
                let mut progress =
                    |it: usize, err: f64| rep.say(format!("{label}: sweep {it}, error {err:.4}"), fraction);
                let (r3, r4) = tucker_pair(d, r);
                let t = Tucker2::with_basis(kernel, r3, r4, basis, &opts.tucker, &mut progress)?;
                if rep.cancelled {
                    return Err(cancelled());
                }
                pts.push(ParetoPoint { rank, macs: d.macs(method, rank), error: t.rel_weight_error() });
            }
            pts
        }
    };
    points.sort_by_key(|p| p.macs);
    Ok(ParetoSeries { method: method.id().into(), points })
}

/// Every unit of a comparison of a layer of shape `d`, in the order [`run`] runs them (rows in
/// [`Method::ALL`] order, then series), with cost estimates; only `req.units` when given.
pub fn units(req: &CompareRequest, d: Dims) -> Result<Vec<UnitPlan>> {
    let budget = budget_of(d, req.speedup)?;
    let mut all: Vec<Unit> = Method::ALL.iter().map(|&m| Unit::row(m)).collect();
    all.extend(Method::ALL.iter().map(|&m| Unit::series(m)));
    if let Some(only) = &req.units {
        for u in only {
            Method::from_id(&u.method)?;
        }
        all.retain(|u| only.contains(u));
    }
    Ok(all
        .into_iter()
        .map(|unit| {
            let cost_ms = cost_ms(d, budget, req, &unit);
            UnitPlan { unit, cost_ms }
        })
        .collect())
}

/// Estimated native milliseconds of a CP-ALS sweep at rank `r` (`modes`: 3 or 4): two f32
/// contractions of the tensor with R columns, Cholesky factorisations, solves and Gram matrices.
/// Fitted to about 15 ms at R = 284 and 55 ms at R = 569 on the 256-channel layer (extrapolation
/// attempts included).
fn cp_sweep_ms(d: Dims, r: usize, modes: usize) -> f64 {
    let (x, r, nc) = ((d.n * d.c * d.k2()) as f64, r as f64, (d.n + d.c) as f64);
    x * r * 5.5e-8 + nc * r * r * 9.5e-8 + modes as f64 * r * r * r * 2.8e-8
}

/// Estimated native milliseconds of a symmetric eigen-decomposition of order `n`, with
/// eigenvectors (12 ms at 256, 330 ms at 768) or without (a third).
fn eigen_ms(n: usize, vectors: bool) -> f64 {
    let n = n as f64;
    n * n * n * if vectors { 7.2e-7 } else { 2.4e-7 }
}

/// Estimated native milliseconds of a GEMM of `macs` f64 multiply-adds.
fn gemm_ms(macs: f64) -> f64 {
    macs / 3e7
}

/// The cost model of [`UnitPlan::cost_ms`]: flop counts with rates measured on the 256-channel
/// layers on one core (a forward pass assumed on a 40×40 output, the page's default input).
fn cost_ms(d: Dims, budget: u64, req: &CompareRequest, unit: &Unit) -> f64 {
    let Ok(m) = Method::from_id(&unit.method) else { return 0.0 };
    let x = (d.n * d.c * d.k2()) as f64;
    let row_rank = largest_rank(d, m, budget);
    // The row's forward pass and output error: the method's MACs on 1600 output pixels.
    let forward = row_rank.map_or(0.0, |r| d.macs(m, d.rank_of(m, r)) as f64 * 1600.0 / 1e7);
    let big = d.n.max(d.c);
    let tucker_sweep = |r: usize| {
        let (r3, r4) = tucker_pair(d, r);
        2.0 * eigen_ms(big, true) + gemm_ms(4.0 * x * (r3 + r4) as f64)
    };
    let cp_start = eigen_ms(d.n, true) + eigen_ms(d.c, true);
    let modes = if m == Method::Cp { 4 } else { 3 };
    let channel = gemm_ms(x * d.n.min(d.c * d.k2()) as f64);
    let spatial_side = (d.c * d.kh).min(d.n * d.kw);
    let spatial = gemm_ms(x * spatial_side as f64);
    match (unit.kind, m) {
        (UnitKind::Row, Method::NdDwPw | Method::NdPwDw) => 1.0 + forward,
        (UnitKind::Row, Method::Channel) => channel + eigen_ms(d.n.min(d.c * d.k2()), true) + forward,
        (UnitKind::Series, Method::Channel) => channel + eigen_ms(d.n.min(d.c * d.k2()), false),
        (UnitKind::Row, Method::Spatial) => spatial + eigen_ms(spatial_side, true) + forward,
        (UnitKind::Series, Method::Spatial) => spatial + eigen_ms(spatial_side, false),
        (UnitKind::Row, Method::Cp | Method::CpMobilenet) => {
            // Rows stop after about 60 sweeps on the real layers (at most max_sweeps).
            let sweeps = (req.max_sweeps as f64).min(60.0);
            row_rank.map_or(0.0, |r| cp_start + cp_sweep_ms(d, r, modes) * sweeps) + forward
        }
        (UnitKind::Row, Method::Tucker2) => {
            // HOSVD, then about 4 sweeps.
            row_rank.map_or(0.0, |r| {
                2.0 * eigen_ms(big, true) + tucker_sweep(r) * (req.max_sweeps as f64).min(4.0)
            }) + forward
        }
        (UnitKind::Series, Method::NdDwPw | Method::NdPwDw) => 1.0,
        (UnitKind::Series, Method::Cp | Method::CpMobilenet) => {
            let ranks = swept_ranks(d, m, req);
            let sweeps = req.sweep_max_sweeps as f64;
            let start = if ranks.is_empty() { 0.0 } else { cp_start };
            start + ranks.iter().map(|&r| cp_sweep_ms(d, r, modes) * sweeps).sum::<f64>()
        }
        (UnitKind::Series, Method::Tucker2) => {
            let ranks = swept_ranks(d, m, req);
            let sweeps = (req.sweep_max_sweeps as f64).min(4.0);
            let basis = if ranks.is_empty() { 0.0 } else { 2.0 * eigen_ms(big, true) };
            basis + ranks.iter().map(|&r| tucker_sweep(r) * sweeps).sum::<f64>()
        }
    }
}

/// Runs one unit; a row is also emitted as a [`CompareEvent::Row`]. Progress fractions are within
/// the unit (0 at its start).
pub fn run_unit(
    input: &CompareInput<'_>,
    req: &CompareRequest,
    unit: &Unit,
    emit: &mut dyn FnMut(CompareEvent) -> bool,
) -> Result<UnitOutput> {
    super::check_kernel(&input.layer.kernel)?;
    super::check_ungrouped(&input.layer.geometry)?;
    let mut rep = Reporter { emit, cancelled: false };
    unit_in(input, req, unit, &mut rep, 0.0)
}

fn unit_in(
    input: &CompareInput<'_>,
    req: &CompareRequest,
    unit: &Unit,
    rep: &mut Reporter<'_>,
    fraction: f64,
) -> Result<UnitOutput> {
    let d = Dims::of(&input.layer.kernel);
    let budget = budget_of(d, req.speedup)?;
    let m = Method::from_id(&unit.method)?;
    match unit.kind {
        UnitKind::Row => {
            let r = row(input, m, budget, req, rep, fraction)?;
            if !(rep.emit)(CompareEvent::Row(r.clone())) {
                rep.cancelled = true;
                return Err(cancelled());
            }
            Ok(UnitOutput::Row(r))
        }
        UnitKind::Series => {
            if !rep.say(format!("Pareto sweep: {}", m.id()), fraction) {
                return Err(cancelled());
            }
            Ok(UnitOutput::Series(series(input, m, req, true, rep, fraction)?))
        }
    }
}

/// The Pareto series of `method` with or without warm starts (for tests and measurements;
/// [`run_unit`] always warm-starts).
#[doc(hidden)]
pub fn series_with_warm_starts(
    input: &CompareInput<'_>,
    req: &CompareRequest,
    method: Method,
    warm: bool,
) -> Result<ParetoSeries> {
    let mut ok = |_: CompareEvent| true;
    let mut rep = Reporter { emit: &mut ok, cancelled: false };
    series(input, method, req, warm, &mut rep, 0.0)
}

/// Puts unit outputs together: rows and series in [`Method::ALL`] order (each unit at most once),
/// and every series of an iterative method gets its row's point at the budget's rank (closed
/// forms already have it: their series hold every rank).
pub fn assemble(
    d: Dims,
    req: &CompareRequest,
    output_hw: Option<(usize, usize)>,
    regular_forward_ms: Option<f64>,
    outputs: Vec<UnitOutput>,
) -> Result<CompareReport> {
    let budget = budget_of(d, req.speedup)?;
    let index = |id: &str| Method::ALL.iter().position(|m| m.id() == id).unwrap_or(usize::MAX);
    let (mut rows, mut pareto) = (Vec::new(), Vec::new());
    for o in outputs {
        match o {
            UnitOutput::Row(r) if !rows.iter().any(|x: &MethodRow| x.method == r.method) => rows.push(r),
            UnitOutput::Series(s) if !pareto.iter().any(|x: &ParetoSeries| x.method == s.method) => {
                pareto.push(s)
            }
            _ => return Err(Error::Param("a unit's output appears twice".into())),
        }
    }
    rows.sort_by_key(|r| index(&r.method));
    pareto.sort_by_key(|s| index(&s.method));
    for s in &mut pareto {
        let Some(row) = rows.iter().find(|r| r.method == s.method) else { continue };
        let Some(rank) = row.rank else { continue };
        match s.points.iter_mut().find(|p| p.rank == rank) {
            Some(p) => p.error = row.weight_error,
            None => s.points.push(ParetoPoint { rank, macs: row.macs, error: row.weight_error }),
        }
        s.points.sort_by_key(|p| p.macs);
    }
    Ok(CompareReport {
        shape: [d.n, d.c, d.kh, d.kw],
        speedup: req.speedup,
        regular_macs: d.regular_macs(),
        budget,
        output_hw,
        regular_forward_ms,
        rows,
        pareto,
    })
}

/// Merges partial reports of the same comparison (the same layer and request, different `units`)
/// into one, as [`assemble`] does with unit outputs.
pub fn merge(parts: Vec<CompareReport>) -> Result<CompareReport> {
    let first = parts.first().ok_or_else(|| Error::Param("no report to merge".into()))?;
    let (shape, speedup) = (first.shape, first.speedup);
    if parts.iter().any(|p| p.shape != shape || p.speedup != speedup) {
        return Err(Error::Param("partial reports of different comparisons".into()));
    }
    let d = Dims { n: shape[0], c: shape[1], kh: shape[2], kw: shape[3] };
    let req = CompareRequest { speedup, ..CompareRequest::default() };
    let output_hw = parts.iter().find_map(|p| p.output_hw);
    let regular_forward_ms = parts.iter().find_map(|p| p.regular_forward_ms);
    let mut outputs = Vec::new();
    for p in parts {
        outputs.extend(p.rows.into_iter().map(UnitOutput::Row));
        outputs.extend(p.pareto.into_iter().map(UnitOutput::Series));
    }
    assemble(d, &req, output_hw, regular_forward_ms, outputs)
}

/// Runs the comparison (every unit, or `req.units`): rows first (each emitted when ready), then
/// the Pareto series.
pub fn run(
    input: &CompareInput<'_>,
    req: &CompareRequest,
    emit: &mut dyn FnMut(CompareEvent) -> bool,
) -> Result<CompareReport> {
    super::check_kernel(&input.layer.kernel)?;
    super::check_ungrouped(&input.layer.geometry)?;
    let d = Dims::of(&input.layer.kernel);
    let plan = units(req, d)?;
    let mut rep = Reporter { emit, cancelled: false };
    let mut regular_forward_ms = None;
    let rows = plan.iter().any(|p| p.unit.kind == UnitKind::Row);
    if let Some((x, _)) = input.activations.filter(|_| rows && !req.skip_regular_forward) {
        let t = (input.clock)();
        crate::conv::layer_forward(x, input.layer)?;
        regular_forward_ms = Some((input.clock)() - t);
    }
    let total: f64 = plan.iter().map(|p| p.cost_ms.max(1.0)).sum();
    let mut done = 0.0;
    let mut outputs = Vec::new();
    for p in &plan {
        outputs.push(unit_in(input, req, &p.unit, &mut rep, done / total)?);
        done += p.cost_ms.max(1.0);
    }
    assemble(d, req, input.activations.map(|(_, y)| (y.h, y.w)), regular_forward_ms, outputs)
}
