//! What a layer is fed in the inference views: the normalised RGB image for 3-channel layers, the
//! real VGG16-BN activations for VGG layers, and for other layers the VGG activations with the
//! same channel count (a stand-in with real image statistics, labelled as such in the page).

use super::catalog::Example;
use super::RgbaImage;
use crate::error::{Error, Result};
use crate::layer::FeatureMap;

/// The VGG16-BN prefix weights, relative to the page.
pub const MODEL_ASSET: &str = "assets/models/vgg16bn_craft_conv1_1-conv3_3.safetensors";

/// ImageNet normalisation of torchvision (the model's preprocessing).
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// How the input of a layer is made.
#[derive(Debug, Clone, PartialEq)]
pub enum InputPlan {
    /// The normalised RGB image.
    Rgb,
    /// The activations that feed this VGG16-BN conv (its real input).
    Vgg {
        /// Conv name, e.g. `conv3_2`.
        layer: &'static str,
        /// True when the layer is not that VGG conv but borrows its input (same channel count).
        stand_in: bool,
    },
    /// The normalised grey image repeated over the channels (no VGG tap has this many channels).
    Repeated,
}

/// The plan for an example.
pub fn input_plan(ex: &Example) -> InputPlan {
    if let Some(layer) = ex.vgg_layer {
        if layer == "conv1_1" {
            return InputPlan::Rgb;
        }
        return InputPlan::Vgg { layer, stand_in: false };
    }
    match ex.in_channels() {
        Some(3) => InputPlan::Rgb,
        Some(64) => InputPlan::Vgg { layer: "conv1_2", stand_in: true },
        Some(128) => InputPlan::Vgg { layer: "conv2_2", stand_in: true },
        Some(256) => InputPlan::Vgg { layer: "conv3_2", stand_in: true },
        _ => InputPlan::Repeated,
    }
}

impl InputPlan {
    /// True when the VGG prefix weights are needed.
    pub fn needs_model(&self) -> bool {
        matches!(self, InputPlan::Vgg { .. })
    }

    /// A sentence for the page.
    pub fn describe(&self) -> String {
        match self {
            InputPlan::Rgb => "the image, normalised as in ImageNet training".into(),
            InputPlan::Vgg { layer, stand_in: false } => {
                format!("the real VGG16-BN activations that feed {layer} for this image")
            }
            InputPlan::Vgg { layer, stand_in: true } => format!(
                "stand-in input: the VGG16-BN activations feeding {layer} (same channel count; \
                 this network's own activations are not shipped)"
            ),
            InputPlan::Repeated => "the normalised grey image repeated over the input channels".into(),
        }
    }

    /// Builds the input feature map with `channels` channels.
    pub fn run(&self, image: &RgbaImage, model: Option<&[u8]>, channels: usize) -> Result<FeatureMap> {
        let x = match self {
            InputPlan::Rgb => normalised_rgb(image)?,
            InputPlan::Vgg { layer, .. } => {
                let model =
                    model.ok_or_else(|| Error::Param("the VGG16-BN prefix weights are missing".into()))?;
                vgg_input(model, image, layer)?
            }
            InputPlan::Repeated => repeated_grey(image, channels)?,
        };
        if x.c != channels {
            return Err(Error::Shape(format!("the layer takes {channels} channels, the input has {}", x.c)));
        }
        Ok(x)
    }
}

/// RGBA bytes → 3 × H × W, (pixel/255 − mean) / std.
pub fn normalised_rgb(image: &RgbaImage) -> Result<FeatureMap> {
    let (h, w) = (image.height, image.width);
    let mut data = vec![0.0f32; 3 * h * w];
    for (p, px) in image.rgba.chunks_exact(4).enumerate() {
        for ch in 0..3 {
            data[ch * h * w + p] = (px[ch] as f32 / 255.0 - MEAN[ch]) / STD[ch];
        }
    }
    FeatureMap::new(3, h, w, data)
}

fn repeated_grey(image: &RgbaImage, channels: usize) -> Result<FeatureMap> {
    let rgb = normalised_rgb(image)?;
    let hw = rgb.h * rgb.w;
    let grey: Vec<f32> =
        (0..hw).map(|p| (rgb.data[p] + rgb.data[hw + p] + rgb.data[2 * hw + p]) / 3.0).collect();
    let data = (0..channels).flat_map(|_| grey.iter().copied()).collect();
    FeatureMap::new(channels, rgb.h, rgb.w, data)
}

/// The activations that feed VGG16-BN conv `layer`.
fn vgg_input(model: &[u8], image: &RgbaImage, layer: &str) -> Result<FeatureMap> {
    let _ = (model, image);
    Err(Error::Param(format!("the VGG16-BN prefix (input of {layer}) is not available in this build yet")))
}

impl Example {
    /// Input channels, read from the title's "(C→N)" (adapter until the catalogue carries shapes).
    pub fn in_channels(&self) -> Option<usize> {
        let open = self.title.rfind('(')?;
        let arrow = self.title[open..].find('→')? + open;
        self.title.get(open + 1..arrow)?.trim().parse().ok()
    }
}
