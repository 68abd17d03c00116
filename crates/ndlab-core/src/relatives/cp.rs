//! CP decompositions of a conv kernel by alternating least squares (ALS):
//!
//! * [`Cp4`], four factors (Lebedev et al. 2015): `W[n,c,i,j] ≈ Σ_r A[n,r] B[c,r] Ky[i,r] Kx[j,r]`,
//!   run as 1×1 C→R, Kh×1 depthwise, 1×Kw depthwise, 1×1 R→N;
//! * [`CpMobile`], three factors: `W[n,c] ≈ Σ_r A[n,r] B[c,r] D_r` (a CP of the N × C × K² tensor),
//!   run as 1×1 C→R, K×K depthwise on R, 1×1 R→N. ND DW→PW is this with B fixed to a 0/1
//!   channel-replication matrix (R = C·T).
//!
//! ALS: each sweep solves every factor in turn in exact least squares (normal equations with the
//! Hadamard product of the other factors' Gram matrices, Cholesky, eigen pseudo-inverse when it is
//! singular), so the objective is non-increasing per sweep. Start: the leading left singular
//! vectors of each unfolding (HOSVD-style; columns beyond the mode's size are seeded uniform), or a
//! seeded uniform start. Stop when a sweep improves the relative error by less than `tol` (relative),
//! at `max_iter`, or when the progress callback cancels. Degeneracy (component norms far above the
//! kernel's, components cancelling each other) is detected after every sweep and reported in
//! [`AlsReport::degeneracy`]; the iteration is not altered.

use super::linalg::{seeded_rng, top_left};
use super::{
    check_kernel, check_rank, check_ungrouped, horizontal_geometry, kernel_from_mode_n, to_f32_rows,
    vertical_geometry, Dims, Method, Progress, Rank, Relative,
};
use crate::conv::{depthwise, pointwise};
use crate::error::{Error, Result};
use crate::layer::{ConvGeometry, FeatureMap, Kernel};
use nalgebra::DMatrix;

/// A component norm above this multiple of ‖W‖_F counts as diverging.
pub const DIVERGE_RATIO: f64 = 10.0;
/// Σ_r ‖component r‖² above this multiple of ‖Ŵ‖² counts as components cancelling.
pub const CANCEL_RATIO: f64 = 10.0;

/// How the factors start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    /// Leading left singular vectors of each unfolding, seeded uniform columns beyond its size.
    Svd,
    /// Seeded uniform in [−1, 1).
    Random,
}

/// Options of CP-ALS.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlsOptions {
    /// Maximum sweeps.
    pub max_iter: usize,
    /// Stop when (err_prev − err) ≤ tol · err.
    pub tol: f64,
    /// Seed of the random part of the start.
    pub seed: u64,
    /// The start.
    pub init: Init,
}

impl Default for AlsOptions {
    fn default() -> Self {
        AlsOptions { max_iter: 200, tol: 1e-6, seed: 0, init: Init::Svd }
    }
}

/// Why an iterative method stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Relative improvement below the tolerance.
    Converged,
    /// Reached the iteration cap.
    MaxIter,
    /// The progress callback returned false.
    Cancelled,
}

/// Degeneracy found during ALS (first sweep where it was seen).
#[derive(Debug, Clone, PartialEq)]
pub struct Degeneracy {
    /// Sweep (1-based) where it was first detected.
    pub iteration: usize,
    /// Largest component norm / ‖W‖_F at that sweep.
    pub max_component_ratio: f64,
    /// Σ_r ‖component r‖² / ‖Ŵ‖²_F at that sweep (≈ 1 for well-separated components).
    pub cancellation_ratio: f64,
    /// A sentence for people.
    pub message: String,
}

/// Convergence report of an iterative method.
#[derive(Debug, Clone, PartialEq)]
pub struct AlsReport {
    /// Relative error after every sweep (Tucker-2: index 0 is the HOSVD start).
    pub curve: Vec<f64>,
    /// Sweeps run.
    pub iterations: usize,
    /// Why it stopped.
    pub stop: StopReason,
    /// Degeneracy, if seen.
    pub degeneracy: Option<Degeneracy>,
}

/// A CP model of a dense tensor: unit-norm factor columns and weights λ.
#[derive(Debug, Clone)]
struct CpModel {
    factors: Vec<DMatrix<f64>>,
    lambda: Vec<f64>,
    report: AlsReport,
}

/// Mode-k unfoldings of a row-major tensor: d_k × ∏_{j≠k} d_j, columns in row-major order of the
/// other modes.
fn unfoldings(x: &[f64], dims: &[usize]) -> Vec<DMatrix<f64>> {
    let total: usize = dims.iter().product();
    (0..dims.len())
        .map(|k| {
            let cols = total / dims[k];
            let mut m = DMatrix::zeros(dims[k], cols);
            let mut idx = vec![0usize; dims.len()];
            for &v in x.iter().take(total) {
                let mut col = 0;
                for (j, &i) in idx.iter().enumerate() {
                    if j != k {
                        col = col * dims[j] + i;
                    }
                }
                m[(idx[k], col)] = v;
                // advance the multi-index (row-major)
                for j in (0..dims.len()).rev() {
                    idx[j] += 1;
                    if idx[j] < dims[j] {
                        break;
                    }
                    idx[j] = 0;
                }
            }
            m
        })
        .collect()
}

/// Khatri–Rao product of the factors other than `skip`, rows in row-major order of those modes.
fn khatri_rao(factors: &[DMatrix<f64>], skip: usize, r: usize) -> DMatrix<f64> {
    let mut kr = DMatrix::from_element(1, r, 1.0);
    for (j, f) in factors.iter().enumerate() {
        if j == skip {
            continue;
        }
        let d = f.nrows();
        kr = DMatrix::from_fn(kr.nrows() * d, r, |row, col| kr[(row / d, col)] * f[(row % d, col)]);
    }
    kr
}

/// Hadamard product of the Gram matrices of the factors other than `skip`.
fn gram_hadamard(grams: &[DMatrix<f64>], skip: usize, r: usize) -> DMatrix<f64> {
    let mut v = DMatrix::from_element(r, r, 1.0);
    for (j, g) in grams.iter().enumerate() {
        if j != skip {
            v.component_mul_assign(g);
        }
    }
    v
}

/// Solves `A V = M` for A (V symmetric PSD): Cholesky, or an eigen pseudo-inverse when singular.
fn solve_normal(v: &DMatrix<f64>, m: &DMatrix<f64>) -> DMatrix<f64> {
    if let Some(ch) = v.clone().cholesky() {
        let s = ch.solve(&m.transpose());
        if s.iter().all(|x| x.is_finite()) {
            return s.transpose();
        }
    }
    let eig = nalgebra::SymmetricEigen::new(v.clone());
    let max = eig.eigenvalues.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
    let tol = max * 1e-12 * v.nrows() as f64;
    let inv = DMatrix::from_fn(v.nrows(), v.ncols(), |i, j| {
        (0..v.nrows())
            .filter(|&k| eig.eigenvalues[k] > tol)
            .map(|k| eig.eigenvectors[(i, k)] * eig.eigenvectors[(j, k)] / eig.eigenvalues[k])
            .sum()
    });
    m * inv
}

/// Normalises the columns of `a` in place and returns their norms (a zero column stays zero).
fn normalise(a: &mut DMatrix<f64>) -> Vec<f64> {
    (0..a.ncols())
        .map(|c| {
            let n = a.column(c).norm();
            if n > 0.0 {
                a.column_mut(c).unscale_mut(n);
            }
            n
        })
        .collect()
}

/// The starting factors.
fn init_factors(unf: &[DMatrix<f64>], r: usize, opts: &AlsOptions) -> Result<Vec<DMatrix<f64>>> {
    let mut rng = seeded_rng(opts.seed);
    unf.iter()
        .map(|m| {
            let d = m.nrows();
            let mut a = DMatrix::from_fn(d, r, |_, _| rng.signed());
            if opts.init == Init::Svd {
                let (u, _) = top_left(m, r.min(d))?;
                a.columns_mut(0, u.ncols()).copy_from(&u);
            }
            normalise(&mut a);
            Ok(a)
        })
        .collect()
}

/// Checks the component norms after a sweep.
fn degeneracy(it: usize, lambda: &[f64], grams: &[DMatrix<f64>], norm_x: f64) -> Option<Degeneracy> {
    if norm_x <= 0.0 {
        return None;
    }
    let r = lambda.len();
    let v = gram_hadamard(grams, usize::MAX, r);
    let l = DMatrix::from_column_slice(r, 1, lambda);
    let fit_sq = (l.transpose() * v * &l)[(0, 0)].max(f64::MIN_POSITIVE);
    let max = lambda.iter().fold(0.0f64, |a, &b| a.max(b.abs())) / norm_x;
    let cancel = lambda.iter().map(|x| x * x).sum::<f64>() / fit_sq;
    if max > DIVERGE_RATIO || cancel > CANCEL_RATIO {
        let message = format!(
            "degenerate CP solution at sweep {it}: the largest component is {max:.1}× the kernel's norm \
             and the components' energies sum to {cancel:.1}× the approximation's (they cancel each other)"
        );
        return Some(Degeneracy {
            iteration: it,
            max_component_ratio: max,
            cancellation_ratio: cancel,
            message,
        });
    }
    None
}

/// The matricised-tensor-times-Khatri–Rao products (MTTKRP) `X_(k) · KR(others)` of one tensor,
/// computed without forming any unfolding but the first or any large Khatri–Rao product.
///
/// Mode 0: `X_(0) · KR(F_1, …)` (a GEMM with a Khatri–Rao product of the *small* modes only).
/// Modes k ≥ 1: after the first factor is updated, `P = F_0ᵀ X_(0)` (R × ∏_{j≥1} d_j, one GEMM)
/// holds the tensor contracted with F_0; each `M_k[i, r] = Σ P[r, (i_1…)] Π_{j≥1, j≠k} F_j[i_j, r]`
/// is then a pass over P. Per sweep: two GEMMs of the tensor's size times R, instead of one per mode
/// against a Khatri–Rao product as tall as the tensor.
struct Mttkrp<'a> {
    /// X_(0): d_0 × ∏_{j≥1} d_j, columns in row-major order of modes 1….
    x0: &'a DMatrix<f64>,
    dims: &'a [usize],
    /// `F_0ᵀ X_(0)` for the current F_0.
    p: DMatrix<f64>,
}

impl<'a> Mttkrp<'a> {
    fn new(x0: &'a DMatrix<f64>, dims: &'a [usize]) -> Self {
        Mttkrp { x0, dims, p: DMatrix::zeros(0, 0) }
    }

    /// Recomputes the contraction with the first factor (call after it changes).
    fn set_first(&mut self, f0: &DMatrix<f64>) {
        // An explicit small transpose then a plain product: nalgebra sends `*` to its blocked GEMM.
        self.p = f0.transpose() * self.x0;
    }

    /// `X_(k) · KR(factors other than k)` (d_k × R). Modes ≥ 1 use the last [`Mttkrp::set_first`].
    fn product(&self, factors: &[DMatrix<f64>], k: usize, r: usize) -> DMatrix<f64> {
        if k == 0 {
            return self.x0 * khatri_rao(factors, 0, r);
        }
        let dims = self.dims;
        // Factors transposed (R × d_j) so that one entry's R values are contiguous.
        let ft: Vec<DMatrix<f64>> = factors.iter().map(|f| f.transpose()).collect();
        let mut mt = DMatrix::<f64>::zeros(r, dims[k]);
        let mut idx = vec![0usize; dims.len()];
        let mut w = vec![0.0f64; r];
        for col in 0..self.p.ncols() {
            w.copy_from_slice(self.p.column(col).as_slice());
            for j in 1..dims.len() {
                if j != k {
                    for (wv, fv) in w.iter_mut().zip(ft[j].column(idx[j]).iter()) {
                        *wv *= fv;
                    }
                }
            }
            for (m, wv) in mt.column_mut(idx[k]).iter_mut().zip(&w) {
                *m += wv;
            }
            // advance the multi-index of modes 1.. (row-major)
            for j in (1..dims.len()).rev() {
                idx[j] += 1;
                if idx[j] < dims[j] {
                    break;
                }
                idx[j] = 0;
            }
        }
        mt.transpose()
    }
}

/// CP-ALS of a dense row-major tensor at rank `r`.
fn cp_als(x: &[f64], dims: &[usize], r: usize, opts: &AlsOptions, progress: Progress<'_>) -> Result<CpModel> {
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("tensor holds NaN or infinity".into()));
    }
    if dims.len() < 2 {
        return Err(Error::Shape("CP needs a tensor of order 2 or more".into()));
    }
    let norm_sq: f64 = x.iter().map(|v| v * v).sum();
    let norm_x = norm_sq.sqrt();
    let mut factors = {
        let unf = unfoldings(x, dims);
        init_factors(&unf, r, opts)?
    };
    let rest = x.len() / dims[0].max(1);
    let x0 = DMatrix::from_row_slice(dims[0], rest, x);
    let mut mt = Mttkrp::new(&x0, dims);
    let mut grams: Vec<DMatrix<f64>> = factors.iter().map(|a| a.transpose() * a).collect();
    let mut lambda = vec![1.0; r];
    let mut report = AlsReport { curve: vec![], iterations: 0, stop: StopReason::MaxIter, degeneracy: None };
    let last = dims.len() - 1;
    let mut prev = f64::INFINITY;
    for it in 1..=opts.max_iter {
        let mut err = 0.0;
        for k in 0..dims.len() {
            let v = gram_hadamard(&grams, k, r);
            let m = mt.product(&factors, k, r);
            let mut a = solve_normal(&v, &m);
            if k == last {
                let inner = a.component_mul(&m).sum();
                let fit = (v.component_mul(&(a.transpose() * &a))).sum();
                err = if norm_sq > 0.0 {
                    ((norm_sq - 2.0 * inner + fit) / norm_sq).max(0.0).sqrt()
                } else {
                    0.0
                };
            }
            lambda = normalise(&mut a);
            grams[k] = a.transpose() * &a;
            if k == 0 {
                mt.set_first(&a);
            }
            factors[k] = a;
        }
        report.curve.push(err);
        report.iterations = it;
        if report.degeneracy.is_none() {
            report.degeneracy = degeneracy(it, &lambda, &grams, norm_x);
        }
        if !progress(it, err) {
            report.stop = StopReason::Cancelled;
            break;
        }
        if prev - err <= opts.tol * err.max(f64::MIN_POSITIVE) || err == 0.0 {
            report.stop = StopReason::Converged;
            break;
        }
        prev = err;
    }
    Ok(CpModel { factors, lambda, report })
}

impl CpModel {
    /// The first factor with λ absorbed.
    fn weighted_first(&self) -> DMatrix<f64> {
        let mut a = self.factors[0].clone();
        for (c, l) in self.lambda.iter().enumerate() {
            a.column_mut(c).scale_mut(*l);
        }
        a
    }

    /// The reconstruction as d_0 × ∏ others (row-major), i.e. N × (C·K²) for a kernel.
    fn reconstruct64(&self) -> DMatrix<f64> {
        let r = self.lambda.len();
        self.weighted_first() * khatri_rao(&self.factors, 0, r).transpose()
    }
}

/// Runs `fit` with an SVD start (seed 0) and `restarts − 1` random starts (seeds 1, 2, …) and keeps
/// the one with the lowest error. Cancelling any run stops there and returns the best so far.
fn best_of<T>(
    restarts: usize,
    opts: &AlsOptions,
    progress: Progress<'_>,
    mut fit: impl FnMut(&AlsOptions, Progress<'_>) -> Result<T>,
    err: impl Fn(&T) -> f64,
    cancelled: impl Fn(&T) -> bool,
) -> Result<T> {
    let mut best: Option<T> = None;
    for s in 0..restarts.max(1) {
        let o = if s == 0 {
            *opts
        } else {
            AlsOptions { seed: opts.seed + s as u64, init: Init::Random, ..*opts }
        };
        let t = fit(&o, &mut *progress)?;
        let stop = cancelled(&t);
        if best.as_ref().is_none_or(|b| err(&t) < err(b)) {
            best = Some(t);
        }
        if stop {
            break;
        }
    }
    best.ok_or_else(|| Error::Param("no CP run".into()))
}

/// Four-factor CP (Lebedev et al. 2015) with its convergence report.
#[derive(Debug, Clone)]
pub struct Cp4 {
    dims: Dims,
    rank: usize,
    /// N × R output factor (component weights absorbed).
    pub a: DMatrix<f64>,
    /// C × R input factor.
    pub b: DMatrix<f64>,
    /// Kh × R vertical factor.
    pub ky: DMatrix<f64>,
    /// Kw × R horizontal factor.
    pub kx: DMatrix<f64>,
    rel_error: f64,
    /// Convergence curve, stop reason, degeneracy.
    pub report: AlsReport,
}

fn kernel_tensor(k: &Kernel) -> Vec<f64> {
    k.data.iter().map(|&v| v as f64).collect()
}

impl Cp4 {
    /// CP-ALS of `kernel` at rank `r` (1..=[`Dims::max_rank`]).
    pub fn new(kernel: &Kernel, r: usize, opts: &AlsOptions, progress: Progress<'_>) -> Result<Self> {
        check_kernel(kernel)?;
        let d = Dims::of(kernel);
        check_rank("CP", r, d.n * d.c * d.k2())?;
        let model = cp_als(&kernel_tensor(kernel), &[d.n, d.c, d.kh, d.kw], r, opts, progress)?;
        let rel_error = super::rel_error_mode_n(kernel, &model.reconstruct64());
        let a = model.weighted_first();
        let f = &model.factors;
        Ok(Cp4 {
            dims: d,
            rank: r,
            a,
            b: f[1].clone(),
            ky: f[2].clone(),
            kx: f[3].clone(),
            rel_error,
            report: model.report,
        })
    }

    /// The best of `restarts` runs (SVD start, then random starts with seeds seed+1, …).
    pub fn best_of(
        kernel: &Kernel,
        r: usize,
        opts: &AlsOptions,
        restarts: usize,
        progress: Progress<'_>,
    ) -> Result<Self> {
        best_of(
            restarts,
            opts,
            progress,
            |o, p| Cp4::new(kernel, r, o, p),
            |t| t.rel_error,
            |t| t.report.stop == StopReason::Cancelled,
        )
    }

    fn reconstruct64(&self) -> DMatrix<f64> {
        let f = [self.a.clone(), self.b.clone(), self.ky.clone(), self.kx.clone()];
        &self.a * khatri_rao(&f, 0, self.rank).transpose()
    }
}

impl Relative for Cp4 {
    fn method(&self) -> Method {
        Method::Cp
    }
    fn rank(&self) -> Rank {
        Rank::One(self.rank)
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
        let (r, d) = (self.rank, self.dims);
        let h = pointwise(x, &to_f32_rows(&self.b.transpose()), r, 1, None)?;
        let h = depthwise(&h, &to_f32_rows(&self.ky.transpose()), 1, d.kh, 1, &vertical_geometry(geom))?;
        let h = depthwise(&h, &to_f32_rows(&self.kx.transpose()), 1, 1, d.kw, &horizontal_geometry(geom))?;
        pointwise(&h, &to_f32_rows(&self.a), d.n, 1, bias)
    }
}

/// MobileNet-style three-factor CP with its convergence report.
#[derive(Debug, Clone)]
pub struct CpMobile {
    dims: Dims,
    rank: usize,
    /// N × R output factor (component weights absorbed).
    pub a: DMatrix<f64>,
    /// C × R input factor.
    pub b: DMatrix<f64>,
    /// K² × R depthwise filters (column r is D_r, row-major Kh × Kw).
    pub d: DMatrix<f64>,
    rel_error: f64,
    /// Convergence curve, stop reason, degeneracy.
    pub report: AlsReport,
}

impl CpMobile {
    /// CP-ALS of the N × C × K² tensor at rank `r`.
    pub fn new(kernel: &Kernel, r: usize, opts: &AlsOptions, progress: Progress<'_>) -> Result<Self> {
        check_kernel(kernel)?;
        let dm = Dims::of(kernel);
        check_rank("MobileNet CP", r, dm.n * dm.c * dm.k2())?;
        let model = cp_als(&kernel_tensor(kernel), &[dm.n, dm.c, dm.k2()], r, opts, progress)?;
        let rel_error = super::rel_error_mode_n(kernel, &model.reconstruct64());
        let a = model.weighted_first();
        let f = &model.factors;
        Ok(CpMobile {
            dims: dm,
            rank: r,
            a,
            b: f[1].clone(),
            d: f[2].clone(),
            rel_error,
            report: model.report,
        })
    }

    /// The best of `restarts` runs (SVD start, then random starts with seeds seed+1, …).
    pub fn best_of(
        kernel: &Kernel,
        r: usize,
        opts: &AlsOptions,
        restarts: usize,
        progress: Progress<'_>,
    ) -> Result<Self> {
        best_of(
            restarts,
            opts,
            progress,
            |o, p| CpMobile::new(kernel, r, o, p),
            |t| t.rel_error,
            |t| t.report.stop == StopReason::Cancelled,
        )
    }

    fn reconstruct64(&self) -> DMatrix<f64> {
        let f = [self.a.clone(), self.b.clone(), self.d.clone()];
        &self.a * khatri_rao(&f, 0, self.rank).transpose()
    }
}

impl Relative for CpMobile {
    fn method(&self) -> Method {
        Method::CpMobilenet
    }
    fn rank(&self) -> Rank {
        Rank::One(self.rank)
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
        let (r, dm) = (self.rank, self.dims);
        let h = pointwise(x, &to_f32_rows(&self.b.transpose()), r, 1, None)?;
        let h = depthwise(&h, &to_f32_rows(&self.d.transpose()), 1, dm.kh, dm.kw, geom)?;
        pointwise(&h, &to_f32_rows(&self.a), dm.n, 1, bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfolding_and_khatri_rao_agree_with_the_model() {
        // X = Σ_r a_r ⊗ b_r ⊗ c_r; X_(k) must equal A_k · KR(others)ᵀ for every k.
        let mut rng = seeded_rng(9);
        let dims = [3usize, 4, 2];
        let r = 2;
        let f: Vec<DMatrix<f64>> =
            dims.iter().map(|&d| DMatrix::from_fn(d, r, |_, _| rng.signed())).collect();
        let mut x = vec![0.0; 24];
        for i in 0..3 {
            for j in 0..4 {
                for k in 0..2 {
                    x[(i * 4 + j) * 2 + k] = (0..r).map(|t| f[0][(i, t)] * f[1][(j, t)] * f[2][(k, t)]).sum();
                }
            }
        }
        let unf = unfoldings(&x, &dims);
        for k in 0..3 {
            let m = &f[k] * khatri_rao(&f, k, r).transpose();
            assert!((&unf[k] - m).norm() < 1e-12, "mode {k}");
        }
    }

    #[test]
    fn mttkrp_equals_unfolding_times_khatri_rao() {
        // The fast products against the textbook X_(k) · KR(others) on a random 4-way tensor.
        let mut rng = seeded_rng(5);
        let dims = [4usize, 3, 2, 5];
        let r = 3;
        let x: Vec<f64> = (0..120).map(|_| rng.signed()).collect();
        let f: Vec<DMatrix<f64>> =
            dims.iter().map(|&d| DMatrix::from_fn(d, r, |_, _| rng.signed())).collect();
        let unf = unfoldings(&x, &dims);
        let x0 = DMatrix::from_row_slice(4, 30, &x);
        let mut mt = Mttkrp::new(&x0, &dims);
        mt.set_first(&f[0]);
        for (k, u) in unf.iter().enumerate() {
            let slow = u * khatri_rao(&f, k, r);
            assert!((mt.product(&f, k, r) - slow).norm() < 1e-12, "mode {k}");
        }
    }
}
