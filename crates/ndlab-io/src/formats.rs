//! Model files in, conv layers out: `.npy`, `.npz`, `.safetensors`, `.onnx` and PyTorch `.pt`/`.pth`
//! (the zip format of `torch.save` since 1.6).
//!
//! Every reader is pure (bytes in, [`Result`] out) and refuses sizes, offsets and lengths that do not
//! fit the file *before* allocating. [`detect`] tells the format from the magic bytes, [`inspect`] and
//! [`list_layers`] list every conv-shaped tensor without decoding any weight, and [`load_layer`] decodes
//! only the chosen layer (its weight, bias and, on request, the BatchNorm that follows it).
//!
//! Tensor names are returned verbatim as data; nothing in a file is ever executed or interpreted as
//! markup (the PyTorch reader builds data only and refuses any pickle global it does not know).

mod bn;
pub mod npz;
pub mod onnx;
mod onnx_scan;
pub mod pickle;
pub mod safetensors;
pub mod source;
mod store;
pub mod torch;

use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{ConvGeometry, ConvLayer};
use serde::{Deserialize, Serialize};

pub use source::{ByteSource, WithProgress, MAX_TENSOR_BYTES};
pub use store::TensorMeta;

/// A file format ndlab can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// A single NumPy array (`\x93NUMPY`).
    Npy,
    /// A zip of `.npy` files (`numpy.savez`).
    Npz,
    /// Hugging Face safetensors (8-byte little-endian header length, then a JSON header).
    Safetensors,
    /// An ONNX `ModelProto` (protobuf).
    Onnx,
    /// A PyTorch `torch.save` zip archive (`<name>/data.pkl` + `<name>/data/<key>`).
    TorchZip,
}

impl Format {
    /// A short human name.
    pub fn label(&self) -> &'static str {
        match self {
            Format::Npy => "NumPy .npy",
            Format::Npz => "NumPy .npz",
            Format::Safetensors => "safetensors",
            Format::Onnx => "ONNX",
            Format::TorchZip => "PyTorch zip (torch.save)",
        }
    }
}

/// Memory layout of a raw 4-D weight array (`.npy`, `.npz`, safetensors). ONNX and PyTorch are always OIHW.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Layout {
    /// (out, in, kh, kw): PyTorch, ONNX, Caffe.
    #[default]
    Oihw,
    /// (kh, kw, in, out): TensorFlow, Keras.
    Hwio,
}

impl std::str::FromStr for Layout {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "oihw" => Ok(Layout::Oihw),
            "hwio" => Ok(Layout::Hwio),
            _ => Err(Error::Param(format!("unknown layout '{s}' (expected oihw or hwio)"))),
        }
    }
}

/// Where the BatchNorm that follows a conv keeps its parameters (tensor or initializer names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BnRef {
    /// A display name for the BatchNorm (module prefix or ONNX node name).
    pub name: String,
    /// γ (scale).
    pub gamma: String,
    /// β (shift).
    pub beta: String,
    /// Running mean.
    pub mean: String,
    /// Running variance.
    pub var: String,
    /// ε added to the variance.
    pub eps: f32,
}

/// One conv layer found in a file (nothing decoded yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerEntry {
    /// The weight tensor's name (or the ONNX node's name), verbatim from the file.
    pub name: String,
    /// The name of the weight tensor (equal to `name` except for ONNX, where `name` is the node's).
    pub weight: String,
    /// [N, C per group, Kh, Kw] (after the layout is applied).
    pub shape: [usize; 4],
    /// Element type as stored (e.g. `float32`).
    pub dtype: String,
    /// Stride, padding, dilation, groups when the file says (ONNX); `None` for raw arrays.
    pub geometry: Option<ConvGeometry>,
    /// ONNX `auto_pad` when not `NOTSET`.
    pub auto_pad: Option<String>,
    /// The bias tensor's name, if there is one.
    pub bias: Option<String>,
    /// The BatchNorm that follows, if found (fold it with `fold_bn = true`).
    pub bn: Option<BnRef>,
    /// Anything the reader wants the user to know (e.g. how `SAME` padding was resolved).
    pub note: Option<String>,
}

/// A tensor that is not a conv layer, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// The tensor's (or node's) name, verbatim.
    pub name: String,
    /// Why it is not offered as a conv layer.
    pub reason: String,
}

/// Everything [`inspect`] finds in a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    /// The detected format.
    pub format: Format,
    /// Conv layers, in file order.
    pub layers: Vec<LayerEntry>,
    /// Tensors that are not conv layers, with reasons.
    pub skipped: Vec<Skipped>,
}

/// Tells the format from the first bytes (and, for protobuf, by decoding). `file_name` is only used
/// to word messages and to prefer ONNX for `.onnx` files. Images and unknown bytes are errors.
pub fn detect(bytes: &[u8], file_name: &str) -> Result<Format> {
    detect_source(&bytes, file_name)
}

/// [`detect`] on a random-access source: reads the first bytes (and a zip's central directory).
pub fn detect_source(src: &dyn ByteSource, file_name: &str) -> Result<Format> {
    if src.is_empty() {
        return Err(Error::Format(format!("'{file_name}' is empty")));
    }
    let bytes = src.read_at(0, src.len().min(64) as usize)?;
    if bytes.starts_with(b"\x93NUMPY") {
        return Ok(Format::Npy);
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return zip_kind(src);
    }
    if let Some(kind) = image_kind(&bytes) {
        return Err(Error::Format(format!(
            "'{file_name}' is a {kind} image, not a weights file (not a .npy, .npz, .safetensors, .onnx or PyTorch .pt/.pth)"
        )));
    }
    // Before the pickle check: a safetensors header length can start with the byte 0x80.
    if safetensors::looks_like(&bytes) {
        return Ok(Format::Safetensors);
    }
    if bytes.first() == Some(&0x80) {
        return Err(torch::legacy_error(&bytes));
    }
    if onnx::looks_like(src, file_name) {
        return Ok(Format::Onnx);
    }
    Err(Error::Format(format!(
        "'{file_name}' is not a known weights file (expected .npy, .npz, .safetensors, .onnx or a PyTorch zip .pt/.pth)"
    )))
}

/// npz or PyTorch: a PyTorch archive holds a `*/data.pkl` entry.
fn zip_kind(src: &dyn ByteSource) -> Result<Format> {
    let names = npz::entry_names(src)?;
    if names.iter().any(|n| n == "data.pkl" || n.ends_with("/data.pkl")) {
        Ok(Format::TorchZip)
    } else {
        Ok(Format::Npz)
    }
}

/// PNG, JPEG, GIF, WebP or BMP by magic.
fn image_kind(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG") {
        Some("PNG")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("JPEG")
    } else if bytes.starts_with(b"GIF8") {
        Some("GIF")
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        Some("WebP")
    } else if bytes.starts_with(b"BM") && bytes.len() > 14 && !bytes.starts_with(b"BM{") {
        Some("BMP")
    } else {
        None
    }
}

/// Lists every conv layer (and every skipped tensor with its reason) without decoding weights.
pub fn inspect(bytes: &[u8], file_name: &str, layout: Layout) -> Result<Listing> {
    inspect_source(&bytes, file_name, layout)
}

/// [`inspect`] on a random-access source: reads headers, graphs and directories, no weights.
pub fn inspect_source(src: &dyn ByteSource, file_name: &str, layout: Layout) -> Result<Listing> {
    let format = detect_source(src, file_name)?;
    let (layers, skipped) = match format {
        Format::Onnx => onnx::list(src)?,
        _ => {
            let st = store::open(format, src, file_name)?;
            store::list(st.as_ref(), layout_for(format, layout))?
        }
    };
    Ok(Listing { format, layers, skipped })
}

/// The conv layers of a file. A file without any is an error that says what was found instead.
pub fn list_layers(bytes: &[u8], file_name: &str, layout: Layout) -> Result<Vec<LayerEntry>> {
    list_layers_source(&bytes, file_name, layout)
}

/// [`list_layers`] on a random-access source.
pub fn list_layers_source(src: &dyn ByteSource, file_name: &str, layout: Layout) -> Result<Vec<LayerEntry>> {
    Ok(inspect_conv_source(src, file_name, layout)?.layers)
}

/// [`inspect_source`] of a file that must hold a conv layer: a file without any is an error that
/// says what it holds instead.
pub fn inspect_conv_source(src: &dyn ByteSource, file_name: &str, layout: Layout) -> Result<Listing> {
    let listing = inspect_source(src, file_name, layout)?;
    if listing.layers.is_empty() {
        let why: Vec<String> =
            listing.skipped.iter().take(5).map(|s| format!("'{}': {}", s.name, s.reason)).collect();
        let detail = if why.is_empty() { "the file holds no tensors".to_string() } else { why.join("; ") };
        return Err(Error::Format(format!("no conv layer (4-D weight) in '{file_name}': {detail}")));
    }
    Ok(listing)
}

/// Decodes one conv layer: its weight (converted to f32, OIHW), its bias, and its geometry (the file's,
/// or stride 1 / no padding for raw arrays). With `fold_bn`, the following BatchNorm is folded in
/// (METHOD.md: "BatchNorm that follows a conv is folded into W and b before decoupling").
pub fn load_layer(
    bytes: &[u8],
    file_name: &str,
    layer_name: &str,
    layout: Layout,
    fold_bn: bool,
) -> Result<ConvLayer> {
    load_layer_source(&bytes, file_name, layer_name, layout, fold_bn)
}

/// [`load_layer`] on a random-access source: reads the header/graph/directory again, then only the
/// chosen weight, bias and BatchNorm tensors. Tensors over [`MAX_TENSOR_BYTES`] are refused.
pub fn load_layer_source(
    src: &dyn ByteSource,
    file_name: &str,
    layer_name: &str,
    layout: Layout,
    fold_bn: bool,
) -> Result<ConvLayer> {
    let format = detect_source(src, file_name)?;
    match format {
        Format::Onnx => onnx::load(src, layer_name, fold_bn),
        _ => {
            let st = store::open(format, src, file_name)?;
            store::load(st.as_ref(), layer_name, layout_for(format, layout), fold_bn)
        }
    }
}

/// PyTorch files are always OIHW.
fn layout_for(format: Format, layout: Layout) -> Layout {
    match format {
        Format::TorchZip | Format::Onnx => Layout::Oihw,
        _ => layout,
    }
}

/// The first layer whose name matches, or an error listing a few names.
pub(crate) fn find_entry<'a>(layers: &'a [LayerEntry], name: &str) -> Result<&'a LayerEntry> {
    layers.iter().find(|l| l.name == name || l.weight == name).ok_or_else(|| {
        let some: Vec<&str> = layers.iter().take(8).map(|l| l.name.as_str()).collect();
        Error::Param(format!("no conv layer named '{name}' (layers: {})", some.join(", ")))
    })
}

#[cfg(test)]
mod tests;
