//! Tucker-2 (Kim et al. 2016): `W[n,c,·] ≈ Σ_{s,t} U_out[n,s] G[s,t,·] U_in[c,t]`, i.e. a 1×1 conv
//! C → R3 (U_inᵀ), a K×K conv R3 → R4 (the core G), a 1×1 conv R4 → N (U_out). HOSVD start, then
//! HOOI sweeps (each factor the leading singular subspace of the kernel projected on the other).
//! Both factors stay orthonormal, so the error is `‖W‖² − ‖G‖²` and HOOI cannot degenerate.

use super::cp::{AlsReport, StopReason};
use super::linalg::top_left;
use super::{
    check_kernel, check_rank, check_ungrouped, kernel_from_mode_n, mode_n_matrix, to_f32_rows, Dims, Method,
    Progress, Rank, Relative,
};
use crate::conv::{conv2d, pointwise};
use crate::error::Result;
use crate::layer::{ConvGeometry, FeatureMap, Kernel};
use nalgebra::DMatrix;

/// Stopping rule of HOOI.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TuckerOptions {
    /// Maximum HOOI sweeps (0: HOSVD only).
    pub max_iter: usize,
    /// Stop when a sweep lowered the error by at most this fraction (the HOSVD start counts as
    /// sweep 0): the rule of CP-ALS ([`AlsReport::stalled`]) over [`HOOI_WINDOW`] sweep — HOOI's
    /// error falls smoothly, without CP's extrapolated steps.
    pub tol: f64,
}

/// Sweeps over which HOOI's stopping rule looks at the error's fall.
pub const HOOI_WINDOW: usize = 1;

impl Default for TuckerOptions {
    fn default() -> Self {
        TuckerOptions { max_iter: 50, tol: super::cp::DEFAULT_TOL }
    }
}

/// A Tucker-2 decomposition with its convergence report.
#[derive(Debug, Clone)]
pub struct Tucker2 {
    dims: Dims,
    r3: usize,
    r4: usize,
    /// C × R3 (column t is input-side basis vector t).
    pub u_in: DMatrix<f64>,
    /// N × R4.
    pub u_out: DMatrix<f64>,
    /// The core as an R4 × R3 × Kh × Kw kernel.
    pub core: Kernel,
    core64: DMatrix<f64>,
    rel_error: f64,
    /// Convergence curve and stop reason (degeneracy is always `None`).
    pub report: AlsReport,
}

/// Swaps the first two modes of an A × B × K² tensor stored as A × (B·K²) (column `b·K² + k`):
/// the result is B × (A·K²) (column `a·K² + k`). Mode C of N × (C·K²) is `swap12(x, N, C, K²)`.
fn swap12(x: &DMatrix<f64>, a: usize, b: usize, k2: usize) -> DMatrix<f64> {
    let mut out = DMatrix::zeros(b, a * k2);
    let (src, dst) = (x.as_slice(), out.as_mut_slice());
    // x[(ai, bi·K² + k)] = src[(bi·K² + k)·a + ai] → out[(bi, ai·K² + k)] = dst[(ai·K² + k)·b + bi].
    for bi in 0..b {
        for k in 0..k2 {
            let col = &src[(bi * k2 + k) * a..(bi * k2 + k + 1) * a];
            for (ai, &v) in col.iter().enumerate() {
                dst[(ai * k2 + k) * b + bi] = v;
            }
        }
    }
    out
}

/// Projects mode C: `Z[n, t, k] = Σ_c U_in[c,t] W[n,c,k]` as N × (R3·K²), from W's mode-C
/// unfolding `wc` (C × N·K²).
fn project_c(wc: &DMatrix<f64>, u_in: &DMatrix<f64>, d: Dims) -> DMatrix<f64> {
    let p = u_in.transpose() * wc; // R3 × N·K²
    swap12(&p, u_in.ncols(), d.n, d.k2())
}

/// A kernel's HOSVD bases (all the left singular vectors of its mode-N and mode-C unfoldings,
/// leading first), computed once and shared by Tucker-2 runs at several ranks: the HOSVD start at
/// (R3, R4) is their first R3 and R4 columns.
#[derive(Debug, Clone)]
pub struct TuckerBasis {
    dims: Dims,
    /// W as N × (C·K²).
    w: DMatrix<f64>,
    /// W's mode-C unfolding, C × (N·K²).
    wc: DMatrix<f64>,
    /// N × N.
    out: DMatrix<f64>,
    /// C × C.
    inp: DMatrix<f64>,
}

impl TuckerBasis {
    /// The bases of `kernel` (two Gram matrices and their eigen-decompositions).
    pub fn new(kernel: &Kernel) -> Result<Self> {
        check_kernel(kernel)?;
        let d = Dims::of(kernel);
        let w = mode_n_matrix(kernel);
        let wc = swap12(&w, d.n, d.c, d.k2());
        let (out, _) = top_left(&w, d.n)?;
        let (inp, _) = top_left(&wc, d.c)?;
        Ok(TuckerBasis { dims: d, w, wc, out, inp })
    }
}

impl Tucker2 {
    /// Decomposes `kernel` with ranks (R3 ≤ C, R4 ≤ N); `progress` is called after every sweep.
    pub fn new(
        kernel: &Kernel,
        r3: usize,
        r4: usize,
        opts: &TuckerOptions,
        progress: Progress<'_>,
    ) -> Result<Self> {
        Self::with_basis(kernel, r3, r4, &TuckerBasis::new(kernel)?, opts, progress)
    }

    /// As [`Tucker2::new`], from the HOSVD bases of the same kernel (the same result).
    pub fn with_basis(
        kernel: &Kernel,
        r3: usize,
        r4: usize,
        basis: &TuckerBasis,
        opts: &TuckerOptions,
        progress: Progress<'_>,
    ) -> Result<Self> {
        check_kernel(kernel)?;
        let d = Dims::of(kernel);
        if d != basis.dims {
            return Err(crate::error::Error::Shape("Tucker-2 bases of another kernel shape".into()));
        }
        check_rank("Tucker-2 input", r3, d.c)?;
        check_rank("Tucker-2 output", r4, d.n)?;
        let (w, wc) = (&basis.w, &basis.wc);
        let total = w.norm_squared();
        let mut u_out = basis.out.columns(0, r4).into_owned();
        let mut u_in = basis.inp.columns(0, r3).into_owned();
        let err_of = |core: &DMatrix<f64>| rel_from(total, core.norm_squared());
        let mut core = u_out.transpose() * project_c(wc, &u_in, d);
        let mut err = err_of(&core);
        let mut curve = vec![err];
        let mut stop = StopReason::MaxIter;
        for it in 1..=opts.max_iter {
            // U_in from W projected on U_out: Y = U_outᵀ ×_N W, R4 × C × K².
            let y = u_out.transpose() * w;
            u_in = top_left(&swap12(&y, r4, d.c, d.k2()), r3)?.0;
            let z = project_c(wc, &u_in, d);
            u_out = top_left(&z, r4)?.0;
            core = u_out.transpose() * z;
            let new = err_of(&core);
            curve.push(new);
            err = new;
            if !progress(it, err) {
                stop = StopReason::Cancelled;
                break;
            }
            if AlsReport::stalled(&curve, opts.tol, HOOI_WINDOW) {
                stop = StopReason::Converged;
                break;
            }
        }
        let core_k = core_kernel(&core, r4, r3, d)?;
        let mut t = Tucker2 {
            dims: d,
            r3,
            r4,
            u_in,
            u_out,
            core: core_k,
            core64: core,
            rel_error: err,
            report: AlsReport {
                curve,
                stop,
                degeneracy: None,
                iterations: 0,
                rejected_steps: 0,
                tol: opts.tol,
                window: HOOI_WINDOW,
            },
        };
        t.report.iterations = t.report.curve.len() - 1;
        // The error from the explicit reconstruction (no ‖W‖² − ‖G‖² cancellation).
        t.rel_error = super::rel_error_mode_n(kernel, &t.reconstruct64());
        Ok(t)
    }

    /// The f64 reconstruction as N × (C·K²).
    fn reconstruct64(&self) -> DMatrix<f64> {
        let (d, k2) = (self.dims, self.dims.k2());
        let g = &self.u_out * &self.core64; // N × R3·K², column t·K² + k
                                            // Mode R3 first (R3 × N·K²), contracted with U_in (C × R3), back to N × C·K².
        let gt = swap12(&g, d.n, self.r3, k2);
        let oc = &self.u_in * gt; // C × N·K²
        swap12(&oc, d.c, d.n, k2)
    }
}

/// 1 − ‖G‖²/‖W‖², as a relative error (0 for a zero kernel).
fn rel_from(total: f64, kept: f64) -> f64 {
    if total <= 0.0 {
        0.0
    } else {
        ((total - kept) / total).max(0.0).sqrt()
    }
}

/// The R4 × (R3·K²) core as an R4 × R3 × Kh × Kw kernel.
fn core_kernel(core: &DMatrix<f64>, r4: usize, r3: usize, d: Dims) -> Result<Kernel> {
    Kernel::new(r4, r3, d.kh, d.kw, to_f32_rows(core))
}

impl Relative for Tucker2 {
    fn method(&self) -> Method {
        Method::Tucker2
    }
    fn rank(&self) -> Rank {
        Rank::Two(self.r3, self.r4)
    }
    fn dims(&self) -> Dims {
        self.dims
    }
    fn reconstruct(&self) -> Result<Kernel> {
        kernel_from_mode_n(&self.reconstruct64(), self.dims)
    }
    fn rel_weight_error(&self) -> f64 {
        self.rel_error
    }
    fn forward(&self, x: &FeatureMap, bias: Option<&[f32]>, geom: &ConvGeometry) -> Result<FeatureMap> {
        check_ungrouped(geom)?;
        let a = pointwise(x, &to_f32_rows(&self.u_in.transpose()), self.r3, 1, None)?;
        let b = conv2d(&a, &self.core, None, geom)?;
        pointwise(&b, &to_f32_rows(&self.u_out), self.dims.n, 1, bias)
    }
}
