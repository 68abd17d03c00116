//! The fast route of [`super::Decomposition::new`] for tall slices (rows p ≥ columns q = K²).
//!
//! Per slice, straight from the f32 kernel, with the scratch reused across slices:
//! 1. the slice's rows are read (DW→PW: strided in OIHW; PW→DW: contiguous) into f64 column
//!    storage, padded with zero rows to a multiple of [`ROW_BLOCK`] (contiguous rows two at a
//!    time with SIMD shuffles). No scaling is needed: the products of f32 values are exact in
//!    f64 and can neither overflow nor underflow there;
//! 2. the q × q Gram matrix `G = MᵀM` in f64, two rows per SIMD lane pair, 3 × 3 register tiles
//!    (for q = 9 exactly the 45 distinct entries); its trace is ‖M‖²_F (not finite: the kernel
//!    holds a NaN or infinity, and the slice goes to the fallback, which reports it);
//! 3. Jacobi on G ([`crate::svd`]'s rotations and threshold, pairs in round-robin order so that
//!    consecutive rotations are independent), two slices at once in the lanes of [`F2`]
//!    ([`PairWork`]), giving V (orthonormal to working precision);
//! 4. eigenpairs ordered by eigenvalue, then `P = M V` in 3-output × 6-row register tiles,
//!    written straight into the slice's `pw` (row k = `M v_k = σ_k u_k`, which is what
//!    [`super::Slice::pw`] stores: nothing is normalised and multiplied back); `σ_k = ‖p_k‖`
//!    (never `sqrt(λ_k)`; ‖p_k‖² summed in the tile while its outputs are in registers),
//!    re-sorted if that swaps two nearly equal values;
//! 5. the same run-time checks as [`crate::svd::svd`]'s Gram route, from quantities at hand:
//!    everything finite (σ finite ⇒ every `p_k` finite), `|Σσ² − ‖M‖²_F| ≤ 1e-10·‖M‖²_F` with
//!    `‖M‖²_F = trace G` (`Σσ² = ‖MV‖²_F` equals it only if V is orthogonal and P is right),
//!    no non-negligible σ below [`GRAY_ZONE`]·σ_max (squaring's accuracy limit), and rows 0,
//!    p/2, p − 1 rebuilt to 1e-8·σ_max. A slice that fails any of them (or whose Jacobi does
//!    not converge) returns `None`, and the caller recomputes it with [`crate::svd::svd_with`]
//!    (its own checks, then one-sided Jacobi).
//!
//! In the `relaxed-simd` (wasm FMA) build the Gram and `M V` tiles use `f64x2.relaxed_madd`
//! ([`F2::mul_add`]; `Work::gram` and `Work::product` are compiled with the feature); the
//! Jacobi stays unfused, identical to the scalar solver.
//!
//! The numerically-null convention is [`crate::svd`]'s: σ_k ≤ `rank_tol(p, q)·σ_max` → σ_k = 0
//! with zero vectors on both sides; an all-zero slice gives all-zero factors.

use super::lanes::F2;
use super::Slice;
use crate::svd::{rank_tol, GRAY_ZONE, MAX_SWEEPS};
use core::mem::MaybeUninit;

mod pairs;
pub(in crate::decouple) use pairs::PairWork;

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
    /// Order of the eigenpairs by eigenvalue, descending.
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
        let (src, out) = (data.as_ptr(), self.cols.as_mut_ptr());
        let mut r = 0;
        // Strided rows (DW→PW) read one at a time: two at once measured slower there (V8, A/B).
        while stride == q && r + 1 < p {
            let (a, b) = (base + r * stride, base + (r + 1) * stride);
            // SAFETY: rows r, r + 1 < p lie in `data` (their ends are ≤ last ≤ data.len()), and
            // column j's entries r, r + 1 are at j·ps + r + 1 < q·ps ≤ cols.len().
            unsafe { load_two_rows(src.add(a), src.add(b), out.add(r), ps, q) };
            r += 2;
        }
        for r in r..p {
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
        let trace = self.gram_and_trace();
        if trace == 0.0 {
            return Some(self.zero_slice());
        }
        if !trace.is_finite() {
            return None;
        }
        if !jacobi(&mut self.g, &mut self.vt, self.q, &self.pairs) {
            return None;
        }
        self.finish(trace)
    }

    /// The Gram matrix of the loaded slice, and its trace ‖M‖²_F.
    fn gram_and_trace(&mut self) -> f64 {
        self.gram();
        (0..self.q).map(|j| self.g[j * self.q + j]).sum()
    }

    /// The factors of an all-zero slice.
    fn zero_slice(&self) -> Slice {
        let (p, q) = (self.p, self.q);
        Slice { sigma: vec![0.0; q], dw: vec![0.0; q * q], pw: vec![0.0; q * p], energy: 0.0 }
    }

    /// With the eigenvectors in `vt` and the eigenvalues on the diagonal of `g`: `P = M V`
    /// (written straight into the slice's `pw`), σ, order, zero cut, checks.
    fn finish(&mut self, trace: f64) -> Option<Slice> {
        let (p, q) = (self.p, self.q);
        // Order by eigenvalue first, so that P lands in place; σ re-checks the order below.
        let g = &self.g;
        self.idx.iter_mut().enumerate().for_each(|(i, x)| *x = i);
        self.idx.sort_by(|&a, &b| g[b * q + b].total_cmp(&g[a * q + a]));
        let mut dw = Vec::with_capacity(q * q);
        for &k in &self.idx {
            dw.extend_from_slice(&self.vt[k * q..(k + 1) * q]);
        }
        let mut pw: Vec<f64> = Vec::with_capacity(q * p);
        let mut sigma = vec![0.0; q];
        if !self.product(&dw, pw.spare_capacity_mut(), &mut sigma) {
            return None;
        }
        // SAFETY: `product` returned true: it wrote all q·p values.
        unsafe { pw.set_len(q * p) };
        sigma.iter_mut().for_each(|s| *s = s.sqrt());
        if sigma.windows(2).any(|w| w[0] < w[1]) {
            (sigma, dw, pw) = resort(&sigma, &dw, &pw, p, q);
        }
        let mut slice = Slice { sigma, dw, pw, energy: trace };
        cut_null(&mut slice, p, q);
        self.passes_checks(&slice).then_some(slice)
    }

    /// `g = MᵀM` (full symmetric q × q) from the column storage, by 3 × 3 tiles.
    #[cfg_attr(
        all(target_arch = "wasm32", feature = "relaxed-simd"),
        target_feature(enable = "relaxed-simd")
    )]
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

    /// `out[k] = M w_k` for the q weight vectors (rows of `w`, q × q), rows of `out` of length p,
    /// by tiles of three outputs; `ssq[k] = ‖out[k]‖²`. True when every value of `out[..q·p]`
    /// was written (false only if the shapes do not fit, which the constructor rules out).
    #[cfg_attr(
        all(target_arch = "wasm32", feature = "relaxed-simd"),
        target_feature(enable = "relaxed-simd")
    )]
    fn product(&self, w: &[f64], out: &mut [MaybeUninit<f64>], ssq: &mut [f64]) -> bool {
        let q = self.q;
        (0..q).step_by(TILE).all(|k0| {
            let tile = Tile { i0: k0, j0: 0, q, ps: self.ps };
            match (TILE.min(q - k0), q) {
                // 3 × 3 kernels: the loop over the nine columns unrolled (SIMD128 build only: the
                // relaxed-SIMD build measured slower with it in Chromium).
                #[cfg(not(feature = "relaxed-simd"))]
                (3, 9) => tile.product::<3, 9>(&self.cols, w, out, ssq, self.p),
                (3, _) => tile.product::<3, 0>(&self.cols, w, out, ssq, self.p),
                (2, _) => tile.product::<2, 0>(&self.cols, w, out, ssq, self.p),
                _ => tile.product::<1, 0>(&self.cols, w, out, ssq, self.p),
            }
        })
    }

    /// The run-time checks of the module documentation (`slice.energy` is trace G).
    fn passes_checks(&self, slice: &Slice) -> bool {
        let trace = slice.energy;
        let smax = slice.sigma.first().copied().unwrap_or(0.0);
        if !slice.sigma.iter().chain(&slice.dw).all(|x| x.is_finite()) || !smax.is_finite() {
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

/// Two rows `a[..q]`, `b[..q]` (f32) into column storage as f64 pairs: `out[j·ps] = a[j]`,
/// `out[j·ps + 1] = b[j]`. In wasm, four columns per step (two f32x4 loads, lane shuffles,
/// `f64x2.promote_low_f32x4`).
///
/// # Safety
/// `a` and `b` must hold q readable values, and `out[j·ps ..= j·ps + 1]` be writable for j < q.
#[inline(always)]
unsafe fn load_two_rows(a: *const f32, b: *const f32, out: *mut f64, ps: usize, q: usize) {
    #[allow(unused_mut)]
    let mut j = 0;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        use core::arch::wasm32::{f64x2_promote_low_f32x4, i32x4_shuffle, v128, v128_load, v128_store};
        while j + 4 <= q {
            // SAFETY (block): j + 4 ≤ q values of each row; columns j..j + 4 are writable.
            unsafe {
                let (x, y) = (v128_load(a.add(j) as *const v128), v128_load(b.add(j) as *const v128));
                let pairs = [
                    i32x4_shuffle::<0, 4, 0, 4>(x, y),
                    i32x4_shuffle::<1, 5, 1, 5>(x, y),
                    i32x4_shuffle::<2, 6, 2, 6>(x, y),
                    i32x4_shuffle::<3, 7, 3, 7>(x, y),
                ];
                for (l, v) in pairs.into_iter().enumerate() {
                    v128_store(out.add((j + l) * ps) as *mut v128, f64x2_promote_low_f32x4(v));
                }
            }
            j += 4;
        }
    }
    while j < q {
        // SAFETY: j < q (the caller's extents).
        unsafe { F2::new(f64::from(*a.add(j)), f64::from(*b.add(j))).store(out.add(j * ps)) };
        j += 1;
    }
}

/// The triplets re-sorted by σ descending (σ from ‖M v_k‖ can swap two nearly equal eigenvalues).
fn resort(sigma: &[f64], dw: &[f64], pw: &[f64], p: usize, q: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut idx: Vec<usize> = (0..q).collect();
    idx.sort_by(|&a, &b| sigma[b].total_cmp(&sigma[a]));
    let (mut s2, mut d2, mut p2) =
        (Vec::with_capacity(q), Vec::with_capacity(q * q), Vec::with_capacity(q * p));
    for &k in &idx {
        s2.push(sigma[k]);
        d2.extend_from_slice(&dw[k * q..(k + 1) * q]);
        p2.extend_from_slice(&pw[k * p..(k + 1) * p]);
    }
    (s2, d2, p2)
}

/// [`crate::svd`]'s convention: σ_k ≤ `rank_tol(p, q)·σ_max` becomes 0 with zero vectors.
fn cut_null(slice: &mut Slice, p: usize, q: usize) {
    let smax = slice.sigma.first().copied().unwrap_or(0.0);
    let cut = rank_tol(p, q) * smax;
    for (k, s) in slice.sigma.iter_mut().enumerate() {
        if *s <= cut {
            *s = 0.0;
            slice.dw[k * q..(k + 1) * q].fill(0.0);
            slice.pw[k * p..(k + 1) * p].fill(0.0);
        }
    }
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

    /// `out[k][r] = Σ_j w[k][j] · col_j[r]` for the K outputs k = i0.. and rows r < p (rows of
    /// `out` have length p), six rows per step, and `ssq[k] = Σ_r out[k][r]²` (the padding rows
    /// are zero and add nothing); the last partial step goes through a buffer. False (nothing
    /// written) if the shapes do not fit. `Q` ≠ 0: compiled for q = `Q` (must equal `self.q`).
    #[inline(always)]
    fn product<const K: usize, const Q: usize>(
        &self,
        cols: &[f64],
        w: &[f64],
        out: &mut [MaybeUninit<f64>],
        ssq: &mut [f64],
        p: usize,
    ) -> bool {
        let (ps, q, k0) = (self.ps, self.q, self.i0);
        if (Q != 0 && Q != q)
            || q * ps > cols.len()
            || (k0 + K) * q > w.len()
            || (k0 + K) * p > out.len()
            || k0 + K > ssq.len()
            || ps % ROW_BLOCK != 0
            || p > ps
        {
            return false;
        }
        let (c, wp, o) = (cols.as_ptr(), w.as_ptr(), out.as_mut_ptr().cast::<f64>());
        let mut norms = [F2::zero(); K];
        let q = if Q == 0 { q } else { Q };
        let mut r = 0;
        while r < p {
            let mut acc = [[F2::zero(); 3]; K];
            for j in 0..q {
                // SAFETY: j·ps + r + 5 < q·ps ≤ cols.len() (r + 6 ≤ ps: r < p ≤ ps, both steps of 6).
                let x: [F2; 3] = core::array::from_fn(|l| unsafe { F2::load(c.add(j * ps + r + 2 * l)) });
                for (k, row) in acc.iter_mut().enumerate() {
                    // SAFETY: (k0 + k)·q + j < (k0 + K)·q ≤ w.len().
                    let wk = F2::splat(unsafe { *wp.add((k0 + k) * q + j) });
                    for (a, &xl) in row.iter_mut().zip(&x) {
                        *a = a.mul_add(wk, xl);
                    }
                }
            }
            for (n, row) in norms.iter_mut().zip(&acc) {
                *n = n.mul_add(row[0], row[0]).mul_add(row[1], row[1]).mul_add(row[2], row[2]);
            }
            if r + ROW_BLOCK <= p {
                for (k, row) in acc.iter().enumerate() {
                    for (l, a) in row.iter().enumerate() {
                        // SAFETY: (k0 + k)·p + r + 2l + 1 < (k0 + K)·p ≤ out.len() (r + 6 ≤ p).
                        unsafe { a.store(o.add((k0 + k) * p + r + 2 * l)) };
                    }
                }
            } else {
                for (k, row) in acc.iter().enumerate() {
                    let mut buf = [0.0f64; ROW_BLOCK];
                    for (l, a) in row.iter().enumerate() {
                        // SAFETY: 2l + 1 < ROW_BLOCK.
                        unsafe { a.store(buf.as_mut_ptr().add(2 * l)) };
                    }
                    let dst = (k0 + k) * p + r;
                    // SAFETY: dst + (p − r) = (k0 + k)·p + p ≤ out.len(); p − r < ROW_BLOCK.
                    unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), o.add(dst), p - r) };
                }
            }
            r += ROW_BLOCK;
        }
        for (k, n) in norms.iter().enumerate() {
            ssq[k0 + k] = n.sum();
        }
        true
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

#[cfg(test)]
mod tests {
    use super::pairs::jacobi2;
    use super::*;

    #[test]
    fn round_robin_visits_every_pair_once() {
        for q in 1..=50 {
            let pairs = round_robin(q);
            let mut seen = std::collections::BTreeSet::new();
            for &(i, j) in &pairs {
                assert!(i < j && j < q && seen.insert((i, j)), "q = {q}: {i}, {j}");
            }
            assert_eq!(seen.len(), q * q.saturating_sub(1) / 2, "q = {q}");
        }
    }

    /// Each lane of `jacobi2` must make exactly the decisions and the arithmetic of `jacobi` on
    /// its own matrix (one lane converging early gets identity rotations).
    #[test]
    fn paired_jacobi_equals_single_jacobi_bit_for_bit() {
        let q = 9;
        let pairs = round_robin(q);
        let gram = |seed: u64, scale: f64| {
            let mut s = seed | 1;
            let m: Vec<f64> = (0..40 * q)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * scale
                })
                .collect();
            let mut g = vec![0.0; q * q];
            for i in 0..q {
                for j in 0..q {
                    g[i * q + j] = (0..40).map(|r| m[r * q + i] * m[r * q + j]).sum();
                }
            }
            g
        };
        // Very different matrices: one nearly diagonal (converges in fewer sweeps).
        let mut near_diag = gram(5, 1e-3);
        for i in 0..q {
            near_diag[i * q + i] += (i + 1) as f64;
        }
        for (ga, gb) in [(gram(1, 1.0), gram(2, 1e6)), (gram(3, 1.0), near_diag)] {
            let (mut a, mut b) = (ga.clone(), gb.clone());
            let (mut va, mut vb) = (vec![0.0; q * q], vec![0.0; q * q]);
            assert!(jacobi(&mut a, &mut va, q, &pairs) && jacobi(&mut b, &mut vb, q, &pairs));
            let mut g2: Vec<F2> = ga.iter().zip(&gb).map(|(&x, &y)| F2::new(x, y)).collect();
            let mut v2 = vec![F2::zero(); q * q];
            assert!(jacobi2(&mut g2, &mut v2, q, &pairs));
            for k in 0..q * q {
                let ((g0, g1), (v0, v1)) = (g2[k].lanes(), v2[k].lanes());
                assert_eq!((g0.to_bits(), g1.to_bits()), (a[k].to_bits(), b[k].to_bits()), "g[{k}]");
                assert_eq!((v0.to_bits(), v1.to_bits()), (va[k].to_bits(), vb[k].to_bits()), "v[{k}]");
            }
        }
    }
}
