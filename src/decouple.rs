//! Network decoupling: per-slice SVDs of a conv kernel, truncation to T terms, factors in branch
//! and merged form, energy/error curves and threshold rules (METHOD.md).

use crate::error::Result;
use crate::layer::{Kernel, Order};
use serde::{Deserialize, Serialize};

/// The SVD of one slice of the kernel.
/// DW→PW: slice = input channel c (global index), matrix M_c is (N/groups) × K².
/// PW→DW: slice = output channel n, matrix M'_n is c × K² (c = input channels per group).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slice {
    /// Singular values, descending, ≥ 0, length `full_rank`.
    pub sigma: Vec<f64>,
    /// Depthwise filters: `full_rank` rows of K² values, row k = v_k (unit norm, or all zero when σ_k = 0).
    pub dw: Vec<f64>,
    /// Pointwise weights: `full_rank` rows of `m` values, row k = σ_k u_k (m = rows of the slice matrix).
    pub pw: Vec<f64>,
    /// ‖M‖²_F of the slice (equals Σ σ² up to rounding; checked at run time).
    pub energy: f64,
}

/// All slices of a kernel decoupled in one ordering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decomposition {
    pub order: Order,
    /// Output channels, input channels per group, kernel height and width, groups (of the original kernel).
    pub n: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub groups: usize,
    /// Terms needed for an exact decoupling: min(N/groups, K²) for DW→PW, min(c, K²) for PW→DW.
    pub full_rank: usize,
    /// DW→PW: c·groups slices (one per input channel); PW→DW: n slices (one per output channel).
    pub slices: Vec<Slice>,
}

/// Rule that turns an energy threshold τ into T (METHOD.md, "Choosing T").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThresholdRule {
    /// Official code: mean over non-zero slices of e_c(t) ≥ τ.
    Mean,
    /// TRP code: T = max over slices of min{t : e_c(t) ≥ τ}.
    Max,
}

/// Truncated factors in merged form, ready to run (f32).
/// DW→PW: `dw` has (C_total·T) rows of K² (intermediate channel c·T + t), `pw` is N × (C/groups... per group) —
/// see [`Merged::pw_cols`]; PW→DW: `pw` has (N·T) rows (row n·T + t) over the c inputs of n's group,
/// `dw` has (N·T) rows of K², and output n sums rows n·T..n·T+T.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Merged {
    pub order: Order,
    pub t: usize,
    pub n: usize,
    /// Input channels of the whole layer.
    pub c_total: usize,
    pub kh: usize,
    pub kw: usize,
    pub groups: usize,
    pub dw: Vec<f32>,
    pub pw: Vec<f32>,
}

impl Merged {
    /// Columns of one row of `pw`: DW→PW: (c_total/groups)·T; PW→DW: c_total/groups.
    pub fn pw_cols(&self) -> usize {
        match self.order {
            Order::DwPw => self.c_total / self.groups * self.t,
            Order::PwDw => self.c_total / self.groups,
        }
    }
}

/// One branch of the branch form (term t): a depthwise op and a pointwise op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Branch {
    /// DW→PW: C_total filters (one per input channel); PW→DW: N filters (one per output channel). K² each.
    pub dw: Vec<f32>,
    /// DW→PW: N × (c per group) matrix; PW→DW: N × (c per group) matrix.
    pub pw: Vec<f32>,
}

impl Decomposition {
    /// Decouples every slice of `kernel` in `order`. Grouped kernels (groups > 1) are decoupled
    /// group by group. Fails on non-finite weights or a failed numerical self-check.
    pub fn new(kernel: &Kernel, groups: usize, order: Order) -> Result<Self> {
        let _ = (kernel, groups, order);
        todo!("implemented by the core engine")
    }

    /// Energy kept for T = 1..=full_rank (index T−1): 1 − Σ_{k>T}σ² / Σσ² over all slices.
    pub fn energy_kept(&self) -> Vec<f64> {
        todo!()
    }

    /// Relative weight error ‖W − W_T‖_F / ‖W‖_F for T = 1..=full_rank (index T−1), from the σ tails.
    pub fn rel_weight_error(&self) -> Vec<f64> {
        todo!()
    }

    /// Per-slice energy fractions e_s(t) for t = 1..=full_rank.
    pub fn slice_energy(&self, slice: usize) -> Vec<f64> {
        let _ = slice;
        todo!()
    }

    /// Smallest T whose energy reaches τ ∈ (0, 1] under `rule`.
    pub fn threshold_t(&self, tau: f64, rule: ThresholdRule) -> Result<usize> {
        let _ = (tau, rule);
        todo!()
    }

    /// The reconstructed kernel W_T (same shape as the original), 1 ≤ T ≤ full_rank.
    pub fn reconstruct(&self, t: usize) -> Result<Kernel> {
        let _ = t;
        todo!()
    }

    /// Truncated factors in merged form.
    pub fn merged(&self, t: usize) -> Result<Merged> {
        let _ = t;
        todo!()
    }

    /// Truncated factors in branch form: T branches.
    pub fn branches(&self, t: usize) -> Result<Vec<Branch>> {
        let _ = t;
        todo!()
    }
}
