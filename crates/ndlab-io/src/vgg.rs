//! The VGG16-BN prefix (conv1_1 … conv3_3 of the CRAFT backbone) run natively, to feed any of
//! its layers the real activations an image produces: RGBA bytes → resize (bilinear, aspect
//! kept) → ImageNet normalisation → conv + folded BN → ReLU → … (2×2 max-pool after conv1_2 and
//! conv2_2) → the input of the requested layer.
//!
//! Weights come from `assets/models/vgg16bn_craft_conv1_1-conv3_3.safetensors` (torchvision
//! `vgg16_bn().features` naming: conv at `features.N`, BatchNorm2d at `features.N+1`, eps 1e-5).

use ndlab_core::conv::conv2d;
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{checked_len, ConvGeometry, ConvLayer, FeatureMap, Kernel};
use safetensors::{Dtype, SafeTensors};
use std::str::FromStr;

/// BatchNorm eps of torchvision's `BatchNorm2d`.
pub const BN_EPS: f32 = 1e-5;
/// ImageNet mean (RGB), as torchvision.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet std (RGB).
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
#[allow(missing_docs)]
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
    /// Which conv.
    pub layer: VggLayer,
    /// Raw conv weight (OIHW) and bias, BatchNorm not applied.
    pub kernel: Kernel,
    /// Raw conv bias.
    pub bias: Vec<f32>,
    /// BatchNorm γ (weight).
    pub gamma: Vec<f32>,
    /// BatchNorm β (bias).
    pub beta: Vec<f32>,
    /// BatchNorm running mean.
    pub mean: Vec<f32>,
    /// BatchNorm running variance.
    pub var: Vec<f32>,
    /// Weight and bias with the BatchNorm folded in (what the forward runs).
    pub folded_kernel: Kernel,
    /// Bias with the BatchNorm folded in.
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndlab_core::random::Rng;

    fn asset(path: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(path)).unwrap()
    }

    fn prefix() -> VggPrefix {
        VggPrefix::from_safetensors(&asset("assets/models/vgg16bn_craft_conv1_1-conv3_3.safetensors"))
            .unwrap()
    }

    /// Decodes a PNG to RGBA bytes with the `png` crate.
    fn png_rgba(path: &str) -> (Vec<u8>, usize, usize) {
        let mut dec = png::Decoder::new(std::io::Cursor::new(asset(path)));
        dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let (w, h) = (info.width as usize, info.height as usize);
        let px: Vec<u8> = match info.color_type {
            png::ColorType::Rgba => buf[..w * h * 4].to_vec(),
            png::ColorType::Rgb => buf[..w * h * 3].chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
            png::ColorType::Grayscale => buf[..w * h].iter().flat_map(|&g| [g, g, g, 255]).collect(),
            png::ColorType::GrayscaleAlpha => {
                buf[..w * h * 2].chunks(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect()
            }
            other => panic!("unexpected colour type {other:?}"),
        };
        (px, w, h)
    }

    /// Direct scalar 3×3, pad 1 conv at one output position (f64): the test oracle.
    fn conv_at(x: &FeatureMap, k: &Kernel, b: &[f32], n: usize, y: usize, xx: usize) -> f64 {
        let mut s = b[n] as f64;
        for c in 0..k.c {
            for i in 0..3 {
                for j in 0..3 {
                    let (yy, xj) = (y as isize + i as isize - 1, xx as isize + j as isize - 1);
                    if yy < 0 || xj < 0 || yy >= x.h as isize || xj >= x.w as isize {
                        continue;
                    }
                    let v = x.data[(c * x.h + yy as usize) * x.w + xj as usize] as f64;
                    s += k.filter(n, c)[i * 3 + j] as f64 * v;
                }
            }
        }
        s
    }

    #[test]
    fn fold_bn_by_hand() {
        // s = 3 / sqrt(3.99 + 0.01) = 1.5; W' = 2·1.5 = 3; b' = 1.5·(1 − 0.25) + 0.5 = 1.625.
        let k = Kernel::new(1, 1, 1, 1, vec![2.0]).unwrap();
        let (w, b) = fold_bn(&k, &[1.0], &[3.0], &[0.5], &[0.25], &[3.99], 0.01).unwrap();
        assert!((w.data[0] - 3.0).abs() < 1e-6 && (b[0] - 1.625).abs() < 1e-6, "{:?} {b:?}", w.data);
        assert!(fold_bn(&k, &[1.0, 2.0], &[3.0], &[0.5], &[0.25], &[3.99], 0.01).is_err());
        assert!(fold_bn(&k, &[1.0], &[3.0], &[0.5], &[0.25], &[-1.0], 0.0).is_err());
    }

    #[test]
    fn fold_bn_equals_conv_then_bn_on_random_data() {
        let mut rng = Rng::new(42);
        let mut r =
            |m: usize, s: f64, o: f64| (0..m).map(|_| (rng.normal() * s + o) as f32).collect::<Vec<f32>>();
        let (n, c) = (5, 4);
        let k = Kernel::new(n, c, 3, 3, r(n * c * 9, 0.3, 0.0)).unwrap();
        let (bias, gamma, beta, mean) = (r(n, 1.0, 0.0), r(n, 0.5, 1.0), r(n, 0.5, 0.0), r(n, 0.5, 0.0));
        let var: Vec<f32> = r(n, 0.3, 0.0).iter().map(|v| v * v + 0.1).collect();
        let x = FeatureMap::new(c, 6, 7, r(c * 42, 1.0, 0.0)).unwrap();
        let (wf, bf) = fold_bn(&k, &bias, &gamma, &beta, &mean, &var, BN_EPS).unwrap();
        for o in 0..n {
            for (y, xx) in [(0, 0), (2, 3), (5, 6), (3, 0)] {
                let z = conv_at(&x, &k, &bias, o, y, xx);
                let bn = (z - mean[o] as f64) / (var[o] as f64 + BN_EPS as f64).sqrt() * gamma[o] as f64
                    + beta[o] as f64;
                let folded = conv_at(&x, &wf, &bf, o, y, xx);
                assert!((bn - folded).abs() < 1e-5 * (1.0 + bn.abs()), "{bn} vs {folded}");
            }
        }
    }

    #[test]
    fn safetensors_conv3_2_equals_the_npy_bytes() {
        let p = prefix();
        let npy = asset("assets/layers/craft_vgg16bn_conv3_2_256x256x3x3.npy");
        let hl = u16::from_le_bytes([npy[8], npy[9]]) as usize;
        let raw: Vec<u8> =
            p.conv(VggLayer::Conv3_2).unwrap().kernel.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(raw, npy[10 + hl..]);
        let l = p.layer(VggLayer::Conv3_2).unwrap();
        assert_eq!((l.kernel.n, l.kernel.c, l.geometry.padding.top), (256, 256, 1));
        assert_eq!(l.bias.as_deref(), Some(&p.conv(VggLayer::Conv3_2).unwrap().bias[..]));
        // conv1_2 too.
        let npy = asset("assets/layers/craft_vgg16bn_conv1_2_64x64x3x3.npy");
        let hl = u16::from_le_bytes([npy[8], npy[9]]) as usize;
        let raw: Vec<u8> =
            p.conv(VggLayer::Conv1_2).unwrap().kernel.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(raw, npy[10 + hl..]);
    }

    #[test]
    fn broken_files_are_errors() {
        let bytes = asset("assets/models/vgg16bn_craft_conv1_1-conv3_3.safetensors");
        for cut in [0, 7, 8, 100, bytes.len() / 2, bytes.len() - 1] {
            assert!(VggPrefix::from_safetensors(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(
            VggPrefix::from_safetensors(&asset("assets/layers/craft_vgg16bn_conv1_1_64x3x3x3.npy")).is_err()
        );
        assert!("conv9_9".parse::<VggLayer>().is_err());
        assert_eq!("conv2_2".parse::<VggLayer>().unwrap(), VggLayer::Conv2_2);
    }

    #[test]
    fn preprocessing_by_hand() {
        // One pixel (255, 0, 128), no resize.
        let x = image_to_map(&[255, 0, 128, 9], 1, 1, 128, Normalisation::ImageNet).unwrap();
        let want = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (128.0 / 255.0 - 0.406) / 0.225];
        for (g, w) in x.data.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        assert_eq!(
            image_to_map(&[0, 255, 0, 0], 1, 1, 8, Normalisation::Mtcnn).unwrap().data,
            vec![-127.5 / 128.0, 127.5 / 128.0, -127.5 / 128.0]
        );
        assert!(image_to_map(&[0; 7], 1, 2, 128, Normalisation::Unit).is_err());
        assert!(image_to_map(&[0; 8], 1, 2, 2, Normalisation::Unit).is_err());
        assert_eq!(working_size(512, 256, 128), (64, 128));
        assert_eq!(working_size(300, 451, 128), (128, 85));
        assert_eq!(working_size(20, 10, 128), (10, 20));
        // A constant image stays constant; a horizontal ramp stays a ramp (bilinear).
        let flat = FeatureMap::new(1, 10, 10, vec![3.0; 100]).unwrap();
        assert!(resize_bilinear(&flat, 4, 7).unwrap().data.iter().all(|v| (v - 3.0).abs() < 1e-6));
        let ramp = FeatureMap::new(1, 1, 4, vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(resize_bilinear(&ramp, 1, 2).unwrap().data, vec![0.5, 2.5]);
        let pooled =
            max_pool2x2(&FeatureMap::new(1, 2, 3, vec![1.0, 5.0, 9.0, -2.0, 3.0, 9.0]).unwrap()).unwrap();
        assert_eq!((pooled.h, pooled.w, pooled.data), (1, 1, vec![5.0]));
        assert!(max_pool2x2(&FeatureMap::new(1, 1, 3, vec![0.0; 3]).unwrap()).is_err());
    }

    #[test]
    fn forward_on_astronaut_matches_a_scalar_oracle() {
        let p = prefix();
        let (rgba, w, h) = png_rgba("assets/images/astronaut_256.png");
        assert_eq!((w, h), (256, 256));
        let x = image_to_map(&rgba, w, h, 64, Normalisation::ImageNet).unwrap();
        assert_eq!((x.c, x.h, x.w), (3, 64, 64));
        assert_eq!(p.input_of(&x, VggLayer::Conv1_1).unwrap(), x);
        // Spatial size of each layer's input: pools after conv1_2 and conv2_2.
        let sizes = [64, 64, 32, 32, 16, 16, 16];
        let mut inputs = vec![];
        for (l, s) in VggLayer::ALL.into_iter().zip(sizes) {
            let a = p.input_of(&x, l).unwrap();
            assert_eq!((a.c, a.h, a.w), (l.channels().1, s, s), "{l:?}");
            assert!(a.data.iter().all(|v| v.is_finite()));
            if l != VggLayer::Conv1_1 {
                assert!(a.data.iter().all(|&v| v >= 0.0), "ReLU output below 0 at {l:?}");
                assert!(a.data.iter().any(|&v| v > 0.0), "all zero at {l:?}");
            }
            inputs.push(a);
        }
        // Scalar oracle: conv + BN (unfolded, from the raw tensors) + ReLU (+ pool) at a few positions.
        for (i, l) in VggLayer::ALL.into_iter().enumerate().take(6) {
            let conv = p.conv(l).unwrap();
            let (prev, next) = (&inputs[i], &inputs[i + 1]);
            let bn = |o: usize, z: f64| {
                ((z - conv.mean[o] as f64) / (conv.var[o] as f64 + 1e-5).sqrt() * conv.gamma[o] as f64
                    + conv.beta[o] as f64)
                    .max(0.0)
            };
            for (o, y, xx) in [(0, 0, 0), (5, 3, 7), (17, next.h - 1, next.w - 1), (conv.kernel.n - 1, 2, 1)]
            {
                let want = if l.pool_after() {
                    let mut m = f64::NEG_INFINITY;
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        m = m.max(bn(o, conv_at(prev, &conv.kernel, &conv.bias, o, 2 * y + dy, 2 * xx + dx)));
                    }
                    m
                } else {
                    bn(o, conv_at(prev, &conv.kernel, &conv.bias, o, y, xx))
                };
                let got = next.data[(o * next.h + y) * next.w + xx] as f64;
                assert!(
                    (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                    "{l:?} ({o},{y},{xx}): {got} vs {want}"
                );
            }
        }
    }
}
