//! [`super::rewrite`]: a protobuf splice. The model's top-level fields are copied as they are in
//! the file except the graph; the graph's fields are copied as they are except the replaced nodes
//! (re-encoded from the IR), the removed initializers (and their graph-input entries, if the file
//! lists them as inputs), and the new initializers appended after the last existing one.

use super::proto::{
    AttributeProto, Dimension, NodeProto, TensorShapeProto, TensorTypeProto, TypeProto, ValueInfoProto,
};
use super::read::{self, Budget, Detail};
use super::wire::{fields, put_message, put_varint};
use super::{tensor, GraphEdit, NodeRef, MAX_TOTAL_TENSOR_BYTES};
use ndlab_core::error::{Error, Result};
use ndlab_core::graph::{Attr, Graph, Node, Tensor, TensorData};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A message for a refused edit.
fn refuse(msg: String) -> Error {
    Error::Param(format!("graph edit: {msg}"))
}

/// The text of an error, without its kind's prefix.
fn text(e: Error) -> String {
    match e {
        Error::Shape(m)
        | Error::Param(m)
        | Error::Format(m)
        | Error::NonFinite(m)
        | Error::TooLarge(m)
        | Error::Numeric(m) => m,
    }
}

/// A node as written.
pub(super) fn encode_node(n: &Node) -> NodeProto {
    let attribute = n
        .attrs
        .iter()
        .map(|(name, a)| {
            let mut p = AttributeProto { name: name.clone(), ..Default::default() };
            match a {
                Attr::Float(v) => (p.r#type, p.f) = (1, Some(*v)),
                Attr::Int(v) => (p.r#type, p.i) = (2, Some(*v)),
                Attr::Str(v) => (p.r#type, p.s) = (3, Some(v.as_bytes().to_vec())),
                Attr::Tensor(t) => (p.r#type, p.t) = (4, Some(tensor::encode("", t))),
                Attr::Floats(v) => (p.r#type, p.floats) = (6, v.clone()),
                Attr::Ints(v) => (p.r#type, p.ints) = (7, v.clone()),
            }
            p
        })
        .collect();
    NodeProto {
        input: n.inputs.clone(),
        output: n.outputs.clone(),
        name: n.name.clone(),
        op_type: n.op.clone(),
        attribute,
    }
}

/// A graph input declaring an initializer (IR version 3 and before require one).
fn encode_input(name: &str, t: &Tensor) -> ValueInfoProto {
    let dim = t.dims.iter().map(|&d| Dimension { dim_value: Some(d as i64) }).collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: Some(tensor::elem_type(t)),
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

/// Checks a new node on its own (the graph it lands in is checked as a whole after).
fn check_node(n: &Node) -> Result<()> {
    if n.op.is_empty() {
        return Err(refuse(format!("a new node ('{}') has no op", n.label())));
    }
    if n.outputs.iter().all(String::is_empty) {
        return Err(refuse(format!("the new {} '{}' has no output", n.op, n.label())));
    }
    for (k, a) in &n.attrs {
        if k.is_empty() {
            return Err(refuse(format!("the new {} '{}' has an attribute without a name", n.op, n.label())));
        }
        if let Attr::Tensor(t) = a {
            t.check()
                .map_err(|e| refuse(format!("{} '{}': attribute '{k}': {}", n.op, n.label(), text(e))))?;
        }
    }
    Ok(())
}

pub(super) fn rewrite(original: &[u8], edits: &GraphEdit) -> Result<Vec<u8>> {
    let model = read::model(original)?;
    let body = model.graph.ok_or_else(|| Error::Format("the ONNX model has no graph".into()))?;
    let parts = read::graph_parts(body)?;
    let mut budget = Budget::new(MAX_TOTAL_TENSOR_BYTES);

    // The file's nodes (without tensor values) and which ones the edit replaces.
    let nodes = parts
        .nodes
        .iter()
        .enumerate()
        .map(|(i, b)| read::node(b, i, Detail::Structure, &mut budget))
        .collect::<Result<Vec<_>>>()?;
    let mut maker: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for o in n.outputs.iter().filter(|o| !o.is_empty()) {
            maker.insert(o, i);
        }
    }
    let mut replaced: Vec<Option<&[Node]>> = vec![None; nodes.len()];
    for (r, new) in &edits.replace {
        let i = match r {
            NodeRef::Index(i) if *i < nodes.len() => *i,
            NodeRef::Index(i) => {
                return Err(refuse(format!("there is no node #{i}: the file has {} nodes", nodes.len())))
            }
            NodeRef::Output(o) => {
                *maker.get(o.as_str()).ok_or_else(|| refuse(format!("no node makes the value '{o}'")))?
            }
        };
        if replaced[i].is_some() {
            return Err(refuse(format!("{} '{}' is replaced twice", nodes[i].op, nodes[i].label())));
        }
        new.iter().try_for_each(check_node)?;
        replaced[i] = Some(new);
    }

    // Initializers: which go, which come.
    let names = parts.initializers.iter().map(|b| Ok(tensor::header(b)?.name)).collect::<Result<Vec<_>>>()?;
    let existing: HashSet<&str> = names.iter().map(String::as_str).collect();
    let mut removed: BTreeSet<&str> = BTreeSet::new();
    for r in &edits.remove_initializers {
        if !existing.contains(r.as_str()) {
            return Err(refuse(format!("there is no initializer '{r}' to remove")));
        }
        removed.insert(r);
    }
    let kept: BTreeSet<&str> = names.iter().map(String::as_str).filter(|n| !removed.contains(n)).collect();
    let inputs = parts
        .inputs
        .iter()
        .map(|b| read::value_info(b, "graph input", &mut budget))
        .collect::<Result<Vec<_>>>()?;
    let input_names: HashSet<&str> = inputs.iter().map(|v| v.name.as_str()).collect();
    let mut added: BTreeSet<&str> = BTreeSet::new();
    for (name, t) in &edits.add_initializers {
        if kept.contains(name.as_str()) {
            return Err(refuse(format!(
                "the initializer '{name}' exists already (remove it in the same edit to replace it)"
            )));
        }
        if input_names.contains(name.as_str()) && !removed.contains(name.as_str()) {
            return Err(refuse(format!("the new initializer '{name}' is the name of a graph input")));
        }
        if !added.insert(name) {
            return Err(refuse(format!("the initializer '{name}' is added twice")));
        }
        t.check().map_err(|e| refuse(format!("the new initializer '{name}': {}", text(e))))?;
    }

    // The edited graph's structure must be valid: every value made once and before it is read,
    // every output made, no cycle.
    let outputs = parts
        .outputs
        .iter()
        .map(|b| read::value_info(b, "graph output", &mut budget))
        .collect::<Result<Vec<_>>>()?;
    let stand_in = Tensor { dims: vec![0], data: TensorData::F32(Vec::new()) };
    let initializers: BTreeMap<String, Tensor> =
        kept.iter().chain(&added).map(|n| (n.to_string(), stand_in.clone())).collect();
    let edited = Graph {
        inputs: inputs
            .iter()
            .filter(|v| !initializers.contains_key(&v.name) && !removed.contains(v.name.as_str()))
            .cloned()
            .collect(),
        outputs,
        nodes: nodes
            .iter()
            .zip(&replaced)
            .flat_map(|(n, r)| r.map_or_else(|| vec![n.clone()], <[Node]>::to_vec))
            .collect(),
        initializers,
    };
    edited.sorted().map_err(|e| refuse(format!("the edited graph is not valid: {}", text(e))))?;

    // The splice.
    let declare = model.ir_version <= 3;
    let new_inits: Vec<u8> = {
        let mut out = Vec::new();
        for (name, t) in &edits.add_initializers {
            put_message(&mut out, 5, &tensor::encode(name, t).encode_to_vec());
        }
        out
    };
    let new_inputs: Vec<u8> = {
        let mut out = Vec::new();
        if declare {
            for (name, t) in &edits.add_initializers {
                put_message(&mut out, 11, &encode_input(name, t).encode_to_vec());
            }
        }
        out
    };
    let (n_inits, n_inputs) = (parts.initializers.len(), parts.inputs.len());
    let mut graph = Vec::with_capacity(body.len() + new_inits.len());
    let (mut node_i, mut init_i, mut input_i) = (0, 0, 0);
    for f in fields(body, "the graph") {
        let f = f?;
        match f.number {
            1 => {
                match replaced.get(node_i).copied().flatten() {
                    Some(new) => {
                        for n in new {
                            put_message(&mut graph, 1, &encode_node(n).encode_to_vec());
                        }
                    }
                    None => graph.extend_from_slice(f.raw),
                }
                node_i += 1;
            }
            5 => {
                if !names.get(init_i).is_some_and(|n| removed.contains(n.as_str())) {
                    graph.extend_from_slice(f.raw);
                }
                init_i += 1;
                if init_i == n_inits {
                    graph.extend_from_slice(&new_inits);
                }
            }
            11 => {
                if !inputs.get(input_i).is_some_and(|v| removed.contains(v.name.as_str())) {
                    graph.extend_from_slice(f.raw);
                }
                input_i += 1;
                if input_i == n_inputs {
                    graph.extend_from_slice(&new_inputs);
                }
            }
            _ => graph.extend_from_slice(f.raw),
        }
    }
    if n_inits == 0 {
        graph.extend_from_slice(&new_inits);
    }
    if n_inputs == 0 {
        graph.extend_from_slice(&new_inputs);
    }

    let mut out = Vec::with_capacity((original.len() + graph.len()).saturating_sub(body.len()));
    for f in fields(original, "the model") {
        let f = f?;
        if f.number == 7 && graph != body {
            out.extend_from_slice(f.key);
            put_varint(&mut out, graph.len() as u64);
            out.extend_from_slice(&graph);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    Ok(out)
}
