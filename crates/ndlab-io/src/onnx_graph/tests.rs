//! Unit tests on hand-made messages: the wire walker's refusals, both encodings of repeated
//! scalars, untyped attributes, the limits (refused before allocating), and the node encoder read
//! back. The whole-file behaviour is tested in `tests/onnx_graph.rs` against the onnx package.

use super::proto::{AttributeProto, NodeProto};
use super::read::{self, Budget, Detail};
use super::wire::{fields, put_message, put_varint};
use super::*;
use crate::formats::onnx::TensorProto;
use ndlab_core::graph::{Attr, TensorData, MAX_DIM, MAX_NODES};
use prost::Message;

fn varint_field(number: u32, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, u64::from(number) << 3);
    put_varint(&mut out, v);
    out
}

fn bytes_field(number: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_message(&mut out, number, body);
    out
}

fn opset_import(version: u64) -> Vec<u8> {
    bytes_field(8, &[bytes_field(1, b""), varint_field(2, version)].concat())
}

/// A model: IR version 8, opset 13, a graph of `graph` fields.
fn model(graph: &[Vec<u8>]) -> Vec<u8> {
    [varint_field(1, 8), opset_import(13), bytes_field(7, &graph.concat())].concat()
}

fn value_info(name: &str) -> Vec<u8> {
    bytes_field(1, name.as_bytes())
}

fn relu(name: &str, input: &str, output: &str) -> Vec<u8> {
    let n = NodeProto {
        input: vec![input.into()],
        output: vec![output.into()],
        name: name.into(),
        op_type: "Relu".into(),
        attribute: vec![],
    };
    bytes_field(1, &n.encode_to_vec())
}

fn err(r: Result<impl std::fmt::Debug>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn the_wire_walker_refuses_what_is_not_protobuf() {
    let walk = |b: &[u8]| fields(b, "a test").collect::<Result<Vec<_>>>().map(|v| v.len());
    assert_eq!(walk(&[0x08, 0x96, 0x01, 0x12, 0x01, b'a']).unwrap(), 2);
    assert!(
        err(walk(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02])).contains("overflows")
    );
    assert!(err(walk(&[0x08, 0xff])).contains("runs past the end"));
    assert!(err(walk(&[0x0b])).contains("wire type 3"), "groups are refused");
    assert!(err(walk(&[0x00, 0x00])).contains("field number 0"));
    assert!(err(walk(&[0x12, 0x05, b'a'])).contains("declares 5 bytes, only 1 are left"));
    assert!(err(walk(&[0x0d, 0x00, 0x00])).contains("runs past the end"));
    // A walk stops at its first error.
    assert_eq!(fields(&[0x0b, 0x08, 0x01], "a test").count(), 1);
    // A packed run that ends inside a number.
    let f = fields(&[0x0a, 0x02, 0x01, 0x81], "a test").next().unwrap().unwrap();
    assert!(f.varint_count("a test").is_err());
    let f = fields(&[0x0a, 0x03, 0x01, 0x81, 0x01], "a test").next().unwrap().unwrap();
    assert_eq!(f.varint_count("a test").unwrap(), 2);
    assert!(f.fixed_count(4, "a test").is_err(), "3 bytes are not 32-bit values");
}

/// The attribute `a` of a node read from its encoding.
fn attr_of(attribute: Vec<u8>) -> Result<Attr> {
    let node = [bytes_field(2, b"y"), bytes_field(4, b"Op"), bytes_field(5, &attribute)].concat();
    let n = read::node(&node, 0, Detail::Full, &mut Budget::new(1 << 20))?;
    Ok(n.attrs["a"].clone())
}

#[test]
fn repeated_scalars_are_read_packed_and_unpacked_and_untyped_attributes_by_their_value() {
    let name = bytes_field(1, b"a");
    // proto2 (onnx): one field per value; proto3 (prost): one packed field.
    let unpacked =
        [name.clone(), varint_field(8, 3), varint_field(8, u64::MAX), varint_field(20, 7)].concat();
    assert_eq!(attr_of(unpacked).unwrap(), Attr::Ints(vec![3, -1]));
    let mut packed = Vec::new();
    put_varint(&mut packed, 3);
    put_varint(&mut packed, u64::MAX);
    assert_eq!(attr_of([name.clone(), bytes_field(8, &packed)].concat()).unwrap(), Attr::Ints(vec![3, -1]));
    // IR version 1: no type field.
    assert_eq!(attr_of([name.clone(), varint_field(3, 5)].concat()).unwrap(), Attr::Int(5));
    let float = [name.clone(), vec![0x15], 1.5f32.to_le_bytes().to_vec()].concat();
    assert_eq!(attr_of(float).unwrap(), Attr::Float(1.5));
    assert_eq!(attr_of([name.clone(), bytes_field(4, b"SAME")].concat()).unwrap(), Attr::Str("SAME".into()));
    assert!(err(attr_of(name.clone())).contains("neither a type nor a value"));
    // A typed INT without its value is 0 (proto3 writers leave defaults out).
    assert_eq!(attr_of([name.clone(), varint_field(20, 2)].concat()).unwrap(), Attr::Int(0));
    assert!(err(attr_of([name.clone(), varint_field(20, 8)].concat())).contains("of type STRINGS"));
    assert!(
        err(attr_of([name.clone(), bytes_field(4, &[0xff]), varint_field(20, 3)].concat())).contains("UTF-8")
    );
    assert_eq!(attr_of([name, varint_field(8, 1)].concat()).unwrap(), Attr::Ints(vec![1]));
    assert!(err(attr_of(varint_field(3, 1))).contains("an attribute without a name"));
}

#[test]
fn nodes_are_refused_for_their_domain_op_and_outputs() {
    let read = |fields: &[Vec<u8>]| read::node(&fields.concat(), 4, Detail::Full, &mut Budget::new(1 << 20));
    let ok = read(&[bytes_field(2, b"y"), bytes_field(4, b"Relu"), bytes_field(7, b"ai.onnx")]).unwrap();
    assert_eq!(ok.label(), "y");
    let ms = err(read(&[bytes_field(2, b"y"), bytes_field(4, b"Gelu"), bytes_field(7, b"com.microsoft")]));
    assert!(ms.contains("node 'y' is operator 'Gelu' of domain 'com.microsoft'"), "{ms}");
    assert!(err(read(&[bytes_field(2, b"y")])).contains("node #4 ('y') has no op_type"));
    assert!(err(read(&[bytes_field(2, b""), bytes_field(4, b"Relu")])).contains("Relu '#4' has no output"));
    let attr = bytes_field(5, &[bytes_field(1, b"a"), varint_field(3, 1)].concat());
    let twice = err(read(&[bytes_field(2, b"y"), bytes_field(4, b"Relu"), attr.clone(), attr.clone()]));
    assert!(twice.contains("attribute 'a' is given twice"), "{twice}");
    let many = vec![attr; MAX_ATTRIBUTES + 1];
    assert!(err(read(&[vec![bytes_field(4, b"Relu")], many].concat())).contains("more than 1024 attributes"));
}

fn tensor(dims: &[i64], data_type: i32, f: impl FnOnce(&mut TensorProto)) -> Vec<u8> {
    let mut t = TensorProto { dims: dims.to_vec(), data_type, name: "t".into(), ..Default::default() };
    f(&mut t);
    t.encode_to_vec()
}

#[test]
fn tensor_sizes_are_refused_before_anything_is_allocated() {
    let decode = |b: &[u8]| tensor::decode(b, None, &mut Budget::new(MAX_TOTAL_TENSOR_BYTES)).map(|(_, t)| t);
    let big = MAX_DIM as i64;
    let e = err(decode(&tensor(&[big, big], 1, |_| {})));
    assert!(
        e.contains("initializer 't' of dims [16777216, 16777216] needs") && e.contains("256 MB limit"),
        "{e}"
    );
    assert!(
        err(decode(&tensor(&[big + 1], 1, |_| {}))).contains("a dimension of 16777217, more than 16777216")
    );
    assert!(err(decode(&tensor(&[-1], 1, |_| {}))).contains("negative dimension"));
    assert!(err(decode(&tensor(&[1; 65], 1, |_| {}))).contains("65 dimensions, more than 64"));
    assert_eq!(
        decode(&tensor(&[2], 1, |t| t.raw_data = vec![0; 8])).unwrap().data,
        TensorData::F32(vec![0.0; 2])
    );
    let seg = [tensor(&[1], 1, |t| t.float_data = vec![1.0]), bytes_field(3, &[])].concat();
    assert!(err(decode(&seg)).contains("segment"));
    let ext = tensor(&[1], 1, |t| t.data_location = 1);
    assert!(err(decode(&ext)).contains("initializer 't': external data is not supported"));
    // The budget of a whole model: two tensors of 40 bytes in 64.
    let init = |name: &str| {
        let t = TensorProto {
            dims: vec![10],
            data_type: 1,
            name: name.into(),
            raw_data: vec![0; 40],
            ..Default::default()
        };
        bytes_field(5, &t.encode_to_vec())
    };
    let m = model(&[init("a"), init("b"), relu("r", "a", "y"), bytes_field(12, &value_info("y"))]);
    assert!(read_model_within(&m, 1000).is_ok());
    let e = err(read_model_within(&m, 64));
    assert!(e.contains("initializer 'b': the model's tensors and attributes need more than 0 MB"), "{e}");
}

#[test]
fn typed_fields_hold_the_values_of_their_type() {
    let decode = |b: &[u8]| tensor::decode(b, None, &mut Budget::new(1 << 20)).map(|(_, t)| t.data);
    // int32_data holds float16 bits, and int8 as sign-extended int32.
    let f16 = tensor(&[2], 10, |_| {});
    let f16 = [f16, varint_field(5, 0x3c00), varint_field(5, 0xc000)].concat();
    assert_eq!(decode(&f16).unwrap(), TensorData::F32(vec![1.0, -2.0]));
    let i8s = [tensor(&[2], 3, |_| {}), varint_field(5, (-5i64) as u64), varint_field(5, 7)].concat();
    assert_eq!(decode(&i8s).unwrap(), TensorData::I64(vec![-5, 7]));
    // A count that does not match, in a field of another type.
    let wrong = tensor(&[2], 7, |t| t.float_data = vec![1.0, 2.0]);
    assert!(err(decode(&wrong)).contains("holds 0 values but its dims [2] need 2 (INT64)"));
    assert!(err(decode(&tensor(&[1], 0, |_| {}))).contains("data type UNDEFINED (0)"));
}

#[test]
fn opsets_graph_counts_and_inputs() {
    let g = [relu("r", "x", "y"), bytes_field(11, &value_info("x")), bytes_field(12, &value_info("y"))];
    assert_eq!(opset(&model(&g)).unwrap(), 13);
    let two = [varint_field(1, 8), opset_import(13), opset_import(11), bytes_field(7, &g.concat())].concat();
    assert!(err(opset(&two)).contains("two versions of the default ONNX opset (13 and 11)"));
    let old = [varint_field(1, 2), bytes_field(7, &g.concat())].concat();
    assert_eq!(read_model(&old).unwrap().opset, 1, "IR version 2 had no opset imports");
    let twice = [model(&g), bytes_field(7, &g.concat())].concat();
    assert!(err(read_model(&twice)).contains("two graph fields"));
    let many = vec![bytes_field(1, &[]); MAX_NODES + 1];
    assert!(err(read_model(&model(&many))).contains("more than 100000 nodes"));
    // An input that is also an initializer is not a graph input.
    let w = TensorProto {
        dims: vec![],
        data_type: 1,
        name: "w".into(),
        float_data: vec![2.0],
        ..Default::default()
    };
    let g2 =
        [g.to_vec(), vec![bytes_field(5, &w.encode_to_vec()), bytes_field(11, &value_info("w"))]].concat();
    let m = read_model(&model(&g2)).unwrap();
    assert_eq!(m.graph.inputs.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["x"]);
    assert_eq!(m.graph.initializers["w"].dims, Vec::<usize>::new());
}

#[test]
fn encoded_nodes_read_back_with_every_attribute_kind() {
    let attrs = [
        ("f0", Attr::Float(0.0)),
        ("f", Attr::Float(-2.5)),
        ("i0", Attr::Int(0)),
        ("i", Attr::Int(-7)),
        ("s0", Attr::Str(String::new())),
        ("s", Attr::Str("NOTSET".into())),
        ("fs", Attr::Floats(vec![1.0, f32::MIN_POSITIVE])),
        ("is0", Attr::Ints(vec![])),
        ("is", Attr::Ints(vec![i64::MIN, 0, i64::MAX])),
        ("t", Attr::Tensor(Tensor::i64(vec![], vec![-3]).unwrap())),
        ("tf", Attr::Tensor(Tensor::f32(vec![2, 1], vec![0.5, -0.0]).unwrap())),
    ];
    let n = Node {
        name: String::new(),
        op: "Constant".into(),
        inputs: vec!["".into(), "a".into()],
        outputs: vec!["out".into(), "".into()],
        attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    };
    let body = write::encode_node(&n).encode_to_vec();
    let back = read::node(&body, 0, Detail::Full, &mut Budget::new(1 << 20)).unwrap();
    assert_eq!(back, n);
    // Every attribute is typed.
    let p = NodeProto::decode(body.as_slice()).unwrap();
    assert!(p.attribute.iter().all(|a: &AttributeProto| a.r#type != 0));
}

#[test]
fn a_file_without_initializers_gets_them_at_the_graph_end() {
    let g = [relu("r", "x", "y"), bytes_field(11, &value_info("x")), bytes_field(12, &value_info("y"))];
    let b = model(&g);
    let edit = GraphEdit {
        add_initializers: vec![("w".into(), Tensor::f32(vec![1], vec![1.0]).unwrap())],
        ..Default::default()
    };
    let out = rewrite(&b, &edit).unwrap();
    let m = read_model(&out).unwrap();
    assert_eq!(m.graph.initializers["w"].data, TensorData::F32(vec![1.0]));
    let graph = read::graph_parts(read::model(&out).unwrap().graph.unwrap()).unwrap();
    assert_eq!(graph.initializers.len(), 1);
    assert_eq!(rewrite(&b, &GraphEdit::default()).unwrap(), b);
}
