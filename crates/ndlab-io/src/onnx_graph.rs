//! ONNX bytes ↔ the core's whole-network IR ([`ndlab_core::graph::Graph`]).
//!
//! [`read_model`] decodes a `ModelProto` into a sorted, checked [`Graph`] (plus the default-domain
//! opset, the IR version and the producer); [`rewrite`] writes a model back with some nodes
//! replaced and some initializers removed or added, keeping every other byte of the file.
//!
//! # Reading
//!
//! The protobuf is walked by hand (`wire`), not decoded into `prost` structs in one go: every count
//! (nodes, attributes, inputs, dimensions) and every tensor size is checked against the limits
//! before anything is allocated, and tensor values are decoded straight from the file's bytes into
//! the IR's vectors. Limits: [`MAX_NODES`] nodes (and initializers, graph inputs and outputs),
//! [`MAX_DIM`] per dimension, [`MAX_RANK`] dimensions, [`MAX_TENSOR_BYTES`] per tensor as decoded,
//! [`MAX_TOTAL_TENSOR_BYTES`] for all the model's tensors and attribute values together.
//!
//! - Initializers: FLOAT, FLOAT16, BFLOAT16 and DOUBLE become [`TensorData::F32`]; INT64, INT32,
//!   INT16, UINT16, INT8, UINT8 and BOOL become [`TensorData::I64`]; from `raw_data`
//!   (little-endian) or the typed field of the type. External data, other types and a value count
//!   that does not match the dims are refused with a message naming the tensor.
//! - `Constant` nodes stay nodes, their `value` an [`Attr::Tensor`] (the planner folds them).
//! - Attributes of types FLOAT, INT, STRING (UTF-8), TENSOR, FLOATS and INTS are read; a node with
//!   a sub-graph, string list, tensor list, sparse tensor or type attribute is refused.
//! - Graph inputs are the file's inputs that are not initializers; a dimension with `dim_param`
//!   (or none, or negative) is `None`.
//! - A node outside the default domain (`''` / `ai.onnx`) is refused, naming its op and domain.
//! - The nodes are then [`Graph::sorted`] (cycles, missing values, duplicate producers refused).
//!
//! # Writing: addressing nodes
//!
//! A [`GraphEdit`] addresses the nodes it replaces with a [`NodeRef`]: either the node's position
//! in the file's node list ([`NodeRef::Index`]; [`OnnxModel::file_index`] maps each node of the
//! sorted graph to it), or a value it makes ([`NodeRef::Output`]: any of its outputs, unique in a
//! valid graph). Every node ndlab reads has at least one non-empty output, so every node can be
//! addressed both ways.
//!
//! # Writing: what the splice keeps
//!
//! Every top-level field of the model but the graph is copied byte for byte (IR version, opset imports,
//! producer, metadata, functions, doc strings, unknown fields), and so is every field of the graph (name,
//! inputs, outputs, value_info, doc string, untouched nodes and initializers, and unknown fields), in the
//! file's order. What changes: each replaced node is re-encoded from the IR in its place (name, op, inputs,
//! outputs, attributes with their type, tensor attributes as FLOAT or INT64; default domain, no doc string),
//! in the order given; each removed initializer is dropped (and its graph-input entry, if the file lists it
//! as an input, as IR version 3 and before must); new initializers (FLOAT or INT64, little-endian `raw_data`)
//! follow the last existing one (and, in IR version 3 and before, are declared as inputs after the last
//! input). With no edits the output is the input, byte for byte. The output is deterministic, and its graph
//! is checked (a value made twice or never, a cycle, a removed initializer still read: refused) before it is
//! written.

mod proto;
mod read;
mod tensor;
mod wire;
mod write;

#[cfg(doc)]
use crate::formats::MAX_TENSOR_BYTES;
use ndlab_core::error::{Error, Result};
#[cfg(doc)]
use ndlab_core::graph::{Attr, TensorData, MAX_DIM, MAX_NODES};
use ndlab_core::graph::{Graph, Node, Tensor};
use std::collections::{BTreeMap, HashMap};

/// Most bytes all of a model's tensors (initializers and `Constant` values, as decoded: 4 bytes
/// per float, 8 per integer) and attribute values may take together: 512 MiB.
pub const MAX_TOTAL_TENSOR_BYTES: u64 = 512 << 20;

/// Most dimensions of a tensor or a graph input's shape.
pub const MAX_RANK: usize = 64;

/// Most attributes of one node.
pub const MAX_ATTRIBUTES: usize = 1024;

/// Most inputs and outputs of one node, together.
pub const MAX_NODE_VALUES: usize = 1 << 16;

/// An ONNX model as ndlab reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxModel {
    /// The network, sorted and checked.
    pub graph: Graph,
    /// The version of the default ONNX opset (`''` / `ai.onnx`) the model imports.
    pub opset: i64,
    /// The model's IR version.
    pub ir_version: i64,
    /// `producer_name` (e.g. `pytorch`, `keras2onnx`).
    pub producer: String,
    /// For each node of `graph.nodes`, its position in the file's node list (what
    /// [`NodeRef::Index`] takes).
    pub file_index: Vec<usize>,
}

/// A node of the file, for [`GraphEdit::replace`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRef {
    /// The node's position in the file's node list (0-based, as stored, before sorting).
    Index(usize),
    /// The node that makes this value (any of its outputs).
    Output(String),
}

/// Changes to a model's graph, for [`rewrite`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GraphEdit {
    /// Nodes to replace, each by a sequence of new nodes (written in its place, in order; an
    /// empty sequence removes it). A node may be named once.
    pub replace: Vec<(NodeRef, Vec<Node>)>,
    /// New initializers, appended in this order after the existing ones. A name may be one that
    /// is also removed (its value is then replaced).
    pub add_initializers: Vec<(String, Tensor)>,
    /// Initializers to remove (e.g. a replaced conv's weight that nothing else reads).
    pub remove_initializers: Vec<String>,
}

/// Reads an ONNX model (see the module's documentation).
pub fn read_model(bytes: &[u8]) -> Result<OnnxModel> {
    read_model_within(bytes, MAX_TOTAL_TENSOR_BYTES)
}

/// [`read_model`] with `limit` bytes for all tensors and attribute values.
fn read_model_within(bytes: &[u8], limit: u64) -> Result<OnnxModel> {
    let model = read::model(bytes)?;
    let opset = read::opset(&model)?;
    let body = model.graph.ok_or_else(|| Error::Format("the ONNX model has no graph".into()))?;
    let parts = read::graph_parts(body)?;
    let mut budget = read::Budget::new(limit);
    let mut initializers = BTreeMap::new();
    for b in &parts.initializers {
        let (name, t) = tensor::decode(b, None, &mut budget)?;
        if initializers.contains_key(&name) {
            return Err(Error::Format(format!("the initializer '{name}' is given twice")));
        }
        initializers.insert(name, t);
    }
    let nodes = parts
        .nodes
        .iter()
        .enumerate()
        .map(|(i, b)| read::node(b, i, read::Detail::Full, &mut budget))
        .collect::<Result<Vec<_>>>()?;
    let inputs = parts
        .inputs
        .iter()
        .map(|b| read::value_info(b, "graph input", &mut budget))
        .filter(|v| v.as_ref().map_or(true, |v| !initializers.contains_key(&v.name)))
        .collect::<Result<Vec<_>>>()?;
    let outputs = parts
        .outputs
        .iter()
        .map(|b| read::value_info(b, "graph output", &mut budget))
        .collect::<Result<Vec<_>>>()?;
    // Every node has a non-empty output (read::node), unique once sorted: it finds the node's
    // place in the file again.
    let first_output = |n: &Node| n.outputs.iter().find(|o| !o.is_empty()).cloned().unwrap_or_default();
    let mut place: HashMap<String, usize> =
        nodes.iter().enumerate().map(|(i, n)| (first_output(n), i)).collect();
    let graph = Graph { inputs, outputs, nodes, initializers }.sorted()?;
    let file_index = graph
        .nodes
        .iter()
        .map(|n| place.remove(&first_output(n)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::Format("a node's place in the file was lost (a bug)".into()))?;
    Ok(OnnxModel { graph, opset, ir_version: model.ir_version, producer: model.producer, file_index })
}

/// Reads an ONNX model's graph ([`read_model`] without the rest).
pub fn read_graph(bytes: &[u8]) -> Result<Graph> {
    Ok(read_model(bytes)?.graph)
}

/// The version of the default ONNX opset a model imports (reads only the top level).
pub fn opset(bytes: &[u8]) -> Result<i64> {
    read::opset(&read::model(bytes)?)
}

/// Writes `original` with `edits` applied, keeping every other byte (see the module's
/// documentation). Refuses an edit that names a node or initializer the file does not have,
/// adds an initializer that exists, or leaves a graph that is not valid.
pub fn rewrite(original: &[u8], edits: &GraphEdit) -> Result<Vec<u8>> {
    write::rewrite(original, edits)
}

#[cfg(test)]
mod tests;
