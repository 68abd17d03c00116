//! Two slices at once: their Jacobi eigensolvers in the two lanes of [`F2`] (see the parent
//! module's step 3).

use super::{Slice, Work, F2};
use crate::svd::MAX_SWEEPS;

/// Two slices decomposed together: everything per slice, except that their Jacobi eigensolvers
/// run in the two lanes of [`F2`] (the rotation angles' square roots and division, the
/// latency-bound part, are shared). Each lane makes the same decisions and the same arithmetic as
/// [`jacobi`] on its own slice (a lane that skips a pair gets the identity rotation).
pub(in crate::decouple) struct PairWork {
    /// First slice's scratch.
    pub(in crate::decouple) a: Work,
    /// Second slice's scratch.
    pub(in crate::decouple) b: Work,
    /// The two Gram matrices, lane 0 = a, lane 1 = b.
    g2: Vec<F2>,
    /// The two eigenvector sets.
    v2: Vec<F2>,
}

impl PairWork {
    /// Scratch for pairs of p × q slices.
    pub(in crate::decouple) fn new(p: usize, q: usize) -> PairWork {
        PairWork {
            a: Work::new(p, q),
            b: Work::new(p, q),
            g2: vec![F2::zero(); q * q],
            v2: vec![F2::zero(); q * q],
        }
    }

    /// Decomposes the slices loaded in `a` and `b`; `None` for a slice that fails its checks.
    pub(in crate::decouple) fn decompose(&mut self) -> (Option<Slice>, Option<Slice>) {
        let (ta, tb) = (self.a.gram_and_trace(), self.b.gram_and_trace());
        let usual = |t: f64| t != 0.0 && t.is_finite();
        if !usual(ta) || !usual(tb) {
            // A zero slice, or a non-finite value (handed back): each slice on its own.
            return (self.a.decompose(), self.b.decompose());
        }
        let q = self.a.q;
        for ((g, &x), &y) in self.g2.iter_mut().zip(&self.a.g).zip(&self.b.g) {
            *g = F2::new(x, y);
        }
        if !jacobi2(&mut self.g2, &mut self.v2, q, &self.a.pairs) {
            return (None, None);
        }
        for ((v, x), y) in self.v2.iter().zip(self.a.vt.iter_mut()).zip(self.b.vt.iter_mut()) {
            (*x, *y) = v.lanes();
        }
        for k in 0..q {
            (self.a.g[k * q + k], self.b.g[k * q + k]) = self.g2[k * q + k].lanes();
        }
        (self.a.finish(ta), self.b.finish(tb))
    }
}

/// [`jacobi`] on two symmetric q × q matrices at once, one per lane of `g2` (`v2` receives the
/// eigenvectors). Sweeps until neither lane rotates; false if that takes over [`MAX_SWEEPS`]
/// (or if the shapes do not fit). Compiled for q = 9 (3 × 3 kernels) with the loops unrolled.
pub(super) fn jacobi2(g2: &mut [F2], v2: &mut [F2], q: usize, pairs: &[(usize, usize)]) -> bool {
    if g2.len() < q * q || v2.len() < q * q || pairs.iter().any(|&(i, j)| i >= j || j >= q) {
        return false;
    }
    match q {
        9 => jacobi2_q::<9>(g2, v2, q, pairs),
        _ => jacobi2_q::<0>(g2, v2, q, pairs),
    }
}

/// [`jacobi2`] for q = `Q` (known at compile time), or any q when `Q` = 0. The caller checked
/// that `g2` and `v2` hold q² values and every pair is i < j < q.
#[inline(always)]
fn jacobi2_q<const Q: usize>(g2: &mut [F2], v2: &mut [F2], q: usize, pairs: &[(usize, usize)]) -> bool {
    let q = if Q == 0 { q } else { Q };
    let (zero, one) = (F2::zero(), F2::splat(1.0));
    v2[..q * q].fill(zero);
    for i in 0..q {
        v2[i * q + i] = one;
    }
    let eps2 = F2::splat(f64::EPSILON * f64::EPSILON);
    let g = g2.as_mut_ptr();
    for _ in 0..MAX_SWEEPS {
        let mut rotated = false;
        for &(i, j) in pairs {
            // SAFETY (loop body): i < j < q and r < q, so every index below is < q² ≤ g2.len().
            let at = |r: usize, c: usize| unsafe { g.add(r * q + c) };
            let (gij, gii, gjj) = unsafe { (*at(i, j), *at(i, i), *at(j, j)) };
            let mask = (eps2 * (gii * gjj).abs()).lt(gij * gij);
            if !F2::any(mask) {
                continue;
            }
            rotated = true;
            let (c, s, tg) = rotation2(gii, gjj, gij);
            let (c, s, tg) =
                (F2::select(mask, c, one), F2::select(mask, s, zero), F2::select(mask, tg, zero));
            // Rotate the entries (r, i), (r, j) once and write them to both symmetric places, for
            // every r (no branch): the four entries with r ∈ {i, j} come out wrong and are set
            // below, and no other entry reads them.
            for r in 0..q {
                unsafe {
                    let (x, y) = (*at(r, i), *at(r, j));
                    let (nx, ny) = (c * x - s * y, s * x + c * y);
                    *at(r, i) = nx;
                    *at(i, r) = nx;
                    *at(r, j) = ny;
                    *at(j, r) = ny;
                }
            }
            let gij = F2::select(mask, zero, gij);
            unsafe {
                *at(i, i) = gii - tg;
                *at(j, j) = gjj + tg;
                *at(i, j) = gij;
                *at(j, i) = gij;
            }
            rotate_pair2(v2, q, i, j, c, s);
        }
        if !rotated {
            return true;
        }
    }
    false
}

/// [`rotation`] in both lanes (same operations in the same order).
fn rotation2(a: F2, b: F2, g: F2) -> (F2, F2, F2) {
    let d = b - a;
    let g2 = F2::splat(4.0) * g * g;
    let big_d = d.abs() + (d * d + g2).sqrt();
    let w = (big_d * big_d + g2).sqrt();
    let inv = F2::splat(1.0) / (big_d * w);
    let sign_d = F2::select(d.lt(F2::zero()), F2::splat(-1.0), F2::splat(1.0));
    let c = big_d * big_d * inv;
    let s = sign_d * F2::splat(2.0) * g * big_d * inv;
    let tg = sign_d * F2::splat(0.5) * g2 * w * inv;
    (c, s, tg)
}

/// [`rotate_pair`] on lane pairs.
#[inline(always)]
fn rotate_pair2(store: &mut [F2], len: usize, i: usize, j: usize, c: F2, s: F2) {
    let (lo, hi) = store.split_at_mut(j * len);
    let (xi, xj) = (&mut lo[i * len..(i + 1) * len], &mut hi[..len]);
    for (a, b) in xi.iter_mut().zip(xj.iter_mut()) {
        let (x, y) = (*a, *b);
        *a = c * x - s * y;
        *b = s * x + c * y;
    }
}
