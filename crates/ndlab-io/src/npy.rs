//! Reading `.npy` files (NumPy format 1.0/2.0/3.0): f32, f64 and f16 (converted to f32),
//! C and Fortran order, either endianness. Absurd shapes are refused before any allocation.
//!
//! The header dictionary is parsed by hand (a tiny tokenizer for the Python literal subset NumPy
//! writes: strings, `True`/`False`, tuples of integers), tolerant of spacing and trailing commas.

use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{checked_len, FeatureMap, Kernel, MAX_ELEMENTS};

/// The six magic bytes every `.npy` file starts with.
const MAGIC: &[u8] = b"\x93NUMPY";

/// A dense array read from a `.npy` file, converted to f32 and laid out in C (row-major) order.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Dimensions, outermost first (empty for a 0-d scalar).
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values in C order.
    pub data: Vec<f32>,
}

/// Element types the reader knows: floats (weights, activations) and integers (labels, read by
/// [`read_npy_labels`] only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F16,
    F32,
    F64,
    /// Integers of `size` bytes (booleans are 1-byte unsigned).
    Int {
        size: usize,
        signed: bool,
    },
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
            Dtype::Int { size, .. } => size,
        }
    }
}

/// What the header dictionary says.
#[derive(Debug, Clone, PartialEq)]
struct Header {
    dtype: Dtype,
    little_endian: bool,
    fortran: bool,
    shape: Vec<usize>,
}

/// Parses a whole `.npy` file. Checks the magic, version and header length against the file
/// size, parses the header, refuses shapes over [`MAX_ELEMENTS`] or larger than the data before
/// allocating, converts to f32 and transposes Fortran-ordered data to C order.
pub fn read_npy(bytes: &[u8]) -> Result<NpyArray> {
    let (text, _) = split_header(bytes)?;
    if let Dtype::Int { .. } = parse_header(&text)?.dtype {
        return Err(Error::Format(format!(
            "unsupported dtype {} (expected float16/32/64: <f2 <f4 <f8 or >f2 >f4 >f8)",
            dtype_name(parse_header(&text)?.dtype)
        )));
    }
    let (header, data) = checked_data(bytes)?;
    let values = decode(data, header.dtype, header.little_endian);
    let values =
        if header.fortran && header.shape.len() > 1 { fortran_to_c(&values, &header.shape) } else { values };
    Ok(NpyArray { shape: header.shape, data: values })
}

/// Integer labels (any integer or boolean dtype, C order; a float array of whole numbers is
/// accepted too): the shape and the values.
pub fn read_npy_labels(bytes: &[u8]) -> Result<(Vec<usize>, Vec<i64>)> {
    let (header, data) = checked_data(bytes)?;
    if header.fortran && header.shape.len() > 1 {
        return Err(Error::Format("labels in Fortran order: save them as a 1-D array".into()));
    }
    let values = match header.dtype {
        Dtype::Int { size, signed } => data
            .chunks_exact(size)
            .map(|c| {
                let mut b = [0u8; 8];
                if header.little_endian {
                    b[..size].copy_from_slice(c);
                } else {
                    b[..size].copy_from_slice(c);
                    b[..size].reverse();
                }
                let neg = signed && b[size - 1] & 0x80 != 0;
                if neg {
                    b[size..].fill(0xff);
                }
                i64::from_le_bytes(b)
            })
            .collect(),
        float => decode(data, float, header.little_endian)
            .into_iter()
            .map(|v| {
                if v.is_finite() && v.fract() == 0.0 {
                    Ok(v as i64)
                } else {
                    Err(Error::Format(format!("the label {v} is not a whole number")))
                }
            })
            .collect::<Result<Vec<_>>>()?,
    };
    Ok((header.shape, values))
}

/// The header and exactly the data bytes it declares.
fn checked_data(bytes: &[u8]) -> Result<(Header, &[u8])> {
    let (header_text, data) = split_header(bytes)?;
    let header = parse_header(&header_text)?;
    let count = element_count(&header.shape)?;
    let needed = count
        .checked_mul(header.dtype.size())
        .ok_or_else(|| Error::TooLarge(format!("shape {:?} overflows", header.shape)))?;
    if data.len() < needed {
        return Err(Error::Format(format!(
            "truncated .npy: shape {:?} of {} needs {needed} data bytes, the file holds {}",
            header.shape,
            dtype_name(header.dtype),
            data.len()
        )));
    }
    if data.len() > needed {
        return Err(Error::Format(format!(
            "{} unexpected bytes after the data of shape {:?}",
            data.len() - needed,
            header.shape
        )));
    }
    Ok((header, data))
}

/// What a `.npy` header declares, read by [`peek_npy`].
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHead {
    /// Shape.
    pub shape: Vec<usize>,
    /// Element type name (`float32`...).
    pub dtype: &'static str,
    /// Offset of the data (the header's size).
    pub data_offset: usize,
    /// Bytes of data the shape and dtype need.
    pub data_bytes: usize,
}

/// What a `.npy` header declares, from the file's first bytes (enough to hold the header; the data
/// need not be there). Sizes are checked as in [`read_npy`].
pub fn peek_npy(prefix: &[u8]) -> Result<NpyHead> {
    let (text, data) = split_header(prefix)?;
    let header = parse_header(&text)?;
    let count = element_count(&header.shape)?;
    let data_bytes = count
        .checked_mul(header.dtype.size())
        .ok_or_else(|| Error::TooLarge(format!("shape {:?} overflows", header.shape)))?;
    Ok(NpyHead {
        dtype: dtype_name(header.dtype),
        data_offset: prefix.len() - data.len(),
        data_bytes,
        shape: header.shape,
    })
}

/// Checks that a `.npy` file of `file_len` bytes holds exactly the data its header declares.
pub fn check_npy_len(head: &NpyHead, file_len: u64) -> Result<()> {
    let have = file_len.saturating_sub(head.data_offset as u64);
    let need = head.data_bytes as u64;
    if have < need {
        return Err(Error::Format(format!(
            "truncated .npy: shape {:?} of {} needs {need} data bytes, the file holds {have}",
            head.shape, head.dtype
        )));
    }
    if have > need {
        return Err(Error::Format(format!(
            "{} unexpected bytes after the data of shape {:?}",
            have - need,
            head.shape
        )));
    }
    Ok(())
}

/// Splits the file into its header text and its data bytes.
fn split_header(bytes: &[u8]) -> Result<(String, &[u8])> {
    if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
        return Err(Error::Format("not a .npy file (missing the \\x93NUMPY magic)".into()));
    }
    let major = bytes[6];
    let (len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 => {
            let b = bytes.get(8..12).ok_or_else(|| Error::Format("truncated .npy header".into()))?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        v => return Err(Error::Format(format!("unsupported .npy version {v}.{}", bytes[7]))),
    };
    let end = start.checked_add(len).filter(|&e| e <= bytes.len()).ok_or_else(|| {
        Error::Format(format!("header length {len} runs past the end of the file ({} bytes)", bytes.len()))
    })?;
    let raw = &bytes[start..end];
    let text = if major == 3 {
        std::str::from_utf8(raw).map_err(|_| Error::Format("header is not valid UTF-8".into()))?.to_string()
    } else {
        raw.iter().map(|&b| b as char).collect()
    };
    Ok((text, &bytes[end..]))
}

/// Number of elements with overflow and [`MAX_ELEMENTS`] checks (zero-size shapes allowed here).
fn element_count(shape: &[usize]) -> Result<usize> {
    let mut count: usize = 1;
    for &d in shape {
        count = count.checked_mul(d).ok_or_else(|| Error::TooLarge(format!("shape {shape:?} overflows")))?;
    }
    if count > MAX_ELEMENTS {
        return Err(Error::TooLarge(format!(
            "shape {shape:?} has {count} elements, more than the limit of {MAX_ELEMENTS}"
        )));
    }
    Ok(count)
}

fn dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::F16 => "float16",
        Dtype::F32 => "float32",
        Dtype::F64 => "float64",
        Dtype::Int { size: 1, signed: true } => "int8",
        Dtype::Int { size: 1, signed: false } => "uint8",
        Dtype::Int { size: 2, signed: true } => "int16",
        Dtype::Int { size: 2, signed: false } => "uint16",
        Dtype::Int { size: 4, signed: true } => "int32",
        Dtype::Int { size: 4, signed: false } => "uint32",
        Dtype::Int { signed: true, .. } => "int64",
        Dtype::Int { signed: false, .. } => "uint64",
    }
}

/// Converts raw bytes to f32 values.
fn decode(data: &[u8], dtype: Dtype, little: bool) -> Vec<f32> {
    match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|c| {
                let b = [c[0], c[1], c[2], c[3]];
                if little {
                    f32::from_le_bytes(b)
                } else {
                    f32::from_be_bytes(b)
                }
            })
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|c| {
                let b = [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
                (if little { f64::from_le_bytes(b) } else { f64::from_be_bytes(b) }) as f32
            })
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|c| {
                let b = [c[0], c[1]];
                f16_to_f32(if little { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) })
            })
            .collect(),
        // (Integer arrays are read by `read_npy_labels` only.)
        Dtype::Int { .. } => Vec::new(),
    }
}

/// IEEE 754 binary16 → binary32, exact (normals, subnormals, ±0, ±inf, NaN).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = (h >> 10) & 0x1f;
    let frac = (h & 0x3ff) as f32;
    match exp {
        0 => sign * frac * (2.0f32).powi(-24),
        0x1f if frac == 0.0 => sign * f32::INFINITY,
        0x1f => f32::NAN,
        e => sign * (1.0 + frac / 1024.0) * (2.0f32).powi(e as i32 - 15),
    }
}

/// Reorders column-major data of `shape` into row-major order.
fn fortran_to_c(values: &[f32], shape: &[usize]) -> Vec<f32> {
    // Fortran stride of axis j = product of the dimensions before j.
    let mut fstride = vec![1usize; shape.len()];
    for j in 1..shape.len() {
        fstride[j] = fstride[j - 1] * shape[j - 1];
    }
    let mut out = Vec::with_capacity(values.len());
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..values.len() {
        let off: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        out.push(values.get(off).copied().unwrap_or(0.0));
        // Odometer increment, last axis fastest (C order).
        for j in (0..shape.len()).rev() {
            idx[j] += 1;
            if idx[j] < shape[j] {
                break;
            }
            idx[j] = 0;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Header dictionary parsing
// ---------------------------------------------------------------------------------------------

/// A token of the Python literal subset used by `.npy` headers.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open(char),
    Close(char),
    Colon,
    Comma,
    Str(String),
    Word(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>> {
    let mut toks = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&ch) = chars.peek() {
        match ch {
            c if c.is_whitespace() => {
                chars.next();
            }
            '{' | '(' | '[' => {
                chars.next();
                toks.push(Tok::Open(ch));
            }
            '}' | ')' | ']' => {
                chars.next();
                toks.push(Tok::Close(ch));
            }
            ':' => {
                chars.next();
                toks.push(Tok::Colon);
            }
            ',' => {
                chars.next();
                toks.push(Tok::Comma);
            }
            '\'' | '"' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some(c) if c == ch => break,
                        Some(c) => text.push(c),
                        None => return Err(garbage("unterminated string")),
                    }
                }
                toks.push(Tok::Str(text));
            }
            c if c.is_ascii_alphanumeric() || c == '_' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                toks.push(Tok::Word(word));
            }
            c => return Err(garbage(&format!("unexpected character {c:?}"))),
        }
    }
    Ok(toks)
}

fn garbage(what: &str) -> Error {
    Error::Format(format!("malformed .npy header: {what}"))
}

/// Parses `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
fn parse_header(text: &str) -> Result<Header> {
    let toks = tokenize(text)?;
    let mut it = toks.into_iter().peekable();
    if it.next() != Some(Tok::Open('{')) {
        return Err(garbage("expected a dictionary starting with '{'"));
    }
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        let key = match it.next() {
            Some(Tok::Close('}')) => break,
            Some(Tok::Str(k)) => k,
            other => return Err(garbage(&format!("expected a quoted key, found {other:?}"))),
        };
        if it.next() != Some(Tok::Colon) {
            return Err(garbage(&format!("expected ':' after key '{key}'")));
        }
        match key.as_str() {
            "descr" => match it.next() {
                Some(Tok::Str(d)) => descr = Some(d),
                other => return Err(garbage(&format!("descr must be a string, found {other:?}"))),
            },
            "fortran_order" => match it.next() {
                Some(Tok::Word(w)) if w == "True" => fortran = Some(true),
                Some(Tok::Word(w)) if w == "False" => fortran = Some(false),
                other => {
                    return Err(garbage(&format!("fortran_order must be True or False, found {other:?}")))
                }
            },
            "shape" => shape = Some(parse_shape(&mut it)?),
            other => return Err(garbage(&format!("unexpected key '{other}'"))),
        }
        match it.next() {
            Some(Tok::Comma) => {}
            Some(Tok::Close('}')) => break,
            other => return Err(garbage(&format!("expected ',' or '}}', found {other:?}"))),
        }
    }
    if it.next().is_some() {
        return Err(garbage("text after the closing '}'"));
    }
    let descr = descr.ok_or_else(|| garbage("missing 'descr'"))?;
    let (dtype, little_endian) = parse_descr(&descr)?;
    Ok(Header {
        dtype,
        little_endian,
        fortran: fortran.ok_or_else(|| garbage("missing 'fortran_order'"))?,
        shape: shape.ok_or_else(|| garbage("missing 'shape'"))?,
    })
}

/// Parses a tuple of non-negative integers, e.g. `(256, 256, 3, 3)`, `(5,)`, `()`, `(3L, 4L)`.
fn parse_shape(it: &mut std::iter::Peekable<std::vec::IntoIter<Tok>>) -> Result<Vec<usize>> {
    if it.next() != Some(Tok::Open('(')) {
        return Err(garbage("shape must be a tuple"));
    }
    let mut dims = Vec::new();
    loop {
        match it.next() {
            Some(Tok::Close(')')) => return Ok(dims),
            Some(Tok::Word(w)) => dims.push(parse_dim(&w)?),
            other => return Err(garbage(&format!("bad shape entry {other:?}"))),
        }
        match it.next() {
            Some(Tok::Comma) => {}
            Some(Tok::Close(')')) => return Ok(dims),
            other => return Err(garbage(&format!("expected ',' or ')' in shape, found {other:?}"))),
        }
    }
}

fn parse_dim(w: &str) -> Result<usize> {
    let digits = w.strip_suffix('L').unwrap_or(w);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(garbage(&format!("shape entry '{w}' is not a non-negative integer")));
    }
    digits.parse::<usize>().map_err(|_| Error::TooLarge(format!("shape entry {w} is too large")))
}

/// `<f4`, `>f8`, `=f2`... → (dtype, little endian).
fn parse_descr(d: &str) -> Result<(Dtype, bool)> {
    let unsupported = || {
        Error::Format(format!("unsupported dtype '{d}' (expected float16/32/64: <f2 <f4 <f8 or >f2 >f4 >f8)"))
    };
    let mut chars = d.chars();
    let little = match chars.next() {
        Some('<') => true,
        Some('>') => false,
        Some('=') => cfg!(target_endian = "little"),
        // One-byte types carry no byte order.
        Some('|') => true,
        _ => return Err(unsupported()),
    };
    let dtype = match chars.as_str() {
        "f2" | "e" => Dtype::F16,
        "f4" | "f" => Dtype::F32,
        "f8" | "d" => Dtype::F64,
        "i1" | "b" => Dtype::Int { size: 1, signed: true },
        "u1" | "B" | "b1" | "?" => Dtype::Int { size: 1, signed: false },
        "i2" | "h" => Dtype::Int { size: 2, signed: true },
        "u2" | "H" => Dtype::Int { size: 2, signed: false },
        "i4" | "i" => Dtype::Int { size: 4, signed: true },
        "u4" | "I" => Dtype::Int { size: 4, signed: false },
        "i8" | "q" | "l" => Dtype::Int { size: 8, signed: true },
        "u8" | "Q" | "L" => Dtype::Int { size: 8, signed: false },
        _ => return Err(unsupported()),
    };
    Ok((dtype, little))
}

// ---------------------------------------------------------------------------------------------
// Conversions and writing
// ---------------------------------------------------------------------------------------------

impl NpyArray {
    /// A 4-D OIHW array as a conv [`Kernel`]; NaN/∞ weights give [`Error::NonFinite`].
    pub fn into_kernel(self) -> Result<Kernel> {
        match self.shape[..] {
            [n, c, kh, kw] => Kernel::new(n, c, kh, kw, self.data),
            _ => Err(Error::Shape(format!(
                "a conv kernel must be 4-D (out, in, kh, kw), this array has shape {:?}",
                self.shape
            ))),
        }
    }

    /// A C×H×W or 1×C×H×W array as a [`FeatureMap`]; NaN/∞ values give [`Error::NonFinite`].
    pub fn into_feature_map(self) -> Result<FeatureMap> {
        let (c, h, w) = match self.shape[..] {
            [c, h, w] | [1, c, h, w] => (c, h, w),
            _ => {
                return Err(Error::Shape(format!(
                    "an input must be C×H×W or 1×C×H×W, this array has shape {:?}",
                    self.shape
                )))
            }
        };
        checked_len(&[c, h, w])?;
        if let Some(i) = self.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!("input value #{i} is {}", self.data[i])));
        }
        FeatureMap::new(c, h, w, self.data)
    }

    /// A 1-D array as a vector (e.g. a bias).
    pub fn into_vector(self) -> Result<Vec<f32>> {
        match self.shape[..] {
            [_] => Ok(self.data),
            _ => Err(Error::Shape(format!("expected a 1-D array, this one has shape {:?}", self.shape))),
        }
    }
}

/// Writes a little-endian f32, C-order `.npy` (format 1.0, header padded to 64 bytes).
/// `shape`'s product should equal `data.len()`; if it does not, the data is written as a flat
/// 1-D array so that the file is always self-consistent.
pub fn write_npy_f32(shape: &[usize], data: &[f32]) -> Vec<u8> {
    let fits = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) == Some(data.len());
    let flat = [data.len()];
    let shape = if fits { shape } else { &flat[..] };
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // magic (6) + version (2) + length (2 or 4) + header + '\n' must be a multiple of 64.
    let prefix = if header.len() + 64 < u16::MAX as usize { 10 } else { 12 };
    let total = prefix + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 4 * data.len());
    out.extend_from_slice(MAGIC);
    let len = header.len();
    if prefix == 10 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(len as u16).to_le_bytes());
    } else {
        // Only reachable with absurd shapes; kept correct anyway (format 2.0, 4-byte length).
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(len as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests;
