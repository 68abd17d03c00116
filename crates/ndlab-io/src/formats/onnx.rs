//! `.onnx`: the few ONNX protobuf messages ndlab needs, declared with `prost` derive (no `protoc`,
//! no build script; field numbers from onnx/onnx.proto). Unknown fields are skipped by prost.
//! Every `Conv` node whose weight is an initializer is a layer; its `strides`, `pads`
//! ([top, left, bottom, right]), `dilations`, `group` and `auto_pad` are read, and a
//! `BatchNormalization` node that alone consumes the conv's output is offered for folding.

use super::onnx_scan::{scan, Located, Payload};
use super::source::{check_tensor_bytes, ByteSource};
use super::store::{decode_le, DType};
use super::{find_entry, BnRef, LayerEntry, Skipped};
use ndlab_core::error::{Error, Result};
use ndlab_core::layer::{checked_len, ConvGeometry, ConvLayer, Kernel, Padding};
use prost::Message;
use std::collections::HashMap;

/// `ModelProto` (only the fields ndlab reads).
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    /// IR version.
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    /// Producer name (e.g. `pytorch`).
    #[prost(string, tag = "2")]
    pub producer_name: String,
    /// The graph.
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

/// `GraphProto`: nodes and initializers.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    /// Nodes in topological order.
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    /// Graph name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Constant tensors (weights).
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
}

/// `NodeProto`: one operator.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    /// Input value names.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name (may be empty).
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator, e.g. `Conv`.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

/// `AttributeProto` (scalar, string and list forms).
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// FLOAT value.
    #[prost(float, tag = "2")]
    pub f: f32,
    /// INT value.
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// STRING value.
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    /// INTS value.
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// Attribute type (AttributeProto.AttributeType).
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `StringStringEntryProto` (external data location entries).
#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    /// Key, e.g. `location`.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `TensorProto`: an initializer.
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    /// Dimensions.
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    /// TensorProto.DataType (1 FLOAT, 10 FLOAT16, 11 DOUBLE, 16 BFLOAT16...).
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    /// FLOAT values (when not in `raw_data`).
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    /// Name.
    #[prost(string, tag = "8")]
    pub name: String,
    /// Little-endian raw bytes.
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    /// DOUBLE values.
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    /// External data location entries.
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    /// 0 DEFAULT, 1 EXTERNAL.
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

/// Does this scan as an ONNX model with a graph? `.onnx` files are always tried.
pub fn looks_like(src: &dyn ByteSource, file_name: &str) -> bool {
    file_name.to_ascii_lowercase().ends_with(".onnx")
        || scan(src).is_ok_and(|m| m.ir_version > 0 && m.graph.is_some_and(|g| !g.node.is_empty()))
}

/// Scans the model: its graph without bulk data, and where each initializer's data is.
fn graph(src: &dyn ByteSource) -> Result<(GraphProto, HashMap<String, Located>)> {
    let m = scan(src)?;
    let g = m.graph.ok_or_else(|| Error::Format("ONNX model has no graph".into()))?;
    Ok((g, m.data))
}

/// Attribute `name` of a node.
fn attr<'a>(n: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    n.attribute.iter().find(|a| a.name == name)
}

/// An INTS attribute as two non-negative values (or the default).
fn pair(n: &NodeProto, name: &str, default: usize, min: i64) -> Result<(usize, usize)> {
    match attr(n, name) {
        None => Ok((default, default)),
        Some(a) => match a.ints.as_slice() {
            [x, y] if *x >= min && *y >= min && *x <= 1 << 20 && *y <= 1 << 20 => {
                Ok((*x as usize, *y as usize))
            }
            v => Err(Error::Format(format!(
                "Conv '{}': {name} {v:?} is not two values ≥ {min} (only 2-D convs)",
                n.name
            ))),
        },
    }
}

/// `pads` [top, left, bottom, right].
fn pads(n: &NodeProto) -> Result<Padding> {
    match attr(n, "pads") {
        None => Ok(Padding::default()),
        Some(a) => match a.ints.as_slice() {
            [t, l, b, r] if [*t, *l, *b, *r].iter().all(|&v| (0..=1 << 20).contains(&v)) => {
                Ok(Padding { top: *t as usize, left: *l as usize, bottom: *b as usize, right: *r as usize })
            }
            v => Err(Error::Format(format!("Conv '{}': pads {v:?} is not 4 non-negative values", n.name))),
        },
    }
}

/// The geometry of a Conv node, its `auto_pad` (if not NOTSET) and a note on how SAME was resolved.
fn geometry(n: &NodeProto, k: (usize, usize)) -> Result<(ConvGeometry, Option<String>, Option<String>)> {
    let stride = pair(n, "strides", 1, 1)?;
    let dilation = pair(n, "dilations", 1, 1)?;
    let groups = match attr(n, "group") {
        None => 1,
        Some(a) if (1..=1 << 20).contains(&a.i) => a.i as usize,
        Some(a) => return Err(Error::Format(format!("Conv '{}': group {} is not ≥ 1", n.name, a.i))),
    };
    let auto = attr(n, "auto_pad").map(|a| String::from_utf8_lossy(&a.s).into_owned()).unwrap_or_default();
    let mut g = ConvGeometry { stride, padding: pads(n)?, dilation, groups };
    let (auto_pad, note) = match auto.as_str() {
        "" | "NOTSET" => (None, None),
        "VALID" => {
            g.padding = Padding::default();
            (Some(auto), None)
        }
        "SAME_UPPER" | "SAME_LOWER" => {
            let upper = auto == "SAME_UPPER";
            let ph = same_total(k.0, stride.0, dilation.0);
            let pw = same_total(k.1, stride.1, dilation.1);
            let split = |t: usize| if upper { (t / 2, t - t / 2) } else { (t - t / 2, t / 2) };
            let ((top, bottom), (left, right)) = (split(ph), split(pw));
            g.padding = Padding { top, bottom, left, right };
            let note = format!("{auto} resolved for an input size divisible by the stride: pads {top},{left},{bottom},{right}");
            (Some(auto), Some(note))
        }
        other => return Err(Error::Format(format!("Conv '{}': unknown auto_pad '{other}'", n.name))),
    };
    Ok((g, auto_pad, note))
}

/// Total SAME padding for an input size that is a multiple of the stride.
fn same_total(k: usize, s: usize, d: usize) -> usize {
    (d * (k.max(1) - 1) + 1).saturating_sub(s)
}

/// An initializer by name.
fn init<'a>(g: &'a GraphProto, name: &str) -> Option<&'a TensorProto> {
    g.initializer.iter().find(|t| t.name == name)
}

/// The shape of a 4-D FLOAT-ish initializer, or why it is not a conv weight.
fn weight_shape(t: &TensorProto) -> std::result::Result<[usize; 4], String> {
    if t.data_location == 1 || !t.external_data.is_empty() {
        let loc =
            t.external_data.iter().find(|e| e.key == "location").map(|e| e.value.as_str()).unwrap_or("?");
        return Err(format!(
            "weights are stored in an external data file ('{loc}'), which is not read: re-save with onnx.save(model, path, save_as_external_data=False)"
        ));
    }
    dtype_name(t.data_type)?;
    let dims: Vec<usize> = t.dims.iter().map(|&d| usize::try_from(d).unwrap_or(0)).collect();
    if dims.len() != 4 {
        return Err(format!("{}-D weight {:?} (only 2-D convs with 4-D weights)", dims.len(), t.dims));
    }
    checked_len(&dims).map_err(|e| e.to_string())?;
    Ok([dims[0], dims[1], dims[2], dims[3]])
}

/// The name of a supported ONNX data type.
fn dtype_name(dt: i32) -> std::result::Result<&'static str, String> {
    match dt {
        1 => Ok("float32"),
        10 => Ok("float16"),
        11 => Ok("float64"),
        16 => Ok("bfloat16"),
        other => Err(format!("unsupported ONNX data type {other} (only float32/16, bfloat16, float64)")),
    }
}

/// The BatchNormalization node that alone consumes `out`, with initializer parameters.
fn find_bn(g: &GraphProto, out: &str) -> Option<BnRef> {
    let users: Vec<&NodeProto> = g.node.iter().filter(|n| n.input.iter().any(|i| i == out)).collect();
    let [bn] = users.as_slice() else { return None };
    if bn.op_type != "BatchNormalization" || bn.input.len() < 5 || bn.input[0] != out {
        return None;
    }
    if !bn.input[1..5].iter().all(|i| init(g, i).is_some()) {
        return None;
    }
    let eps = attr(bn, "epsilon").map(|a| a.f).unwrap_or(1e-5);
    let name =
        if bn.name.is_empty() { bn.output.first().cloned().unwrap_or_default() } else { bn.name.clone() };
    Some(BnRef {
        name,
        gamma: bn.input[1].clone(),
        beta: bn.input[2].clone(),
        mean: bn.input[3].clone(),
        var: bn.input[4].clone(),
        eps,
    })
}

/// A display name for a node: its name, else its first output.
fn node_name(n: &NodeProto, i: usize) -> String {
    if !n.name.is_empty() {
        n.name.clone()
    } else {
        n.output.first().cloned().unwrap_or_else(|| format!("Conv#{i}"))
    }
}

/// One Conv node as a layer entry, or why not.
fn entry(g: &GraphProto, n: &NodeProto, i: usize) -> std::result::Result<LayerEntry, String> {
    let wname = n.input.get(1).ok_or("Conv node without a weight input")?;
    let w = init(g, wname)
        .ok_or_else(|| format!("weight '{wname}' is not an initializer (computed at run time)"))?;
    let shape = weight_shape(w)?;
    let (geometry, auto_pad, note) = geometry(n, (shape[2], shape[3])).map_err(|e| e.to_string())?;
    let bias = n.input.get(2).filter(|b| !b.is_empty()).cloned();
    if let Some(b) = &bias {
        if init(g, b).is_none() {
            return Err(format!("bias '{b}' is not an initializer"));
        }
    }
    let bn = n.output.first().and_then(|o| find_bn(g, o));
    Ok(LayerEntry {
        name: node_name(n, i),
        weight: wname.clone(),
        shape,
        dtype: dtype_name(w.data_type).unwrap_or("?").to_string(),
        geometry: Some(geometry),
        auto_pad,
        bias,
        bn,
        note,
    })
}

/// Every Conv node (layers) and every Conv that cannot be used (skipped).
fn entries(g: &GraphProto) -> (Vec<LayerEntry>, Vec<Skipped>) {
    let (mut layers, mut skipped) = (Vec::new(), Vec::new());
    for (i, n) in g.node.iter().enumerate().filter(|(_, n)| n.op_type == "Conv") {
        match entry(g, n, i) {
            Ok(e) => layers.push(e),
            Err(reason) => skipped.push(Skipped { name: node_name(n, i), reason }),
        }
    }
    (layers, skipped)
}

/// Lists the Conv nodes of a model.
pub(crate) fn list(src: &dyn ByteSource) -> Result<(Vec<LayerEntry>, Vec<Skipped>)> {
    Ok(entries(&graph(src)?.0))
}

/// The graph and where its data is, as [`values`] needs them.
struct Model<'a> {
    src: &'a dyn ByteSource,
    g: GraphProto,
    data: HashMap<String, Located>,
}

/// An initializer's values as f32 (`raw_data`, `float_data` or `double_data`), length checked.
fn values(m: &Model, t: &TensorProto, count: usize) -> Result<Vec<f32>> {
    let name = &t.name;
    let d = match m.data.get(name) {
        Some(l) => Some(located(m.src, t, l, count)?),
        None => None,
    };
    let v: Vec<f32> = if let Some(v) = d {
        v
    } else if !t.raw_data.is_empty() {
        let d = match t.data_type {
            1 => super::store::DType::F32,
            10 => super::store::DType::F16,
            11 => super::store::DType::F64,
            16 => super::store::DType::BF16,
            other => {
                return Err(Error::Format(format!("initializer '{name}': unsupported data type {other}")))
            }
        };
        super::store::decode_le(&t.raw_data, d, count, &format!("initializer '{name}'"))?
    } else if !t.float_data.is_empty() {
        t.float_data.clone()
    } else if !t.double_data.is_empty() {
        t.double_data.iter().map(|&x| x as f32).collect()
    } else {
        return Err(Error::Format(format!(
            "initializer '{name}' holds no data (raw_data, float_data and double_data are empty)"
        )));
    };
    if v.len() != count {
        return Err(Error::Format(format!(
            "initializer '{name}' holds {} values, its dims need {count}",
            v.len()
        )));
    }
    Ok(v)
}

/// Reads a located payload (size checked against the limit before reading).
fn located(src: &dyn ByteSource, t: &TensorProto, l: &Located, count: usize) -> Result<Vec<f32>> {
    let name = &t.name;
    let d = match (l.payload, t.data_type) {
        (Payload::Float, _) | (Payload::Raw, 1) => DType::F32,
        (Payload::Double, _) | (Payload::Raw, 11) => DType::F64,
        (Payload::Raw, 10) => DType::F16,
        (Payload::Raw, 16) => DType::BF16,
        (_, other) => {
            return Err(Error::Format(format!("initializer '{name}': unsupported data type {other}")))
        }
    };
    check_tensor_bytes(name, l.len)?;
    let bytes = src.read_at(l.offset, l.len as usize)?;
    if l.payload != Payload::Raw && bytes.len() != count * d.size() {
        return Err(Error::Format(format!(
            "initializer '{name}' holds {} values, its dims need {count}",
            bytes.len() / d.size()
        )));
    }
    decode_le(&bytes, d, count, &format!("initializer '{name}'"))
}

/// A 1-D initializer of length `n`, finite.
fn vector(m: &Model, name: &str, n: usize) -> Result<Vec<f32>> {
    let t = init(&m.g, name).ok_or_else(|| Error::Format(format!("initializer '{name}' not found")))?;
    let v = values(m, t, n)?;
    if v.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFinite(format!("initializer '{name}' holds NaN or infinity")));
    }
    Ok(v)
}

/// Loads the Conv layer `layer_name` (node name, first output or weight name).
pub(crate) fn load(src: &dyn ByteSource, layer_name: &str, fold_bn: bool) -> Result<ConvLayer> {
    let (g, data) = graph(src)?;
    let m = Model { src, g, data };
    let (layers, skipped) = entries(&m.g);
    if let Some(s) = skipped.iter().find(|s| s.name == layer_name) {
        return Err(Error::Format(format!("Conv '{}': {}", s.name, s.reason)));
    }
    let e = find_entry(&layers, layer_name)?;
    let [n, c, kh, kw] = e.shape;
    let w = init(&m.g, &e.weight)
        .ok_or_else(|| Error::Format(format!("initializer '{}' not found", e.weight)))?;
    let kernel =
        Kernel::new(n, c, kh, kw, values(&m, w, checked_len(&e.shape)?)?).map_err(|err| match err {
            Error::NonFinite(m) => Error::NonFinite(format!("initializer '{}': {m}", e.weight)),
            other => other,
        })?;
    let bias = match &e.bias {
        Some(b) => Some(vector(&m, b, n)?),
        None => None,
    };
    let geometry = e.geometry.unwrap_or_default();
    let (kernel, bias) = match (&e.bn, fold_bn) {
        (Some(r), true) => super::bn::fold(kernel, bias, r, |nm| vector(&m, nm, n))?,
        (None, true) => return Err(Error::Param(format!("layer '{layer_name}' has no BatchNorm to fold"))),
        _ => (kernel, bias),
    };
    ConvLayer::new(kernel, bias, geometry)
}
