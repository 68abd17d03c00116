//! `TensorProto` ↔ [`Tensor`]. A tensor is walked twice: once for its name, dims, type and where
//! its values are (nothing allocated but the dims), and, once every size is checked against the
//! limits, once more to decode exactly the values its dims call for.

use super::read::Budget;
use super::wire::{bad, fields, Field};
use super::MAX_RANK;
use crate::formats::onnx::TensorProto;
use crate::formats::MAX_TENSOR_BYTES;
use crate::npy::f16_to_f32;
use ndlab_core::error::{Error, Result};
use ndlab_core::graph::{Tensor, TensorData, MAX_DIM};

/// Where a data type's values are when not in `raw_data`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Typed {
    /// `float_data` (4), 32-bit.
    Float = 0,
    /// `int32_data` (5), varints (also the bits of float16 and bfloat16).
    Int32 = 1,
    /// `int64_data` (7), varints.
    Int64 = 2,
    /// `double_data` (10), 64-bit.
    Double = 3,
}

impl Typed {
    fn field(self) -> u32 {
        match self {
            Typed::Float => 4,
            Typed::Int32 => 5,
            Typed::Int64 => 7,
            Typed::Double => 10,
        }
    }
}

/// A data type ndlab reads.
#[derive(Clone, Copy)]
struct DType {
    code: i32,
    /// Bytes per value in `raw_data`.
    size: usize,
    /// Read as [`TensorData::F32`] (else [`TensorData::I64`]).
    float: bool,
    typed: Typed,
}

/// TensorProto.DataType names, for messages.
fn type_name(code: i32) -> &'static str {
    match code {
        0 => "UNDEFINED",
        1 => "FLOAT",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "STRING",
        9 => "BOOL",
        10 => "FLOAT16",
        11 => "DOUBLE",
        12 => "UINT32",
        13 => "UINT64",
        14 => "COMPLEX64",
        15 => "COMPLEX128",
        16 => "BFLOAT16",
        17..=20 => "FLOAT8",
        21 => "UINT4",
        22 => "INT4",
        23 => "FLOAT4E2M1",
        _ => "unknown",
    }
}

fn dtype(code: i32) -> Option<DType> {
    let (size, float, typed) = match code {
        1 => (4, true, Typed::Float),
        10 | 16 => (2, true, Typed::Int32),
        11 => (8, true, Typed::Double),
        7 => (8, false, Typed::Int64),
        6 => (4, false, Typed::Int32),
        4 | 5 => (2, false, Typed::Int32),
        2 | 3 | 9 => (1, false, Typed::Int32),
        _ => return None,
    };
    Some(DType { code, size, float, typed })
}

/// A float value of type `code` from `raw_data` bytes (`b.len()` is the type's size).
fn raw_f32(code: i32, bytes: &[u8]) -> f32 {
    match (code, bytes) {
        (1, &[a, b, c, d]) => f32::from_le_bytes([a, b, c, d]),
        (10, &[a, b]) => f16_to_f32(u16::from_le_bytes([a, b])),
        (16, &[a, b]) => f32::from_bits(u32::from(u16::from_le_bytes([a, b])) << 16),
        (11, &[a, b, c, d, e, f, g, h]) => f64::from_le_bytes([a, b, c, d, e, f, g, h]) as f32,
        _ => f32::NAN,
    }
}

/// An integer value of type `code` from `raw_data` bytes.
fn raw_i64(code: i32, bytes: &[u8]) -> i64 {
    match (code, bytes) {
        (7, &[a, b, c, d, e, f, g, h]) => i64::from_le_bytes([a, b, c, d, e, f, g, h]),
        (6, &[a, b, c, d]) => i64::from(i32::from_le_bytes([a, b, c, d])),
        (5, &[a, b]) => i64::from(i16::from_le_bytes([a, b])),
        (4, &[a, b]) => i64::from(u16::from_le_bytes([a, b])),
        (3, &[a]) => i64::from(a as i8),
        (2, &[a]) => i64::from(a),
        (9, &[a]) => i64::from(a != 0),
        _ => 0,
    }
}

/// A value of `int32_data` (a varint holding an int32) as type `code`.
fn int32_value(code: i32, v: u64) -> i64 {
    let v = v as i32;
    match code {
        5 => i64::from(v as i16),
        4 => i64::from(v as u16),
        3 => i64::from(v as i8),
        2 => i64::from(v as u8),
        9 => i64::from(v != 0),
        _ => i64::from(v),
    }
}

/// What one walk over a `TensorProto` finds, without decoding its values.
pub(super) struct Header<'a> {
    /// `name` (8).
    pub name: String,
    dims: Vec<i64>,
    /// More dims than [`MAX_RANK`] (the count).
    too_many_dims: Option<usize>,
    data_type: i32,
    /// `raw_data` (9), the last one as in protobuf.
    raw: Option<&'a [u8]>,
    /// Values in `float_data`, `int32_data`, `int64_data`, `double_data` (by [`Typed`] index).
    counts: [usize; 4],
    /// `data_location` is EXTERNAL or `external_data` has entries.
    external: bool,
    /// The external file's name.
    location: Option<String>,
    segment: bool,
}

const WHAT: &str = "a tensor";

/// Walks a `TensorProto`'s fields once (see [`Header`]).
pub(super) fn header(body: &[u8]) -> Result<Header<'_>> {
    let mut h = Header {
        name: String::new(),
        dims: Vec::new(),
        too_many_dims: None,
        data_type: 0,
        raw: None,
        counts: [0; 4],
        external: false,
        location: None,
        segment: false,
    };
    let mut ndims = 0usize;
    for f in fields(body, WHAT) {
        let f = f?;
        match f.number {
            1 => {
                ndims += f.varint_count(WHAT)?;
                if ndims > MAX_RANK {
                    h.too_many_dims = Some(ndims);
                } else {
                    f.each_varint(WHAT, |d| h.dims.push(d as i64))?;
                }
            }
            2 => h.data_type = f.int(WHAT)? as i32,
            3 => h.segment = true,
            4 => h.counts[0] += f.fixed_count(4, WHAT)?,
            5 => h.counts[1] += f.varint_count(WHAT)?,
            7 => h.counts[2] += f.varint_count(WHAT)?,
            10 => h.counts[3] += f.fixed_count(8, WHAT)?,
            8 => h.name = f.string(WHAT)?,
            9 => h.raw = Some(f.bytes(WHAT)?),
            13 => {
                h.external = true;
                let (mut key, mut value) = (Vec::new(), String::new());
                for e in fields(f.bytes(WHAT)?, "an external data entry") {
                    let e = e?;
                    match e.number {
                        1 => key = e.bytes("an external data entry")?.to_vec(),
                        2 => value = String::from_utf8_lossy(e.bytes("an external data entry")?).into_owned(),
                        _ => {}
                    }
                }
                if key == b"location" {
                    h.location = Some(value);
                }
            }
            14 => h.external |= f.int(WHAT)? == 1,
            _ => {}
        }
    }
    Ok(h)
}

/// Decodes a tensor: its name and values. `ctx` names it in errors (a Constant's attribute);
/// by default it is "initializer '<name>'". Sizes are checked against [`MAX_DIM`], [`MAX_RANK`],
/// [`MAX_TENSOR_BYTES`] and the `budget` before anything is allocated.
pub(super) fn decode(body: &[u8], ctx: Option<&str>, budget: &mut Budget) -> Result<(String, Tensor)> {
    let h = header(body)?;
    let what = match ctx {
        Some(c) => c.to_string(),
        None => format!("initializer '{}'", h.name),
    };
    if h.external {
        let loc = h.location.as_ref().map(|l| format!(" ('{l}')")).unwrap_or_default();
        return Err(Error::Format(format!(
            "{what}: external data{loc} is not supported: save the model with its weights inside \
             (onnx.save(model, path, save_as_external_data=False))"
        )));
    }
    if h.segment {
        return Err(Error::Format(format!("{what} is a segment of a tensor, which ndlab does not read")));
    }
    let Some(dt) = dtype(h.data_type) else {
        return Err(Error::Format(format!(
            "{what} has data type {} ({}), which ndlab does not read (float, float16, bfloat16, double \
             and integer types only)",
            type_name(h.data_type),
            h.data_type
        )));
    };
    if let Some(n) = h.too_many_dims {
        return Err(Error::TooLarge(format!("{what} has {n} dimensions, more than {MAX_RANK}")));
    }
    let mut dims = Vec::with_capacity(h.dims.len());
    for &d in &h.dims {
        if d < 0 {
            return Err(Error::Format(format!("{what} has a negative dimension ({d})")));
        }
        if d as u64 > MAX_DIM as u64 {
            return Err(Error::TooLarge(format!("{what} has a dimension of {d}, more than {MAX_DIM}")));
        }
        dims.push(d as usize);
    }
    let numel = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
    let decoded = numel.and_then(|n| n.checked_mul(if dt.float { 4 } else { 8 }));
    let (Some(numel), Some(decoded)) = (numel, decoded) else {
        return Err(Error::TooLarge(format!("{what}: the size of dims {dims:?} overflows")));
    };
    if decoded > MAX_TENSOR_BYTES {
        return Err(Error::TooLarge(format!(
            "{what} of dims {dims:?} needs {:.1} MB, over the {} MB limit ndlab reads",
            decoded as f64 / 1e6,
            MAX_TENSOR_BYTES >> 20
        )));
    }
    budget.charge(decoded, &what)?;
    let numel = numel as usize; // ≤ MAX_TENSOR_BYTES / 4: fits any usize ndlab runs on
    let data = if let Some(raw) = h.raw {
        let need = numel * dt.size;
        if raw.len() != need {
            return Err(Error::Format(format!(
                "{what} has {} bytes of raw_data but its dims {dims:?} need {need} ({})",
                raw.len(),
                type_name(dt.code)
            )));
        }
        if dt.float {
            TensorData::F32(raw.chunks_exact(dt.size).map(|b| raw_f32(dt.code, b)).collect())
        } else {
            TensorData::I64(raw.chunks_exact(dt.size).map(|b| raw_i64(dt.code, b)).collect())
        }
    } else {
        let count = h.counts[dt.typed as usize];
        if count != numel {
            return Err(Error::Format(format!(
                "{what} holds {count} values but its dims {dims:?} need {numel} ({})",
                type_name(dt.code)
            )));
        }
        typed_values(body, dt, numel)?
    };
    let t = Tensor { dims, data };
    // The counts were checked above; this only guards the invariant.
    t.check().map_err(|e| Error::Format(format!("{what}: {e}")))?;
    Ok((h.name, t))
}

/// The values of the typed field of `dt`, `numel` of them (counted by [`header`]).
fn typed_values(body: &[u8], dt: DType, numel: usize) -> Result<TensorData> {
    let wanted = |f: &Field| f.number == dt.typed.field();
    let fs = fields(body, WHAT).filter(|f| f.as_ref().map_or(true, wanted));
    Ok(if dt.float {
        let mut out = Vec::with_capacity(numel);
        for f in fs {
            let f = f?;
            match dt.typed {
                Typed::Float => f.each_fixed(4, WHAT, |b| out.push(raw_f32(1, b)))?,
                Typed::Double => f.each_fixed(8, WHAT, |b| out.push(raw_f32(11, b)))?,
                _ => f.each_varint(WHAT, |v| out.push(raw_f32(dt.code, &(v as u16).to_le_bytes())))?,
            }
        }
        if out.len() != numel {
            return Err(bad("a tensor's values changed between two reads"));
        }
        TensorData::F32(out)
    } else {
        let mut out = Vec::with_capacity(numel);
        for f in fs {
            let f = f?;
            match dt.typed {
                Typed::Int64 => f.each_varint(WHAT, |v| out.push(v as i64))?,
                _ => f.each_varint(WHAT, |v| out.push(int32_value(dt.code, v)))?,
            }
        }
        if out.len() != numel {
            return Err(bad("a tensor's values changed between two reads"));
        }
        TensorData::I64(out)
    })
}

/// A tensor as written: FLOAT or INT64, little-endian `raw_data`.
pub(super) fn encode(name: &str, t: &Tensor) -> TensorProto {
    let (data_type, raw_data) = match &t.data {
        TensorData::F32(v) => (1, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        TensorData::I64(v) => (7, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    TensorProto {
        dims: t.dims.iter().map(|&d| d as i64).collect(),
        data_type,
        name: name.to_string(),
        raw_data,
        ..Default::default()
    }
}

/// The ONNX element type of a tensor as [`encode`] writes it.
pub(super) fn elem_type(t: &Tensor) -> i32 {
    match t.data {
        TensorData::F32(_) => 1,
        TensorData::I64(_) => 7,
    }
}
