//! The equal-cost comparison: every method at its largest rank whose MACs (per output pixel, stride
//! 1) fit a budget, and every method's error across its rank range (data for a Pareto plot).

use super::cp::AlsOptions;
use super::{
    ChannelDecomposition, Cp4, CpMobile, Dims, Method, Rank, Relative, SpatialDecomposition, Tucker2,
    TuckerOptions,
};
use crate::decouple::Decomposition;
use crate::error::{Error, Result};
use crate::layer::{Kernel, Order};
use serde::Serialize;

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparisonRow {
    /// Method id (`nd-dw-pw`, `nd-pw-dw`, `channel`, `spatial`, `cp`, `cp-mobilenet`, `tucker2`).
    pub method: &'static str,
    /// T for ND, d′ or R, [R3, R4] for Tucker-2; 0 when not even rank 1 fits the budget.
    pub rank: Rank,
    /// MACs per output pixel at stride 1 (0 when nothing fits).
    pub macs: u64,
    /// Parameters (no bias).
    pub params: u64,
    /// ‖W − Ŵ‖_F / ‖W‖_F (1 when nothing fits: the empty approximation).
    pub rel_weight_error: f64,
}

/// Options of the comparison's iterative methods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareOptions {
    /// CP-ALS options (both CP variants).
    pub als: AlsOptions,
    /// CP runs per method (an SVD start, then random starts); the best is kept.
    pub restarts: usize,
    /// HOOI options.
    pub tucker: TuckerOptions,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions { als: AlsOptions::default(), restarts: 1, tucker: TuckerOptions::default() }
    }
}

/// The largest scalar rank of `method` whose MACs fit `budget`, if any (ranks 1..=max_rank; MACs
/// are non-decreasing in the rank for every method).
pub fn largest_rank(d: Dims, method: Method, budget: u64) -> Option<usize> {
    let max = d.max_rank(method);
    let fits = |r: usize| d.macs(method, d.rank_of(method, r)) <= budget;
    if max == 0 || !fits(1) {
        return None;
    }
    // binary search for the last r with fits(r)
    let (mut lo, mut hi) = (1usize, max);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Some(lo)
}

/// ND's relative weight error at T from the decomposition's σ tails.
fn nd_error(kernel: &Kernel, order: Order, t: usize) -> Result<f64> {
    let dec = Decomposition::new(kernel, 1, order)?;
    dec.rel_weight_error()
        .get(t - 1)
        .copied()
        .ok_or_else(|| Error::Param(format!("T = {t} is outside 1..={}", dec.full_rank)))
}

/// The relative weight error of `method` at scalar rank `r` (Tucker-2: R3 = R4 = r, clamped).
pub fn error_at(kernel: &Kernel, method: Method, r: usize, opts: &CompareOptions) -> Result<f64> {
    let d = Dims::of(kernel);
    let mut go = super::no_progress();
    Ok(match method {
        Method::NdDwPw => nd_error(kernel, Order::DwPw, r)?,
        Method::NdPwDw => nd_error(kernel, Order::PwDw, r)?,
        Method::Channel => ChannelDecomposition::new(kernel, r)?.rel_weight_error(),
        Method::Spatial => SpatialDecomposition::new(kernel, r)?.rel_weight_error(),
        Method::Cp => Cp4::best_of(kernel, r, &opts.als, opts.restarts, &mut go)?.rel_weight_error(),
        Method::CpMobilenet => {
            CpMobile::best_of(kernel, r, &opts.als, opts.restarts, &mut go)?.rel_weight_error()
        }
        Method::Tucker2 => {
            let (r3, r4) = match d.tucker_ranks(r) {
                Rank::Two(a, b) => (a, b),
                Rank::One(a) => (a, a),
            };
            Tucker2::new(kernel, r3, r4, &opts.tucker, &mut go)?.rel_weight_error()
        }
    })
}

/// Every method (in [`Method::ALL`] order) at its largest rank within `budget` MACs per output
/// pixel (stride 1); the kernel must be ungrouped.
pub fn compare(kernel: &Kernel, budget: u64, opts: &CompareOptions) -> Result<Vec<ComparisonRow>> {
    super::check_kernel(kernel)?;
    let d = Dims::of(kernel);
    Method::ALL
        .iter()
        .map(|&m| {
            let Some(r) = largest_rank(d, m, budget) else {
                return Ok(ComparisonRow {
                    method: m.id(),
                    rank: d.rank_of(m, 0),
                    macs: 0,
                    params: 0,
                    rel_weight_error: 1.0,
                });
            };
            let rank = d.rank_of(m, r);
            let macs = d.macs(m, rank);
            Ok(ComparisonRow {
                method: m.id(),
                rank,
                macs,
                params: macs,
                rel_weight_error: error_at(kernel, m, r, opts)?,
            })
        })
        .collect()
}

/// One point of an error-against-cost curve.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurvePoint {
    /// The rank.
    pub rank: Rank,
    /// MACs per output pixel at stride 1.
    pub macs: u64,
    /// Relative weight error.
    pub rel_weight_error: f64,
}

/// A method's error across ranks: every rank 1..=max for the closed forms (ND, CD, SD: from σ tails,
/// cheap), the given `ranks` for the iterative ones (each is a full ALS/HOOI run; pass a few).
pub fn error_curve(
    kernel: &Kernel,
    method: Method,
    ranks: &[usize],
    opts: &CompareOptions,
) -> Result<Vec<CurvePoint>> {
    super::check_kernel(kernel)?;
    let d = Dims::of(kernel);
    let point = |r: usize, e: f64| {
        let rank = d.rank_of(method, r);
        CurvePoint { rank, macs: d.macs(method, rank), rel_weight_error: e }
    };
    let closed = match method {
        Method::NdDwPw => Some(Decomposition::new(kernel, 1, Order::DwPw)?.rel_weight_error()),
        Method::NdPwDw => Some(Decomposition::new(kernel, 1, Order::PwDw)?.rel_weight_error()),
        Method::Channel => Some(ChannelDecomposition::error_curve(kernel)?),
        Method::Spatial => Some(SpatialDecomposition::error_curve(kernel)?),
        _ => None,
    };
    match closed {
        Some(errs) => Ok(errs.iter().enumerate().map(|(i, &e)| point(i + 1, e)).collect()),
        None => ranks.iter().map(|&r| Ok(point(r, error_at(kernel, method, r, opts)?))).collect(),
    }
}
