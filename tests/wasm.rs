//! The core and the worker's engine compiled to wasm and run in headless Chromium
//! (`wasm-bindgen-test-runner` + chromedriver; see scripts/test-all.sh): METHOD.md's identities
//! must hold in the browser build too.
#![cfg(target_arch = "wasm32")]

use ndlab_core::conv::{conv2d, decoupled_forward, depthwise, reference_conv2d};
use ndlab_core::decouple::Decomposition;
use ndlab_core::decouple::Merged;
use ndlab_core::{ConvGeometry, FeatureMap, Kernel, Order, Padding};
use ndlab_lab::engine::Engine;
use ndlab_lab::protocol::{Request, RequestBody, ResponseBody};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Deterministic values in [-1, 1) (a small LCG; no RNG crate needed).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt()
}

#[wasm_bindgen_test]
fn method_identities_hold_in_the_browser() {
    // N = 6 < K² = 9 and C = 4 < K²: both orderings have a full rank below K².
    let kernel = Kernel::new(6, 4, 3, 3, values(6 * 4 * 9, 7)).expect("kernel");
    let x = FeatureMap::new(4, 7, 6, values(4 * 7 * 6, 11)).expect("input");
    let geom = ConvGeometry::new(1, 1, 1);
    let bias = [0.5f32, -0.25, 0.0, 1.0, 2.0, -1.0];
    let full = conv2d(&x, &kernel, Some(&bias), &geom).expect("conv");
    for order in [Order::DwPw, Order::PwDw] {
        let d = Decomposition::new(&kernel, 1, order).expect("decouple");
        let errors = d.rel_weight_error();
        for t in 1..=d.full_rank {
            // Check 3: the weight error is the σ-tail formula, i.e. ‖W − W_T‖ / ‖W‖.
            let wt = d.reconstruct(t).expect("reconstruct");
            let diff: Vec<f32> = kernel.data.iter().zip(&wt.data).map(|(a, b)| a - b).collect();
            let direct = norm(&diff) / norm(&kernel.data);
            assert!((direct - errors[t - 1]).abs() < 1e-5, "{order:?} T={t}: {direct} vs {}", errors[t - 1]);
            // Check 1: the decoupled forward equals conv(x, W_T) + b.
            let y =
                decoupled_forward(&x, &d.merged(t).expect("merged"), Some(&bias), &geom).expect("forward");
            let want = conv2d(&x, &wt, Some(&bias), &geom).expect("conv W_T");
            assert!(y.rel_error(&want).expect("compare") < 1e-4, "{order:?} T={t}");
        }
        // Check 2: exact at full rank.
        let y = decoupled_forward(&x, &d.merged(d.full_rank).expect("merged"), Some(&bias), &geom)
            .expect("forward");
        assert!(y.rel_error(&full).expect("compare") < 1e-4);
        assert!(errors[d.full_rank - 1] < 1e-6);
    }
}

/// A little-endian f32 `.npy` file.
fn npy(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims.join(", "));
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    for v in data {
        out.extend(v.to_le_bytes());
    }
    out
}

#[wasm_bindgen_test]
fn the_engine_answers_in_the_browser() {
    let mut engine = Engine::new(|| 0.0);
    let body = RequestBody::LoadExample { example: "mtcnn_onet_conv1".into(), slice: None };
    let kernel = values(32 * 3 * 9, 3);
    for path in engine.assets_needed(&body) {
        engine.provide(&path, npy(&[32, 3, 3, 3], &kernel));
    }
    let resp = engine.handle(Request { id: 1, body }, &mut |_| {});
    let ResponseBody::Layer(summary) = resp.body else { panic!("{:?}", resp.body) };
    assert_eq!(summary.order(Order::PwDw).map(|o| o.spectra.full_rank), Some(3));
    let rgba: Vec<u8> = (0..16 * 12 * 4).map(|i| (i * 37 % 256) as u8).collect();
    let resp = engine
        .handle(Request { id: 2, body: RequestBody::LoadImage { rgba, width: 16, height: 12 } }, &mut |_| {});
    assert!(matches!(resp.body, ResponseBody::Input(_)), "{:?}", resp.body);
    let resp = engine.handle(
        Request { id: 3, body: RequestBody::Forward { t: 3, order: Order::PwDw, out_channel: 31 } },
        &mut |_| {},
    );
    let ResponseBody::Forward(f) = resp.body else { panic!("{:?}", resp.body) };
    assert!(f.rel_error < 1e-4, "full rank is exact: {}", f.rel_error);
    assert_eq!((f.maps.h, f.maps.w), (10, 14), "O-Net conv1 has no padding");
}

/// A small deterministic generator for shapes (xorshift).
struct Pick(u64);
impl Pick {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// A random geometry: stride 1–2, padding 0–2 per side, dilation 1–2.
fn random_geometry(p: &mut Pick, groups: usize) -> ConvGeometry {
    let padding = Padding { top: p.below(3), bottom: p.below(3), left: p.below(3), right: p.below(3) };
    ConvGeometry {
        stride: (1 + p.below(2), 1 + p.below(2)),
        padding,
        dilation: (1 + p.below(2), 1 + p.below(2)),
        groups,
    }
}

fn max_rel(a: &FeatureMap, b: &FeatureMap) -> f32 {
    assert_eq!((a.c, a.h, a.w), (b.c, b.h, b.w));
    let m = b.data.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    a.data.iter().zip(&b.data).fold(0.0f32, |d, (x, y)| d.max((x - y).abs())) / m
}

/// The SIMD128 kernels (packed GEMM, row-blocked depthwise, fused DW→PW and PW→DW) against the
/// scalar reference over random shapes: strides, padding, dilation, multipliers, groups, odd sizes,
/// and inputs large enough to cross the GEMM's block edges.
#[wasm_bindgen_test]
fn simd_kernels_match_the_scalar_reference_in_the_browser() {
    let mut p = Pick(0x9e3779b97f4a7c15);
    for case in 0..24u64 {
        let groups = [1, 2, 3][p.below(3)];
        let (c, n) = (groups * (1 + p.below(5)), groups * (1 + p.below(6)));
        let (kh, kw) = (1 + p.below(4), 1 + p.below(4));
        let big = case % 6 == 0;
        let (h, w) = if big {
            (30 + p.below(20), 31 + p.below(20))
        } else {
            (kh * 2 + p.below(9), kw * 2 + p.below(9))
        };
        let geom = random_geometry(&mut p, groups);
        let x = FeatureMap::new(c, h, w, values(c * h * w, case)).expect("input");
        let bias = values(n, case ^ 5);
        // Regular (grouped) conv.
        let k =
            Kernel::new(n, c / groups, kh, kw, values(n * c / groups * kh * kw, case ^ 1)).expect("kernel");
        let want = reference_conv2d(&x, &k, Some(&bias), &geom).expect("reference");
        let got = conv2d(&x, &k, Some(&bias), &geom).expect("conv2d");
        assert!(max_rel(&got, &want) < 1e-5, "conv2d case {case}");
        // Depthwise with multiplier = a grouped conv with one input channel per group.
        let mult = 1 + p.below(3);
        let filters = values(c * mult * kh * kw, case ^ 2);
        let dk = Kernel::new(c * mult, 1, kh, kw, filters.clone()).expect("dw kernel");
        let want = reference_conv2d(&x, &dk, None, &ConvGeometry { groups: c, ..geom }).expect("reference");
        let got = depthwise(&x, &filters, mult, kh, kw, &geom).expect("depthwise");
        assert!(max_rel(&got, &want) < 1e-5, "depthwise case {case}");
        // Fused decoupled forwards against the reference conv of the kernel they represent.
        let t = 1 + p.below(3);
        for order in [Order::DwPw, Order::PwDw] {
            let cg = c / groups;
            let (dw_len, pw_len) = match order {
                Order::DwPw => (c * t * kh * kw, n * cg * t),
                Order::PwDw => (n * t * kh * kw, n * t * cg),
            };
            let m = Merged {
                order,
                t,
                n,
                c_total: c,
                kh,
                kw,
                groups,
                dw: values(dw_len, case ^ 3),
                pw: values(pw_len, case ^ 4),
            };
            let k2 = kh * kw;
            let mut wt = vec![0.0f32; n * cg * k2];
            for o in 0..n {
                for ci in 0..cg {
                    for tt in 0..t {
                        let (f, d) = match order {
                            Order::DwPw => {
                                (m.pw[o * cg * t + ci * t + tt], ((o / (n / groups)) * cg + ci) * t + tt)
                            }
                            Order::PwDw => (m.pw[(o * t + tt) * cg + ci], o * t + tt),
                        };
                        for j in 0..k2 {
                            wt[(o * cg + ci) * k2 + j] += f * m.dw[d * k2 + j];
                        }
                    }
                }
            }
            let wk = Kernel::new(n, cg, kh, kw, wt).expect("W_T");
            let want = reference_conv2d(&x, &wk, Some(&bias), &geom).expect("reference");
            let got = decoupled_forward(&x, &m, Some(&bias), &geom).expect("decoupled");
            assert!(max_rel(&got, &want) < 1e-4, "{order:?} case {case}");
        }
    }
}

/// The SIMD128 GEMM across its k-block (512) and column-block (512) edges, with full and edge
/// tiles: a regular conv with K = 64·9 = 576 and 26·22 = 572 output pixels, and a DW→PW and a
/// PW→DW forward whose pointwise depth is 300·2 = 600, against the scalar reference.
#[wasm_bindgen_test]
fn simd_gemm_crosses_its_block_edges_in_the_browser() {
    let geom = ConvGeometry::new(1, 1, 1);
    let (c, n, h, w) = (64, 9, 26, 22);
    let x = FeatureMap::new(c, h, w, values(c * h * w, 21)).expect("input");
    let k = Kernel::new(n, c, 3, 3, values(n * c * 9, 22)).expect("kernel");
    let bias = values(n, 23);
    let want = reference_conv2d(&x, &k, Some(&bias), &geom).expect("reference");
    let got = conv2d(&x, &k, Some(&bias), &geom).expect("conv2d");
    assert!(max_rel(&got, &want) < 1e-5, "conv2d K = 576: {}", max_rel(&got, &want));
    // Decoupled forwards with C·T = 600 (DW→PW) and N·T = 600 (PW→DW), rebuilt as a conv.
    let (c, n, t, h, w) = (300, 7, 2, 9, 60);
    let x = FeatureMap::new(c, h, w, values(c * h * w, 24)).expect("input");
    for order in [Order::DwPw, Order::PwDw] {
        let (c, n) = if order == Order::PwDw { (n, c) } else { (c, n) };
        let x = if order == Order::PwDw {
            FeatureMap::new(c, h, w, values(c * h * w, 25)).expect("input")
        } else {
            x.clone()
        };
        let (dw_len, pw_len) = match order {
            Order::DwPw => (c * t * 9, n * c * t),
            Order::PwDw => (n * t * 9, n * t * c),
        };
        let m = Merged {
            order,
            t,
            n,
            c_total: c,
            kh: 3,
            kw: 3,
            groups: 1,
            dw: values(dw_len, 26),
            pw: values(pw_len, 27),
        };
        let mut wt = vec![0.0f32; n * c * 9];
        for o in 0..n {
            for ci in 0..c {
                for tt in 0..t {
                    let (f, d) = match order {
                        Order::DwPw => (m.pw[(o * c + ci) * t + tt], ci * t + tt),
                        Order::PwDw => (m.pw[(o * t + tt) * c + ci], o * t + tt),
                    };
                    for j in 0..9 {
                        wt[(o * c + ci) * 9 + j] += f * m.dw[d * 9 + j];
                    }
                }
            }
        }
        let wk = Kernel::new(n, c, 3, 3, wt).expect("W_T");
        let want = reference_conv2d(&x, &wk, None, &geom).expect("reference");
        let got = decoupled_forward(&x, &m, None, &geom).expect("decoupled");
        assert!(max_rel(&got, &want) < 1e-4, "{order:?}: {}", max_rel(&got, &want));
    }
}

/// The fast decoupling route (SIMD128 Gram, paired Jacobi in f64x2 lanes) in the browser: every
/// tall slice takes it, and its factors agree with one-sided Jacobi (no Gram matrix) and rebuild
/// the slice. Run with `--features relaxed-simd` (scripts/test-all.sh), this tests the FMA path:
/// `f64x2.relaxed_madd` in the Gram and `M V` tiles.
#[wasm_bindgen_test]
fn fast_decoupling_route_in_the_browser() {
    use ndlab_core::decouple::{slice_matrix, slice_shape};
    use ndlab_core::svd::svd_one_sided_jacobi;
    // 17 output and 13 input channels: odd slice counts (the last slice runs alone), tall slices.
    let kernel = Kernel::new(17, 13, 3, 3, values(17 * 13 * 9, 5)).expect("kernel");
    for order in [Order::DwPw, Order::PwDw] {
        let (d, routes) = Decomposition::new_counting(&kernel, 1, order).expect("decouple");
        let (count, rows, cols) = slice_shape(&kernel, 1, order).expect("shape");
        assert_eq!((routes.fast, routes.checked), (count, 0), "{order:?}");
        for (s, sl) in d.slices.iter().enumerate() {
            let m = slice_matrix(&kernel, 1, order, s).expect("slice");
            let oracle = svd_one_sided_jacobi(&m, rows, cols).expect("oracle");
            let smax = oracle.sigma[0];
            for (a, b) in sl.sigma.iter().zip(&oracle.sigma) {
                assert!((a - b).abs() <= 1e-12 * smax, "{order:?} slice {s}: σ {a} vs {b}");
            }
            for i in 0..rows {
                for j in 0..cols {
                    let x: f64 = (0..cols).map(|k| sl.pw[k * rows + i] * sl.dw[k * cols + j]).sum();
                    assert!((x - m[i * cols + j]).abs() <= 1e-13 * smax, "{order:?} slice {s} ({i}, {j})");
                }
            }
        }
    }
}

/// W_T of merged DW→PW factors, built directly: W[o, ci] = Σ_t pw[o, ci·T + t] · dw[(g·cg + ci)·T + t].
fn rebuild_dwpw(m: &Merged) -> Kernel {
    let (cg, k2, t, npg) = (m.c_total / m.groups, m.kh * m.kw, m.t, m.n / m.groups);
    let mut wt = vec![0.0f32; m.n * cg * k2];
    for o in 0..m.n {
        for ci in 0..cg {
            for tt in 0..t {
                let f = m.pw[(o * cg + ci) * t + tt];
                let d = ((o / npg) * cg + ci) * t + tt;
                for j in 0..k2 {
                    wt[(o * cg + ci) * k2 + j] += f * m.dw[d * k2 + j];
                }
            }
        }
    }
    Kernel::new(m.n, cg, m.kh, m.kw, wt).expect("W_T")
}

/// The fused DW→PW at horizontal stride 1 in SIMD128 (depthwise from the zero-padded input in
/// 8-pixel chunks, weights in registers) against the scalar reference on the rebuilt kernel:
/// K 1/3/5, multipliers 1/2/4, padding 0–2 per side, vertical stride and dilation 1–2, channel
/// counts that are not multiples of 8, widths from 1 (below and not multiples of 8) and inputs
/// of several 512-pixel GEMM blocks.
#[wasm_bindgen_test]
fn padded_dwpw_matches_the_scalar_reference_in_the_browser() {
    let mut p = Pick(0x2545f4914f6cdd1d);
    let mut ran = 0;
    for case in 0..40u64 {
        let groups = 1 + p.below(2);
        let (c, n) = (groups * (1 + p.below(11)), groups * (1 + p.below(9)));
        let k = [1, 3, 5][p.below(3)];
        let t = [1, 2, 4][p.below(3)];
        let (h, w) = if case % 8 == 0 {
            (24 + p.below(16), 30 + p.below(30))
        } else {
            (1 + p.below(14), 1 + p.below(21))
        };
        let geom = ConvGeometry {
            stride: (1 + p.below(2), 1),
            padding: Padding { top: p.below(3), bottom: p.below(3), left: p.below(3), right: p.below(3) },
            dilation: (1 + p.below(2), 1 + p.below(2)),
            groups,
        };
        let x = FeatureMap::new(c, h, w, values(c * h * w, case ^ 7)).expect("input");
        let m = Merged {
            order: Order::DwPw,
            t,
            n,
            c_total: c,
            kh: k,
            kw: k,
            groups,
            dw: values(c * t * k * k, case ^ 8),
            pw: values(n * (c / groups) * t, case ^ 9),
        };
        let bias = values(n, case ^ 10);
        let Ok(want) = reference_conv2d(&x, &rebuild_dwpw(&m), Some(&bias), &geom) else { continue };
        let got = decoupled_forward(&x, &m, Some(&bias), &geom).expect("decoupled");
        let err = max_rel(&got, &want);
        assert!(err < 1e-4, "case {case}: {c}→{n} {h}×{w} k {k} T {t} {geom:?}: {err}");
        ran += 1;
    }
    assert!(ran >= 25, "only {ran} of 40 shapes were valid");
}

/// The kernel label shown next to measured times matches the arithmetic (as in tests/fma.rs):
/// the default build multiplies and adds separately (a product's rounding error cancels to 0),
/// the `relaxed-simd` build (scripts/test-all.sh runs these tests with it too) fuses them in
/// Chromium on an FMA CPU (the error, 2⁻²⁴, remains).
#[wasm_bindgen_test]
fn the_kernel_label_matches_whether_the_gemm_fuses_in_the_browser() {
    let x = 1.0f32 + 1.0 / 4096.0;
    let r = x * x;
    let k = Kernel::new(1, 2, 1, 1, vec![-r, x]).expect("kernel");
    let input = FeatureMap::new(2, 1, 1, vec![1.0, x]).expect("input");
    let residue = conv2d(&input, &k, None, &ConvGeometry::new(1, 0, 1)).expect("conv").data[0];
    let label = ndlab_core::conv::kernels();
    if cfg!(feature = "relaxed-simd") {
        assert_eq!(label, "wasm SIMD128 + FMA (relaxed)");
        assert_eq!(residue, 2f32.powi(-24), "relaxed_madd fuses in Chromium on x86-64 with FMA3");
    } else {
        assert_eq!(label, "wasm SIMD128");
        assert_eq!(residue, 0.0, "SIMD128 multiplies and adds separately");
    }
}

/// The relatives' f64 GEMM takes its packed SIMD128 path in wasm only: checked here against the
/// textbook triple loop (views, transposes, shapes not multiples of the 4 × 4 tile, α and β ≠ 1).
#[wasm_bindgen_test]
fn packed_f64_gemm_of_the_relatives_in_the_browser() {
    for seed in [1, 2, 3] {
        let worst = ndlab_core::relatives::packed_gemm_self_check(seed);
        assert!(worst < 1e-13, "seed {seed}: {worst}");
    }
}

/// The comparison's CP-ALS in wasm (f32 contractions by the crate's SGEMM, the normal equations by
/// the packed f64 GEMM): its reported weight error equals the error of its own reconstruction, and
/// it recovers a kernel of CP rank 8 built by hand (256 × 256 × 3 × 3 at rank 8 is past
/// `F32_MIN_WORK`: the f32 path).
#[wasm_bindgen_test]
fn cp_als_on_the_browsers_gemms() {
    use ndlab_core::relatives::{no_progress, AlsOptions, Cp4, Relative};
    // A kernel of CP rank 8: Σ_r a_r ⊗ b_r ⊗ s_r (s_r a 3 × 3 outer product y_r ⊗ x_r).
    let (n, c, rank) = (256, 256, 8);
    assert!(n * c * 9 * rank >= ndlab_core::relatives::F32_MIN_WORK);
    let a = values(rank * n, 11);
    let b = values(rank * c, 12);
    let (y, x) = (values(rank * 3, 13), values(rank * 3, 14));
    let s: Vec<f32> = (0..rank * 9).map(|i| y[(i / 9) * 3 + (i % 9) / 3] * x[(i / 9) * 3 + i % 3]).collect();
    let mut w = vec![0.0f32; n * c * 9];
    for r in 0..rank {
        for o in 0..n {
            for i in 0..c {
                for k in 0..9 {
                    w[(o * c + i) * 9 + k] += a[r * n + o] * b[r * c + i] * s[r * 9 + k];
                }
            }
        }
    }
    let k = Kernel::new(n, c, 3, 3, w.clone()).unwrap();
    let cp = Cp4::new(&k, rank, &AlsOptions::default(), &mut no_progress()).unwrap();
    let rec = cp.reconstruct().unwrap();
    let diff: Vec<f32> = rec.data.iter().zip(&w).map(|(x, y)| x - y).collect();
    let own = norm(&diff) / norm(&w);
    assert!((cp.rel_weight_error() - own).abs() < 1e-5, "{} vs {own}", cp.rel_weight_error());
    assert!(own < 1e-3, "rank {rank} recovered: {own}");
}
