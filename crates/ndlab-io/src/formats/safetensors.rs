//! `.safetensors` (Hugging Face): an 8-byte little-endian header length, a JSON header naming every
//! tensor's dtype, shape and byte range, then the data. Built on the `safetensors` crate, which
//! validates every offset and size; the header length is checked against the file first so that a
//! lying header never causes an allocation, and only the header and the chosen tensor are read.

use super::source::{check_tensor_bytes, ByteSource};
use super::store::{decode_le, DType, TensorMeta, TensorStore};
use ::safetensors::tensor::{Dtype as StDtype, Metadata, TensorInfo};
use ::safetensors::SafeTensorError;
use ndlab_core::error::{Error, Result};

/// Headers larger than this are refused (the `safetensors` crate's own limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Does this look like a safetensors file (header length in range, then `{`)?
pub fn looks_like(bytes: &[u8]) -> bool {
    match header_len(bytes) {
        Some(n) => n >= 2 && bytes.get(8) == Some(&b'{'),
        None => false,
    }
}

fn header_len(bytes: &[u8]) -> Option<u64> {
    let b: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// The tensors of a safetensors file: the header is parsed, the data is read tensor by tensor.
pub(crate) struct StStore<'a> {
    src: &'a dyn ByteSource,
    /// Offset of the data section (8 + header length).
    data_start: u64,
    meta: Metadata,
    metas: Vec<TensorMeta>,
}

/// Our dtype for theirs, or why not.
fn dtype(d: StDtype) -> std::result::Result<DType, String> {
    match d {
        StDtype::F32 => Ok(DType::F32),
        StDtype::F16 => Ok(DType::F16),
        StDtype::BF16 => Ok(DType::BF16),
        StDtype::F64 => Ok(DType::F64),
        other => Err(format!("unsupported dtype {other:?} (only F32, F16, BF16, F64 weights are read)")),
    }
}

/// A person's message for the crate's errors.
fn message(e: SafeTensorError, len: u64) -> Error {
    match e {
        SafeTensorError::InvalidHeaderDeserialization(j) => {
            Error::Format(format!("safetensors header is not valid JSON or not a tensor table: {j}"))
        }
        SafeTensorError::InvalidHeader(_) => Error::Format("safetensors header is not valid UTF-8".into()),
        SafeTensorError::InvalidOffset(n) => Error::Format(format!(
            "safetensors: tensor '{n}' has data offsets that are out of order or overlap"
        )),
        SafeTensorError::TensorInvalidInfo => {
            Error::Format("safetensors: a tensor's byte range does not match its shape and dtype".into())
        }
        SafeTensorError::MetadataIncompleteBuffer => Error::Format(format!(
            "safetensors: tensor offsets do not match the file size ({len} bytes): truncated or padded file"
        )),
        SafeTensorError::ValidationOverflow => {
            Error::TooLarge("safetensors: a tensor shape overflows".into())
        }
        other => Error::Format(format!("safetensors: {other}")),
    }
}

/// Parses the JSON header the way the crate does (`__metadata__` dropped, tensors ordered by
/// offset) and lets [`Metadata::new`] validate every offset, shape and dtype size.
fn parse_header(bytes: &[u8], len: u64) -> Result<Metadata> {
    let text = std::str::from_utf8(bytes).map_err(|e| message(SafeTensorError::InvalidHeader(e), len))?;
    let json = |e| message(SafeTensorError::InvalidHeaderDeserialization(e), len);
    let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).map_err(json)?;
    map.remove("__metadata__");
    let mut tensors = map
        .into_iter()
        .map(|(k, v)| Ok((k, serde_json::from_value::<TensorInfo>(v).map_err(json)?)))
        .collect::<Result<Vec<_>>>()?;
    tensors.sort_by_key(|(_, t)| t.data_offsets);
    Metadata::new(None, tensors).map_err(|e| message(e, len))
}

impl<'a> StStore<'a> {
    /// Reads the header length and the header (nothing else), checks them against the file size.
    pub(crate) fn open(src: &'a dyn ByteSource) -> Result<Self> {
        let len = src.len();
        let n = header_len(&src.read_at(0, 8.min(len as usize))?).ok_or_else(|| {
            Error::Format(format!("truncated safetensors: {len} bytes, the header length alone needs 8"))
        })?;
        if n > MAX_HEADER_BYTES {
            return Err(Error::TooLarge(format!(
                "safetensors header of {n} bytes is over the {MAX_HEADER_BYTES}-byte limit"
            )));
        }
        if n + 8 > len {
            return Err(Error::Format(format!(
                "truncated safetensors: the header length {n} runs past the end of the file ({len} bytes)"
            )));
        }
        let meta = parse_header(&src.read_at(8, n as usize)?, len)?;
        if meta.data_len() as u64 + 8 + n != len {
            return Err(message(SafeTensorError::MetadataIncompleteBuffer, len));
        }
        let metas = meta
            .offset_keys()
            .into_iter()
            .filter_map(|name| {
                let info = meta.info(&name)?;
                Some(TensorMeta {
                    shape: info.shape.clone(),
                    dtype: dtype(info.dtype).map(DType::name),
                    name,
                })
            })
            .collect();
        Ok(StStore { src, data_start: 8 + n, meta, metas })
    }
}

impl TensorStore for StStore<'_> {
    fn tensors(&self) -> &[TensorMeta] {
        &self.metas
    }

    fn read(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.meta.info(name).ok_or_else(|| Error::Param(format!("no tensor named '{name}'")))?;
        let d = dtype(t.dtype).map_err(|e| Error::Format(format!("tensor '{name}': {e}")))?;
        let count = ndlab_core::layer::checked_len(&t.shape)?;
        let (begin, end) = t.data_offsets;
        let bytes = (end - begin) as u64;
        check_tensor_bytes(name, bytes)?;
        let data = self.src.read_at(self.data_start + begin as u64, bytes as usize)?;
        decode_le(&data, d, count, &format!("tensor '{name}'"))
    }
}
