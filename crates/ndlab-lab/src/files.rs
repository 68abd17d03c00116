//! "Bring your own model": a model file opened in the lab. Pure Rust over a [`ByteSource`] (a Blob
//! in the Web Worker, bytes natively): the file's conv layers are listed with what the page's layer
//! picker shows (shape, MACs at a stated input size, full rank), one layer is loaded (only its
//! tensors are read, with progress), and the layer gets an input made from the chosen image.
//!
//! Nothing here keeps or sends the file anywhere; the page never puts it in the URL (a link cannot
//! carry a file: the link keeps the built-in example and the settings).

use ndlab_core::cost::CostModel;
use ndlab_core::error::Result;
use ndlab_core::layer::{ConvGeometry, ConvLayer, FeatureMap, Kernel};
use ndlab_core::random::Rng;
use ndlab_io::formats::{
    inspect_conv_source, load_layer_source, ByteSource, LayerEntry, Layout, Skipped, WithProgress,
    MAX_TENSOR_BYTES,
};
use ndlab_io::vgg::{image_to_map, Normalisation};
use serde::{Deserialize, Serialize};

/// The input size (height, width) the layer picker's MACs are stated for.
pub const STATED_INPUT_HW: (usize, usize) = (56, 56);

/// Most skipped tensors listed (the total is given).
const MAX_SKIPPED_LISTED: usize = 50;

/// One conv layer of an opened file, as the layer picker shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileLayer {
    /// The layer's name, verbatim from the file (shown as text, never as markup).
    pub name: String,
    /// [N, C per group, Kh, Kw].
    pub shape: [usize; 4],
    /// Element type as stored.
    pub dtype: String,
    /// Stride, padding, dilation, groups when the file says (ONNX).
    pub geometry: Option<ConvGeometry>,
    /// Has a bias.
    pub bias: bool,
    /// The BatchNorm that follows (foldable), by name.
    pub bn: Option<String>,
    /// MACs of the regular layer on a [`STATED_INPUT_HW`] input (None if the geometry does not fit).
    pub macs: Option<u64>,
    /// Weights (N·C·Kh·Kw).
    pub params: u64,
    /// Full rank in DW→PW (min(N per group, K²)) and PW→DW (min(C per group, K²)).
    pub full_rank: (usize, usize),
    /// Bytes of the weight as stored.
    pub bytes: u64,
    /// The weight is over [`MAX_TENSOR_BYTES`]: listed, refused on loading.
    pub too_large: bool,
    /// The reader's note (e.g. how ONNX `SAME` padding was resolved).
    pub note: Option<String>,
}

/// What the page shows about an opened file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileListing {
    /// The file's name, verbatim.
    pub file_name: String,
    /// Size in bytes.
    pub size: u64,
    /// The detected format, for a person.
    pub format: String,
    /// The layout raw arrays were read with.
    pub layout: Layout,
    /// True when the format stores raw arrays (the layout choice matters).
    pub layout_applies: bool,
    /// The input size MACs are stated for.
    pub input_hw: (usize, usize),
    /// Conv layers in file order.
    pub layers: Vec<FileLayer>,
    /// The first tensors that are not conv layers, with reasons.
    pub skipped: Vec<Skipped>,
    /// How many tensors were skipped in all.
    pub skipped_total: usize,
}

/// Bytes per element of a dtype name.
fn dtype_size(dtype: &str) -> u64 {
    match dtype {
        "float16" | "bfloat16" => 2,
        "float64" => 8,
        _ => 4,
    }
}

/// The picker's row for one listed layer.
pub fn file_layer(e: &LayerEntry, hw: (usize, usize)) -> FileLayer {
    let [n, c, kh, kw] = e.shape;
    let g = e.geometry.unwrap_or_default();
    let groups = g.groups.max(1);
    let macs = CostModel::new(n, c * groups, kh, kw, hw.0, hw.1, &g).ok().map(|m| m.regular_macs());
    let params = [n, c, kh, kw].iter().map(|&d| d as u64).product::<u64>();
    let k2 = kh * kw;
    let bytes = params.saturating_mul(dtype_size(&e.dtype));
    FileLayer {
        name: e.name.clone(),
        shape: e.shape,
        dtype: e.dtype.clone(),
        geometry: e.geometry,
        bias: e.bias.is_some(),
        bn: e.bn.as_ref().map(|b| b.name.clone()),
        macs,
        params,
        full_rank: ((n / groups).min(k2), c.min(k2)),
        bytes,
        too_large: bytes > MAX_TENSOR_BYTES,
        note: e.note.clone(),
    }
}

/// Lists a file's conv layers (reads headers, graphs and directories only). A file without any
/// conv layer is an error that says what it holds instead.
pub fn list_file(src: &dyn ByteSource, file_name: &str, layout: Layout) -> Result<FileListing> {
    let listing = inspect_conv_source(src, file_name, layout)?;
    let hw = STATED_INPUT_HW;
    let raw =
        !matches!(listing.format, ndlab_io::formats::Format::Onnx | ndlab_io::formats::Format::TorchZip);
    Ok(FileListing {
        file_name: file_name.to_string(),
        size: src.len(),
        format: listing.format.label().to_string(),
        layout: if raw { layout } else { Layout::Oihw },
        layout_applies: raw,
        input_hw: hw,
        layers: listing.layers.iter().map(|e| file_layer(e, hw)).collect(),
        skipped_total: listing.skipped.len(),
        skipped: listing.skipped.into_iter().take(MAX_SKIPPED_LISTED).collect(),
    })
}

/// Loads one layer of the file, reporting `(stage, fraction)` while its bytes are read.
pub fn load_file_layer(
    src: &dyn ByteSource,
    file_name: &str,
    layer: &str,
    layout: Layout,
    fold_bn: bool,
    report: &mut dyn FnMut(&str, f64),
) -> Result<ConvLayer> {
    let mut on_bytes = |done: u64, total: u64| {
        let stage = format!("reading '{layer}': {:.1} of {:.1} MB", done as f64 / 1e6, total as f64 / 1e6);
        report(&stage, 0.05 + 0.05 * done as f64 / total.max(1) as f64);
    };
    let progressed = WithProgress::new(src, &mut on_bytes);
    load_layer_source(&progressed, file_name, layer, layout, fold_bn)
}

/// Seed of the stand-in features (fixed, so every visit shows the same maps).
const FEATURE_SEED: u64 = 0x006e_646c_6162;

/// The input a file layer runs on for `rgba`: the image itself (ImageNet-normalised) when the
/// layer takes 3 channels; otherwise the image through a fixed random 3×3 conv + ReLU into as many
/// channels as the layer takes (the file's earlier layers are not run), with a sentence saying so.
pub fn file_layer_input(
    layer: &ConvLayer,
    rgba: &[u8],
    width: usize,
    height: usize,
    side: usize,
) -> Result<(FeatureMap, String)> {
    let rgb = image_to_map(rgba, width, height, side, Normalisation::ImageNet)?;
    let cin = layer.in_channels();
    if cin == 3 {
        return Ok((rgb, "the image, normalised as in ImageNet training".into()));
    }
    let x = stand_in_features(&rgb, cin)?;
    Ok((
        x,
        format!(
            "stand-in activations: the image through a fixed random 3×3 conv + ReLU into {cin} channels \
             (the file's earlier layers are not run, so the output error is indicative)"
        ),
    ))
}

/// ReLU(random 3×3 conv of `rgb` into `c` channels), with unit-variance He-style weights.
pub fn stand_in_features(rgb: &FeatureMap, c: usize) -> Result<FeatureMap> {
    let len = ndlab_core::layer::checked_len(&[c, rgb.c, 3, 3])?;
    let mut rng = Rng::new(FEATURE_SEED);
    let scale = (2.0 / (rgb.c * 9) as f64).sqrt();
    let w: Vec<f32> = (0..len).map(|_| (rng.normal() * scale) as f32).collect();
    let conv = ConvLayer::new(Kernel::new(c, rgb.c, 3, 3, w)?, None, ConvGeometry::new(1, 1, 1))?;
    let mut y = ndlab_core::conv::layer_forward(rgb, &conv)?;
    y.data.iter_mut().for_each(|v| *v = v.max(0.0));
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/corpus/{name}", concat!(env!("CARGO_MANIFEST_DIR"), "/../..")))
            .unwrap()
    }

    #[test]
    fn listing_states_macs_and_full_rank_by_hand() {
        let b = corpus("raw_pads.onnx");
        let l = list_file(&b, "raw_pads.onnx", Layout::Hwio).unwrap();
        assert!(!l.layout_applies && l.layout == Layout::Oihw);
        let a = &l.layers[0];
        // conv_a: 6×2×3×3, groups 2, stride 2, pads t0 l1 b2 r1, dilation 1×2 on 56×56:
        // H_out = (56 + 0 + 2 − 1·2 − 1)/2 + 1 = 28; W_out = (56 + 1 + 1 − 2·2 − 1)/2 + 1 = 27;
        // MACs = 28·27·6·2·9 = 81 648.
        assert_eq!(a.shape, [6, 2, 3, 3]);
        assert_eq!(a.macs, Some(28 * 27 * 6 * 2 * 9));
        assert_eq!(a.full_rank, (3, 2));
        assert_eq!(a.params, 108);
        assert!(a.bias && a.bn.is_some() && !a.too_large);
    }

    #[test]
    fn raw_arrays_keep_the_layout_choice_and_name_html_verbatim() {
        let b = corpus("script_names.safetensors");
        let l = list_file(&b, "s.safetensors", Layout::Oihw).unwrap();
        assert!(l.layout_applies);
        assert_eq!(l.layers[0].name, "<script>alert(1)</script>");
        // 8×3×3×3 stride 1, no padding, 56×56 → 54×54 outputs.
        assert_eq!(l.layers[0].macs, Some(54 * 54 * 8 * 3 * 9));
        assert_eq!(l.layers[0].full_rank, (8, 3));
    }

    #[test]
    fn loading_a_10_mb_tensor_reports_progress_per_chunk() {
        let shape = [512usize, 512, 3, 3];
        let bytes = 512 * 512 * 9 * 4;
        let header = format!(r#"{{"w":{{"dtype":"F32","shape":{shape:?},"data_offsets":[0,{bytes}]}}}}"#);
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend(header.as_bytes());
        file.extend((0..bytes / 4).flat_map(|i| ((i % 7) as f32 - 3.0).to_le_bytes()));
        let mut stages = Vec::new();
        let layer = load_file_layer(&file, "w.safetensors", "w", Layout::Oihw, false, &mut |s, f| {
            stages.push((s.to_string(), f))
        })
        .unwrap();
        assert_eq!(layer.kernel.data[8], -2.0); // (8 mod 7) − 3
                                                // 9 437 184 bytes in 4 MiB chunks: 4.2, 8.4, 9.4 MB.
        let texts: Vec<&str> = stages.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            texts,
            ["reading 'w': 4.2 of 9.4 MB", "reading 'w': 8.4 of 9.4 MB", "reading 'w': 9.4 of 9.4 MB"]
        );
        assert!(stages.windows(2).all(|w| w[0].1 < w[1].1));
    }

    #[test]
    fn a_file_without_conv_layers_says_what_it_holds() {
        let e = list_file(&corpus("only_3d.safetensors"), "only_3d.safetensors", Layout::Oihw).unwrap_err();
        assert!(e.to_string().contains("3-D tensor"), "{e}");
    }

    #[test]
    fn stand_in_features_are_relu_of_a_conv_and_the_image_feeds_rgb_layers() {
        let rgba: Vec<u8> = (0..20 * 10 * 4).map(|i| (i * 7 % 256) as u8).collect();
        let k3 = Kernel::new(4, 3, 3, 3, vec![0.1; 108]).unwrap();
        let l3 = ConvLayer::new(k3, None, ConvGeometry::default()).unwrap();
        let (x, what) = file_layer_input(&l3, &rgba, 20, 10, 160).unwrap();
        assert_eq!((x.c, x.h, x.w), (3, 10, 20));
        assert!(what.contains("the image"));
        let k8 = Kernel::new(4, 8, 1, 1, vec![0.1; 32]).unwrap();
        let l8 = ConvLayer::new(k8, None, ConvGeometry::default()).unwrap();
        let (y, what) = file_layer_input(&l8, &rgba, 20, 10, 160).unwrap();
        assert_eq!((y.c, y.h, y.w), (8, 10, 20));
        assert!(what.contains("stand-in"));
        assert!(y.data.iter().all(|&v| v >= 0.0));
        assert!(y.data.iter().any(|&v| v > 0.0));
        // Channels differ (not one map repeated).
        assert_ne!(y.channel(0), y.channel(1));
    }
}
