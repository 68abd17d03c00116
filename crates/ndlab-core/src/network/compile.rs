//! [`Graph`] → [`Program`]: constants folded (initializers, `Constant` nodes), every operator
//! checked against the supported set, every conv's kernel read from its initializer (a weight
//! computed by another node is refused), a BatchNorm that alone follows a conv recorded for
//! folding, and each value's last use noted so that a run frees what it no longer needs.

use super::ops::Value;
use super::{Bin, ConvInfo, Op, Program, Src, Step, Unary};
use crate::error::{Error, Result};
use crate::graph::{Attr, Graph, Node, Tensor, TensorData};
use crate::layer::{ConvGeometry, ConvLayer, Kernel, Padding};
use std::collections::HashMap;

/// The operators a [`Program`] runs.
pub const SUPPORTED: &[&str] = &[
    "Conv",
    "BatchNormalization",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Flatten",
    "Reshape",
    "Transpose",
    "Gemm",
    "MatMul",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Softmax",
    "Concat",
    "Identity",
    "Dropout",
    "Constant",
];

/// Compiles `graph` (checked, topologically sorted) for the ONNX `opset` it was written with.
pub fn compile(graph: &Graph, opset: i64) -> Result<Program> {
    graph.check()?;
    let input = match graph.inputs.as_slice() {
        [one] => one.clone(),
        [] => return Err(Error::Format("the graph has no input".into())),
        more => {
            return Err(Error::Format(format!(
                "the graph has {} inputs; ndlab runs networks with one image input",
                more.len()
            )))
        }
    };
    let mut c = Compiler { graph, opset, ids: HashMap::new(), names: Vec::new(), consts: HashMap::new() };
    let input_id = c.id(&input.name);
    for (name, t) in &graph.initializers {
        c.consts.insert(name.clone(), t.clone());
    }
    let mut steps = Vec::new();
    let mut convs = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        if !SUPPORTED.contains(&node.op.as_str()) {
            return Err(Error::Format(format!(
                "unsupported operator {} (node '{}'): ndlab runs {}",
                node.op,
                node.label(),
                SUPPORTED.join(", ")
            )));
        }
        if let Some(op) = c.node(i, node, &mut convs).map_err(|e| in_node(node, e))? {
            let out = node
                .outputs
                .first()
                .ok_or_else(|| Error::Format(format!("{} '{}' has no output", node.op, node.label())))?;
            steps.push(Step { op, out: c.id(out) });
        }
    }
    let outputs = graph
        .outputs
        .iter()
        .map(|o| {
            c.ids
                .get(&o.name)
                .copied()
                .ok_or_else(|| Error::Format(format!("output '{}' is a constant or not made", o.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut last_use = vec![usize::MAX; c.names.len()];
    for (i, s) in steps.iter().enumerate() {
        for id in reads(&s.op) {
            last_use[id] = i;
        }
    }
    Ok(Program { steps, input: (input_id, input.dims), outputs, names: c.names, last_use, convs })
}

fn in_node(node: &Node, e: Error) -> Error {
    let at = format!("{} '{}'", node.op, node.label());
    match e {
        Error::Shape(m) => Error::Shape(format!("{at}: {m}")),
        Error::Format(m) => Error::Format(format!("{at}: {m}")),
        Error::Param(m) => Error::Param(format!("{at}: {m}")),
        Error::NonFinite(m) => Error::NonFinite(format!("{at}: {m}")),
        other => other,
    }
}

/// The value ids a step reads.
fn reads(op: &Op) -> Vec<usize> {
    let var = |s: &Src| match s {
        Src::Var(id) => Some(*id),
        Src::Const(_) => None,
    };
    match op {
        Op::Conv { x, .. }
        | Op::Affine { x, .. }
        | Op::Unary { x, .. }
        | Op::Pool { x, .. }
        | Op::GlobalPool { x, .. }
        | Op::Flatten { x, .. }
        | Op::Reshape { x, .. }
        | Op::Transpose { x, .. }
        | Op::Softmax { x, .. } => vec![*x],
        Op::PRelu { x, slope } => [Some(*x), var(slope)].into_iter().flatten().collect(),
        Op::Binary { a, b, .. } | Op::MatMul { a, b } => [var(a), var(b)].into_iter().flatten().collect(),
        Op::Gemm { a, b, c, .. } => {
            [var(a), var(b), c.as_ref().and_then(var)].into_iter().flatten().collect()
        }
        Op::Concat { xs, .. } => xs.iter().filter_map(var).collect(),
    }
}

struct Compiler<'a> {
    graph: &'a Graph,
    opset: i64,
    ids: HashMap<String, usize>,
    names: Vec<String>,
    /// Constant tensors by value name (initializers and folded `Constant`s).
    consts: HashMap<String, Tensor>,
}

impl Compiler<'_> {
    fn id(&mut self, name: &str) -> usize {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    /// A node's input `k` as an operand (a constant when it is one).
    fn src(&mut self, node: &Node, k: usize) -> Result<Src> {
        let name = node
            .inputs
            .get(k)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::Format(format!("input {k} is missing")))?;
        if let Some(t) = self.consts.get(name) {
            let v = t.as_f32(name)?.to_vec();
            return Ok(Src::Const(Value::new(t.dims.clone(), v)?));
        }
        Ok(Src::Var(self.id(name)))
    }

    /// A node's input `k` as a computed value (constants are refused where a run-time value is
    /// expected, e.g. a conv's data input).
    fn var(&mut self, node: &Node, k: usize) -> Result<usize> {
        match self.src(node, k)? {
            Src::Var(id) => Ok(id),
            Src::Const(_) => {
                Err(Error::Format(format!("input {k} is a constant; ndlab runs it on data only")))
            }
        }
    }

    /// A node's input `k` as a constant tensor (weights, shapes), or an error saying it must be.
    fn constant(&self, node: &Node, k: usize, what: &str) -> Result<Option<Tensor>> {
        let Some(name) = node.inputs.get(k).filter(|s| !s.is_empty()) else { return Ok(None) };
        match self.consts.get(name) {
            Some(t) => Ok(Some(t.clone())),
            None => Err(Error::Format(format!(
                "its {what} '{name}' comes from another node's output; ndlab needs it as an initializer"
            ))),
        }
    }

    fn floats(&self, node: &Node, k: usize, what: &str) -> Result<Option<Vec<f32>>> {
        match self.constant(node, k, what)? {
            Some(t) => {
                let v = t.as_f32(what)?.to_vec();
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(Error::NonFinite(format!("its {what} holds NaN or infinity")));
                }
                Ok(Some(v))
            }
            None => Ok(None),
        }
    }

    /// The step for node `i` (None for nodes folded into constants).
    fn node(&mut self, i: usize, node: &Node, convs: &mut Vec<ConvInfo>) -> Result<Option<Op>> {
        let op = match node.op.as_str() {
            "Constant" => {
                let t = constant_value(node)?;
                let out = node.outputs.first().ok_or_else(|| Error::Format("no output".into()))?;
                self.consts.insert(out.clone(), t);
                return Ok(None);
            }
            "Conv" => {
                let conv = self.conv_info(i, node)?;
                convs.push(conv);
                Op::Conv { conv: convs.len() - 1, x: self.var(node, 0)? }
            }
            "BatchNormalization" => {
                if node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
                    return Err(Error::Format(
                        "a BatchNormalization in training mode (running statistics as outputs)".into(),
                    ));
                }
                let (scale, shift) = self.bn(node)?;
                Op::Affine { x: self.var(node, 0)?, scale, shift }
            }
            "Relu" => Op::Unary { x: self.var(node, 0)?, f: Unary::Relu },
            "LeakyRelu" => {
                Op::Unary { x: self.var(node, 0)?, f: Unary::LeakyRelu(node.float("alpha", 0.01)?) }
            }
            "Sigmoid" => Op::Unary { x: self.var(node, 0)?, f: Unary::Sigmoid },
            "Tanh" => Op::Unary { x: self.var(node, 0)?, f: Unary::Tanh },
            "Identity" | "Dropout" => Op::Unary { x: self.var(node, 0)?, f: Unary::Identity },
            "Clip" => {
                let (lo, hi) = if self.opset < 11 {
                    (node.float("min", f32::NEG_INFINITY)?, node.float("max", f32::INFINITY)?)
                } else {
                    let one = |k: usize, d: f32| -> Result<f32> {
                        Ok(self.floats(node, k, "bound")?.and_then(|v| v.first().copied()).unwrap_or(d))
                    };
                    (one(1, f32::NEG_INFINITY)?, one(2, f32::INFINITY)?)
                };
                Op::Unary { x: self.var(node, 0)?, f: Unary::Clip(lo, hi) }
            }
            "PRelu" => Op::PRelu { x: self.var(node, 0)?, slope: self.src(node, 1)? },
            "Add" | "Sub" | "Mul" | "Div" => {
                let op = match node.op.as_str() {
                    "Add" => Bin::Add,
                    "Sub" => Bin::Sub,
                    "Mul" => Bin::Mul,
                    _ => Bin::Div,
                };
                Op::Binary { a: self.src(node, 0)?, b: self.src(node, 1)?, op }
            }
            "MaxPool" | "AveragePool" => {
                let k = pair(
                    node.ints("kernel_shape")?.ok_or_else(|| Error::Format("no kernel_shape".into()))?,
                    "kernel_shape",
                )?;
                let stride = node.ints("strides")?.map_or(Ok((1, 1)), |s| pair(s, "strides"))?;
                let pads = node.ints("pads")?.map_or(Ok([0; 4]), pads4)?;
                if let Some(d) = node.ints("dilations")? {
                    if d.iter().any(|&v| v != 1) {
                        return Err(Error::Format("dilated pooling is not supported".into()));
                    }
                }
                let auto_pad = node.string("auto_pad")?.unwrap_or("NOTSET").to_string();
                let ceil = node.int("ceil_mode", 0)? != 0;
                let average = node.op == "AveragePool";
                let count_pad = node.int("count_include_pad", 0)? != 0;
                Op::Pool { x: self.var(node, 0)?, k, stride, pads, auto_pad, ceil, average, count_pad }
            }
            "GlobalAveragePool" => Op::GlobalPool { x: self.var(node, 0)?, max: false },
            "GlobalMaxPool" => Op::GlobalPool { x: self.var(node, 0)?, max: true },
            "Flatten" => {
                let axis = node.int("axis", 1)?;
                if axis < 0 {
                    return Err(Error::Format("a negative Flatten axis is not supported".into()));
                }
                Op::Flatten { x: self.var(node, 0)?, axis: axis as usize }
            }
            "Reshape" => {
                let shape =
                    self.constant(node, 1, "shape")?.ok_or_else(|| Error::Format("no shape".into()))?;
                let shape = shape.as_i64("shape")?.to_vec();
                Op::Reshape { x: self.var(node, 0)?, shape, allowzero: node.int("allowzero", 0)? != 0 }
            }
            "Transpose" => {
                let perm = match node.ints("perm")? {
                    Some(p) => p
                        .iter()
                        .map(|&v| usize::try_from(v).map_err(|_| Error::Format("a negative perm".into())))
                        .collect::<Result<Vec<_>>>()?,
                    None => return Err(Error::Format("Transpose without perm".into())),
                };
                Op::Transpose { x: self.var(node, 0)?, perm }
            }
            "Gemm" => {
                let c = if node.inputs.get(2).is_some_and(|s| !s.is_empty()) {
                    Some(self.src(node, 2)?)
                } else {
                    None
                };
                Op::Gemm {
                    a: self.src(node, 0)?,
                    b: self.src(node, 1)?,
                    c,
                    alpha: node.float("alpha", 1.0)?,
                    beta: node.float("beta", 1.0)?,
                    ta: node.int("transA", 0)? != 0,
                    tb: node.int("transB", 0)? != 0,
                }
            }
            "MatMul" => Op::MatMul { a: self.src(node, 0)?, b: self.src(node, 1)? },
            "Softmax" => {
                let coerce = self.opset < 13;
                let axis = node.int("axis", if coerce { 1 } else { -1 })?;
                Op::Softmax { x: self.var(node, 0)?, axis, coerce }
            }
            "Concat" => {
                let xs = (0..node.inputs.len()).map(|k| self.src(node, k)).collect::<Result<Vec<_>>>()?;
                Op::Concat { xs, axis: node.int("axis", 0)? }
            }
            other => return Err(Error::Format(format!("unsupported operator {other}"))),
        };
        Ok(Some(op))
    }

    /// The conv of node `i`: kernel and bias from initializers, geometry from the attributes.
    fn conv_info(&self, i: usize, node: &Node) -> Result<ConvInfo> {
        let w = self.constant(node, 1, "weight")?.ok_or_else(|| Error::Format("no weight".into()))?;
        let &[n, c, kh, kw] = w.dims.as_slice() else {
            return Err(Error::Shape(format!("a 2-D conv needs a 4-D weight, got dims {:?}", w.dims)));
        };
        let kernel = Kernel::new(n, c, kh, kw, w.as_f32("weight")?.to_vec())?;
        let bias = self.floats(node, 2, "bias")?;
        if let Some(ks) = node.ints("kernel_shape")? {
            if ks != [kh as i64, kw as i64] {
                return Err(Error::Shape(format!("kernel_shape {ks:?} differs from the weight's {kh}×{kw}")));
            }
        }
        let stride = node.ints("strides")?.map_or(Ok((1, 1)), |s| pair(s, "strides"))?;
        let dilation = node.ints("dilations")?.map_or(Ok((1, 1)), |s| pair(s, "dilations"))?;
        let [top, left, bottom, right] = node.ints("pads")?.map_or(Ok([0; 4]), pads4)?;
        let group = node.int("group", 1)?;
        let groups = usize::try_from(group)
            .ok()
            .filter(|&g| g >= 1)
            .ok_or_else(|| Error::Format(format!("group {group}")))?;
        let geometry =
            ConvGeometry { stride, padding: Padding { top, bottom, left, right }, dilation, groups };
        let layer = ConvLayer::new(kernel, bias, geometry)?;
        let auto_pad = node.string("auto_pad")?.unwrap_or("NOTSET").to_string();
        Ok(ConvInfo {
            node: i,
            name: node.label().to_string(),
            layer,
            auto_pad,
            bn: self.following_bn(node)?,
        })
    }

    /// The BatchNormalization that alone reads `conv`'s output, as (scale, shift) per channel.
    fn following_bn(&self, conv: &Node) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        let Some(out) = conv.outputs.first() else { return Ok(None) };
        let users = self.graph.consumers(out);
        if users.len() != 1 || self.graph.is_output(out) {
            return Ok(None);
        }
        let bn = &self.graph.nodes[users[0]];
        if bn.op != "BatchNormalization" || bn.inputs.first() != Some(out) {
            return Ok(None);
        }
        self.bn(bn).map(Some).map_err(|e| in_node(bn, e))
    }

    /// A BatchNormalization's per-channel scale γ/√(var+ε) and shift β − mean·scale.
    fn bn(&self, node: &Node) -> Result<(Vec<f32>, Vec<f32>)> {
        let eps = node.float("epsilon", 1e-5)? as f64;
        let get = |k, what| self.floats(node, k, what)?.ok_or_else(|| Error::Format(format!("no {what}")));
        let (gamma, beta, mean, var) =
            (get(1, "scale")?, get(2, "bias")?, get(3, "mean")?, get(4, "variance")?);
        let c = gamma.len();
        if [beta.len(), mean.len(), var.len()] != [c; 3] {
            return Err(Error::Shape("scale, bias, mean and variance differ in length".into()));
        }
        let scale: Vec<f32> =
            gamma.iter().zip(&var).map(|(&g, &v)| (g as f64 / (v as f64 + eps).sqrt()) as f32).collect();
        let shift = beta.iter().zip(&mean).zip(&scale).map(|((&b, &m), &s)| b - m * s).collect();
        if scale.iter().any(|s| !s.is_finite()) {
            return Err(Error::NonFinite("a variance + epsilon is not positive".into()));
        }
        Ok((scale, shift))
    }
}

/// `Constant`'s value (the `value` tensor, or `value_float(s)` / `value_int(s)`).
fn constant_value(node: &Node) -> Result<Tensor> {
    match node.attrs.iter().next() {
        Some((k, Attr::Tensor(t))) if k == "value" => Ok(t.clone()),
        Some((k, Attr::Float(f))) if k == "value_float" => Tensor::f32(vec![], vec![*f]),
        Some((k, Attr::Floats(f))) if k == "value_floats" => Tensor::f32(vec![f.len()], f.clone()),
        Some((k, Attr::Int(v))) if k == "value_int" => Tensor::i64(vec![], vec![*v]),
        Some((k, Attr::Ints(v))) if k == "value_ints" => Tensor::i64(vec![v.len()], v.clone()),
        _ => Err(Error::Format("a Constant without a supported value".into())),
    }
}

fn pair(v: &[i64], what: &str) -> Result<(usize, usize)> {
    match v {
        &[a, b] if a >= 1 && b >= 1 => Ok((a as usize, b as usize)),
        _ => Err(Error::Format(format!("{what} {v:?}: two positive values expected (2-D)"))),
    }
}

/// ONNX pads [top, left, bottom, right] (x1_begin, x2_begin, x1_end, x2_end).
fn pads4(v: &[i64]) -> Result<[usize; 4]> {
    match v {
        &[t, l, b, r] if [t, l, b, r].iter().all(|&p| (0..=1 << 16).contains(&p)) => {
            Ok([t as usize, l as usize, b as usize, r as usize])
        }
        _ => Err(Error::Format(format!("pads {v:?}: four non-negative values expected"))),
    }
}

impl TensorData {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::I64(v) => v.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
