//! The fast decoupling route (`src/decouple/fast.rs`) against independent oracles: one-sided
//! Jacobi on the same slice matrices (an algorithm that never forms a Gram matrix), the slice
//! matrices themselves (reconstruction), orthogonality measured directly, and hand-built slices
//! that must be handed to the checked route (gray zone) or reported (NaN, infinity).

use ndlab_core::decouple::{slice_matrix, slice_shape, Decomposition, Routes};
use ndlab_core::svd::svd_one_sided_jacobi;
use ndlab_core::{Error, Kernel, Order};

mod common;
use common::{rand_vec, LAYERS, ORDERS};

fn load(name: &str) -> Kernel {
    let bytes = std::fs::read(std::path::Path::new(LAYERS).join(name)).unwrap();
    ndlab_io::npy::read_npy(&bytes).unwrap().into_kernel().unwrap()
}

/// Worst deviations of one decomposition from the oracles, relative to each slice's σ_max.
#[derive(Debug, Default)]
struct Deviation {
    /// max |σ_k − σ_k(one-sided Jacobi)| / σ_max.
    sigma: f64,
    /// max |M − Σ_k pw_k dw_kᵀ| / σ_max.
    recon: f64,
    /// max |dw_iᵀ dw_j − δ_ij| over non-null triplets.
    dw_orth: f64,
    /// max |pw_iᵀ pw_j| / (σ_i σ_j), i ≠ j, over non-null triplets.
    pw_orth: f64,
    /// max |Σσ² − ‖M‖²_F| / ‖M‖²_F.
    energy: f64,
}

fn deviation(k: &Kernel, groups: usize, order: Order, d: &Decomposition) -> Deviation {
    let (count, rows, cols) = slice_shape(k, groups, order).unwrap();
    let r = rows.min(cols);
    let mut dev = Deviation::default();
    for s in 0..count {
        let m = slice_matrix(k, groups, order, s).unwrap();
        let sl = &d.slices[s];
        let oracle = svd_one_sided_jacobi(&m, rows, cols).unwrap();
        let smax = oracle.sigma[0].max(f64::MIN_POSITIVE);
        for (a, b) in sl.sigma.iter().zip(&oracle.sigma) {
            dev.sigma = dev.sigma.max((a - b).abs() / smax);
        }
        for i in 0..rows {
            for j in 0..cols {
                let x: f64 = (0..r).map(|t| sl.pw[t * rows + i] * sl.dw[t * cols + j]).sum();
                dev.recon = dev.recon.max((x - m[i * cols + j]).abs() / smax);
            }
        }
        let live: Vec<usize> = (0..r).filter(|&t| sl.sigma[t] > 0.0).collect();
        for &a in &live {
            for &b in &live {
                let dd: f64 = (0..cols).map(|j| sl.dw[a * cols + j] * sl.dw[b * cols + j]).sum();
                dev.dw_orth = dev.dw_orth.max((dd - if a == b { 1.0 } else { 0.0 }).abs());
                if a != b {
                    let pp: f64 = (0..rows).map(|i| sl.pw[a * rows + i] * sl.pw[b * rows + i]).sum();
                    dev.pw_orth = dev.pw_orth.max(pp.abs() / (sl.sigma[a] * sl.sigma[b]));
                }
            }
        }
        let norm: f64 = m.iter().map(|x| x * x).sum();
        let ssq: f64 = sl.sigma.iter().map(|x| x * x).sum();
        if norm > 0.0 {
            dev.energy = dev.energy.max((ssq - norm).abs() / norm);
        }
    }
    dev
}

#[test]
fn real_layers_take_the_fast_route_and_match_one_sided_jacobi() {
    for name in [
        "craft_vgg16bn_conv1_2_64x64x3x3.npy",
        "craft_vgg16bn_conv3_2_256x256x3x3.npy",
        "dlib_resnet_conv128_1_conv1_128x128x3x3.npy",
        "dlib_resnet_conv256_1_conv1_256x256x3x3.npy",
    ] {
        let k = load(name);
        for order in ORDERS {
            let (d, routes) = Decomposition::new_counting(&k, 1, order).unwrap();
            let (count, _, _) = slice_shape(&k, 1, order).unwrap();
            assert_eq!(routes, Routes { fast: count, checked: 0 }, "{name} {order:?}");
            let dev = deviation(&k, 1, order, &d);
            println!("{name} {}: {dev:?}", order.as_str());
            assert!(dev.sigma < 1e-12, "{name} {order:?} σ {dev:?}");
            assert!(dev.recon < 1e-13, "{name} {order:?} reconstruction {dev:?}");
            assert!(dev.dw_orth < 1e-13, "{name} {order:?} dw orthonormality {dev:?}");
            assert!(dev.pw_orth < 1e-9, "{name} {order:?} pw orthogonality {dev:?}");
            assert!(dev.energy < 1e-13, "{name} {order:?} energy {dev:?}");
        }
    }
}

/// Odd slice counts (the last slice runs alone), zero slices paired with non-zero ones, other
/// kernel sizes (K² = 3, 25; q not a multiple of the tile), groups, few rows.
#[test]
fn odd_shapes_zero_slices_and_groups() {
    let cases: [(usize, usize, usize, usize, usize); 7] = [
        (9, 5, 3, 3, 1),
        (13, 7, 1, 3, 1),
        (30, 11, 5, 5, 1),
        (12, 6, 3, 3, 3),
        (10, 3, 3, 3, 1),
        (9, 9, 3, 3, 1),
        (7, 4, 2, 2, 1),
    ];
    for (i, &(n, c, kh, kw, groups)) in cases.iter().enumerate() {
        let mut data = rand_vec(n * c * kh * kw, 100 + i as u64);
        // Zero input channel 1 (a zero DW→PW slice) and output channel 2 (a zero PW→DW slice).
        let k2 = kh * kw;
        for nn in 0..n {
            data[(nn * c + 1) * k2..(nn * c + 2) * k2].fill(0.0);
        }
        data[2 * c * k2..3 * c * k2].fill(0.0);
        let k = Kernel::new(n, c, kh, kw, data).unwrap();
        for order in ORDERS {
            let (d, routes) = Decomposition::new_counting(&k, groups, order).unwrap();
            let (count, rows, cols) = slice_shape(&k, groups, order).unwrap();
            assert_eq!(routes.fast + routes.checked, count);
            if rows >= cols {
                assert_eq!(routes.checked, 0, "case {i} {order:?}: {routes:?}");
            }
            let dev = deviation(&k, groups, order, &d);
            assert!(
                dev.sigma < 1e-12 && dev.recon < 1e-13 && dev.dw_orth < 1e-13,
                "case {i} {order:?} {dev:?}"
            );
            assert!(dev.pw_orth < 1e-9 && dev.energy < 1e-13, "case {i} {order:?} {dev:?}");
            let zero = match order {
                Order::DwPw => &d.slices[1],
                Order::PwDw => &d.slices[2],
            };
            assert!(
                zero.sigma.iter().chain(&zero.pw).chain(&zero.dw).all(|&x| x == 0.0),
                "case {i} {order:?}"
            );
        }
    }
}

/// Slices with a singular value far below σ_max (but above the rank cut) are outside the
/// accuracy the Gram route guarantees: the fast route must hand every one of them to the
/// checked route, whose one-sided Jacobi gets the small σ to full relative accuracy.
#[test]
fn gray_zone_slices_are_handed_to_the_checked_route() {
    let (n, c, k2) = (24, 6, 9);
    let mut data = vec![0.0f32; n * c * k2];
    for cc in 0..c {
        // M_c = a bᵀ + 1e-5 · e fᵀ (exact in f32 up to rounding, which adds σ ≈ 1e-8).
        let (a, b) = (rand_vec(n, 7 + cc as u64), rand_vec(k2, 17 + cc as u64));
        let (e, f) = (rand_vec(n, 27 + cc as u64), rand_vec(k2, 37 + cc as u64));
        for nn in 0..n {
            for j in 0..k2 {
                data[(nn * c + cc) * k2 + j] = a[nn] * b[j] + 1e-5 * e[nn] * f[j];
            }
        }
    }
    let k = Kernel::new(n, c, 3, 3, data).unwrap();
    let (d, routes) = Decomposition::new_counting(&k, 1, Order::DwPw).unwrap();
    assert_eq!(routes, Routes { fast: 0, checked: c });
    for (s, sl) in d.slices.iter().enumerate() {
        let m = slice_matrix(&k, 1, Order::DwPw, s).unwrap();
        let oracle = svd_one_sided_jacobi(&m, n, k2).unwrap();
        // The second singular value (≈ 1e-5 σ_max) to 1e-6 relative: beyond what squaring keeps.
        let (got, want) = (sl.sigma[1], oracle.sigma[1]);
        assert!(
            want > 1e-7 * oracle.sigma[0] && (got - want).abs() <= 1e-6 * want,
            "slice {s}: {got} vs {want}"
        );
    }
    // The same kernel in the other ordering has slices 6 × 9 (wide? no: 6 < 9 → checked route).
    let (_, routes) = Decomposition::new_counting(&k, 1, Order::PwDw).unwrap();
    assert_eq!(routes, Routes { fast: 0, checked: n });
}

/// A NaN or infinity anywhere (the fields of `Kernel` are public, so it can get there after
/// `Kernel::new`) is reported with its index, whichever slice of a pair it is in.
#[test]
fn non_finite_values_are_reported() {
    for (pos, bad) in [(0usize, f32::NAN), (5 * 9 * 4 + 7, f32::INFINITY), (7 * 5 * 9 + 3, f32::NEG_INFINITY)]
    {
        let mut k = Kernel::new(8, 5, 3, 3, rand_vec(8 * 5 * 9, 3)).unwrap();
        k.data[pos] = bad;
        for order in ORDERS {
            match Decomposition::new(&k, 1, order) {
                Err(Error::NonFinite(msg)) => assert!(msg.contains(&format!("#{pos}")), "{msg}"),
                other => panic!("{order:?} {pos}: expected NonFinite, got {other:?}"),
            }
        }
    }
}
