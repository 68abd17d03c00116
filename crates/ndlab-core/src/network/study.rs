//! What a decoupling does to a whole network, measured: accuracy on labelled data, output error
//! against the original network, each layer's sensitivity (for the budget allocation), and the
//! decoupled convs as ONNX nodes (for export).

use super::ops::Value;
use super::plan::{conv_impls, raw_merged, Candidate, NetworkPlan};
use super::{ConvImpl, Program};
use crate::decouple::Decomposition;
use crate::error::{Error, Result};
use crate::graph::{Attr, Graph, Node, Tensor};
use crate::layer::Order;
use std::collections::{BTreeMap, HashSet};

/// Images per run of the program (bounds the memory of one run).
pub const BATCH: usize = 64;

/// The first output of the network on every item of `x` (dims N first), run in batches.
pub fn outputs(program: &Program, x: &Value, impls: &[ConvImpl]) -> Result<Value> {
    let n = *x.dims.first().ok_or_else(|| Error::Shape("the data has no items".into()))?;
    let per = x.dims.iter().skip(1).product::<usize>();
    let mut data = Vec::new();
    let mut dims = Vec::new();
    for start in (0..n).step_by(BATCH) {
        let end = (start + BATCH).min(n);
        let mut bd = x.dims.clone();
        bd[0] = end - start;
        let batch = Value::new(bd, x.data[start * per..end * per].to_vec())?;
        let out = program.run(&batch, impls, &mut |_, _, _| {})?;
        let first =
            out.into_iter().next().ok_or_else(|| Error::Format("the network has no output".into()))?;
        dims = first.dims.clone();
        data.extend(first.data);
    }
    dims[0] = n;
    Value::new(dims, data)
}

/// Top-1 predictions: the argmax over the last axis of a [N, classes] output (or the flattened
/// rest of each item).
pub fn predictions(out: &Value) -> Vec<usize> {
    let n = out.dims.first().copied().unwrap_or(0);
    let per = out.data.len().checked_div(n).unwrap_or(0);
    (0..n)
        .map(|i| {
            let row = &out.data[i * per..(i + 1) * per];
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (j, &v)| if v > bv { (j, v) } else { (bi, bv) })
                .0
        })
        .collect()
}

/// Fraction of `labels` the predictions get right.
pub fn accuracy(pred: &[usize], labels: &[usize]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    pred.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / labels.len() as f64
}

/// ‖a − b‖ / ‖b‖ over all values (f64).
pub fn rel_error(a: &Value, b: &Value) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&x, &y) in a.data.iter().zip(&b.data) {
        num += ((x - y) as f64).powi(2);
        den += (y as f64).powi(2);
    }
    if den > 0.0 {
        (num / den).sqrt()
    } else {
        num.sqrt()
    }
}

/// Each layer's sensitivity: the network's output error on `x` against `reference` (the
/// original network's outputs) with that layer alone decoupled at T, for T = 1..=its largest
/// cheaper T (infinite past it: not a choice). Layers that cannot be decoupled get an empty row.
pub fn sensitivity(
    program: &Program,
    cands: &[Candidate],
    decs: &[Option<Decomposition>],
    order: Order,
    x: &Value,
    reference: &Value,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<Vec<f64>>> {
    let total: usize = cands.iter().map(|c| c.max_cheaper_t(order)).sum();
    let mut done = 0;
    let mut rows = Vec::with_capacity(cands.len());
    for (l, (c, d)) in cands.iter().zip(decs).enumerate() {
        let mut row = vec![f64::INFINITY; c.full_rank()];
        if let Some(d) = d {
            for t in 1..=c.max_cheaper_t(order).min(d.full_rank) {
                let mut impls = vec![ConvImpl::Regular; cands.len()];
                impls[l] = ConvImpl::Decoupled {
                    merged: raw_merged(c, d, t)?,
                    bias: program.convs[c.conv].layer.bias.clone(),
                };
                row[t - 1] = rel_error(&outputs(program, x, &impls)?, reference);
                done += 1;
                if !progress(done, total) {
                    return Err(Error::Param("cancelled".into()));
                }
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The plan's accuracy and output error on labelled data (and the predictions).
pub fn evaluate(
    program: &Program,
    cands: &[Candidate],
    decs: &[Option<Decomposition>],
    plan: &NetworkPlan,
    x: &Value,
) -> Result<(Value, Vec<usize>)> {
    let impls = conv_impls(program, cands, decs, plan)?;
    let out = outputs(program, x, &impls)?;
    let pred = predictions(&out);
    Ok((out, pred))
}

/// A fresh value name with `base` as its stem, unused in `taken` (then taken).
fn fresh(taken: &mut HashSet<String>, base: &str) -> String {
    let mut name = base.to_string();
    let mut k = 1;
    while taken.contains(&name) {
        name = format!("{base}_{k}");
        k += 1;
    }
    taken.insert(name.clone());
    name
}

/// What replaces one conv node in an exported graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    /// Index of the conv node in the graph.
    pub node: usize,
    /// The nodes that replace it, in order (the last one makes the conv's output).
    pub nodes: Vec<Node>,
    /// Their new weights.
    pub initializers: Vec<(String, Tensor)>,
}

/// The decoupled convs of `plan` as ONNX nodes: DW→PW as a depthwise Conv (`group` = its input
/// channels, the conv's strides, pads, dilations) then a 1×1 Conv (the conv's groups) with the
/// bias; PW→DW as a 1×1 Conv to N·T channels then a Conv with `group` = N summing each output's
/// T terms, with the bias. Weights are the raw kernel's factors (a following BatchNorm node stays).
pub fn replacements(
    graph: &Graph,
    program: &Program,
    cands: &[Candidate],
    decs: &[Option<Decomposition>],
    plan: &NetworkPlan,
) -> Result<Vec<Replacement>> {
    let mut taken: HashSet<String> = graph.initializers.keys().cloned().collect();
    for n in &graph.nodes {
        taken.extend(n.outputs.iter().cloned());
        taken.extend(n.inputs.iter().cloned());
        taken.insert(n.name.clone());
    }
    taken.extend(graph.inputs.iter().map(|v| v.name.clone()));
    let mut out = Vec::new();
    for ((c, l), d) in cands.iter().zip(&plan.layers).zip(decs) {
        if !l.decoupled {
            continue;
        }
        let d = d.as_ref().ok_or_else(|| Error::Param(format!("conv '{}' has no decomposition", c.name)))?;
        let info = &program.convs[c.conv];
        let node =
            graph.nodes.get(info.node).ok_or_else(|| Error::Format("a conv's node is missing".into()))?;
        let t = l.t.min(d.full_rank);
        let m = raw_merged(c, d, t)?;
        let k = &info.layer.kernel;
        let g = info.layer.geometry;
        let (x, y) = (node.inputs[0].clone(), node.outputs[0].clone());
        let bias: Vec<String> = node.inputs.get(2).filter(|b| !b.is_empty()).cloned().into_iter().collect();
        let label = node.label().to_string();
        let spatial = |attrs: &mut BTreeMap<String, Attr>| {
            for key in ["strides", "pads", "dilations", "auto_pad"] {
                if let Some(a) = node.attrs.get(key) {
                    attrs.insert(key.to_string(), a.clone());
                }
            }
            attrs.insert("kernel_shape".into(), Attr::Ints(vec![k.kh as i64, k.kw as i64]));
        };
        let pointwise = |attrs: &mut BTreeMap<String, Attr>| {
            attrs.insert("kernel_shape".into(), Attr::Ints(vec![1, 1]));
        };
        let conv = |name: String,
                    inputs: Vec<String>,
                    output: String,
                    group: usize,
                    attrs: BTreeMap<String, Attr>| {
            let mut attrs = attrs;
            attrs.insert("group".into(), Attr::Int(group as i64));
            Node { name, op: "Conv".into(), inputs, outputs: vec![output], attrs }
        };
        // DW→PW: depthwise then pointwise; PW→DW: pointwise then the grouped conv of the terms.
        let (a, b) = match m.order {
            Order::DwPw => ("dw", "pw"),
            Order::PwDw => ("pw", "dw"),
        };
        let first_w = fresh(&mut taken, &format!("{label}_{a}_weight"));
        let second_w = fresh(&mut taken, &format!("{label}_{b}_weight"));
        let mid = fresh(&mut taken, &format!("{label}_{a}_out"));
        let (n1, n2) =
            (fresh(&mut taken, &format!("{label}_{a}")), fresh(&mut taken, &format!("{label}_{b}")));
        let c_total = m.c_total;
        let cg = c_total / g.groups;
        let (nodes, inits) = match m.order {
            Order::DwPw => {
                let mut a1 = BTreeMap::new();
                spatial(&mut a1);
                let mut a2 = BTreeMap::new();
                pointwise(&mut a2);
                let mut second_inputs = vec![mid.clone(), second_w.clone()];
                second_inputs.extend(bias);
                (
                    vec![
                        conv(n1, vec![x, first_w.clone()], mid, c_total, a1),
                        conv(n2, second_inputs, y, g.groups, a2),
                    ],
                    vec![
                        (first_w, Tensor::f32(vec![c_total * t, 1, k.kh, k.kw], m.dw)?),
                        (second_w, Tensor::f32(vec![k.n, cg * t, 1, 1], m.pw)?),
                    ],
                )
            }
            Order::PwDw => {
                let mut a1 = BTreeMap::new();
                pointwise(&mut a1);
                let mut a2 = BTreeMap::new();
                spatial(&mut a2);
                let mut second_inputs = vec![mid.clone(), second_w.clone()];
                second_inputs.extend(bias);
                (
                    vec![
                        conv(n1, vec![x, first_w.clone()], mid, g.groups, a1),
                        conv(n2, second_inputs, y, k.n, a2),
                    ],
                    vec![
                        (first_w, Tensor::f32(vec![k.n * t, cg, 1, 1], m.pw)?),
                        (second_w, Tensor::f32(vec![k.n, t, k.kh, k.kw], m.dw)?),
                    ],
                )
            }
        };
        out.push(Replacement { node: info.node, nodes, initializers: inits });
    }
    Ok(out)
}

/// The graph with the replacements applied (for running it here, e.g. to check an export).
pub fn replaced_graph(graph: &Graph, reps: &[Replacement]) -> Result<Graph> {
    let mut g = graph.clone();
    let mut nodes = Vec::with_capacity(g.nodes.len() + reps.len());
    for (i, n) in g.nodes.iter().enumerate() {
        match reps.iter().find(|r| r.node == i) {
            Some(r) => nodes.extend(r.nodes.iter().cloned()),
            None => nodes.push(n.clone()),
        }
    }
    g.nodes = nodes;
    for r in reps {
        for (name, t) in &r.initializers {
            g.initializers.insert(name.clone(), t.clone());
        }
    }
    let read: HashSet<&str> = g.nodes.iter().flat_map(|n| n.inputs.iter().map(String::as_str)).collect();
    let unused: Vec<String> = g.initializers.keys().filter(|k| !read.contains(k.as_str())).cloned().collect();
    for k in unused {
        g.initializers.remove(&k);
    }
    g.check()?;
    Ok(g)
}
