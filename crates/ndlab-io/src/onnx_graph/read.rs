//! ONNX bytes → the pieces of [`super::OnnxModel`]: the model's top-level fields, the graph's
//! fields as byte ranges in file order, and each node, attribute and value info decoded with
//! every count and size bounded before it is allocated.

use super::tensor;
use super::wire::{bad, fields};
use super::{MAX_ATTRIBUTES, MAX_NODE_VALUES, MAX_RANK};
use ndlab_core::error::{Error, Result};
use ndlab_core::graph::{Attr, Node, Tensor, TensorData, ValueInfo, MAX_DIM, MAX_NODES};
use std::collections::BTreeMap;

/// What a model may allocate in all: tensors, attribute lists and names, in bytes as decoded.
pub(super) struct Budget {
    left: u64,
    limit: u64,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Budget { left: limit, limit }
    }

    /// Takes `bytes` from the budget, or refuses `what`.
    pub fn charge(&mut self, bytes: u64, what: &str) -> Result<()> {
        self.left = self.left.checked_sub(bytes).ok_or_else(|| {
            Error::TooLarge(format!(
                "{what}: the model's tensors and attributes need more than {} MB in all",
                self.limit >> 20
            ))
        })?;
        Ok(())
    }
}

/// The top-level fields of a `ModelProto` that ndlab reads.
pub(super) struct Model<'a> {
    pub ir_version: i64,
    pub producer: String,
    /// `opset_import`: (domain, version).
    pub opsets: Vec<(String, i64)>,
    /// The body of the graph field (7).
    pub graph: Option<&'a [u8]>,
}

/// Most `opset_import` entries accepted.
const MAX_OPSETS: usize = 1024;

/// Walks the top level of a `ModelProto`.
pub(super) fn model(bytes: &[u8]) -> Result<Model<'_>> {
    if bytes.is_empty() {
        return Err(Error::Format("the file is empty (0 bytes), not an ONNX model".into()));
    }
    let mut m = Model { ir_version: 0, producer: String::new(), opsets: Vec::new(), graph: None };
    const WHAT: &str = "the model";
    for f in fields(bytes, WHAT) {
        let f = f?;
        match f.number {
            1 => m.ir_version = f.int(WHAT)?,
            2 => m.producer = f.string(WHAT)?,
            7 => {
                if m.graph.is_some() {
                    return Err(bad("the model holds two graph fields"));
                }
                m.graph = Some(f.bytes(WHAT)?);
            }
            8 => {
                if m.opsets.len() >= MAX_OPSETS {
                    return Err(Error::TooLarge(format!("more than {MAX_OPSETS} opset imports")));
                }
                let (mut domain, mut version) = (String::new(), 0);
                for g in fields(f.bytes(WHAT)?, "an opset import") {
                    let g = g?;
                    match g.number {
                        1 => domain = g.string("an opset import")?,
                        2 => version = g.int("an opset import")?,
                        _ => {}
                    }
                }
                m.opsets.push((domain, version));
            }
            _ => {}
        }
    }
    Ok(m)
}

/// The version of the default ONNX opset the model imports (1 for IR versions before 3, which
/// had no imports).
pub(super) fn opset(m: &Model) -> Result<i64> {
    let mut found: Option<i64> = None;
    for (domain, v) in &m.opsets {
        if domain.is_empty() || domain == "ai.onnx" {
            if found.is_some_and(|f| f != *v) {
                return Err(Error::Format(format!(
                    "the model imports two versions of the default ONNX opset ({} and {v})",
                    found.unwrap_or_default()
                )));
            }
            found = Some(*v);
        }
    }
    match found {
        Some(v) if v >= 1 => Ok(v),
        Some(v) => Err(Error::Format(format!("the model imports the default ONNX opset at version {v}"))),
        None if m.ir_version < 3 => Ok(1),
        None => Err(Error::Format(
            "the model imports no version of the default ONNX opset (no '' or 'ai.onnx' in opset_import)"
                .into(),
        )),
    }
}

/// The fields of a `GraphProto` that ndlab reads, as message bodies in file order.
#[derive(Default)]
pub(super) struct GraphParts<'a> {
    /// `node` (1).
    pub nodes: Vec<&'a [u8]>,
    /// `initializer` (5).
    pub initializers: Vec<&'a [u8]>,
    /// `input` (11).
    pub inputs: Vec<&'a [u8]>,
    /// `output` (12).
    pub outputs: Vec<&'a [u8]>,
}

/// Walks a `GraphProto`; more than [`MAX_NODES`] nodes (or initializers, inputs, outputs) are
/// refused before any is decoded.
pub(super) fn graph_parts(body: &[u8]) -> Result<GraphParts<'_>> {
    const WHAT: &str = "the graph";
    let mut p = GraphParts::default();
    for f in fields(body, WHAT) {
        let f = f?;
        let (list, what) = match f.number {
            1 => (&mut p.nodes, "nodes"),
            5 => (&mut p.initializers, "initializers"),
            11 => (&mut p.inputs, "graph inputs"),
            12 => (&mut p.outputs, "graph outputs"),
            15 => {
                return Err(Error::Format(
                    "the graph holds sparse initializers, which ndlab does not read".into(),
                ))
            }
            _ => continue,
        };
        if list.len() >= MAX_NODES {
            return Err(Error::TooLarge(format!("the graph has more than {MAX_NODES} {what}")));
        }
        list.push(f.bytes(WHAT)?);
    }
    Ok(p)
}

/// How much of a node to decode.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Detail {
    /// Everything, tensors included.
    Full,
    /// Everything but the values of tensor attributes (an empty tensor stands in): for the
    /// writer, which checks the structure of what it writes.
    Structure,
}

/// Charges a string's bytes (and its header) to the budget.
fn charge_str(budget: &mut Budget, s: &[u8], what: &str) -> Result<()> {
    budget.charge(s.len() as u64 + 24, what)
}

/// Decodes the node at `index` in the file (`index` only names it in errors).
pub(super) fn node(body: &[u8], index: usize, detail: Detail, budget: &mut Budget) -> Result<Node> {
    const WHAT: &str = "a node";
    let mut n = Node {
        name: String::new(),
        op: String::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        attrs: BTreeMap::new(),
    };
    let mut domain = String::new();
    let mut attrs: Vec<&[u8]> = Vec::new();
    let too_many =
        |what: &str, max: usize| Error::TooLarge(format!("node #{index} has more than {max} {what}"));
    for f in fields(body, WHAT) {
        let f = f?;
        match f.number {
            1 | 2 => {
                if n.inputs.len() + n.outputs.len() >= MAX_NODE_VALUES {
                    return Err(too_many("inputs and outputs", MAX_NODE_VALUES));
                }
                charge_str(budget, f.bytes(WHAT)?, "a node")?;
                let s = f.string(WHAT)?;
                if f.number == 1 {
                    n.inputs.push(s);
                } else {
                    n.outputs.push(s);
                }
            }
            3 => n.name = f.string(WHAT)?,
            4 => n.op = f.string(WHAT)?,
            5 => {
                if attrs.len() >= MAX_ATTRIBUTES {
                    return Err(too_many("attributes", MAX_ATTRIBUTES));
                }
                attrs.push(f.bytes(WHAT)?);
            }
            7 => domain = f.string(WHAT)?,
            _ => {}
        }
    }
    charge_str(budget, n.name.as_bytes(), "a node")?;
    if n.op.is_empty() {
        return Err(Error::Format(format!("node #{index} ('{}') has no op_type", n.label())));
    }
    let label = if n.label().is_empty() { format!("#{index}") } else { n.label().to_string() };
    if !(domain.is_empty() || domain == "ai.onnx") {
        return Err(Error::Format(format!(
            "node '{label}' is operator '{}' of domain '{domain}', which ndlab does not support \
             (only standard ONNX operators: domain '' or 'ai.onnx')",
            n.op
        )));
    }
    if n.outputs.iter().all(String::is_empty) {
        return Err(Error::Format(format!("{} '{label}' has no output", n.op)));
    }
    for a in attrs {
        let (name, value) = attribute(a, &n.op, &label, detail, budget)?;
        if n.attrs.insert(name.clone(), value).is_some() {
            return Err(Error::Format(format!("{} '{label}': attribute '{name}' is given twice", n.op)));
        }
    }
    Ok(n)
}

/// AttributeProto.AttributeType names, for messages.
fn attr_type_name(t: i64) -> String {
    let name = match t {
        1 => "FLOAT",
        2 => "INT",
        3 => "STRING",
        4 => "TENSOR",
        5 => "GRAPH",
        6 => "FLOATS",
        7 => "INTS",
        8 => "STRINGS",
        9 => "TENSORS",
        10 => "GRAPHS",
        11 => "SPARSE_TENSOR",
        12 => "SPARSE_TENSORS",
        13 => "TYPE_PROTO",
        14 => "TYPE_PROTOS",
        _ => return format!("{t} (unknown)"),
    };
    name.to_string()
}

/// Decodes an attribute of node `label`: its name and value. The value types of ndlab's IR are
/// read; a sub-graph, a list of strings or tensors, a sparse tensor or a type is refused.
fn attribute(
    body: &[u8],
    op: &str,
    label: &str,
    detail: Detail,
    budget: &mut Budget,
) -> Result<(String, Attr)> {
    const WHAT: &str = "an attribute";
    let mut name = String::new();
    let (mut f_val, mut i_val, mut s_val, mut t_val) = (None, None, None, None);
    let (mut floats, mut ints) = (Vec::new(), Vec::new());
    let mut ty = 0i64;
    // The first other value field present (graphs, string or tensor lists...), for an untyped
    // attribute.
    let mut other: Option<i64> = None;
    for f in fields(body, WHAT) {
        let f = f?;
        match f.number {
            1 => name = f.string(WHAT)?,
            2 => f_val = Some(f.float(WHAT)?),
            3 => i_val = Some(f.int(WHAT)?),
            4 => s_val = Some(f.bytes(WHAT)?),
            5 => t_val = Some(f.bytes(WHAT)?),
            7 => {
                let n = f.fixed_count(4, WHAT)?;
                budget.charge(4 * n as u64, &format!("{op} '{label}'"))?;
                f.each_fixed(4, WHAT, |b| floats.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))?;
            }
            8 => {
                let n = f.varint_count(WHAT)?;
                budget.charge(8 * n as u64, &format!("{op} '{label}'"))?;
                f.each_varint(WHAT, |v| ints.push(v as i64))?;
            }
            20 => ty = f.int(WHAT)?,
            6 => other = other.or(Some(5)),
            9 => other = other.or(Some(8)),
            10 => other = other.or(Some(9)),
            11 => other = other.or(Some(10)),
            22 => other = other.or(Some(11)),
            23 => other = other.or(Some(12)),
            14 => other = other.or(Some(13)),
            15 => other = other.or(Some(14)),
            _ => {}
        }
    }
    if name.is_empty() {
        return Err(Error::Format(format!("{op} '{label}' has an attribute without a name")));
    }
    charge_str(budget, name.as_bytes(), "an attribute")?;
    if ty == 0 {
        // IR version 1 had no attribute type: the value field present tells it.
        ty = if t_val.is_some() {
            4
        } else if s_val.is_some() {
            3
        } else if !floats.is_empty() {
            6
        } else if !ints.is_empty() {
            7
        } else if f_val.is_some() {
            1
        } else if i_val.is_some() {
            2
        } else {
            other.unwrap_or(0)
        };
    }
    let ctx = || format!("{op} '{label}': attribute '{name}'");
    let value = match ty {
        1 => Attr::Float(f_val.unwrap_or(0.0)),
        2 => Attr::Int(i_val.unwrap_or(0)),
        3 => {
            let s = s_val.unwrap_or_default();
            charge_str(budget, s, &ctx())?;
            Attr::Str(
                std::str::from_utf8(s)
                    .map_err(|_| Error::Format(format!("{} is not UTF-8 text", ctx())))?
                    .to_string(),
            )
        }
        4 => {
            let t =
                t_val.ok_or_else(|| Error::Format(format!("{} of type TENSOR holds no tensor", ctx())))?;
            match detail {
                Detail::Full => Attr::Tensor(tensor::decode(t, Some(&ctx()), budget)?.1),
                Detail::Structure => {
                    tensor::header(t)?;
                    Attr::Tensor(Tensor { dims: vec![0], data: TensorData::F32(Vec::new()) })
                }
            }
        }
        6 => Attr::Floats(floats),
        7 => Attr::Ints(ints),
        0 => return Err(Error::Format(format!("{} has neither a type nor a value", ctx()))),
        t => {
            return Err(Error::Format(format!(
                "{} is of type {}, which ndlab does not read",
                ctx(),
                attr_type_name(t)
            )))
        }
    };
    Ok((name, value))
}

/// Decodes a graph input or output (`what`: "graph input" or "graph output"): its name and
/// shape, a symbolic or unknown dimension as `None`.
pub(super) fn value_info(body: &[u8], what: &str, budget: &mut Budget) -> Result<ValueInfo> {
    const W: &str = "a value info";
    let mut name = String::new();
    let mut shape: Option<&[u8]> = None;
    for f in fields(body, W) {
        let f = f?;
        match f.number {
            1 => name = f.string(W)?,
            2 => {
                // TypeProto: tensor_type (1) → shape (2). Other types (sequences, maps...) have
                // no shape here.
                for t in fields(f.bytes(W)?, W) {
                    let t = t?;
                    if t.number == 1 {
                        for s in fields(t.bytes(W)?, W) {
                            let s = s?;
                            if s.number == 2 {
                                shape = Some(s.bytes(W)?);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    charge_str(budget, name.as_bytes(), what)?;
    let mut dims = Vec::new();
    for d in fields(shape.unwrap_or_default(), W) {
        let d = d?;
        if d.number != 1 {
            continue;
        }
        if dims.len() >= MAX_RANK {
            return Err(Error::TooLarge(format!("{what} '{name}' has more than {MAX_RANK} dimensions")));
        }
        let mut value = None;
        for v in fields(d.bytes(W)?, W) {
            let v = v?;
            match v.number {
                1 => value = Some(v.int(W)?),
                2 => value = None,
                _ => {}
            }
        }
        dims.push(match value {
            Some(v) if v > MAX_DIM as i64 => {
                return Err(Error::TooLarge(format!(
                    "{what} '{name}' has a dimension of {v}, more than {MAX_DIM}"
                )))
            }
            Some(v) if v >= 0 => Some(v as usize),
            _ => None,
        });
    }
    Ok(ValueInfo { name, dims })
}
