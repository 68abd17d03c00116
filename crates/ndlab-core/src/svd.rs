//! Singular value decomposition of small dense matrices (the per-slice matrices of a conv kernel:
//! N × K², C × K², with K² ≤ 49 and the other side up to a few thousand).
//!
//! Two algorithms, both written here (nalgebra's SVD with vectors returns wrong singular values on
//! some constant and rank-deficient matrices, nalgebra issue 1172, so it is not used):
//!
//! * **Gram + Jacobi** ([`svd_gram`], the fast default). The matrix is scaled by a power of two so
//!   that its largest entry is in [1, 2) (no underflow for 1e-30-sized weights, no rounding from the
//!   scaling itself). With `k = min(m, n)`, the k × k Gram matrix G of the smaller side is formed in
//!   f64 and diagonalised by cyclic Jacobi rotations to full convergence. Its eigenvectors are one
//!   side's singular vectors (orthonormal to working precision); the other side is the matrix times
//!   them, `p_k = M v_k`, with `σ_k = ‖p_k‖` recomputed (never `sqrt(λ_k)`) and `u_k = p_k / σ_k`.
//!   Cost ≈ 1.5·max(m,n)·k² multiply-adds plus a tiny k × k eigensolve.
//!
//!   Accuracy trade-off: because one side is exactly orthonormal and the other is `M` times it,
//!   `Σ_k σ_k u_k v_kᵀ = M` and `‖M − M_T‖²_F = Σ_{k>T} σ_k²` hold to rounding for *every* T, whatever
//!   the conditioning. What squaring costs is the *relative* accuracy of small singular values and
//!   the orthogonality of the computed side: the absolute error of σ_k² is about `ε·σ_max²`, so
//!   `|u_iᵀ u_j| ≈ ε·σ_max² / (σ_i σ_j)`. [`svd`] therefore falls back to the one-sided Jacobi method
//!   whenever a non-negligible σ_k is below `GRAY_ZONE · σ_max` (where that bound would exceed ~1e-10), or
//!   a run-time check fails (`|Σσ² − ‖M‖²_F| > 1e-10·‖M‖²_F`, a row reconstruction spot-check,
//!   non-finite values, no convergence).
//!
//! * **One-sided (Hestenes) Jacobi** ([`svd_one_sided_jacobi`], the accurate fallback): plane
//!   rotations of column pairs of M itself until every pair is orthogonal to working precision. It
//!   never squares the matrix, so small singular values keep their relative accuracy and both sides
//!   are orthonormal to ε. About 5–10 times slower than the Gram route on 512 × 9 slices.
//!
//! Convention shared by both: singular values are descending and ≥ 0; a singular value at or below
//! `rank_tol(m, n) · σ_max` (numerically zero) is set to exactly 0 and its two vectors to zero vectors,
//! so "σ_k = 0 ⇔ u_k = 0 and v_k = 0" and nothing is ever divided by a tiny σ. The zero matrix gives
//! all-zero output.

use crate::error::{Error, Result};

/// Smallest relative σ that the Gram route is trusted with: below it (and above the rank
/// tolerance) [`svd`] recomputes with one-sided Jacobi. At 1e-3 the computed side stays orthogonal
/// to about ε / 1e-6 ≈ 2e-10. Real conv slices sit far above it (the smallest σ_min/σ_max over
/// the shipped 256-channel layers is 1.1e-2), so the fallback is for degenerate input.
pub const GRAY_ZONE: f64 = 1e-3;

/// Largest number of Jacobi sweeps before giving up (convergence is quadratic; 6–10 is typical).
pub(crate) const MAX_SWEEPS: usize = 60;

/// Which algorithm produced an [`Svd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvdMethod {
    /// Gram matrix of the smaller side + cyclic Jacobi eigensolver.
    Gram,
    /// One-sided (Hestenes) Jacobi on the matrix itself.
    OneSidedJacobi,
}

/// A thin SVD `M = Σ_k σ_k u_k v_kᵀ` of an m × n matrix, k = min(m, n).
///
/// Vectors are stored vector-major: `u[k·m .. (k+1)·m]` is u_k (that is, Uᵀ row-major) and
/// `v[k·n .. (k+1)·n]` is v_k.
#[derive(Debug, Clone, PartialEq)]
pub struct Svd {
    /// Rows of the matrix.
    pub m: usize,
    /// Columns of the matrix.
    pub n: usize,
    /// Singular values, descending, ≥ 0, length min(m, n).
    pub sigma: Vec<f64>,
    /// Left singular vectors, k vectors of length m (zero vectors where σ_k = 0).
    pub u: Vec<f64>,
    /// Right singular vectors, k vectors of length n (zero vectors where σ_k = 0).
    pub v: Vec<f64>,
    /// The algorithm that produced the result.
    pub method: SvdMethod,
}

impl Svd {
    /// Number of singular triplets, min(m, n).
    pub fn k(&self) -> usize {
        self.sigma.len()
    }

    /// Numerical rank: the number of non-zero singular values.
    pub fn rank(&self) -> usize {
        self.sigma.iter().filter(|&&s| s > 0.0).count()
    }

    /// Left singular vector u_k (length m). Panics if `k ≥ min(m, n)`.
    pub fn u_vec(&self, k: usize) -> &[f64] {
        &self.u[k * self.m..(k + 1) * self.m]
    }

    /// Right singular vector v_k (length n). Panics if `k ≥ min(m, n)`.
    pub fn v_vec(&self, k: usize) -> &[f64] {
        &self.v[k * self.n..(k + 1) * self.n]
    }

    /// The rank-t truncation `Σ_{k<t} σ_k u_k v_kᵀ` as an m × n row-major matrix (t is clamped to k).
    pub fn reconstruct(&self, t: usize) -> Vec<f64> {
        let mut out = vec![0.0; self.m * self.n];
        for k in 0..t.min(self.k()) {
            let (s, u, v) = (self.sigma[k], self.u_vec(k), self.v_vec(k));
            for (row, &ui) in out.chunks_exact_mut(self.n).zip(u) {
                let f = s * ui;
                for (o, &vj) in row.iter_mut().zip(v) {
                    *o += f * vj;
                }
            }
        }
        out
    }
}

/// Squared Frobenius norm Σ a².
pub fn frobenius_sq(a: &[f64]) -> f64 {
    a.iter().map(|x| x * x).sum()
}

/// Relative threshold under which a singular value counts as zero: `8·max(m,n)·ε`.
pub fn rank_tol(m: usize, n: usize) -> f64 {
    8.0 * m.max(n) as f64 * f64::EPSILON
}

/// SVD of the m × n row-major matrix `a`: the Gram route, checked, with one-sided Jacobi as the
/// fallback (see the module documentation for when and why).
pub fn svd(a: &[f64], m: usize, n: usize) -> Result<Svd> {
    let mut ws = Workspace::default();
    svd_with(&mut ws, a, m, n)
}

/// [`svd`] reusing the scratch buffers of `ws` (for loops over many slices).
pub fn svd_with(ws: &mut Workspace, a: &[f64], m: usize, n: usize) -> Result<Svd> {
    let fast = decompose(ws, a, m, n, SvdMethod::Gram);
    match fast {
        Ok(s) if passes_checks(&s, a, ws) => Ok(s),
        _ => {
            let slow = decompose(ws, a, m, n, SvdMethod::OneSidedJacobi)?;
            if passes_runtime_checks(&slow, a, ws) {
                Ok(slow)
            } else {
                Err(Error::Numeric(format!(
                    "SVD of a {m}×{n} matrix failed its self-check (Σσ² vs ‖M‖², reconstruction)"
                )))
            }
        }
    }
}

/// The Gram + Jacobi route alone, without checks or fallback (exposed for tests and benchmarks).
pub fn svd_gram(a: &[f64], m: usize, n: usize) -> Result<Svd> {
    decompose(&mut Workspace::default(), a, m, n, SvdMethod::Gram)
}

/// The one-sided Jacobi route alone (accurate, slower).
pub fn svd_one_sided_jacobi(a: &[f64], m: usize, n: usize) -> Result<Svd> {
    decompose(&mut Workspace::default(), a, m, n, SvdMethod::OneSidedJacobi)
}

/// Reusable scratch space for [`svd_with`].
#[derive(Debug, Default, Clone)]
pub struct Workspace {
    /// The scaled tall matrix B (A, or Aᵀ for wide A) stored by columns: q columns of length p.
    b: Vec<f64>,
    /// q × q Gram matrix / column store for one-sided Jacobi.
    g: Vec<f64>,
    /// Unnormalised left vectors of the last core (q × p).
    left: Vec<f64>,
    /// ‖M‖²_F of the last input after scaling by 2^(−e1−e2).
    norm_sq: f64,
    /// The scaling exponents (e1, e2) of the last input.
    exps: (i32, i32),
}

/// Checks for the Gram result: the run-time checks plus the gray-zone test.
fn passes_checks(s: &Svd, a: &[f64], ws: &Workspace) -> bool {
    let smax = s.sigma.first().copied().unwrap_or(0.0);
    let gray = s.sigma.iter().any(|&x| x > 0.0 && x < GRAY_ZONE * smax);
    !gray && passes_runtime_checks(s, a, ws)
}

/// Σσ² = ‖M‖²_F to 1e-10 relative, everything finite, and three rows reconstructed to 1e-8 relative
/// (in units of σ_max).
fn passes_runtime_checks(s: &Svd, a: &[f64], ws: &Workspace) -> bool {
    if !s.sigma.iter().chain(&s.u).chain(&s.v).all(|x| x.is_finite()) {
        return false;
    }
    // Compared in the scaled domain, so huge entries cannot overflow ‖M‖².
    let (f1, f2) = (2f64.powi(-ws.exps.0), 2f64.powi(-ws.exps.1));
    let ssq: f64 = s.sigma.iter().map(|x| (x * f1 * f2).powi(2)).sum();
    let norm_sq = ws.norm_sq;
    if (ssq - norm_sq).abs() > 1e-10 * norm_sq {
        return false;
    }
    let smax = s.sigma.first().copied().unwrap_or(0.0);
    let rows = [0, s.m / 2, s.m.saturating_sub(1)];
    rows.iter().all(|&i| row_error(s, a, i) <= 1e-8 * smax.max(f64::MIN_POSITIVE))
}

/// Max-norm error of row i of the full reconstruction.
fn row_error(s: &Svd, a: &[f64], i: usize) -> f64 {
    let mut worst: f64 = 0.0;
    for j in 0..s.n {
        let mut acc = 0.0;
        for k in 0..s.k() {
            acc += s.sigma[k] * s.u[k * s.m + i] * s.v[k * s.n + j];
        }
        worst = worst.max((acc - a[i * s.n + j]).abs());
    }
    worst
}

/// Shared driver: validation, scaling, transposition to a tall matrix, the chosen core, the
/// descending sort, the zero cut, and the mapping back.
fn decompose(ws: &mut Workspace, a: &[f64], m: usize, n: usize, method: SvdMethod) -> Result<Svd> {
    validate(a, m, n)?;
    let k = m.min(n);
    let amax = a.iter().fold(0.0f64, |acc, x| acc.max(x.abs()));
    if amax == 0.0 {
        ws.norm_sq = 0.0;
        ws.exps = (0, 0);
        return Ok(Svd { m, n, sigma: vec![0.0; k], u: vec![0.0; k * m], v: vec![0.0; k * n], method });
    }
    let (e1, e2) = split_exponent(amax);
    let transposed = m < n;
    let (p, q) = if transposed { (n, m) } else { (m, n) };
    load_scaled(ws, a, m, n, transposed, e1, e2);
    ws.norm_sq = frobenius_sq(&ws.b);
    ws.exps = (e1, e2);
    let (sigma, right) = match method {
        SvdMethod::Gram => gram_core(ws, p, q)?,
        SvdMethod::OneSidedJacobi => one_sided_core(ws, p, q)?,
    };
    let (mut sigma, left, right) = sort_and_cut(&sigma, &ws.left, &right, p, q);
    for s in &mut sigma {
        *s = *s * 2f64.powi(e1) * 2f64.powi(e2);
    }
    let (u, v) = if transposed { (right, left) } else { (left, right) };
    Ok(Svd { m, n, sigma, u, v, method })
}

/// Shape, length and finiteness checks.
fn validate(a: &[f64], m: usize, n: usize) -> Result<()> {
    if m == 0 || n == 0 {
        return Err(Error::Shape(format!("cannot decompose an empty {m}×{n} matrix")));
    }
    if m.checked_mul(n) != Some(a.len()) {
        return Err(Error::Shape(format!("{} values do not form a {m}×{n} matrix", a.len())));
    }
    if a.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFinite("matrix holds NaN or infinity".into()));
    }
    Ok(())
}

/// amax = 2^(e1+e2) · [1, 2): two halves so that each power of two is representable.
fn split_exponent(amax: f64) -> (i32, i32) {
    let e = amax.log2().floor() as i32;
    (e / 2, e - e / 2)
}

/// Copies `a` scaled by 2^(−e1−e2) (exact) into `ws.b` as the columns of the tall p × q matrix B
/// (B = A, or Aᵀ when `transposed`), vector-major: `b[j·p + r] = B[r][j]`. Column storage makes the
/// Gram products and the rotations long contiguous loops.
fn load_scaled(ws: &mut Workspace, a: &[f64], m: usize, n: usize, transposed: bool, e1: i32, e2: i32) {
    // Two factors applied one after the other: their product can overflow (subnormal input).
    let (f1, f2) = (2f64.powi(-e1), 2f64.powi(-e2));
    ws.b.clear();
    if transposed {
        // Columns of Aᵀ are the rows of A.
        ws.b.extend(a.iter().map(|&x| x * f1 * f2));
        return;
    }
    ws.b.resize(m * n, 0.0);
    for (i, row) in a.chunks_exact(n).enumerate() {
        for (j, &x) in row.iter().enumerate() {
            ws.b[j * m + i] = x * f1 * f2;
        }
    }
}

/// Output of a core: σ (unsorted, length q) and the right vectors (q × q, unit); the left
/// vectors (q × p, unnormalised p_k = B v_k) are left in `ws.left`.
type CoreOut = (Vec<f64>, Vec<f64>);

/// Gram route on the tall p × q matrix whose columns are in `ws.b`.
fn gram_core(ws: &mut Workspace, p: usize, q: usize) -> Result<CoreOut> {
    let cols = &ws.b;
    let g = &mut ws.g;
    g.clear();
    g.resize(q * q, 0.0);
    for i in 0..q {
        for j in i..q {
            let x = dot(&cols[i * p..(i + 1) * p], &cols[j * p..(j + 1) * p]);
            g[i * q + j] = x;
            g[j * q + i] = x;
        }
    }
    let right = jacobi_eigen(g, q)?;
    // left_k = B v_k = Σ_j v_k[j] · col_j.
    let left = &mut ws.left;
    left.clear();
    left.resize(q * p, 0.0);
    for (lk, vk) in left.chunks_exact_mut(p).zip(right.chunks_exact(q)) {
        for (col, &w) in cols.chunks_exact(p).zip(vk) {
            for (o, &x) in lk.iter_mut().zip(col) {
                *o += w * x;
            }
        }
    }
    let sigma = left.chunks_exact(p).map(norm).collect();
    Ok((sigma, right))
}

/// Cyclic Jacobi eigensolver for the symmetric q × q matrix `g` (destroyed). Returns the
/// eigenvectors, vector-major (q × q). Rotates while `|g_ij| > ε·sqrt(|g_ii g_jj|)`.
fn jacobi_eigen(g: &mut [f64], q: usize) -> Result<Vec<f64>> {
    let mut vt = vec![0.0; q * q];
    for i in 0..q {
        vt[i * q + i] = 1.0;
    }
    for _ in 0..MAX_SWEEPS {
        let mut rotated = false;
        for i in 0..q {
            for j in i + 1..q {
                let gij = g[i * q + j];
                let (gii, gjj) = (g[i * q + i], g[j * q + j]);
                if gij == 0.0 || gij.abs() <= f64::EPSILON * (gii * gjj).abs().sqrt() {
                    continue;
                }
                rotated = true;
                let (c, s, t) = rotation(gii, gjj, gij);
                g[i * q + i] = gii - t * gij;
                g[j * q + j] = gjj + t * gij;
                g[i * q + j] = 0.0;
                g[j * q + i] = 0.0;
                for r in 0..q {
                    if r == i || r == j {
                        continue;
                    }
                    let (gri, grj) = (g[r * q + i], g[r * q + j]);
                    let (ni, nj) = (c * gri - s * grj, s * gri + c * grj);
                    g[r * q + i] = ni;
                    g[i * q + r] = ni;
                    g[r * q + j] = nj;
                    g[j * q + r] = nj;
                }
                rotate_rows(&mut vt, q, i, j, c, s);
            }
        }
        if !rotated {
            return Ok(vt);
        }
    }
    Err(Error::Numeric(format!("Jacobi eigensolver did not converge in {MAX_SWEEPS} sweeps")))
}

/// The Jacobi rotation (c, s, t = s/c) that zeroes the (i, j) entry of [[a, g], [g, b]].
pub(crate) fn rotation(a: f64, b: f64, g: f64) -> (f64, f64, f64) {
    let theta = (b - a) / (2.0 * g);
    // For huge θ, θ² would overflow: t ≈ 1/(2θ) to full precision there.
    let t = if theta.abs() > 1e150 {
        0.5 / theta
    } else {
        theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
    };
    let c = 1.0 / (t * t + 1.0).sqrt();
    (c, c * t, t)
}

/// Rows i, j (length `len`) of a vector-major store ← (c·x_i − s·x_j, s·x_i + c·x_j).
fn rotate_rows(store: &mut [f64], len: usize, i: usize, j: usize, c: f64, s: f64) {
    let (lo, hi) = store.split_at_mut(j * len);
    let xi = &mut lo[i * len..(i + 1) * len];
    let xj = &mut hi[..len];
    for (a, b) in xi.iter_mut().zip(xj.iter_mut()) {
        let (x, y) = (*a, *b);
        *a = c * x - s * y;
        *b = s * x + c * y;
    }
}

/// One-sided Jacobi on the tall p × q matrix whose columns are in `ws.b`.
fn one_sided_core(ws: &mut Workspace, p: usize, q: usize) -> Result<CoreOut> {
    // A working copy of the columns of B (vector-major, q × p), rotated in place.
    let cols = &mut ws.g;
    cols.clear();
    cols.extend_from_slice(&ws.b);
    let mut vt = vec![0.0; q * q];
    for i in 0..q {
        vt[i * q + i] = 1.0;
    }
    let null_sq = (f64::EPSILON * f64::EPSILON) * ws.norm_sq;
    let mut converged = false;
    for _ in 0..MAX_SWEEPS {
        let mut rotated = false;
        for i in 0..q {
            for j in i + 1..q {
                let (ci, cj) = (&cols[i * p..(i + 1) * p], &cols[j * p..(j + 1) * p]);
                let (alpha, beta) = (dot(ci, ci), dot(cj, cj));
                let gamma = dot(ci, cj);
                // Skip orthogonal pairs, and pairs with a numerically null column (below ε·‖B‖_F,
                // so under the rank cut anyway): rotating noise against noise never converges.
                if gamma == 0.0
                    || gamma.abs() <= f64::EPSILON * (alpha * beta).sqrt()
                    || alpha.min(beta) <= null_sq
                {
                    continue;
                }
                rotated = true;
                let (c, s, _) = rotation(alpha, beta, gamma);
                rotate_rows(cols, p, i, j, c, s);
                rotate_rows(&mut vt, q, i, j, c, s);
            }
        }
        if !rotated {
            converged = true;
            break;
        }
    }
    if !converged {
        return Err(Error::Numeric(format!("one-sided Jacobi did not converge in {MAX_SWEEPS} sweeps")));
    }
    let sigma = (0..q).map(|k| norm(&cols[k * p..(k + 1) * p])).collect();
    std::mem::swap(&mut ws.left, &mut ws.g);
    Ok((sigma, vt))
}

/// The triplets sorted by σ descending, numerically null ones zeroed, left vectors normalised.
fn sort_and_cut(sigma: &[f64], left: &[f64], right: &[f64], p: usize, q: usize) -> CutOut {
    let mut idx: Vec<usize> = (0..q).collect();
    idx.sort_by(|&a, &b| sigma[b].total_cmp(&sigma[a]));
    let smax = sigma[idx[0]];
    let cut = rank_tol(p, q) * smax;
    let mut s2 = vec![0.0; q];
    let mut l2 = vec![0.0; q * p];
    let mut r2 = vec![0.0; q * q];
    for (dst, &src) in idx.iter().enumerate() {
        let s = sigma[src];
        if s <= cut {
            continue;
        }
        s2[dst] = s;
        let inv = 1.0 / s;
        for (o, &x) in l2[dst * p..(dst + 1) * p].iter_mut().zip(&left[src * p..(src + 1) * p]) {
            *o = x * inv;
        }
        r2[dst * q..(dst + 1) * q].copy_from_slice(&right[src * q..(src + 1) * q]);
    }
    (s2, l2, r2)
}

/// Sorted σ, left vectors (q × p) and right vectors (q × q).
type CutOut = (Vec<f64>, Vec<f64>, Vec<f64>);

/// Dot product with four independent accumulators (lets the compiler vectorise).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            acc[l] += x[l] * y[l];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Euclidean norm (inputs are scaled to O(1), so no overflow guard is needed).
fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}
