//! The ONNX messages the writer encodes with `prost` (field numbers from onnx/onnx.proto): a node
//! with its attributes, and a graph input's type. Tensors reuse
//! [`crate::formats::onnx::TensorProto`]. The `NodeProto` and `AttributeProto` of
//! `formats::onnx` are the scanner's read-side view (and built field by field in its tests), so the
//! writer's fuller attribute (with `t` and `floats`) is declared here.
//!
//! Scalars that ONNX (proto2) marks as present are `optional`, so that an attribute of value 0 is
//! still written (prost leaves out proto3 defaults otherwise).

use crate::formats::onnx::TensorProto;
use prost::Message;

/// `NodeProto` as written: the default domain, no doc string.
#[derive(Clone, PartialEq, Message)]
pub(super) struct NodeProto {
    /// Input value names.
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    /// Output value names.
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    /// Node name.
    #[prost(string, tag = "3")]
    pub name: String,
    /// Operator.
    #[prost(string, tag = "4")]
    pub op_type: String,
    /// Attributes.
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
}

/// `AttributeProto`: the value forms ndlab's IR has.
#[derive(Clone, PartialEq, Message)]
pub(super) struct AttributeProto {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// FLOAT.
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    /// INT.
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    /// STRING.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    /// TENSOR.
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    /// FLOATS.
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    /// INTS.
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    /// AttributeProto.AttributeType.
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `ValueInfoProto` of a tensor: name and type.
#[derive(Clone, PartialEq, Message)]
pub(super) struct ValueInfoProto {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Type.
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `TypeProto` (only its `tensor_type` case).
#[derive(Clone, PartialEq, Message)]
pub(super) struct TypeProto {
    /// `TypeProto.Tensor`.
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

/// `TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
pub(super) struct TensorTypeProto {
    /// TensorProto.DataType.
    #[prost(int32, optional, tag = "1")]
    pub elem_type: Option<i32>,
    /// Shape.
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `TensorShapeProto`.
#[derive(Clone, PartialEq, Message)]
pub(super) struct TensorShapeProto {
    /// Dimensions.
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension` (a known size).
#[derive(Clone, PartialEq, Message)]
pub(super) struct Dimension {
    /// `dim_value`.
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
}
