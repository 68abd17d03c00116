//! Conv inference on CHW feature maps: regular (grouped) conv2d via im2col + blocked GEMM,
//! depthwise with multiplier, pointwise, and the decoupled forward of both orderings.
//! `reference_conv2d` is the direct scalar oracle the fast kernels are tested against.

use crate::decouple::{Branch, Merged};
use crate::error::Result;
use crate::layer::{ConvGeometry, ConvLayer, FeatureMap, Kernel};

/// Regular conv2d (any stride, padding, dilation, groups), bias added if given.
pub fn conv2d(
    x: &FeatureMap,
    kernel: &Kernel,
    bias: Option<&[f32]>,
    geom: &ConvGeometry,
) -> Result<FeatureMap> {
    let _ = (x, kernel, bias, geom);
    todo!()
}

/// Direct scalar conv2d in f64 accumulation: the oracle for every fast kernel.
pub fn reference_conv2d(
    x: &FeatureMap,
    kernel: &Kernel,
    bias: Option<&[f32]>,
    geom: &ConvGeometry,
) -> Result<FeatureMap> {
    let _ = (x, kernel, bias, geom);
    todo!()
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
    let _ = (x, filters, mult, kh, kw, geom);
    todo!()
}

/// Pointwise (1×1, stride 1, no padding) conv: `w` is out × (in/groups), row-major; bias optional.
pub fn pointwise(
    x: &FeatureMap,
    w: &[f32],
    out: usize,
    groups: usize,
    bias: Option<&[f32]>,
) -> Result<FeatureMap> {
    let _ = (x, w, out, groups, bias);
    todo!()
}

/// The decoupled layer in merged form: stride/padding/dilation in the depthwise op only,
/// the bias added once at the end.
pub fn decoupled_forward(
    x: &FeatureMap,
    merged: &Merged,
    bias: Option<&[f32]>,
    geom: &ConvGeometry,
) -> Result<FeatureMap> {
    let _ = (x, merged, bias, geom);
    todo!()
}

/// The decoupled layer in branch form (T parallel branches summed, bias at the end).
pub fn branch_forward(
    x: &FeatureMap,
    branches: &[Branch],
    order: crate::layer::Order,
    n: usize,
    kh: usize,
    kw: usize,
    bias: Option<&[f32]>,
    geom: &ConvGeometry,
) -> Result<FeatureMap> {
    let _ = (x, branches, order, n, kh, kw, bias, geom);
    todo!()
}

/// The original layer's forward (convenience over [`conv2d`]).
pub fn layer_forward(x: &FeatureMap, layer: &ConvLayer) -> Result<FeatureMap> {
    conv2d(x, &layer.kernel, layer.bias.as_deref(), &layer.geometry)
}
