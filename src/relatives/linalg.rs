//! Dense helpers for the related decompositions: truncated SVDs of matrices with both sides in the
//! hundreds or low thousands, through the eigen-decomposition of the smaller Gram matrix
//! (nalgebra's `SymmetricEigen`; its SVD with vectors is avoided, nalgebra issue 1172).
//!
//! A truncation is returned as the projection `M ≈ U_r (U_rᵀ M)` (or `(M V_r) V_rᵀ`), which is exact
//! at full rank whatever the conditioning, and nothing is divided by a small singular value.
//! Every decomposition checks `Σσ² = ‖M‖²_F` at run time.

use crate::error::{Error, Result};
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
pub(crate) fn top_left(m: &DMatrix<f64>, r: usize) -> Result<(DMatrix<f64>, Vec<f64>)> {
    let g = m * m.transpose();
    let (values, vectors) = sorted_eigen(g)?;
    check_energy(&values, m)?;
    let r = r.min(m.nrows());
    Ok((vectors.columns(0, r).into_owned(), values))
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

/// A small deterministic generator (SplitMix64) for seeded initialisations.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [−1, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_rank_is_exact_at_full_rank_both_orientations() {
        let mut rng = SplitMix::new(3);
        for (m, n) in [(5, 12), (12, 5), (7, 7)] {
            let a = DMatrix::from_fn(m, n, |_, _| rng.uniform());
            let lr = low_rank(&a, m.min(n)).unwrap();
            assert!((&lr.left * &lr.right - &a).norm() < 1e-12 * a.norm());
            let s: f64 = lr.sigma_sq.iter().sum();
            assert!((s - a.norm_squared()).abs() < 1e-10);
        }
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
