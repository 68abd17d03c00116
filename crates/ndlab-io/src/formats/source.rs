//! Random-access byte sources: the readers parse a file's header, graph or zip central directory
//! through [`ByteSource::read_at`] and then read only the chosen tensor's bytes, so a 500 MB file is
//! never copied whole. Implemented for `[u8]` (the command line, tests) and, in the Web Worker, for a
//! `Blob` read with `FileReaderSync` on `Blob.slice` ranges (`src/bin/worker.rs`).

use ndlab_core::error::{Error, Result};
use std::cell::RefCell;
use std::io::{Read, Seek, SeekFrom};

/// The largest tensor (bytes as stored) any reader reads: 256 MiB. Larger tensors are listed but
/// refused on loading with a message (the decoupling of such a layer would not fit a tab either).
pub const MAX_TENSOR_BYTES: u64 = 256 << 20;

/// A file that can be read at any offset.
pub trait ByteSource {
    /// Size of the file in bytes.
    fn len(&self) -> u64;
    /// `len` bytes from `offset`; an error if the range runs past the end.
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>>;
    /// True for an empty file.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The range check every source shares: `offset..offset+len` within `size`, as usize indices.
pub fn check_range(offset: u64, len: usize, size: u64) -> Result<(usize, usize)> {
    let end = offset.checked_add(len as u64).filter(|&e| e <= size).ok_or_else(|| {
        Error::Format(format!(
            "the file is truncated: {len} bytes at offset {offset} run past its end ({size} bytes)"
        ))
    })?;
    let start = usize::try_from(offset).map_err(|_| Error::TooLarge(format!("offset {offset}")))?;
    let end = usize::try_from(end).map_err(|_| Error::TooLarge(format!("offset {end}")))?;
    Ok((start, end))
}

impl ByteSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        let (s, e) = check_range(offset, len, ByteSource::len(self))?;
        Ok(self[s..e].to_vec())
    }
}

impl ByteSource for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.as_slice().read_at(offset, len)
    }
}

impl<T: ByteSource + ?Sized> ByteSource for &T {
    fn len(&self) -> u64 {
        (**self).len()
    }
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        (**self).read_at(offset, len)
    }
}

/// Refuses a tensor of `bytes` stored bytes over [`MAX_TENSOR_BYTES`], naming it.
pub fn check_tensor_bytes(name: &str, bytes: u64) -> Result<()> {
    if bytes > MAX_TENSOR_BYTES {
        return Err(Error::TooLarge(format!(
            "tensor '{name}' holds {:.1} MB, over the {} MB limit ndlab reads",
            bytes as f64 / 1e6,
            MAX_TENSOR_BYTES >> 20
        )));
    }
    Ok(())
}

/// Reads larger than this are split into chunks, with a progress report after each.
pub const PROGRESS_CHUNK: usize = 4 << 20;

/// A source that reports progress (`done`, `total` bytes of the current read) during large reads.
pub struct WithProgress<'a> {
    inner: &'a dyn ByteSource,
    report: RefCell<&'a mut dyn FnMut(u64, u64)>,
}

impl<'a> WithProgress<'a> {
    /// Wraps `inner`; `report(done, total)` is called after every chunk of a large read.
    pub fn new(inner: &'a dyn ByteSource, report: &'a mut dyn FnMut(u64, u64)) -> Self {
        WithProgress { inner, report: RefCell::new(report) }
    }
}

impl ByteSource for WithProgress<'_> {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        if len <= PROGRESS_CHUNK {
            return self.inner.read_at(offset, len);
        }
        check_range(offset, len, self.inner.len())?;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let n = PROGRESS_CHUNK.min(len - out.len());
            out.extend(self.inner.read_at(offset + out.len() as u64, n)?);
            if let Ok(mut r) = self.report.try_borrow_mut() {
                (*r)(out.len() as u64, len as u64);
            }
        }
        Ok(out)
    }
}

/// Size of the window a [`SourceReader`] reads ahead.
const WINDOW: usize = 64 << 10;

/// `Read + Seek` over a [`ByteSource`] with a small read-ahead window (for the zip crate and the
/// protobuf scanner, which read many small pieces).
pub struct SourceReader<'a> {
    src: &'a dyn ByteSource,
    pos: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

impl<'a> SourceReader<'a> {
    /// A reader at offset 0.
    pub fn new(src: &'a dyn ByteSource) -> Self {
        SourceReader { src, pos: 0, buf: Vec::new(), buf_start: 0 }
    }

    /// The source this reads.
    pub fn source(&self) -> &'a dyn ByteSource {
        self.src
    }

    /// Up to `want` bytes at the current position (fewer at the end of the file), from the window.
    fn fill(&mut self, want: usize) -> std::io::Result<&[u8]> {
        let size = self.src.len();
        let in_buf = self.pos >= self.buf_start && self.pos < self.buf_start + self.buf.len() as u64;
        if !in_buf {
            let n = (WINDOW.max(want) as u64).min(size.saturating_sub(self.pos)) as usize;
            self.buf = self.src.read_at(self.pos, n).map_err(std::io::Error::other)?;
            self.buf_start = self.pos;
        }
        let at = (self.pos - self.buf_start) as usize;
        let end = (at + want).min(self.buf.len());
        Ok(&self.buf[at..end])
    }
}

impl Read for SourceReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos >= self.src.len() || out.is_empty() {
            return Ok(0);
        }
        if out.len() > WINDOW {
            let n = (out.len() as u64).min(self.src.len() - self.pos) as usize;
            let bytes = self.src.read_at(self.pos, n).map_err(std::io::Error::other)?;
            out[..n].copy_from_slice(&bytes);
            self.pos += n as u64;
            return Ok(n);
        }
        let got = self.fill(out.len())?;
        let n = got.len();
        out[..n].copy_from_slice(got);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SourceReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let size = self.src.len() as i128;
        let target = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => size + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if target < 0 || target > u64::MAX as i128 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek out of range"));
        }
        self.pos = target as u64;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_serve_ranges_and_refuse_past_the_end() {
        let b: &[u8] = &[1, 2, 3, 4, 5];
        assert_eq!(b.read_at(1, 3).unwrap(), vec![2, 3, 4]);
        assert_eq!(b.read_at(5, 0).unwrap(), Vec::<u8>::new());
        assert!(b.read_at(4, 2).is_err());
        assert!(b.read_at(u64::MAX, 2).is_err());
    }

    #[test]
    fn reader_reads_and_seeks_like_a_cursor() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = SourceReader::new(&data);
        let mut c = std::io::Cursor::new(&data);
        for (pos, len) in [(0u64, 10usize), (70_000, 5), (65_530, 20), (199_990, 50), (3, 100_000)] {
            let (mut a, mut b) = (vec![0; len], vec![0; len]);
            r.seek(SeekFrom::Start(pos)).unwrap();
            c.seek(SeekFrom::Start(pos)).unwrap();
            let (na, nb) = (r.read(&mut a).unwrap(), c.read(&mut b).unwrap());
            assert_eq!(&a[..na], &b[..nb], "at {pos}");
            assert!(na > 0);
        }
        assert_eq!(r.seek(SeekFrom::End(-1)).unwrap(), 199_999);
    }

    #[test]
    fn progress_is_reported_per_chunk() {
        let data = vec![7u8; PROGRESS_CHUNK * 2 + 10];
        let mut seen = Vec::new();
        let mut rep = |d: u64, t: u64| seen.push((d, t));
        {
            let p = WithProgress::new(&data, &mut rep);
            assert_eq!(p.read_at(5, PROGRESS_CHUNK * 2).unwrap().len(), PROGRESS_CHUNK * 2);
        }
        let t = (PROGRESS_CHUNK * 2) as u64;
        assert_eq!(seen, vec![(t / 2, t), (t, t)]);
    }
}
