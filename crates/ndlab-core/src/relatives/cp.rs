//! CP decompositions of a conv kernel by alternating least squares (ALS):
//!
//! * [`Cp4`], four factors (Lebedev et al. 2015): `W[n,c,i,j] ≈ Σ_r A[n,r] B[c,r] Ky[i,r] Kx[j,r]`,
//!   run as 1×1 C→R, Kh×1 depthwise, 1×Kw depthwise, 1×1 R→N;
//! * [`CpMobile`], three factors: `W[n,c] ≈ Σ_r A[n,r] B[c,r] D_r` (a CP of the N × C × K² tensor),
//!   run as 1×1 C→R, K×K depthwise on R, 1×1 R→N. ND DW→PW is this with B fixed to a 0/1
//!   channel-replication matrix (R = C·T).
//!
//! ALS: each sweep solves every factor in turn in exact least squares (normal equations with the
//! Hadamard product of the other factors' Gram matrices, blocked Cholesky, eigen pseudo-inverse when
//! it is singular), so the objective is non-increasing per sweep.
//!
//! * Start: the leading left singular vectors of each unfolding (HOSVD-style; columns beyond the
//!   mode's size are seeded uniform), a seeded uniform start, or a warm start from a solution at
//!   another rank ([`Cp4::warm`], [`CpMobile::warm`]: its components, plus new ones from the leading
//!   singular vectors of the residual, or minus the weakest ones).
//! * Extrapolation ([`AlsOptions::extrapolate`]): from sweep 4 on, each sweep starts from
//!   `x + (s − 1)(x − x_prev)` (x the last iterate, x_prev the one before), an over-relaxed step
//!   along the direction ALS is moving in (Bro's line search; Rajih, Comon & Harshman 2008). The
//!   step is kept only when the error after the sweep's first factor update is already below the
//!   last iterate's (then the sweep is finished from there: it costs nothing extra); otherwise that
//!   half-begun sweep is dropped and a plain sweep is run from x. `s` grows ×1.2 after an accepted
//!   step (up to 8) and shrinks towards 1 after a rejected one. Every reported iterate is a finished
//!   ALS sweep whose error is below the previous one's, so the curve stays non-increasing.
//! * Stop: when the error fell by at most `tol` (relative) per sweep on average over the last
//!   [`STALL_WINDOW`] sweeps, at `max_iter`, or when the progress callback cancels (checked after
//!   every sweep).
//! * Cost per sweep: two contractions of the whole tensor with R columns (the mode-0 MTTKRP and
//!   `F_0ᵀ X_(0)`), in f32 when the tensor is large ([`F32_MIN_WORK`]: the kernel is f32 anyway; the
//!   error estimates carry ~1e-6 relative noise, the final error is recomputed in f64 from the
//!   reconstruction), plus one R × R Cholesky and solve per factor.
//!
//! Degeneracy (component norms far above the kernel's, components cancelling each other) is detected
//! after every sweep and reported in [`AlsReport::degeneracy`]; the iteration is not altered.

use super::dense::{cholesky, gram, khatri_rao, khatri_rao_t_into, solve_right, sym_dot};
use super::linalg::{seeded_rng, top_left};
use super::{
    check_kernel, check_rank, check_ungrouped, horizontal_geometry, kernel_from_mode_n, to_f32_rows,
    vertical_geometry, Dims, Method, Progress, Rank, Relative,
};
use crate::conv::{depthwise, pointwise, sgemm, MatB};
use crate::error::{Error, Result};
use crate::layer::{ConvGeometry, FeatureMap, Kernel};
use nalgebra::{DMatrix, Dyn, MatrixView};
use std::borrow::Borrow;
use std::cell::RefCell;

/// A component norm above this multiple of ‖W‖_F counts as diverging.
pub const DIVERGE_RATIO: f64 = 10.0;
/// Σ_r ‖component r‖² above this multiple of ‖Ŵ‖² counts as components cancelling.
pub const CANCEL_RATIO: f64 = 10.0;
/// Sweeps over which the stopping rule averages the error's fall (extrapolated steps make the fall
/// uneven from sweep to sweep).
pub const STALL_WINDOW: usize = 3;
/// Default stopping tolerance: 0.02 % per sweep.
pub const DEFAULT_TOL: f64 = 2e-4;
/// Tensor entries × rank from which the two big contractions run in f32.
pub const F32_MIN_WORK: usize = 1 << 22;
/// Below this many tensor entries × rank a sweep costs microseconds, and the stopping rule uses
/// at most [`SMALL_TOL`] (a plateau of a few sweeps is then not mistaken for the end).
pub const SMALL_WORK: usize = 1 << 20;
/// The tolerance of small problems (see [`SMALL_WORK`]).
pub const SMALL_TOL: f64 = 1e-6;
/// Extrapolation starts after this many plain sweeps.
const EXTRAPOLATE_AFTER: usize = 3;
/// First extrapolation step `s`, its growth after an accepted step and its cap.
const STEP_START: f64 = 1.5;
const STEP_GROW: f64 = 1.2;
const STEP_MAX: f64 = 8.0;

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
    /// Stop when the error fell by at most this fraction per sweep, on average over the last
    /// [`STALL_WINDOW`] sweeps: `e[k−w] − e[k] ≤ w · tol · e[k]` (0: run to `max_iter`; small
    /// problems use at most [`SMALL_TOL`], see [`SMALL_WORK`]).
    pub tol: f64,
    /// Seed of the random part of the start.
    pub seed: u64,
    /// The start (cold runs; [`Cp4::warm`] / [`CpMobile::warm`] start from a given solution).
    pub init: Init,
    /// Over-relaxed (extrapolated) sweeps, kept only when they lower the error.
    pub extrapolate: bool,
}

impl Default for AlsOptions {
    fn default() -> Self {
        AlsOptions { max_iter: 200, tol: DEFAULT_TOL, seed: 0, init: Init::Svd, extrapolate: true }
    }
}

/// Why an iterative method stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The error's fall per sweep dropped to the tolerance (see [`AlsOptions::tol`]).
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
    /// Extrapolated steps tried and dropped (each cost one contraction and one solve, about a
    /// third of a sweep).
    pub rejected_steps: usize,
    /// The tolerance the stopping rule used (see [`AlsOptions::tol`] and [`SMALL_WORK`]).
    pub tol: f64,
    /// The sweeps the stopping rule averages over ([`STALL_WINDOW`] for CP-ALS,
    /// [`HOOI_WINDOW`](super::tucker::HOOI_WINDOW) for HOOI).
    pub window: usize,
}

impl AlsReport {
    /// The stopping rule: the error fell by at most `tol` (relative) per sweep on average over
    /// the last `window` sweeps, `e[k−w] − e[k] ≤ w · tol · e[k]` (or reached 0).
    pub fn stalled(curve: &[f64], tol: f64, window: usize) -> bool {
        let k = curve.len();
        let Some(&e) = curve.last() else { return false };
        if e == 0.0 {
            return true;
        }
        k > window && curve[k - 1 - window] - e <= window as f64 * tol * e.max(f64::MIN_POSITIVE)
    }
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

/// `a ← a ∘ b`.
fn hadamard_assign(a: &mut DMatrix<f64>, b: &DMatrix<f64>) {
    for (x, y) in a.as_mut_slice().iter_mut().zip(b.as_slice()) {
        *x *= y;
    }
}

/// Solves `A V = M` for A (V symmetric PSD): blocked Cholesky, or an eigen pseudo-inverse when V
/// is not numerically positive definite or the Cholesky solution is not finite.
fn solve_normal(v: &DMatrix<f64>, m: &DMatrix<f64>) -> DMatrix<f64> {
    if let Some(l) = cholesky(v.clone()) {
        let mut a = m.clone();
        solve_right(&l, &mut a);
        if a.iter().all(|x| x.is_finite()) {
            return a;
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

/// `G ← D⁻¹ G D⁻¹` for the column norms `d` (the Gram matrix of the normalised columns).
fn unscale_gram(g: &mut DMatrix<f64>, d: &[f64]) {
    let inv: Vec<f64> = d.iter().map(|&x| if x > 0.0 { 1.0 / x } else { 0.0 }).collect();
    let r = d.len();
    for (j, col) in g.as_mut_slice().chunks_exact_mut(r).enumerate() {
        for (v, s) in col.iter_mut().zip(&inv) {
            *v *= s * inv[j];
        }
    }
}

/// The starting factors of a cold run.
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

/// Checks the component norms after a sweep: `lambda` the weights of unit-column components,
/// `fit_sq` = ‖X̂‖² = λᵀ (∘_k G_k) λ with the unit-column Grams.
fn degeneracy(it: usize, lambda: &[f64], fit_sq: f64, norm_x: f64) -> Option<Degeneracy> {
    if norm_x <= 0.0 {
        return None;
    }
    let fit_sq = fit_sq.max(f64::MIN_POSITIVE);
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

/// The tensor as its mode-0 matricisation X_(0) (d_0 × ∏_{j≥1} d_j, columns in row-major order of
/// modes 1…), in the precision of the big contractions.
enum Matricised {
    F64(DMatrix<f64>),
    F32(DMatrix<f32>),
}

/// Scratch buffers of the two big contractions, reused from sweep to sweep (fresh multi-megabyte
/// allocations each sweep cost page faults and page clearing).
enum Buffers {
    F64 { kr: Vec<f64>, p: DMatrix<f64> },
    F32 { kr: Vec<f32>, krt: Vec<f32>, p: DMatrix<f32>, f0t: DMatrix<f32> },
}

/// A `rows × r` matrix stored row by row in `data` (a view with strides (r, 1)).
fn strided<T: nalgebra::Scalar>(data: &[T], rows: usize, r: usize) -> MatrixView<'_, T, Dyn, Dyn, Dyn, Dyn> {
    MatrixView::from_slice_with_strides_generic(data, Dyn(rows), Dyn(r), Dyn(r), Dyn(1))
}

/// `out[:, i_k] += Σ P[:, col] ∘ W[:, q]` over the columns of P (R values each, contiguous) —
/// the pass over P of a mode-k MTTKRP (see [`Mttkrp::product`]).
fn accumulate<T: Copy + Into<f64>>(
    p: &[T],
    w: &[f64],
    out: &mut [f64],
    r: usize,
    split: (usize, usize, usize),
) {
    let (hi_n, dk, lo_n) = split;
    for hi in 0..hi_n {
        for ik in 0..dk {
            let acc = &mut out[ik * r..(ik + 1) * r];
            for lo in 0..lo_n {
                let col = (hi * dk + ik) * lo_n + lo;
                let q = hi * lo_n + lo;
                let pc = &p[col * r..(col + 1) * r];
                let wc = &w[q * r..(q + 1) * r];
                for ((a, &x), y) in acc.iter_mut().zip(pc).zip(wc) {
                    *a += x.into() * y;
                }
            }
        }
    }
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
    x0: &'a Matricised,
    dims: &'a [usize],
    buf: RefCell<Buffers>,
    /// `P` contracted with F_1 as well (R × ∏_{j≥2} d_j), for modes ≥ 2 once F_1 is updated.
    q: RefCell<Option<Vec<f64>>>,
    /// The f32 contractions through the crate's packed SGEMM ([`CRATE_GEMM`]) instead of nalgebra's.
    crate_gemm: bool,
}

/// Whether the f32 contractions use the crate's packed SGEMM (the conv kernels' SIMD128 micro-kernel)
/// rather than nalgebra's (matrixmultiply): in wasm, where matrixmultiply has no SIMD kernel and ran
/// CP-ALS sweeps several times slower; natively matrixmultiply's AVX2 kernels are the faster here.
const CRATE_GEMM: bool = cfg!(target_arch = "wasm32");

/// `Q[:, q] = Σ_i P[:, i·rest + q] ∘ F_1ᵀ[:, i]` (P is R × (d_1·rest), column-major).
fn contract_second<T: Copy + Into<f64>>(p: &[T], f1t: &[f64], r: usize, d1: usize, rest: usize) -> Vec<f64> {
    let mut q = vec![0.0; r * rest];
    for i in 0..d1 {
        let w = &f1t[i * r..(i + 1) * r];
        for (j, acc) in q.chunks_exact_mut(r).enumerate() {
            let col = i * rest + j;
            for ((a, &x), y) in acc.iter_mut().zip(&p[col * r..(col + 1) * r]).zip(w) {
                *a += x.into() * y;
            }
        }
    }
    q
}

impl<'a> Mttkrp<'a> {
    fn new(x0: &'a Matricised, dims: &'a [usize]) -> Self {
        let buf = match x0 {
            Matricised::F64(_) => Buffers::F64 { kr: Vec::new(), p: DMatrix::zeros(0, 0) },
            Matricised::F32(_) => Buffers::F32 {
                kr: Vec::new(),
                krt: Vec::new(),
                p: DMatrix::zeros(0, 0),
                f0t: DMatrix::zeros(0, 0),
            },
        };
        Mttkrp { x0, dims, buf: RefCell::new(buf), q: RefCell::new(None), crate_gemm: CRATE_GEMM }
    }

    /// `X_(0) · KR(F_1, …)`.
    fn first<F: Borrow<DMatrix<f64>>>(&self, factors: &[F], r: usize) -> DMatrix<f64> {
        let rest = self.dims[1..].iter().product::<usize>();
        // The Khatri–Rao product built transposed (contiguous R-vectors) and read through strides.
        match (self.x0, &mut *self.buf.borrow_mut()) {
            (Matricised::F64(x0), Buffers::F64 { kr, .. }) => {
                khatri_rao_t_into(factors, 0, r, kr, |v| v);
                x0 * strided(kr, rest, r)
            }
            (Matricised::F32(x0), Buffers::F32 { kr, .. }) if !self.crate_gemm => {
                khatri_rao_t_into(factors, 0, r, kr, |v| v as f32);
                (x0 * strided(kr, rest, r)).map(f64::from)
            }
            (Matricised::F32(x0), Buffers::F32 { kr, krt, .. }) => {
                // Column-major C (d_0 × R) is row-major Cᵀ = KRᵀ · X_(0)ᵀ: A = KRᵀ (R × rest,
                // row-major: KR column by column), B = X_(0)ᵀ (rest × d_0, row-major: X_(0)'s
                // column-major storage).
                khatri_rao_t_into(factors, 0, r, kr, |v| v as f32);
                let d0 = x0.nrows();
                krt.resize(r * rest, 0.0);
                let a = krt.as_mut_slice();
                for (i, row) in kr.chunks_exact(r).enumerate() {
                    for (t, &v) in row.iter().enumerate() {
                        a[t * rest + i] = v;
                    }
                }
                let mut c = vec![0.0f32; r * d0];
                sgemm(r, rest, d0, krt, &MatB { data: x0.as_slice(), ld: d0 }, &mut c, d0);
                DMatrix::from_iterator(d0, r, c.into_iter().map(f64::from))
            }
            _ => unreachable!("buffers match the tensor's precision"),
        }
    }

    /// Recomputes the contraction with the first factor (call after it changes).
    fn set_first(&self, f0: &DMatrix<f64>) {
        *self.q.borrow_mut() = None;
        let rest = self.dims[1..].iter().product::<usize>();
        let r = f0.ncols();
        match (self.x0, &mut *self.buf.borrow_mut()) {
            (Matricised::F64(x0), Buffers::F64 { p, .. }) => {
                if p.shape() != (r, rest) {
                    *p = DMatrix::zeros(r, rest);
                }
                // An explicit small transpose then a GEMM (nalgebra's `tr_mul` is not blocked).
                p.gemm(1.0, &f0.transpose(), x0, 0.0);
            }
            (Matricised::F32(x0), Buffers::F32 { p, f0t, .. }) if !self.crate_gemm => {
                if p.shape() != (r, rest) {
                    *p = DMatrix::zeros(r, rest);
                }
                *f0t = f0.transpose().map(|v| v as f32);
                p.gemm(1.0, &*f0t, x0, 0.0);
            }
            (Matricised::F32(x0), Buffers::F32 { p, f0t, .. }) => {
                if p.shape() != (r, rest) {
                    *p = DMatrix::zeros(r, rest);
                }
                // Column-major P (R × rest) is row-major Pᵀ = X_(0)ᵀ · F_0: A = X_(0)ᵀ (rest × d_0,
                // row-major: X_(0)'s storage), B = F_0 (d_0 × R, row-major: F_0ᵀ's column-major
                // storage).
                *f0t = f0.transpose().map(|v| v as f32);
                let d0 = x0.nrows();
                let out = p.as_mut_slice();
                out.fill(0.0);
                sgemm(rest, d0, r, x0.as_slice(), &MatB { data: f0t.as_slice(), ld: r }, out, r);
            }
            _ => unreachable!("buffers match the tensor's precision"),
        }
    }

    /// `X_(k) · KR(factors other than k)` (d_k × R). Modes ≥ 1 use the last [`Mttkrp::set_first`];
    /// modes ≥ 2 also take F_1 as it is at the first such call after it (in a sweep: updated).
    fn product<F: Borrow<DMatrix<f64>>>(&self, factors: &[F], k: usize, r: usize) -> DMatrix<f64> {
        if k == 0 {
            return self.first(factors, r);
        }
        let dims = self.dims;
        if k >= 2 {
            // One pass over P contracts mode 1 for every later mode (then passes over a small Q).
            let rest: usize = dims[2..].iter().product();
            let mut q = self.q.borrow_mut();
            let q = q.get_or_insert_with(|| {
                let f1t = factors[1].borrow().transpose();
                match &*self.buf.borrow() {
                    Buffers::F64 { p, .. } => contract_second(p.as_slice(), f1t.as_slice(), r, dims[1], rest),
                    Buffers::F32 { p, .. } => contract_second(p.as_slice(), f1t.as_slice(), r, dims[1], rest),
                }
            });
            let mut w = Vec::new();
            khatri_rao_t_into(&factors[2..], k - 2, r, &mut w, |v| v);
            let lo_n: usize = dims[k + 1..].iter().product();
            let hi_n: usize = dims[2..k].iter().product();
            let mut mt = DMatrix::<f64>::zeros(r, dims[k]);
            accumulate(q.as_slice(), &w, mt.as_mut_slice(), r, (hi_n, dims[k], lo_n));
            return mt.transpose();
        }
        // The weights of every combination of the modes ≥ 1 other than k, R values each (the
        // Khatri–Rao product of those factors, transposed): column `q` for the multi-index of
        // those modes in row-major order.
        let mut w = Vec::new();
        khatri_rao_t_into(&factors[1..], k - 1, r, &mut w, |v| v);
        // Column `col` of P has the multi-index (i_1, …) in row-major order; split it around mode k:
        // col = (hi · d_k + i_k) · lo_n + lo, and the weight column is q = hi · lo_n + lo.
        let lo_n: usize = dims[k + 1..].iter().product();
        let hi_n: usize = dims[1..k].iter().product();
        let split = (hi_n, dims[k], lo_n);
        let mut mt = DMatrix::<f64>::zeros(r, dims[k]);
        let out = mt.as_mut_slice();
        match &*self.buf.borrow() {
            Buffers::F64 { p, .. } => accumulate(p.as_slice(), &w, out, r, split),
            Buffers::F32 { p, .. } => accumulate(p.as_slice(), &w, out, r, split),
        }
        mt.transpose()
    }
}

/// One ALS iterate: the factors (all but the last with unit columns, the last carrying the
/// weights), their Gram matrices and the relative error of the model they make.
#[derive(Debug, Clone)]
struct Iterate {
    f: Vec<DMatrix<f64>>,
    g: Vec<DMatrix<f64>>,
    err: f64,
    /// ‖X̂‖² (when known).
    fit_sq: f64,
}

impl Iterate {
    /// An iterate from factors of any scaling: columns of all but the last normalised, the scales
    /// moved into the last (error unknown).
    fn from_factors(mut f: Vec<DMatrix<f64>>) -> Iterate {
        let last = f.len() - 1;
        let r = f[0].ncols();
        let mut scale = vec![1.0; r];
        for a in f.iter_mut().take(last) {
            for (s, n) in scale.iter_mut().zip(normalise(a)) {
                *s *= n;
            }
        }
        for (c, s) in scale.iter().enumerate() {
            f[last].column_mut(c).scale_mut(*s);
        }
        let g = f.iter().map(gram).collect();
        Iterate { f, g, err: f64::INFINITY, fit_sq: f64::NAN }
    }

    /// The weights: column norms of the last factor (the others have unit columns).
    fn weights(&self) -> Vec<f64> {
        let last = &self.f[self.f.len() - 1];
        (0..last.ncols()).map(|c| last.column(c).norm()).collect()
    }

    /// `x + (s − 1)(x − prev)` on the factors the next sweep reads (all but the first).
    fn extrapolated(&self, prev: &Iterate, s: f64) -> Iterate {
        let f: Vec<DMatrix<f64>> = self
            .f
            .iter()
            .zip(&prev.f)
            .enumerate()
            .map(|(k, (a, b))| if k == 0 { a.clone() } else { a + (a - b) * (s - 1.0) })
            .collect();
        let g = f.iter().enumerate().map(|(k, a)| if k == 0 { self.g[0].clone() } else { gram(a) }).collect();
        Iterate { f, g, err: f64::INFINITY, fit_sq: f64::NAN }
    }
}

/// The relative error from ‖X‖², ⟨X, X̂⟩ and ‖X̂‖².
fn rel_err(norm_sq: f64, inner: f64, fit_sq: f64) -> f64 {
    if norm_sq > 0.0 {
        ((norm_sq - 2.0 * inner + fit_sq) / norm_sq).max(0.0).sqrt()
    } else {
        0.0
    }
}

/// The ALS problem: the tensor's MTTKRPs, its shape, the rank and ‖X‖².
struct Als<'a> {
    mt: Mttkrp<'a>,
    dims: &'a [usize],
    r: usize,
    norm_sq: f64,
}

impl Als<'_> {
    /// One sweep from `start` (its first factor is not read), with its mode-0 MTTKRP if already
    /// computed; abandoned (None) when the error after the first factor's update is not below
    /// `bound`.
    fn sweep(&self, start: &Iterate, m0: Option<DMatrix<f64>>, bound: f64) -> Option<Iterate> {
        let (dims, r) = (self.dims, self.r);
        let last = dims.len() - 1;
        // The new factors and Grams, mode by mode (modes ≥ k are still the start's).
        let (mut f, mut g): (Vec<DMatrix<f64>>, Vec<DMatrix<f64>>) = (Vec::new(), Vec::new());
        let mt = &self.mt;
        let mut m0 = m0;
        let (mut err, mut fit_sq) = (f64::INFINITY, 0.0);
        // V_k = ∘_{j≠k} G_j with the Grams of modes < k already updated: a running product of the
        // updated ones (`done`) times a suffix product of the start's (`after[k]` = ∘_{j>k} G_j;
        // `None` for the last two modes: one Gram or none, read in place).
        let mut after: Vec<Option<DMatrix<f64>>> = vec![None; dims.len()];
        for k in (0..last.saturating_sub(1)).rev() {
            let mut a = match &after[k + 1] {
                Some(x) => x.clone(),
                None => start.g[k + 2].clone(),
            };
            hadamard_assign(&mut a, &start.g[k + 1]);
            after[k] = Some(a);
        }
        let mut done: Option<DMatrix<f64>> = None;
        for (k, after_k) in after.into_iter().enumerate() {
            let v = match (after_k, done.as_ref()) {
                (Some(mut a), d) => {
                    if let Some(d) = d {
                        hadamard_assign(&mut a, d);
                    }
                    a
                }
                (None, Some(d)) if k < last => {
                    let mut a = d.clone();
                    hadamard_assign(&mut a, &start.g[last]);
                    a
                }
                (None, Some(_)) => done.take().expect("checked"),
                (None, None) if k < last => start.g[last].clone(),
                (None, None) => DMatrix::from_element(r, r, 1.0),
            };
            let m = match m0.take() {
                Some(m) if k == 0 => m,
                _ => {
                    let cur: Vec<&DMatrix<f64>> = f.iter().chain(&start.f[k..]).collect();
                    mt.product(&cur, k, r)
                }
            };
            let mut a = solve_normal(&v, &m);
            let mut gk = gram(&a);
            if k == 0 || k == last {
                // The model's error now: ⟨X, X̂⟩ = Σ A ∘ M, ‖X̂‖² = Σ V ∘ AᵀA.
                let inner: f64 = a.iter().zip(m.iter()).map(|(x, y)| x * y).sum();
                fit_sq = sym_dot(&v, &gk);
                err = rel_err(self.norm_sq, inner, fit_sq);
                if k == 0 && err >= bound {
                    return None;
                }
            }
            if k != last {
                let norms = normalise(&mut a);
                unscale_gram(&mut gk, &norms);
                match done.as_mut() {
                    Some(d) => hadamard_assign(d, &gk),
                    None => done = Some(gk.clone()),
                }
            }
            if k == 0 {
                mt.set_first(&a);
            }
            f.push(a);
            g.push(gk);
        }
        Some(Iterate { f, g, err, fit_sq })
    }
}

/// New columns for a warm start at a higher rank: for every mode the leading left singular
/// vectors of the residual's unfolding, then seeded uniform ones, all unit; the last mode's scaled
/// so that each new component carries an equal share of the residual's norm.
fn residual_columns(
    x: &[f64],
    dims: &[usize],
    model: &Iterate,
    extra: usize,
    seed: u64,
) -> Result<Vec<DMatrix<f64>>> {
    let r = model.f[0].ncols();
    let kr = khatri_rao(&model.f, 0, r);
    let rest = x.len() / dims[0];
    let approx = &model.f[0] * kr.transpose();
    let mut res = DMatrix::from_row_slice(dims[0], rest, x);
    res -= approx;
    let norm = res.norm();
    // Back to row-major for the unfoldings.
    let res_rows: Vec<f64> = res.transpose().as_slice().to_vec();
    let unf = unfoldings(&res_rows, dims);
    let mut rng = seeded_rng(seed ^ 0x5741_524D);
    let last = dims.len() - 1;
    unf.iter()
        .enumerate()
        .map(|(k, m)| {
            let d = m.nrows();
            let mut a = DMatrix::from_fn(d, extra, |_, _| rng.signed());
            if norm > 0.0 {
                let (u, _) = top_left(m, extra.min(d))?;
                a.columns_mut(0, u.ncols()).copy_from(&u);
            }
            normalise(&mut a);
            if k == last {
                a *= norm.max(f64::MIN_POSITIVE) / (extra as f64).sqrt();
            }
            Ok(a)
        })
        .collect()
}

/// The start of a warm run at rank `r` from a model's factors (any scaling): its components, plus
/// [`residual_columns`] when `r` is larger, or its `r` strongest components (largest weight) when
/// smaller.
fn warm_start(x: &[f64], dims: &[usize], start: Vec<DMatrix<f64>>, r: usize, seed: u64) -> Result<Iterate> {
    let it = Iterate::from_factors(start);
    let r0 = it.f[0].ncols();
    if r == r0 {
        return Ok(it);
    }
    if r < r0 {
        let lambda = it.weights();
        let mut order: Vec<usize> = (0..r0).collect();
        order.sort_by(|&a, &b| lambda[b].total_cmp(&lambda[a]).then(a.cmp(&b)));
        order.truncate(r);
        order.sort_unstable();
        let f = it.f.iter().map(|a| a.select_columns(order.iter())).collect();
        return Ok(Iterate::from_factors(f));
    }
    let new = residual_columns(x, dims, &it, r - r0, seed)?;
    let f =
        it.f.iter()
            .zip(new)
            .map(|(a, b)| {
                let mut m = DMatrix::zeros(a.nrows(), r);
                m.columns_mut(0, r0).copy_from(a);
                m.columns_mut(r0, r - r0).copy_from(&b);
                m
            })
            .collect();
    Ok(Iterate::from_factors(f))
}

/// CP-ALS of a dense row-major tensor at rank `r`, from a cold start (`opts.init`) or from the
/// factors of another solution (`start`, any rank; see [`warm_start`]).
fn cp_als(
    x: &[f64],
    dims: &[usize],
    r: usize,
    opts: &AlsOptions,
    start: Option<Vec<DMatrix<f64>>>,
    progress: Progress<'_>,
) -> Result<CpModel> {
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("tensor holds NaN or infinity".into()));
    }
    if dims.len() < 2 {
        return Err(Error::Shape("CP needs a tensor of order 2 or more".into()));
    }
    let norm_sq: f64 = x.iter().map(|v| v * v).sum();
    let norm_x = norm_sq.sqrt();
    let mut cur = match start {
        Some(f) => warm_start(x, dims, f, r, opts.seed)?,
        None => Iterate::from_factors(init_factors(&unfoldings(x, dims), r, opts)?),
    };
    let rest = x.len() / dims[0].max(1);
    let x0 = if x.len() * r >= F32_MIN_WORK {
        Matricised::F32(DMatrix::from_row_iterator(dims[0], rest, x.iter().map(|&v| v as f32)))
    } else {
        Matricised::F64(DMatrix::from_row_slice(dims[0], rest, x))
    };
    let als = Als { mt: Mttkrp::new(&x0, dims), dims, r, norm_sq };
    let mut prev: Option<Iterate> = None;
    let mut report = AlsReport {
        curve: vec![],
        iterations: 0,
        stop: StopReason::MaxIter,
        degeneracy: None,
        rejected_steps: 0,
        tol: if x.len() * r < SMALL_WORK { opts.tol.min(SMALL_TOL) } else { opts.tol },
        window: STALL_WINDOW,
    };
    let mut step = STEP_START;
    for it in 1..=opts.max_iter {
        let mut next = None;
        if let Some(p) = prev.as_ref().filter(|_| opts.extrapolate && it > EXTRAPOLATE_AFTER) {
            let y = cur.extrapolated(p, step);
            let m0 = als.mt.first(&y.f, r);
            next = als.sweep(&y, Some(m0), cur.err);
            if next.is_some() {
                step = (step * STEP_GROW).min(STEP_MAX);
            } else {
                report.rejected_steps += 1;
                step = (1.0 + (step - 1.0) / 2.0).max(1.05);
            }
        }
        let next = match next {
            Some(n) => n,
            None => als.sweep(&cur, None, f64::INFINITY).expect("an unbounded sweep finishes"),
        };
        prev = Some(std::mem::replace(&mut cur, next));
        report.curve.push(cur.err);
        report.iterations = it;
        if report.degeneracy.is_none() {
            report.degeneracy = degeneracy(it, &cur.weights(), cur.fit_sq, norm_x);
        }
        if !progress(it, cur.err) {
            report.stop = StopReason::Cancelled;
            break;
        }
        if AlsReport::stalled(&report.curve, report.tol, report.window) {
            report.stop = StopReason::Converged;
            break;
        }
    }
    let lambda = cur.weights();
    let mut factors = cur.f;
    let last = factors.len() - 1;
    normalise(&mut factors[last]);
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
        Self::run(kernel, r, opts, None, progress)
    }

    /// CP-ALS of `kernel` at rank `r` started from `start` (a solution of the same kernel at any
    /// rank: its components, plus new ones from the residual's leading singular vectors when `r` is
    /// larger, or its `r` strongest components when smaller). `opts.init` is not used. Going up in
    /// rank, the result is never worse than `start` (its components are a feasible point of the
    /// first least-squares update).
    pub fn warm(
        kernel: &Kernel,
        r: usize,
        start: &Cp4,
        opts: &AlsOptions,
        progress: Progress<'_>,
    ) -> Result<Self> {
        if Dims::of(kernel) != start.dims {
            return Err(Error::Shape("warm start from a CP of another kernel shape".into()));
        }
        let f = vec![start.a.clone(), start.b.clone(), start.ky.clone(), start.kx.clone()];
        Self::run(kernel, r, opts, Some(f), progress)
    }

    fn run(
        kernel: &Kernel,
        r: usize,
        opts: &AlsOptions,
        start: Option<Vec<DMatrix<f64>>>,
        progress: Progress<'_>,
    ) -> Result<Self> {
        check_kernel(kernel)?;
        let d = Dims::of(kernel);
        check_rank("CP", r, d.n * d.c * d.k2())?;
        let model = cp_als(&kernel_tensor(kernel), &[d.n, d.c, d.kh, d.kw], r, opts, start, progress)?;
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
        Self::run(kernel, r, opts, None, progress)
    }

    /// CP-ALS at rank `r` started from `start` (see [`Cp4::warm`]).
    pub fn warm(
        kernel: &Kernel,
        r: usize,
        start: &CpMobile,
        opts: &AlsOptions,
        progress: Progress<'_>,
    ) -> Result<Self> {
        if Dims::of(kernel) != start.dims {
            return Err(Error::Shape("warm start from a CP of another kernel shape".into()));
        }
        let f = vec![start.a.clone(), start.b.clone(), start.d.clone()];
        Self::run(kernel, r, opts, Some(f), progress)
    }

    fn run(
        kernel: &Kernel,
        r: usize,
        opts: &AlsOptions,
        start: Option<Vec<DMatrix<f64>>>,
        progress: Progress<'_>,
    ) -> Result<Self> {
        check_kernel(kernel)?;
        let dm = Dims::of(kernel);
        check_rank("MobileNet CP", r, dm.n * dm.c * dm.k2())?;
        let model = cp_als(&kernel_tensor(kernel), &[dm.n, dm.c, dm.k2()], r, opts, start, progress)?;
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
        // The fast products against the textbook X_(k) · KR(others) on random 4-way tensors (the
        // larger one spans several of the packed GEMM's row blocks).
        let mut rng = seeded_rng(5);
        for (dims, r) in [([4usize, 3, 2, 5], 3), ([24, 20, 3, 3], 13)] {
            let len: usize = dims.iter().product();
            let x: Vec<f64> = (0..len).map(|_| rng.signed()).collect();
            let f: Vec<DMatrix<f64>> =
                dims.iter().map(|&d| DMatrix::from_fn(d, r, |_, _| rng.signed())).collect();
            let unf = unfoldings(&x, &dims);
            let rest = len / dims[0];
            for x0 in [
                Matricised::F64(DMatrix::from_row_slice(dims[0], rest, &x)),
                Matricised::F32(DMatrix::from_row_iterator(dims[0], rest, x.iter().map(|&v| v as f32))),
            ] {
                let tol = if matches!(x0, Matricised::F64(_)) { 1e-12 } else { 1e-5 };
                // Both GEMMs of the f32 contractions (the crate's, as wasm runs it, and nalgebra's).
                for crate_gemm in [false, true] {
                    let mt = Mttkrp { crate_gemm, ..Mttkrp::new(&x0, &dims) };
                    mt.set_first(&f[0]);
                    for (k, u) in unf.iter().enumerate() {
                        let slow = u * khatri_rao(&f, k, r);
                        let err = (mt.product(&f, k, r) - &slow).norm();
                        assert!(err < tol * slow.norm(), "{dims:?} mode {k}, crate GEMM {crate_gemm}: {err}");
                    }
                }
            }
        }
    }
}
