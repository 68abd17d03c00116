//! The small SVD against independent oracles: the defining identities (M v = σ u, Mᵀ u = σ v,
//! orthonormal vectors, Σσ² = ‖M‖²_F, reconstruction), closed-form singular values of special
//! matrices, and the two algorithms against each other. Tolerances scale like ε·sqrt(size).

use ndlab_core::svd::{svd, svd_gram, svd_one_sided_jacobi, Svd, SvdMethod, GRAY_ZONE};
use proptest::prelude::*;

const EPS: f64 = f64::EPSILON;

/// ε·sqrt(m·n) times a safety factor: the tolerance of every identity below, relative to ‖M‖.
fn tol(m: usize, n: usize) -> f64 {
    64.0 * EPS * ((m * n) as f64).sqrt()
}

fn fro(a: &[f64]) -> f64 {
    a.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// A deterministic pseudo-random matrix in [-1, 1) (xorshift), so failures reproduce.
fn rand_matrix(m: usize, n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..m * n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// Row-major product (m × r)·(r × n).
fn matmul(a: &[f64], b: &[f64], m: usize, r: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for k in 0..r {
            let x = a[i * r + k];
            for j in 0..n {
                out[i * n + j] += x * b[k * n + j];
            }
        }
    }
    out
}

/// Every invariant of a thin SVD, checked against the matrix itself.
fn check_invariants(a: &[f64], m: usize, n: usize, s: &Svd) {
    let k = m.min(n);
    let nrm = fro(a);
    let t = tol(m, n);
    assert_eq!((s.m, s.n, s.sigma.len(), s.u.len(), s.v.len()), (m, n, k, k * m, k * n));
    assert!(s.sigma.iter().chain(&s.u).chain(&s.v).all(|x| x.is_finite()), "non-finite output");
    assert!(s.sigma.iter().all(|&x| x >= 0.0), "negative σ: {:?}", s.sigma);
    assert!(s.sigma.windows(2).all(|w| w[0] >= w[1]), "σ not sorted: {:?}", s.sigma);
    // Σσ² = ‖M‖²_F.
    let ssq: f64 = s.sigma.iter().map(|x| x * x).sum();
    assert!((ssq - nrm * nrm).abs() <= t * nrm * nrm, "Σσ² = {ssq} vs ‖M‖² = {}", nrm * nrm);
    // Full reconstruction.
    let rec = s.reconstruct(k);
    let err = fro(&rec.iter().zip(a).map(|(x, y)| x - y).collect::<Vec<_>>());
    assert!(err <= t * nrm, "reconstruction error {err:e} for ‖M‖ = {nrm:e}");
    let smax = s.sigma[0];
    for i in 0..k {
        let (ui, vi) = (s.u_vec(i), s.v_vec(i));
        if s.sigma[i] == 0.0 {
            assert!(ui.iter().chain(vi).all(|&x| x == 0.0), "σ_{i} = 0 but vectors not zero");
            continue;
        }
        // Unit vectors and the singular-triplet residuals M v = σ u, Mᵀ u = σ v.
        assert!((fro(ui) - 1.0).abs() <= t && (fro(vi) - 1.0).abs() <= t, "non-unit vector {i}");
        let mv: Vec<f64> = (0..m).map(|r| (0..n).map(|c| a[r * n + c] * vi[c]).sum()).collect();
        let mtu: Vec<f64> = (0..n).map(|c| (0..m).map(|r| a[r * n + c] * ui[r]).sum()).collect();
        let r1 = fro(&mv.iter().zip(ui).map(|(x, u)| x - s.sigma[i] * u).collect::<Vec<_>>());
        let r2 = fro(&mtu.iter().zip(vi).map(|(x, v)| x - s.sigma[i] * v).collect::<Vec<_>>());
        // The Gram route's computed side carries the documented ε·σ_max/σ_i (one-sided: ε).
        let cond = if s.method == SvdMethod::Gram { smax / s.sigma[i] } else { 1.0 };
        assert!(r1 <= t * nrm * cond && r2 <= t * nrm * cond, "triplet {i}: residuals {r1:e}, {r2:e}");
        // Orthogonality, within the documented bound ε·σ_max²/(σ_i σ_j) for the Gram route.
        for j in 0..i {
            if s.sigma[j] == 0.0 {
                continue;
            }
            let bound = match s.method {
                SvdMethod::Gram => t * (smax * smax / (s.sigma[i] * s.sigma[j])).max(1.0),
                SvdMethod::OneSidedJacobi => t,
            };
            let du: f64 = ui.iter().zip(s.u_vec(j)).map(|(x, y)| x * y).sum();
            let dv: f64 = vi.iter().zip(s.v_vec(j)).map(|(x, y)| x * y).sum();
            assert!(du.abs() <= bound && dv.abs() <= bound, "pair ({i},{j}): uᵀu {du:e}, vᵀv {dv:e}");
        }
    }
}

/// The checked SVD (with fallback) plus both raw algorithms, all validated; returns the checked one.
fn check_all(a: &[f64], m: usize, n: usize) -> Svd {
    let s = svd(a, m, n).expect("svd");
    check_invariants(a, m, n, &s);
    let j = svd_one_sided_jacobi(a, m, n).expect("one-sided Jacobi");
    check_invariants(a, m, n, &j);
    // The two algorithms agree on σ (absolute, in units of σ_max).
    let t = tol(m, n) * s.sigma[0].max(f64::MIN_POSITIVE);
    for (x, y) in s.sigma.iter().zip(&j.sigma) {
        assert!((x - y).abs() <= t, "Gram/Jacobi σ differ: {:?} vs {:?}", s.sigma, j.sigma);
    }
    s
}

/// σ against a closed form, absolute tolerance in units of σ_max.
fn assert_sigma(s: &Svd, expected: &[f64]) {
    let t = tol(s.m, s.n) * expected.iter().cloned().fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    assert_eq!(s.sigma.len(), expected.len());
    for (x, y) in s.sigma.iter().zip(expected) {
        assert!((x - y).abs() <= t, "σ = {:?}, expected {:?}", s.sigma, expected);
    }
}

fn ones_sigma(m: usize, n: usize, c: f64) -> Vec<f64> {
    let mut e = vec![0.0; m.min(n)];
    e[0] = c.abs() * ((m * n) as f64).sqrt();
    e
}

/// The inputs that break nalgebra 0.35's `svd(true, true)` (issue 1172): all-ones matrices
/// (3×5 returns σ1 = 4.54 instead of sqrt(15), 6×21 returns 24.69 for a norm of 11.22), the full-rank
/// integer matrix whose Σσ² came back 21.04 instead of 21, and the rank-one 2×2 of issue 1072.
#[test]
fn svd_regression_issue_1172() {
    let s = check_all(&[1.0; 15], 3, 5);
    assert_sigma(&s, &[15f64.sqrt(), 0.0, 0.0]);
    let s = check_all(&[1.0; 126], 6, 21);
    assert_sigma(&s, &ones_sigma(6, 21, 1.0));
    for m in 2..=30 {
        for n in 2..=30 {
            let s = check_all(&vec![1.0; m * n], m, n);
            assert_sigma(&s, &ones_sigma(m, n, 1.0));
        }
    }
    // [[1,2,2],[2,-1,-1],[2,1,-1]]: Σσ² = 21 and σ1σ2σ3 = |det| = 10 (closed forms).
    let a = [1.0, 2.0, 2.0, 2.0, -1.0, -1.0, 2.0, 1.0, -1.0];
    let s = check_all(&a, 3, 3);
    let ssq: f64 = s.sigma.iter().map(|x| x * x).sum();
    let prod: f64 = s.sigma.iter().product();
    assert!((ssq - 21.0).abs() < 1e-13 && (prod - 10.0).abs() < 1e-13, "Σσ² {ssq}, Πσ {prod}");
    // Issue 1072: the rank-one 2×2 rebuilt from σ = (1, 0).
    let x = [-6.206610118536945, -3.67612186839874, -1.2755730783423473, 6.047238193479124];
    let sx = check_all(&x, 2, 2);
    let y: Vec<f64> = (0..4).map(|i| sx.sigma[0] * sx.u_vec(0)[i / 2] * sx.v_vec(0)[i % 2]).collect();
    let sy = check_all(&y, 2, 2);
    assert_sigma(&sy, &[sx.sigma[0], 0.0]);
}

#[test]
fn zero_matrices_give_zero_factors() {
    for (m, n) in [(1, 1), (5, 3), (3, 5), (512, 9), (3, 9)] {
        let a = vec![0.0; m * n];
        for s in
            [svd(&a, m, n).unwrap(), svd_gram(&a, m, n).unwrap(), svd_one_sided_jacobi(&a, m, n).unwrap()]
        {
            assert!(s.sigma.iter().chain(&s.u).chain(&s.v).all(|&x| x == 0.0));
            assert_eq!(s.rank(), 0);
        }
    }
}

#[test]
fn constant_and_identity() {
    for (m, n, c) in [(4, 9, -2.5), (9, 4, 3.0), (256, 9, 0.125), (25, 25, 7.0)] {
        let s = check_all(&vec![c; m * n], m, n);
        assert_sigma(&s, &ones_sigma(m, n, c));
        assert_eq!(s.rank(), 1);
    }
    for n in [1, 2, 9, 25, 49] {
        let mut a = vec![0.0; n * n];
        (0..n).for_each(|i| a[i * n + i] = 1.0);
        assert_sigma(&check_all(&a, n, n), &vec![1.0; n]);
    }
}

#[test]
fn rank_one_and_rank_deficient() {
    // Rank one: x yᵀ has σ1 = ‖x‖‖y‖.
    let (x, y) = (rand_matrix(40, 1, 1), rand_matrix(1, 9, 2));
    let a = matmul(&x, &y, 40, 1, 9);
    let s = check_all(&a, 40, 9);
    let mut e = vec![0.0; 9];
    e[0] = fro(&x) * fro(&y);
    assert_sigma(&s, &e);
    // Rank r = B (m×r) · C (r×n): exactly r non-zero σ, the rank-r truncation is exact.
    for (m, n, r, seed) in [(64, 9, 3, 3), (9, 64, 4, 4), (6, 25, 2, 5), (512, 9, 5, 6), (49, 49, 7, 7)] {
        let a = matmul(&rand_matrix(m, r, seed), &rand_matrix(r, n, seed + 100), m, r, n);
        let s = check_all(&a, m, n);
        assert_eq!(s.rank(), r, "σ = {:?}", s.sigma);
        let rec = s.reconstruct(r);
        let err = fro(&rec.iter().zip(&a).map(|(p, q)| p - q).collect::<Vec<_>>());
        assert!(err <= tol(m, n) * fro(&a));
    }
}

#[test]
fn tiny_and_huge_values_scale_exactly() {
    let base = rand_matrix(30, 9, 11);
    let s0 = check_all(&base, 30, 9);
    for scale in [1e-30, 1e-300, 1e-310, 1e30, 1e150] {
        let a: Vec<f64> = base.iter().map(|x| x * scale).collect();
        let s = check_all(&a, 30, 9);
        for (x, y) in s.sigma.iter().zip(&s0.sigma) {
            assert!((x / scale - y).abs() <= tol(30, 9) * s0.sigma[0], "scale {scale}: {x} vs {y}");
        }
    }
    let s = check_all(&[1e-30; 12], 3, 4);
    assert_sigma(&s, &ones_sigma(3, 4, 1e-30));
}

#[test]
fn tall_and_wide_shapes() {
    for (m, n, seed) in [
        (512, 9, 21),
        (4096, 9, 22),
        (3, 9, 23),
        (4, 25, 24),
        (9, 3, 25),
        (1, 9, 26),
        (9, 1, 27),
        (2048, 49, 28),
    ] {
        let a = rand_matrix(m, n, seed);
        let s = check_all(&a, m, n);
        assert_eq!(s.rank(), m.min(n));
    }
}

#[test]
fn known_spectrum_through_reflections() {
    // M = H1 · diag(σ) · H2 with Householder reflections: singular values known in closed form,
    // including a repeated one and a graded tail that sends the checked SVD to one-sided Jacobi.
    let (m, n) = (20, 6);
    let sig = [5.0, 2.0, 2.0, 1e-2, 1e-6, 1e-9];
    let d: Vec<f64> = (0..m * n).map(|i| if i / n == i % n { sig[i % n] } else { 0.0 }).collect();
    let a = reflect_cols(&reflect_rows(&d, m, n, &rand_matrix(m, 1, 31)), m, n, &rand_matrix(n, 1, 32));
    let s = check_all(&a, m, n);
    assert_sigma(&s, &sig);
    assert_eq!(s.method, SvdMethod::OneSidedJacobi, "σ_min/σ_max < GRAY_ZONE = {GRAY_ZONE}");
    let j = svd_one_sided_jacobi(&a, m, n).unwrap();
    assert!((j.sigma[5] - 1e-9).abs() < 1e-9 * 1e-5, "one-sided keeps small σ relatively accurate");
    // A well-conditioned spectrum stays on the fast route.
    let sig2 = [3.0, 2.5, 2.0, 1.5, 1.0, 0.5];
    let d2: Vec<f64> = (0..m * n).map(|i| if i / n == i % n { sig2[i % n] } else { 0.0 }).collect();
    let a2 = reflect_cols(&reflect_rows(&d2, m, n, &rand_matrix(m, 1, 33)), m, n, &rand_matrix(n, 1, 34));
    let s2 = check_all(&a2, m, n);
    assert_sigma(&s2, &sig2);
    assert_eq!(s2.method, SvdMethod::Gram);
}

/// (I − 2wwᵀ/‖w‖²)·A.
fn reflect_rows(a: &[f64], m: usize, n: usize, w: &[f64]) -> Vec<f64> {
    let ww: f64 = w.iter().map(|x| x * x).sum();
    let mut out = a.to_vec();
    for j in 0..n {
        let dot: f64 = (0..m).map(|i| w[i] * a[i * n + j]).sum();
        (0..m).for_each(|i| out[i * n + j] -= 2.0 * w[i] * dot / ww);
    }
    out
}

/// A·(I − 2wwᵀ/‖w‖²).
fn reflect_cols(a: &[f64], m: usize, n: usize, w: &[f64]) -> Vec<f64> {
    let ww: f64 = w.iter().map(|x| x * x).sum();
    let mut out = a.to_vec();
    for i in 0..m {
        let dot: f64 = (0..n).map(|j| a[i * n + j] * w[j]).sum();
        (0..n).for_each(|j| out[i * n + j] -= 2.0 * dot * w[j] / ww);
    }
    out
}

#[test]
fn rejects_bad_input() {
    assert!(svd(&[1.0, 2.0], 2, 2).is_err());
    assert!(svd(&[], 0, 3).is_err());
    assert!(svd(&[1.0, f64::NAN], 1, 2).is_err());
    assert!(svd(&[1.0, f64::INFINITY], 2, 1).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_matrices(m in 1usize..40, n in 1usize..40, seed in any::<u64>(), exp in -40i32..40) {
        let scale = 10f64.powi(exp);
        let a: Vec<f64> = rand_matrix(m, n, seed).iter().map(|x| x * scale).collect();
        check_all(&a, m, n);
    }

    #[test]
    fn random_low_rank(m in 1usize..60, n in 1usize..50, r in 1usize..6, seed in any::<u64>()) {
        let a = matmul(&rand_matrix(m, r, seed), &rand_matrix(r, n, seed ^ 0xABCD), m, r, n);
        let s = check_all(&a, m, n);
        prop_assert!(s.rank() <= r.min(m).min(n));
    }

    #[test]
    fn random_integer_matrices(m in 1usize..12, n in 1usize..12, vals in prop::collection::vec(-2i32..3, 144)) {
        // Small integers produce exact ties, zero rows and rank deficiency often.
        let a: Vec<f64> = vals[..m * n].iter().map(|&v| v as f64).collect();
        check_all(&a, m, n);
    }
}
