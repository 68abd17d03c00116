//! PyTorch `.pt`/`.pth` files in the zip format of `torch.save` (PyTorch ≥ 1.6): `<archive>/data.pkl`
//! is a pickle of the state_dict whose tensors point, through persistent ids, at raw little-endian
//! storages `<archive>/data/<key>`. The pickle is read by [`super::pickle`], which builds data only.
//! A checkpoint dict holding the state_dict (e.g. `{"model": state_dict, "epoch": 3}`) is flattened
//! with dotted names.

use super::npz::{archive, read_entry};
use super::pickle::{self, Value};
use super::source::{check_tensor_bytes, ByteSource, MAX_TENSOR_BYTES};
use super::store::{DType, TensorMeta, TensorStore};
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{checked_len, MAX_ELEMENTS};

/// Largest `data.pkl` read.
const MAX_PICKLE_BYTES: u64 = 256 << 20;

/// Deepest nesting of dicts flattened.
const MAX_DEPTH: usize = 8;

/// The message for a bare (non-zip) pickle, e.g. a legacy `torch.save` file.
pub(crate) fn legacy_error(bytes: &[u8]) -> Error {
    let magic = [0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    let what = if bytes.get(2..14) == Some(&magic[..]) {
        "legacy PyTorch format (pre-1.6, not a zip)"
    } else {
        "a bare Python pickle, not a PyTorch zip archive"
    };
    Error::Format(format!(
        "{what}: re-save with torch.save(model.state_dict(), path, _use_new_zipfile_serialization=True) in PyTorch ≥ 1.6 (pickles are never executed)"
    ))
}

/// Where one tensor's values live.
#[derive(Debug, Clone, PartialEq)]
struct TensorRef {
    key: String,
    dtype: std::result::Result<DType, String>,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// The tensors of a PyTorch archive.
pub(crate) struct TorchStore<'a> {
    src: &'a dyn ByteSource,
    prefix: String,
    metas: Vec<TensorMeta>,
    refs: Vec<TensorRef>,
}

fn err(msg: impl Into<String>) -> Error {
    Error::Format(format!("PyTorch file: {}", msg.into()))
}

/// A non-negative integer from the pickle.
fn uint(v: &Value, what: &str) -> Result<usize> {
    match v {
        Value::Int(i) if *i >= 0 => usize::try_from(*i).map_err(|_| err(format!("{what} {i} too large"))),
        other => Err(err(format!("{what} is {other:?}, not a non-negative integer"))),
    }
}

/// A tuple of non-negative integers.
fn uints(v: &Value, what: &str) -> Result<Vec<usize>> {
    match v {
        Value::Tuple(x) if x.len() <= 8 => x.iter().map(|i| uint(i, what)).collect(),
        other => Err(err(format!("{what} is {other:?}, not a tuple of up to 8 integers"))),
    }
}

/// `torch.FloatStorage` → f32, etc.
fn storage_dtype(name: &str) -> std::result::Result<DType, String> {
    match name {
        "FloatStorage" => Ok(DType::F32),
        "HalfStorage" => Ok(DType::F16),
        "BFloat16Storage" => Ok(DType::BF16),
        "DoubleStorage" => Ok(DType::F64),
        other => Err(format!(
            "unsupported dtype torch.{other} (only float32/16, bfloat16, float64 weights are read)"
        )),
    }
}

/// The arguments of `_rebuild_tensor_v2(storage, offset, size, stride, ...)`.
fn tensor_ref(args: &[Value]) -> Result<TensorRef> {
    let [Value::PersId(pid), offset, size, stride, ..] = args else {
        return Err(err("tensor without a storage, offset, size and stride"));
    };
    let Value::Tuple(pid) = pid.as_ref() else { return Err(err("storage id is not a tuple")) };
    let (ty, key) = match pid.as_slice() {
        [Value::Str(tag), Value::Global(_, ty), Value::Str(key), ..] if tag == "storage" => (ty, key),
        other => return Err(err(format!("unknown storage id {other:?}"))),
    };
    if key.contains('/') || key.contains("..") || key.len() > 64 {
        return Err(err(format!("invalid storage key '{key}'")));
    }
    let shape = uints(size, "tensor size")?;
    let stride = uints(stride, "tensor stride")?;
    if stride.len() != shape.len() {
        return Err(err(format!("size {shape:?} and stride {stride:?} differ in length")));
    }
    Ok(TensorRef {
        key: key.clone(),
        dtype: storage_dtype(ty),
        offset: uint(offset, "storage offset")?,
        shape,
        stride,
    })
}

/// Collects (name, tensor) pairs from nested dicts.
fn flatten(v: &Value, prefix: &str, depth: usize, out: &mut Vec<(String, TensorRef)>) -> Result<()> {
    let Value::Dict(items) = v else { return Ok(()) };
    for (k, v) in items {
        let key = match k {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            _ => continue,
        };
        let name = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
        match v {
            Value::Tensor(args) => out.push((name, tensor_ref(args)?)),
            Value::Dict(_) if depth < MAX_DEPTH => flatten(v, &name, depth + 1, out)?,
            _ => {}
        }
    }
    Ok(())
}

impl<'a> TorchStore<'a> {
    /// Reads `*/data.pkl` and maps names to storages (no tensor data is read).
    pub(crate) fn open(src: &'a dyn ByteSource) -> Result<Self> {
        let mut z = archive(src)?;
        let pkl = z
            .file_names()
            .find(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
            .map(str::to_string)
            .ok_or_else(|| err("no data.pkl in the archive"))?;
        let prefix = pkl.strip_suffix("data.pkl").unwrap_or_default().to_string();
        let root = pickle::load(&read_entry(&mut z, &pkl, MAX_PICKLE_BYTES)?)?;
        if !matches!(root, Value::Dict(_)) {
            return Err(err(
                "data.pkl does not hold a dict (a state_dict); save model.state_dict(), not the model",
            ));
        }
        let mut pairs = Vec::new();
        flatten(&root, "", 0, &mut pairs)?;
        let metas = pairs
            .iter()
            .map(|(n, r)| TensorMeta {
                name: n.clone(),
                shape: r.shape.clone(),
                dtype: r.dtype.clone().map(DType::name),
            })
            .collect();
        let refs = pairs.into_iter().map(|(_, r)| r).collect();
        Ok(TorchStore { src, prefix, metas, refs })
    }
}

/// Gathers a (possibly strided) tensor from its storage bytes, checking every index first.
fn gather(storage: &[u8], r: &TensorRef, d: DType, name: &str) -> Result<Vec<f32>> {
    let count = checked_len(&r.shape).map_err(|e| err(format!("tensor '{name}': {e}")))?;
    let elems = storage.len() / d.size();
    let mut last = r.offset;
    for (&n, &s) in r.shape.iter().zip(&r.stride) {
        last = (n - 1)
            .checked_mul(s)
            .and_then(|x| x.checked_add(last))
            .ok_or_else(|| err("stride overflows"))?;
    }
    if last >= elems || count > MAX_ELEMENTS {
        return Err(err(format!(
            "tensor '{name}' (offset {}, size {:?}, stride {:?}) runs past its storage of {elems} elements",
            r.offset, r.shape, r.stride
        )));
    }
    let bytes_of = |i: usize| &storage[i * d.size()..(i + 1) * d.size()];
    let mut out = Vec::with_capacity(count);
    let mut idx = vec![0usize; r.shape.len()];
    for _ in 0..count {
        let at = r.offset + idx.iter().zip(&r.stride).map(|(i, s)| i * s).sum::<usize>();
        out.extend(super::store::decode_le(bytes_of(at), d, 1, name)?);
        for k in (0..idx.len()).rev() {
            idx[k] += 1;
            if idx[k] < r.shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(out)
}

impl TensorStore for TorchStore<'_> {
    fn tensors(&self) -> &[TensorMeta] {
        &self.metas
    }

    fn read(&self, name: &str) -> Result<Vec<f32>> {
        let i = self
            .metas
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| Error::Param(format!("no tensor named '{name}'")))?;
        let r = &self.refs[i];
        let d = r.dtype.clone().map_err(|e| err(format!("tensor '{name}': {e}")))?;
        let count = checked_len(&r.shape).map_err(|e| err(format!("tensor '{name}': {e}")))?;
        check_tensor_bytes(name, (count as u64).saturating_mul(d.size() as u64))?;
        let mut z = archive(self.src)?;
        let storage = read_entry(&mut z, &format!("{}data/{}", self.prefix, r.key), MAX_TENSOR_BYTES)?;
        gather(&storage, r, d, name)
    }
}
