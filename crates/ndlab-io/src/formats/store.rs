//! What npy, npz, safetensors and PyTorch files have in common: a table of named tensors. Listing,
//! bias and BatchNorm matching, layout handling and loading are written once here.

use super::source::ByteSource;
use super::{bn, find_entry, Format, LayerEntry, Layout, Skipped};
use crate::npy::f16_to_f32;
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{checked_len, ConvGeometry, ConvLayer, Kernel};

/// Element types the readers convert to f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DType {
    F16,
    BF16,
    F32,
    F64,
}

impl DType {
    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }

    /// NumPy-style name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    /// Little-endian element `i` of `bytes` (caller checked the length).
    fn at(self, bytes: &[u8], i: usize) -> f32 {
        let s = self.size();
        let b = &bytes[i * s..(i + 1) * s];
        match self {
            DType::F16 => f16_to_f32(u16::from_le_bytes([b[0], b[1]])),
            DType::BF16 => f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
            DType::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            DType::F64 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
        }
    }
}

/// Converts `count` little-endian elements to f32, checking the byte length first.
pub(crate) fn decode_le(bytes: &[u8], dtype: DType, count: usize, what: &str) -> Result<Vec<f32>> {
    let need =
        count.checked_mul(dtype.size()).ok_or_else(|| Error::TooLarge(format!("{what}: size overflows")))?;
    if bytes.len() != need {
        return Err(Error::Format(format!(
            "{what}: {count} {} values need {need} bytes, the file holds {}",
            dtype.name(),
            bytes.len()
        )));
    }
    Ok((0..count).map(|i| dtype.at(bytes, i)).collect())
}

/// One tensor of a file, as listed (nothing decoded).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorMeta {
    /// Name, verbatim.
    pub name: String,
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// The element type, or why it is not supported.
    pub dtype: std::result::Result<&'static str, String>,
}

/// A file that is a table of named tensors.
pub(crate) trait TensorStore {
    /// Every tensor, in file order.
    fn tensors(&self) -> &[TensorMeta];
    /// Decodes one tensor to f32 (C order, shape as listed).
    fn read(&self, name: &str) -> Result<Vec<f32>>;
}

/// Opens a raw-tensor file of the given format.
pub(crate) fn open<'a>(
    format: Format,
    src: &'a dyn ByteSource,
    file_name: &str,
) -> Result<Box<dyn TensorStore + 'a>> {
    match format {
        Format::Npy => Ok(Box::new(super::npz::NpyStore::open(src, file_name)?)),
        Format::Npz => Ok(Box::new(super::npz::NpzStore::open(src)?)),
        Format::Safetensors => Ok(Box::new(super::safetensors::StStore::open(src)?)),
        Format::TorchZip => Ok(Box::new(super::torch::TorchStore::open(src)?)),
        Format::Onnx => Err(Error::Format("internal: ONNX is not a tensor table".into())),
    }
}

/// Why a tensor is not a conv weight, or `None` if it is one.
fn skip_reason(t: &TensorMeta) -> Option<String> {
    if let Err(e) = &t.dtype {
        return Some(e.clone());
    }
    if t.shape.len() != 4 {
        return Some(format!("{}-D tensor {:?}, not a conv weight (needs 4-D)", t.shape.len(), t.shape));
    }
    if t.shape.contains(&0) {
        return Some(format!("zero-size tensor {:?}", t.shape));
    }
    if let Err(e) = checked_len(&t.shape) {
        return Some(e.to_string());
    }
    None
}

/// [N, C, Kh, Kw] from a stored 4-D shape.
fn oihw_shape(shape: &[usize], layout: Layout) -> [usize; 4] {
    match layout {
        Layout::Oihw => [shape[0], shape[1], shape[2], shape[3]],
        Layout::Hwio => [shape[3], shape[2], shape[0], shape[1]],
    }
}

/// Lists conv layers (4-D tensors) and skipped tensors.
pub(crate) fn list(st: &dyn TensorStore, layout: Layout) -> Result<(Vec<LayerEntry>, Vec<Skipped>)> {
    let tensors = st.tensors();
    let mut layers = Vec::new();
    let mut skipped = Vec::new();
    let mut used: Vec<String> = Vec::new();
    for t in tensors {
        if let Some(reason) = skip_reason(t) {
            skipped.push(Skipped { name: t.name.clone(), reason });
            continue;
        }
        let shape = oihw_shape(&t.shape, layout);
        let bias = bn::find_bias(tensors, &t.name, shape[0]);
        let bnref = bn::find_bn(tensors, &t.name, shape[0]);
        used.extend(bias.iter().cloned());
        if let Some(b) = &bnref {
            used.extend([b.gamma.clone(), b.beta.clone(), b.mean.clone(), b.var.clone()]);
        }
        layers.push(LayerEntry {
            name: t.name.clone(),
            weight: t.name.clone(),
            shape,
            dtype: t.dtype.clone().unwrap_or("?").to_string(),
            geometry: None,
            auto_pad: None,
            bias,
            bn: bnref,
            note: None,
        });
    }
    // Biases and BatchNorm parameters are part of a layer, not skipped tensors.
    skipped.retain(|s| !used.contains(&s.name));
    Ok((layers, skipped))
}

/// Loads one layer: weight (layout applied), bias, BatchNorm folded on request.
pub(crate) fn load(st: &dyn TensorStore, name: &str, layout: Layout, fold_bn: bool) -> Result<ConvLayer> {
    let (layers, skipped) = list(st, layout)?;
    if let Some(s) = skipped.iter().find(|s| s.name == name) {
        return Err(Error::Format(format!("'{}' is not a conv layer: {}", s.name, s.reason)));
    }
    let entry = find_entry(&layers, name)?;
    let raw = st.read(&entry.weight)?;
    let [n, c, kh, kw] = entry.shape;
    let kernel = match layout {
        Layout::Oihw => Kernel::new(n, c, kh, kw, raw),
        Layout::Hwio => Kernel::from_hwio(kh, kw, c, n, &raw),
    }
    .map_err(|e| in_tensor(&entry.weight, e))?;
    let bias = match &entry.bias {
        Some(b) => Some(read_vec(st, b, n)?),
        None => None,
    };
    let (kernel, bias) = match (&entry.bn, fold_bn) {
        (Some(r), true) => bn::fold(kernel, bias, r, |nm| read_vec(st, nm, n))?,
        (None, true) => return Err(Error::Param(format!("layer '{name}' has no BatchNorm to fold"))),
        _ => (kernel, bias),
    };
    ConvLayer::new(kernel, bias, ConvGeometry::default())
}

/// A 1-D tensor of length `n`, finite.
fn read_vec(st: &dyn TensorStore, name: &str, n: usize) -> Result<Vec<f32>> {
    let v = st.read(name)?;
    if v.len() != n {
        return Err(Error::Shape(format!("'{name}' has {} values, expected {n}", v.len())));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFinite(format!("tensor '{name}' holds NaN or infinity")));
    }
    Ok(v)
}

/// Names the tensor in an error.
fn in_tensor(name: &str, e: Error) -> Error {
    match e {
        Error::NonFinite(m) => Error::NonFinite(format!("tensor '{name}': {m}")),
        Error::Shape(m) => Error::Shape(format!("tensor '{name}': {m}")),
        other => other,
    }
}
