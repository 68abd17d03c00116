//! `.npy` and `.npz` (a zip of `.npy` files, `numpy.savez`/`savez_compressed`), plus the zip helpers
//! the PyTorch reader shares. Entry sizes are checked against a limit before and while inflating, so a
//! zip bomb is refused rather than expanded.

use super::store::{TensorMeta, TensorStore};
use crate::error::{Error, Result};
use crate::layer::MAX_ELEMENTS;
use crate::npy::{read_npy, NpyArray};
use std::io::{Cursor, Read};
use zip::ZipArchive;

/// Largest uncompressed zip entry read (the largest allowed tensor in float64 plus a header).
pub const MAX_ENTRY_BYTES: u64 = (MAX_ELEMENTS as u64) * 8 + 65_536;

/// Opens a zip archive held in memory, with a clear message when it is not one.
pub(crate) fn archive(bytes: &[u8]) -> Result<ZipArchive<Cursor<&[u8]>>> {
    ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| Error::Format(format!("broken or truncated zip archive: {e}")))
}

/// The names of every entry of a zip archive.
pub(crate) fn entry_names(bytes: &[u8]) -> Result<Vec<String>> {
    let z = archive(bytes)?;
    Ok(z.file_names().map(str::to_string).collect())
}

/// Reads entry `name` in full, refusing declared or actual sizes over `limit`.
pub(crate) fn read_entry(z: &mut ZipArchive<Cursor<&[u8]>>, name: &str, limit: u64) -> Result<Vec<u8>> {
    let f = z.by_name(name).map_err(|e| Error::Format(format!("zip entry '{name}': {e}")))?;
    read_limited(f, name, limit)
}

/// Reads an open entry, refusing more than `limit` bytes.
fn read_limited(f: zip::read::ZipFile<'_, Cursor<&[u8]>>, name: &str, limit: u64) -> Result<Vec<u8>> {
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

/// A single `.npy` array as a one-tensor table named after the file.
pub(crate) struct NpyStore {
    metas: Vec<TensorMeta>,
    array: NpyArray,
}

impl NpyStore {
    /// Parses the whole array (the `.npy` reader checks every size first).
    pub(crate) fn open(bytes: &[u8], file_name: &str) -> Result<Self> {
        let array = read_npy(bytes)?;
        let name = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
        let name = name.strip_suffix(".npy").unwrap_or(name).to_string();
        Ok(NpyStore {
            metas: vec![TensorMeta { name, shape: array.shape.clone(), dtype: Ok("float32") }],
            array,
        })
    }
}

impl TensorStore for NpyStore {
    fn tensors(&self) -> &[TensorMeta] {
        &self.metas
    }
    fn read(&self, _name: &str) -> Result<Vec<f32>> {
        Ok(self.array.data.clone())
    }
}

/// The arrays of an `.npz`. Every entry is parsed when the file is opened (npz files are small);
/// an entry that is not a readable float array is listed as skipped with the `.npy` reader's message.
pub(crate) struct NpzStore {
    metas: Vec<TensorMeta>,
    arrays: Vec<Option<NpyArray>>,
}

impl NpzStore {
    /// Reads every `.npy` entry.
    pub(crate) fn open(bytes: &[u8]) -> Result<Self> {
        let mut z = archive(bytes)?;
        let (mut metas, mut arrays) = (Vec::new(), Vec::new());
        for i in 0..z.len() {
            let f = z.by_index(i).map_err(|e| Error::Format(format!("zip entry #{i}: {e}")))?;
            let entry = f.name().to_string();
            if f.is_dir() {
                continue;
            }
            let name = entry.strip_suffix(".npy").unwrap_or(&entry).to_string();
            let parsed = read_limited(f, &entry, MAX_ENTRY_BYTES).and_then(|b| read_npy(&b));
            match parsed {
                Ok(a) => {
                    metas.push(TensorMeta { name, shape: a.shape.clone(), dtype: Ok("float32") });
                    arrays.push(Some(a));
                }
                Err(e) => {
                    metas.push(TensorMeta { name, shape: Vec::new(), dtype: Err(e.to_string()) });
                    arrays.push(None);
                }
            }
        }
        Ok(NpzStore { metas, arrays })
    }
}

impl TensorStore for NpzStore {
    fn tensors(&self) -> &[TensorMeta] {
        &self.metas
    }
    fn read(&self, name: &str) -> Result<Vec<f32>> {
        let i = self
            .metas
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| Error::Param(format!("no array named '{name}'")))?;
        match self.arrays.get(i) {
            Some(Some(a)) => Ok(a.data.clone()),
            _ => Err(Error::Format(format!("array '{name}' could not be read"))),
        }
    }
}
