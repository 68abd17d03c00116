//! `.safetensors` (Hugging Face): an 8-byte little-endian header length, a JSON header naming every
//! tensor's dtype, shape and byte range, then the data. Built on the `safetensors` crate, which
//! validates every offset against the buffer; the header length is checked here first so that a
//! lying header never causes an allocation.

use super::store::{decode_le, DType, TensorMeta, TensorStore};
use crate::error::{Error, Result};
use ::safetensors::{tensor::Dtype as StDtype, SafeTensorError, SafeTensors};

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

/// The tensors of a safetensors file.
pub(crate) struct StStore<'a> {
    st: SafeTensors<'a>,
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
fn message(e: SafeTensorError, len: usize) -> Error {
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

impl<'a> StStore<'a> {
    /// Checks the header length against the file, then lets the crate validate the header.
    pub(crate) fn open(bytes: &'a [u8]) -> Result<Self> {
        let n = header_len(bytes).ok_or_else(|| {
            Error::Format(format!(
                "truncated safetensors: {} bytes, the header length alone needs 8",
                bytes.len()
            ))
        })?;
        if n > MAX_HEADER_BYTES {
            return Err(Error::TooLarge(format!(
                "safetensors header of {n} bytes is over the {MAX_HEADER_BYTES}-byte limit"
            )));
        }
        if n + 8 > bytes.len() as u64 {
            return Err(Error::Format(format!(
                "truncated safetensors: the header length {n} runs past the end of the file ({} bytes)",
                bytes.len()
            )));
        }
        let st = SafeTensors::deserialize(bytes).map_err(|e| message(e, bytes.len()))?;
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| message(e, bytes.len()))?;
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
        Ok(StStore { st, metas })
    }
}

impl TensorStore for StStore<'_> {
    fn tensors(&self) -> &[TensorMeta] {
        &self.metas
    }

    fn read(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.st.tensor(name).map_err(|_| Error::Param(format!("no tensor named '{name}'")))?;
        let d = dtype(t.dtype()).map_err(|e| Error::Format(format!("tensor '{name}': {e}")))?;
        let count = crate::layer::checked_len(t.shape())?;
        decode_le(t.data(), d, count, &format!("tensor '{name}'"))
    }
}
