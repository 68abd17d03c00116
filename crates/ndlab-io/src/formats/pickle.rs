//! A minimal pickle *reader*: a stack machine that only builds plain data (dicts, lists, tuples,
//! strings, numbers) and records globals as names. Nothing is ever imported, resolved or called;
//! only the handful of globals a PyTorch state_dict uses are accepted, every other global (such as
//! `os.system`) is refused, and so is every opcode outside the set `torch.save` emits.

use ndlab_core::error::{Error, Result};
use std::collections::HashMap;

/// A built value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True`/`False`.
    Bool(bool),
    /// An integer (up to 64 bits).
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict, in insertion order.
    Dict(Vec<(Value, Value)>),
    /// An accepted global, by module and name (never resolved).
    Global(String, String),
    /// A persistent id (`BINPERSID`): for PyTorch, a storage reference tuple.
    PersId(Box<Value>),
    /// A `torch._utils._rebuild_tensor_v2` call, not evaluated: its argument tuple.
    Tensor(Vec<Value>),
}

/// Globals a state_dict may name. `torch.*Storage` is checked separately.
const ALLOWED: [(&str, &str); 3] = [
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
];

/// Largest number of values the machine may build (cloned memo entries count), against pickle bombs.
const MAX_VALUES: usize = 5_000_000;

/// Is `module.name` a global ndlab accepts (as a name only)?
fn allowed(module: &str, name: &str) -> bool {
    ALLOWED.contains(&(module, name)) || (module == "torch" && name.ends_with("Storage") && name.len() < 40)
}

/// The machine's state.
struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    built: usize,
}

fn err(msg: impl Into<String>) -> Error {
    Error::Format(format!("PyTorch pickle: {}", msg.into()))
}

/// Deepest nesting accepted (a state_dict needs about 6); deeper is refused, so nothing recurses far.
const MAX_NESTING: usize = 64;

/// Number of values in a tree (for the budget), or `None` when nested deeper than [`MAX_NESTING`].
/// Values only grow deeper by being pushed inside a new container, so checking every push suffices.
fn weight(v: &Value, depth: usize) -> Option<usize> {
    if depth > MAX_NESTING {
        return None;
    }
    let sum = |x: &[Value]| x.iter().try_fold(1usize, |acc, c| Some(acc + weight(c, depth + 1)?));
    match v {
        Value::Tuple(x) | Value::List(x) | Value::Tensor(x) => sum(x),
        Value::Dict(x) => {
            x.iter().try_fold(1usize, |acc, (k, v)| Some(acc + weight(k, depth + 1)? + weight(v, depth + 1)?))
        }
        Value::PersId(b) => Some(1 + weight(b, depth + 1)?),
        _ => Some(1),
    }
}

impl<'a> Vm<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| err("truncated pickle"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }
    fn string(&mut self, n: u64) -> Result<String> {
        let n = usize::try_from(n).map_err(|_| err("string length overflows"))?;
        let b = self.take(n)?;
        std::str::from_utf8(b).map(str::to_string).map_err(|_| err("string is not valid UTF-8"))
    }
    fn line(&mut self) -> Result<String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| err("truncated GLOBAL"))?;
        let s = self.string(n as u64)?;
        self.pos += 1;
        Ok(s)
    }
    fn pop(&mut self) -> Result<Value> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(err("stack underflow (pop past a MARK)"));
        }
        self.stack.pop().ok_or_else(|| err("stack underflow"))
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| err("no MARK on the stack"))?;
        if m > self.stack.len() {
            return Err(err("MARK past the stack"));
        }
        Ok(self.stack.split_off(m))
    }
    fn push(&mut self, v: Value) -> Result<()> {
        let w = weight(&v, 0).ok_or_else(|| {
            err(format!("values nested deeper than {MAX_NESTING} levels (not a state_dict)"))
        })?;
        self.built = self.built.saturating_add(w);
        if self.built > MAX_VALUES || self.stack.len() > MAX_VALUES {
            return Err(Error::TooLarge(format!("PyTorch pickle builds more than {MAX_VALUES} values")));
        }
        self.stack.push(v);
        Ok(())
    }
    fn top(&mut self) -> Result<&mut Value> {
        self.stack.last_mut().ok_or_else(|| err("stack underflow"))
    }
    fn global(&mut self, module: String, name: String) -> Result<()> {
        if !allowed(&module, &name) {
            return Err(err(format!(
                "refused global '{module}.{name}': only tensors and dicts of a state_dict are read, nothing is imported or executed"
            )));
        }
        self.push(Value::Global(module, name))
    }
    fn memo_get(&mut self, k: u32) -> Result<()> {
        let v = self.memo.get(&k).cloned().ok_or_else(|| err(format!("memo key {k} not set")))?;
        self.push(v)
    }
    fn memo_put(&mut self, k: u32) -> Result<()> {
        let v = self.stack.last().cloned().ok_or_else(|| err("stack underflow"))?;
        self.memo.insert(k, v);
        Ok(())
    }
}

/// `REDUCE`: only the accepted callables, evaluated as data.
fn reduce(f: Value, args: Value) -> Result<Value> {
    let Value::Tuple(args) = args else { return Err(err("REDUCE arguments are not a tuple")) };
    match f {
        Value::Global(m, n) if m == "collections" && n == "OrderedDict" => Ok(Value::Dict(Vec::new())),
        Value::Global(_, n) if n == "_rebuild_tensor_v2" => Ok(Value::Tensor(args)),
        Value::Global(_, n) if n == "_rebuild_parameter" => {
            args.into_iter().next().ok_or_else(|| err("_rebuild_parameter without a tensor"))
        }
        other => Err(err(format!("cannot call {other:?}"))),
    }
}

/// Adds key/value pairs to the dict on top of the stack.
fn set_items(d: &mut Value, items: Vec<Value>) -> Result<()> {
    let Value::Dict(d) = d else { return Err(err("SETITEMS on a non-dict")) };
    if items.len() % 2 != 0 {
        return Err(err("SETITEMS with an odd number of items"));
    }
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        d.push((k, v));
    }
    Ok(())
}

/// Runs the pickle and returns the value left by `STOP`.
pub fn load(data: &[u8]) -> Result<Value> {
    let mut vm = Vm { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), built: 0 };
    loop {
        let op = vm.u8()?;
        if op == b'.' {
            return vm.pop();
        }
        step(&mut vm, op)?;
    }
}

/// One opcode.
fn step(vm: &mut Vm<'_>, op: u8) -> Result<()> {
    match op {
        0x80 => {
            vm.u8()?; // PROTO
        }
        0x95 => {
            vm.u64()?; // FRAME
        }
        b'}' => vm.push(Value::Dict(Vec::new()))?,
        b']' => vm.push(Value::List(Vec::new()))?,
        b')' => vm.push(Value::Tuple(Vec::new()))?,
        b'(' => vm.marks.push(vm.stack.len()),
        b'X' => {
            let n = vm.u32()? as u64;
            let s = vm.string(n)?;
            vm.push(Value::Str(s))?
        }
        0x8d => {
            let n = vm.u64()?;
            let s = vm.string(n)?;
            vm.push(Value::Str(s))?
        }
        0x8c => {
            let n = vm.u8()? as u64;
            let s = vm.string(n)?;
            vm.push(Value::Str(s))?
        }
        b'J' => {
            let v = vm.u32()? as i32;
            vm.push(Value::Int(v as i64))?
        }
        b'K' => {
            let v = vm.u8()?;
            vm.push(Value::Int(v as i64))?
        }
        b'M' => {
            let v = vm.u16()?;
            vm.push(Value::Int(v as i64))?
        }
        0x8a => long1(vm)?,
        b'G' => {
            let v = f64::from_bits(u64::from_be_bytes(vm.take(8)?.try_into().map_err(|_| err("BINFLOAT"))?));
            vm.push(Value::Float(v))?
        }
        0x85..=0x87 => {
            let n = (op - 0x84) as usize;
            let len = vm.stack.len();
            if len < n || vm.marks.last().is_some_and(|&m| m > len - n) {
                return Err(err("stack underflow in TUPLEn"));
            }
            let items = vm.stack.split_off(len - n);
            vm.push(Value::Tuple(items))?
        }
        b't' => {
            let items = vm.pop_mark()?;
            vm.push(Value::Tuple(items))?
        }
        b'u' => {
            let items = vm.pop_mark()?;
            set_items(vm.top()?, items)?
        }
        b's' => {
            let v = vm.pop()?;
            let k = vm.pop()?;
            set_items(vm.top()?, vec![k, v])?
        }
        b'e' => {
            let items = vm.pop_mark()?;
            append(vm.top()?, items)?
        }
        b'a' => {
            let v = vm.pop()?;
            append(vm.top()?, vec![v])?
        }
        b'q' => {
            let k = vm.u8()? as u32;
            vm.memo_put(k)?
        }
        b'r' => {
            let k = vm.u32()?;
            vm.memo_put(k)?
        }
        0x94 => {
            let k = vm.memo.len() as u32;
            vm.memo_put(k)?
        }
        b'h' => {
            let k = vm.u8()? as u32;
            vm.memo_get(k)?
        }
        b'j' => {
            let k = vm.u32()?;
            vm.memo_get(k)?
        }
        b'c' => {
            let m = vm.line()?;
            let n = vm.line()?;
            vm.global(m, n)?
        }
        0x93 => {
            let n = vm.pop()?;
            let m = vm.pop()?;
            match (m, n) {
                (Value::Str(m), Value::Str(n)) => vm.global(m, n)?,
                _ => return Err(err("STACK_GLOBAL without two strings")),
            }
        }
        b'R' => {
            let args = vm.pop()?;
            let f = vm.pop()?;
            let v = reduce(f, args)?;
            vm.push(v)?
        }
        b'b' => {
            vm.pop()?; // BUILD: the state (e.g. a state_dict's _metadata) is not needed
        }
        b'Q' => {
            let pid = vm.pop()?;
            vm.push(Value::PersId(Box::new(pid)))?
        }
        0x88 => vm.push(Value::Bool(true))?,
        0x89 => vm.push(Value::Bool(false))?,
        b'N' => vm.push(Value::None)?,
        other => {
            return Err(err(format!(
                "unsupported pickle opcode 0x{other:02x} at byte {} (only the opcodes of a torch.save state_dict are read)",
                vm.pos - 1
            )))
        }
    }
    Ok(())
}

/// `LONG1`: a little-endian two's-complement integer of up to 8 bytes.
fn long1(vm: &mut Vm<'_>) -> Result<()> {
    let n = vm.u8()? as usize;
    if n > 8 {
        return Err(err(format!("{n}-byte integer is too large")));
    }
    let b = vm.take(n)?;
    let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) { [0xFFu8; 8] } else { [0u8; 8] };
    buf[..n].copy_from_slice(b);
    vm.push(Value::Int(i64::from_le_bytes(buf)))
}

/// `APPEND(S)` onto a list.
fn append(l: &mut Value, items: Vec<Value>) -> Result<()> {
    match l {
        Value::List(l) => {
            l.extend(items);
            Ok(())
        }
        _ => Err(err("APPENDS on a non-list")),
    }
}
