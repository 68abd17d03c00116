//! The protobuf wire format, walked by hand over a byte slice: each field as its number, its value
//! and its raw bytes (key included), so that the reader can count and bound before it allocates and
//! the writer can copy what it does not change verbatim.
//!
//! Only the wire types ONNX uses are accepted (varint, 64-bit, length-delimited, 32-bit); groups
//! (3, 4) are refused. Every length is checked against the enclosing message before it is used.

use ndlab_core::error::{Error, Result};

/// The value of one field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (little-endian).
    Fixed64([u8; 8]),
    /// Wire type 2: a string, bytes, a message or a packed repeated scalar.
    Bytes(&'a [u8]),
    /// Wire type 5 (little-endian).
    Fixed32([u8; 4]),
}

/// One field of a message.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field<'a> {
    /// Field number.
    pub number: u32,
    /// The value.
    pub value: Value<'a>,
    /// The key as in the file (a writer that changes the value keeps it).
    pub key: &'a [u8],
    /// The whole field as in the file, key and value.
    pub raw: &'a [u8],
}

/// An error for bytes that are not a valid protobuf message.
pub(super) fn bad(msg: impl std::fmt::Display) -> Error {
    Error::Format(format!("not a valid ONNX model (protobuf decoding failed: {msg})"))
}

/// Reads a varint at `*pos`, advancing it.
pub(super) fn varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let b = *buf.get(*pos).ok_or_else(|| bad("a number runs past the end of its message"))?;
        *pos += 1;
        if i == 9 && b > 1 {
            return Err(bad("a varint overflows 64 bits"));
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(bad("a varint longer than 10 bytes"))
}

/// The fields of one message, in order.
pub(super) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    /// What the message is, for errors ("the model", "the graph", "a node"...).
    what: &'static str,
    failed: bool,
}

/// Walks the fields of the message `buf` (`what` names it in errors).
pub(super) fn fields<'a>(buf: &'a [u8], what: &'static str) -> Fields<'a> {
    Fields { buf, pos: 0, what, failed: false }
}

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Field<'a>> {
        let start = self.pos;
        let key = varint(self.buf, &mut self.pos)?;
        let number =
            u32::try_from(key >> 3).map_err(|_| bad(format!("a field number over 2^32 in {}", self.what)))?;
        if number == 0 {
            return Err(bad(format!("field number 0 in {}", self.what)));
        }
        let key_end = self.pos;
        let fixed = |this: &mut Self, n: usize| -> Result<&'a [u8]> {
            let end = this.pos.checked_add(n).filter(|&e| e <= this.buf.len()).ok_or_else(|| {
                bad(format!("field {number} runs past the end of {} (the file is truncated?)", this.what))
            })?;
            let s = &this.buf[this.pos..end];
            this.pos = end;
            Ok(s)
        };
        let value = match key & 7 {
            0 => Value::Varint(varint(self.buf, &mut self.pos)?),
            1 => {
                let s = fixed(self, 8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                Value::Fixed64(a)
            }
            2 => {
                let n = varint(self.buf, &mut self.pos)?;
                let left = (self.buf.len() - self.pos) as u64;
                if n > left {
                    return Err(bad(format!(
                        "field {number} of {} declares {n} bytes, only {left} are left (the file is truncated?)",
                        self.what
                    )));
                }
                Value::Bytes(fixed(self, n as usize)?)
            }
            5 => {
                let s = fixed(self, 4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(s);
                Value::Fixed32(a)
            }
            w => return Err(bad(format!("wire type {w} (field {number} of {})", self.what))),
        };
        Ok(Field { number, value, key: &self.buf[start..key_end], raw: &self.buf[start..self.pos] })
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let r = self.next_field();
        self.failed = r.is_err();
        Some(r)
    }
}

impl<'a> Field<'a> {
    fn wrong(&self, want: &str, what: &str) -> Error {
        bad(format!("field {} of {what} should be {want}", self.number))
    }

    /// A length-delimited value (a message, string or bytes).
    pub fn bytes(&self, what: &str) -> Result<&'a [u8]> {
        match self.value {
            Value::Bytes(b) => Ok(b),
            _ => Err(self.wrong("length-delimited", what)),
        }
    }

    /// A UTF-8 string.
    pub fn string(&self, what: &str) -> Result<String> {
        let b = self.bytes(what)?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| bad(format!("field {} of {what} is not UTF-8 text", self.number)))
    }

    /// A varint as a (two's complement) signed integer: int64, int32 and enums.
    pub fn int(&self, what: &str) -> Result<i64> {
        match self.value {
            Value::Varint(v) => Ok(v as i64),
            _ => Err(self.wrong("a varint", what)),
        }
    }

    /// A 32-bit float.
    pub fn float(&self, what: &str) -> Result<f32> {
        match self.value {
            Value::Fixed32(b) => Ok(f32::from_le_bytes(b)),
            _ => Err(self.wrong("a 32-bit float", what)),
        }
    }

    /// How many values a repeated varint field adds (one, or a packed run's count).
    pub fn varint_count(&self, what: &str) -> Result<usize> {
        match self.value {
            Value::Varint(_) => Ok(1),
            Value::Bytes(b) => {
                if b.last().is_some_and(|&x| x & 0x80 != 0) {
                    return Err(bad(format!(
                        "a packed field {} of {what} ends inside a number",
                        self.number
                    )));
                }
                Ok(b.iter().filter(|&&x| x & 0x80 == 0).count())
            }
            _ => Err(self.wrong("varints", what)),
        }
    }

    /// Calls `f` with each value of a repeated varint field (one, or a packed run).
    pub fn each_varint(&self, what: &str, mut f: impl FnMut(u64)) -> Result<()> {
        match self.value {
            Value::Varint(v) => f(v),
            Value::Bytes(b) => {
                let mut pos = 0;
                while pos < b.len() {
                    f(varint(b, &mut pos)?);
                }
            }
            _ => return Err(self.wrong("varints", what)),
        }
        Ok(())
    }

    /// How many values a repeated fixed-size field of `size` bytes (4 or 8) adds.
    pub fn fixed_count(&self, size: usize, what: &str) -> Result<usize> {
        match (self.value, size) {
            (Value::Fixed32(_), 4) | (Value::Fixed64(_), 8) => Ok(1),
            (Value::Bytes(b), _) if b.len() % size == 0 => Ok(b.len() / size),
            (Value::Bytes(b), _) => Err(bad(format!(
                "a packed field {} of {what} holds {} bytes, not a multiple of {size}",
                self.number,
                b.len()
            ))),
            _ => Err(self.wrong(if size == 4 { "32-bit values" } else { "64-bit values" }, what)),
        }
    }

    /// Calls `f` with each value of a repeated fixed-size field (as little-endian bytes).
    pub fn each_fixed(&self, size: usize, what: &str, mut f: impl FnMut(&[u8])) -> Result<()> {
        match (self.value, size) {
            (Value::Fixed32(b), 4) => f(&b),
            (Value::Fixed64(b), 8) => f(&b),
            (Value::Bytes(b), _) if b.len() % size == 0 => b.chunks_exact(size).for_each(f),
            _ => return Err(self.wrong(if size == 4 { "32-bit values" } else { "64-bit values" }, what)),
        }
        Ok(())
    }
}

/// Appends a varint.
pub(super) fn put_varint(out: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, out);
}

/// Appends a length-delimited field `number` holding `body`.
pub(super) fn put_message(out: &mut Vec<u8>, number: u32, body: &[u8]) {
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, out);
    put_varint(out, body.len() as u64);
    out.extend_from_slice(body);
}
