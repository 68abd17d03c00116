//! Conv inference on CHW feature maps: regular (grouped) conv2d via im2col + blocked GEMM,
//! depthwise with multiplier, pointwise, and the decoupled forward of both orderings.
//! `reference_conv2d` is the direct scalar oracle the fast kernels are tested against.
//!
//! Every function validates its shapes and returns [`Error::Shape`] / [`Error::Param`] instead of
//! panicking. Nothing here spawns threads (it runs in wasm).

mod dw;
mod dw_pack;
#[cfg(test)]
mod dw_pack_tests;
mod gemm;
pub(crate) use gemm::gemm as sgemm;
mod im2col;
#[cfg(test)]
mod tests;

use crate::decouple::{Branch, Merged};
use crate::error::{Error, Result};
use crate::layer::{checked_len, ConvGeometry, ConvLayer, FeatureMap, Kernel, Order};
use dw::PlaneGeom;
use dw_pack::{PaddedDepthwiseB, PaddedPlanes};
pub(crate) use gemm::MatB;
use gemm::{gemm, gemm_then, DepthwiseB, Im2colB};
use im2col::{Padded, PaddedIm2colB};
use std::ops::Range;

/// Checks that a feature map's data length matches its shape.
fn check_map(x: &FeatureMap) -> Result<()> {
    let len = checked_len(&[x.c, x.h, x.w])?;
    if x.data.len() != len {
        return Err(Error::Shape(format!(
            "feature map {}×{}×{} needs {len} values, got {}",
            x.c,
            x.h,
            x.w,
            x.data.len()
        )));
    }
    Ok(())
}

/// Checks an optional bias against the number of output channels.
fn check_bias(bias: Option<&[f32]>, n: usize) -> Result<()> {
    match bias {
        Some(b) if b.len() != n => {
            Err(Error::Shape(format!("bias has {} values for {n} output channels", b.len())))
        }
        _ => Ok(()),
    }
}

/// Checks that `groups` is at least 1 and divides both channel counts.
fn check_groups(groups: usize, c: usize, n: usize) -> Result<()> {
    if groups == 0 {
        return Err(Error::Param("groups must be at least 1".into()));
    }
    if c % groups != 0 || n % groups != 0 {
        return Err(Error::Shape(format!(
            "{c} input and {n} output channels cannot be split into {groups} groups"
        )));
    }
    Ok(())
}

/// Validates a regular conv and returns (ho, wo).
fn check_conv(
    x: &FeatureMap,
    kernel: &Kernel,
    bias: Option<&[f32]>,
    geom: &ConvGeometry,
) -> Result<(usize, usize)> {
    check_map(x)?;
    let len = checked_len(&[kernel.n, kernel.c, kernel.kh, kernel.kw])?;
    if kernel.data.len() != len {
        return Err(Error::Shape(format!(
            "kernel {}×{}×{}×{} needs {len} values, got {}",
            kernel.n,
            kernel.c,
            kernel.kh,
            kernel.kw,
            kernel.data.len()
        )));
    }
    check_groups(geom.groups, x.c, kernel.n)?;
    if kernel.c * geom.groups != x.c {
        return Err(Error::Shape(format!(
            "kernel expects {}×{} = {} input channels, the input has {}",
            kernel.c,
            geom.groups,
            kernel.c * geom.groups,
            x.c
        )));
    }
    check_bias(bias, kernel.n)?;
    let (ho, wo) = geom.output_size(x.h, x.w, kernel.kh, kernel.kw)?;
    checked_len(&[kernel.n, ho, wo])?;
    Ok((ho, wo))
}

/// An output map of `c` channels of `ho × wo`, each channel filled with its bias (or zeros).
fn biased_output(c: usize, ho: usize, wo: usize, bias: Option<&[f32]>) -> Result<FeatureMap> {
    let len = checked_len(&[c, ho, wo])?;
    let mut data = vec![0.0f32; len];
    if let Some(b) = bias {
        for (plane, &v) in data.chunks_exact_mut(ho * wo).zip(b) {
            plane.fill(v);
        }
    }
    Ok(FeatureMap { c, h: ho, w: wo, data })
}

/// Adds `bias[i]` to every value of channel `i`.
fn add_bias(y: &mut FeatureMap, bias: Option<&[f32]>) {
    if let Some(b) = bias {
        let hw = y.h * y.w;
        for (plane, &v) in y.data.chunks_exact_mut(hw).zip(b) {
            plane.iter_mut().for_each(|o| *o += v);
        }
    }
}

/// The GEMM kernels this build runs on this machine ("wasm SIMD128 + FMA (relaxed)", "wasm
/// SIMD128", "native AVX2 + FMA" or "portable"): shown next to measured times.
pub fn kernels() -> &'static str {
    gemm::kernel_name()
}

/// Regular conv2d (any stride, padding, dilation, groups), bias added if given.
///
/// Per group: implicit im2col (packed block by block, never materialised whole) times the group's
/// kernel rows in a packed, cache-blocked GEMM. At horizontal stride 1 the input is zero-padded
/// once so that packing is plain copies ([`PaddedIm2colB`]).
pub fn conv2d(
    x: &FeatureMap,
    kernel: &Kernel,
    bias: Option<&[f32]>,
    geom: &ConvGeometry,
) -> Result<FeatureMap> {
    let (ho, wo) = check_conv(x, kernel, bias, geom)?;
    let mut y = biased_output(kernel.n, ho, wo, bias)?;
    let groups = geom.groups;
    let (mg, cg) = (kernel.n / groups, kernel.c);
    let k = cg * kernel.kh * kernel.kw;
    let p = ho * wo;
    let padded = (geom.stride.1 == 1).then(|| padded_input(x, geom)).transpose()?;
    for g in 0..groups {
        let a = &kernel.data[g * mg * k..][..mg * k];
        let c = &mut y.data[g * mg * p..][..mg * p];
        match &padded {
            Some((xp, hp, wp)) => {
                let b = PaddedIm2colB {
                    xp: &xp[g * cg * hp * wp..][..cg * hp * wp],
                    hp: *hp,
                    wp: *wp,
                    kh: kernel.kh,
                    kw: kernel.kw,
                    wo,
                    sh: geom.stride.0,
                    dilation: geom.dilation,
                };
                gemm(mg, k, p, a, &b, c, p);
            }
            None => {
                let hw = x.h * x.w;
                let b = Im2colB {
                    x: &x.data[g * cg * hw..][..cg * hw],
                    h: x.h,
                    w: x.w,
                    kh: kernel.kh,
                    kw: kernel.kw,
                    wo,
                    stride: geom.stride,
                    dilation: geom.dilation,
                    pad: (geom.padding.top, geom.padding.left),
                };
                gemm(mg, k, p, a, &b, c, p);
            }
        }
    }
    Ok(y)
}

/// The input with its padding materialised (borrowed as is when there is none), and the padded
/// plane size.
fn padded_input<'a>(
    x: &'a FeatureMap,
    geom: &ConvGeometry,
) -> Result<(std::borrow::Cow<'a, [f32]>, usize, usize)> {
    let pd = geom.padding;
    if pd.top == 0 && pd.bottom == 0 && pd.left == 0 && pd.right == 0 {
        return Ok((std::borrow::Cow::Borrowed(&x.data), x.h, x.w));
    }
    let hp = x.h.checked_add(pd.top).and_then(|v| v.checked_add(pd.bottom));
    let wp = x.w.checked_add(pd.left).and_then(|v| v.checked_add(pd.right));
    let (Some(hp), Some(wp)) = (hp, wp) else {
        return Err(Error::Shape("padding too large".into()));
    };
    checked_len(&[x.c, hp, wp])?;
    let p = Padded::new(&x.data, x.c, x.h, x.w, geom);
    Ok((std::borrow::Cow::Owned(p.data), p.hp, p.wp))
}

/// Direct scalar conv2d in f64 accumulation: the oracle for every fast kernel.
pub fn reference_conv2d(
    x: &FeatureMap,
    kernel: &Kernel,
    bias: Option<&[f32]>,
    geom: &ConvGeometry,
) -> Result<FeatureMap> {
    let (ho, wo) = check_conv(x, kernel, bias, geom)?;
    let mut y = FeatureMap { c: kernel.n, h: ho, w: wo, data: vec![0.0; kernel.n * ho * wo] };
    let (mg, cg) = (kernel.n / geom.groups, kernel.c);
    for n in 0..kernel.n {
        let g = n / mg;
        for oy in 0..ho {
            for ox in 0..wo {
                let mut acc = bias.map_or(0.0, |b| b[n] as f64);
                for ci in 0..cg {
                    let c = g * cg + ci;
                    for ky in 0..kernel.kh {
                        let iy =
                            (oy * geom.stride.0 + ky * geom.dilation.0) as isize - geom.padding.top as isize;
                        if iy < 0 || iy >= x.h as isize {
                            continue;
                        }
                        for kx in 0..kernel.kw {
                            let ix = (ox * geom.stride.1 + kx * geom.dilation.1) as isize
                                - geom.padding.left as isize;
                            if ix < 0 || ix >= x.w as isize {
                                continue;
                            }
                            let xv = x.data[(c * x.h + iy as usize) * x.w + ix as usize] as f64;
                            let wv = kernel.data[((n * cg + ci) * kernel.kh + ky) * kernel.kw + kx] as f64;
                            acc += xv * wv;
                        }
                    }
                }
                y.data[(n * ho + oy) * wo + ox] = acc as f32;
            }
        }
    }
    Ok(y)
}

/// Validates a depthwise op over `c` input channels with `per_in` filters per channel; returns the geometry.
fn dw_geom(
    x: &FeatureMap,
    filters: &[f32],
    per_in: usize,
    kh: usize,
    kw: usize,
    geom: &ConvGeometry,
) -> Result<PlaneGeom> {
    check_map(x)?;
    if per_in == 0 {
        return Err(Error::Param("depth multiplier must be at least 1".into()));
    }
    let need = checked_len(&[x.c, per_in, kh, kw])?;
    if filters.len() != need {
        return Err(Error::Shape(format!(
            "depthwise filters for {} channels × {per_in} of {kh}×{kw} need {need} values, got {}",
            x.c,
            filters.len()
        )));
    }
    let (ho, wo) = geom.output_size(x.h, x.w, kh, kw)?;
    Ok(PlaneGeom {
        h: x.h,
        w: x.w,
        kh,
        kw,
        ho,
        wo,
        stride: geom.stride,
        dilation: geom.dilation,
        pad: (geom.padding.top, geom.padding.left),
    })
}

/// Depthwise conv with depth multiplier `mult`: output channel `c·mult + m` filters input
/// channel `c` with `filters[(c·mult + m)·kh·kw ..]`. Geometry's groups is ignored.
pub fn depthwise(
    x: &FeatureMap,
    filters: &[f32],
    mult: usize,
    kh: usize,
    kw: usize,
    geom: &ConvGeometry,
) -> Result<FeatureMap> {
    let g = dw_geom(x, filters, mult, kh, kw, geom)?;
    let mut y = biased_output(x.c * mult, g.ho, g.wo, None)?;
    depthwise_acc(x, filters, mult, &g, &mut y);
    Ok(y)
}

/// `y[c·mult + m] += filter(c·mult + m) ⋆ x[c]` (shapes already validated).
fn depthwise_acc(x: &FeatureMap, filters: &[f32], mult: usize, g: &PlaneGeom, y: &mut FeatureMap) {
    let (hw, k2, pout) = (x.h * x.w, g.kh * g.kw, g.ho * g.wo);
    for (o, (out, filter)) in y.data.chunks_exact_mut(pout).zip(filters.chunks_exact(k2)).enumerate() {
        dw::plane_acc(&x.data[(o / mult) * hw..][..hw], filter, out, g, 0..g.ho);
    }
}

/// Validates a pointwise op.
fn check_pointwise(x: &FeatureMap, w: &[f32], out: usize, groups: usize, bias: Option<&[f32]>) -> Result<()> {
    check_map(x)?;
    if out == 0 {
        return Err(Error::Shape("pointwise conv with zero output channels".into()));
    }
    check_groups(groups, x.c, out)?;
    let need = checked_len(&[out, x.c / groups])?;
    if w.len() != need {
        return Err(Error::Shape(format!(
            "pointwise weights {out}×{} need {need} values, got {}",
            x.c / groups,
            w.len()
        )));
    }
    check_bias(bias, out)?;
    checked_len(&[out, x.h, x.w])?;
    Ok(())
}

/// Pointwise (1×1, stride 1, no padding) conv: `w` is out × (in/groups), row-major; bias optional.
pub fn pointwise(
    x: &FeatureMap,
    w: &[f32],
    out: usize,
    groups: usize,
    bias: Option<&[f32]>,
) -> Result<FeatureMap> {
    check_pointwise(x, w, out, groups, bias)?;
    let mut y = biased_output(out, x.h, x.w, bias)?;
    pointwise_acc(x, w, out, groups, &mut y);
    Ok(y)
}

/// `y += W·x` per group (shapes already validated; `y` is out × h × w).
fn pointwise_acc(x: &FeatureMap, w: &[f32], out: usize, groups: usize, y: &mut FeatureMap) {
    let hw = x.h * x.w;
    let (cg, mg) = (x.c / groups, out / groups);
    for g in 0..groups {
        let b = MatB { data: &x.data[g * cg * hw..][..cg * hw], ld: hw };
        gemm(mg, cg, hw, &w[g * mg * cg..][..mg * cg], &b, &mut y.data[g * mg * hw..][..mg * hw], hw);
    }
}

/// Checks the merged factors' sizes against the input.
fn check_merged(x: &FeatureMap, m: &Merged, geom: &ConvGeometry) -> Result<()> {
    if m.t == 0 {
        return Err(Error::Param("T must be at least 1".into()));
    }
    if m.c_total != x.c {
        return Err(Error::Shape(format!(
            "decoupled layer expects {} input channels, got {}",
            m.c_total, x.c
        )));
    }
    check_groups(m.groups, m.c_total, m.n)?;
    if geom.groups != m.groups {
        return Err(Error::Param(format!(
            "geometry has {} groups but the decoupled factors have {}",
            geom.groups, m.groups
        )));
    }
    let dw_rows = match m.order {
        Order::DwPw => m.c_total,
        Order::PwDw => m.n,
    };
    let dw_need = checked_len(&[dw_rows, m.t, m.kh, m.kw])?;
    let pw_need = match m.order {
        Order::DwPw => checked_len(&[m.n, m.c_total / m.groups, m.t])?,
        Order::PwDw => checked_len(&[m.n, m.t, m.c_total / m.groups])?,
    };
    if m.dw.len() != dw_need || m.pw.len() != pw_need {
        return Err(Error::Shape(format!(
            "decoupled factors need {dw_need} depthwise and {pw_need} pointwise values, got {} and {}",
            m.dw.len(),
            m.pw.len()
        )));
    }
    Ok(())
}

/// The decoupled layer in merged form: stride/padding/dilation in the depthwise op only,
/// the bias added once at the end. `geom.groups` must equal `merged.groups`.
///
/// DW→PW: `depthwise(x, dw, mult = T)` then `pointwise(C·T → N, groups, bias)`.
/// PW→DW: `pointwise(C → N·T, groups)` at the input resolution, then a depthwise over N·T channels
/// whose groups of T are summed into output n, then the bias.
pub fn decoupled_forward(
    x: &FeatureMap,
    merged: &Merged,
    bias: Option<&[f32]>,
    geom: &ConvGeometry,
) -> Result<FeatureMap> {
    check_merged(x, merged, geom)?;
    check_bias(bias, merged.n)?;
    let m = merged;
    match m.order {
        Order::DwPw => dwpw_fused(x, m, bias, geom),
        Order::PwDw => pwdw_fused(x, m, bias, geom),
    }
}

/// PW→DW with the depthwise run on each block of pointwise output columns (whole input rows)
/// right after the GEMM finishes it, while it is still in cache. Equals
/// `depthwise_sum(pointwise(x, pw, N·T, groups), dw, T) + bias` (shapes already validated).
fn pwdw_fused(x: &FeatureMap, m: &Merged, bias: Option<&[f32]>, geom: &ConvGeometry) -> Result<FeatureMap> {
    let nt = checked_len(&[m.n, m.t])?;
    let mut mid = biased_output(nt, x.h, x.w, None)?;
    let g = dw_geom(&mid, &m.dw, 1, m.kh, m.kw, geom)?;
    let mut y = biased_output(m.n, g.ho, g.wo, bias)?;
    let (hw, pout, k2) = (x.h * x.w, g.ho * g.wo, m.kh * m.kw);
    let (cg, mg) = (m.c_total / m.groups, nt / m.groups);
    for grp in 0..m.groups {
        let b = MatB { data: &x.data[grp * cg * hw..][..cg * hw], ld: hw };
        let out = &mut y.data[grp * (m.n / m.groups) * pout..][..(m.n / m.groups) * pout];
        let filters = &m.dw[grp * mg * k2..][..mg * k2];
        let a = &m.pw[grp * mg * cg..][..mg * cg];
        let mut done = 0;
        gemm_then(mg, cg, hw, a, &b, &mut mid.data[grp * mg * hw..][..mg * hw], hw, |c, j| {
            let ready = rows_ready(&g, j, hw);
            if ready > done {
                depthwise_sum_rows(c, filters, m.t, &g, out, done..ready);
                done = ready;
            }
        });
    }
    Ok(y)
}

/// Output rows whose every input row lies in the first `j` pixels (of `hw`) of the input planes.
fn rows_ready(g: &PlaneGeom, j: usize, hw: usize) -> usize {
    if j >= hw {
        return g.ho;
    }
    // Complete input rows; output row oy needs input rows up to oy·sh + (kh−1)·dh − pad_top.
    let complete = j / g.w;
    let reach = (g.kh - 1) * g.dilation.0;
    if complete + g.pad.0 < reach + 1 {
        return 0;
    }
    ((complete + g.pad.0 - reach - 1) / g.stride.0 + 1).min(g.ho)
}

/// `out[n] rows` += Σ_t filter(n·T + t) ⋆ mid[n·T + t] for output rows `rows` (`mid` holds the
/// group's N·T planes, `out` the group's N output planes).
fn depthwise_sum_rows(
    mid: &[f32],
    filters: &[f32],
    t: usize,
    g: &PlaneGeom,
    out: &mut [f32],
    rows: Range<usize>,
) {
    let (hw, k2, pout) = (g.h * g.w, g.kh * g.kw, g.ho * g.wo);
    for (n, plane) in out.chunks_exact_mut(pout).enumerate() {
        let dst = &mut plane[rows.start * g.wo..rows.end * g.wo];
        for i in n * t..(n + 1) * t {
            dw::plane_acc(&mid[i * hw..][..hw], &filters[i * k2..][..k2], dst, g, rows.clone());
        }
    }
}

/// DW→PW with the depthwise computed inside the pointwise GEMM's packing (see [`DepthwiseB`]).
/// Equals `pointwise(depthwise(x, dw, T), pw, groups, bias)` (shapes already validated).
fn dwpw_fused(x: &FeatureMap, m: &Merged, bias: Option<&[f32]>, geom: &ConvGeometry) -> Result<FeatureMap> {
    let g = dw_geom(x, &m.dw, m.t, m.kh, m.kw, geom)?;
    let mut y = biased_output(m.n, g.ho, g.wo, bias)?;
    let (hw, p, k2) = (x.h * x.w, g.ho * g.wo, m.kh * m.kw);
    let (cg, mg) = (m.c_total / m.groups, m.n / m.groups);
    let kg = cg * m.t;
    // Horizontal stride 1: the input padded once, each block's depthwise without border cases.
    let padded = (g.stride.1 == 1).then(|| PaddedPlanes::new(x, geom)).transpose()?;
    for grp in 0..m.groups {
        let (a, filters) = (&m.pw[grp * mg * kg..][..mg * kg], &m.dw[grp * kg * k2..][..kg * k2]);
        let c = &mut y.data[grp * mg * p..][..mg * p];
        let fast = padded.as_ref().and_then(|xp| {
            let plane = xp.hp * xp.wp;
            let planes = xp.data.get(grp * cg * plane..)?;
            PaddedDepthwiseB::new(planes, (xp.hp, xp.wp), cg, filters, m.t, &g)
        });
        if let Some(b) = fast {
            gemm(mg, kg, p, a, &b, c, p);
            continue;
        }
        let b = DepthwiseB { x: &x.data[grp * cg * hw..][..cg * hw], filters, mult: m.t, geom: g };
        gemm(mg, kg, p, a, &b, c, p);
    }
    Ok(y)
}

/// Checks every branch's factor sizes.
fn check_branches(
    x: &FeatureMap,
    branches: &[Branch],
    order: Order,
    n: usize,
    k2: usize,
    groups: usize,
) -> Result<()> {
    if branches.is_empty() {
        return Err(Error::Param("the branch form needs at least one branch".into()));
    }
    check_groups(groups, x.c, n)?;
    let dw_need = match order {
        Order::DwPw => checked_len(&[x.c, k2])?,
        Order::PwDw => checked_len(&[n, k2])?,
    };
    let pw_need = checked_len(&[n, x.c / groups])?;
    for (t, b) in branches.iter().enumerate() {
        if b.dw.len() != dw_need || b.pw.len() != pw_need {
            return Err(Error::Shape(format!(
                "branch {t} needs {dw_need} depthwise and {pw_need} pointwise values, got {} and {}",
                b.dw.len(),
                b.pw.len()
            )));
        }
    }
    Ok(())
}

/// The decoupled layer in branch form (T parallel branches summed, bias at the end).
/// Groups come from `geom.groups`; each branch's pointwise matrix is n × (input channels per group).
#[allow(clippy::too_many_arguments)]
pub fn branch_forward(
    x: &FeatureMap,
    branches: &[Branch],
    order: Order,
    n: usize,
    kh: usize,
    kw: usize,
    bias: Option<&[f32]>,
    geom: &ConvGeometry,
) -> Result<FeatureMap> {
    check_map(x)?;
    let k2 = checked_len(&[kh, kw])?;
    check_branches(x, branches, order, n, k2, geom.groups)?;
    check_bias(bias, n)?;
    let groups = geom.groups;
    let (ho, wo) = geom.output_size(x.h, x.w, kh, kw)?;
    let mut y = biased_output(n, ho, wo, None)?;
    for b in branches {
        match order {
            Order::DwPw => {
                let mid = depthwise(x, &b.dw, 1, kh, kw, geom)?;
                pointwise_acc(&mid, &b.pw, n, groups, &mut y);
            }
            Order::PwDw => {
                let mid = pointwise(x, &b.pw, n, groups, None)?;
                let g = dw_geom(&mid, &b.dw, 1, kh, kw, geom)?;
                depthwise_acc(&mid, &b.dw, 1, &g, &mut y);
            }
        }
    }
    add_bias(&mut y, bias);
    Ok(y)
}

/// The original layer's forward (convenience over [`conv2d`]).
pub fn layer_forward(x: &FeatureMap, layer: &ConvLayer) -> Result<FeatureMap> {
    conv2d(x, &layer.kernel, layer.bias.as_deref(), &layer.geometry)
}
