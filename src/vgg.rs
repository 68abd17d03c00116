//! The VGG16-BN prefix (conv1_1 … conv3_3 of the CRAFT backbone) run natively, to feed any of
//! its layers the real activations an image produces: RGBA bytes → resize (bilinear, aspect
//! kept) → ImageNet normalisation → conv + folded BN → ReLU → … (2×2 max-pool after conv1_2 and
//! conv2_2) → the input of the requested layer.
//!
//! Weights come from `assets/models/vgg16bn_craft_conv1_1-conv3_3.safetensors` (torchvision
//! `vgg16_bn().features` naming: conv at `features.N`, BatchNorm2d at `features.N+1`, eps 1e-5).

use crate::conv::conv2d;
use crate::error::{Error, Result};
use crate::layer::{checked_len, ConvGeometry, ConvLayer, FeatureMap, Kernel};
use safetensors::{Dtype, SafeTensors};
use std::str::FromStr;

/// BatchNorm eps of torchvision's `BatchNorm2d`.
pub const BN_EPS: f32 = 1e-5;
/// ImageNet mean and std (RGB), as torchvision.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How RGB pixels (0..=255) become network input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalisation {
    /// `(p/255 − mean) / std` with the ImageNet mean/std (VGG).
    ImageNet,
    /// `(p − 127.5) / 128` (MTCNN, facenet-pytorch).
    Mtcnn,
    /// `p / 255`.
    Unit,
}

impl Normalisation {
    /// The normalised value of pixel `p` in RGB channel `ch` (0, 1, 2).
    pub fn apply(&self, p: f32, ch: usize) -> f32 {
        match self {
            Normalisation::ImageNet => (p / 255.0 - IMAGENET_MEAN[ch % 3]) / IMAGENET_STD[ch % 3],
            Normalisation::Mtcnn => (p - 127.5) / 128.0,
            Normalisation::Unit => p / 255.0,
        }
    }
}

/// The seven convs of the prefix, in forward order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VggLayer {
    Conv1_1,
    Conv1_2,
    Conv2_1,
    Conv2_2,
    Conv3_1,
    Conv3_2,
    Conv3_3,
}

impl VggLayer {
    /// All layers in forward order.
    pub const ALL: [VggLayer; 7] = [
        VggLayer::Conv1_1,
        VggLayer::Conv1_2,
        VggLayer::Conv2_1,
        VggLayer::Conv2_2,
        VggLayer::Conv3_1,
        VggLayer::Conv3_2,
        VggLayer::Conv3_3,
    ];

    /// Position in forward order (0..7).
    pub fn position(&self) -> usize {
        *self as usize
    }

    /// `conv1_1` … `conv3_3`.
    pub fn name(&self) -> &'static str {
        ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3"][self.position()]
    }

    /// Index N of the conv in `vgg16_bn().features` (BatchNorm at N + 1).
    pub fn feature_index(&self) -> usize {
        [0, 3, 7, 10, 14, 17, 20][self.position()]
    }

    /// (out, in) channels.
    pub fn channels(&self) -> (usize, usize) {
        [(64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256)][self.position()]
    }

    /// True if a 2×2 max-pool follows this conv's ReLU (within the prefix).
    pub fn pool_after(&self) -> bool {
        matches!(self, VggLayer::Conv1_2 | VggLayer::Conv2_2)
    }
}

impl FromStr for VggLayer {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        VggLayer::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| Error::Param(format!("unknown VGG layer '{s}' (expected conv1_1 … conv3_3)")))
    }
}

/// One conv of the prefix: raw weight and bias, its BatchNorm, and both folded.
#[derive(Debug, Clone, PartialEq)]
pub struct VggConv {
    pub layer: VggLayer,
    /// Raw conv weight (OIHW) and bias, BatchNorm not applied.
    pub kernel: Kernel,
    pub bias: Vec<f32>,
    /// BatchNorm γ, β, running mean, running var.
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    /// Weight and bias with the BatchNorm folded in (what the forward runs).
    pub folded_kernel: Kernel,
    pub folded_bias: Vec<f32>,
}

/// The loaded prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct VggPrefix {
    /// The seven convs, in [`VggLayer::ALL`] order.
    pub convs: Vec<VggConv>,
}

/// The geometry of every conv of the prefix: 3×3, stride 1, padding 1.
pub fn vgg_geometry() -> ConvGeometry {
    ConvGeometry::new(1, 1, 1)
}

/// A float32 tensor of the expected shape, as values.
fn tensor_f32(st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
    let t = st.tensor(name).map_err(|e| Error::Format(format!("safetensors: tensor '{name}': {e}")))?;
    if t.dtype() != Dtype::F32 {
        return Err(Error::Format(format!("tensor '{name}' is {:?}, expected F32", t.dtype())));
    }
    if t.shape() != shape {
        return Err(Error::Shape(format!("tensor '{name}' has shape {:?}, expected {shape:?}", t.shape())));
    }
    let data = t.data();
    if data.len() != checked_len(shape)? * 4 {
        return Err(Error::Format(format!("tensor '{name}' has {} bytes for shape {shape:?}", data.len())));
    }
    let v: Vec<f32> = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if v.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFinite(format!("tensor '{name}' holds NaN or infinity")));
    }
    Ok(v)
}

impl VggPrefix {
    /// Reads the prefix from the bytes of its `.safetensors` file.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Format(format!("safetensors: {e}")))?;
        let mut convs = Vec::with_capacity(VggLayer::ALL.len());
        for layer in VggLayer::ALL {
            let (n, c) = layer.channels();
            let (i, b) = (layer.feature_index(), layer.feature_index() + 1);
            let kernel =
                Kernel::new(n, c, 3, 3, tensor_f32(&st, &format!("features.{i}.weight"), &[n, c, 3, 3])?)?;
            let bias = tensor_f32(&st, &format!("features.{i}.bias"), &[n])?;
            let gamma = tensor_f32(&st, &format!("features.{b}.weight"), &[n])?;
            let beta = tensor_f32(&st, &format!("features.{b}.bias"), &[n])?;
            let mean = tensor_f32(&st, &format!("features.{b}.running_mean"), &[n])?;
            let var = tensor_f32(&st, &format!("features.{b}.running_var"), &[n])?;
            let (folded_kernel, folded_bias) = fold_bn(&kernel, &bias, &gamma, &beta, &mean, &var, BN_EPS)?;
            convs.push(VggConv { layer, kernel, bias, gamma, beta, mean, var, folded_kernel, folded_bias });
        }
        Ok(VggPrefix { convs })
    }

    /// The conv of `layer`.
    pub fn conv(&self, layer: VggLayer) -> Result<&VggConv> {
        self.convs
            .iter()
            .find(|c| c.layer == layer)
            .ok_or_else(|| Error::Param(format!("{} not loaded", layer.name())))
    }

    /// `layer` as a conv layer with its raw weight and bias (BatchNorm not applied), 3×3, pad 1.
    pub fn layer(&self, layer: VggLayer) -> Result<ConvLayer> {
        let c = self.conv(layer)?;
        ConvLayer::new(c.kernel.clone(), Some(c.bias.clone()), vgg_geometry())
    }

    /// The input of `layer` for a normalised 3 × h × w image `x` (conv + folded BN, ReLU, and
    /// the 2×2 max-pools, up to just before `layer`). For conv1_1 this is `x` itself.
    pub fn input_of(&self, x: &FeatureMap, layer: VggLayer) -> Result<FeatureMap> {
        if x.c != 3 {
            return Err(Error::Shape(format!("VGG input needs 3 channels, got {}", x.c)));
        }
        let mut a = x.clone();
        for conv in self.convs.iter().take(layer.position()) {
            a = conv2d(&a, &conv.folded_kernel, Some(&conv.folded_bias), &vgg_geometry())?;
            relu_inplace(&mut a);
            if conv.layer.pool_after() {
                a = max_pool2x2(&a)?;
            }
        }
        Ok(a)
    }
}

/// Folds a BatchNorm that follows a conv into the conv: with s_n = γ_n / sqrt(var_n + eps),
/// `W'[n] = s_n·W[n]` and `b'_n = s_n·(b_n − mean_n) + β_n`. All vectors have length n.
pub fn fold_bn(
    kernel: &Kernel,
    bias: &[f32],
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Result<(Kernel, Vec<f32>)> {
    let n = kernel.n;
    for (name, v) in [("bias", bias), ("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)] {
        if v.len() != n {
            return Err(Error::Shape(format!("BatchNorm {name} has {} values for {n} channels", v.len())));
        }
    }
    let per = kernel.c * kernel.k2();
    let mut w = kernel.data.clone();
    let mut b = vec![0.0f32; n];
    for o in 0..n {
        let denom = var[o] as f64 + eps as f64;
        if denom.is_nan() || denom <= 0.0 {
            return Err(Error::Param(format!("BatchNorm variance + eps of channel {o} is not positive")));
        }
        let s = gamma[o] as f64 / denom.sqrt();
        for v in &mut w[o * per..(o + 1) * per] {
            *v = (*v as f64 * s) as f32;
        }
        b[o] = (s * (bias[o] as f64 - mean[o] as f64) + beta[o] as f64) as f32;
    }
    Ok((Kernel::new(n, kernel.c, kernel.kh, kernel.kw, w)?, b))
}

/// max(x, 0) in place.
pub fn relu_inplace(x: &mut FeatureMap) {
    for v in &mut x.data {
        *v = v.max(0.0);
    }
}

/// 2×2 max-pool, stride 2, floor (PyTorch's default).
pub fn max_pool2x2(x: &FeatureMap) -> Result<FeatureMap> {
    let (h, w) = (x.h / 2, x.w / 2);
    if h == 0 || w == 0 {
        return Err(Error::Shape(format!("cannot 2×2 max-pool a {}×{} map", x.h, x.w)));
    }
    let mut out = Vec::with_capacity(x.c * h * w);
    for c in 0..x.c {
        let ch = x.channel(c);
        for y in 0..h {
            for xx in 0..w {
                let at = |dy: usize, dx: usize| ch[(2 * y + dy) * x.w + 2 * xx + dx];
                out.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
            }
        }
    }
    FeatureMap::new(x.c, h, w, out)
}

/// Bilinear resize of every channel to `oh` × `ow` (half-pixel centres, edges clamped, as
/// PyTorch's `align_corners=False`).
pub fn resize_bilinear(x: &FeatureMap, oh: usize, ow: usize) -> Result<FeatureMap> {
    checked_len(&[x.c, oh, ow])?;
    let axis = |o: usize, n_in: usize, n_out: usize| {
        let src = ((o as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        (i0, i1, (src - i0 as f64).clamp(0.0, 1.0) as f32)
    };
    let ys: Vec<_> = (0..oh).map(|o| axis(o, x.h, oh)).collect();
    let xs: Vec<_> = (0..ow).map(|o| axis(o, x.w, ow)).collect();
    let mut out = Vec::with_capacity(x.c * oh * ow);
    for c in 0..x.c {
        let ch = x.channel(c);
        for &(y0, y1, fy) in &ys {
            for &(x0, x1, fx) in &xs {
                let top = ch[y0 * x.w + x0] * (1.0 - fx) + ch[y0 * x.w + x1] * fx;
                let bot = ch[y1 * x.w + x0] * (1.0 - fx) + ch[y1 * x.w + x1] * fx;
                out.push(top * (1.0 - fy) + bot * fy);
            }
        }
    }
    FeatureMap::new(x.c, oh, ow, out)
}

/// The working size of a `w` × `h` image: scaled down (aspect kept) so that its longer side is at
/// most `max_side`; never scaled up. Returns (h, w).
pub fn working_size(w: usize, h: usize, max_side: usize) -> (usize, usize) {
    let long = w.max(h);
    if long <= max_side || long == 0 {
        return (h, w);
    }
    let s = max_side as f64 / long as f64;
    (((h as f64 * s).round() as usize).max(1), ((w as f64 * s).round() as usize).max(1))
}

/// RGBA bytes (`w` × `h`, row-major, 4 bytes per pixel; alpha ignored) → a normalised
/// 3 × h' × w' map with the longer side at most `max_side` (≥ 4).
pub fn image_to_map(
    rgba: &[u8],
    w: usize,
    h: usize,
    max_side: usize,
    norm: Normalisation,
) -> Result<FeatureMap> {
    let len = checked_len(&[h, w, 4])?;
    if rgba.len() != len {
        return Err(Error::Shape(format!("RGBA image {w}×{h} needs {len} bytes, got {}", rgba.len())));
    }
    if max_side < 4 {
        return Err(Error::Param(format!("working size {max_side} is below 4 pixels")));
    }
    let plane = w * h;
    let mut rgb = vec![0.0f32; 3 * plane];
    for (i, px) in rgba.chunks_exact(4).enumerate() {
        for ch in 0..3 {
            rgb[ch * plane + i] = px[ch] as f32;
        }
    }
    let full = FeatureMap::new(3, h, w, rgb)?;
    let (oh, ow) = working_size(w, h, max_side);
    let mut x = if (oh, ow) == (h, w) { full } else { resize_bilinear(&full, oh, ow)? };
    let plane = oh * ow;
    for (i, v) in x.data.iter_mut().enumerate() {
        *v = norm.apply(*v, i / plane);
    }
    Ok(x)
}
