//! Every fast conv kernel against the direct scalar oracle `reference_conv2d`, over generated
//! shapes and geometries; the decoupled forwards (merged and branch form, both orders) against
//! `reference_conv2d` with the kernel W_T rebuilt from hand-made factors (METHOD.md checks 1, 6, 7, 8).

use ndlab_core::conv::{branch_forward, conv2d, decoupled_forward, depthwise, pointwise, reference_conv2d};
use ndlab_core::decouple::{Branch, Merged};
use ndlab_core::{ConvGeometry, Error, FeatureMap, Kernel, Order, Padding};
use proptest::prelude::*;

/// f32 end-to-end tolerance (METHOD.md).
const TOL: f64 = 1e-4;

/// Deterministic values in [-1, 1).
fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A generated geometry plus input size and kernel shape.
#[derive(Debug, Clone)]
struct Case {
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    geom: ConvGeometry,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    let kernels = prop::sample::select(vec![(1, 1), (1, 3), (3, 1), (3, 3), (5, 5), (2, 2), (2, 3)]);
    (
        1usize..12,
        1usize..12,
        kernels,
        1usize..=2,
        1usize..=2,
        [0usize..=2, 0usize..=2, 0usize..=2, 0usize..=2],
    )
        .prop_flat_map(|(h, w, (kh, kw), sh, sw, [pt, pb, pl, pr])| {
            (1usize..=2, 1usize..=2, any::<u64>()).prop_map(move |(dh, dw, seed)| Case {
                h,
                w,
                kh,
                kw,
                geom: ConvGeometry {
                    stride: (sh, sw),
                    padding: Padding { top: pt, bottom: pb, left: pl, right: pr },
                    dilation: (dh, dw),
                    groups: 1,
                },
                seed,
            })
        })
}

/// The expected output size, computed here independently of `ConvGeometry::output_size`.
fn expected_size(c: &Case) -> Option<(usize, usize)> {
    let g = &c.geom;
    let ph = (c.h + g.padding.top + g.padding.bottom) as isize - (g.dilation.0 * (c.kh - 1) + 1) as isize;
    let pw = (c.w + g.padding.left + g.padding.right) as isize - (g.dilation.1 * (c.kw - 1) + 1) as isize;
    (ph >= 0 && pw >= 0).then(|| (ph as usize / g.stride.0 + 1, pw as usize / g.stride.1 + 1))
}

fn assert_close(got: &FeatureMap, want: &FeatureMap, what: &str) {
    assert_eq!((got.c, got.h, got.w), (want.c, want.h, want.w), "{what}: shape");
    let err = got.rel_error(want).unwrap();
    assert!(err < TOL, "{what}: relative error {err}");
}

/// W_T of merged DW→PW factors: W[n, cl] = Σ_t pw[n, cl·T + t] · dw[(g·cpg + cl)·T + t].
fn rebuild_dwpw(m: &Merged) -> Kernel {
    let (cpg, k2, t) = (m.c_total / m.groups, m.kh * m.kw, m.t);
    let npg = m.n / m.groups;
    let mut w = vec![0.0f64; m.n * cpg * k2];
    for n in 0..m.n {
        let g = n / npg;
        for cl in 0..cpg {
            for tt in 0..t {
                let p = m.pw[n * cpg * t + cl * t + tt] as f64;
                let f = &m.dw[((g * cpg + cl) * t + tt) * k2..][..k2];
                for (i, &d) in f.iter().enumerate() {
                    w[(n * cpg + cl) * k2 + i] += p * d as f64;
                }
            }
        }
    }
    Kernel::new(m.n, cpg, m.kh, m.kw, w.into_iter().map(|v| v as f32).collect()).unwrap()
}

/// W_T of merged PW→DW factors: W[n, c] = Σ_t pw[n·T + t, c] · dw[n·T + t].
fn rebuild_pwdw(m: &Merged) -> Kernel {
    let (cpg, k2, t) = (m.c_total / m.groups, m.kh * m.kw, m.t);
    let mut w = vec![0.0f64; m.n * cpg * k2];
    for n in 0..m.n {
        for c in 0..cpg {
            for tt in 0..t {
                let p = m.pw[(n * t + tt) * cpg + c] as f64;
                let f = &m.dw[(n * t + tt) * k2..][..k2];
                for (i, &d) in f.iter().enumerate() {
                    w[(n * cpg + c) * k2 + i] += p * d as f64;
                }
            }
        }
    }
    Kernel::new(m.n, cpg, m.kh, m.kw, w.into_iter().map(|v| v as f32).collect()).unwrap()
}

/// The branch form of merged factors (branch t holds term t of every slice).
fn to_branches(m: &Merged) -> Vec<Branch> {
    let (cpg, k2, t) = (m.c_total / m.groups, m.kh * m.kw, m.t);
    (0..t)
        .map(|tt| match m.order {
            Order::DwPw => Branch {
                dw: (0..m.c_total).flat_map(|c| m.dw[(c * t + tt) * k2..][..k2].to_vec()).collect(),
                pw: (0..m.n)
                    .flat_map(|n| (0..cpg).map(move |cl| (n, cl)))
                    .map(|(n, cl)| m.pw[n * cpg * t + cl * t + tt])
                    .collect(),
            },
            Order::PwDw => Branch {
                dw: (0..m.n).flat_map(|n| m.dw[(n * t + tt) * k2..][..k2].to_vec()).collect(),
                pw: (0..m.n).flat_map(|n| m.pw[(n * t + tt) * cpg..][..cpg].to_vec()).collect(),
            },
        })
        .collect()
}

fn random_merged(
    order: Order,
    t: usize,
    n: usize,
    c: usize,
    groups: usize,
    (kh, kw): (usize, usize),
    seed: u64,
) -> Merged {
    let k2 = kh * kw;
    let (dw_len, pw_len) = match order {
        Order::DwPw => (c * t * k2, n * (c / groups) * t),
        Order::PwDw => (n * t * k2, n * t * (c / groups)),
    };
    Merged {
        order,
        t,
        n,
        c_total: c,
        kh,
        kw,
        groups,
        dw: noise(dw_len, seed),
        pw: noise(pw_len, seed ^ 0x55),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    /// conv2d = reference_conv2d (groups 1/2/4, odd channel counts), and both have the expected shape.
    #[test]
    fn conv2d_matches_reference(cs in case(), groups in prop::sample::select(vec![1usize, 2, 4]),
                                cpg in 1usize..6, npg in 1usize..8, with_bias: bool) {
        let (c, n) = (cpg * groups, npg * groups);
        let x = FeatureMap::new(c, cs.h, cs.w, noise(c * cs.h * cs.w, cs.seed)).unwrap();
        let k = Kernel::new(n, cpg, cs.kh, cs.kw, noise(n * cpg * cs.kh * cs.kw, cs.seed ^ 1)).unwrap();
        let bias = noise(n, cs.seed ^ 2);
        let bias = with_bias.then_some(bias.as_slice());
        let geom = ConvGeometry { groups, ..cs.geom };
        match expected_size(&cs) {
            Some((ho, wo)) => {
                let want = reference_conv2d(&x, &k, bias, &geom).unwrap();
                prop_assert_eq!((want.c, want.h, want.w), (n, ho, wo));
                assert_close(&conv2d(&x, &k, bias, &geom).unwrap(), &want, "conv2d");
            }
            None => {
                prop_assert!(matches!(conv2d(&x, &k, bias, &geom), Err(Error::Shape(_))));
                prop_assert!(matches!(reference_conv2d(&x, &k, bias, &geom), Err(Error::Shape(_))));
            }
        }
    }

    /// depthwise(mult) = a grouped conv with groups = C, C·mult outputs, one input per group.
    #[test]
    fn depthwise_matches_reference(cs in case(), c in 1usize..6, mult in 1usize..=4) {
        let x = FeatureMap::new(c, cs.h, cs.w, noise(c * cs.h * cs.w, cs.seed)).unwrap();
        let f = noise(c * mult * cs.kh * cs.kw, cs.seed ^ 3);
        let got = depthwise(&x, &f, mult, cs.kh, cs.kw, &cs.geom);
        match expected_size(&cs) {
            Some(_) => {
                let k = Kernel::new(c * mult, 1, cs.kh, cs.kw, f).unwrap();
                let want = reference_conv2d(&x, &k, None, &ConvGeometry { groups: c, ..cs.geom }).unwrap();
                assert_close(&got.unwrap(), &want, "depthwise");
            }
            None => prop_assert!(matches!(got, Err(Error::Shape(_)))),
        }
    }

    /// pointwise = a 1×1 reference conv (groups, bias, 1×1 spatial included).
    #[test]
    fn pointwise_matches_reference(h in 1usize..9, w in 1usize..9, groups in prop::sample::select(vec![1usize, 2, 4]),
                                   cpg in 1usize..10, npg in 1usize..11, with_bias: bool, seed: u64) {
        let (c, n) = (cpg * groups, npg * groups);
        let x = FeatureMap::new(c, h, w, noise(c * h * w, seed)).unwrap();
        let wts = noise(n * cpg, seed ^ 4);
        let bias = noise(n, seed ^ 5);
        let bias = with_bias.then_some(bias.as_slice());
        let k = Kernel::new(n, cpg, 1, 1, wts.clone()).unwrap();
        let want = reference_conv2d(&x, &k, bias, &ConvGeometry { groups, ..Default::default() }).unwrap();
        assert_close(&pointwise(&x, &wts, n, groups, bias).unwrap(), &want, "pointwise");
    }

    /// Merged and branch forwards of both orders = conv(x, W_T) + b, with W_T rebuilt from the factors.
    #[test]
    fn decoupled_matches_rebuilt_kernel(cs in case(), groups in prop::sample::select(vec![1usize, 2, 4]),
                                        cpg in 1usize..5, npg in 1usize..5, t in 1usize..=4,
                                        dwpw: bool) {
        prop_assume!(expected_size(&cs).is_some());
        let (c, n) = (cpg * groups, npg * groups);
        let order = if dwpw { Order::DwPw } else { Order::PwDw };
        let m = random_merged(order, t, n, c, groups, (cs.kh, cs.kw), cs.seed);
        let w_t = match order { Order::DwPw => rebuild_dwpw(&m), Order::PwDw => rebuild_pwdw(&m) };
        let x = FeatureMap::new(c, cs.h, cs.w, noise(c * cs.h * cs.w, cs.seed ^ 6)).unwrap();
        let bias = noise(n, cs.seed ^ 7);
        let geom = ConvGeometry { groups, ..cs.geom };
        let want = reference_conv2d(&x, &w_t, Some(&bias), &geom).unwrap();
        let merged = decoupled_forward(&x, &m, Some(&bias), &geom).unwrap();
        assert_close(&merged, &want, "decoupled_forward");
        let branches = to_branches(&m);
        let branch = branch_forward(&x, &branches, order, n, cs.kh, cs.kw, Some(&bias), &geom).unwrap();
        assert_close(&branch, &want, "branch_forward");
        assert_close(&branch, &merged, "branch vs merged");
        // A zero input gives exactly the bias everywhere, borders included.
        let zero = FeatureMap::zeros(c, cs.h, cs.w);
        for y in [decoupled_forward(&zero, &m, Some(&bias), &geom).unwrap(),
                  branch_forward(&zero, &branches, order, n, cs.kh, cs.kw, Some(&bias), &geom).unwrap(),
                  conv2d(&zero, &w_t, Some(&bias), &geom).unwrap()] {
            prop_assert_eq!((y.c, y.h, y.w), (want.c, want.h, want.w));
            for (i, plane) in y.data.chunks(y.h * y.w).enumerate() {
                prop_assert!(plane.iter().all(|&v| v == bias[i]));
            }
        }
    }
}

/// Larger shapes that cross the GEMM's tile and block edges (K > 384, pixels > 768, odd channels).
#[test]
fn conv2d_large_blocks_match_reference() {
    let cases = [
        (37, 23, 3, 3, 17, 19, ConvGeometry::new(1, 1, 1)),
        (40, 13, 3, 3, 36, 33, ConvGeometry::new(1, 1, 1)),
        (50, 7, 3, 3, 30, 31, ConvGeometry::new(1, 1, 1)),
        (30, 70, 5, 5, 12, 11, ConvGeometry::new(2, 2, 1)),
        (8, 12, 3, 3, 40, 41, ConvGeometry { groups: 4, ..ConvGeometry::new(1, 2, 2) }),
    ];
    for (i, &(c, n, kh, kw, h, w, g)) in cases.iter().enumerate() {
        let seed = i as u64;
        let x = FeatureMap::new(c, h, w, noise(c * h * w, seed)).unwrap();
        let k = Kernel::new(n, c / g.groups, kh, kw, noise(n * c / g.groups * kh * kw, seed ^ 9)).unwrap();
        let bias = noise(n, seed ^ 10);
        let want = reference_conv2d(&x, &k, Some(&bias), &g).unwrap();
        assert_close(&conv2d(&x, &k, Some(&bias), &g).unwrap(), &want, "conv2d large");
    }
}

/// Full-size decoupled layers (wide channels, both orders, stride 2, asymmetric padding).
#[test]
fn decoupled_large_matches_rebuilt_kernel() {
    let geom = ConvGeometry {
        stride: (2, 1),
        padding: Padding { top: 1, bottom: 0, left: 2, right: 1 },
        dilation: (1, 2),
        groups: 1,
    };
    for order in [Order::DwPw, Order::PwDw] {
        let (c, n, t) = (33, 29, 3);
        let m = random_merged(order, t, n, c, 1, (3, 3), 11);
        let w_t = match order {
            Order::DwPw => rebuild_dwpw(&m),
            Order::PwDw => rebuild_pwdw(&m),
        };
        let x = FeatureMap::new(c, 21, 18, noise(c * 21 * 18, 12)).unwrap();
        let bias = noise(n, 13);
        let want = reference_conv2d(&x, &w_t, Some(&bias), &geom).unwrap();
        assert_close(&decoupled_forward(&x, &m, Some(&bias), &geom).unwrap(), &want, "merged large");
        let br = branch_forward(&x, &to_branches(&m), order, n, 3, 3, Some(&bias), &geom).unwrap();
        assert_close(&br, &want, "branch large");
    }
}

/// 1×1 spatial inputs: a 1×1 kernel, and a 3×3 kernel that only sees the centre through padding 1.
#[test]
fn one_by_one_spatial_inputs() {
    let x = FeatureMap::new(5, 1, 1, noise(5, 20)).unwrap();
    for (kh, pad) in [(1usize, 0usize), (3, 1)] {
        let geom = ConvGeometry::new(1, pad, 1);
        let k = Kernel::new(7, 5, kh, kh, noise(7 * 5 * kh * kh, 21)).unwrap();
        let bias = noise(7, 22);
        let want = reference_conv2d(&x, &k, Some(&bias), &geom).unwrap();
        assert_eq!((want.c, want.h, want.w), (7, 1, 1));
        // Only the centre tap touches the input: y_n = Σ_c W[n, c, centre] x_c + b_n.
        let centre = (kh * kh) / 2;
        for (n, (&got, &b)) in want.data.iter().zip(&bias).enumerate() {
            let direct: f64 =
                (0..5).map(|c| k.data[(n * 5 + c) * kh * kh + centre] as f64 * x.data[c] as f64).sum::<f64>()
                    + b as f64;
            assert!((got as f64 - direct).abs() < 1e-5);
        }
        assert_close(&conv2d(&x, &k, Some(&bias), &geom).unwrap(), &want, "conv2d 1×1 input");
        for order in [Order::DwPw, Order::PwDw] {
            let m = random_merged(order, 2, 7, 5, 1, (kh, kh), 23);
            let w_t = match order {
                Order::DwPw => rebuild_dwpw(&m),
                Order::PwDw => rebuild_pwdw(&m),
            };
            let want = reference_conv2d(&x, &w_t, Some(&bias), &geom).unwrap();
            assert_close(&decoupled_forward(&x, &m, Some(&bias), &geom).unwrap(), &want, "merged 1×1 input");
        }
    }
}

/// End to end with the real decomposition: the merged and branch forwards of `Decomposition`'s
/// factors equal `conv(x, W_T) + b` with `W_T = reconstruct(T)` for every T, and the original conv
/// at full rank (METHOD.md checks 1, 2, 8), for both orders, groups 1 and 2, N < K² and C < K².
#[test]
fn decomposition_factors_run_as_the_rebuilt_conv() {
    use ndlab_core::decouple::Decomposition;
    let geoms = [
        ConvGeometry::new(1, 1, 1),
        ConvGeometry {
            stride: (2, 1),
            padding: Padding { top: 0, bottom: 2, left: 1, right: 0 },
            dilation: (1, 2),
            groups: 1,
        },
    ];
    // (n, c per group, groups): N < K² and C < K² included.
    for (i, &(n, cpg, groups)) in
        [(6usize, 4usize, 1usize), (12, 11, 1), (4, 3, 2), (16, 10, 2)].iter().enumerate()
    {
        let seed = 100 + i as u64;
        let k = Kernel::new(n, cpg, 3, 3, noise(n * cpg * 9, seed)).unwrap();
        let bias = noise(n, seed ^ 1);
        let x = FeatureMap::new(cpg * groups, 9, 8, noise(cpg * groups * 72, seed ^ 2)).unwrap();
        for base in geoms {
            let geom = ConvGeometry { groups, ..base };
            let original = reference_conv2d(&x, &k, Some(&bias), &geom).unwrap();
            for order in [Order::DwPw, Order::PwDw] {
                let d = Decomposition::new(&k, groups, order).unwrap();
                for t in 1..=d.full_rank {
                    let w_t = d.reconstruct(t).unwrap();
                    let want = reference_conv2d(&x, &w_t, Some(&bias), &geom).unwrap();
                    let merged = decoupled_forward(&x, &d.merged(t).unwrap(), Some(&bias), &geom).unwrap();
                    assert_close(&merged, &want, "decomposition merged");
                    let branches = d.branches(t).unwrap();
                    let br = branch_forward(&x, &branches, order, n, 3, 3, Some(&bias), &geom).unwrap();
                    assert_close(&br, &want, "decomposition branches");
                    if t == d.full_rank {
                        assert_close(&merged, &original, "full rank = original");
                    }
                }
            }
        }
    }
}

/// Decoupled forwards over inputs of several GEMM column blocks (> 768 pixels): the fused PW→DW
/// path runs its depthwise block by block as the pointwise rows complete; strides, dilation,
/// asymmetric padding and groups, against the scalar reference on the rebuilt kernel.
#[test]
fn decoupled_multi_block_inputs_match_rebuilt_kernel() {
    let geoms = [
        ConvGeometry::new(1, 1, 1),
        ConvGeometry {
            stride: (2, 1),
            padding: Padding { top: 0, bottom: 2, left: 1, right: 0 },
            dilation: (2, 1),
            groups: 1,
        },
        ConvGeometry {
            stride: (1, 2),
            padding: Padding { top: 2, bottom: 1, left: 0, right: 2 },
            dilation: (1, 2),
            groups: 3,
        },
    ];
    for (i, geom) in geoms.iter().enumerate() {
        for order in [Order::DwPw, Order::PwDw] {
            let (c, n, t) = (6, 9, 2);
            let m = random_merged(order, t, n, c, geom.groups, (3, 3), 40 + i as u64);
            let w_t = match order {
                Order::DwPw => rebuild_dwpw(&m),
                Order::PwDw => rebuild_pwdw(&m),
            };
            let (h, w) = (47, 39 + i);
            let x = FeatureMap::new(c, h, w, noise(c * h * w, 50 + i as u64)).unwrap();
            let bias = noise(n, 60);
            let want = reference_conv2d(&x, &w_t, Some(&bias), geom).unwrap();
            let got = decoupled_forward(&x, &m, Some(&bias), geom).unwrap();
            assert_close(&got, &want, &format!("{order:?} geometry {i}"));
        }
    }
}

/// The depthwise row kernel's column split (wide 32-column blocks, 8-column blocks, the
/// overlapping tail block, scalar borders) on every width from 1 to 75, against the reference.
#[test]
fn depthwise_every_width_matches_reference() {
    let mut ran = 0;
    for w in 1..=75usize {
        for (kw, pad, dil) in [(1, 0, 1), (3, 1, 1), (3, 0, 2), (5, 2, 1), (2, 1, 2)] {
            let (c, h, kh, mult) = (2, 5, 3, 2);
            if (kw - 1) * dil + 1 > w + 2 * pad {
                continue;
            }
            let geom = ConvGeometry {
                stride: (1, 1),
                padding: Padding { top: 1, bottom: 1, left: pad, right: pad },
                dilation: (1, dil),
                groups: 1,
            };
            let x = FeatureMap::new(c, h, w, noise(c * h * w, w as u64)).unwrap();
            let f = noise(c * mult * kh * kw, 99 + w as u64);
            let k = Kernel::new(c * mult, 1, kh, kw, f.clone()).unwrap();
            let want = reference_conv2d(&x, &k, None, &ConvGeometry { groups: c, ..geom }).unwrap();
            let got = depthwise(&x, &f, mult, kh, kw, &geom).unwrap();
            assert_close(&got, &want, &format!("w={w} kw={kw} pad={pad} dil={dil}"));
            ran += 1;
        }
    }
    // Skipped: only the dilated 3-wide filter without padding (extent 5) on widths 1..=4.
    assert_eq!(ran, 5 * 75 - 4, "cases that ran");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The fused DW→PW at horizontal stride 1 (depthwise computed from the zero-padded input in
    /// 8-pixel chunks, `src/conv/dw_pack.rs`) against the scalar reference on the rebuilt kernel:
    /// odd sizes (also widths below 8 and not multiples of 8, and inputs of several 512-pixel GEMM
    /// blocks), padding 0/1/2 per side, multipliers 1/2/4, K 1/3/5, channel counts that are not
    /// multiples of 8, vertical stride and dilation 1/2, groups 1/2.
    #[test]
    fn padded_dwpw_matches_rebuilt_kernel(
        h in 1usize..40, w in 1usize..40, k in prop::sample::select(vec![1usize, 3, 5]),
        t in prop::sample::select(vec![1usize, 2, 4]), cpg in 1usize..12, npg in 1usize..11,
        groups in 1usize..=2, pads in [0usize..=2, 0usize..=2, 0usize..=2, 0usize..=2],
        sh in 1usize..=2, dil in (1usize..=2, 1usize..=2), seed: u64,
    ) {
        let [pt, pb, pl, pr] = pads;
        let geom = ConvGeometry {
            stride: (sh, 1),
            padding: Padding { top: pt, bottom: pb, left: pl, right: pr },
            dilation: dil,
            groups,
        };
        let (c, n) = (cpg * groups, npg * groups);
        let cs = Case { h, w, kh: k, kw: k, geom, seed };
        let Some((ho, wo)) = expected_size(&cs) else { return Ok(()) };
        let m = random_merged(Order::DwPw, t, n, c, groups, (k, k), seed);
        let x = FeatureMap::new(c, h, w, noise(c * h * w, seed ^ 3)).unwrap();
        let bias = noise(n, seed ^ 4);
        let want = reference_conv2d(&x, &rebuild_dwpw(&m), Some(&bias), &geom).unwrap();
        prop_assert_eq!((want.h, want.w), (ho, wo));
        let got = decoupled_forward(&x, &m, Some(&bias), &geom).unwrap();
        assert_close(&got, &want, &format!("DW→PW {h}×{w}, k {k}, T {t}, c {c}, n {n}, {geom:?}"));
    }
}
