//! Dense helpers for the related decompositions: truncated SVDs of matrices with both sides in the
//! hundreds or low thousands, through the eigen-decomposition of the smaller Gram matrix
//! (nalgebra's `SymmetricEigen`; its SVD with vectors is avoided, nalgebra issue 1172).
//!
//! A truncation is returned as the projection `M ≈ U_r (U_rᵀ M)` (or `(M V_r) V_rᵀ`), which is exact
//! at full rank whatever the conditioning, and nothing is divided by a small singular value.
//! Every decomposition checks `Σσ² = ‖M‖²_F` at run time.

use crate::error::{Error, Result};
use crate::random::Rng;
use nalgebra::{DMatrix, SymmetricEigen};

/// Relative tolerance of the run-time energy check `|Σσ² − ‖M‖²_F| ≤ tol·‖M‖²_F`.
const ENERGY_TOL: f64 = 1e-9;

/// A rank-r factorisation `M ≈ left · right` from a truncated SVD, with all squared singular values.
#[derive(Debug, Clone)]
pub(crate) struct LowRank {
    /// m × r.
    pub left: DMatrix<f64>,
    /// r × n.
    pub right: DMatrix<f64>,
    /// σ_k² for every k (descending, ≥ 0), min(m, n) of them.
    pub sigma_sq: Vec<f64>,
}

/// Eigenpairs of a symmetric matrix, eigenvalues descending and clamped at 0 (a Gram matrix is PSD).
pub(crate) fn sorted_eigen(g: DMatrix<f64>) -> Result<(Vec<f64>, DMatrix<f64>)> {
    if g.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("Gram matrix holds NaN or infinity".into()));
    }
    let n = g.nrows();
    let eig = SymmetricEigen::new(g);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
    let values = idx.iter().map(|&i| eig.eigenvalues[i].max(0.0)).collect();
    let vectors = DMatrix::from_fn(n, n, |r, c| eig.eigenvectors[(r, idx[c])]);
    Ok((values, vectors))
}

/// The `r` leading left singular vectors of `m` (m × r, orthonormal) and all σ² (from `m mᵀ`).
/// When only some of them are asked for, [`top_eigen`] (which checks its answer and otherwise
/// falls back to the full eigen-decomposition).
pub(crate) fn top_left(m: &DMatrix<f64>, r: usize) -> Result<(DMatrix<f64>, Vec<f64>)> {
    let mut g = DMatrix::zeros(m.nrows(), m.nrows());
    super::dgemm::gemm(&mut g, 1.0, m, &m.transpose(), 0.0);
    let r = r.min(m.nrows());
    if g.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("Gram matrix holds NaN or infinity".into()));
    }
    if r < g.nrows() && g.nrows() >= TOP_EIGEN_MIN {
        if let Some((vectors, values)) = top_eigen(&g, r) {
            check_energy(&values, m)?;
            return Ok((vectors, values));
        }
    }
    let (values, vectors) = sorted_eigen(g)?;
    check_energy(&values, m)?;
    Ok((vectors.columns(0, r).into_owned(), values))
}

/// From this order on, leading eigenvectors come from [`top_eigen`].
const TOP_EIGEN_MIN: usize = 64;

/// Eigenvalues of the symmetric tridiagonal matrix with diagonal `d` and off-diagonal `e`
/// (`e[i]` couples `i` and `i + 1`), by the implicit QL method with Wilkinson shifts (as in
/// EISPACK's tql1); None if it does not converge in 60 iterations per eigenvalue.
fn tridiagonal_eigenvalues(mut d: Vec<f64>, e: &[f64]) -> Option<Vec<f64>> {
    let n = d.len();
    let mut e: Vec<f64> = e.iter().copied().chain(std::iter::once(0.0)).take(n).collect();
    for l in 0..n {
        let mut iter = 0;
        loop {
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iter += 1;
            if iter > 60 {
                return None;
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0f64, 1.0f64, 0.0f64);
            let mut underflow = false;
            for i in (l..m).rev() {
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    underflow = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if underflow {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    Some(d)
}

/// `T − λI = P L U` of a symmetric tridiagonal T (diagonal `d`, off-diagonal `e`) with partial
/// pivoting (LAPACK's dgttrf), ready for [`TriLu::solve`].
struct TriLu {
    d: Vec<f64>,
    dl: Vec<f64>,
    du: Vec<f64>,
    du2: Vec<f64>,
    swap: Vec<bool>,
}

impl TriLu {
    fn new(d: &[f64], e: &[f64], lambda: f64, tiny: f64) -> TriLu {
        let n = d.len();
        let mut dd: Vec<f64> = d.iter().map(|x| x - lambda).collect();
        let (mut dl, mut du) = (e.to_vec(), e.to_vec());
        let mut du2 = vec![0.0; n.saturating_sub(2)];
        let mut swap = vec![false; n.saturating_sub(1)];
        for i in 0..n.saturating_sub(1) {
            if dd[i].abs() >= dl[i].abs() {
                if dd[i] == 0.0 {
                    dd[i] = tiny;
                }
                let fact = dl[i] / dd[i];
                dl[i] = fact;
                dd[i + 1] -= fact * du[i];
            } else {
                let fact = dd[i] / dl[i];
                dd[i] = dl[i];
                dl[i] = fact;
                let temp = du[i];
                du[i] = dd[i + 1];
                dd[i + 1] = temp - fact * dd[i + 1];
                if i + 2 < n {
                    du2[i] = du[i + 1];
                    du[i + 1] *= -fact;
                }
                swap[i] = true;
            }
        }
        if n > 0 && dd[n - 1] == 0.0 {
            dd[n - 1] = tiny;
        }
        TriLu { d: dd, dl, du, du2, swap }
    }

    /// `x ← (T − λI)⁻¹ x`.
    fn solve(&self, x: &mut [f64]) {
        let n = x.len();
        for i in 0..n.saturating_sub(1) {
            if self.swap[i] {
                x.swap(i, i + 1);
            }
            x[i + 1] -= self.dl[i] * x[i];
        }
        for i in (0..n).rev() {
            let mut v = x[i];
            if i + 1 < n {
                v -= self.du[i] * x[i + 1];
            }
            if i + 2 < n {
                v -= self.du2[i] * x[i + 2];
            }
            x[i] = v / self.d[i];
        }
    }
}

/// `Σ a_i b_i` with four accumulators (vectorisable).
fn dot4(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for t in 0..4 {
            acc[t] += x[t] * y[t];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `x −= (zᵀx) z` for every vector z of `z` (unit vectors), in turn.
fn orthogonalise(x: &mut [f64], z: &[Vec<f64>]) {
    for zk in z {
        let dot = dot4(zk, x);
        for (v, a) in x.iter_mut().zip(zk) {
            *v -= dot * a;
        }
    }
}

/// The `r` leading eigenvectors (n × r, orthonormal, descending) and all eigenvalues (descending,
/// clamped at 0) of a symmetric PSD matrix `g` (its lower triangle is read), without the full
/// eigen-decomposition: Householder tridiagonalisation, the tridiagonal's eigenvalues by implicit
/// QL, its leading eigenvectors by inverse iteration (re-orthogonalised), back to `g`'s basis, and
/// a Rayleigh–Ritz rotation. The answer is checked on `g` itself — the columns orthonormal, `G U`
/// in their span, `tr(Uᵀ G U)` the sum of the `r` largest eigenvalues — and None is returned when a
/// check fails (the caller then takes the full eigen-decomposition).
pub(crate) fn top_eigen(g: &DMatrix<f64>, r: usize) -> Option<(DMatrix<f64>, Vec<f64>)> {
    let n = g.nrows();
    if r == 0 || r > n {
        return None;
    }
    let (q, diag, off) = nalgebra::linalg::SymmetricTridiagonal::new(g.clone()).unpack();
    let (d, e): (Vec<f64>, Vec<f64>) = (diag.iter().copied().collect(), off.iter().copied().collect());
    let mut values = tridiagonal_eigenvalues(d.clone(), &e)?;
    values.sort_by(|a, b| b.total_cmp(a));
    let norm = values.iter().fold(0.0f64, |a, &b| a.max(b.abs())).max(f64::MIN_POSITIVE);
    // Inverse iteration (as LAPACK's dstein): eigenvalues closer than `pertol` are pulled apart,
    // vectors of eigenvalues closer than `ortol` are orthogonalised against each other.
    let (pertol, ortol) = (10.0 * f64::EPSILON * norm, 1e-3 * norm);
    let mut rng = seeded_rng(0x7E16);
    let mut z: Vec<Vec<f64>> = Vec::with_capacity(r);
    let mut last = f64::INFINITY;
    for &value in values.iter().take(r) {
        let lambda = value.min(last - pertol);
        last = lambda;
        let lu = TriLu::new(&d, &e, lambda, f64::EPSILON * norm);
        let cluster_start =
            z.len() - values[..z.len()].iter().rev().take_while(|&&v| v - value <= ortol).count();
        let mut x: Vec<f64> = (0..n).map(|_| rng.signed()).collect();
        for _ in 0..3 {
            lu.solve(&mut x);
            orthogonalise(&mut x, &z[cluster_start..]);
            let s = x.iter().map(|v| v * v).sum::<f64>().sqrt();
            if s.is_nan() || s <= 0.0 || s.is_infinite() {
                return None;
            }
            x.iter_mut().for_each(|v| *v /= s);
        }
        // Against every earlier vector (the checks below catch what this misses).
        orthogonalise(&mut x, &z);
        let s = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        if s.is_nan() || s <= 0.5 {
            return None;
        }
        x.iter_mut().for_each(|v| *v /= s);
        z.push(x);
    }
    let zm = DMatrix::from_fn(n, r, |i, j| z[j][i]);
    let u = q * zm;
    // Checks on g, then the Rayleigh–Ritz rotation.
    let gu = g * &u;
    let h = u.transpose() * &gu;
    let h = (&h + h.transpose()) * 0.5;
    let resid = &gu - &u * &h;
    let gnorm = g.norm().max(f64::MIN_POSITIVE);
    let orth = (u.transpose() * &u - DMatrix::identity(r, r)).amax();
    let top: f64 = values.iter().take(r).sum();
    let total: f64 = values.iter().map(|v| v.abs()).sum::<f64>().max(f64::MIN_POSITIVE);
    let good = resid.norm() <= 1e-9 * gnorm && orth <= 1e-10 && (h.trace() - top).abs() <= 1e-10 * total;
    if !good {
        return None;
    }
    let (_, rot) = sorted_eigen(h).ok()?;
    let values = values.into_iter().map(|v| v.max(0.0)).collect();
    Some((u * rot, values))
}

/// All squared singular values of `m` (descending, ≥ 0), from the eigenvalues of the Gram matrix of
/// its smaller side without eigenvectors (several times cheaper than [`top_left`]).
pub(crate) fn sigma_sq(m: &DMatrix<f64>) -> Result<Vec<f64>> {
    let g = if m.nrows() <= m.ncols() { m * m.transpose() } else { m.transpose() * m };
    if g.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("Gram matrix holds NaN or infinity".into()));
    }
    let mut values: Vec<f64> = g.symmetric_eigenvalues().iter().map(|v| v.max(0.0)).collect();
    values.sort_by(|a, b| b.total_cmp(a));
    check_energy(&values, m)?;
    Ok(values)
}

/// Checks `Σσ² = ‖M‖²_F` (σ² the Gram eigenvalues).
fn check_energy(sigma_sq: &[f64], m: &DMatrix<f64>) -> Result<()> {
    let total = m.norm_squared();
    let sum: f64 = sigma_sq.iter().sum();
    if (sum - total).abs() > ENERGY_TOL * total.max(f64::MIN_POSITIVE) && total > 0.0 {
        return Err(Error::Numeric(format!(
            "eigen-decomposition lost energy: Σσ² = {sum:e}, ‖M‖²_F = {total:e}"
        )));
    }
    Ok(())
}

/// Truncated SVD of `m` at rank `r` (clamped to min(m, n)) as a projection onto the leading
/// singular subspace of the smaller side.
pub(crate) fn low_rank(m: &DMatrix<f64>, r: usize) -> Result<LowRank> {
    if m.nrows() <= m.ncols() {
        let (u, mut sigma_sq) = top_left(m, r)?;
        sigma_sq.truncate(m.nrows().min(m.ncols()));
        let right = u.transpose() * m;
        Ok(LowRank { left: u, right, sigma_sq })
    } else {
        let mt = m.transpose();
        let (v, mut sigma_sq) = top_left(&mt, r)?;
        sigma_sq.truncate(m.nrows().min(m.ncols()));
        let left = m * &v;
        Ok(LowRank { left, right: v.transpose(), sigma_sq })
    }
}

/// `sqrt(Σ_{k≥r} σ_k² / Σ σ²)` (σ² descending, 0-based): the relative error of the rank-r truncation.
/// A zero matrix has zero error.
pub(crate) fn tail_error(sigma_sq: &[f64], r: usize) -> f64 {
    let total: f64 = sigma_sq.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let tail: f64 = sigma_sq.iter().skip(r).sum();
    (tail / total).max(0.0).sqrt()
}

/// The relative errors of every truncation r = 1..=len (index r−1), from the σ² tails.
pub(crate) fn tail_errors(sigma_sq: &[f64]) -> Vec<f64> {
    (1..=sigma_sq.len()).map(|r| tail_error(sigma_sq, r)).collect()
}

/// The crate's generator ([`crate::random::Rng`]) as the relatives' seeded initialisations start
/// it (the state `seed ^ 0x9E37_79B9_7F4A_7C15`, so a seed gives the factors it always gave);
/// draw with [`Rng::signed`] (uniform in [−1, 1)).
pub(crate) fn seeded_rng(seed: u64) -> Rng {
    Rng::from_state(seed ^ 0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_rank_is_exact_at_full_rank_both_orientations() {
        let mut rng = seeded_rng(3);
        for (m, n) in [(5, 12), (12, 5), (7, 7)] {
            let a = DMatrix::from_fn(m, n, |_, _| rng.signed());
            let lr = low_rank(&a, m.min(n)).unwrap();
            assert!((&lr.left * &lr.right - &a).norm() < 1e-12 * a.norm());
            let s: f64 = lr.sigma_sq.iter().sum();
            assert!((s - a.norm_squared()).abs() < 1e-10);
        }
    }

    /// A PSD matrix with the given eigenvalues and a seeded random basis.
    fn with_spectrum(values: &[f64], seed: u64) -> DMatrix<f64> {
        let n = values.len();
        let mut rng = seeded_rng(seed);
        let a = DMatrix::from_fn(n, n, |_, _| rng.signed());
        let q = a.qr().q();
        &q * DMatrix::from_diagonal(&nalgebra::DVector::from_column_slice(values)) * q.transpose()
    }

    #[test]
    fn top_eigen_matches_the_full_decomposition_or_declines() {
        let spectra: Vec<Vec<f64>> = vec![
            (0..120).map(|i| 1.0 / (1.0 + i as f64)).collect(),
            // repeated eigenvalues inside and across the cut, and a null space
            (0..100)
                .map(|i| {
                    if i < 30 {
                        5.0
                    } else if i < 60 {
                        2.0
                    } else {
                        0.0
                    }
                })
                .collect(),
            (0..90).map(|i| (-(i as f64) / 9.0).exp()).collect(),
        ];
        for (s, values) in spectra.iter().enumerate() {
            let g = with_spectrum(values, s as u64);
            let (all, full) = sorted_eigen(g.clone()).unwrap();
            for r in [1usize, 7, 30, 45] {
                let Some((u, got)) = top_eigen(&g, r) else {
                    // Declining is allowed (the caller falls back); a wrong answer is not. With
                    // distinct eigenvalues it does not decline.
                    assert!(s == 1, "spectrum {s}, r = {r}: declined");
                    continue;
                };
                for (a, b) in got.iter().zip(&all) {
                    assert!((a - b).abs() < 1e-10 * all[0], "spectrum {s}: {a} vs {b}");
                }
                // The same subspace: projections agree.
                let p = &u * u.transpose();
                let f = full.columns(0, r);
                let pf = f * f.transpose();
                let gap = all[r - 1] - all.get(r).copied().unwrap_or(0.0);
                if gap > 1e-6 {
                    assert!((p - pf).norm() < 1e-7, "spectrum {s}, r = {r}");
                }
                assert!((u.transpose() * &u - DMatrix::identity(r, r)).amax() < 1e-10);
            }
        }
        // The top_left route: a 200 × 90 matrix, leading 25.
        let mut rng = seeded_rng(11);
        let m = DMatrix::from_fn(90, 200, |_, _| rng.signed());
        let (u, s) = top_left(&m, 25).unwrap();
        let (_, full) = sorted_eigen(&m * m.transpose()).unwrap();
        let pf = full.columns(0, 25) * full.columns(0, 25).transpose();
        assert!((&u * u.transpose() - pf).norm() < 1e-8);
        assert!((s.iter().sum::<f64>() - m.norm_squared()).abs() < 1e-9 * m.norm_squared());
    }

    #[test]
    fn rank_deficient_and_constant_matrices() {
        // all-ones 6×9: rank 1, σ² = 54.
        let a = DMatrix::from_element(6, 9, 1.0);
        let lr = low_rank(&a, 1).unwrap();
        assert!((lr.sigma_sq[0] - 54.0).abs() < 1e-10);
        assert!((&lr.left * &lr.right - &a).norm() < 1e-12);
        assert!(tail_error(&lr.sigma_sq, 1) < 1e-7);
        // rank 2 built from outer products.
        let u = DMatrix::from_fn(8, 2, |i, j| (i + 2 * j) as f64);
        let v = DMatrix::from_fn(2, 10, |i, j| ((i + 1) * j) as f64 - 3.0);
        let b = &u * &v;
        let lr = low_rank(&b, 2).unwrap();
        assert!((&lr.left * &lr.right - &b).norm() < 1e-10 * b.norm());
    }
}
