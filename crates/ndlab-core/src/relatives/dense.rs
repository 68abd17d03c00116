//! Dense kernels of the iterative methods, written for speed: a blocked Cholesky factorisation and
//! the right-hand solve `M V⁻¹` of the ALS normal equations (the bulk of both in a GEMM:
//! [`super::dgemm`], nalgebra's natively, packed SIMD128 in wasm), the Khatri–Rao product, and
//! Gram matrices.
//!
//! Column-major throughout (nalgebra's layout): the unblocked parts work on whole columns, which
//! are contiguous.

use super::dgemm::gemm;
use nalgebra::DMatrix;

/// Block size of the blocked factorisation and solves.
const NB: usize = 32;
/// Column block of the Cholesky trailing update.
const TRAIL: usize = 128;

/// `y += alpha · x`.
#[inline]
fn axpy(y: &mut [f64], alpha: f64, x: &[f64]) {
    for (a, b) in y.iter_mut().zip(x) {
        *a += alpha * b;
    }
}

/// Two distinct columns of a column-major buffer with `rows` rows: `(&mut col j, &col k)`.
#[inline]
fn col_pair(data: &mut [f64], rows: usize, j: usize, k: usize) -> (&mut [f64], &[f64]) {
    debug_assert_ne!(j, k);
    if k < j {
        let (lo, hi) = data.split_at_mut(j * rows);
        (&mut hi[..rows], &lo[k * rows..(k + 1) * rows])
    } else {
        let (lo, hi) = data.split_at_mut(k * rows);
        (&mut lo[j * rows..(j + 1) * rows], &hi[..rows])
    }
}

/// The inverse of a small lower-triangular matrix, column by column (`L x = e_j`, forward
/// substitution in axpy form on the contiguous columns of L).
fn tri_inv_lower(l: &DMatrix<f64>) -> DMatrix<f64> {
    let n = l.nrows();
    let ls = l.as_slice();
    let mut inv = DMatrix::zeros(n, n);
    for (j, x) in inv.as_mut_slice().chunks_exact_mut(n).enumerate() {
        x[j] = 1.0;
        for k in j..n {
            let col = &ls[k * n..(k + 1) * n];
            x[k] /= col[k];
            let xk = x[k];
            axpy(&mut x[k + 1..], -xk, &col[k + 1..]);
        }
    }
    inv
}

/// Lower Cholesky factor L of a symmetric matrix (`V = L Lᵀ`, upper triangle zeroed), or `None`
/// when V is not numerically positive definite (a pivot ≤ 0 or not finite). Only the lower
/// triangle of `v` is read. Right-looking by blocks of [`NB`]: each diagonal block is factored
/// column by column, the panel below it is multiplied by the block's inverse transposed, and the
/// trailing lower triangle is updated — the last two by GEMM.
pub fn cholesky(mut a: DMatrix<f64>) -> Option<DMatrix<f64>> {
    let n = a.nrows();
    assert_eq!(n, a.ncols(), "cholesky needs a square matrix");
    let mut j0 = 0;
    while j0 < n {
        let j1 = (j0 + NB).min(n);
        {
            let data = a.as_mut_slice();
            // The diagonal block, left-looking within it (earlier blocks are already applied).
            for j in j0..j1 {
                for k in j0..j {
                    let (cj, ck) = col_pair(data, n, j, k);
                    let ljk = ck[j];
                    axpy(&mut cj[j..j1], -ljk, &ck[j..j1]);
                }
                let d = data[j * n + j];
                if !(d > 0.0 && d.is_finite()) {
                    return None;
                }
                let s = d.sqrt();
                for v in &mut data[j * n + j..j * n + j1] {
                    *v /= s;
                }
            }
        }
        if j1 < n {
            let m = n - j1;
            // Panel: L21 = A21 · L11⁻ᵀ.
            let inv_t = tri_inv_lower(&a.view((j0, j0), (j1 - j0, j1 - j0)).into_owned()).transpose();
            let mut l21 = DMatrix::zeros(m, j1 - j0);
            gemm(&mut l21, 1.0, &a.view((j1, j0), (m, j1 - j0)), &inv_t, 0.0);
            if !l21.iter().all(|v| v.is_finite()) {
                return None;
            }
            a.view_mut((j1, j0), (m, j1 - j0)).copy_from(&l21);
            // Trailing update A22 −= L21 L21ᵀ, lower triangle only: column blocks of A22, each
            // from its diagonal down.
            let l21t = l21.transpose();
            let mut c0 = 0;
            while c0 < m {
                let c1 = (c0 + TRAIL).min(m);
                let rows = l21.rows(c0, m - c0);
                let cols = l21t.columns(c0, c1 - c0);
                gemm(&mut a.view_mut((j1 + c0, j1 + c0), (m - c0, c1 - c0)), -1.0, &rows, &cols, 1.0);
                c0 = c1;
            }
        }
        j0 = j1;
    }
    for j in 1..n {
        for i in 0..j {
            a[(i, j)] = 0.0;
        }
    }
    Some(a)
}

/// `Σ a_i b_i` with four accumulators (vectorisable without reassociation by the compiler).
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for t in 0..4 {
            acc[t] += x[t] * y[t];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Right-hand sides at or below this count are solved one by one (no GEMM).
const FEW_RHS: usize = 8;

/// `M ← M V⁻¹` for `V = L Lᵀ` (L from [`cholesky`]): two blocked triangular solves,
/// `Y Lᵀ = M` then `X L = Y`, each block by a GEMM with the earlier blocks and one with the
/// inverse of its diagonal block (for a few rows of M: forward and back substitution per row).
pub fn solve_right(l: &DMatrix<f64>, m: &mut DMatrix<f64>) {
    let (d, n) = (m.nrows(), m.ncols());
    assert_eq!(n, l.nrows());
    if d == 0 || n == 0 {
        return;
    }
    if d <= FEW_RHS {
        // Each row x of M: L y = xᵀ (column-oriented), then Lᵀ z = y (dot products with columns of L).
        let ls = l.as_slice();
        let mut y = vec![0.0; n];
        for i in 0..d {
            for (j, v) in y.iter_mut().enumerate() {
                *v = m[(i, j)];
            }
            for j in 0..n {
                let col = &ls[j * n..(j + 1) * n];
                y[j] /= col[j];
                let yj = y[j];
                axpy(&mut y[j + 1..], -yj, &col[j + 1..]);
            }
            for j in (0..n).rev() {
                let col = &ls[j * n..(j + 1) * n];
                y[j] = (y[j] - dot(&col[j + 1..], &y[j + 1..])) / col[j];
            }
            for (j, v) in y.iter().enumerate() {
                m[(i, j)] = *v;
            }
        }
        return;
    }
    let blocks: Vec<(usize, usize)> = (0..n).step_by(NB).map(|j0| (j0, (j0 + NB).min(n))).collect();
    let invs: Vec<DMatrix<f64>> = blocks
        .iter()
        .map(|&(j0, j1)| tri_inv_lower(&l.view((j0, j0), (j1 - j0, j1 - j0)).into_owned()))
        .collect();
    // Forward: Y_J = (M_J − Y_{<J} L_{J,<J}ᵀ) L_JJ⁻ᵀ.
    for (&(j0, j1), inv) in blocks.iter().zip(&invs) {
        if j0 > 0 {
            let lt = l.view((j0, 0), (j1 - j0, j0)).transpose();
            let (done, mut block) = m.columns_range_pair_mut(0..j0, j0..j1);
            gemm(&mut block, -1.0, &done, &lt, 1.0);
        }
        let mut y = DMatrix::zeros(d, j1 - j0);
        gemm(&mut y, 1.0, &m.columns(j0, j1 - j0), &inv.transpose(), 0.0);
        m.columns_mut(j0, j1 - j0).copy_from(&y);
    }
    // Backward: X_J = (Y_J − X_{>J} L_{>J,J}) L_JJ⁻¹.
    for (&(j0, j1), inv) in blocks.iter().zip(&invs).rev() {
        if j1 < n {
            let lb = l.view((j1, j0), (n - j1, j1 - j0));
            let (mut block, done) = m.columns_range_pair_mut(j0..j1, j1..n);
            gemm(&mut block, -1.0, &done, &lb, 1.0);
        }
        let mut x = DMatrix::zeros(d, j1 - j0);
        gemm(&mut x, 1.0, &m.columns(j0, j1 - j0), inv, 0.0);
        m.columns_mut(j0, j1 - j0).copy_from(&x);
    }
}

/// `Aᵀ A`: **its lower triangle only is meaningful** (the upper may be zero or a copy). Through
/// the GEMM (an explicit transpose first: nalgebra's `tr_mul` is not blocked), by column blocks
/// from the diagonal down; for a few rows, as a sum of outer products.
pub fn gram(a: &DMatrix<f64>) -> DMatrix<f64> {
    let r = a.ncols();
    if a.nrows() <= FEW_RHS {
        // A sum of a few outer products: G[:, j] = Σ_i A[i, j] · A[i, :]ᵀ, each an axpy of length R.
        let at = a.transpose();
        let mut g = DMatrix::zeros(r, r);
        for (j, col) in g.as_mut_slice().chunks_exact_mut(r).enumerate() {
            for row in at.as_slice().chunks_exact(r) {
                axpy(&mut col[j..], row[j], &row[j..]);
            }
        }
        return g;
    }
    if r <= 2 * TRAIL {
        let mut g = DMatrix::zeros(r, r);
        gemm(&mut g, 1.0, &a.transpose(), a, 0.0);
        return g;
    }
    let at = a.transpose();
    let mut g = DMatrix::zeros(r, r);
    let mut c0 = 0;
    while c0 < r {
        let c1 = (c0 + TRAIL).min(r);
        gemm(
            &mut g.view_mut((c0, c0), (r - c0, c1 - c0)),
            1.0,
            &at.rows(c0, r - c0),
            &a.columns(c0, c1 - c0),
            0.0,
        );
        c0 = c1;
    }
    g
}

/// `Σ_ij A_ij B_ij` for symmetric A and B of which only the lower triangles are read.
pub fn sym_dot(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    let r = a.nrows();
    let (mut off, mut diag) = (0.0, 0.0);
    for (j, (ca, cb)) in a.as_slice().chunks_exact(r).zip(b.as_slice().chunks_exact(r)).enumerate() {
        diag += ca[j] * cb[j];
        off += dot(&ca[j + 1..], &cb[j + 1..]);
    }
    2.0 * off + diag
}

/// Khatri–Rao product of the factors other than `skip` (each d_j × r): ∏ d_j × r, rows in
/// row-major order of those modes (the last fastest), i.e. column t is `F_j1[:,t] ⊗ F_j2[:,t] ⊗ …`.
pub fn khatri_rao(factors: &[DMatrix<f64>], skip: usize, r: usize) -> DMatrix<f64> {
    let rows: usize =
        factors.iter().enumerate().filter(|(j, _)| *j != skip).map(|(_, f)| f.nrows()).product();
    let mut out = DMatrix::zeros(rows, r);
    let mut cur = Vec::with_capacity(rows);
    let mut next = Vec::with_capacity(rows);
    for t in 0..r {
        cur.clear();
        cur.push(1.0);
        for (j, f) in factors.iter().enumerate() {
            if j == skip {
                continue;
            }
            let col = f.column(t);
            let col = col.as_slice();
            next.clear();
            for &a in &cur {
                next.extend(col.iter().map(|&b| a * b));
            }
            std::mem::swap(&mut cur, &mut next);
        }
        out.column_mut(t).as_mut_slice().copy_from_slice(&cur);
    }
    out
}

/// The Khatri–Rao product of the factors other than `skip`, transposed (R × ∏ d_j, column `q` for
/// the multi-index of those modes in row-major order), into `out` (resized) as contiguous R-vectors:
/// `out[q·R + t] = Π_j F_j[i_j, t]`. Read it as the ∏ d_j × R product through a view with strides
/// (R, 1).
pub fn khatri_rao_t_into<T: Copy, F: std::borrow::Borrow<DMatrix<f64>>>(
    factors: &[F],
    skip: usize,
    r: usize,
    out: &mut Vec<T>,
    conv: impl Fn(f64) -> T,
) {
    let modes: Vec<&DMatrix<f64>> =
        factors.iter().enumerate().filter(|(j, _)| *j != skip).map(|(_, f)| f.borrow()).collect();
    out.clear();
    let Some((last, first)) = modes.split_last() else {
        out.extend((0..r).map(|_| conv(1.0)));
        return;
    };
    // All but the last mode in f64, then the last straight into `out`.
    let mut w = vec![1.0f64; r];
    for f in first {
        let ft = f.transpose();
        let mut next = Vec::with_capacity(w.len() * f.nrows());
        for a in w.chunks_exact(r) {
            for b in ft.as_slice().chunks_exact(r) {
                next.extend(a.iter().zip(b).map(|(x, y)| x * y));
            }
        }
        w = next;
    }
    let lt = last.transpose();
    out.reserve(w.len() * last.nrows());
    for a in w.chunks_exact(r) {
        for b in lt.as_slice().chunks_exact(r) {
            out.extend(a.iter().zip(b).map(|(x, y)| conv(x * y)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relatives::linalg::seeded_rng;

    fn spd(n: usize, seed: u64) -> DMatrix<f64> {
        let mut rng = seeded_rng(seed);
        let b = DMatrix::from_fn(n, n + 3, |_, _| rng.signed());
        &b * b.transpose() + DMatrix::identity(n, n) * 1e-3
    }

    #[test]
    fn cholesky_matches_nalgebra_and_solve_right_inverts() {
        let mut rng = seeded_rng(4);
        for n in [1usize, 5, 47, 48, 49, 130] {
            let v = spd(n, n as u64);
            let l = cholesky(v.clone()).expect("positive definite");
            assert!((&l * l.transpose() - &v).norm() < 1e-10 * v.norm(), "n = {n}");
            let l_na = v.clone().cholesky().unwrap().unpack();
            assert!((&l - l_na).norm() < 1e-9 * v.norm(), "n = {n}");
            for d in [1usize, 3, 60] {
                let m = DMatrix::from_fn(d, n, |_, _| rng.signed());
                let mut x = m.clone();
                solve_right(&l, &mut x);
                assert!((&x * &v - &m).norm() < 1e-8 * m.norm().max(1.0) * v.norm(), "n = {n} d = {d}");
            }
        }
    }

    #[test]
    fn gram_lower_triangle_sym_dot_and_transposed_khatri_rao() {
        let mut rng = seeded_rng(8);
        for (d, r) in [(3usize, 40usize), (8, 9), (50, 300), (300, 20)] {
            let a = DMatrix::from_fn(d, r, |_, _| rng.signed());
            let full = a.transpose() * &a;
            let g = gram(&a);
            for j in 0..r {
                for i in j..r {
                    assert!((g[(i, j)] - full[(i, j)]).abs() < 1e-10, "{d}×{r} at ({i}, {j})");
                }
            }
            let b = DMatrix::from_fn(r, r, |i, j| ((i + 2 * j) % 7) as f64);
            let b = &b + b.transpose();
            let want: f64 = full.component_mul(&b).sum();
            assert!((sym_dot(&g, &b) - want).abs() < 1e-9 * want.abs().max(1.0));
        }
        let f: Vec<DMatrix<f64>> =
            [4usize, 3, 2, 5].iter().map(|&n| DMatrix::from_fn(n, 6, |_, _| rng.signed())).collect();
        for skip in 0..4 {
            let kr = khatri_rao(&f, skip, 6);
            let mut t = Vec::new();
            khatri_rao_t_into(&f, skip, 6, &mut t, |v| v);
            for q in 0..kr.nrows() {
                for c in 0..6 {
                    assert_eq!(t[q * 6 + c], kr[(q, c)]);
                }
            }
        }
    }

    #[test]
    fn cholesky_refuses_indefinite_and_nan() {
        let mut v = spd(60, 1);
        v[(50, 50)] = -1e3;
        assert!(cholesky(v).is_none());
        let mut v = spd(10, 2);
        v[(3, 2)] = f64::NAN;
        assert!(cholesky(v).is_none());
        assert!(cholesky(DMatrix::zeros(4, 4)).is_none());
    }
}
