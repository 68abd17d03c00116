//! The fast route of [`super::Decomposition::new`] for tall slices (rows p ≥ columns q = K²).
//!
//! Per slice, straight from the f32 kernel and with no allocation but the output:
//! 1. the slice's rows are read (DW→PW: strided in OIHW; PW→DW: contiguous) into f64 column
//!    storage, padded with zero rows to a multiple of [`ROW_BLOCK`]. No scaling is needed: the
//!    products of f32 values are exact in f64 and can neither overflow nor underflow there;
//! 2. the q × q Gram matrix `G = MᵀM` in f64, two rows per SIMD lane pair, 3 × 3 register tiles
//!    (for q = 9 exactly the 45 distinct entries);
//! 3. cyclic Jacobi on G (as [`crate::svd`]), giving V (orthonormal to working precision);
//! 4. `P = M V` in 3 × 6 register tiles (three outputs, six rows), written once: row k is
//!    `σ_k u_k`, which is what [`super::Slice::pw`] stores, so nothing is normalised and then
//!    multiplied back; `σ_k = ‖p_k‖` (never `sqrt(λ_k)`), sorted descending;
//! 5. the same run-time checks as [`crate::svd::svd`]'s Gram route, from quantities at hand:
//!    everything finite (σ finite ⇒ every `p_k` finite), `|Σσ² − ‖M‖²_F| ≤ 1e-10·‖M‖²_F` with
//!    `‖M‖²_F = trace G` (`Σσ² = ‖MV‖²_F` equals it only if V is orthogonal and P is right),
//!    no non-negligible σ below [`GRAY_ZONE`]·σ_max (squaring's accuracy limit), and rows 0,
//!    p/2, p − 1 rebuilt to 1e-8·σ_max. A slice that fails any of them (or whose Jacobi does
//!    not converge) returns `None`, and the caller recomputes it with [`crate::svd::svd_with`]
//!    (its own checks, then one-sided Jacobi).
//!
//! The numerically-null convention is [`crate::svd`]'s: σ_k ≤ `rank_tol(p, q)·σ_max` → σ_k = 0
//! with zero vectors on both sides; an all-zero slice gives all-zero factors.

use super::lanes::F2;
use super::Slice;
use crate::svd::{rank_tol, GRAY_ZONE, MAX_SWEEPS};

/// Rows per step of the `M V` product (three lane pairs); the column storage is padded to a
/// multiple of it with zero rows (they add nothing to G and give zero rows of P).
const ROW_BLOCK: usize = 6;

/// Columns per Gram tile and outputs per product tile.
const TILE: usize = 3;

/// Scratch space for decomposing p × q slices (p ≥ q ≥ 1), reused across the slices of a layer.
pub(super) struct Work {
    /// Rows of a slice.
    p: usize,
    /// Columns of a slice (K²).
    q: usize,
    /// Padded column length: p rounded up to a multiple of [`ROW_BLOCK`].
    ps: usize,
    /// The slice in f64 by columns: column j at `cols[j·ps ..]`, rows p..ps zero.
    cols: Vec<f64>,
    /// The q × q Gram matrix; diagonal = eigenvalues after Jacobi.
    g: Vec<f64>,
    /// Eigenvectors, vector-major (row k = v_k).
    vt: Vec<f64>,
    /// `P = M V` by columns: p_k at `prod[k·ps ..]`.
    prod: Vec<f64>,
    /// σ_k = ‖p_k‖ in Jacobi order.
    sigma: Vec<f64>,
    /// Order of the triplets by σ descending.
    idx: Vec<usize>,
    /// The Jacobi pairs in round-robin order.
    pairs: Vec<(usize, usize)>,
}

impl Work {
    /// Scratch for p × q slices.
    pub(super) fn new(p: usize, q: usize) -> Work {
        let ps = p.div_ceil(ROW_BLOCK) * ROW_BLOCK;
        Work {
            p,
            q,
            ps,
            cols: vec![0.0; q * ps],
            g: vec![0.0; q * q],
            vt: vec![0.0; q * q],
            prod: vec![0.0; q * ps],
            sigma: vec![0.0; q],
            idx: (0..q).collect(),
            pairs: round_robin(q),
        }
    }

    /// Reads the slice whose row r is `data[base + r·stride .. + q]` into the column storage.
    /// False (nothing usable loaded) if a row lies outside `data`.
    pub(super) fn load(&mut self, data: &[f32], base: usize, stride: usize) -> bool {
        let (p, q, ps) = (self.p, self.q, self.ps);
        let last = base + (p - 1) * stride + q;
        if last > data.len() || self.cols.len() < q * ps {
            return false;
        }
        let out = self.cols.as_mut_ptr();
        for r in 0..p {
            let row = &data[base + r * stride..base + r * stride + q];
            for (j, &x) in row.iter().enumerate() {
                // SAFETY: j < q and r < p ≤ ps, so j·ps + r < q·ps ≤ cols.len() (checked above).
                unsafe { *out.add(j * ps + r) = f64::from(x) };
            }
        }
        true
    }

    /// Decomposes the loaded slice; `None` when a check fails (the caller then takes the
    /// checked route of [`crate::svd`]).
    pub(super) fn decompose(&mut self) -> Option<Slice> {
        let (p, q) = (self.p, self.q);
        self.gram();
        let trace: f64 = (0..q).map(|j| self.g[j * q + j]).sum();
        if trace == 0.0 {
            return Some(Slice {
                sigma: vec![0.0; q],
                dw: vec![0.0; q * q],
                pw: vec![0.0; q * p],
                energy: 0.0,
            });
        }
        if !jacobi(&mut self.g, &mut self.vt, q, &self.pairs) {
            return None;
        }
        self.product();
        self.norms_and_order();
        let slice = self.gather(trace);
        self.passes_checks(&slice).then_some(slice)
    }

    /// `g = MᵀM` (full symmetric q × q) from the column storage, by 3 × 3 tiles.
    fn gram(&mut self) {
        let q = self.q;
        for i0 in (0..q).step_by(TILE) {
            for j0 in (i0..q).step_by(TILE) {
                let (a, b) = (TILE.min(q - i0), TILE.min(q - j0));
                let tile = Tile { i0, j0, q, ps: self.ps };
                match (a, b, i0 == j0) {
                    (3, 3, true) => tile.gram::<3, 3, true>(&self.cols, &mut self.g),
                    (2, 2, true) => tile.gram::<2, 2, true>(&self.cols, &mut self.g),
                    (1, 1, true) => tile.gram::<1, 1, true>(&self.cols, &mut self.g),
                    (3, 3, false) => tile.gram::<3, 3, false>(&self.cols, &mut self.g),
                    (3, 2, false) => tile.gram::<3, 2, false>(&self.cols, &mut self.g),
                    (3, 1, false) => tile.gram::<3, 1, false>(&self.cols, &mut self.g),
                    _ => tile.gram_scalar(a, b, &self.cols, &mut self.g),
                }
            }
        }
    }

    /// `prod = M V` (p_k = M v_k for every k), by tiles of three outputs.
    fn product(&mut self) {
        let q = self.q;
        for k0 in (0..q).step_by(TILE) {
            let tile = Tile { i0: k0, j0: 0, q, ps: self.ps };
            match TILE.min(q - k0) {
                3 => tile.product::<3>(&self.cols, &self.vt, &mut self.prod),
                2 => tile.product::<2>(&self.cols, &self.vt, &mut self.prod),
                _ => tile.product::<1>(&self.cols, &self.vt, &mut self.prod),
            }
        }
    }

    /// σ_k = ‖p_k‖ and the order of k by σ descending.
    fn norms_and_order(&mut self) {
        let ps = self.ps;
        for (s, pk) in self.sigma.iter_mut().zip(self.prod.chunks_exact(ps)) {
            *s = sum_sq(pk).sqrt();
        }
        let sigma = &self.sigma;
        self.idx.iter_mut().enumerate().for_each(|(i, x)| *x = i);
        self.idx.sort_by(|&a, &b| sigma[b].total_cmp(&sigma[a]));
    }

    /// The triplets in σ order as a [`Slice`] (pw row = p_k, dw row = v_k), null ones zeroed;
    /// `energy` = ‖M‖²_F = trace G.
    fn gather(&self, trace: f64) -> Slice {
        let (p, q, ps) = (self.p, self.q, self.ps);
        let smax = self.idx.first().map_or(0.0, |&i| self.sigma[i]);
        let cut = rank_tol(p, q) * smax;
        let mut sigma = vec![0.0; q];
        let mut dw = vec![0.0; q * q];
        let mut pw = vec![0.0; q * p];
        for (d, &k) in self.idx.iter().enumerate() {
            let s = self.sigma[k];
            if s <= cut || s.is_nan() {
                continue;
            }
            sigma[d] = s;
            dw[d * q..(d + 1) * q].copy_from_slice(&self.vt[k * q..(k + 1) * q]);
            pw[d * p..(d + 1) * p].copy_from_slice(&self.prod[k * ps..k * ps + p]);
        }
        Slice { sigma, dw, pw, energy: trace }
    }

    /// The run-time checks of the module documentation (`slice.energy` is trace G).
    fn passes_checks(&self, slice: &Slice) -> bool {
        let trace = slice.energy;
        let smax = slice.sigma.first().copied().unwrap_or(0.0);
        if !self.sigma.iter().chain(&self.vt).all(|x| x.is_finite()) || !smax.is_finite() {
            return false;
        }
        let ssq: f64 = slice.sigma.iter().map(|s| s * s).sum();
        if (ssq - trace).abs() > 1e-10 * trace {
            return false;
        }
        if slice.sigma.iter().any(|&s| s > 0.0 && s < GRAY_ZONE * smax) {
            return false;
        }
        let rows = [0, self.p / 2, self.p - 1];
        rows.iter().all(|&r| self.row_error(slice, r) <= 1e-8 * smax)
    }

    /// Max-norm error of row r of `Σ_k pw_k[r] dw_k` against the loaded slice.
    fn row_error(&self, slice: &Slice, r: usize) -> f64 {
        let (p, q, ps) = (self.p, self.q, self.ps);
        let mut worst: f64 = 0.0;
        for j in 0..q {
            let acc: f64 = (0..q).map(|k| slice.pw[k * p + r] * slice.dw[k * q + j]).sum();
            worst = worst.max((acc - self.cols[j * ps + r]).abs());
        }
        worst
    }
}

/// Σ x² with two lane pairs (len must be even; the padded columns are).
fn sum_sq(x: &[f64]) -> f64 {
    let (mut a, mut b) = (F2::zero(), F2::zero());
    let mut chunks = x.chunks_exact(4);
    for c in &mut chunks {
        // SAFETY: c has 4 elements.
        let (x0, x1) = unsafe { (F2::load(c.as_ptr()), F2::load(c.as_ptr().add(2))) };
        a = a.mul_add(x0, x0);
        b = b.mul_add(x1, x1);
    }
    let tail: f64 = chunks.remainder().iter().map(|v| v * v).sum();
    (a.sum() + b.sum()) + tail
}

/// Position of one register tile: Gram block (columns i0.., j0..) or product block (outputs i0..).
struct Tile {
    i0: usize,
    j0: usize,
    q: usize,
    ps: usize,
}

impl Tile {
    /// Gram block `g[i0 + a][j0 + b] = col_{i0+a} · col_{j0+b}` (and its mirror), A × B columns;
    /// on a diagonal block (`DIAG`, i0 = j0) only b ≥ a is accumulated.
    #[inline(always)]
    fn gram<const A: usize, const B: usize, const DIAG: bool>(&self, cols: &[f64], g: &mut [f64]) {
        let (ps, q) = (self.ps, self.q);
        let reach = (self.i0 + A).max(self.j0 + B);
        if reach * ps > cols.len() || reach > q || g.len() < q * q || ps % 2 != 0 {
            return;
        }
        let c = cols.as_ptr();
        let mut acc = [[F2::zero(); B]; A];
        let mut r = 0;
        while r < ps {
            // SAFETY: (i0 + a)·ps + r + 1 < reach·ps ≤ cols.len(), likewise for j0 + b.
            let xi: [F2; A] = core::array::from_fn(|a| unsafe { F2::load(c.add((self.i0 + a) * ps + r)) });
            let xj: [F2; B] = core::array::from_fn(|b| {
                if DIAG {
                    xi[b.min(A - 1)]
                } else {
                    // SAFETY: as above.
                    unsafe { F2::load(c.add((self.j0 + b) * ps + r)) }
                }
            });
            for (a, (row, &x)) in acc.iter_mut().zip(&xi).enumerate() {
                for (b, (v, &y)) in row.iter_mut().zip(&xj).enumerate() {
                    if !DIAG || b >= a {
                        *v = v.mul_add(x, y);
                    }
                }
            }
            r += 2;
        }
        for (a, row) in acc.iter().enumerate() {
            for (b, v) in row.iter().enumerate() {
                if !DIAG || b >= a {
                    let (i, j) = (self.i0 + a, self.j0 + b);
                    let v = v.sum();
                    g[i * q + j] = v;
                    g[j * q + i] = v;
                }
            }
        }
    }

    /// Any other block shape (not reached for square-ish tilings; kept for completeness).
    fn gram_scalar(&self, a: usize, b: usize, cols: &[f64], g: &mut [f64]) {
        let (ps, q) = (self.ps, self.q);
        for i in self.i0..self.i0 + a {
            for j in self.j0.max(i)..self.j0 + b {
                let (ci, cj) = (&cols[i * ps..(i + 1) * ps], &cols[j * ps..(j + 1) * ps]);
                let v: f64 = ci.iter().zip(cj).map(|(x, y)| x * y).sum();
                g[i * q + j] = v;
                g[j * q + i] = v;
            }
        }
    }

    /// `prod[k] = Σ_j vt[k][j] · col_j` for the K outputs k = i0.., six rows per step.
    #[inline(always)]
    fn product<const K: usize>(&self, cols: &[f64], vt: &[f64], prod: &mut [f64]) {
        let (ps, q, k0) = (self.ps, self.q, self.i0);
        if q * ps > cols.len() || (k0 + K) * q > vt.len() || (k0 + K) * ps > prod.len() || ps % ROW_BLOCK != 0
        {
            return;
        }
        let (c, w, o) = (cols.as_ptr(), vt.as_ptr(), prod.as_mut_ptr());
        let mut r = 0;
        while r < ps {
            let mut acc = [[F2::zero(); 3]; K];
            for j in 0..q {
                // SAFETY: j·ps + r + 5 < q·ps ≤ cols.len() (r + 6 ≤ ps).
                let x: [F2; 3] = core::array::from_fn(|l| unsafe { F2::load(c.add(j * ps + r + 2 * l)) });
                for (k, row) in acc.iter_mut().enumerate() {
                    // SAFETY: (k0 + k)·q + j < (k0 + K)·q ≤ vt.len().
                    let wk = F2::splat(unsafe { *w.add((k0 + k) * q + j) });
                    for (a, &xl) in row.iter_mut().zip(&x) {
                        *a = a.mul_add(wk, xl);
                    }
                }
            }
            for (k, row) in acc.iter().enumerate() {
                for (l, a) in row.iter().enumerate() {
                    // SAFETY: (k0 + k)·ps + r + 2l + 1 < (k0 + K)·ps ≤ prod.len().
                    unsafe { a.store(o.add((k0 + k) * ps + r + 2 * l)) };
                }
            }
            r += ROW_BLOCK;
        }
    }
}

/// Jacobi on the symmetric q × q `g` (diagonal = eigenvalues afterwards); `vt` receives the
/// eigenvectors (row k = v_k). Rotates while `|g_ij| > ε·sqrt(|g_ii g_jj|)`, in the round-robin
/// order of `pairs` (one sweep visits every pair once; consecutive pairs are disjoint, so the
/// rotation angles of a round do not wait on each other's divisions and square roots). False if
/// it did not converge in [`MAX_SWEEPS`] sweeps.
fn jacobi(g: &mut [f64], vt: &mut [f64], q: usize, pairs: &[(usize, usize)]) -> bool {
    vt.fill(0.0);
    for i in 0..q {
        vt[i * q + i] = 1.0;
    }
    const EPS2: f64 = f64::EPSILON * f64::EPSILON;
    for _ in 0..MAX_SWEEPS {
        let mut rotated = false;
        for &(i, j) in pairs {
            let gij = g[i * q + j];
            let (gii, gjj) = (g[i * q + i], g[j * q + j]);
            if gij == 0.0 || gij * gij <= EPS2 * (gii * gjj).abs() {
                continue;
            }
            rotated = true;
            let (c, s, tg) = rotation(gii, gjj, gij);
            // Rows i and j of G rotate as a whole; by symmetry the columns are their mirror.
            rotate_pair(g, q, i, j, c, s);
            g[i * q + i] = gii - tg;
            g[j * q + j] = gjj + tg;
            g[i * q + j] = 0.0;
            g[j * q + i] = 0.0;
            for r in (0..q).filter(|&r| r != i && r != j) {
                g[r * q + i] = g[i * q + r];
                g[r * q + j] = g[j * q + r];
            }
            rotate_pair(vt, q, i, j, c, s);
        }
        if !rotated {
            return true;
        }
    }
    false
}

/// The Jacobi rotation (c, s, t·g) that zeroes the off-diagonal of [[a, g], [g, b]] (the same
/// angle as [`crate::svd`]'s `t = sign(θ) / (|θ| + sqrt(θ² + 1))`, θ = (b − a) / 2g), written
/// with two square roots and one division: d = b − a, D = |d| + sqrt(d² + 4g²),
/// w = sqrt(D² + 4g²), c = D / w, s = sign(θ)·2|g| / w, t·g = sign(d)·2g² / D. No cancellation
/// (all sums are of non-negative terms); no overflow or underflow for Gram matrices of f32 data.
fn rotation(a: f64, b: f64, g: f64) -> (f64, f64, f64) {
    let d = b - a;
    let g2 = 4.0 * g * g;
    let big_d = d.abs() + (d * d + g2).sqrt();
    let w = (big_d * big_d + g2).sqrt();
    let inv = 1.0 / (big_d * w);
    let sign_d = if d < 0.0 { -1.0 } else { 1.0 };
    let c = big_d * big_d * inv;
    let s = sign_d * 2.0 * g * big_d * inv;
    let tg = sign_d * 0.5 * g2 * w * inv;
    (c, s, tg)
}

/// The pairs (i < j) of 0..q in round-robin (circle method) order: q − 1 rounds (q rounded up to
/// even) of disjoint pairs; every pair exactly once.
fn round_robin(q: usize) -> Vec<(usize, usize)> {
    let m = q + q % 2;
    let mut out = Vec::with_capacity(q * (q - 1) / 2);
    for round in 0..m.saturating_sub(1) {
        for k in 0..m / 2 {
            let a = if k == 0 { m - 1 } else { (round + k) % (m - 1) };
            let b = (round + m - 1 - k) % (m - 1);
            let (i, j) = (a.min(b), a.max(b));
            if j < q && i != j {
                out.push((i, j));
            }
        }
    }
    out
}

/// Rows i < j (length `len`) of a row-major store ← (c·x_i − s·x_j, s·x_i + c·x_j).
fn rotate_pair(store: &mut [f64], len: usize, i: usize, j: usize, c: f64, s: f64) {
    let (lo, hi) = store.split_at_mut(j * len);
    let (xi, xj) = (&mut lo[i * len..(i + 1) * len], &mut hi[..len]);
    for (a, b) in xi.iter_mut().zip(xj.iter_mut()) {
        let (x, y) = (*a, *b);
        *a = c * x - s * y;
        *b = s * x + c * y;
    }
}
