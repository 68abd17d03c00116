//! Data-aware decoupling: truncations that are optimal for the layer's *outputs* on calibration
//! data instead of for its weights, in closed form and without training (METHOD.md, "Data-aware
//! decoupling").
//!
//! * [`PatchStats`] accumulates, image by image in f64, the second moments of the patches the
//!   conv sees (per channel, and jointly per group up to a size cap) and optionally the cross
//!   moment with target outputs.
//! * [`decouple`] weights every slice by the input's statistics before its SVD and maps the
//!   factors back:
//!   - DW→PW, slice M_c (rows: the outputs of c's group): `M̂_c = (M_c Σ_c^{1/2})_T Σ_c^{-1/2}`
//!     minimises `E‖(M_c − M̂_c) p_c‖²`, the layer's output error when input channels are
//!     uncorrelated.
//!   - PW→DW, slice M'_n (c × K²): with the patch covariance Kronecker-factored, `Cov(vec P) ≈ A ⊗ B`,
//!     `M̂'_n = A^{-1/2} (A^{1/2} M'_n B^{1/2})_T B^{-1/2}` minimises `‖A^{1/2} ΔM B^{1/2}‖_F`, the
//!     exact output error of output n when the covariance is Kronecker.
//!
//!   Both weighted truncations are *nested* (term k is the k-th weighted singular triplet mapped
//!   back), so one [`Decomposition`] with all `full_rank` terms serves every T through
//!   `merged(T)`, `reconstruct(T)` and `term(k)`, as the data-free one does; [`truncate`] cuts it
//!   to T terms when a T-term value is wanted.
//! * [`expected_error`] gives the relative output error `E‖(W − Ŵ)p‖² / E‖Wp‖²` of any
//!   approximation Ŵ from the statistics alone, and [`expected_residual`] `E‖y − Ŵp‖²` against
//!   collected targets.
//! * [`refit`] re-solves the pointwise weights by least squares for fixed depthwise filters
//!   (asymmetric reconstruction, Zhang et al., arXiv 1505.06798).
//!
//! Conventions of the data-aware [`Decomposition`]: `sigma` holds the *weighted* singular values
//! (σ_k of `M Σ^{1/2}` or of `A^{1/2} M' B^{1/2}`), `energy` their Σσ² (the slice's share of the
//! expected output energy under the model), so `energy_kept`, `rel_weight_error` and the threshold
//! rules read weighted (output-side) quantities. `dw` rows are `Σ^{-1/2} v_k` (or `B^{-1/2} v_k`)
//! and are not unit vectors; `pw` rows are `σ_k u_k` (or `σ_k A^{-1/2} u_k`); `merged`,
//! `reconstruct`, `branches` and `term` only ever form Σ_k pw_k dw_kᵀ, so they hold as they are.
//! A slice whose input statistics are all zero (a channel the data never reach, or a group
//! without activity for PW→DW) has nothing to weight by: it keeps the data-free factors, with
//! `sigma` = 0 and `energy` = 0 (it adds nothing to the output on the calibration data), so the
//! threshold rules leave it out.

mod linalg;
mod refit;
mod stats;

pub use refit::{expected_error, expected_residual, refit, ExpectedError, RefitOptions, DEFAULT_REFIT_RIDGE};
pub use stats::{PatchStats, StatsOptions, DEFAULT_FULL_CAP};

use super::{slice_matrix, Decomposition, Slice};
use crate::error::{Error, Result};
use crate::layer::{Kernel, Order};
use crate::svd;
use linalg::{matmul, sym_roots, top_eigen, SymRoot};
use serde::{Deserialize, Serialize};

/// Default ridge: Σ + λI with λ = 1e-3 · tr(Σ)/K² (a thousandth of the mean eigenvalue).
pub const DEFAULT_RIDGE: f64 = 1e-3;

/// Relative tolerance of the run-time check that the full-rank factors rebuild the slice.
const REBUILD_TOL: f64 = 1e-6;

/// How the PW→DW ordering factors the patch covariance as A ⊗ B (A: c × c channels, B: K² × K² taps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum KronFactor {
    /// The marginal moments: `A = E[P Pᵀ] / K²`, `B = E[Pᵀ P] / tr(A)` (P the c × K² patch
    /// matrix). The default, because
    /// (1) they exist at any size: A is the c × c channel matrix and B the sum of the per-channel
    ///     blocks, both kept when the full moment is over the cap (VGG's 512-channel layers);
    /// (2) they are exact whenever the covariance is Kronecker (S = A₀ ⊗ B₀ gives A ⊗ B = S):
    ///     channels mixed from one stationary spatial field, the situation the surrogate models;
    /// (3) they are positive semi-definite by construction and tr(A ⊗ B) = tr(S);
    /// (4) they are the first step of the flip-flop (Kronecker maximum-likelihood) iteration and
    ///     the factors K-FAC uses for the same reason.
    ///
    /// The weighted truncation only depends on A and B up to scale, so the normalisation is
    /// immaterial.
    #[default]
    Moments,
    /// The nearest Kronecker product (Van Loan–Pitsianis): A ⊗ B minimising ‖S − A ⊗ B‖_F, from
    /// the top singular pair of the rearranged S (c² × K⁴). Needs the full joint moment. It fits
    /// S where S is large in Frobenius norm, which is not the weighting the output error asks for,
    /// and its factors are only positive semi-definite up to the projection done here (negative
    /// eigenvalues clamped). Offered to compare (see the report in the tests).
    Nearest,
}

/// Options of [`decouple`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AwareOptions {
    /// Σ + λI with λ = ridge · tr(Σ)/dim (per moment: Σ_c, A and B alike). 0 is allowed: the
    /// eigenvalues are then only floored at 1e-12 of the largest.
    pub ridge: f64,
    /// The PW→DW covariance factorisation.
    pub kron: KronFactor,
}

impl Default for AwareOptions {
    fn default() -> Self {
        AwareOptions { ridge: DEFAULT_RIDGE, kron: KronFactor::Moments }
    }
}

/// Checks that `stats` describe the input of a conv with `kernel`'s shape.
pub(crate) fn check_stats(kernel_shape: (usize, usize, usize, usize), stats: &PatchStats) -> Result<()> {
    if kernel_shape != (stats.n, stats.c, stats.kh, stats.kw) {
        let (n, c, kh, kw) = kernel_shape;
        return Err(Error::Shape(format!(
            "statistics of a {}×{}×{}×{} layer used with a {n}×{c}×{kh}×{kw} kernel",
            stats.n, stats.c, stats.kh, stats.kw
        )));
    }
    if stats.count() == 0 {
        return Err(Error::Param("the statistics are empty (no image was added)".into()));
    }
    Ok(())
}

/// The data-aware decoupling of `kernel` in `order`, every slice weighted by the statistics of
/// the layer's input (module docs). Groups come from `stats.geometry`. All `full_rank` terms are
/// returned (the weighted truncations are nested); use `merged(T)`/`reconstruct(T)` or
/// [`truncate`]. With white inputs (Σ ∝ I) it equals [`Decomposition::new`] up to rounding.
pub fn decouple(
    kernel: &Kernel,
    order: Order,
    stats: &PatchStats,
    opts: &AwareOptions,
) -> Result<Decomposition> {
    check_stats((kernel.n, kernel.c, kernel.kh, kernel.kw), stats)?;
    if !(opts.ridge >= 0.0 && opts.ridge.is_finite()) {
        return Err(Error::Param(format!("ridge must be finite and ≥ 0, got {}", opts.ridge)));
    }
    let groups = stats.groups();
    // The data-free decomposition: the shape header, and the factors of slices without data.
    let plain = Decomposition::new(kernel, groups, order)?;
    let (k2, c) = (kernel.kh * kernel.kw, kernel.c);
    let mut ws = svd::Workspace::default();
    let mut slices = Vec::with_capacity(plain.slices.len());
    match order {
        Order::DwPw => {
            for (s, free) in plain.slices.iter().enumerate() {
                let root = sym_roots(&stats.channel_moment(s)?, k2, opts.ridge)?;
                let m = slice_matrix(kernel, groups, order, s)?;
                slices.push(match root {
                    Some(r) => weighted_slice(&mut ws, &m, None, &r, s, order)?,
                    None => silent(free),
                });
            }
        }
        Order::PwDw => {
            let nper = kernel.n / groups;
            for g in 0..groups {
                let (a, b) = kron_factors(stats, g, opts.kron)?;
                let ra = sym_roots(&a, c, opts.ridge)?;
                let rb = sym_roots(&b, k2, opts.ridge)?;
                for s in g * nper..(g + 1) * nper {
                    let m = slice_matrix(kernel, groups, order, s)?;
                    slices.push(match (&ra, &rb) {
                        (Some(ra), Some(rb)) => weighted_slice(&mut ws, &m, Some(ra), rb, s, order)?,
                        _ => silent(&plain.slices[s]),
                    });
                }
            }
        }
    }
    Ok(Decomposition { slices, ..plain })
}

/// A data-free slice kept for a slice without data: its factors, σ = 0 and energy 0.
fn silent(free: &Slice) -> Slice {
    Slice { sigma: vec![0.0; free.sigma.len()], energy: 0.0, ..free.clone() }
}

/// The weighted SVD of one slice `M` (rows × K²): `L M R` with L = `left.half` (or I) and
/// R = `right.half`, mapped back: pw_k = σ_k L⁻¹ u_k, dw_k = R⁻¹ v_k. Checks Σσ² = ‖L M R‖²_F
/// and that the full-rank factors rebuild M.
fn weighted_slice(
    ws: &mut svd::Workspace,
    m: &[f64],
    left: Option<&SymRoot>,
    right: &SymRoot,
    s: usize,
    order: Order,
) -> Result<Slice> {
    let k2 = right.d;
    let rows = m.len() / k2;
    let mut w = matmul(m, &right.half, rows, k2, k2);
    if let Some(l) = left {
        w = matmul(&l.half, &w, rows, rows, k2);
    }
    let dec = svd::svd_with(ws, &w, rows, k2)
        .map_err(|e| Error::Numeric(format!("{} slice {s} (weighted): {e}", order.label())))?;
    let energy = svd::frobenius_sq(&w);
    let ssq: f64 = dec.sigma.iter().map(|x| x * x).sum();
    if (ssq - energy).abs() > 1e-9 * energy {
        return Err(Error::Numeric(format!(
            "{} slice {s} (weighted): Σσ² = {ssq:e} but ‖M‖² = {energy:e}",
            order.label()
        )));
    }
    let r = dec.k();
    let mut pw = dec.u.clone();
    for (row, &sig) in pw.chunks_exact_mut(rows).zip(&dec.sigma) {
        row.iter_mut().for_each(|x| *x *= sig);
    }
    if let Some(l) = left {
        // Row k of pw becomes L⁻¹ (σ_k u_k): (pw L⁻¹) with L⁻¹ symmetric.
        pw = matmul(&pw, &l.inv_half, r, rows, rows);
    }
    let dw = matmul(&dec.v, &right.inv_half, r, k2, k2);
    // Run-time check: all r terms rebuild M (the weighting cancels exactly at full rank).
    let (mut err, norm) = (0.0f64, svd::frobenius_sq(m));
    for i in 0..rows {
        for j in 0..k2 {
            let v: f64 = (0..r).map(|k| pw[k * rows + i] * dw[k * k2 + j]).sum();
            err += (v - m[i * k2 + j]).powi(2);
        }
    }
    if norm > 0.0 && (err.is_nan() || err > REBUILD_TOL * REBUILD_TOL * norm) {
        return Err(Error::Numeric(format!(
            "{} slice {s} (weighted): the full-rank factors do not rebuild the slice ({:.1e} relative)",
            order.label(),
            (err / norm).sqrt()
        )));
    }
    Ok(Slice { sigma: dec.sigma, dw, pw, energy })
}

/// The Kronecker factors (A: c × c, B: K² × K²) of group `g`'s patch covariance.
pub(crate) fn kron_factors(stats: &PatchStats, g: usize, how: KronFactor) -> Result<(Vec<f64>, Vec<f64>)> {
    let (c, k2) = (stats.c, stats.k2());
    match how {
        KronFactor::Moments => {
            let mut a = stats.channel_matrix(g)?;
            a.iter_mut().for_each(|v| *v /= k2 as f64);
            let tr_a: f64 = (0..c).map(|i| a[i * c + i]).sum();
            let mut b = vec![0.0; k2 * k2];
            for cl in 0..c {
                for (o, v) in b.iter_mut().zip(stats.channel_moment(g * c + cl)?) {
                    *o += v;
                }
            }
            if tr_a > 0.0 {
                b.iter_mut().for_each(|v| *v /= tr_a);
            }
            Ok((a, b))
        }
        KronFactor::Nearest => nearest_kronecker(&stats.joint_moment(g)?, c, k2),
    }
}

/// Van Loan–Pitsianis: the A ⊗ B nearest to S in Frobenius norm. With R(S) the c² × K⁴
/// rearrangement (row (c, c'), column (i, j) = S[(c,i),(c',j)]), vec(B) is the top eigenvector of
/// R(S)ᵀR(S) = Σ_{c,c'} vec(S_cc') vec(S_cc')ᵀ and A[c,c'] = ⟨S_cc', B⟩. Signs are fixed so that
/// tr(B) ≥ 0 and both are symmetrised.
fn nearest_kronecker(s: &[f64], c: usize, k2: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let (d, q) = (c * k2, k2 * k2);
    let mut gram = vec![0.0; q * q];
    let mut block = vec![0.0; q];
    for ci in 0..c {
        for cj in 0..c {
            for i in 0..k2 {
                block[i * k2..(i + 1) * k2].copy_from_slice(&s[(ci * k2 + i) * d + cj * k2..][..k2]);
            }
            for (p, &x) in block.iter().enumerate() {
                if x != 0.0 {
                    for (o, &y) in gram[p * q..(p + 1) * q].iter_mut().zip(&block) {
                        *o += x * y;
                    }
                }
            }
        }
    }
    let (_, mut b) = top_eigen(&gram, q)?;
    let tr_b: f64 = (0..k2).map(|i| b[i * k2 + i]).sum();
    if tr_b < 0.0 {
        b.iter_mut().for_each(|v| *v = -*v);
    }
    let mut a = vec![0.0; c * c];
    for ci in 0..c {
        for cj in 0..c {
            let mut acc = 0.0;
            for i in 0..k2 {
                acc += linalg::dot(&s[(ci * k2 + i) * d + cj * k2..][..k2], &b[i * k2..(i + 1) * k2]);
            }
            a[ci * c + cj] = acc;
        }
    }
    let sym = |m: &mut [f64], n: usize| {
        for i in 0..n {
            for j in 0..i {
                let v = 0.5 * (m[i * n + j] + m[j * n + i]);
                m[i * n + j] = v;
                m[j * n + i] = v;
            }
        }
    };
    sym(&mut a, c);
    sym(&mut b, k2);
    Ok((a, b))
}

/// The first `t` terms of every slice (`full_rank` = t); `energy` keeps the untruncated total.
pub fn truncate(d: &Decomposition, t: usize) -> Result<Decomposition> {
    d.check_t(t)?;
    let (k2, rows) = (d.kh * d.kw, d.slice_rows());
    let slices = d
        .slices
        .iter()
        .map(|s| {
            let cut = |v: &[f64], len: usize| {
                v.get(..t * len)
                    .map(<[f64]>::to_vec)
                    .ok_or_else(|| Error::Param("the decomposition holds no factors (σ only)".into()))
            };
            Ok(Slice {
                sigma: s.sigma[..t.min(s.sigma.len())].to_vec(),
                dw: cut(&s.dw, k2)?,
                pw: cut(&s.pw, rows)?,
                energy: s.energy,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Decomposition {
        full_rank: t,
        slices,
        order: d.order,
        n: d.n,
        c: d.c,
        kh: d.kh,
        kw: d.kw,
        groups: d.groups,
    })
}
