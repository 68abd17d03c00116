//! METHOD.md's checks: the weight side (3, 4, 5, 9 and the weight parts of 1, 2, 8) and the output
//! side (1, 2, 6, 7, 8 on outputs). Every assertion compares against an independent oracle: the
//! kernel itself, the error computed directly from a rebuilt kernel, a kernel rebuilt here from
//! the merged and branch layouts by their documented formulas, hand-computed threshold cases,
//! the scalar reference conv (`reference_conv2d`), and real trained layers.

use ndlab_core::conv::{branch_forward, decoupled_forward, reference_conv2d};
use ndlab_core::decouple::{slice_matrix, slice_shape, Decomposition, Merged, ThresholdRule};
use ndlab_core::{ConvGeometry, Error, FeatureMap, Kernel, Order};

mod common;
use common::{rand_vec, LAYERS, ORDERS};

// ---------------------------------------------------------------- helpers

fn rand_kernel(n: usize, c: usize, kh: usize, kw: usize, seed: u64) -> Kernel {
    Kernel::new(n, c, kh, kw, rand_vec(n * c * kh * kw, seed)).unwrap()
}

/// ‖a − b‖ / ‖b‖ in f64 (0 when both are zero).
fn rel_err<A: Into<f64> + Copy, B: Into<f64> + Copy>(a: &[A], b: &[B]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x.into(), y.into());
        num += (x - y) * (x - y);
        den += y * y;
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// W_T rebuilt in f64 straight from the slices' f64 factors (Σ_k pw[k][row] · dw[k]), placed in
/// OIHW by the slice definitions of METHOD.md (independently of `reconstruct`).
fn rebuild_f64(d: &Decomposition, t: usize) -> Vec<f64> {
    let k2 = d.kh * d.kw;
    let nper = d.n / d.groups;
    let mut w = vec![0.0f64; d.n * d.c * k2];
    for n in 0..d.n {
        for cl in 0..d.c {
            let (slice, row, rows) = match d.order {
                Order::DwPw => (&d.slices[(n / nper) * d.c + cl], n % nper, nper),
                Order::PwDw => (&d.slices[n], cl, d.c),
            };
            for k in 0..t {
                for j in 0..k2 {
                    w[(n * d.c + cl) * k2 + j] += slice.pw[k * rows + row] * slice.dw[k * k2 + j];
                }
            }
        }
    }
    w
}

/// W_T rebuilt from the merged layout by its formula (DW→PW: output n of group g sums, over the
/// inputs c of g and t < T, pw[n][c_local·T + t] · dw[c·T + t]; PW→DW: Σ_t pw[n·T + t][c] · dw[n·T + t]).
fn rebuild_from_merged(m: &Merged) -> Vec<f64> {
    let (k2, t, c) = (m.kh * m.kw, m.t, m.c_total / m.groups);
    let nper = m.n / m.groups;
    assert_eq!(m.pw.len(), m.n * m.pw_cols() * if m.order == Order::PwDw { t } else { 1 });
    let mut w = vec![0.0f64; m.n * c * k2];
    for n in 0..m.n {
        for cl in 0..c {
            for tt in 0..t {
                let (p, drow) = match m.order {
                    Order::DwPw => (m.pw[n * c * t + cl * t + tt], ((n / nper) * c + cl) * t + tt),
                    Order::PwDw => (m.pw[(n * t + tt) * c + cl], n * t + tt),
                };
                for j in 0..k2 {
                    w[(n * c + cl) * k2 + j] += p as f64 * m.dw[drow * k2 + j] as f64;
                }
            }
        }
    }
    w
}

/// W_T rebuilt from the branch form: Σ over branches of pw[n][c_local] · dw[filter], where the
/// filter is the input channel's (DW→PW) or the output channel's (PW→DW).
fn rebuild_from_branches(d: &Decomposition, t: usize) -> Vec<f64> {
    let k2 = d.kh * d.kw;
    let nper = d.n / d.groups;
    let branches = d.branches(t).unwrap();
    assert_eq!(branches.len(), t);
    let mut w = vec![0.0f64; d.n * d.c * k2];
    for b in &branches {
        assert_eq!(b.pw.len(), d.n * d.c);
        for n in 0..d.n {
            for cl in 0..d.c {
                let f = match d.order {
                    Order::DwPw => (n / nper) * d.c + cl,
                    Order::PwDw => n,
                };
                for j in 0..k2 {
                    w[(n * d.c + cl) * k2 + j] += b.pw[n * d.c + cl] as f64 * b.dw[f * k2 + j] as f64;
                }
            }
        }
    }
    w
}

/// Every weight-side check on one kernel and ordering. Returns (max Σσ² mismatch, full-rank
/// f64 reconstruction error, max |formula − direct| over T).
fn check_weight_side(kernel: &Kernel, groups: usize, order: Order) -> (f64, f64, f64) {
    let d = Decomposition::new(kernel, groups, order).unwrap();
    let (count, rows, cols) = slice_shape(kernel, groups, order).unwrap();
    assert_eq!(d.slices.len(), count);
    assert_eq!(d.full_rank, rows.min(cols));
    let r = d.full_rank;
    // Check 3/4 per slice: σ ≥ 0, sorted, Σσ² = ‖M‖²_F (computed here from the slice matrix).
    let mut max_mismatch: f64 = 0.0;
    for (s, slice) in d.slices.iter().enumerate() {
        let m = slice_matrix(kernel, groups, order, s).unwrap();
        let norm_sq: f64 = m.iter().map(|x| x * x).sum();
        let ssq: f64 = slice.sigma.iter().map(|x| x * x).sum();
        assert!(slice.sigma.iter().all(|&x| x >= 0.0) && slice.sigma.windows(2).all(|w| w[0] >= w[1]));
        assert!((ssq - norm_sq).abs() <= 1e-12 * norm_sq.max(f64::MIN_POSITIVE));
        assert!(slice.pw.iter().chain(&slice.dw).all(|x| x.is_finite()));
        max_mismatch = max_mismatch.max((ssq - norm_sq).abs() / norm_sq.max(f64::MIN_POSITIVE));
    }
    let w64: Vec<f64> = kernel.data.iter().map(|&x| x as f64).collect();
    let errs = d.rel_weight_error();
    let energy = d.energy_kept();
    assert_eq!((errs.len(), energy.len()), (r, r));
    let mut max_formula_gap: f64 = 0.0;
    for t in 1..=r {
        // Check 3: the tail formula equals the directly measured error, in f64 and through
        // the f32 `reconstruct`.
        let direct64 = rel_err(&rebuild_f64(&d, t), &w64);
        let wt = d.reconstruct(t).unwrap();
        assert_eq!((wt.n, wt.c, wt.kh, wt.kw), (kernel.n, kernel.c, kernel.kh, kernel.kw));
        let direct32 = rel_err(&wt.data, &kernel.data);
        assert!((errs[t - 1] - direct64).abs() <= 1e-10, "T={t}: formula {} vs {direct64}", errs[t - 1]);
        assert!((errs[t - 1] - direct32).abs() <= 1e-5, "T={t}: formula {} vs f32 {direct32}", errs[t - 1]);
        assert!((energy[t - 1] - (1.0 - errs[t - 1].powi(2))).abs() <= 1e-12);
        max_formula_gap = max_formula_gap.max((errs[t - 1] - direct64).abs());
        // Check 8 (weights): merged and branch forms rebuild the same W_T as `reconstruct`.
        let merged = d.merged(t).unwrap();
        check_merged_shape(&merged, kernel, groups, order, t);
        let wt64: Vec<f64> = wt.data.iter().map(|&x| x as f64).collect();
        assert!(rel_err(&rebuild_from_merged(&merged), &wt64) <= 1e-5, "merged T={t}");
        assert!(rel_err(&rebuild_from_branches(&d, t), &wt64) <= 1e-5, "branches T={t}");
    }
    // Check 4: non-increasing error, energy 1 and error 0 at full rank.
    assert!(errs.windows(2).all(|w| w[1] <= w[0]), "{errs:?}");
    assert_eq!((energy[r - 1], errs[r - 1]), (1.0, 0.0));
    // Check 2 (weights): full rank rebuilds W (f64 factors to 1e-10, f32 kernel to 1e-5).
    let full64 = rel_err(&rebuild_f64(&d, r), &w64);
    assert!(full64 <= 1e-10, "full-rank f64 error {full64:e}");
    assert!(rel_err(&d.reconstruct(r).unwrap().data, &kernel.data) <= 1e-5);
    // T outside 1..=full_rank is a parameter error.
    for bad in [0, r + 1] {
        assert!(matches!(d.reconstruct(bad), Err(Error::Param(_))));
        assert!(matches!(d.merged(bad), Err(Error::Param(_))));
        assert!(matches!(d.branches(bad), Err(Error::Param(_))));
    }
    (max_mismatch, full64, max_formula_gap)
}

fn check_merged_shape(m: &Merged, k: &Kernel, groups: usize, order: Order, t: usize) {
    let (k2, c_total) = (k.kh * k.kw, k.c * groups);
    assert_eq!((m.order, m.t, m.n, m.c_total, m.groups), (order, t, k.n, c_total, groups));
    match order {
        Order::DwPw => {
            assert_eq!(m.dw.len(), c_total * t * k2);
            assert_eq!((m.pw_cols(), m.pw.len()), (k.c * t, k.n * k.c * t));
        }
        Order::PwDw => {
            assert_eq!(m.dw.len(), k.n * t * k2);
            assert_eq!((m.pw_cols(), m.pw.len()), (k.c, k.n * t * k.c));
        }
    }
}

/// Minimal reader for float32 little-endian C-order `.npy` files (v1–v3 headers).
fn read_npy(path: &std::path::Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let sh = &header[header.find("'shape': (").unwrap() + 10..];
    let shape: Vec<usize> =
        sh[..sh.find(')').unwrap()].split(',').filter_map(|x| x.trim().parse().ok()).collect();
    let data: Vec<f32> =
        bytes[start + hlen..].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    assert_eq!(data.len(), shape.iter().product::<usize>());
    (shape, data)
}

fn load_layer(name: &str) -> Kernel {
    let (s, data) = read_npy(&std::path::Path::new(LAYERS).join(name));
    Kernel::new(s[0], s[1], s[2], s[3], data).unwrap()
}

// ---------------------------------------------------------------- synthetic kernels

#[test]
fn shapes_orders_and_groups() {
    // N < K² and C < K², square, tall, grouped, 1×3, 3×1, 5×5, 1×1 (already separable).
    let cases: [(usize, usize, usize, usize, usize); 12] = [
        (4, 3, 3, 3, 1),
        (2, 5, 3, 3, 1),
        (16, 16, 3, 3, 1),
        (40, 12, 3, 3, 1),
        (8, 4, 3, 3, 2),
        (12, 2, 3, 3, 6),
        (6, 1, 3, 3, 6),
        (8, 5, 1, 3, 1),
        (8, 5, 3, 1, 1),
        (30, 20, 5, 5, 1),
        (6, 30, 5, 5, 2),
        (7, 5, 1, 1, 1),
    ];
    for (i, &(n, c, kh, kw, g)) in cases.iter().enumerate() {
        let k = rand_kernel(n, c, kh, kw, 100 + i as u64);
        for order in ORDERS {
            check_weight_side(&k, g, order);
        }
    }
    // 1×1: full rank 1 in both orders, exact.
    let d = Decomposition::new(&rand_kernel(7, 5, 1, 1, 7), 1, Order::DwPw).unwrap();
    assert_eq!((d.full_rank, d.rel_weight_error()), (1, vec![0.0]));
}

/// Kernel whose every slice has rank exactly r (integer factors: the f32 kernel is exact).
fn exact_rank_kernel(n: usize, c: usize, kh: usize, kw: usize, r: usize, order: Order) -> Kernel {
    let k2 = kh * kw;
    let int = |v: f32| (v * 3.0).round();
    let (count, rows) = match order {
        Order::DwPw => (c, n),
        Order::PwDw => (n, c),
    };
    let mut data = vec![0.0f32; n * c * k2];
    for s in 0..count {
        let a: Vec<f32> = rand_vec(rows * r, 1000 + s as u64).into_iter().map(int).collect();
        let b: Vec<f32> = rand_vec(r * k2, 2000 + s as u64).into_iter().map(int).collect();
        for row in 0..rows {
            let (nn, cc) = if order == Order::DwPw { (row, s) } else { (s, row) };
            for j in 0..k2 {
                data[(nn * c + cc) * k2 + j] = (0..r).map(|q| a[row * r + q] * b[q * k2 + j]).sum();
            }
        }
    }
    Kernel::new(n, c, kh, kw, data).unwrap()
}

#[test]
fn exact_rank_kernels_are_exact_at_t_equals_r() {
    for order in ORDERS {
        for (n, c, kh, kw, r) in [(12, 10, 3, 3, 2), (20, 16, 3, 3, 4), (9, 7, 5, 5, 3), (6, 6, 1, 3, 1)] {
            let k = exact_rank_kernel(n, c, kh, kw, r, order);
            check_weight_side(&k, 1, order);
            let d = Decomposition::new(&k, 1, order).unwrap();
            let e = d.rel_weight_error();
            assert!(e[r - 1] <= 1e-12, "{order:?} rank {r}: error at T=r is {}", e[r - 1]);
            if r > 1 {
                assert!(e[r - 2] > 1e-3, "{order:?}: error at T=r−1 should not vanish: {e:?}");
            }
            assert!(rel_err(&d.reconstruct(r).unwrap().data, &k.data) <= 1e-6);
            // Both threshold rules reach full energy at T = r.
            assert_eq!(d.threshold_t(1.0, ThresholdRule::Max).unwrap(), r.min(d.full_rank));
        }
    }
}

/// DW→PW, N = 2, C = 3, 1×2 kernels: M_0 = [[3,0],[0,4]] (σ = 4, 3), M_1 = [[1,0],[0,0]] (σ = 1, 0),
/// M_2 = 0. By hand: e_0 = (16/25, 1), e_1 = (1, 1), slice 2 excluded.
fn hand_kernel() -> Kernel {
    // W[n, c, 0, j] = M_c[n][j].
    let data = vec![
        3.0, 0.0, /* n0 c1 */ 1.0, 0.0, /* n0 c2 */ 0.0, 0.0, //
        0.0, 4.0, /* n1 c1 */ 0.0, 0.0, /* n1 c2 */ 0.0, 0.0,
    ];
    Kernel::new(2, 3, 1, 2, data).unwrap()
}

#[test]
fn threshold_rules_hand_computed() {
    let d = Decomposition::new(&hand_kernel(), 1, Order::DwPw).unwrap();
    assert_eq!(d.full_rank, 2);
    // σ and energies by hand.
    assert!((d.slices[0].sigma[0] - 4.0).abs() < 1e-14 && (d.slices[0].sigma[1] - 3.0).abs() < 1e-14);
    assert_eq!(d.slice_energy(0).len(), 2);
    assert!((d.slice_energy(0)[0] - 0.64).abs() < 1e-14);
    assert_eq!(d.slice_energy(1), vec![1.0, 1.0]);
    assert!(d.slice_energy(3).is_empty());
    // Global: tail at T=1 is 9 of 26.
    assert!((d.rel_weight_error()[0] - (9.0f64 / 26.0).sqrt()).abs() < 1e-14);
    // Mean over the two non-zero slices at t=1 is (0.64 + 1)/2 = 0.82 (0.88 if the zero slice
    // counted as 1, 0.5467 if it counted as 0).
    let mean = |tau| d.threshold_t(tau, ThresholdRule::Mean).unwrap();
    let max = |tau| d.threshold_t(tau, ThresholdRule::Max).unwrap();
    assert_eq!((mean(0.5), mean(0.82), mean(0.83), mean(0.85), mean(1.0)), (1, 1, 2, 2, 2));
    assert_eq!((max(0.5), max(0.64), max(0.65), max(0.8), max(1.0)), (1, 1, 2, 2, 2));
    for bad in [0.0, -0.1, 1.1, f64::NAN, f64::INFINITY] {
        assert!(matches!(d.threshold_t(bad, ThresholdRule::Mean), Err(Error::Param(_))));
        assert!(matches!(d.threshold_t(bad, ThresholdRule::Max), Err(Error::Param(_))));
    }
}

#[test]
fn threshold_rules_against_scalar_reference() {
    // On a random kernel, recompute both rules from the σ with a plain loop.
    let k = rand_kernel(24, 10, 3, 3, 55);
    for order in ORDERS {
        let d = Decomposition::new(&k, 1, order).unwrap();
        let r = d.full_rank;
        let e = |s: usize, t: usize| {
            let sig = &d.slices[s].sigma;
            let tot: f64 = sig.iter().map(|x| x * x).sum();
            sig[..t].iter().map(|x| x * x).sum::<f64>() / tot
        };
        for tau in [0.3, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999] {
            let ns = d.slices.len();
            let mean_t =
                (1..=r).find(|&t| (0..ns).map(|s| e(s, t)).sum::<f64>() / ns as f64 >= tau - 1e-12).unwrap();
            let max_t = (0..ns).map(|s| (1..=r).find(|&t| e(s, t) >= tau - 1e-12).unwrap()).max().unwrap();
            assert_eq!(d.threshold_t(tau, ThresholdRule::Mean).unwrap(), mean_t, "{order:?} τ={tau}");
            assert_eq!(d.threshold_t(tau, ThresholdRule::Max).unwrap(), max_t, "{order:?} τ={tau}");
            assert!(max_t >= mean_t);
        }
    }
}

#[test]
fn zero_slices_and_zero_kernels() {
    // Check 9: a zero input channel (DW→PW slice) and a zero output channel (PW→DW slice).
    let mut data = rand_vec(6 * 4 * 9, 9);
    for n in 0..6 {
        data[(n * 4 + 2) * 9..(n * 4 + 3) * 9].fill(0.0);
    }
    data[4 * 4 * 9..5 * 4 * 9].fill(0.0);
    let k = Kernel::new(6, 4, 3, 3, data).unwrap();
    for (order, zero) in [(Order::DwPw, 2), (Order::PwDw, 4)] {
        check_weight_side(&k, 1, order);
        let d = Decomposition::new(&k, 1, order).unwrap();
        let z = &d.slices[zero];
        assert!(z.sigma.iter().chain(&z.pw).chain(&z.dw).all(|&x| x == 0.0) && z.energy == 0.0);
        // Left out of the mean: the rule equals the mean over the other slices.
        let others: Vec<usize> = (0..d.slices.len()).filter(|&s| s != zero).collect();
        for tau in [0.5, 0.8, 0.95] {
            let t = (1..=d.full_rank)
                .find(|&t| {
                    others.iter().map(|&s| d.slice_energy(s)[t - 1]).sum::<f64>() / others.len() as f64 >= tau
                })
                .unwrap();
            assert_eq!(d.threshold_t(tau, ThresholdRule::Mean).unwrap(), t);
        }
    }
    // An all-zero kernel: zero factors, zero error, T = 1 (documented).
    let k = Kernel::new(4, 3, 3, 3, vec![0.0; 108]).unwrap();
    for order in ORDERS {
        let d = Decomposition::new(&k, 1, order).unwrap();
        assert!(d.rel_weight_error().iter().all(|&e| e == 0.0));
        assert!(d.energy_kept().iter().all(|&e| e == 1.0));
        assert_eq!(d.threshold_t(0.9, ThresholdRule::Mean).unwrap(), 1);
        assert_eq!(d.threshold_t(0.9, ThresholdRule::Max).unwrap(), 1);
        assert!(d.reconstruct(d.full_rank).unwrap().data.iter().all(|&x| x == 0.0));
        assert!(d.merged(1).unwrap().pw.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn tiny_kernels_keep_their_accuracy() {
    // 1e-30-scale weights: the same relative errors as the unscaled kernel.
    let k = rand_kernel(16, 8, 3, 3, 77);
    let tiny = Kernel::new(16, 8, 3, 3, k.data.iter().map(|x| x * 1e-30).collect()).unwrap();
    for order in ORDERS {
        let (a, b) =
            (Decomposition::new(&k, 1, order).unwrap(), Decomposition::new(&tiny, 1, order).unwrap());
        for (x, y) in a.rel_weight_error().iter().zip(b.rel_weight_error()) {
            assert!((x - y).abs() < 1e-6, "{x} vs {y}");
        }
        check_weight_side(&tiny, 1, order);
    }
}

#[test]
fn bad_inputs_are_errors() {
    let k = rand_kernel(6, 4, 3, 3, 1);
    assert!(Decomposition::new(&k, 4, Order::DwPw).is_err()); // 6 outputs, 4 groups
    assert!(Decomposition::new(&k, 0, Order::PwDw).is_err());
    let mut bad = k.clone();
    bad.data[5] = f32::NAN; // fields are public: Kernel::new's check can be bypassed
    assert!(matches!(Decomposition::new(&bad, 1, Order::DwPw), Err(Error::NonFinite(_))));
    bad.data.pop();
    assert!(matches!(Decomposition::new(&bad, 1, Order::DwPw), Err(Error::Shape(_))));
    assert!(slice_matrix(&k, 1, Order::DwPw, 4).is_err());
}

// ---------------------------------------------------------------- real layers

#[test]
fn real_layers_weight_side() {
    let mut names: Vec<String> = std::fs::read_dir(LAYERS)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".npy"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "expected the eight shipped layers, found {names:?}");
    for name in &names {
        let k = load_layer(name);
        for order in ORDERS {
            let (mismatch, full, gap) = check_weight_side(&k, 1, order);
            println!(
                "{name} {}: max |Σσ²−‖M‖²|/‖M‖² {mismatch:.1e}, full-rank error {full:.1e}, max |formula−direct| {gap:.1e}",
                order.label()
            );
        }
    }
}

#[test]
fn vgg_conv3_2_error_curve() {
    let k = load_layer("craft_vgg16bn_conv3_2_256x256x3x3.npy");
    for order in ORDERS {
        let d = Decomposition::new(&k, 1, order).unwrap();
        let e = d.rel_weight_error();
        println!("VGG16-BN conv3_2 {} relative weight error, T = 1..9: {e:.4?}", order.label());
        println!(
            "  T(τ=0.9): mean rule {}, max rule {}",
            d.threshold_t(0.9, ThresholdRule::Mean).unwrap(),
            d.threshold_t(0.9, ThresholdRule::Max).unwrap()
        );
        assert_eq!(e.len(), 9);
        assert!(e.windows(2).all(|w| w[1] <= w[0]) && e[0] > 0.0 && e[0] < 1.0);
    }
}

// ---------------------------------------------------------------- output side (checks 1, 2, 6, 7, 8)

fn rand_map(c: usize, h: usize, w: usize, seed: u64) -> FeatureMap {
    FeatureMap::new(c, h, w, rand_vec(c * h * w, seed)).unwrap()
}

fn geometry(s: usize, p: usize, d: usize, groups: usize) -> ConvGeometry {
    ConvGeometry { groups, ..ConvGeometry::new(s, p, d) }
}

/// For every T: merged forward == reference conv with W_T (+ b), branch form == merged form; at
/// full rank == the original conv; shapes equal the original's; zero input gives exactly b.
fn check_outputs(kernel: &Kernel, bias: &[f32], x: &FeatureMap, geom: &ConvGeometry, order: Order) {
    let d = Decomposition::new(kernel, geom.groups, order).unwrap();
    let original = reference_conv2d(x, kernel, Some(bias), geom).unwrap();
    let zero = FeatureMap::zeros(x.c, x.h, x.w);
    for t in 1..=d.full_rank {
        let merged = d.merged(t).unwrap();
        let y = decoupled_forward(x, &merged, Some(bias), geom).unwrap();
        // Check 6: same shape as the original layer.
        assert_eq!((y.c, y.h, y.w), (original.c, original.h, original.w), "{order:?} T={t} {geom:?}");
        // Check 1: the decoupled layer computes conv(x, W_T) + b.
        let wt = d.reconstruct(t).unwrap();
        let oracle = reference_conv2d(x, &wt, Some(bias), geom).unwrap();
        let e1 = y.rel_error(&oracle).unwrap();
        assert!(e1 <= 1e-4, "{order:?} T={t} {geom:?}: decoupled vs conv(W_T) {e1:e}");
        // Check 8: the branch form gives the same output.
        let yb =
            branch_forward(x, &d.branches(t).unwrap(), order, d.n, d.kh, d.kw, Some(bias), geom).unwrap();
        let e8 = yb.rel_error(&y).unwrap();
        assert!(e8 <= 1e-5, "{order:?} T={t} {geom:?}: branch vs merged {e8:e}");
        // Check 7: a zero input gives exactly the bias everywhere, borders included.
        for z in [
            decoupled_forward(&zero, &merged, Some(bias), geom).unwrap(),
            branch_forward(&zero, &d.branches(t).unwrap(), order, d.n, d.kh, d.kw, Some(bias), geom).unwrap(),
        ] {
            let hw = z.h * z.w;
            for (ch, plane) in z.data.chunks_exact(hw).enumerate() {
                assert!(plane.iter().all(|&v| v == bias[ch]), "{order:?} T={t}: zero input, channel {ch}");
            }
        }
        // Check 2: at full rank, the original conv.
        if t == d.full_rank {
            let e2 = y.rel_error(&original).unwrap();
            assert!(e2 <= 1e-4, "{order:?} full rank {geom:?}: {e2:e}");
        }
    }
}

#[test]
fn outputs_all_geometries() {
    // Stride 1–2, padding 0–2, dilation 1–2, odd and even input sizes, 3×3, 1×3, 3×1, 5×5, 2×2.
    let kernels = [(3, 3), (1, 3), (3, 1), (5, 5), (2, 2)];
    let mut checked = 0;
    for (ki, &(kh, kw)) in kernels.iter().enumerate() {
        let kernel = rand_kernel(5, 4, kh, kw, 300 + ki as u64);
        let bias = rand_vec(5, 400 + ki as u64);
        for (h, w) in [(9, 8), (8, 11)] {
            let x = rand_map(4, h, w, 500 + (h * w) as u64);
            for s in 1..=2 {
                for p in 0..=2 {
                    for dil in 1..=2 {
                        let geom = geometry(s, p, dil, 1);
                        if geom.output_size(h, w, kh, kw).is_err() {
                            // Too small for the dilated kernel: the decoupled layer refuses too.
                            let d = Decomposition::new(&kernel, 1, Order::DwPw).unwrap();
                            assert!(decoupled_forward(&x, &d.merged(1).unwrap(), Some(&bias), &geom).is_err());
                            continue;
                        }
                        for order in ORDERS {
                            check_outputs(&kernel, &bias, &x, &geom, order);
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked >= 100, "only {checked} geometries checked");
}

#[test]
fn outputs_small_channel_counts_and_groups() {
    // N < K² and C < K² (full rank = N or C), grouped convs, a depthwise conv, 1×1.
    for (i, &(n, c, kh, kw, g)) in [
        (4, 3, 3, 3, 1),
        (3, 2, 3, 3, 1),
        (8, 4, 3, 3, 2),
        (6, 1, 3, 3, 6),
        (12, 3, 5, 5, 3),
        (6, 5, 1, 1, 1),
    ]
    .iter()
    .enumerate()
    {
        let kernel = rand_kernel(n, c, kh, kw, 600 + i as u64);
        let bias = rand_vec(n, 700 + i as u64);
        let x = rand_map(c * g, 10, 9, 800 + i as u64);
        for geom in [geometry(1, 1, 1, g), geometry(2, 2, 2, g), geometry(1, 0, 1, g)] {
            for order in ORDERS {
                check_outputs(&kernel, &bias, &x, &geom, order);
            }
        }
    }
}

#[test]
fn outputs_exact_rank_kernel() {
    // An exactly rank-r kernel: the T = r decoupled layer reproduces the original conv.
    for order in ORDERS {
        let (r, kernel) = (3, exact_rank_kernel(10, 8, 3, 3, 3, order));
        let bias = rand_vec(10, 901);
        let x = rand_map(8, 12, 12, 902);
        let geom = geometry(1, 1, 1, 1);
        let d = Decomposition::new(&kernel, 1, order).unwrap();
        let y = decoupled_forward(&x, &d.merged(r).unwrap(), Some(&bias), &geom).unwrap();
        let original = reference_conv2d(&x, &kernel, Some(&bias), &geom).unwrap();
        assert!(y.rel_error(&original).unwrap() <= 1e-5, "{order:?}");
    }
}

#[test]
fn outputs_real_layer() {
    // VGG16-BN conv1_2 (64→64) on a 14×14 input, every T, both orders.
    let kernel = load_layer("craft_vgg16bn_conv1_2_64x64x3x3.npy");
    let bias = rand_vec(64, 1001);
    let x = rand_map(64, 14, 14, 1002);
    check_outputs(&kernel, &bias, &x, &geometry(1, 1, 1, 1), Order::DwPw);
    check_outputs(&kernel, &bias, &x, &geometry(2, 1, 1, 1), Order::PwDw);
}
