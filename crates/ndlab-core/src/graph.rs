//! A whole network as plain data: the operators, tensors and names of an ONNX graph, read by
//! `ndlab-io` (`ndlab_io::onnx_graph`) and planned, shaped and run here. Nothing in this module
//! knows the file format.
//!
//! [`Graph::check`] validates what every later step relies on: unique value names, every input
//! produced by an earlier node, a graph input or an initializer (so the nodes are in topological
//! order, which [`Graph::sorted`] establishes from any order, refusing cycles), and tensor sizes
//! that match their dims.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Largest number of nodes accepted in a graph.
pub const MAX_NODES: usize = 100_000;

/// Largest value accepted for one dimension of a tensor or a value's shape.
pub const MAX_DIM: usize = 1 << 24;

/// A dense tensor: row-major, `dims` as in ONNX (a scalar has no dims).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    /// Dimensions.
    pub dims: Vec<usize>,
    /// Values (row-major).
    pub data: TensorData,
}

/// The values of a [`Tensor`]: floats (any float type of the file, converted), or integers (for
/// shapes, axes and indices).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TensorData {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit integers (int64, int32 and smaller integer types, widened).
    I64(Vec<i64>),
}

impl Tensor {
    /// A float tensor, checked: the dims' product equals the values' count.
    pub fn f32(dims: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let t = Tensor { dims, data: TensorData::F32(data) };
        t.check()?;
        Ok(t)
    }

    /// An integer tensor, checked.
    pub fn i64(dims: Vec<usize>, data: Vec<i64>) -> Result<Self> {
        let t = Tensor { dims, data: TensorData::I64(data) };
        t.check()?;
        Ok(t)
    }

    /// Number of values the dims call for (None on overflow).
    pub fn numel(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// The values' count matches the dims, and no dim is over [`MAX_DIM`].
    pub fn check(&self) -> Result<()> {
        if let Some(d) = self.dims.iter().find(|&&d| d > MAX_DIM) {
            return Err(Error::TooLarge(format!("a tensor dimension of {d} is more than {MAX_DIM}")));
        }
        let len = match &self.data {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        };
        if self.numel() != Some(len) {
            return Err(Error::Shape(format!("a tensor of dims {:?} holds {len} values", self.dims)));
        }
        Ok(())
    }

    /// The float values, or an error naming `what`.
    pub fn as_f32(&self, what: &str) -> Result<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Ok(v),
            TensorData::I64(_) => Err(Error::Format(format!("{what} holds integers, not floats"))),
        }
    }

    /// The integer values, or an error naming `what`.
    pub fn as_i64(&self, what: &str) -> Result<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Ok(v),
            TensorData::F32(_) => Err(Error::Format(format!("{what} holds floats, not integers"))),
        }
    }
}

/// A node attribute (the ONNX attribute types the supported operators use).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Attr {
    /// An integer.
    Int(i64),
    /// Integers.
    Ints(Vec<i64>),
    /// A float.
    Float(f32),
    /// Floats.
    Floats(Vec<f32>),
    /// A string (UTF-8).
    Str(String),
    /// A tensor (e.g. `Constant`'s `value`).
    Tensor(Tensor),
}

/// One operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// The node's name (may be empty in a file; see [`Node::label`]).
    pub name: String,
    /// The ONNX operator type (`Conv`, `Relu`, …); the default domain only.
    pub op: String,
    /// Input value names (an empty name is an omitted optional input).
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Attributes by name.
    pub attrs: BTreeMap<String, Attr>,
}

impl Node {
    /// The name a person and the command line know the node by: its name, or its first
    /// output's name when it has none.
    pub fn label(&self) -> &str {
        if self.name.is_empty() {
            self.outputs.first().map_or("", String::as_str)
        } else {
            &self.name
        }
    }

    /// Integer attribute `key`, or `default`.
    pub fn int(&self, key: &str, default: i64) -> Result<i64> {
        match self.attrs.get(key) {
            None => Ok(default),
            Some(Attr::Int(v)) => Ok(*v),
            Some(_) => Err(self.bad_attr(key, "an integer")),
        }
    }

    /// Integers attribute `key`, or None.
    pub fn ints(&self, key: &str) -> Result<Option<&[i64]>> {
        match self.attrs.get(key) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v)),
            Some(_) => Err(self.bad_attr(key, "a list of integers")),
        }
    }

    /// Float attribute `key`, or `default`.
    pub fn float(&self, key: &str, default: f32) -> Result<f32> {
        match self.attrs.get(key) {
            None => Ok(default),
            Some(Attr::Float(v)) => Ok(*v),
            Some(_) => Err(self.bad_attr(key, "a float")),
        }
    }

    /// String attribute `key`, or None.
    pub fn string(&self, key: &str) -> Result<Option<&str>> {
        match self.attrs.get(key) {
            None => Ok(None),
            Some(Attr::Str(v)) => Ok(Some(v)),
            Some(_) => Err(self.bad_attr(key, "a string")),
        }
    }

    fn bad_attr(&self, key: &str, what: &str) -> Error {
        Error::Format(format!("{} '{}': attribute {key} should be {what}", self.op, self.label()))
    }
}

/// A graph input or output: its name and shape (None for a symbolic or unknown dimension, such
/// as a dynamic batch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValueInfo {
    /// The value's name.
    pub name: String,
    /// Its dimensions (empty when the file gives no shape).
    pub dims: Vec<Option<usize>>,
}

/// A whole network.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Graph {
    /// The graph's inputs that are not initializers (what the caller feeds).
    pub inputs: Vec<ValueInfo>,
    /// The graph's outputs.
    pub outputs: Vec<ValueInfo>,
    /// The operators, in topological order once [`Graph::check`]ed.
    pub nodes: Vec<Node>,
    /// Constant tensors by name (weights, biases, shapes).
    pub initializers: BTreeMap<String, Tensor>,
}

impl Graph {
    /// Validates the graph (see the module's documentation); the first problem is the error.
    pub fn check(&self) -> Result<()> {
        if self.nodes.len() > MAX_NODES {
            return Err(Error::TooLarge(format!("{} nodes is more than {MAX_NODES}", self.nodes.len())));
        }
        for (name, t) in &self.initializers {
            t.check().map_err(|e| Error::Format(format!("initializer '{name}': {e}")))?;
        }
        let mut known: HashSet<&str> = self.initializers.keys().map(String::as_str).collect();
        for v in &self.inputs {
            if let Some(d) = v.dims.iter().flatten().find(|&&d| d > MAX_DIM) {
                return Err(Error::TooLarge(format!("input '{}' has a dimension of {d}", v.name)));
            }
            known.insert(&v.name);
        }
        for node in &self.nodes {
            for i in node.inputs.iter().filter(|i| !i.is_empty()) {
                if !known.contains(i.as_str()) {
                    return Err(Error::Format(format!(
                        "{} '{}' reads '{i}', which no earlier node, input or initializer makes",
                        node.op,
                        node.label()
                    )));
                }
            }
            for o in node.outputs.iter().filter(|o| !o.is_empty()) {
                if !known.insert(o) {
                    return Err(Error::Format(format!(
                        "the value '{o}' is made twice (by {} '{}' and before it)",
                        node.op,
                        node.label()
                    )));
                }
            }
        }
        for o in &self.outputs {
            if !known.contains(o.name.as_str()) {
                return Err(Error::Format(format!("the graph output '{}' is made by no node", o.name)));
            }
        }
        Ok(())
    }

    /// The same graph with its nodes in a topological order (the file's order where it is one
    /// already), checked; a cycle, or an input nothing makes, is an error.
    pub fn sorted(mut self) -> Result<Self> {
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            for o in n.outputs.iter().filter(|o| !o.is_empty()) {
                if producer.insert(o.as_str(), i).is_some() {
                    return Err(Error::Format(format!("the value '{o}' is made by two nodes")));
                }
            }
        }
        // Kahn's algorithm, taking the lowest index first (stable for sorted graphs).
        let n = self.nodes.len();
        let mut indegree = vec![0usize; n];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, node) in self.nodes.iter().enumerate() {
            for input in node.inputs.iter().filter(|s| !s.is_empty()) {
                if let Some(&p) = producer.get(input.as_str()) {
                    if p == i {
                        return Err(Error::Format(format!(
                            "the graph has a cycle: {} '{}' reads its own output",
                            node.op,
                            node.label()
                        )));
                    }
                    indegree[i] += 1;
                    users[p].push(i);
                }
            }
        }
        let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &u in &users[i] {
                indegree[u] -= 1;
                if indegree[u] == 0 {
                    ready.insert(u);
                }
            }
        }
        if order.len() != n {
            let stuck = (0..n).find(|&i| indegree[i] > 0).map(|i| self.nodes[i].label().to_string());
            return Err(Error::Format(format!(
                "the graph has a cycle (through '{}')",
                stuck.unwrap_or_default()
            )));
        }
        let mut nodes: Vec<Option<Node>> = std::mem::take(&mut self.nodes).into_iter().map(Some).collect();
        self.nodes = order.into_iter().filter_map(|i| nodes[i].take()).collect();
        self.check()?;
        Ok(self)
    }

    /// The nodes that read `value`, by index.
    pub fn consumers(&self, value: &str) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].inputs.iter().any(|x| x == value)).collect()
    }

    /// Whether `value` is one of the graph's outputs.
    pub fn is_output(&self, value: &str) -> bool {
        self.outputs.iter().any(|o| o.name == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
        Node {
            name: name.into(),
            op: op.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attrs: BTreeMap::new(),
        }
    }

    fn graph(nodes: Vec<Node>) -> Graph {
        Graph {
            inputs: vec![ValueInfo { name: "x".into(), dims: vec![None, Some(3)] }],
            outputs: vec![ValueInfo { name: "z".into(), dims: vec![] }],
            nodes,
            initializers: BTreeMap::new(),
        }
    }

    #[test]
    fn sorting_puts_producers_first_and_refuses_cycles() {
        let g = graph(vec![node("b", "Relu", &["y"], &["z"]), node("a", "Relu", &["x"], &["y"])]);
        assert!(g.check().is_err(), "b reads y before a makes it");
        let s = g.sorted().expect("sorted");
        assert_eq!(s.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let cycle = graph(vec![node("a", "Add", &["x", "w"], &["y"]), node("b", "Relu", &["y"], &["w"])]);
        let e = cycle.sorted().unwrap_err().to_string();
        assert!(e.contains("cycle"), "{e}");
        let own = graph(vec![node("a", "Add", &["x", "y"], &["y"])]);
        assert!(own.sorted().unwrap_err().to_string().contains("cycle"));
        let missing = graph(vec![node("a", "Add", &["x", "nothing"], &["z"])]);
        let e = missing.sorted().unwrap_err().to_string();
        assert!(e.contains("'nothing'"), "{e}");
        let twice = graph(vec![node("a", "Relu", &["x"], &["z"]), node("b", "Relu", &["x"], &["z"])]);
        assert!(twice.sorted().is_err());
    }

    #[test]
    fn tensors_must_hold_what_their_dims_say() {
        assert!(Tensor::f32(vec![2, 3], vec![0.0; 6]).is_ok());
        assert!(Tensor::f32(vec![2, 3], vec![0.0; 5]).is_err());
        assert!(Tensor::i64(vec![], vec![7]).is_ok(), "a scalar");
        assert!(Tensor::f32(vec![MAX_DIM + 1], vec![]).is_err());
        assert!(Tensor::f32(vec![usize::MAX, 2], vec![]).is_err(), "overflow");
        let label = node("", "Relu", &["x"], &["out0"]);
        assert_eq!(label.label(), "out0");
    }
}
