//! `.npy` and `.npz` (a zip of `.npy` files, `numpy.savez`/`savez_compressed`), plus the zip helpers
//! the PyTorch reader shares. Entry sizes are checked against a limit before and while inflating, so a
//! zip bomb is refused rather than expanded.

use super::source::{check_tensor_bytes, ByteSource, SourceReader, MAX_TENSOR_BYTES};
use super::store::{TensorMeta, TensorStore};
use crate::npy::{check_npy_len, peek_npy, read_npy};
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::MAX_ELEMENTS;
use std::io::Read;
use zip::ZipArchive;

/// A zip archive read through a [`ByteSource`] (only the central directory and the entries read).
pub(crate) type Zip<'a> = ZipArchive<SourceReader<'a>>;

/// Largest uncompressed zip entry read (the largest allowed tensor in float64 plus a header).
pub const MAX_ENTRY_BYTES: u64 = (MAX_ELEMENTS as u64) * 8 + 65_536;

/// Opens a zip archive held in memory, with a clear message when it is not one.
pub(crate) fn archive(src: &dyn ByteSource) -> Result<Zip<'_>> {
    ZipArchive::new(SourceReader::new(src))
        .map_err(|e| Error::Format(format!("broken or truncated zip archive: {e}")))
}

/// The names of every entry of a zip archive.
pub(crate) fn entry_names(src: &dyn ByteSource) -> Result<Vec<String>> {
    let z = archive(src)?;
    Ok(z.file_names().map(str::to_string).collect())
}

/// Reads entry `name` in full, refusing declared or actual sizes over `limit`.
pub(crate) fn read_entry(z: &mut Zip<'_>, name: &str, limit: u64) -> Result<Vec<u8>> {
    let f = z.by_name(name).map_err(|e| Error::Format(format!("zip entry '{name}': {e}")))?;
    read_limited(f, name, limit)
}

/// Reads an open entry, refusing more than `limit` bytes.
fn read_limited<R: Read>(f: zip::read::ZipFile<'_, R>, name: &str, limit: u64) -> Result<Vec<u8>> {
    let declared = f.size();
    if declared > limit {
        return Err(Error::TooLarge(format!(
            "zip entry '{name}' declares {declared} bytes, over the {limit}-byte limit"
        )));
    }
    let mut out = Vec::with_capacity(declared.min(1 << 20) as usize);
    let mut taken = f.take(limit + 1);
    taken.read_to_end(&mut out).map_err(|e| {
        Error::Format(format!("zip entry '{name}' cannot be read (truncated or corrupt): {e}"))
    })?;
    if out.len() as u64 > limit {
        return Err(Error::TooLarge(format!("zip entry '{name}' inflates past the {limit}-byte limit")));
    }
    Ok(out)
}

/// Bytes of an entry read to find its `.npy` header.
const PEEK_BYTES: u64 = 64 << 10;

/// Refuses a file or entry of `size` bytes holding one tensor over the limit.
fn check_npy_size(name: &str, size: u64) -> Result<()> {
    check_tensor_bytes(name, size.saturating_sub(PEEK_BYTES))
}

/// A single `.npy` array as a one-tensor table named after the file (the whole file is the tensor).
pub(crate) struct NpyStore<'a> {
    src: &'a dyn ByteSource,
    metas: Vec<TensorMeta>,
}

impl<'a> NpyStore<'a> {
    /// Reads the header only.
    pub(crate) fn open(src: &'a dyn ByteSource, file_name: &str) -> Result<Self> {
        let prefix = src.read_at(0, src.len().min(PEEK_BYTES) as usize)?;
        let head = peek_npy(&prefix)?;
        check_npy_len(&head, src.len())?;
        let (shape, dtype) = (head.shape, head.dtype);
        let name = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
        let name = name.strip_suffix(".npy").unwrap_or(name).to_string();
        Ok(NpyStore { src, metas: vec![TensorMeta { name, shape, dtype: Ok(dtype) }] })
    }
}

impl TensorStore for NpyStore<'_> {
    fn tensors(&self) -> &[TensorMeta] {
        &self.metas
    }
    fn read(&self, name: &str) -> Result<Vec<f32>> {
        check_npy_size(name, self.src.len())?;
        let bytes = self.src.read_at(0, self.src.len() as usize)?;
        Ok(read_npy(&bytes)?.data)
    }
}

/// The arrays of an `.npz`. Opening reads each entry's `.npy` header only; an entry that is not a
/// readable float array is listed as skipped with the `.npy` reader's message.
pub(crate) struct NpzStore<'a> {
    src: &'a dyn ByteSource,
    metas: Vec<TensorMeta>,
    entries: Vec<String>,
}

impl<'a> NpzStore<'a> {
    /// Reads the central directory and the header of every `.npy` entry.
    pub(crate) fn open(src: &'a dyn ByteSource) -> Result<Self> {
        let mut z = archive(src)?;
        let (mut metas, mut entries) = (Vec::new(), Vec::new());
        for i in 0..z.len() {
            let f = z.by_index(i).map_err(|e| Error::Format(format!("zip entry #{i}: {e}")))?;
            let entry = f.name().to_string();
            if f.is_dir() {
                continue;
            }
            let name = entry.strip_suffix(".npy").unwrap_or(&entry).to_string();
            let size = f.size();
            let mut head = Vec::new();
            let peeked = f
                .take(PEEK_BYTES)
                .read_to_end(&mut head)
                .map_err(|e| Error::Format(format!("zip entry '{entry}' cannot be read: {e}")))
                .and_then(|_| peek_npy(&head))
                .and_then(|h| check_npy_len(&h, size).map(|_| h));
            let meta = match peeked {
                Ok(h) => TensorMeta { name, shape: h.shape, dtype: Ok(h.dtype) },
                Err(e) => TensorMeta { name, shape: Vec::new(), dtype: Err(e.to_string()) },
            };
            metas.push(meta);
            entries.push(entry);
        }
        Ok(NpzStore { src, metas, entries })
    }
}

impl TensorStore for NpzStore<'_> {
    fn tensors(&self) -> &[TensorMeta] {
        &self.metas
    }
    fn read(&self, name: &str) -> Result<Vec<f32>> {
        let i = self
            .metas
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| Error::Param(format!("no array named '{name}'")))?;
        let entry = self.entries.get(i).ok_or_else(|| Error::Param(format!("no array named '{name}'")))?;
        let mut z = archive(self.src)?;
        let declared = z.by_name(entry).map(|f| f.size()).unwrap_or(0);
        check_npy_size(name, declared)?;
        Ok(read_npy(&read_entry(&mut z, entry, MAX_TENSOR_BYTES + PEEK_BYTES)?)?.data)
    }
}
