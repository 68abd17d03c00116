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
    /// Stop when the relative error improves by less than this fraction in a sweep.
    pub tol: f64,
}

impl Default for TuckerOptions {
    fn default() -> Self {
        TuckerOptions { max_iter: 50, tol: 1e-7 }
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

/// The C × (N·K²) unfolding (mode C) of an N × C × K² tensor stored as N × (C·K²).
fn mode_c(x: &DMatrix<f64>, n: usize, c: usize, k2: usize) -> DMatrix<f64> {
    DMatrix::from_fn(c, n * k2, |ci, col| x[(col / k2, ci * k2 + col % k2)])
}

/// Projects mode C: `Z[n, t, k] = Σ_c U_in[c,t] W[n,c,k]` as N × (R3·K²).
fn project_c(w: &DMatrix<f64>, u_in: &DMatrix<f64>, d: Dims) -> DMatrix<f64> {
    let (n, c, k2, r3) = (d.n, d.c, d.k2(), u_in.ncols());
    let wc = mode_c(w, n, c, k2); // C × N·K²
    let p = u_in.transpose() * wc; // R3 × N·K²
    DMatrix::from_fn(n, r3 * k2, |ni, col| p[(col / k2, ni * k2 + col % k2)])
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
        check_kernel(kernel)?;
        let d = Dims::of(kernel);
        check_rank("Tucker-2 input", r3, d.c)?;
        check_rank("Tucker-2 output", r4, d.n)?;
        let w = mode_n_matrix(kernel);
        let total = w.norm_squared();
        let (mut u_out, _) = top_left(&w, r4)?;
        let (mut u_in, _) = top_left(&mode_c(&w, d.n, d.c, d.k2()), r3)?;
        let err_of = |core: &DMatrix<f64>| rel_from(total, core.norm_squared());
        let mut core = u_out.transpose() * project_c(&w, &u_in, d);
        let mut err = err_of(&core);
        let mut curve = vec![err];
        let mut stop = StopReason::MaxIter;
        for it in 1..=opts.max_iter {
            // U_in from W projected on U_out: Y = U_outᵀ ×_N W, R4 × C × K².
            let y = u_out.transpose() * &w;
            u_in = top_left(&mode_c(&y, r4, d.c, d.k2()), r3)?.0;
            let z = project_c(&w, &u_in, d);
            u_out = top_left(&z, r4)?.0;
            core = u_out.transpose() * z;
            let new = err_of(&core);
            curve.push(new);
            let improvement = err - new;
            err = new;
            if !progress(it, err) {
                stop = StopReason::Cancelled;
                break;
            }
            if improvement <= opts.tol * err.max(f64::MIN_POSITIVE) {
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
            report: AlsReport { curve, stop, degeneracy: None, iterations: 0 },
        };
        t.report.iterations = t.report.curve.len() - 1;
        // The error from the explicit reconstruction (no ‖W‖² − ‖G‖² cancellation).
        t.rel_error = super::rel_error_mode_n(kernel, &t.reconstruct64());
        Ok(t)
    }

    /// The f64 reconstruction as N × (C·K²).
    fn reconstruct64(&self) -> DMatrix<f64> {
        let (d, k2) = (self.dims, self.dims.k2());
        let g = &self.u_out * &self.core64; // N × R3·K²
        let mut out = DMatrix::zeros(d.n, d.c * k2);
        for n in 0..d.n {
            for c in 0..d.c {
                for k in 0..k2 {
                    let mut acc = 0.0;
                    for t in 0..self.r3 {
                        acc += g[(n, t * k2 + k)] * self.u_in[(c, t)];
                    }
                    out[(n, c * k2 + k)] = acc;
                }
            }
        }
        out
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
