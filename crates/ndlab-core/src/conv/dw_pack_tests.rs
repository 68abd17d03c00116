//! The padded depthwise source ([`PaddedDepthwiseB`]) against a scalar f64 depthwise computed
//! straight from the unpadded input: every packed value of random blocks (panel layout, zero
//! columns past the block), over random shapes, paddings, multipliers, filter sizes, dilations,
//! vertical strides and widths from 1 up.

use super::dw::PlaneGeom;
use super::dw_pack::{PaddedDepthwiseB, PaddedPlanes};
use super::gemm::BSource;
use super::tests::noise;
use crate::layer::{ConvGeometry, FeatureMap, Padding};

/// A small deterministic generator of shape parameters.
struct Pick(u64);
impl Pick {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One random depthwise case.
struct Case {
    x: FeatureMap,
    filters: Vec<f32>,
    mult: usize,
    geom: ConvGeometry,
    g: PlaneGeom,
}

/// Depthwise output of intermediate channel `k` at pixel `j`, in f64 from the unpadded input.
fn oracle(cs: &Case, k: usize, j: usize) -> f64 {
    let g = &cs.g;
    let (oy, ox) = (j / g.wo, j % g.wo);
    let (ci, k2) = (k / cs.mult, g.kh * g.kw);
    let p = cs.geom.padding;
    let mut acc = 0.0f64;
    for ky in 0..g.kh {
        for kx in 0..g.kw {
            let iy = (oy * g.stride.0 + ky * g.dilation.0) as isize - p.top as isize;
            let ix = (ox * g.stride.1 + kx * g.dilation.1) as isize - p.left as isize;
            if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                continue;
            }
            let v = cs.x.data[(ci * g.h + iy as usize) * g.w + ix as usize];
            acc += f64::from(cs.filters[k * k2 + ky * g.kw + kx]) * f64::from(v);
        }
    }
    acc
}

/// A case of `c` channels of `h × w` with the given filter, padding, dilation and strides.
#[allow(clippy::too_many_arguments)]
fn case(
    c: usize,
    h: usize,
    w: usize,
    mult: usize,
    k: (usize, usize),
    pad: Padding,
    dil: (usize, usize),
    sh: usize,
    seed: u64,
) -> Option<Case> {
    let geom = ConvGeometry { stride: (sh, 1), padding: pad, dilation: dil, groups: 1 };
    let (ho, wo) = geom.output_size(h, w, k.0, k.1).ok()?;
    let x = FeatureMap::new(c, h, w, noise(c * h * w, seed)).ok()?;
    let g = PlaneGeom {
        h,
        w,
        kh: k.0,
        kw: k.1,
        ho,
        wo,
        stride: (sh, 1),
        dilation: dil,
        pad: (pad.top, pad.left),
    };
    Some(Case { x, filters: noise(c * mult * k.0 * k.1, seed + 1), mult, geom, g })
}

/// Packs blocks `(k0, kc, j0, nc)` with panels of `nr` and checks every value.
fn check_blocks(cs: &Case, nr: usize, blocks: &[(usize, usize, usize, usize)], what: &str) {
    let xp = PaddedPlanes::new(&cs.x, &cs.geom).unwrap();
    let b = PaddedDepthwiseB::new(&xp.data, (xp.hp, xp.wp), cs.x.c, &cs.filters, cs.mult, &cs.g)
        .unwrap_or_else(|| panic!("{what}: the padded source refused the geometry"));
    let k2 = cs.g.kh * cs.g.kw;
    for &(k0, kc, j0, nc) in blocks {
        let panels = nc.div_ceil(nr);
        let mut dst = vec![f32::NAN; panels * kc * nr];
        b.pack(nr, k0, kc, j0, nc, &mut dst);
        for q in 0..panels {
            for p in 0..kc {
                for jj in 0..nr {
                    let got = dst[(q * kc + p) * nr + jj];
                    let col = q * nr + jj;
                    let want = if col < nc { oracle(cs, k0 + p, j0 + col) } else { 0.0 };
                    let scale: f64 =
                        cs.filters[(k0 + p) * k2..][..k2].iter().map(|v| f64::from(v.abs())).sum();
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-6 * scale.max(1.0),
                        "{what}: block {k0}+{kc} × {j0}+{nc}, nr {nr}: B[{}, {}] = {got}, want {want}",
                        k0 + p,
                        j0 + col
                    );
                }
            }
        }
    }
}

/// The blocks of the GEMM walk (depth `kcb`, width `ncb`) plus a few odd windows.
fn blocks(k: usize, n: usize, kcb: usize, ncb: usize, p: &mut Pick) -> Vec<(usize, usize, usize, usize)> {
    let mut out = Vec::new();
    for j0 in (0..n).step_by(ncb) {
        for k0 in (0..k).step_by(kcb) {
            out.push((k0, kcb.min(k - k0), j0, ncb.min(n - j0)));
        }
    }
    for _ in 0..3 {
        let (k0, j0) = (p.below(k), p.below(n));
        out.push((k0, 1 + p.below(k - k0), j0, 1 + p.below(n - j0)));
    }
    out
}

#[test]
fn padded_depthwise_blocks_match_scalar_oracle_random_shapes() {
    let mut p = Pick(0x9e37_79b9_7f4a_7c15);
    let filters = [(1, 1), (3, 3), (5, 5), (2, 3), (3, 1)];
    let mut ran = 0;
    for i in 0..120u64 {
        let c = 1 + p.below(11);
        let mult = [1, 2, 4][p.below(3)];
        let k = filters[p.below(filters.len())];
        let pad = Padding { top: p.below(3), bottom: p.below(3), left: p.below(3), right: p.below(3) };
        let dil = (1 + p.below(2), 1 + usize::from(p.below(4) == 0));
        let sh = 1 + usize::from(p.below(4) == 0);
        let (h, w) = (1 + p.below(23), 1 + p.below(41));
        let Some(cs) = case(c, h, w, mult, k, pad, dil, sh, 100 + i) else { continue };
        let (kk, n) = (c * mult, cs.g.ho * cs.g.wo);
        let (kcb, ncb) = (1 + p.below(kk), 1 + p.below(n.min(200)));
        let nr = [8, 16][p.below(2)];
        let what =
            format!("case {i}: c {c} × {mult}, {h}×{w}, k {k:?}, pad {pad:?}, dil {dil:?}, stride ({sh}, 1)");
        check_blocks(&cs, nr, &blocks(kk, n, kcb, ncb, &mut p), &what);
        ran += 1;
    }
    assert!(ran >= 80, "only {ran} of 120 random shapes were valid");
}

#[test]
fn padded_depthwise_every_width_matches_scalar_oracle() {
    let mut p = Pick(7);
    let mut ran = 0;
    for w in 1..=70usize {
        for (k, pad, dil) in
            [((3, 3), 1, (1, 1)), ((1, 1), 0, (1, 1)), ((5, 5), 2, (1, 1)), ((3, 3), 0, (2, 2))]
        {
            let Some(cs) = case(3, 5, w, 2, k, Padding::uniform(pad), dil, 1, w as u64) else { continue };
            let n = cs.g.ho * cs.g.wo;
            for nr in [8, 16] {
                check_blocks(
                    &cs,
                    nr,
                    &blocks(6, n, 4, 24, &mut p),
                    &format!("width {w}, k {k:?}, dil {dil:?}"),
                );
            }
            ran += 1;
        }
    }
    // Skipped: only the dilated 3×3 without padding (extent 5) on widths 1..=4.
    assert_eq!(ran, 4 * 70 - 4, "cases that ran");
}

/// The VGG-like case the fast path exists for: 56 × 56, 3 × 3, padding 1, 512-wide blocks whose
/// edges fall inside output rows.
#[test]
fn padded_depthwise_layer_sized_blocks_match_scalar_oracle() {
    let cs = case(9, 56, 56, 2, (3, 3), Padding::uniform(1), (1, 1), 1, 3).unwrap();
    let mut p = Pick(11);
    check_blocks(&cs, 8, &blocks(18, 56 * 56, 16, 512, &mut p), "56 × 56");
}

#[test]
fn padded_depthwise_refuses_horizontal_stride_and_short_buffers() {
    let cs = case(2, 6, 6, 1, (3, 3), Padding::uniform(1), (1, 1), 1, 5).unwrap();
    let xp = PaddedPlanes::new(&cs.x, &cs.geom).unwrap();
    let planes = (xp.hp, xp.wp);
    assert!(PaddedDepthwiseB::new(&xp.data, planes, 2, &cs.filters, 1, &cs.g).is_some());
    let strided = PlaneGeom { stride: (1, 2), wo: 3, ..cs.g };
    assert!(PaddedDepthwiseB::new(&xp.data, planes, 2, &cs.filters, 1, &strided).is_none());
    // Without the margin after the planes, or with too few filters, the source is refused.
    let short = &xp.data[..xp.data.len() - 1];
    assert!(PaddedDepthwiseB::new(short, planes, 2, &cs.filters, 1, &cs.g).is_none());
    assert!(PaddedDepthwiseB::new(&xp.data, planes, 2, &cs.filters[..17], 1, &cs.g).is_none());
    assert!(PaddedDepthwiseB::new(&xp.data, planes, 3, &cs.filters, 1, &cs.g).is_none());
}
