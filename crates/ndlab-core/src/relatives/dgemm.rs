//! `C ← β C + α A B` in f64 for the dense kernels of the iterative methods ([`super::dense`]).
//!
//! Natively this is nalgebra's GEMM (matrixmultiply's AVX2/FMA kernels). In wasm matrixmultiply has
//! no SIMD kernel, and the ALS normal equations (Gram matrices, Cholesky, triangular solves: about
//! 150 M multiply-adds per sweep at R ≈ 284) ran several times slower than natively; there both
//! operands are packed into 4-row and 4-column panels and a 4 × 4 tile of eight `f64x2`
//! accumulators walks them (SIMD128). Operands of any strides (views, transposes).

use nalgebra::{Dim, Matrix, Storage, StorageMut};

/// Whether [`gemm`] takes the packed path (wasm) rather than nalgebra's.
const PACKED: bool = cfg!(target_arch = "wasm32");

/// `C ← β C + α A B` (A m × k, B k × n, C m × n; panics on mismatched shapes, as nalgebra does).
pub(crate) fn gemm<R1, C1, S1, R2, C2, S2, R3, C3, S3>(
    c: &mut Matrix<f64, R1, C1, S1>,
    alpha: f64,
    a: &Matrix<f64, R2, C2, S2>,
    b: &Matrix<f64, R3, C3, S3>,
    beta: f64,
) where
    R1: Dim,
    C1: Dim,
    S1: StorageMut<f64, R1, C1>,
    R2: Dim,
    C2: Dim,
    S2: Storage<f64, R2, C2>,
    R3: Dim,
    C3: Dim,
    S3: Storage<f64, R3, C3>,
    nalgebra::constraint::ShapeConstraint: nalgebra::constraint::SameNumberOfRows<R1, R2>
        + nalgebra::constraint::SameNumberOfColumns<C1, C3>
        + nalgebra::constraint::AreMultipliable<R2, C2, R3, C3>,
{
    if PACKED {
        packed(c, alpha, a, b, beta);
    } else {
        c.gemm(alpha, a, b, beta);
    }
}

/// The packed path (see the module's documentation); public to the crate for its tests.
pub(crate) fn packed<R1, C1, S1, R2, C2, S2, R3, C3, S3>(
    c: &mut Matrix<f64, R1, C1, S1>,
    alpha: f64,
    a: &Matrix<f64, R2, C2, S2>,
    b: &Matrix<f64, R3, C3, S3>,
    beta: f64,
) where
    R1: Dim,
    C1: Dim,
    S1: StorageMut<f64, R1, C1>,
    R2: Dim,
    C2: Dim,
    S2: Storage<f64, R2, C2>,
    R3: Dim,
    C3: Dim,
    S3: Storage<f64, R3, C3>,
{
    let (m, k) = a.shape();
    let n = b.ncols();
    assert_eq!(b.nrows(), k, "gemm: inner dimensions differ");
    assert_eq!(c.shape(), (m, n), "gemm: C has the wrong shape");
    if beta == 0.0 {
        c.fill(0.0);
    } else if beta != 1.0 {
        *c *= beta;
    }
    if m == 0 || n == 0 || k == 0 || alpha == 0.0 {
        return;
    }
    let (mp, np) = (m.div_ceil(4), n.div_ceil(4));
    // Panel q of A: k groups of 4 rows (zero past m); panel q of B: k groups of 4 columns.
    let mut ap = vec![0.0f64; mp * 4 * k];
    for (q, panel) in ap.chunks_exact_mut(4 * k).enumerate() {
        for ii in 0..4.min(m - 4 * q) {
            let row = a.row(4 * q + ii);
            for (p, v) in row.iter().enumerate() {
                panel[4 * p + ii] = *v;
            }
        }
    }
    let mut bp = vec![0.0f64; np * 4 * k];
    for (q, panel) in bp.chunks_exact_mut(4 * k).enumerate() {
        for jj in 0..4.min(n - 4 * q) {
            let col = b.column(4 * q + jj);
            for (p, v) in col.iter().enumerate() {
                panel[4 * p + jj] = *v;
            }
        }
    }
    for (jq, bpanel) in bp.chunks_exact(4 * k).enumerate() {
        let nv = 4.min(n - 4 * jq);
        for (iq, apanel) in ap.chunks_exact(4 * k).enumerate() {
            let mv = 4.min(m - 4 * iq);
            let tile = kernel(apanel, bpanel);
            for jj in 0..nv {
                for ii in 0..mv {
                    c[(4 * iq + ii, 4 * jq + jj)] += alpha * tile[4 * jj + ii];
                }
            }
        }
    }
}

/// `Σ_p a[p] ⊗ b[p]` over the packed panels (4 values of A and 4 of B per step): the 4 × 4 tile,
/// column-major (`tile[4 j + i]`).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
fn kernel(a: &[f64], b: &[f64]) -> [f64; 16] {
    use core::arch::wasm32::*;
    let mut c = [f64x2_splat(0.0); 8];
    for (ap, bp) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        let a0 = f64x2(ap[0], ap[1]);
        let a1 = f64x2(ap[2], ap[3]);
        for j in 0..4 {
            let bj = f64x2_splat(bp[j]);
            c[2 * j] = f64x2_add(c[2 * j], f64x2_mul(a0, bj));
            c[2 * j + 1] = f64x2_add(c[2 * j + 1], f64x2_mul(a1, bj));
        }
    }
    let mut out = [0.0; 16];
    for (j, v) in c.iter().enumerate() {
        out[2 * j] = f64x2_extract_lane::<0>(*v);
        out[2 * j + 1] = f64x2_extract_lane::<1>(*v);
    }
    out
}

/// The portable tile (the same sums in the same order, lane by lane).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
fn kernel(a: &[f64], b: &[f64]) -> [f64; 16] {
    let mut c = [0.0f64; 16];
    for (ap, bp) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for j in 0..4 {
            for i in 0..4 {
                c[4 * j + i] += ap[i] * bp[j];
            }
        }
    }
    c
}

/// Largest |packed − naive| / (1 + |naive|) over products of seeded random matrices of awkward shapes,
/// strided views and transposes, with α and β ≠ 1 — for the wasm test (`tests/wasm.rs`), which runs
/// the SIMD128 tile the native tests cannot.
#[doc(hidden)]
pub fn packed_gemm_self_check(seed: u64) -> f64 {
    use nalgebra::DMatrix;
    let mut rng = super::linalg::seeded_rng(seed);
    let mut worst = 0.0f64;
    for &(m, k, n) in &[(1, 1, 1), (5, 3, 7), (4, 8, 4), (33, 17, 9), (130, 64, 70), (3, 200, 2)] {
        let big_a = DMatrix::from_fn(m + 3, k + 2, |_, _| rng.signed());
        let bt = DMatrix::from_fn(n, k, |_, _| rng.signed());
        let c0 = DMatrix::from_fn(m, n, |_, _| rng.signed());
        let a = big_a.view((2, 1), (m, k));
        let b = bt.transpose();
        let (alpha, beta) = (-0.75, 0.5);
        let mut c = c0.clone();
        packed(&mut c, alpha, &a, &b, beta);
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| a[(i, p)] * b[(p, j)]).sum();
                let want = beta * c0[(i, j)] + alpha * dot;
                worst = worst.max((c[(i, j)] - want).abs() / (1.0 + want.abs()));
            }
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    #[test]
    fn packed_gemm_equals_the_textbook_product() {
        // Views with offsets and strides, transposes, shapes not multiples of 4, α and β ≠ 1.
        assert!(packed_gemm_self_check(7) < 1e-13);
    }

    #[test]
    fn packed_gemm_handles_beta_zero_over_nan_and_empty_shapes() {
        let a = DMatrix::from_element(3, 2, 1.0);
        let b = DMatrix::from_element(2, 5, 2.0);
        let mut c = DMatrix::from_element(3, 5, f64::NAN);
        packed(&mut c, 1.0, &a, &b, 0.0);
        assert!(c.iter().all(|&v| v == 4.0), "{c}");
        let mut e = DMatrix::<f64>::zeros(0, 4);
        packed(&mut e, 1.0, &DMatrix::<f64>::zeros(0, 3), &DMatrix::<f64>::zeros(3, 4), 0.0);
        let mut z = DMatrix::from_element(2, 2, 3.0);
        packed(&mut z, 1.0, &DMatrix::<f64>::zeros(2, 0), &DMatrix::<f64>::zeros(0, 2), 1.0);
        assert!(z.iter().all(|&v| v == 3.0));
    }
}
