//! Small dense f64 helpers of the data-aware decoupling: symmetric square roots of second-moment
//! matrices (with the ridge), a checked Cholesky solve, symmetric rank-k updates and quadratic
//! forms. Matrices are row-major `Vec<f64>`.

use crate::error::{Error, Result};
use nalgebra::{DMatrix, SymmetricEigen};

/// Eigenvalues of a (ridged, trace-normalised) second moment below this fraction of the largest
/// are raised to it, so that the inverse root stays finite (it matters only with `ridge` = 0 on a
/// rank-deficient moment: the directions the data never takes get a large but finite weight⁻¹,
/// and the weighted truncation stays exact at full rank to about ε / sqrt(EIG_FLOOR) ≈ 1e-10).
pub(crate) const EIG_FLOOR: f64 = 1e-12;

/// Relative tolerance of the eigen-decomposition's residual check ‖QΛQᵀ − A‖_F ≤ tol·‖A‖_F.
const EIG_TOL: f64 = 1e-10;

/// The symmetric square root of a regularised second moment and its inverse (d × d each).
#[derive(Debug, Clone)]
pub(crate) struct SymRoot {
    pub d: usize,
    /// (Σ + λI)^{1/2}.
    pub half: Vec<f64>,
    /// (Σ + λI)^{-1/2}.
    pub inv_half: Vec<f64>,
}

/// `(Σ + λI)^{±1/2}` with `λ = ridge · tr(Σ) / d`, from a symmetric eigen-decomposition; `None`
/// when tr(Σ) = 0 (the data never reach these taps or channels: nothing to weight by).
/// Eigenvalues are clamped at `EIG_FLOOR · λ_max`. Errors on non-finite input or a failed
/// residual check.
pub(crate) fn sym_roots(a: &[f64], d: usize, ridge: f64) -> Result<Option<SymRoot>> {
    if a.len() != d * d {
        return Err(Error::Shape(format!("{d}×{d} moment needs {} values, got {}", d * d, a.len())));
    }
    if a.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("a second-moment matrix holds NaN or infinity".into()));
    }
    let tr: f64 = (0..d).map(|i| a[i * d + i]).sum();
    if tr.is_nan() || tr <= 0.0 {
        return Ok(None);
    }
    // Work on the trace-normalised matrix (mean eigenvalue 1): no under/overflow whatever the
    // activations' scale; the scale comes back as sqrt(s) at the end.
    let s = tr / d as f64;
    let m = DMatrix::from_fn(d, d, |i, j| {
        0.5 * (a[i * d + j] + a[j * d + i]) / s + if i == j { ridge } else { 0.0 }
    });
    let eig = SymmetricEigen::new(m.clone());
    let (q, lam) = (&eig.eigenvectors, &eig.eigenvalues);
    // Residual check (nalgebra's eigen-solver is not the one nalgebra issue 1172 is about, but a
    // check costs d³ on matrices of at most a few hundred rows).
    let rebuilt = q * DMatrix::from_diagonal(lam) * q.transpose();
    if (&rebuilt - &m).norm() > EIG_TOL * m.norm().max(1.0) {
        return Err(Error::Numeric(format!(
            "eigen-decomposition of a {d}×{d} moment failed its residual check"
        )));
    }
    let top = lam.iter().copied().fold(0.0f64, f64::max);
    let floor = (top * EIG_FLOOR).max(f64::MIN_POSITIVE);
    let (mut half, mut inv_half) = (vec![0.0; d * d], vec![0.0; d * d]);
    for k in 0..d {
        let l = lam[k].max(floor);
        let (r, ir) = ((l * s).sqrt(), 1.0 / (l * s).sqrt());
        for i in 0..d {
            let qi = q[(i, k)];
            for j in 0..d {
                let p = qi * q[(j, k)];
                half[i * d + j] += r * p;
                inv_half[i * d + j] += ir * p;
            }
        }
    }
    if half.iter().chain(&inv_half).any(|v| !v.is_finite()) {
        return Err(Error::Numeric(format!("square root of a {d}×{d} moment is not finite")));
    }
    Ok(Some(SymRoot { d, half, inv_half }))
}

/// `a · b` for row-major a (m × k) and b (k × n).
pub(crate) fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for (row, arow) in out.chunks_exact_mut(n).zip(a.chunks_exact(k)) {
        for (&x, brow) in arow.iter().zip(b.chunks_exact(n)) {
            if x != 0.0 {
                for (o, &y) in row.iter_mut().zip(brow) {
                    *o += x * y;
                }
            }
        }
    }
    out
}

/// `y = A x` for a row-major d × d matrix.
pub(crate) fn matvec(a: &[f64], x: &[f64]) -> Vec<f64> {
    a.chunks_exact(x.len()).map(|row| dot(row, x)).collect()
}

/// Σ a_i b_i with four accumulators (the compiler vectorises it).
#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// `out[a][b] += Σ_p x[a][p]·x[b][p]` for b ≥ a (upper triangle) over `rows` rows of length
/// `len` (the rows of `x`, contiguous), `out` row-major with leading dimension `ld`, starting at
/// row/column `at`. 4 × 4 register tiles: each pass over p reads 8 rows for 16 sums.
pub(crate) fn syrk_upper(x: &[f64], rows: usize, len: usize, out: &mut [f64], ld: usize, at: usize) {
    let row = |a: usize| &x[a * len..(a + 1) * len];
    let mut a0 = 0;
    while a0 < rows {
        let ah = (rows - a0).min(4);
        let mut b0 = a0;
        while b0 < rows {
            let bh = (rows - b0).min(4);
            if ah == 4 && bh == 4 {
                let mut acc = [[0.0f64; 4]; 4];
                let (ra, rb) = (
                    [row(a0), row(a0 + 1), row(a0 + 2), row(a0 + 3)],
                    [row(b0), row(b0 + 1), row(b0 + 2), row(b0 + 3)],
                );
                for p in 0..len {
                    let xb = [rb[0][p], rb[1][p], rb[2][p], rb[3][p]];
                    for i in 0..4 {
                        let xa = ra[i][p];
                        for j in 0..4 {
                            acc[i][j] += xa * xb[j];
                        }
                    }
                }
                for i in 0..4 {
                    for j in 0..4 {
                        if b0 + j >= a0 + i {
                            out[(at + a0 + i) * ld + at + b0 + j] += acc[i][j];
                        }
                    }
                }
            } else {
                for i in a0..a0 + ah {
                    for j in b0.max(i)..b0 + bh {
                        out[(at + i) * ld + at + j] += dot(row(i), row(j));
                    }
                }
            }
            b0 += 4;
        }
        a0 += 4;
    }
}

/// Copies the upper triangle of a row-major d × d matrix into its lower triangle.
pub(crate) fn mirror_upper(a: &mut [f64], d: usize) {
    for i in 0..d {
        for j in 0..i {
            a[i * d + j] = a[j * d + i];
        }
    }
}

/// Solves `G X = B` for symmetric positive definite `G` (d × d, row-major; overwritten by its
/// Cholesky factor) and the `nrhs` right-hand sides stored as the rows of `b` (overwritten by the
/// solutions). A pivot at or below `d·ε·max diag` (G singular to working precision, or not
/// positive definite) is an [`Error::Numeric`]: nothing is divided by a vanishing pivot.
pub(crate) fn cholesky_solve(g: &mut [f64], d: usize, b: &mut [f64], nrhs: usize) -> Result<()> {
    let maxdiag = (0..d).map(|i| g[i * d + i]).fold(0.0f64, f64::max);
    let tol = d as f64 * f64::EPSILON * maxdiag;
    if !maxdiag.is_finite() || maxdiag <= 0.0 {
        return Err(Error::Numeric(format!("{d}×{d} normal equations have no positive diagonal")));
    }
    for j in 0..d {
        let mut s = g[j * d + j];
        for k in 0..j {
            s -= g[j * d + k] * g[j * d + k];
        }
        if s.is_nan() || s <= tol {
            return Err(Error::Numeric(format!(
                "{d}×{d} normal equations are singular to working precision (pivot {j} is {s:e}); \
                 raise the refit ridge"
            )));
        }
        let l = s.sqrt();
        g[j * d + j] = l;
        for i in j + 1..d {
            let mut s = g[i * d + j];
            for k in 0..j {
                s -= g[i * d + k] * g[j * d + k];
            }
            g[i * d + j] = s / l;
        }
    }
    for rhs in b.chunks_exact_mut(d).take(nrhs) {
        // L y = b, then Lᵀ x = y.
        for i in 0..d {
            let s = rhs[i] - dot(&g[i * d..i * d + i], &rhs[..i]);
            rhs[i] = s / g[i * d + i];
        }
        for i in (0..d).rev() {
            let mut s = rhs[i];
            for k in i + 1..d {
                s -= g[k * d + i] * rhs[k];
            }
            rhs[i] = s / g[i * d + i];
        }
    }
    if b.iter().any(|v| !v.is_finite()) {
        return Err(Error::Numeric("the refit's solution is not finite".into()));
    }
    Ok(())
}

/// Top eigenpair (value, unit vector) of a symmetric d × d matrix.
pub(crate) fn top_eigen(a: &[f64], d: usize) -> Result<(f64, Vec<f64>)> {
    if a.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite("matrix holds NaN or infinity".into()));
    }
    let m = DMatrix::from_fn(d, d, |i, j| 0.5 * (a[i * d + j] + a[j * d + i]));
    let eig = SymmetricEigen::new(m);
    let k = (0..d).max_by(|&i, &j| eig.eigenvalues[i].total_cmp(&eig.eigenvalues[j])).unwrap_or(0);
    Ok((eig.eigenvalues[k], eig.eigenvectors.column(k).iter().copied().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Rng;

    fn spd(d: usize, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        let x: Vec<f64> = (0..d * 2 * d).map(|_| rng.normal()).collect();
        let mut a = vec![0.0; d * d];
        syrk_upper(&x, d, 2 * d, &mut a, d, 0);
        mirror_upper(&mut a, d);
        a
    }

    #[test]
    fn syrk_matches_naive() {
        let mut rng = Rng::new(5);
        for (rows, len) in [(9, 7), (13, 33), (4, 4), (1, 3)] {
            let x: Vec<f64> = (0..rows * len).map(|_| rng.normal()).collect();
            let mut a = vec![0.0; (rows + 2) * (rows + 2)];
            syrk_upper(&x, rows, len, &mut a, rows + 2, 1);
            for i in 0..rows {
                for j in 0..rows {
                    let want = if j >= i { dot(&x[i * len..][..len], &x[j * len..][..len]) } else { 0.0 };
                    assert!((a[(i + 1) * (rows + 2) + j + 1] - want).abs() < 1e-12 * (1.0 + want.abs()));
                }
            }
        }
    }

    #[test]
    fn roots_invert_and_square() {
        let d = 9;
        let a = spd(d, 1);
        let r = sym_roots(&a, d, 0.0).unwrap().unwrap();
        let sq = matmul(&r.half, &r.half, d, d, d);
        let id = matmul(&r.half, &r.inv_half, d, d, d);
        for i in 0..d {
            for j in 0..d {
                assert!((sq[i * d + j] - a[i * d + j]).abs() < 1e-10 * 9.0 * d as f64);
                assert!((id[i * d + j] - if i == j { 1.0 } else { 0.0 }).abs() < 1e-10);
            }
        }
        assert!(sym_roots(&vec![0.0; d * d], d, 1e-3).unwrap().is_none());
        let mut bad = a.clone();
        bad[3] = f64::NAN;
        assert!(sym_roots(&bad, d, 1e-3).is_err());
    }

    #[test]
    fn cholesky_solves_and_refuses_singular() {
        let d = 6;
        let a = spd(d, 2);
        let x0: Vec<f64> = (0..2 * d).map(|i| i as f64 - 3.0).collect();
        let mut b: Vec<f64> = x0.chunks_exact(d).flat_map(|x| matvec(&a, x)).collect();
        let mut g = a.clone();
        cholesky_solve(&mut g, d, &mut b, 2).unwrap();
        for (x, y) in b.iter().zip(&x0) {
            assert!((x - y).abs() < 1e-9);
        }
        let mut sing = vec![1.0; d * d];
        let mut rhs = vec![1.0; d];
        assert!(matches!(cholesky_solve(&mut sing, d, &mut rhs, 1), Err(Error::Numeric(_))));
    }
}
