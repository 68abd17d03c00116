//! A streaming protobuf scan of an ONNX `ModelProto` over a [`ByteSource`]: the graph's nodes and the
//! initializers' small fields are kept (and decoded with `prost`), while every initializer's
//! `raw_data` and packed `float_data`/`double_data` is only *located* (offset and length), so a
//! 500 MB model is parsed by reading its graph and then only the chosen weights.

use super::onnx::{GraphProto, TensorProto};
use super::source::{ByteSource, SourceReader};
use ndlab_core::error::{Error, Result};
use prost::Message;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};

/// How a located tensor payload is encoded (all little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload {
    /// `raw_data`: the tensor's `data_type`, little-endian.
    Raw,
    /// packed `float_data`: f32.
    Float,
    /// packed `double_data`: f64.
    Double,
}

/// Where an initializer's values are in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Located {
    /// Byte offset in the file.
    pub offset: u64,
    /// Byte length.
    pub len: u64,
    /// Encoding.
    pub payload: Payload,
}

/// The model as scanned: its IR version, its graph without bulk data, and where that data is.
pub(crate) struct Scanned {
    /// `ir_version` (0 when absent).
    pub ir_version: i64,
    /// The graph (nodes, names, initializers' dims/type/name; no `raw_data`).
    pub graph: Option<GraphProto>,
    /// Initializer name → located payload (the last one wins, as in protobuf).
    pub data: HashMap<String, Located>,
}

/// Largest message kept in memory (a node, or the graph without its bulk data).
const MAX_KEPT: u64 = 64 << 20;

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::Format(format!("not a valid ONNX model (protobuf decoding failed: {msg})"))
}

/// A protobuf reader over a byte range of the source.
struct Scan<'a> {
    r: SourceReader<'a>,
    pos: u64,
}

impl Scan<'_> {
    fn byte(&mut self) -> Result<u8> {
        let mut b = [0u8];
        self.r.read_exact(&mut b).map_err(|_| bad("unexpected end of the file"))?;
        self.pos += 1;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint longer than 10 bytes"))
    }

    fn seek(&mut self, to: u64) -> Result<()> {
        self.r.seek(SeekFrom::Start(to)).map_err(bad)?;
        self.pos = to;
        Ok(())
    }

    /// `n` bytes at the current position, kept in memory (refused over [`MAX_KEPT`]).
    fn take(&mut self, n: u64, end: u64) -> Result<Vec<u8>> {
        if n > MAX_KEPT || self.pos + n > end {
            return Err(bad(format!("a field of {n} bytes does not fit its message")));
        }
        let mut out = vec![0u8; n as usize];
        self.r.read_exact(&mut out).map_err(|_| bad("unexpected end of the file"))?;
        self.pos += n;
        Ok(out)
    }

    /// Reads a key; `None` at `end`.
    fn key(&mut self, end: u64) -> Result<Option<(u32, u8, u64)>> {
        if self.pos >= end {
            return Ok(None);
        }
        let start = self.pos;
        let k = self.varint()?;
        let (field, wire) = ((k >> 3) as u32, (k & 7) as u8);
        if field == 0 {
            return Err(bad("field number 0"));
        }
        Ok(Some((field, wire, start)))
    }

    /// Skips the value of a field of wire type `wire`, checking it stays within `end`.
    fn skip(&mut self, wire: u8, end: u64) -> Result<()> {
        let to = match wire {
            0 => {
                self.varint()?;
                self.pos
            }
            1 => self.pos + 8,
            5 => self.pos + 4,
            2 => {
                let n = self.varint()?;
                self.pos.checked_add(n).ok_or_else(|| bad("length overflows"))?
            }
            w => return Err(bad(format!("unsupported wire type {w}"))),
        };
        if to > end {
            return Err(bad("a field runs past the end of its message"));
        }
        self.seek(to)
    }

    /// The length of a length-delimited field, checked against `end`; returns (start, end).
    fn delimited(&mut self, end: u64) -> Result<(u64, u64)> {
        let n = self.varint()?;
        let e = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= end)
            .ok_or_else(|| bad(format!("a field of {n} bytes runs past the end of its message")))?;
        Ok((self.pos, e))
    }

    /// Copies the field that started at `start` (key included) up to its end into `out`.
    fn copy_field(&mut self, start: u64, wire: u8, end: u64, out: &mut Vec<u8>) -> Result<()> {
        self.skip(wire, end)?;
        let stop = self.pos;
        self.seek(start)?;
        out.extend(self.take(stop - start, end)?);
        Ok(())
    }
}

/// Appends a length-delimited field `field` holding `body`.
fn put_message(out: &mut Vec<u8>, field: u32, body: &[u8]) {
    prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, out);
    prost::encoding::encode_varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// Scans a `TensorProto` in `start..end`: keeps dims, type, name and external-data fields; locates
/// `raw_data` and packed `float_data`/`double_data`.
fn tensor(s: &mut Scan, end: u64) -> Result<(Vec<u8>, Option<Located>)> {
    let (mut kept, mut located) = (Vec::new(), None);
    while let Some((field, wire, start)) = s.key(end)? {
        let payload = match (field, wire) {
            (9, 2) => Some(Payload::Raw),
            (4, 2) => Some(Payload::Float),
            (10, 2) => Some(Payload::Double),
            _ => None,
        };
        match payload {
            Some(payload) => {
                let (a, b) = s.delimited(end)?;
                located = Some(Located { offset: a, len: b - a, payload });
                s.seek(b)?;
            }
            None if matches!(field, 1 | 2 | 4 | 8 | 10 | 13 | 14) => {
                s.copy_field(start, wire, end, &mut kept)?
            }
            None => s.skip(wire, end)?,
        }
    }
    Ok((kept, located))
}

/// Scans a `GraphProto` in `..end`: nodes (1) and name (2) kept, initializers (5) scanned.
fn graph(s: &mut Scan, end: u64, data: &mut HashMap<String, Located>) -> Result<GraphProto> {
    let mut kept = Vec::new();
    while let Some((field, wire, start)) = s.key(end)? {
        match (field, wire) {
            (5, 2) => {
                let (_, e) = s.delimited(end)?;
                let (body, located) = tensor(s, e)?;
                if let Some(l) = located {
                    let t = TensorProto::decode(body.as_slice()).map_err(bad)?;
                    data.insert(t.name, l);
                }
                put_message(&mut kept, 5, &body);
            }
            (1 | 2, _) => s.copy_field(start, wire, end, &mut kept)?,
            _ => s.skip(wire, end)?,
        }
        if kept.len() as u64 > MAX_KEPT {
            return Err(Error::TooLarge(format!(
                "ONNX graph over {} MB without its weights",
                MAX_KEPT >> 20
            )));
        }
    }
    GraphProto::decode(kept.as_slice()).map_err(bad)
}

/// Scans a whole model: top-level fields are walked, only the graph is kept.
pub(crate) fn scan(src: &dyn ByteSource) -> Result<Scanned> {
    let end = src.len();
    let mut s = Scan { r: SourceReader::new(src), pos: 0 };
    let mut out = Scanned { ir_version: 0, graph: None, data: HashMap::new() };
    while let Some((field, wire, _)) = s.key(end)? {
        match (field, wire) {
            (1, 0) => out.ir_version = s.varint()? as i64,
            (7, 2) => {
                let (_, e) = s.delimited(end)?;
                out.graph = Some(graph(&mut s, e, &mut out.data)?);
                s.seek(e)?;
            }
            _ => s.skip(wire, end)?,
        }
    }
    Ok(out)
}
