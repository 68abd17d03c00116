//! The related decompositions (CD, SD, CP, MobileNet CP, Tucker-2) against independent oracles:
//! explicit Frobenius norms of W − Ŵ, the scalar reference conv, hand-written cost formulas,
//! synthetic exactly low-rank kernels, and ND's own σ tails.

use ndlab_core::conv::reference_conv2d;
use ndlab_core::decouple::Decomposition;
use ndlab_core::layer::{ConvGeometry, FeatureMap, Kernel, Order, Padding};
use ndlab_core::relatives::{
    compare, largest_rank, no_progress, AlsOptions, ChannelDecomposition, CompareOptions, Cp4, CpMobile,
    Dims, Init, Method, Rank, Relative, SpatialDecomposition, StopReason, Tucker2, TuckerOptions,
};
use ndlab_io::npy::read_npy;

/// Deterministic pseudo-random values in [−1, 1).
fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

fn kernel(n: usize, c: usize, kh: usize, kw: usize, seed: u64) -> Kernel {
    Kernel::new(n, c, kh, kw, values(seed, n * c * kh * kw)).unwrap()
}

/// ‖W − Ŵ‖_F / ‖W‖_F computed directly from the two kernels (f64).
fn rel_diff(w: &Kernel, r: &Kernel) -> f64 {
    assert_eq!((w.n, w.c, w.kh, w.kw), (r.n, r.c, r.kh, r.kw));
    let num: f64 = w.data.iter().zip(&r.data).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum();
    let den: f64 = w.data.iter().map(|a| (*a as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// A real layer shipped in `assets/layers/` (a missing file fails the test, naming it).
fn real_layer(name: &str) -> Kernel {
    let path = format!("{}/../../assets/layers/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    read_npy(&bytes).unwrap().into_kernel().unwrap()
}

const SHAPES: [(usize, usize, usize, usize); 6] =
    [(6, 4, 3, 3), (30, 2, 2, 2), (5, 7, 1, 3), (4, 3, 3, 1), (3, 2, 5, 5), (8, 8, 2, 4)];

#[test]
fn channel_is_exact_at_full_rank_and_its_error_is_the_sigma_tail() {
    for (i, &(n, c, kh, kw)) in SHAPES.iter().enumerate() {
        let w = kernel(n, c, kh, kw, i as u64);
        let full = n.min(c * kh * kw);
        let cd = ChannelDecomposition::new(&w, full).unwrap();
        assert!(rel_diff(&w, &cd.reconstruct().unwrap()) < 1e-6, "{n}x{c}x{kh}x{kw}");
        assert!(cd.rel_weight_error() < 1e-6);
        let total: f64 = cd.sigma_sq().iter().sum();
        assert!((total - w.norm_sq()).abs() < 1e-8 * w.norm_sq());
        for d in 1..full {
            let cd = ChannelDecomposition::new(&w, d).unwrap();
            let direct = rel_diff(&w, &cd.reconstruct().unwrap());
            assert!(
                (direct - cd.rel_weight_error()).abs() < 1e-5,
                "d' = {d}: {direct} vs {}",
                cd.rel_weight_error()
            );
        }
    }
}

#[test]
fn spatial_is_exact_at_full_rank_and_its_error_is_the_sigma_tail() {
    for (i, &(n, c, kh, kw)) in SHAPES.iter().enumerate() {
        let w = kernel(n, c, kh, kw, 10 + i as u64);
        let full = (c * kh).min(n * kw);
        let sd = SpatialDecomposition::new(&w, full).unwrap();
        assert!(rel_diff(&w, &sd.reconstruct().unwrap()) < 1e-6, "{n}x{c}x{kh}x{kw}");
        for r in 1..full {
            let sd = SpatialDecomposition::new(&w, r).unwrap();
            let direct = rel_diff(&w, &sd.reconstruct().unwrap());
            assert!((direct - sd.rel_weight_error()).abs() < 1e-5, "R = {r}");
        }
    }
}

#[test]
fn spatial_of_a_separable_kernel_is_rank_one_and_constant_kernels_work() {
    // W[n,c,i,j] = u[c,i]·v[n,j]: the (C·Kh)×(N·Kw) matrix has rank 1.
    let (n, c, kh, kw) = (5, 4, 3, 3);
    let u = values(1, c * kh);
    let v = values(2, n * kw);
    let mut data = vec![0f32; n * c * kh * kw];
    for ni in 0..n {
        for ci in 0..c {
            for i in 0..kh {
                for j in 0..kw {
                    data[((ni * c + ci) * kh + i) * kw + j] = u[ci * kh + i] * v[ni * kw + j];
                }
            }
        }
    }
    let w = Kernel::new(n, c, kh, kw, data).unwrap();
    let sd = SpatialDecomposition::new(&w, 1).unwrap();
    assert!(rel_diff(&w, &sd.reconstruct().unwrap()) < 1e-6);
    let ones = Kernel::new(4, 3, 3, 3, vec![1.0; 108]).unwrap();
    for r in 1..=9 {
        let cd = ChannelDecomposition::new(&ones, r.min(4)).unwrap();
        assert!(cd.rel_weight_error() < 1e-6 && rel_diff(&ones, &cd.reconstruct().unwrap()) < 1e-6);
        let sd = SpatialDecomposition::new(&ones, r).unwrap();
        assert!(sd.rel_weight_error() < 1e-6 && rel_diff(&ones, &sd.reconstruct().unwrap()) < 1e-6);
    }
}

#[test]
fn tucker2_is_exact_at_full_ranks_and_hooi_improves_on_hosvd() {
    for (i, &(n, c, kh, kw)) in SHAPES.iter().enumerate() {
        let w = kernel(n, c, kh, kw, 20 + i as u64);
        let t = Tucker2::new(&w, c, n, &TuckerOptions::default(), &mut no_progress()).unwrap();
        assert!(rel_diff(&w, &t.reconstruct().unwrap()) < 1e-6, "{n}x{c}x{kh}x{kw}");
        let (r3, r4) = ((c / 2).max(1), (n / 2).max(1));
        let t = Tucker2::new(&w, r3, r4, &TuckerOptions::default(), &mut no_progress()).unwrap();
        let curve = &t.report.curve;
        for pair in curve.windows(2) {
            assert!(pair[1] <= pair[0] + 1e-12, "HOOI error went up: {curve:?}");
        }
        let direct = rel_diff(&w, &t.reconstruct().unwrap());
        assert!((direct - t.rel_weight_error()).abs() < 1e-5);
        assert!((direct - curve[curve.len() - 1]).abs() < 1e-5);
    }
}

/// A kernel that is exactly a sum of R four-way rank-1 terms.
fn cp_kernel(n: usize, c: usize, kh: usize, kw: usize, r: usize, seed: u64) -> Kernel {
    let (a, b, y, x) =
        (values(seed, n * r), values(seed + 1, c * r), values(seed + 2, kh * r), values(seed + 3, kw * r));
    let mut data = vec![0f32; n * c * kh * kw];
    for ni in 0..n {
        for ci in 0..c {
            for i in 0..kh {
                for j in 0..kw {
                    data[((ni * c + ci) * kh + i) * kw + j] =
                        (0..r).map(|t| a[ni * r + t] * b[ci * r + t] * y[i * r + t] * x[j * r + t]).sum();
                }
            }
        }
    }
    Kernel::new(n, c, kh, kw, data).unwrap()
}

#[test]
fn cp_als_objective_is_non_increasing_per_sweep() {
    let w = kernel(12, 10, 3, 3, 40);
    for (r, init, extrapolate) in
        [(4, Init::Svd, false), (7, Init::Random, true), (20, Init::Svd, true), (20, Init::Svd, false)]
    {
        let opts = AlsOptions { max_iter: 60, tol: 0.0, seed: 3, init, extrapolate };
        let cp = Cp4::new(&w, r, &opts, &mut no_progress()).unwrap();
        for (k, pair) in cp.report.curve.windows(2).enumerate() {
            assert!(pair[1] <= pair[0] * (1.0 + 1e-9) + 1e-12, "CP R={r} sweep {k}: {pair:?}");
        }
        let direct = rel_diff(&w, &cp.reconstruct().unwrap());
        assert!((direct - cp.rel_weight_error()).abs() < 1e-5);
        let last = cp.report.curve[cp.report.curve.len() - 1];
        assert!((direct - last).abs() < 1e-4, "objective {last} vs reconstruction {direct}");
        let mb = CpMobile::new(&w, r, &opts, &mut no_progress()).unwrap();
        for pair in mb.report.curve.windows(2) {
            assert!(pair[1] <= pair[0] * (1.0 + 1e-9) + 1e-12, "MobileNet CP R={r}: {pair:?}");
        }
        assert!((rel_diff(&w, &mb.reconstruct().unwrap()) - mb.rel_weight_error()).abs() < 1e-5);
    }
}

#[test]
fn an_exact_rank_r_cp_kernel_is_recovered() {
    for (n, c, kh, kw, r) in [(8, 6, 3, 3, 3), (10, 7, 3, 3, 2), (6, 6, 1, 3, 2)] {
        let w = cp_kernel(n, c, kh, kw, r, 100 + r as u64);
        let opts = AlsOptions { max_iter: 2000, tol: 1e-12, ..AlsOptions::default() };
        let cp = Cp4::best_of(&w, r, &opts, 4, &mut no_progress()).unwrap();
        assert!(cp.rel_weight_error() < 1e-3, "{n}x{c}x{kh}x{kw} R={r}: {}", cp.rel_weight_error());
        assert!(rel_diff(&w, &cp.reconstruct().unwrap()) < 1e-3);
    }
    // MobileNet CP of a rank-R three-way kernel (K² mode unstructured).
    let (n, c, k2, r) = (9, 7, 9, 3);
    let (a, b, d) = (values(1, n * r), values(2, c * r), values(3, k2 * r));
    let data: Vec<f32> = (0..n * c * k2)
        .map(|idx| {
            let (ni, ci, k) = (idx / (c * k2), (idx / k2) % c, idx % k2);
            (0..r).map(|t| a[ni * r + t] * b[ci * r + t] * d[k * r + t]).sum()
        })
        .collect();
    let w = Kernel::new(n, c, 3, 3, data).unwrap();
    let opts = AlsOptions { max_iter: 2000, tol: 1e-12, ..AlsOptions::default() };
    let mb = CpMobile::best_of(&w, r, &opts, 4, &mut no_progress()).unwrap();
    assert!(mb.rel_weight_error() < 1e-3, "{}", mb.rel_weight_error());
}

#[test]
fn cp_als_reports_degeneracy_on_a_border_rank_tensor() {
    // T = a⊗a⊗b + a⊗b⊗a + b⊗a⊗a has rank 3 but border rank 2: rank-2 ALS drives two
    // components to large, cancelling norms.
    let (a, b) = ([1.0f32, 0.2], [0.3f32, 1.0]);
    let (a4, b4) = ([1.0f32, 0.2, 0.0, 0.1], [0.3f32, 1.0, 0.1, 0.0]);
    let mut data = vec![0f32; 2 * 2 * 4];
    for i in 0..2 {
        for j in 0..2 {
            for k in 0..4 {
                data[(i * 2 + j) * 4 + k] = a[i] * a[j] * b4[k] + a[i] * b[j] * a4[k] + b[i] * a[j] * a4[k];
            }
        }
    }
    let w = Kernel::new(2, 2, 2, 2, data).unwrap();
    let opts = AlsOptions { max_iter: 3000, tol: 0.0, ..AlsOptions::default() };
    let mb = CpMobile::new(&w, 2, &opts, &mut no_progress()).unwrap();
    let deg = mb.report.degeneracy.as_ref().expect("degeneracy should be reported");
    assert!(deg.max_component_ratio > 10.0 || deg.cancellation_ratio > 10.0);
    assert!(!deg.message.is_empty());
}

#[test]
fn progress_callback_can_cancel() {
    let w = kernel(10, 8, 3, 3, 5);
    let mut calls = 0;
    let mut cb = |it: usize, err: f64| {
        calls += 1;
        assert!(err.is_finite());
        it < 3
    };
    let opts = AlsOptions { max_iter: 100, tol: 0.0, ..AlsOptions::default() };
    let cp = Cp4::new(&w, 5, &opts, &mut cb).unwrap();
    assert_eq!(cp.report.stop, StopReason::Cancelled);
    assert_eq!(cp.report.iterations, 3);
    assert_eq!(calls, 3);
    let mut stop_now = |_: usize, _: f64| false;
    let t = Tucker2::new(&w, 4, 4, &TuckerOptions::default(), &mut stop_now).unwrap();
    assert_eq!(t.report.stop, StopReason::Cancelled);
}

/// Independent cost formulas (METHOD.md's table), per output pixel at stride 1.
fn formula(m: Method, n: u64, c: u64, kh: u64, kw: u64, r: u64) -> u64 {
    let k2 = kh * kw;
    match m {
        Method::NdDwPw => c * r * k2 + n * c * r,
        Method::NdPwDw => n * r * c + n * r * k2,
        Method::Channel => r * (c * k2 + n),
        Method::Spatial => r * (kh * c + kw * n),
        Method::Cp => r * (c + kh + kw + n),
        Method::CpMobilenet => r * (c + k2 + n),
        Method::Tucker2 => {
            let (r3, r4) = (r.min(c), r.min(n));
            c * r3 + r3 * r4 * k2 + r4 * n
        }
    }
}

#[test]
fn budget_rank_is_the_largest_that_fits() {
    for &(n, c, kh, kw) in
        &[(256usize, 256usize, 3usize, 3usize), (64, 3, 3, 3), (32, 48, 5, 1), (10, 300, 3, 3)]
    {
        let d = Dims { n, c, kh, kw };
        let regular = (n * c * kh * kw) as u64;
        for x in [1.0, 1.5, 2.9, 4.35, 8.69, 30.0] {
            let budget = (regular as f64 / x) as u64;
            for m in Method::ALL {
                let f = |r: usize| formula(m, n as u64, c as u64, kh as u64, kw as u64, r as u64);
                match largest_rank(d, m, budget) {
                    Some(r) => {
                        assert!(f(r) <= budget, "{m:?} r={r}");
                        assert_eq!(d.macs(m, d.rank_of(m, r)), f(r));
                        assert!(
                            r == d.max_rank(m) || f(r + 1) > budget,
                            "{m:?} at {x}: r+1 = {} fits",
                            r + 1
                        );
                    }
                    None => assert!(f(1) > budget, "{m:?}: rank 1 fits but none chosen"),
                }
            }
        }
    }
}

/// Geometries: stride, padding, dilation in both directions, including asymmetric ones.
fn geometries() -> Vec<ConvGeometry> {
    let mut g = vec![
        ConvGeometry::new(1, 0, 1),
        ConvGeometry::new(1, 1, 1),
        ConvGeometry::new(2, 1, 1),
        ConvGeometry::new(1, 2, 2),
    ];
    g.push(ConvGeometry {
        stride: (2, 1),
        padding: Padding { top: 1, bottom: 0, left: 2, right: 1 },
        dilation: (1, 2),
        groups: 1,
    });
    g
}

#[test]
fn forward_equals_conv_of_the_reconstruction_plus_bias() {
    let opts = AlsOptions { max_iter: 15, ..AlsOptions::default() };
    for (i, &(n, c, kh, kw)) in
        [(6usize, 4usize, 3usize, 3usize), (5, 3, 1, 3), (4, 5, 3, 1), (3, 2, 5, 5), (4, 3, 2, 4)]
            .iter()
            .enumerate()
    {
        let w = kernel(n, c, kh, kw, 60 + i as u64);
        let bias = values(70 + i as u64, n);
        let x = FeatureMap::new(c, 11, 10, values(80 + i as u64, c * 110)).unwrap();
        let methods: Vec<Box<dyn Relative>> = vec![
            Box::new(ChannelDecomposition::new(&w, 2).unwrap()),
            Box::new(SpatialDecomposition::new(&w, 2).unwrap()),
            Box::new(Cp4::new(&w, 3, &opts, &mut no_progress()).unwrap()),
            Box::new(CpMobile::new(&w, 3, &opts, &mut no_progress()).unwrap()),
            Box::new(Tucker2::new(&w, 2, 3.min(n), &TuckerOptions::default(), &mut no_progress()).unwrap()),
        ];
        for g in geometries() {
            for m in &methods {
                let recon = m.reconstruct().unwrap();
                let want = reference_conv2d(&x, &recon, Some(&bias), &g).unwrap();
                let got = m.forward(&x, Some(&bias), &g).unwrap();
                assert_eq!((got.c, got.h, got.w), (want.c, want.h, want.w), "{:?}", m.method());
                let e = got.rel_error(&want).unwrap();
                assert!(e < 1e-4, "{:?} {n}x{c}x{kh}x{kw} {g:?}: {e}", m.method());
                // zero input gives exactly the bias
                let z = m.forward(&FeatureMap::zeros(c, 11, 10), Some(&bias), &g).unwrap();
                for (o, plane) in z.data.chunks(z.h * z.w).enumerate() {
                    assert!(plane.iter().all(|&v| v == bias[o]), "{:?} zero input", m.method());
                }
            }
        }
    }
}

#[test]
fn grouped_geometry_is_refused() {
    let w = kernel(4, 4, 3, 3, 1);
    let x = FeatureMap::zeros(4, 5, 5);
    let mut g = ConvGeometry::new(1, 1, 1);
    g.groups = 2;
    assert!(ChannelDecomposition::new(&w, 2).unwrap().forward(&x, None, &g).is_err());
}

#[test]
fn nd_rows_agree_with_the_decomposition_and_costs_match() {
    let w = real_layer("mtcnn_onet_conv1_32x3x3x3.npy");
    let d = Dims::of(&w);
    let budget = d.regular_macs() / 2;
    let rows = compare(&w, budget, &CompareOptions::default()).unwrap();
    assert_eq!(rows.len(), 7);
    for (row, m) in rows.iter().zip(Method::ALL) {
        assert_eq!(row.method, m.id());
        assert!(row.macs <= budget && row.params == row.macs);
        assert!(row.rel_weight_error >= 0.0 && row.rel_weight_error <= 1.0 + 1e-9);
        if let (Method::NdDwPw | Method::NdPwDw, Rank::One(t)) = (m, row.rank) {
            let order = if m == Method::NdDwPw { Order::DwPw } else { Order::PwDw };
            let dec = Decomposition::new(&w, 1, order).unwrap();
            assert!((dec.rel_weight_error()[t - 1] - row.rel_weight_error).abs() < 1e-12);
            // and the ND error is its reconstruction's
            assert!((rel_diff(&w, &dec.reconstruct(t).unwrap()) - row.rel_weight_error).abs() < 1e-5);
        }
    }
}

mod session {
    use super::*;
    use ndlab_core::layer::ConvLayer;
    use ndlab_core::relatives::session::{run, CompareEvent, CompareInput, CompareRequest};

    fn clock() -> f64 {
        0.0
    }

    /// ‖conv(x, Ŵ) + b − y‖ / ‖y‖ with the scalar reference conv: the oracle for output errors.
    fn output_error_of(recon: &Kernel, x: &FeatureMap, layer: &ConvLayer, y: &FeatureMap) -> f64 {
        let got = reference_conv2d(x, recon, layer.bias.as_deref(), &layer.geometry).unwrap();
        got.rel_error(y).unwrap()
    }

    #[test]
    fn rows_match_compare_and_output_errors_match_the_reference_conv() {
        let w = real_layer("mtcnn_onet_conv1_32x3x3x3.npy");
        let bias = values(5, w.n);
        let layer = ConvLayer::new(w.clone(), Some(bias), ConvGeometry::new(1, 1, 1)).unwrap();
        let x = FeatureMap::new(3, 12, 13, values(6, 3 * 12 * 13)).unwrap();
        let y = reference_conv2d(&x, &w, layer.bias.as_deref(), &layer.geometry).unwrap();
        let input = CompareInput { layer: &layer, nd: &[], activations: Some((&x, &y)), clock };
        let req =
            CompareRequest { speedup: 2.0, sweep_speedups: vec![8.0, 4.0], ..CompareRequest::default() };
        let mut streamed = Vec::new();
        let report = run(&input, &req, &mut |ev| {
            if let CompareEvent::Row(r) = ev {
                streamed.push(r);
            }
            true
        })
        .unwrap();
        assert_eq!(streamed, report.rows, "rows are streamed as they are ready");
        let d = Dims::of(&w);
        assert_eq!(report.budget, d.regular_macs() / 2);
        let core = compare(&w, report.budget, &CompareOptions::default()).unwrap();
        for (row, c) in report.rows.iter().zip(&core) {
            assert_eq!(row.method, c.method);
            assert_eq!(row.rank, Some(c.rank));
            assert_eq!((row.macs, row.params), (c.macs, c.params));
            assert!((row.weight_error - c.rel_weight_error).abs() < 1e-9, "{}", row.method);
        }
        // Output errors against the reference conv of each method's reconstruction.
        let opts = CompareOptions::default();
        for row in &report.rows {
            let m = Method::from_id(&row.method).unwrap();
            let Some(Rank::One(r)) = row.rank.map(|k| match k {
                Rank::Two(a, _) => Rank::One(a),
                k => k,
            }) else {
                unreachable!()
            };
            let recon = match m {
                Method::NdDwPw => Decomposition::new(&w, 1, Order::DwPw).unwrap().reconstruct(r).unwrap(),
                Method::NdPwDw => Decomposition::new(&w, 1, Order::PwDw).unwrap().reconstruct(r).unwrap(),
                Method::Channel => ChannelDecomposition::new(&w, r).unwrap().reconstruct().unwrap(),
                Method::Spatial => SpatialDecomposition::new(&w, r).unwrap().reconstruct().unwrap(),
                Method::Cp => {
                    Cp4::best_of(&w, r, &opts.als, 1, &mut no_progress()).unwrap().reconstruct().unwrap()
                }
                Method::CpMobilenet => {
                    CpMobile::best_of(&w, r, &opts.als, 1, &mut no_progress()).unwrap().reconstruct().unwrap()
                }
                Method::Tucker2 => {
                    let (a, b) = match row.rank {
                        Some(Rank::Two(a, b)) => (a, b),
                        _ => unreachable!(),
                    };
                    Tucker2::new(&w, a, b, &opts.tucker, &mut no_progress()).unwrap().reconstruct().unwrap()
                }
            };
            let want = output_error_of(&recon, &x, &layer, &y);
            let got = row.output_error.unwrap();
            assert!((got - want).abs() <= 1e-4 * want.max(1e-3), "{}: {got} vs {want}", row.method);
        }
        // Pareto: every rank of the closed forms; the iterative ones include the budget's row.
        assert_eq!(report.pareto.len(), 7);
        let ch = &report.pareto[2];
        assert_eq!(ch.points.len(), d.max_rank(Method::Channel));
        for (s, row) in report.pareto.iter().zip(&report.rows) {
            assert!(s.points.windows(2).all(|p| p[0].macs <= p[1].macs), "{}", s.method);
            assert!(s
                .points
                .iter()
                .any(|p| Some(p.rank) == row.rank && (p.error - row.weight_error).abs() < 1e-12));
        }
        assert!(report.pareto[4].points.len() >= 2, "CP swept over more than one rank");
    }

    #[test]
    fn a_refusing_callback_cancels_and_a_bad_speedup_is_an_error() {
        let w = real_layer("mtcnn_onet_conv1_32x3x3x3.npy");
        let layer = ConvLayer::new(w, None, ConvGeometry::new(1, 1, 1)).unwrap();
        let input = CompareInput { layer: &layer, nd: &[], activations: None, clock };
        let mut seen = 0;
        let err = run(&input, &CompareRequest::default(), &mut |_| {
            seen += 1;
            seen < 3
        })
        .unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
        assert_eq!(seen, 3, "nothing is emitted after the refusal");
        for x in [0.5, f64::NAN, 1e9] {
            let req = CompareRequest { speedup: x, ..CompareRequest::default() };
            assert!(run(&input, &req, &mut |_| true).is_err(), "{x}");
        }
    }
}

mod speed {
    //! The speed work's guarantees: the stopping rule, warm starts, the f32 contractions, the
    //! units API (same rows and series on one worker or several), cancellation granularity.
    use super::*;
    use ndlab_core::layer::ConvLayer;
    use ndlab_core::relatives::session::{
        assemble, merge, run, run_unit, series_with_warm_starts, units, CompareEvent, CompareInput,
        CompareReport, CompareRequest, Unit, UnitKind, UnitOutput,
    };
    use ndlab_core::relatives::{AlsReport, TuckerBasis, HOOI_WINDOW, STALL_WINDOW};

    fn clock() -> f64 {
        0.0
    }

    #[test]
    fn the_stopping_rule_on_curves() {
        // A plateau shorter than the window does not stop; one as long does.
        let tol = 1e-3;
        let plateau = [1.0, 0.9, 0.9, 0.9];
        assert!(!AlsReport::stalled(&plateau, tol, 3));
        assert!(AlsReport::stalled(&[1.0, 0.9, 0.9, 0.9, 0.9], tol, 3));
        // Falling 0.2 % per sweep does not stop at tol 0.1 %; 0.05 % per sweep does.
        let fall = |rate: f64| (0..10).map(|k| (1.0 - rate).powi(k)).collect::<Vec<f64>>();
        assert!(!AlsReport::stalled(&fall(2e-3), tol, 3));
        assert!(AlsReport::stalled(&fall(5e-4), tol, 3));
        // Too few sweeps to judge, and an exact fit.
        assert!(!AlsReport::stalled(&[0.5, 0.5, 0.5], tol, 3));
        assert!(AlsReport::stalled(&[0.5, 0.0], tol, 3));
        assert!(!AlsReport::stalled(&[], tol, 1));
    }

    /// The first sweep at which the rule holds on `curve` (1-based), if any.
    fn first_stall(curve: &[f64], tol: f64, window: usize) -> Option<usize> {
        (1..=curve.len()).find(|&k| AlsReport::stalled(&curve[..k], tol, window))
    }

    #[test]
    fn cp_stops_when_the_fit_stalls_and_not_before() {
        // A kernel big enough for the default tolerance (tensor × rank ≥ 2^20).
        let w = kernel(48, 40, 3, 3, 11);
        for (tol, extrapolate) in [(2e-4, true), (1e-3, true), (2e-4, false)] {
            let opts = AlsOptions { max_iter: 400, tol, extrapolate, ..AlsOptions::default() };
            let cp = Cp4::new(&w, 80, &opts, &mut no_progress()).unwrap();
            let rep = &cp.report;
            assert_eq!(rep.tol, tol);
            assert_eq!(rep.window, STALL_WINDOW);
            assert_eq!(rep.stop, StopReason::Converged, "tol {tol}: {} sweeps", rep.iterations);
            assert_eq!(rep.iterations, rep.curve.len());
            assert_eq!(first_stall(&rep.curve, tol, STALL_WINDOW), Some(rep.iterations), "tol {tol}");
            // Rerun with a cap and no tolerance: the same curve up to the stop, then further.
            let longer = AlsOptions { max_iter: rep.iterations + 5, tol: 0.0, ..opts };
            let more = Cp4::new(&w, 80, &longer, &mut no_progress()).unwrap();
            assert_eq!(more.report.stop, StopReason::MaxIter);
            assert_eq!(more.report.iterations, rep.iterations + 5);
            assert_eq!(&more.report.curve[..rep.iterations], &rep.curve[..]);
        }
        // Small problems stop at 1e-6 at most.
        let small = Cp4::new(&kernel(6, 5, 3, 3, 2), 4, &AlsOptions::default(), &mut no_progress()).unwrap();
        assert_eq!(small.report.tol, 1e-6);
    }

    #[test]
    fn hooi_stops_after_the_first_sweep_that_gains_less_than_tol() {
        let w = kernel(40, 36, 3, 3, 4);
        let t = Tucker2::new(&w, 12, 14, &TuckerOptions::default(), &mut no_progress()).unwrap();
        let rep = &t.report;
        assert_eq!(rep.window, HOOI_WINDOW);
        if rep.stop == StopReason::Converged {
            assert_eq!(first_stall(&rep.curve, rep.tol, HOOI_WINDOW), Some(rep.curve.len()));
        }
        // Shared bases give the same decomposition.
        let basis = TuckerBasis::new(&w).unwrap();
        let u =
            Tucker2::with_basis(&w, 12, 14, &basis, &TuckerOptions::default(), &mut no_progress()).unwrap();
        assert_eq!(u.report.curve, t.report.curve);
        assert_eq!(u.rel_weight_error(), t.rel_weight_error());
    }

    #[test]
    fn a_warm_start_is_never_worse_than_its_starting_point() {
        let w = real_layer("craft_vgg16bn_conv1_2_64x64x3x3.npy");
        let opts = AlsOptions { max_iter: 15, ..AlsOptions::default() };
        let few = AlsOptions { max_iter: 2, ..opts };
        for (r0, r) in [(20, 20), (20, 35), (35, 60)] {
            let s = Cp4::new(&w, r0, &opts, &mut no_progress()).unwrap();
            for o in [&opts, &few] {
                let x = Cp4::warm(&w, r, &s, o, &mut no_progress()).unwrap();
                assert!(x.rel_weight_error() <= s.rel_weight_error() + 1e-9, "CP {r0} → {r}");
                assert!((rel_diff(&w, &x.reconstruct().unwrap()) - x.rel_weight_error()).abs() < 1e-5);
            }
            let s = CpMobile::new(&w, r0, &opts, &mut no_progress()).unwrap();
            for o in [&opts, &few] {
                let x = CpMobile::warm(&w, r, &s, o, &mut no_progress()).unwrap();
                assert!(x.rel_weight_error() <= s.rel_weight_error() + 1e-9, "MobileNet CP {r0} → {r}");
            }
        }
        // Going down keeps the strongest components and never ends above the truncated start's
        // first sweep; and a warm start from another shape is refused.
        let s = Cp4::new(&w, 40, &opts, &mut no_progress()).unwrap();
        let down = Cp4::warm(&w, 25, &s, &opts, &mut no_progress()).unwrap();
        let curve = &down.report.curve;
        assert!(curve.windows(2).all(|p| p[1] <= p[0] * (1.0 + 1e-9)));
        assert!(Cp4::warm(&kernel(8, 8, 3, 3, 1), 4, &s, &opts, &mut no_progress()).is_err());
    }

    #[test]
    fn f32_contractions_keep_the_error_estimate_exact_to_1e_5() {
        // 64·64·9 entries × rank 120 ≥ 2^22: the big contractions run in f32.
        let w = real_layer("craft_vgg16bn_conv1_2_64x64x3x3.npy");
        const { assert!(64 * 64 * 9 * 120 >= ndlab_core::relatives::F32_MIN_WORK) };
        let opts = AlsOptions { max_iter: 30, tol: 0.0, ..AlsOptions::default() };
        for m in [Method::Cp, Method::CpMobilenet] {
            let (err, curve) = match m {
                Method::Cp => {
                    let c = Cp4::new(&w, 120, &opts, &mut no_progress()).unwrap();
                    (rel_diff(&w, &c.reconstruct().unwrap()), c.report.curve)
                }
                _ => {
                    let c = CpMobile::new(&w, 120, &opts, &mut no_progress()).unwrap();
                    (rel_diff(&w, &c.reconstruct().unwrap()), c.report.curve)
                }
            };
            let last = curve[curve.len() - 1];
            assert!((last - err).abs() <= 1e-5 * err, "{m:?}: estimate {last} vs reconstruction {err}");
            assert!(curve.windows(2).all(|p| p[1] <= p[0] * (1.0 + 1e-6)), "{m:?}");
        }
    }

    fn layer_and_input() -> (ConvLayer, FeatureMap, FeatureMap) {
        let w = real_layer("craft_vgg16bn_conv1_2_64x64x3x3.npy");
        let bias = values(9, w.n);
        let layer = ConvLayer::new(w.clone(), Some(bias), ConvGeometry::new(1, 1, 1)).unwrap();
        let x = FeatureMap::new(64, 9, 10, values(10, 64 * 90)).unwrap();
        let y = reference_conv2d(&x, &w, layer.bias.as_deref(), &layer.geometry).unwrap();
        (layer, x, y)
    }

    fn small_request() -> CompareRequest {
        CompareRequest { max_sweeps: 40, sweep_max_sweeps: 8, ..CompareRequest::default() }
    }

    #[test]
    fn warm_started_pareto_series_match_cold_ones_within_1_percent() {
        let (layer, _, _) = layer_and_input();
        let input = CompareInput { layer: &layer, nd: &[], activations: None, clock };
        let req = small_request();
        for m in [Method::Cp, Method::CpMobilenet] {
            let warm = series_with_warm_starts(&input, &req, m, true).unwrap();
            let cold = series_with_warm_starts(&input, &req, m, false).unwrap();
            assert_eq!(warm.points.len(), cold.points.len());
            assert!(warm.points.len() >= 3, "{m:?}");
            for (a, b) in warm.points.iter().zip(&cold.points) {
                assert_eq!((a.rank, a.macs), (b.rank, b.macs));
                assert!(
                    a.error <= b.error * 1.01,
                    "{m:?} at {}: warm {} vs cold {}",
                    a.rank,
                    a.error,
                    b.error
                );
            }
        }
    }

    /// Rows and series of a report, with the timing fields (clock-dependent) left out.
    fn results(r: &CompareReport) -> serde_json::Value {
        let mut v = serde_json::to_value(r).unwrap();
        v.as_object_mut().unwrap().remove("regular_forward_ms");
        v
    }

    /// Equal JSON values, numbers within 1e-15 relative (serde_json's float parsing may land one
    /// ulp off the printed value: what crossed JSON between a worker and the host can differ there).
    fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        use serde_json::Value::*;
        match (a, b) {
            (Number(x), Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                (x - y).abs() <= 1e-15 * x.abs().max(y.abs())
            }
            (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q)),
            (Object(x), Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }

    #[test]
    fn units_on_one_worker_or_two_give_the_same_report() {
        let (layer, x, y) = layer_and_input();
        let input = CompareInput { layer: &layer, nd: &[], activations: Some((&x, &y)), clock };
        let req = small_request();
        let d = Dims::of(&layer.kernel);
        let whole = run(&input, &req, &mut |_| true).unwrap();
        let plan = units(&req, d).unwrap();
        assert_eq!(plan.len(), 14);
        assert!(plan.iter().all(|p| p.cost_ms > 0.0 && p.cost_ms.is_finite()));
        // On the page's 256-channel layer the CP rows and series are the biggest units.
        let d256 = Dims { n: 256, c: 256, kh: 3, kw: 3 };
        let mut big = units(&CompareRequest::default(), d256).unwrap();
        big.sort_by(|a, b| b.cost_ms.total_cmp(&a.cost_ms));
        assert!(big[..4].iter().all(|p| p.unit.method.starts_with("cp")), "{big:?}");
        let mut by_cost = plan.clone();
        by_cost.sort_by(|a, b| b.cost_ms.total_cmp(&a.cost_ms));
        // Two "workers", biggest first, alternating; each has its own copy of everything.
        let mut outputs: Vec<UnitOutput> = Vec::new();
        let mut rows_seen = Vec::new();
        for (i, p) in by_cost.iter().enumerate() {
            let (lw, xw, yw) = (layer.clone(), x.clone(), y.clone());
            let inp = CompareInput { layer: &lw, nd: &[], activations: Some((&xw, &yw)), clock };
            let out = run_unit(&inp, &req, &p.unit, &mut |ev| {
                if let CompareEvent::Row(r) = ev {
                    rows_seen.push((i % 2, r));
                }
                true
            })
            .unwrap();
            // JSON between the workers and the host.
            let json = serde_json::to_string(&out).unwrap();
            outputs.push(serde_json::from_str(&json).unwrap());
        }
        let split = assemble(d, &req, Some((y.h, y.w)), whole.regular_forward_ms, outputs).unwrap();
        assert!(same(&results(&split), &results(&whole)), "split over two workers differs from one");
        assert_eq!(rows_seen.len(), 7, "every row unit emits its row");
        // The same through the request's `units` filter and `merge` (what a host does through the
        // engine's Compare message): two partial reports.
        let mut parts = Vec::new();
        for half in [0, 1] {
            let mine: Vec<Unit> = by_cost
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == half)
                .map(|(_, p)| p.unit.clone())
                .collect();
            let r = CompareRequest { units: Some(mine), ..req.clone() };
            let json = serde_json::to_string(&r).unwrap();
            let r: CompareRequest = serde_json::from_str(&json).unwrap();
            parts.push(run(&input, &r, &mut |_| true).unwrap());
        }
        assert!(parts.iter().all(|p| p.rows.len() + p.pareto.len() == 7));
        let merged = merge(parts).unwrap();
        assert_eq!(results(&merged), results(&whole), "merged partial reports differ from one run");
        // Each iterative series holds its row's point.
        for (s, row) in whole.pareto.iter().zip(&whole.rows) {
            assert!(
                s.points.iter().any(|p| Some(p.rank) == row.rank && p.error == row.weight_error),
                "{}",
                s.method
            );
        }
        // A unit twice, or an unknown method, is an error.
        let row = run_unit(&input, &req, &Unit::row(Method::Channel), &mut |_| true).unwrap();
        assert!(assemble(d, &req, None, None, vec![row.clone(), row]).is_err());
        let bad = Unit { kind: UnitKind::Row, method: "svd".into() };
        assert!(run_unit(&input, &req, &bad, &mut |_| true).is_err());
        assert!(units(&CompareRequest { units: Some(vec![bad]), ..req.clone() }, d).is_err());
    }

    #[test]
    fn the_page_json_still_parses_and_default_is_unchanged() {
        let old =
            r#"{"speedup":4.0,"max_sweeps":200,"sweep_max_sweeps":25,"sweep_speedups":[32.0,16.0,8.0,2.0]}"#;
        let r: CompareRequest = serde_json::from_str(old).unwrap();
        assert_eq!(r, CompareRequest::default());
        assert_eq!(serde_json::to_string(&CompareRequest::default()).unwrap(), old);
        let u: Unit = serde_json::from_str(r#"{"kind":"series","method":"cp"}"#).unwrap();
        assert_eq!(u, Unit::series(Method::Cp));
    }

    #[test]
    fn progress_comes_every_sweep_and_a_refusal_stops_within_the_sweep() {
        let (layer, _, _) = layer_and_input();
        let input = CompareInput { layer: &layer, nd: &[], activations: None, clock };
        let req = small_request();
        for m in [Method::Cp, Method::CpMobilenet, Method::Tucker2] {
            let mut events = 0;
            let out = run_unit(&input, &req, &Unit::row(m), &mut |ev| {
                events += matches!(ev, CompareEvent::Progress(..)) as usize;
                true
            })
            .unwrap();
            let UnitOutput::Row(row) = out else { panic!() };
            assert!(events > row.sweeps, "{m:?}: {events} progress events for {} sweeps", row.sweeps);
            // Refusing at the 5th event: nothing after, an error, promptly.
            let mut seen = 0;
            let err = run_unit(&input, &req, &Unit::series(m), &mut |_| {
                seen += 1;
                seen < 5
            })
            .unwrap_err();
            assert!(err.to_string().contains("cancelled"), "{err}");
            assert_eq!(seen, 5, "{m:?}");
        }
    }
}
