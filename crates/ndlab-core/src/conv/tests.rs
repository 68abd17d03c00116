//! Unit tests of the conv kernels: hand-computed cases, the GEMM against a naive product,
//! the depthwise column ranges against brute force, and shape/parameter errors.

use super::dw::valid_range;
use super::gemm::{gemm, gemm_portable, MatB};
use super::*;
use crate::layer::Padding;

fn map(c: usize, h: usize, w: usize, data: Vec<f32>) -> FeatureMap {
    FeatureMap::new(c, h, w, data).unwrap()
}

fn kernel(n: usize, c: usize, kh: usize, kw: usize, data: Vec<f32>) -> Kernel {
    Kernel::new(n, c, kh, kw, data).unwrap()
}

fn seq(len: usize) -> Vec<f32> {
    (1..=len).map(|v| v as f32).collect()
}

/// Deterministic values in [-1, 1) (also used by `dw_pack_tests`).
pub(super) fn noise(len: usize, seed: u64) -> Vec<f32> {
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

/// Both the fast and the reference conv, checked to agree with the hand-computed values.
fn assert_conv(
    x: &FeatureMap,
    k: &Kernel,
    bias: Option<&[f32]>,
    g: &ConvGeometry,
    shape: (usize, usize, usize),
    want: &[f32],
) {
    for y in [conv2d(x, k, bias, g).unwrap(), reference_conv2d(x, k, bias, g).unwrap()] {
        assert_eq!((y.c, y.h, y.w), shape);
        for (a, b) in y.data.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{:?} != {:?}", y.data, want);
        }
    }
}

#[test]
fn hand_2x2_kernel_on_3x3_input() {
    // y[i,j] = x[i,j] − x[i+1,j+1] = −4 for x = 1..9 row-major.
    let x = map(1, 3, 3, seq(9));
    let k = kernel(1, 1, 2, 2, vec![1.0, 0.0, 0.0, -1.0]);
    assert_conv(&x, &k, None, &ConvGeometry::default(), (1, 2, 2), &[-4.0; 4]);
    assert_conv(&x, &k, Some(&[0.5]), &ConvGeometry::default(), (1, 2, 2), &[-3.5; 4]);
}

#[test]
fn hand_padding_one_on_3x3_input() {
    // Padded grid xp (5×5, zero border); y[i,j] = xp[i,j] − xp[i+1,j+1].
    let x = map(1, 3, 3, seq(9));
    let k = kernel(1, 1, 2, 2, vec![1.0, 0.0, 0.0, -1.0]);
    #[rustfmt::skip]
    let want = [
        -1.0, -2.0, -3.0, 0.0,
        -4.0, -4.0, -4.0, 3.0,
        -7.0, -4.0, -4.0, 6.0,
        0.0, 7.0, 8.0, 9.0,
    ];
    assert_conv(&x, &k, None, &ConvGeometry::new(1, 1, 1), (1, 4, 4), &want);
}

#[test]
fn hand_stride_dilation_asymmetric_padding() {
    // Stride 2, 1×1 kernel of 2 on a 4×4 ramp: picks x[0,0], x[0,2], x[2,0], x[2,2].
    let x = map(1, 4, 4, seq(16));
    let k = kernel(1, 1, 1, 1, vec![2.0]);
    assert_conv(&x, &k, None, &ConvGeometry::new(2, 0, 1), (1, 2, 2), &[2.0, 6.0, 18.0, 22.0]);
    // Dilation 2, 2×2 ones on 3×3: the four corners 1 + 3 + 7 + 9.
    let x = map(1, 3, 3, seq(9));
    let k = kernel(1, 1, 2, 2, vec![1.0; 4]);
    assert_conv(&x, &k, None, &ConvGeometry::new(1, 0, 2), (1, 1, 1), &[20.0]);
    // Left padding 2, right 0: [0 0 1 2 3] ⋆ [1 1] = [0 1 3 5].
    let x = map(1, 1, 3, seq(3));
    let k = kernel(1, 1, 1, 2, vec![1.0, 1.0]);
    let g = ConvGeometry { padding: Padding { top: 0, bottom: 0, left: 2, right: 0 }, ..Default::default() };
    assert_conv(&x, &k, None, &g, (1, 1, 4), &[0.0, 1.0, 3.0, 5.0]);
}

#[test]
fn hand_groups_and_channels() {
    // Two groups of one channel: out0 = 1·x0, out1 = −1·x1 (1×1), plus bias.
    let x = map(2, 1, 2, vec![1.0, 2.0, 3.0, 4.0]);
    let k = kernel(2, 1, 1, 1, vec![1.0, -1.0]);
    let g = ConvGeometry { groups: 2, ..Default::default() };
    assert_conv(&x, &k, Some(&[10.0, 20.0]), &g, (2, 1, 2), &[11.0, 12.0, 17.0, 16.0]);
    // One group: out = x0 + 2·x1.
    let k = kernel(1, 2, 1, 1, vec![1.0, 2.0]);
    assert_conv(&x, &k, None, &ConvGeometry::default(), (1, 1, 2), &[7.0, 10.0]);
}

#[test]
fn hand_depthwise_with_multiplier() {
    // Channel 0 = [1 2 3], channel 1 = [4 5 6]; 1×2 filters, multiplier 2, no padding.
    let x = map(2, 1, 3, seq(6));
    let f = vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, -1.0];
    let y = depthwise(&x, &f, 2, 1, 2, &ConvGeometry::default()).unwrap();
    assert_eq!((y.c, y.h, y.w), (4, 1, 2));
    assert_eq!(y.data, vec![1.0, 2.0, 2.0, 3.0, 9.0, 11.0, -1.0, -1.0]);
}

#[test]
fn hand_pointwise() {
    let x = map(2, 1, 2, vec![1.0, 2.0, 3.0, 4.0]);
    let y = pointwise(&x, &[1.0, 1.0, 2.0, -1.0, 0.0, 1.0], 3, 1, Some(&[0.0, 0.5, 1.0])).unwrap();
    assert_eq!((y.c, y.h, y.w), (3, 1, 2));
    assert_eq!(y.data, vec![4.0, 6.0, -0.5, 0.5, 4.0, 5.0]);
}

#[test]
fn valid_range_matches_brute_force() {
    for w in 1..9 {
        for pad in 0..4 {
            for stride in 1..4 {
                for off in 0..9 {
                    let wo = 12;
                    let inside: Vec<usize> = (0..wo)
                        .filter(|&ox| {
                            let ix = (ox * stride + off) as isize - pad as isize;
                            ix >= 0 && ix < w as isize
                        })
                        .collect();
                    let (lo, hi) = valid_range(off, pad, stride, w, wo);
                    assert_eq!((lo..hi).collect::<Vec<_>>(), inside, "w {w} pad {pad} s {stride} off {off}");
                }
            }
        }
    }
}

fn naive_matmul(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            for j in 0..n {
                c[i * n + j] += a[i * k + p] as f64 * b[p * n + j] as f64;
            }
        }
    }
    c
}

#[test]
fn gemm_matches_naive_product_across_block_edges() {
    // Sizes straddling the tile (4×8, 6×16) and block (KC = 384 / 512, NC = 768 / 512, MC = 120)
    // edges.
    for &(m, k, n) in &[
        (1, 1, 1),
        (5, 3, 17),
        (7, 385, 9),
        (97, 300, 33),
        (13, 20, 1030),
        (6, 800, 16),
        (7, 770, 770),
        (125, 1030, 515),
    ] {
        let a = noise(m * k, 1);
        let b = noise(k * n, 2);
        let want = naive_matmul(m, k, n, &a, &b);
        for portable in [false, true] {
            let mut c = vec![1.0f32; m * n];
            let src = MatB { data: &b, ld: n };
            if portable {
                gemm_portable(m, k, n, &a, &src, &mut c, n);
            } else {
                gemm(m, k, n, &a, &src, &mut c, n);
            }
            for (i, (&got, &w)) in c.iter().zip(&want).enumerate() {
                assert!(
                    (got as f64 - 1.0 - w).abs() < 1e-4 * (k as f64).sqrt(),
                    "({m},{k},{n}) portable {portable} at {i}: {got} vs {}",
                    w + 1.0
                );
            }
        }
    }
}

#[test]
fn errors_not_panics() {
    let x = map(4, 5, 5, noise(100, 3));
    let k = kernel(6, 2, 3, 3, noise(108, 4));
    let g2 = ConvGeometry { groups: 2, ..Default::default() };
    assert!(conv2d(&x, &k, None, &g2).is_ok());
    // Wrong channel count (groups 1 needs c = 4 per group).
    assert!(matches!(conv2d(&x, &k, None, &ConvGeometry::default()), Err(Error::Shape(_))));
    // Groups not dividing.
    let g3 = ConvGeometry { groups: 3, ..Default::default() };
    assert!(matches!(conv2d(&x, &k, None, &g3), Err(Error::Shape(_))));
    let g0 = ConvGeometry { groups: 0, ..Default::default() };
    assert!(matches!(conv2d(&x, &k, None, &g0), Err(Error::Param(_))));
    // Bias length.
    assert!(matches!(conv2d(&x, &k, Some(&[0.0; 5]), &g2), Err(Error::Shape(_))));
    // Stride 0.
    let s0 = ConvGeometry { stride: (0, 1), groups: 2, ..Default::default() };
    assert!(matches!(conv2d(&x, &k, None, &s0), Err(Error::Param(_))));
    // Kernel larger than the padded input.
    let big = kernel(2, 2, 7, 3, noise(84, 5));
    assert!(matches!(conv2d(&x, &big, None, &g2), Err(Error::Shape(_))));
    assert!(matches!(reference_conv2d(&x, &big, None, &g2), Err(Error::Shape(_))));
    // Inconsistent data lengths.
    let bad_x = FeatureMap { c: 4, h: 5, w: 5, data: vec![0.0; 99] };
    assert!(matches!(conv2d(&bad_x, &k, None, &g2), Err(Error::Shape(_))));
    let bad_k = Kernel { n: 6, c: 2, kh: 3, kw: 3, data: vec![0.0; 10] };
    assert!(matches!(conv2d(&x, &bad_k, None, &g2), Err(Error::Shape(_))));
    // Depthwise: filter length, multiplier 0, too-large kernel.
    let g = ConvGeometry::default();
    assert!(matches!(depthwise(&x, &[0.0; 35], 1, 3, 3, &g), Err(Error::Shape(_))));
    assert!(matches!(depthwise(&x, &[], 0, 3, 3, &g), Err(Error::Param(_))));
    assert!(matches!(depthwise(&x, &[0.0; 4 * 36], 1, 6, 6, &g), Err(Error::Shape(_))));
    // Pointwise: weights, groups, bias.
    assert!(matches!(pointwise(&x, &[0.0; 7], 2, 1, None), Err(Error::Shape(_))));
    assert!(matches!(pointwise(&x, &[0.0; 6], 3, 2, None), Err(Error::Shape(_))));
    assert!(matches!(pointwise(&x, &[0.0; 8], 2, 1, Some(&[0.0])), Err(Error::Shape(_))));
    assert!(matches!(pointwise(&x, &[0.0; 8], 2, 0, None), Err(Error::Param(_))));
}

fn merged(order: Order, t: usize, n: usize, c: usize, groups: usize, dw: usize, pw: usize) -> Merged {
    Merged { order, t, n, c_total: c, kh: 3, kw: 3, groups, dw: noise(dw, 6), pw: noise(pw, 7) }
}

#[test]
fn decoupled_errors_not_panics() {
    let x = map(4, 5, 5, noise(100, 3));
    let g = ConvGeometry::new(1, 1, 1);
    // DW→PW, T = 2, N = 6: dw 4·2·9, pw 6 × 8.
    let ok = merged(Order::DwPw, 2, 6, 4, 1, 72, 48);
    assert!(decoupled_forward(&x, &ok, None, &g).is_ok());
    assert!(matches!(decoupled_forward(&x, &ok, Some(&[0.0; 2]), &g), Err(Error::Shape(_))));
    let short = merged(Order::DwPw, 2, 6, 4, 1, 71, 48);
    assert!(matches!(decoupled_forward(&x, &short, None, &g), Err(Error::Shape(_))));
    let wrong_c = merged(Order::DwPw, 2, 6, 5, 1, 90, 60);
    assert!(matches!(decoupled_forward(&x, &wrong_c, None, &g), Err(Error::Shape(_))));
    let t0 = merged(Order::DwPw, 0, 6, 4, 1, 0, 0);
    assert!(matches!(decoupled_forward(&x, &t0, None, &g), Err(Error::Param(_))));
    let grouped = merged(Order::PwDw, 2, 6, 4, 2, 108, 24);
    assert!(matches!(decoupled_forward(&x, &grouped, None, &g), Err(Error::Param(_))));
    let g2 = ConvGeometry { groups: 2, ..g };
    assert!(decoupled_forward(&x, &grouped, None, &g2).is_ok());
    // Absurd sizes give an error, not an overflow panic.
    let huge = Merged { n: usize::MAX / 2, ..merged(Order::PwDw, 4, 6, 4, 1, 0, 0) };
    assert!(decoupled_forward(&x, &huge, None, &g).is_err());
    let huge_t = Merged { t: usize::MAX / 3, ..merged(Order::DwPw, 2, 6, 4, 1, 0, 0) };
    assert!(decoupled_forward(&x, &huge_t, None, &g).is_err());
    let one = Branch { dw: vec![], pw: vec![] };
    assert!(
        branch_forward(&x, std::slice::from_ref(&one), Order::PwDw, usize::MAX / 2, 3, 3, None, &g).is_err()
    );
    assert!(pointwise(&x, &[], usize::MAX / 2 * 2, 2, None).is_err());
    assert!(depthwise(&x, &[], usize::MAX / 2, 3, 3, &g).is_err());
    // Branch form: empty, wrong sizes, bias.
    assert!(matches!(branch_forward(&x, &[], Order::DwPw, 6, 3, 3, None, &g), Err(Error::Param(_))));
    let b = Branch { dw: noise(36, 8), pw: noise(24, 9) };
    assert!(branch_forward(&x, std::slice::from_ref(&b), Order::DwPw, 6, 3, 3, None, &g).is_ok());
    assert!(matches!(
        branch_forward(&x, std::slice::from_ref(&b), Order::PwDw, 6, 3, 3, None, &g),
        Err(Error::Shape(_))
    ));
    assert!(matches!(branch_forward(&x, &[b], Order::DwPw, 6, 3, 3, Some(&[1.0]), &g), Err(Error::Shape(_))));
}

/// The padded im2col source packs exactly the im2col matrix of its definition (computed here
/// value by value from the unpadded input, zero outside it) into panel layout, for panel widths
/// 8, 16 (fixed-size copies) and 5 (generic), panels inside and across output rows, and blocks
/// starting anywhere.
#[test]
fn padded_im2col_packs_the_im2col_matrix() {
    use super::gemm::BSource;
    use super::im2col::{Padded, PaddedIm2colB};
    // (c, h, w, kh, kw, vertical stride, dilation, padding t/b/l/r)
    let cases = [
        (2, 7, 16, 3, 3, 1, (1, 1), (1, 1, 1, 1)),
        (3, 9, 11, 3, 2, 2, (1, 2), (2, 0, 1, 3)),
        (1, 5, 5, 1, 1, 1, (1, 1), (0, 0, 0, 0)),
        (2, 12, 24, 5, 3, 1, (2, 1), (0, 2, 2, 0)),
    ];
    for (case, &(c, h, w, kh, kw, sh, dil, (pt, pb, pl, pr))) in cases.iter().enumerate() {
        let geom = ConvGeometry {
            stride: (sh, 1),
            padding: Padding { top: pt, bottom: pb, left: pl, right: pr },
            dilation: dil,
            groups: 1,
        };
        let (ho, wo) = geom.output_size(h, w, kh, kw).unwrap();
        let x = noise(c * h * w, case as u64 + 40);
        // im2col value by value from the definition.
        let (k, n) = (c * kh * kw, ho * wo);
        let mut want = vec![0.0f32; k * n];
        for (row, chunk) in want.chunks_exact_mut(n).enumerate() {
            let (ci, ky, kx) = (row / (kh * kw), (row / kw) % kh, row % kw);
            for (j, v) in chunk.iter_mut().enumerate() {
                let iy = ((j / wo) * sh + ky * dil.0) as isize - pt as isize;
                let ix = ((j % wo) + kx * dil.1) as isize - pl as isize;
                if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
                    *v = x[(ci * h + iy as usize) * w + ix as usize];
                }
            }
        }
        let xp = Padded::new(&x, c, h, w, &geom);
        let src = PaddedIm2colB { xp: &xp.data, hp: xp.hp, wp: xp.wp, kh, kw, wo, sh, dilation: dil };
        for nr in [8usize, 16, 5] {
            for (k0, kc, j0, nc) in [(0, k, 0, n), (1, k - 1, 3, n - 3), (k / 2, k - k / 2, n / 3, n / 2)] {
                let mut dst = vec![f32::NAN; kc * nc.div_ceil(nr) * nr];
                src.pack(nr, k0, kc, j0, nc, &mut dst);
                for (i, &got) in dst.iter().enumerate() {
                    let (q, p, jj) = (i / (kc * nr), (i / nr) % kc, i % nr);
                    let j = q * nr + jj;
                    let expect = if j < nc { want[(k0 + p) * n + j0 + j] } else { 0.0 };
                    assert_eq!(got, expect, "case {case} nr {nr} block ({k0},{kc},{j0},{nc}) at {i}");
                }
            }
        }
    }
}
