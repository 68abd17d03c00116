//! Data-aware decoupling (`decouple::data_aware`): every check against an independent oracle —
//! the data-free decomposition (white inputs), the scalar reference conv run on the calibration
//! images (measured output errors and least-squares objectives), a rebuild of W_T from the
//! factors written here, and accumulators fed the same data in another split.

use ndlab_core::conv::{decoupled_forward, reference_conv2d};
use ndlab_core::decouple::data_aware::{
    self, expected_error, expected_residual, AwareOptions, KronFactor, PatchStats, RefitOptions, StatsOptions,
};
use ndlab_core::decouple::Decomposition;
use ndlab_core::random::Rng;
use ndlab_core::{ConvGeometry, Error, FeatureMap, Kernel, Order, Padding};

const ORDERS: [Order; 2] = [Order::DwPw, Order::PwDw];

// ---------------------------------------------------------------- helpers

fn rand_kernel(n: usize, c: usize, kh: usize, kw: usize, seed: u64) -> Kernel {
    let mut rng = Rng::new(seed);
    Kernel::new(n, c, kh, kw, rng.signed_vec(n * c * kh * kw)).unwrap()
}

fn geometry(s: usize, p: usize, d: usize, groups: usize) -> ConvGeometry {
    ConvGeometry { stride: (s, s), padding: Padding::uniform(p), dilation: (d, d), groups }
}

/// A smooth random field: white noise blurred by a separable Gaussian of std (sy, sx) pixels.
fn smooth_field(h: usize, w: usize, sy: f64, sx: f64, rng: &mut Rng) -> Vec<f64> {
    let (ry, rx) = ((3.0 * sy).ceil() as usize, (3.0 * sx).ceil() as usize);
    let (hh, ww) = (h + 2 * ry, w + 2 * rx);
    let noise: Vec<f64> = (0..hh * ww).map(|_| rng.normal()).collect();
    let taps = |r: usize, s: f64| -> Vec<f64> {
        (0..=2 * r).map(|i| (-((i as f64 - r as f64).powi(2)) / (2.0 * s * s).max(1e-9)).exp()).collect()
    };
    let (ty, tx) = (taps(ry, sy), taps(rx, sx));
    let mut rows = vec![0.0; hh * w];
    for y in 0..hh {
        for x in 0..w {
            rows[y * w + x] = (0..=2 * rx).map(|i| tx[i] * noise[y * ww + x + i]).sum();
        }
    }
    (0..h * w).map(|p| (0..=2 * ry).map(|i| ty[i] * rows[(p / w + i) * w + p % w]).sum()).collect()
}

/// `c` channels mixed by a random matrix from independent smooth fields sharing one spatial
/// correlation (a nearly Kronecker patch covariance, channels strongly correlated).
fn mixed_input(c: usize, h: usize, w: usize, seed: u64) -> FeatureMap {
    let mut rng = Rng::new(seed);
    let z: Vec<Vec<f64>> = (0..c).map(|_| smooth_field(h, w, 1.5, 1.0, &mut rng)).collect();
    let mix: Vec<f64> = (0..c * c).map(|_| rng.normal()).collect();
    let mut data = vec![0.0f32; c * h * w];
    for o in 0..c {
        for p in 0..h * w {
            data[o * h * w + p] = (0..c).map(|j| mix[o * c + j] * z[j][p]).sum::<f64>() as f32;
        }
    }
    FeatureMap::new(c, h, w, data).unwrap()
}

/// Images each holding one smooth channel (its own anisotropic correlation and scale), the
/// others zero: the patch covariance is exactly block diagonal over channels.
fn one_channel_images(c: usize, h: usize, w: usize, per: usize, seed: u64) -> Vec<FeatureMap> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for _ in 0..per {
        for ch in 0..c {
            let (sy, sx) = (0.5 + (ch % 3) as f64, 0.5 + ((ch + 1) % 4) as f64 * 0.7);
            let scale = 0.5 + ch as f64 * 0.3;
            let f = smooth_field(h, w, sy, sx, &mut rng);
            let mut m = FeatureMap::zeros(c, h, w);
            for (o, v) in m.data[ch * h * w..(ch + 1) * h * w].iter_mut().zip(f) {
                *o = (v * scale) as f32;
            }
            out.push(m);
        }
    }
    out
}

fn stats_of(kernel: &Kernel, geom: ConvGeometry, xs: &[FeatureMap]) -> PatchStats {
    let mut s = PatchStats::new(kernel, geom, StatsOptions::default()).unwrap();
    for x in xs {
        s.add(x).unwrap();
    }
    s
}

/// W_T rebuilt in f64 from the slices' factors by METHOD.md's slice definitions.
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

fn rel(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

fn sq(m: &FeatureMap) -> f64 {
    m.data.iter().map(|&v| (v as f64) * (v as f64)).sum()
}

/// Σ over images of ‖conv(x, W − Ŵ)‖² and ‖conv(x, W)‖² by the scalar reference conv (the
/// difference kernel formed in f64, rounded once), divided by the number of output positions.
fn measured_error(xs: &[FeatureMap], w: &Kernel, approx: &Kernel, geom: &ConvGeometry) -> (f64, f64) {
    let diff: Vec<f32> =
        w.data.iter().zip(&approx.data).map(|(&a, &b)| (a as f64 - b as f64) as f32).collect();
    let diff = Kernel::new(w.n, w.c, w.kh, w.kw, diff).unwrap();
    let (mut e, mut r, mut count) = (0.0, 0.0, 0usize);
    for x in xs {
        let y = reference_conv2d(x, w, None, geom).unwrap();
        e += sq(&reference_conv2d(x, &diff, None, geom).unwrap());
        r += sq(&y);
        count += y.h * y.w;
    }
    (e / count as f64, r / count as f64)
}

/// Σ over images of ‖decoupled_forward(x) − conv(x, W)‖² / Σ ‖conv(x, W)‖² (the decoupled layer
/// actually run, f32 end to end).
fn measured_forward(xs: &[FeatureMap], w: &Kernel, d: &Decomposition, t: usize, geom: &ConvGeometry) -> f64 {
    let merged = d.merged(t).unwrap();
    let (mut e, mut r) = (0.0, 0.0);
    for x in xs {
        let y = reference_conv2d(x, w, None, geom).unwrap();
        let yh = decoupled_forward(x, &merged, None, geom).unwrap();
        e += y.data.iter().zip(&yh.data).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>();
        r += sq(&y);
    }
    e / r
}

// ---------------------------------------------------------------- white inputs

/// One image per input channel holding a single 1 that every tap sees exactly once: the patch
/// moments are exactly ∝ I (per channel, jointly, and both Kronecker factors).
fn delta_images(ctot: usize, kh: usize, kw: usize) -> Vec<FeatureMap> {
    let (h, w) = (2 * kh - 1, 2 * kw - 1);
    (0..ctot)
        .map(|ch| {
            let mut m = FeatureMap::zeros(ctot, h, w);
            m.data[(ch * h + kh - 1) * w + kw - 1] = 1.0;
            m
        })
        .collect()
}

#[test]
fn white_inputs_give_the_data_free_decoupling() {
    for (n, c, groups, kh, kw) in
        [(6, 4, 1, 3, 3), (16, 12, 2, 3, 3), (5, 3, 1, 1, 3), (12, 10, 1, 5, 5), (4, 2, 2, 2, 3)]
    {
        let kernel = rand_kernel(n, c, kh, kw, (n * 31 + c) as u64);
        let geom = geometry(1, 0, 1, groups);
        let stats = stats_of(&kernel, geom, &delta_images(c * groups, kh, kw));
        for order in ORDERS {
            let free = Decomposition::new(&kernel, groups, order).unwrap();
            for (ridge, kron) in
                [(0.0, KronFactor::Moments), (1e-3, KronFactor::Moments), (1e-3, KronFactor::Nearest)]
            {
                let opts = AwareOptions { ridge, kron };
                let aware = data_aware::decouple(&kernel, order, &stats, &opts).unwrap();
                assert_eq!(aware.full_rank, free.full_rank);
                for t in 1..=free.full_rank {
                    let e = rel(&rebuild_f64(&aware, t), &rebuild_f64(&free, t));
                    assert!(
                        e < 1e-9,
                        "{n}×{c}×{kh}×{kw} g{groups} {} ridge {ridge} {kron:?} T={t}: {e:e}",
                        order.label()
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------- output errors

/// Expected errors of data-free and data-aware W_T for every T, with the measured ones.
struct Curve {
    free: Vec<f64>,
    aware: Vec<f64>,
}

fn curves(
    kernel: &Kernel,
    order: Order,
    xs: &[FeatureMap],
    geom: &ConvGeometry,
    opts: &AwareOptions,
) -> Curve {
    let stats = stats_of(kernel, *geom, xs);
    let free = Decomposition::new(kernel, geom.groups, order).unwrap();
    let aware = data_aware::decouple(kernel, order, &stats, opts).unwrap();
    let mut out = Curve { free: Vec::new(), aware: Vec::new() };
    for t in 1..=free.full_rank {
        for (d, dst) in [(&free, &mut out.free), (&aware, &mut out.aware)] {
            let wt = d.reconstruct(t).unwrap();
            let exp = expected_error(&stats, kernel, &wt).unwrap();
            let (me, mr) = measured_error(xs, kernel, &wt, geom);
            // The same quantity two ways: statistics vs running the convs on the same images.
            assert!(
                (exp.error - me).abs() <= 1e-6 * me.max(1e-12 * mr),
                "T={t}: expected {:e} measured {me:e}",
                exp.error
            );
            assert!((exp.reference - mr).abs() <= 1e-6 * mr);
            // And the decoupled layer as run (f32 end to end) gives the same error.
            let fwd = measured_forward(xs, kernel, d, t, geom);
            assert!(
                (fwd - exp.ratio()).abs() <= 1e-5 * (exp.ratio() + 1e-6),
                "T={t}: forward {fwd:e} vs {:e}",
                exp.ratio()
            );
            dst.push(exp.ratio());
        }
    }
    out
}

#[test]
fn independent_channels_dwpw_is_never_worse() {
    // Block-diagonal patch covariance (one active channel per image): the DW→PW weighted
    // truncation is then the exact optimum of the output error, T by T.
    for (geom, kh, kw) in
        [(geometry(1, 1, 1, 1), 3, 3), (geometry(2, 2, 2, 2), 3, 3), (geometry(1, 0, 1, 1), 1, 3)]
    {
        let (n, c) = (10, 4);
        let kernel = rand_kernel(n, c, kh, kw, 7);
        let xs = one_channel_images(c * geom.groups, 11, 13, 2, 3);
        let cv =
            curves(&kernel, Order::DwPw, &xs, &geom, &AwareOptions { ridge: 0.0, ..AwareOptions::default() });
        let r = cv.free.len();
        for t in 0..r {
            assert!(
                cv.aware[t] <= cv.free[t] * (1.0 + 1e-9) + 1e-15,
                "T={}: {} > {}",
                t + 1,
                cv.aware[t],
                cv.free[t]
            );
        }
        assert!((0..r - 1).any(|t| cv.aware[t] < 0.9 * cv.free[t]), "{:?} vs {:?}", cv.aware, cv.free);
    }
}

#[test]
fn correlated_inputs_data_aware_beats_data_free() {
    // The brief's case: smooth fields, channels mixed by a random matrix. Neither ordering's
    // closed form is the exact optimum here (DW→PW ignores cross-channel moments, PW→DW's
    // Kronecker model is broken by the borders), so "never worse" is measured, not proven.
    let mut report = String::new();
    for (geom, n, c, kh) in
        [(geometry(1, 1, 1, 1), 12, 8, 3), (geometry(2, 1, 1, 2), 8, 6, 3), (geometry(1, 2, 2, 1), 6, 10, 3)]
    {
        let kernel = rand_kernel(n, c, kh, kh, 11);
        let xs: Vec<FeatureMap> = (0..3).map(|i| mixed_input(c * geom.groups, 14, 12, 100 + i)).collect();
        for order in ORDERS {
            let cv = curves(&kernel, order, &xs, &geom, &AwareOptions::default());
            report += &format!(
                "{n}×{c}×{kh}×{kh} {geom:?} {}:\n  free  {:.4?}\n  aware {:.4?}\n",
                order.label(),
                cv.free,
                cv.aware
            );
            let r = cv.free.len();
            for t in 0..r {
                assert!(cv.aware[t] <= cv.free[t] + 1e-9, "{report}T={}", t + 1);
            }
            assert!((0..r - 1).any(|t| cv.aware[t] < 0.9 * cv.free[t]), "{report}");
        }
    }
    eprintln!("{report}");
}

#[test]
fn kronecker_factor_choices_compared() {
    // Both factorisations on the mixed-channel case; prints the figures for the report and
    // checks both stay exact at full rank and improve on the data-free truncation at T = 1.
    let (n, c) = (16, 8);
    let geom = geometry(1, 1, 1, 1);
    let kernel = rand_kernel(n, c, 3, 3, 21);
    let xs: Vec<FeatureMap> = (0..3).map(|i| mixed_input(c, 16, 16, 300 + i)).collect();
    let stats = stats_of(&kernel, geom, &xs);
    let free = Decomposition::new(&kernel, 1, Order::PwDw).unwrap();
    let mut lines = Vec::new();
    for kron in [KronFactor::Moments, KronFactor::Nearest] {
        let d = data_aware::decouple(
            &kernel,
            Order::PwDw,
            &stats,
            &AwareOptions { kron, ..AwareOptions::default() },
        )
        .unwrap();
        let errs: Vec<f64> = (1..=d.full_rank)
            .map(|t| expected_error(&stats, &kernel, &d.reconstruct(t).unwrap()).unwrap().ratio())
            .collect();
        let free1 = expected_error(&stats, &kernel, &free.reconstruct(1).unwrap()).unwrap().ratio();
        assert!(errs[0] < free1, "{kron:?}: {} vs data-free {free1}", errs[0]);
        assert!(errs[d.full_rank - 1] < 1e-10);
        lines.push(format!("{kron:?}: {errs:.4?}"));
    }
    eprintln!("PW→DW 16×8×3×3 mixed inputs, E-ratio per T:\n{}", lines.join("\n"));
}

// ---------------------------------------------------------------- refit

/// Σ over images of ‖(decoupled layer on x_dec, with bias) − y‖², per output position.
fn objective(
    pairs: &[(FeatureMap, FeatureMap)],
    d: &Decomposition,
    t: usize,
    bias: &[f32],
    geom: &ConvGeometry,
) -> f64 {
    let merged = d.merged(t).unwrap();
    let (mut e, mut count) = (0.0, 0usize);
    for (xd, y) in pairs {
        let yh = decoupled_forward(xd, &merged, Some(bias), geom).unwrap();
        e += y.data.iter().zip(&yh.data).map(|(&a, &b)| (a as f64 - b as f64).powi(2)).sum::<f64>();
        count += y.h * y.w;
    }
    e / count as f64
}

#[test]
fn refit_never_increases_its_objective_and_is_exact_at_full_rank() {
    for (geom, n, c) in [(geometry(1, 1, 1, 1), 12, 6), (geometry(2, 1, 1, 2), 8, 5)] {
        let ctot = c * geom.groups;
        let kernel = rand_kernel(n, c, 3, 3, 5);
        let bias: Vec<f32> = Rng::new(9).signed_vec(n);
        let xs: Vec<FeatureMap> = (0..3).map(|i| mixed_input(ctot, 13, 11, 500 + i)).collect();
        // The decoupled network's activations: the originals disturbed (as an upstream decoupled
        // layer would), paired with the original layer's output on the originals.
        let mut rng = Rng::new(77);
        let pairs: Vec<(FeatureMap, FeatureMap)> = xs
            .iter()
            .map(|x| {
                let mut xd = x.clone();
                xd.data.iter_mut().for_each(|v| *v += 0.3 * rng.normal() as f32 * v.abs().sqrt());
                (xd, reference_conv2d(x, &kernel, Some(&bias), &geom).unwrap())
            })
            .collect();
        let target_stats = |pairs: &[(FeatureMap, FeatureMap)]| {
            let mut s =
                PatchStats::new(&kernel, geom, StatsOptions { targets: true, ..StatsOptions::default() })
                    .unwrap();
            for (xd, y) in pairs {
                s.add_pair(xd, y, Some(&bias)).unwrap();
            }
            s
        };
        let st = target_stats(&pairs);
        let orig = stats_of(&kernel, geom, &xs);
        let yy: f64 = st.target_moment().unwrap().iter().sum();
        for order in ORDERS {
            let d = data_aware::decouple(&kernel, order, &orig, &AwareOptions::default()).unwrap();
            let free = Decomposition::new(&kernel, geom.groups, order).unwrap();
            let mut table = Vec::new();
            for t in 1..=d.full_rank {
                let before = objective(&pairs, &d, t, &bias, &geom);
                let fit = data_aware::refit(&d, t, &st, &RefitOptions::default()).unwrap();
                assert_eq!(fit.full_rank, t);
                let after = objective(&pairs, &fit, t, &bias, &geom);
                // The statistics give the same objective as running the layers.
                let exp_b = expected_residual(&st, &d.reconstruct(t).unwrap()).unwrap();
                let exp_a = expected_residual(&st, &fit.reconstruct(t).unwrap()).unwrap();
                assert!(
                    (exp_b - before).abs() <= 1e-4 * before + 1e-9,
                    "{} T={t}: {exp_b} vs {before}",
                    order.label()
                );
                assert!(
                    (exp_a - after).abs() <= 1e-4 * after + 1e-9,
                    "{} T={t}: {exp_a} vs {after}",
                    order.label()
                );
                assert!(exp_a <= exp_b * (1.0 + 1e-9), "{} T={t}: refit {exp_a} > {exp_b}", order.label());
                assert!(after <= before * (1.0 + 1e-5), "{} T={t}: refit {after} > {before}", order.label());
                let free_obj = objective(&pairs, &free, t, &bias, &geom);
                table.push(format!(
                    "{:.4}/{:.4}/{:.4}",
                    (free_obj / yy).sqrt(),
                    (before / yy).sqrt(),
                    (after / yy).sqrt()
                ));
                // dw untouched.
                for (a, b) in fit.slices.iter().zip(&d.slices) {
                    assert_eq!(a.dw[..], b.dw[..t * d.kh * d.kw]);
                }
            }
            eprintln!(
                "{n}×{c}×3×3 {} disturbed inputs, sqrt(E‖y − ŷ‖²/E‖y‖²) data-free/data-aware/refit per T: {}",
                order.label(),
                table.join("  ")
            );
            // Full rank on undisturbed inputs: the original layer, with and without a ridge.
            let exact: Vec<(FeatureMap, FeatureMap)> = xs
                .iter()
                .map(|x| (x.clone(), reference_conv2d(x, &kernel, Some(&bias), &geom).unwrap()))
                .collect();
            let se = target_stats(&exact);
            let w64: Vec<f64> = kernel.data.iter().map(|&v| v as f64).collect();
            for ridge in [0.0, 1e-6, 1e-2] {
                let fit = data_aware::refit(&d, d.full_rank, &se, &RefitOptions { ridge }).unwrap();
                let e = rel(&rebuild_f64(&fit, d.full_rank), &w64);
                assert!(e < 1e-7, "{} ridge {ridge}: full-rank refit is {e:e} from W", order.label());
            }
        }
    }
}

// ---------------------------------------------------------------- accumulators

#[test]
fn merged_accumulators_equal_one() {
    let kernel = rand_kernel(6, 4, 3, 3, 1);
    let geom = geometry(2, 1, 2, 2);
    let xs: Vec<FeatureMap> = (0..5).map(|i| mixed_input(8, 12, 15, 40 + i)).collect();
    let ys: Vec<FeatureMap> = xs.iter().map(|x| reference_conv2d(x, &kernel, None, &geom).unwrap()).collect();
    for cap in [usize::MAX, 8] {
        let opts = StatsOptions { full_cap: cap, targets: true };
        let mut one = PatchStats::new(&kernel, geom, opts).unwrap();
        let (mut a, mut b) = (one.clone(), one.clone());
        for (i, (x, y)) in xs.iter().zip(&ys).enumerate() {
            one.add_pair(x, y, None).unwrap();
            if i < 2 { &mut a } else { &mut b }.add_pair(x, y, None).unwrap();
        }
        a.merge(&b).unwrap();
        assert_eq!((a.count(), a.images()), (one.count(), one.images()));
        let close = |u: Vec<f64>, v: Vec<f64>| {
            let scale = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            assert!(u.iter().zip(&v).all(|(x, y)| (x - y).abs() <= 1e-12 * scale));
        };
        for ch in 0..8 {
            close(a.channel_moment(ch).unwrap(), one.channel_moment(ch).unwrap());
        }
        for g in 0..2 {
            close(a.channel_matrix(g).unwrap(), one.channel_matrix(g).unwrap());
            close(a.cross_moment(g).unwrap(), one.cross_moment(g).unwrap());
            if cap == usize::MAX {
                close(a.joint_moment(g).unwrap(), one.joint_moment(g).unwrap());
            } else {
                assert!(a.joint_moment(g).is_err());
            }
        }
        close(a.target_moment().unwrap(), one.target_moment().unwrap());
    }
    // Different layers or options do not merge.
    let mut s = PatchStats::new(&kernel, geom, StatsOptions::default()).unwrap();
    let t =
        PatchStats::new(&kernel, geom, StatsOptions { targets: true, ..StatsOptions::default() }).unwrap();
    assert!(s.merge(&t).is_err());
}

#[test]
fn capped_statistics_give_the_same_decoupling() {
    // Over the cap only the per-channel blocks and the channel matrix are kept: both data-aware
    // decouplings are unchanged, the quantities needing S are refused.
    let kernel = rand_kernel(7, 5, 3, 3, 2);
    let geom = geometry(1, 1, 1, 1);
    let xs: Vec<FeatureMap> = (0..2).map(|i| mixed_input(5, 10, 9, 60 + i)).collect();
    let full = stats_of(&kernel, geom, &xs);
    let mut capped = PatchStats::new(&kernel, geom, StatsOptions { full_cap: 44, targets: false }).unwrap();
    xs.iter().for_each(|x| capped.add(x).unwrap());
    assert!(full.full && !capped.full);
    for order in ORDERS {
        let a = data_aware::decouple(&kernel, order, &full, &AwareOptions::default()).unwrap();
        let b = data_aware::decouple(&kernel, order, &capped, &AwareOptions::default()).unwrap();
        for t in 1..=a.full_rank {
            assert!(rel(&rebuild_f64(&b, t), &rebuild_f64(&a, t)) < 1e-10);
        }
    }
    let w1 = Decomposition::new(&kernel, 1, Order::DwPw).unwrap().reconstruct(1).unwrap();
    assert!(matches!(expected_error(&capped, &kernel, &w1), Err(Error::Param(_))));
    let nearest = AwareOptions { kron: KronFactor::Nearest, ..AwareOptions::default() };
    assert!(data_aware::decouple(&kernel, Order::PwDw, &capped, &nearest).is_err());
}

// ---------------------------------------------------------------- bad and degenerate data

#[test]
fn non_finite_activations_are_errors() {
    let kernel = rand_kernel(4, 3, 3, 3, 3);
    let geom = geometry(1, 1, 1, 1);
    let mut s = PatchStats::new(&kernel, geom, StatsOptions::default()).unwrap();
    let fresh = s.clone();
    for bad in [f32::NAN, f32::INFINITY] {
        let mut x = mixed_input(3, 8, 8, 1);
        x.data[17] = bad;
        assert!(matches!(s.add(&x), Err(Error::NonFinite(_))));
        assert_eq!(s, fresh, "a refused image must leave the accumulator as it was");
    }
    let mut st =
        PatchStats::new(&kernel, geom, StatsOptions { targets: true, ..StatsOptions::default() }).unwrap();
    let x = mixed_input(3, 8, 8, 2);
    let mut y = reference_conv2d(&x, &kernel, None, &geom).unwrap();
    y.data[3] = f32::NAN;
    assert!(matches!(st.add_pair(&x, &y, None), Err(Error::NonFinite(_))));
    assert!(st.add(&x).is_err(), "targets expected");
    // Wrong shapes and empty statistics.
    assert!(matches!(s.add(&mixed_input(4, 8, 8, 1)), Err(Error::Shape(_))));
    assert!(data_aware::decouple(&kernel, Order::DwPw, &fresh, &AwareOptions::default()).is_err());
    let bad_ridge = AwareOptions { ridge: f64::NAN, ..AwareOptions::default() };
    s.add(&x).unwrap();
    assert!(data_aware::decouple(&kernel, Order::DwPw, &s, &bad_ridge).is_err());
}

#[test]
fn zero_channels_give_no_nan() {
    let (n, c) = (9, 5);
    let kernel = rand_kernel(n, c, 3, 3, 4);
    let geom = geometry(1, 1, 1, 1);
    let bias = vec![0.5f32; n];
    let mut xs: Vec<FeatureMap> = (0..2).map(|i| mixed_input(c, 9, 10, 80 + i)).collect();
    for x in &mut xs {
        x.data[2 * 90..3 * 90].fill(0.0); // channel 2 dead
    }
    let all_zero = vec![FeatureMap::zeros(c, 9, 10)];
    for (inputs, label) in [(&xs, "one dead channel"), (&all_zero, "all zero")] {
        let mut st =
            PatchStats::new(&kernel, geom, StatsOptions { targets: true, ..StatsOptions::default() })
                .unwrap();
        for x in inputs.iter() {
            st.add_pair(x, &reference_conv2d(x, &kernel, Some(&bias), &geom).unwrap(), Some(&bias)).unwrap();
        }
        let plain = stats_of(&kernel, geom, inputs);
        for order in ORDERS {
            for ridge in [0.0, 1e-3] {
                let d = data_aware::decouple(
                    &kernel,
                    order,
                    &plain,
                    &AwareOptions { ridge, ..AwareOptions::default() },
                )
                .unwrap();
                let finite = |d: &Decomposition| {
                    d.slices.iter().all(|s| s.sigma.iter().chain(&s.dw).chain(&s.pw).all(|v| v.is_finite()))
                };
                assert!(finite(&d), "{label} {} ridge {ridge}", order.label());
                // Exact at full rank whatever the data.
                let w64: Vec<f64> = kernel.data.iter().map(|&v| v as f64).collect();
                assert!(
                    rel(&rebuild_f64(&d, d.full_rank), &w64) < 1e-8,
                    "{label} {} ridge {ridge}",
                    order.label()
                );
                if order == Order::DwPw {
                    assert!(d.slices[2].sigma.iter().all(|&s| s == 0.0) && d.slices[2].energy == 0.0);
                }
                for t in 1..=d.full_rank {
                    let e = expected_error(&plain, &kernel, &d.reconstruct(t).unwrap()).unwrap();
                    assert!(e.ratio().is_finite());
                    let fit = data_aware::refit(&d, t, &st, &RefitOptions::default()).unwrap();
                    assert!(finite(&fit), "{label} {} refit T={t}", order.label());
                }
            }
        }
    }
}
