//! Labelled data for whole networks: an `.npz` holding `x` (float, the model's input with batch
//! N first) and `y` (integer labels), or an IDX images/labels pair (MNIST's format, raw or
//! gzipped: images scaled to [0, 1] as N × 1 × H × W). Sizes are checked before allocating.

use crate::npy::{read_npy, read_npy_labels};
use ndlab_core::error::{Error, Result};
use std::io::Read;

/// Most values the images may hold (256 M floats, 1 GB).
pub const MAX_VALUES: usize = 1 << 28;

/// Images (or any inputs) with optional labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Dims, N first.
    pub dims: Vec<usize>,
    /// N · (the rest) values, row-major.
    pub x: Vec<f32>,
    /// One label per item, when the data has them.
    pub y: Option<Vec<usize>>,
}

impl Dataset {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.dims.first().copied().unwrap_or(0)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per item.
    pub fn item_len(&self) -> usize {
        self.dims.iter().skip(1).product()
    }

    /// Items `range` as their own dataset.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Result<Dataset> {
        let (a, b) = (range.start.min(self.len()), range.end.min(self.len()));
        let per = self.item_len();
        let mut dims = self.dims.clone();
        dims[0] = b.saturating_sub(a);
        Ok(Dataset {
            dims,
            x: self.x.get(a * per..b * per).map(<[f32]>::to_vec).unwrap_or_default(),
            y: self.y.as_ref().map(|y| y[a..b.max(a)].to_vec()),
        })
    }

    fn checked(self) -> Result<Dataset> {
        if self.dims.is_empty() || self.dims[0] == 0 {
            return Err(Error::Shape("the data holds no items".into()));
        }
        if let Some(y) = &self.y {
            if y.len() != self.len() {
                return Err(Error::Shape(format!("{} inputs but {} labels", self.len(), y.len())));
            }
        }
        if self.x.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite("the data holds NaN or infinity".into()));
        }
        Ok(self)
    }
}

/// An `.npz` with `x` and (optionally) `y`.
pub fn read_npz(bytes: &[u8]) -> Result<Dataset> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::Format(format!("not an .npz (zip) file: {e}")))?;
    let mut member = |name: &str| -> Result<Option<Vec<u8>>> {
        let mut f = match zip.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(Error::Format(format!("{name} in the .npz: {e}"))),
        };
        let size = f.size();
        if size > (MAX_VALUES as u64) * 8 + (1 << 20) {
            return Err(Error::TooLarge(format!("{name} in the .npz is {size} bytes")));
        }
        let mut out = Vec::with_capacity(size as usize);
        f.by_ref()
            .take(size + 1)
            .read_to_end(&mut out)
            .map_err(|e| Error::Format(format!("{name} in the .npz: {e}")))?;
        Ok(Some(out))
    };
    let x = member("x.npy")?.ok_or_else(|| Error::Format("the .npz has no array named x".into()))?;
    let y = member("y.npy")?;
    let x = read_npy(&x).map_err(|e| Error::Format(format!("x: {e}")))?;
    if x.data.len() > MAX_VALUES {
        return Err(Error::TooLarge(format!("x holds {} values", x.data.len())));
    }
    let y = match y {
        Some(b) => {
            let (shape, v) = read_npy_labels(&b).map_err(|e| Error::Format(format!("y: {e}")))?;
            if shape.len() > 1 && shape.iter().skip(1).any(|&d| d != 1) {
                return Err(Error::Shape(format!("y has shape {shape:?}: one label per item expected")));
            }
            Some(labels(v)?)
        }
        None => None,
    };
    Dataset { dims: x.shape, x: x.data, y }.checked()
}

fn labels(v: Vec<i64>) -> Result<Vec<usize>> {
    v.into_iter()
        .map(|l| usize::try_from(l).map_err(|_| Error::Format(format!("the label {l} is negative"))))
        .collect()
}

/// The bytes, gunzipped when they are gzip (at most `limit` bytes out).
fn maybe_gunzip(bytes: &[u8], limit: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Format(format!("a gzip file that does not decompress: {e}")))?;
    if out.len() > limit {
        return Err(Error::TooLarge(format!("the file decompresses to more than {limit} bytes")));
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// An IDX file: its dims and its unsigned-byte payload.
fn read_idx(bytes: &[u8], what: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let b = maybe_gunzip(bytes, MAX_VALUES + (1 << 10))?;
    if b.len() < 4 || b[0] != 0 || b[1] != 0 {
        return Err(Error::Format(format!("the {what} file is not IDX (MNIST format)")));
    }
    if b[2] != 0x08 {
        return Err(Error::Format(format!(
            "the {what} file holds type 0x{:02x}; ndlab reads unsigned bytes (0x08)",
            b[2]
        )));
    }
    let rank = b[3] as usize;
    let head = 4 + 4 * rank;
    if rank == 0 || rank > 4 || b.len() < head {
        return Err(Error::Format(format!("the {what} file has a bad IDX header")));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes([b[4 + 4 * i], b[5 + 4 * i], b[6 + 4 * i], b[7 + 4 * i]]) as usize)
        .collect();
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_VALUES);
    let n = n.ok_or_else(|| Error::TooLarge(format!("the {what} file declares dims {dims:?}")))?;
    if b.len() - head != n {
        return Err(Error::Format(format!(
            "the {what} file declares {n} values and holds {}",
            b.len() - head
        )));
    }
    Ok((dims, b[head..].to_vec()))
}

/// An IDX images file (N × H × W bytes, raw or gzipped) and, optionally, its labels file:
/// images as N × 1 × H × W floats in [0, 1].
pub fn read_idx_pair(images: &[u8], labels_file: Option<&[u8]>) -> Result<Dataset> {
    let (dims, px) = read_idx(images, "images")?;
    let dims = match dims.as_slice() {
        &[n, h, w] => vec![n, 1, h, w],
        &[n, h, w, c] => {
            return Err(Error::Shape(format!(
                "{n} images of {h}×{w}×{c}: ndlab reads grey images (N × H × W)"
            )))
        }
        other => return Err(Error::Shape(format!("images of dims {other:?}: N × H × W expected"))),
    };
    let x = px.iter().map(|&v| v as f32 / 255.0).collect();
    let y = match labels_file {
        Some(l) => {
            let (ldims, lv) = read_idx(l, "labels")?;
            if ldims.len() != 1 {
                return Err(Error::Shape(format!("labels of dims {ldims:?}: one per image expected")));
            }
            Some(lv.into_iter().map(usize::from).collect())
        }
        None => None,
    };
    Dataset { dims, x, y }.checked()
}

/// Labelled data from a file's bytes, by content: `.npz` (zip) or an IDX images file (raw or
/// gzipped; labels then come from a second file).
pub fn read_dataset(bytes: &[u8]) -> Result<Dataset> {
    if bytes.starts_with(b"PK") {
        read_npz(bytes)
    } else {
        read_idx_pair(bytes, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn idx_pairs_read_raw_and_gzipped_and_refuse_what_does_not_fit() {
        let images = idx(&[2, 2, 3], &[0, 255, 51, 102, 153, 204, 1, 2, 3, 4, 5, 6]);
        let labels = idx(&[2], &[7, 3]);
        let d = read_idx_pair(&images, Some(&labels)).unwrap();
        assert_eq!(d.dims, vec![2, 1, 2, 3]);
        assert_eq!(&d.x[..3], &[0.0, 1.0, 0.2]);
        assert_eq!(d.y, Some(vec![7, 3]));
        let mut gz = Vec::new();
        {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::fast());
            e.write_all(&images).unwrap();
        }
        assert_eq!(read_idx_pair(&gz, None).unwrap().x, d.x);
        assert!(read_idx_pair(&images, Some(&idx(&[3], &[1, 2, 3]))).is_err(), "3 labels for 2 images");
        assert!(read_idx_pair(&images[..10], None).is_err(), "truncated");
        assert!(read_idx_pair(&idx(&[4_000_000_000, 100, 100], &[]), None).is_err(), "huge dims");
        assert!(read_idx_pair(b"\x1f\x8bnot gzip", None).is_err());
        assert_eq!(d.slice(1..2).unwrap().y, Some(vec![3]));
    }
}
