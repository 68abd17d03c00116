//! A whole network, compiled from a [`crate::graph::Graph`] into a [`Program`] that ndlab runs on its own
//! kernels: the convolutions (each one regular or decoupled, chosen per run) and the operators
//! around them (BatchNorm, activations, pooling, reshapes, Gemm/MatMul, elementwise arithmetic
//! with broadcasting, Softmax). Shapes are inferred without running anything, so a planner knows
//! every conv's input size and MACs.
//!
//! The operator set is the one of the networks ndlab ships and of common exported CNNs; any other
//! operator is refused at compile time with its name. The command line's `evaluate` runs whole
//! graphs in a real ONNX runtime (tract); the page runs this program, the built-in network and a
//! user's graph alike (onnxruntime-web is not in the page), and it is tested against onnxruntime.

pub mod aware;
mod compile;
pub mod ops;
pub mod plan;
pub mod study;
#[cfg(test)]
mod tests;

use crate::conv::{conv2d, decoupled_forward};
use crate::decouple::Merged;
use crate::error::{Error, Result};
use crate::layer::{ConvGeometry, ConvLayer, FeatureMap, Padding};
use ops::{binary, dims4, gemm, matmul, numel, pool, softmax, transpose, Pool2d, Value};

pub use compile::compile;

/// One convolution of the network, as read from its graph.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvInfo {
    /// Index of its node in the graph.
    pub node: usize,
    /// The node's label (its name, or its first output's).
    pub name: String,
    /// Kernel (OIHW), bias and geometry (explicit pads; see `auto_pad`).
    pub layer: ConvLayer,
    /// ONNX `auto_pad` (`NOTSET`, `VALID`, `SAME_UPPER`, `SAME_LOWER`): resolved per input size.
    pub auto_pad: String,
    /// The BatchNormalization that alone reads this conv's output, as its per-channel scale
    /// γ/√(var+ε) and shift β − mean·scale (for planning on the folded kernel).
    pub bn: Option<(Vec<f32>, Vec<f32>)>,
}

impl ConvInfo {
    /// The geometry for an `h` × `w` input (auto_pad resolved).
    pub fn geometry(&self, h: usize, w: usize) -> Result<ConvGeometry> {
        let mut g = self.layer.geometry;
        let k = &self.layer.kernel;
        match self.auto_pad.as_str() {
            "" | "NOTSET" => {}
            "VALID" => g.padding = Padding::default(),
            upper @ ("SAME_UPPER" | "SAME_LOWER") => {
                let th = ops::same_total(h, k.kh, g.stride.0, g.dilation.0);
                let tw = ops::same_total(w, k.kw, g.stride.1, g.dilation.1);
                let split =
                    |t: usize| if upper == "SAME_UPPER" { (t / 2, t - t / 2) } else { (t - t / 2, t / 2) };
                let ((top, bottom), (left, right)) = (split(th), split(tw));
                g.padding = Padding { top, bottom, left, right };
            }
            other => return Err(Error::Format(format!("Conv '{}': unknown auto_pad '{other}'", self.name))),
        }
        Ok(g)
    }

    /// The kernel with the following BatchNorm folded in (rows scaled), and the folded bias.
    pub fn folded(&self) -> Result<ConvLayer> {
        let Some((scale, shift)) = &self.bn else { return Ok(self.layer.clone()) };
        let k = &self.layer.kernel;
        let per = k.c * k.kh * k.kw;
        let mut data = k.data.clone();
        for (row, &s) in data.chunks_exact_mut(per).zip(scale) {
            row.iter_mut().for_each(|v| *v *= s);
        }
        let bias: Vec<f32> =
            (0..k.n).map(|o| self.layer.bias.as_ref().map_or(0.0, |b| b[o]) * scale[o] + shift[o]).collect();
        let kernel = crate::layer::Kernel::new(k.n, k.c, k.kh, k.kw, data)?;
        ConvLayer::new(kernel, Some(bias), self.layer.geometry)
    }
}

/// How a convolution runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ConvImpl {
    /// As in the graph.
    Regular,
    /// Decoupled (factors of the raw kernel, bias once at the end).
    Decoupled {
        /// The factors.
        merged: Merged,
        /// The bias.
        bias: Option<Vec<f32>>,
    },
}

/// Where an operand comes from.
#[derive(Debug, Clone, PartialEq)]
enum Src {
    /// A value computed at run time (by id).
    Var(usize),
    /// A constant.
    Const(Value),
}

/// The activations the program computes, by kind.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Unary {
    Relu,
    LeakyRelu(f32),
    Clip(f32, f32),
    Sigmoid,
    Tanh,
    Identity,
}

/// Elementwise binary operators.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
}

/// One step of the program; `out` is the id of the value it makes.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Conv {
        conv: usize,
        x: usize,
    },
    Affine {
        x: usize,
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    Unary {
        x: usize,
        f: Unary,
    },
    PRelu {
        x: usize,
        slope: Src,
    },
    Binary {
        a: Src,
        b: Src,
        op: Bin,
    },
    Pool {
        x: usize,
        k: (usize, usize),
        stride: (usize, usize),
        pads: [usize; 4],
        auto_pad: String,
        ceil: bool,
        average: bool,
        count_pad: bool,
    },
    GlobalPool {
        x: usize,
        max: bool,
    },
    Flatten {
        x: usize,
        axis: usize,
    },
    Reshape {
        x: usize,
        shape: Vec<i64>,
        allowzero: bool,
    },
    Transpose {
        x: usize,
        perm: Vec<usize>,
    },
    Gemm {
        a: Src,
        b: Src,
        c: Option<Src>,
        alpha: f32,
        beta: f32,
        ta: bool,
        tb: bool,
    },
    MatMul {
        a: Src,
        b: Src,
    },
    Softmax {
        x: usize,
        axis: i64,
        coerce: bool,
    },
    Concat {
        xs: Vec<Src>,
        axis: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct Step {
    op: Op,
    out: usize,
}

/// A compiled network (see the module's documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    steps: Vec<Step>,
    /// The graph input's value id and its dims (None: symbolic, e.g. the batch).
    input: (usize, Vec<Option<usize>>),
    /// The graph outputs' value ids, in order.
    outputs: Vec<usize>,
    /// Value names by id.
    names: Vec<String>,
    /// The step after which each value is no longer read (freed then).
    last_use: Vec<usize>,
    /// The convolutions, in graph order.
    pub convs: Vec<ConvInfo>,
}

/// Every value's dims for one input size (None: not made, e.g. constants).
pub type Shapes = Vec<Option<Vec<usize>>>;

/// What [`Program::run_cached`] keeps between runs on the same input.
#[derive(Debug, Clone, Default)]
pub struct RunCache {
    input: Option<(usize, Value)>,
    width: usize,
    /// How each conv ran last time.
    impls: Vec<ConvImpl>,
    /// The live values before each conv's step, last time.
    snapshots: Vec<Option<Vec<Option<Value>>>>,
}

impl RunCache {
    /// A cache for runs of `program` on `x`.
    pub fn new(program: &Program, x: Value) -> Self {
        RunCache {
            input: Some((program.input.0, x)),
            width: program.names.len(),
            impls: Vec::new(),
            snapshots: Vec::new(),
        }
    }

    /// Values with only the input set.
    fn start(&self) -> Vec<Option<Value>> {
        let mut vals = vec![None; self.width];
        if let Some((id, x)) = &self.input {
            vals[*id] = Some(x.clone());
        }
        vals
    }
}

impl Program {
    /// The input's dims as declared (None: symbolic).
    pub fn input_dims(&self) -> &[Option<usize>] {
        &self.input.1
    }

    /// The input's declared dims with the symbolic ones taken from `like` (e.g. the data's
    /// dims), or an error naming those it cannot fill.
    pub fn concrete_input(&self, like: Option<&[usize]>, batch: usize) -> Result<Vec<usize>> {
        let declared = &self.input.1;
        if let Some(l) = like {
            if l.len() != declared.len() && !declared.is_empty() {
                return Err(Error::Shape(format!(
                    "the data's dims {l:?} do not match the model's input of {} dims",
                    declared.len()
                )));
            }
        }
        let n = if declared.is_empty() { like.map_or(0, <[usize]>::len) } else { declared.len() };
        (0..n)
            .map(|i| match (declared.get(i).copied().flatten(), like.and_then(|l| l.get(i)).copied(), i) {
                (Some(d), Some(l), _) if d != l && i > 0 => {
                    Err(Error::Shape(format!("the data's dim {i} is {l}, the model's input takes {d}")))
                }
                (_, _, 0) => Ok(batch),
                (Some(d), _, _) => Ok(d),
                (None, Some(l), _) => Ok(l),
                (None, None, _) => Err(Error::Shape(format!(
                    "the model's input dim {i} is symbolic: give data (--calibration) to fix it"
                ))),
            })
            .collect()
    }

    /// Every value's dims for an input of `input` dims, without running anything.
    pub fn shapes(&self, input: &[usize]) -> Result<Shapes> {
        let mut dims: Shapes = vec![None; self.names.len()];
        dims[self.input.0] = Some(input.to_vec());
        for step in &self.steps {
            let d = self.step_dims(step, &dims).map_err(|e| self.at(step, e))?;
            dims[step.out] = Some(d);
        }
        Ok(dims)
    }

    /// The input dims of conv `i` for an input of `input` dims.
    pub fn conv_input_dims(&self, shapes: &Shapes, i: usize) -> Option<[usize; 4]> {
        self.steps.iter().find_map(|s| match s.op {
            Op::Conv { conv, x } if conv == i => shapes[x].as_deref().and_then(|d| dims4(d, "").ok()),
            _ => None,
        })
    }

    /// Runs the network on `x` with each conv as `impls` says (missing: regular); returns the
    /// graph's outputs. `tap(conv, input, output)` sees every conv's input and output.
    pub fn run(
        &self,
        x: &Value,
        impls: &[ConvImpl],
        tap: &mut dyn FnMut(usize, &Value, &Value),
    ) -> Result<Vec<Value>> {
        let mut vals: Vec<Option<Value>> = vec![None; self.names.len()];
        vals[self.input.0] = Some(x.clone());
        self.run_steps(0, vals, impls, tap, None)
    }

    /// [`Program::run`] on the input `cache` was made for, starting from the first conv whose
    /// way of running differs from the cache's: the values live before each conv are kept in
    /// the cache, so a change to one layer recomputes only from that layer on. A new input needs
    /// a new cache ([`RunCache::new`]).
    pub fn run_cached(
        &self,
        cache: &mut RunCache,
        impls: &[ConvImpl],
        tap: &mut dyn FnMut(usize, &Value, &Value),
    ) -> Result<Vec<Value>> {
        let regular = ConvImpl::Regular;
        let get = |v: &[ConvImpl], i: usize| v.get(i).unwrap_or(&regular).clone();
        let first_diff = (0..self.convs.len()).find(|&i| get(&cache.impls, i) != get(impls, i));
        let start_conv = match (&cache.snapshots, first_diff) {
            (s, _) if s.is_empty() => None,
            (_, None) => Some(self.convs.len()),
            (_, Some(d)) => Some(d),
        };
        let (start, vals) = match start_conv {
            // Everything before the end is the same: the snapshot after the last conv is what
            // the last steps need.
            Some(c) if c < self.convs.len() => match cache.snapshots.get(c) {
                Some(Some(snap)) => (self.conv_step(c), snap.clone()),
                _ => (0, cache.start()),
            },
            _ => (0, cache.start()),
        };
        cache.snapshots.resize(self.convs.len(), None);
        cache.impls = (0..self.convs.len()).map(|i| get(impls, i)).collect();
        let out = self.run_steps(start, vals, impls, tap, Some(&mut cache.snapshots))?;
        Ok(out)
    }

    /// The index of conv `c`'s step.
    fn conv_step(&self, c: usize) -> usize {
        self.steps.iter().position(|s| matches!(s.op, Op::Conv { conv, .. } if conv == c)).unwrap_or(0)
    }

    /// Runs steps `start..` from `vals`; keeps the live values before each conv in `snapshots`.
    fn run_steps(
        &self,
        start: usize,
        mut vals: Vec<Option<Value>>,
        impls: &[ConvImpl],
        tap: &mut dyn FnMut(usize, &Value, &Value),
        mut snapshots: Option<&mut Vec<Option<Vec<Option<Value>>>>>,
    ) -> Result<Vec<Value>> {
        for (i, step) in self.steps.iter().enumerate().skip(start) {
            if let (Some(s), Op::Conv { conv, .. }) = (snapshots.as_deref_mut(), &step.op) {
                if let Some(slot) = s.get_mut(*conv) {
                    *slot = Some(vals.clone());
                }
            }
            let y = self.exec(step, &vals, impls, tap).map_err(|e| self.at(step, e))?;
            vals[step.out] = Some(y);
            for (id, v) in vals.iter_mut().enumerate() {
                if self.last_use[id] == i && !self.outputs.contains(&id) {
                    *v = None;
                }
            }
        }
        self.outputs
            .iter()
            .map(|&o| {
                vals[o]
                    .take()
                    .ok_or_else(|| Error::Format(format!("output '{}' was not made", self.names[o])))
            })
            .collect()
    }

    fn at(&self, step: &Step, e: Error) -> Error {
        let what = format!("computing '{}'", self.names[step.out]);
        match e {
            Error::Shape(m) => Error::Shape(format!("{what}: {m}")),
            Error::Format(m) => Error::Format(format!("{what}: {m}")),
            Error::Param(m) => Error::Param(format!("{what}: {m}")),
            other => other,
        }
    }

    fn step_dims(&self, step: &Step, dims: &Shapes) -> Result<Vec<usize>> {
        let get = |id: usize| {
            dims[id].clone().ok_or_else(|| Error::Format(format!("'{}' has no shape", self.names[id])))
        };
        let src = |s: &Src| match s {
            Src::Var(id) => get(*id),
            Src::Const(v) => Ok(v.dims.clone()),
        };
        Ok(match &step.op {
            Op::Conv { conv, x } => {
                let [n, c, h, w] = dims4(&get(*x)?, "Conv")?;
                let info = &self.convs[*conv];
                let k = &info.layer.kernel;
                if c != info.layer.in_channels() {
                    return Err(Error::Shape(format!(
                        "the conv takes {} channels, its input has {c}",
                        info.layer.in_channels()
                    )));
                }
                let (ho, wo) = info.geometry(h, w)?.output_size(h, w, k.kh, k.kw)?;
                vec![n, k.n, ho, wo]
            }
            Op::Affine { x, scale, .. } => {
                let d = get(*x)?;
                if d.get(1) != Some(&scale.len()) {
                    return Err(Error::Shape(format!(
                        "{} channels for a BatchNorm of {}",
                        d.get(1).copied().unwrap_or(0),
                        scale.len()
                    )));
                }
                d
            }
            Op::Unary { x, .. } => get(*x)?,
            Op::PRelu { x, slope } => {
                let d = get(*x)?;
                if ops::broadcast_dims(&d, &src(slope)?)? != d {
                    return Err(Error::Shape("the PRelu slope does not broadcast to its input".into()));
                }
                d
            }
            Op::Binary { a, b, .. } => ops::broadcast_dims(&src(a)?, &src(b)?)?,
            Op::Pool { x, k, stride, pads, auto_pad, ceil, .. } => {
                let [n, c, h, w] = dims4(&get(*x)?, "pooling")?;
                let p = Pool2d::new((h, w), *k, *stride, *pads, auto_pad, *ceil)?;
                vec![n, c, p.out.0, p.out.1]
            }
            Op::GlobalPool { x, .. } => {
                let [n, c, _, _] = dims4(&get(*x)?, "global pooling")?;
                vec![n, c, 1, 1]
            }
            Op::Flatten { x, axis } => {
                let d = get(*x)?;
                if *axis > d.len() {
                    return Err(Error::Shape(format!("Flatten axis {axis} of {} dims", d.len())));
                }
                vec![d[..*axis].iter().product(), d[*axis..].iter().product()]
            }
            Op::Reshape { x, shape, allowzero } => reshape_dims(&get(*x)?, shape, *allowzero)?,
            Op::Transpose { x, perm } => ops::transpose_dims(&get(*x)?, perm)?,
            Op::Gemm { a, b, ta, tb, .. } => {
                let (da, db) = (src(a)?, src(b)?);
                match (da.as_slice(), db.as_slice()) {
                    (&[ar, ac], &[br, bc]) => {
                        let (m, k) = if *ta { (ac, ar) } else { (ar, ac) };
                        let (k2, n) = if *tb { (bc, br) } else { (br, bc) };
                        if k != k2 {
                            return Err(Error::Shape(format!("Gemm: {m}×{k} times {k2}×{n}")));
                        }
                        vec![m, n]
                    }
                    _ => return Err(Error::Shape(format!("Gemm needs 2-D inputs, got {da:?} and {db:?}"))),
                }
            }
            Op::MatMul { a, b } => {
                let (da, db) = (src(a)?, src(b)?);
                match (da.split_last(), db.as_slice()) {
                    (Some((&k, lead)), &[k2, n]) if k == k2 => {
                        let mut d = lead.to_vec();
                        d.push(n);
                        d
                    }
                    _ => return Err(Error::Shape(format!("MatMul of {da:?} by {db:?}"))),
                }
            }
            Op::Softmax { x, axis, .. } => {
                let d = get(*x)?;
                norm_axis(*axis, d.len())?;
                d
            }
            Op::Concat { xs, axis } => {
                let all: Vec<Vec<usize>> = xs.iter().map(src).collect::<Result<_>>()?;
                let first = all.first().ok_or_else(|| Error::Format("Concat of nothing".into()))?;
                let ax = norm_axis(*axis, first.len())?;
                let mut d = first.clone();
                d[ax] = 0;
                for x in &all {
                    if x.len() != first.len() || x.iter().enumerate().any(|(i, &v)| i != ax && v != first[i])
                    {
                        return Err(Error::Shape(format!("Concat of {first:?} and {x:?} along {ax}")));
                    }
                    d[ax] += x[ax];
                }
                d
            }
        })
    }

    fn exec(
        &self,
        step: &Step,
        vals: &[Option<Value>],
        impls: &[ConvImpl],
        tap: &mut dyn FnMut(usize, &Value, &Value),
    ) -> Result<Value> {
        let var = |id: usize| {
            vals[id].as_ref().ok_or_else(|| Error::Format(format!("'{}' is not computed", self.names[id])))
        };
        let src = |s: &Src| -> Result<Value> {
            match s {
                Src::Var(id) => var(*id).cloned(),
                Src::Const(v) => Ok(v.clone()),
            }
        };
        Ok(match &step.op {
            Op::Conv { conv, x } => {
                let x = var(*x)?;
                let y = self.conv(*conv, x, impls.get(*conv).unwrap_or(&ConvImpl::Regular))?;
                tap(*conv, x, &y);
                y
            }
            Op::Affine { x, scale, shift } => {
                let x = var(*x)?;
                let c = scale.len();
                let plane = x.dims.get(2..).map_or(1, |d| d.iter().product::<usize>());
                if x.dims.get(1) != Some(&c) {
                    return Err(Error::Shape(format!("BatchNorm of {c} channels on dims {:?}", x.dims)));
                }
                let mut data = x.data.clone();
                for (i, chunk) in data.chunks_mut(plane.max(1)).enumerate() {
                    let ch = i % c;
                    chunk.iter_mut().for_each(|v| *v = *v * scale[ch] + shift[ch]);
                }
                Value::new(x.dims.clone(), data)?
            }
            Op::Unary { x, f } => {
                let x = var(*x)?;
                let g = |v: f32| match *f {
                    Unary::Relu => v.max(0.0),
                    Unary::LeakyRelu(a) => {
                        if v < 0.0 {
                            a * v
                        } else {
                            v
                        }
                    }
                    Unary::Clip(lo, hi) => v.max(lo).min(hi),
                    Unary::Sigmoid => 1.0 / (1.0 + (-v).exp()),
                    Unary::Tanh => v.tanh(),
                    Unary::Identity => v,
                };
                Value::new(x.dims.clone(), x.data.iter().map(|&v| g(v)).collect())?
            }
            Op::PRelu { x, slope } => binary(var(*x)?, &src(slope)?, |v, s| if v < 0.0 { s * v } else { v })?,
            Op::Binary { a, b, op } => {
                let f = match op {
                    Bin::Add => |p: f32, q: f32| p + q,
                    Bin::Sub => |p: f32, q: f32| p - q,
                    Bin::Mul => |p: f32, q: f32| p * q,
                    Bin::Div => |p: f32, q: f32| p / q,
                };
                binary(&src(a)?, &src(b)?, f)?
            }
            Op::Pool { x, k, stride, pads, auto_pad, ceil, average, count_pad } => {
                let x = var(*x)?;
                let [_, _, h, w] = dims4(&x.dims, "pooling")?;
                let p = Pool2d::new((h, w), *k, *stride, *pads, auto_pad, *ceil)?;
                pool(x, &p, *average, *count_pad)?
            }
            Op::GlobalPool { x, max } => {
                let x = var(*x)?;
                let [n, c, h, w] = dims4(&x.dims, "global pooling")?;
                let data = x
                    .data
                    .chunks_exact((h * w).max(1))
                    .map(|p| {
                        if *max {
                            p.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                        } else {
                            (p.iter().map(|&v| v as f64).sum::<f64>() / (h * w) as f64) as f32
                        }
                    })
                    .collect();
                Value::new(vec![n, c, 1, 1], data)?
            }
            Op::Flatten { x, axis } => {
                let x = var(*x)?;
                if *axis > x.dims.len() {
                    return Err(Error::Shape(format!("Flatten axis {axis} of {} dims", x.dims.len())));
                }
                let dims = vec![x.dims[..*axis].iter().product(), x.dims[*axis..].iter().product()];
                Value::new(dims, x.data.clone())?
            }
            Op::Reshape { x, shape, allowzero } => {
                let x = var(*x)?;
                Value::new(reshape_dims(&x.dims, shape, *allowzero)?, x.data.clone())?
            }
            Op::Transpose { x, perm } => transpose(var(*x)?, perm)?,
            Op::Gemm { a, b, c, alpha, beta, ta, tb } => {
                let c = c.as_ref().map(src).transpose()?;
                gemm(&src(a)?, &src(b)?, c.as_ref(), *alpha, *beta, *ta, *tb)?
            }
            Op::MatMul { a, b } => matmul(&src(a)?, &src(b)?)?,
            Op::Softmax { x, axis, coerce } => {
                let x = var(*x)?;
                softmax(x, norm_axis(*axis, x.dims.len())?, *coerce)?
            }
            Op::Concat { xs, axis } => {
                let all: Vec<Value> = xs.iter().map(src).collect::<Result<_>>()?;
                concat(&all, *axis)?
            }
        })
    }

    /// Conv `i` alone on a batch `x`, run as `how`.
    pub fn conv_value(&self, i: usize, x: &Value, how: &ConvImpl) -> Result<Value> {
        if i >= self.convs.len() {
            return Err(Error::Param(format!("conv {i} out of range (0..{})", self.convs.len())));
        }
        self.conv(i, x, how)
    }

    /// Conv `i` on a batch, each image through the project's kernels.
    fn conv(&self, i: usize, x: &Value, how: &ConvImpl) -> Result<Value> {
        let info = &self.convs[i];
        let [n, c, h, w] = dims4(&x.dims, "Conv")?;
        let geom = info.geometry(h, w)?;
        let mut out = Vec::new();
        let mut dims = Vec::new();
        for img in x.data.chunks_exact((c * h * w).max(1)).take(n) {
            let fm = FeatureMap::new(c, h, w, img.to_vec())?;
            let y = match how {
                ConvImpl::Regular => conv2d(&fm, &info.layer.kernel, info.layer.bias.as_deref(), &geom)?,
                ConvImpl::Decoupled { merged, bias } => {
                    decoupled_forward(&fm, merged, bias.as_deref(), &geom)?
                }
            };
            dims = vec![n, y.c, y.h, y.w];
            out.extend_from_slice(&y.data);
        }
        if n == 0 {
            let k = &info.layer.kernel;
            let (ho, wo) = geom.output_size(h, w, k.kh, k.kw)?;
            dims = vec![0, k.n, ho, wo];
        }
        Value::new(dims, out)
    }
}

/// A negative axis counted from the end.
fn norm_axis(axis: i64, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank.max(1) {
        return Err(Error::Shape(format!("axis {axis} of a {rank}-D value")));
    }
    Ok(a as usize)
}

/// `Reshape`'s output dims (0: copy the input's dim unless `allowzero`; −1: inferred).
fn reshape_dims(input: &[usize], shape: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let total = numel(input)?;
    let mut dims = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            -1 if infer.is_none() => {
                infer = Some(i);
                dims.push(1);
            }
            0 if !allowzero => dims.push(
                *input.get(i).ok_or_else(|| Error::Shape(format!("Reshape copies dim {i} of {input:?}")))?,
            ),
            s if s >= 0 && (s as usize) <= crate::graph::MAX_DIM => dims.push(s as usize),
            s => return Err(Error::Shape(format!("Reshape to {shape:?}: bad dim {s}"))),
        }
    }
    let known = numel(&dims)?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(Error::Shape(format!("Reshape of {input:?} to {shape:?}")));
        }
        dims[i] = total / known;
    }
    if numel(&dims)? != total {
        return Err(Error::Shape(format!("Reshape of {input:?} ({total} values) to {dims:?}")));
    }
    Ok(dims)
}

/// `Concat` along `axis`.
fn concat(xs: &[Value], axis: i64) -> Result<Value> {
    let first = xs.first().ok_or_else(|| Error::Format("Concat of nothing".into()))?;
    let ax = norm_axis(axis, first.dims.len())?;
    let outer: usize = first.dims[..ax].iter().product();
    let mut dims = first.dims.clone();
    dims[ax] = xs.iter().map(|x| x.dims.get(ax).copied().unwrap_or(0)).sum();
    let mut data = Vec::with_capacity(numel(&dims)?);
    for o in 0..outer {
        for x in xs {
            let inner: usize = x.dims[ax..].iter().product();
            data.extend_from_slice(
                x.data
                    .get(o * inner..(o + 1) * inner)
                    .ok_or_else(|| Error::Shape("Concat inputs differ".into()))?,
            );
        }
    }
    Value::new(dims, data)
}
