"""Generates the ONNX graph corpus of tests/corpus/graphs (run from anywhere: python3 make_graphs.py).

Needs numpy and onnx (tests/requirements.txt). Writes:
  *.onnx          small good and hostile models, made with onnx.helper (a few bytes are laid by hand:
                  unknown fields, a truncated and a random file)
  expected.json   per file: the stage that must refuse it and a substring of the message, or "ok"
  described.json  what the onnx package itself reads in the good files and in tests/data/mtcnn_pnet.onnx
                  (opset, inputs with symbolic dims as null, nodes in file order with attributes,
                  initializers with dims, kind and values): the independent oracle of the Rust reader
                  (crates/ndlab-io/tests/onnx_graph.rs)
"""
import json, os
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto, AttributeProto

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
rng = np.random.default_rng(11)
expected, described = {}, {}


def save(name, data):
    if isinstance(data, onnx.ModelProto):
        data = data.SerializeToString()
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)
    return data


def model(nodes, inputs, outputs, inits=(), opset=13, ir=8, **kw):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, producer_name="ndlab-corpus", opset_imports=[helper.make_opsetid("", opset)], **kw)
    m.ir_version = ir
    return m


def vi(name, dims, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, dims)


def f32(name, a, raw=True):
    a = np.asarray(a, dtype=np.float32)
    return helper.make_tensor(name, TensorProto.FLOAT, a.shape, a.tobytes() if raw else a.flatten().tolist(), raw=raw)


def bad(name, error, m, stage="read_graph"):
    save(name, m)
    expected[name] = {"stage": stage, "error": error}


def planner(name, note, m):
    """read_graph reads it; the planner (a later stage) refuses it."""
    save(name, m)
    expected[name] = {"stage": "planner", "read_graph": "ok", "note": note}


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def field(number, wire, payload):
    key = varint(number << 3 | wire)
    return key + (varint(len(payload)) + payload if wire == 2 else payload)


# ---------------------------------------------------------------- good files
x = vi("x", ["N", 2, 5, 5])
W = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
B = rng.standard_normal(3).astype(np.float32)

# IR version 3: every initializer is also a graph input; unknown fields at the top and in the graph;
# metadata, doc strings and value_info, all to be kept by the writer.
conv = helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3])
relu = helper.make_node("Relu", ["c"], ["y"], name="relu")
g = helper.make_graph([conv, relu], "ir3", [x, vi("W", [3, 2, 3, 3]), vi("B", [3])], [vi("y", ["N", 3, 5, 5])],
                      [f32("W", W), f32("B", B, raw=False)], doc_string="a graph doc string")
g.value_info.append(vi("c", ["N", 3, 5, 5]))
m = helper.make_model(g, producer_name="ndlab-corpus", producer_version="1", doc_string="a model doc string",
                      opset_imports=[helper.make_opsetid("", 8)])
m.ir_version = 3
m.model_version = 42
helper.set_model_props(m, {"author": "ndlab", "purpose": "splice test"})
onnx.checker.check_model(m, full_check=True)
graph_bytes = m.graph.SerializeToString() + field(99, 0, varint(7))
m.ClearField("graph")
data = m.SerializeToString() + field(7, 2, graph_bytes) + field(98, 2, b"unknown top-level bytes")
save("ir3_conv.onnx", data)
m3 = onnx.load_from_string(data)
onnx.checker.check_model(m3, full_check=True)
expected["ir3_conv.onnx"] = {"read_graph": "ok"}

# Every data type the reader takes, in raw_data and in the typed fields; Constant nodes; attributes
# of every type the IR has.
def typed(name, dt, dims, vals):
    return helper.make_tensor(name, dt, dims, vals)

def raw(name, dt, a):
    return helper.make_tensor(name, dt, a.shape, np.ascontiguousarray(a).tobytes(), raw=True)

inits = [
    f32("f32_raw", rng.standard_normal((2, 3))),
    f32("f32_typed", rng.standard_normal((3,)), raw=False),
    f32("f32_scalar", np.float32(2.5)),
    f32("f32_empty", np.zeros((0, 4), np.float32)),
    raw("f16_raw", TensorProto.FLOAT16, np.array([1.5, -2.0, 65504.0, 6e-8], np.float16)),
    typed("f16_typed", TensorProto.FLOAT16, [3], np.array([0.5, -0.25, 1000.0], np.float16)),
    raw("bf16_raw", TensorProto.BFLOAT16, (np.array([1.0, -3.5, 0.15625], np.float32).view(np.uint32) >> 16).astype(np.uint16)),
    raw("f64_raw", TensorProto.DOUBLE, np.array([1.0 / 3.0, -1e30, 1e-40], np.float64)),
    typed("f64_typed", TensorProto.DOUBLE, [2], [0.1, 2.0 ** 40]),
    raw("i64_raw", TensorProto.INT64, np.array([[1, -1], [2 ** 40, -(2 ** 62)]], np.int64)),
    typed("i64_typed", TensorProto.INT64, [3], [0, -5, 2 ** 33]),
    typed("i32_typed", TensorProto.INT32, [3], [-2 ** 31, 7, 2 ** 31 - 1]),
    raw("i32_raw", TensorProto.INT32, np.array([-3, 4], np.int32)),
    raw("i16_raw", TensorProto.INT16, np.array([-32768, 32767], np.int16)),
    typed("u16_typed", TensorProto.UINT16, [2], [0, 65535]),
    raw("i8_raw", TensorProto.INT8, np.array([-128, 127, -1], np.int8)),
    typed("i8_typed", TensorProto.INT8, [2], [-7, 100]),
    raw("u8_raw", TensorProto.UINT8, np.array([0, 255, 17], np.uint8)),
    raw("bool_raw", TensorProto.BOOL, np.array([True, False, True])),
    typed("bool_typed", TensorProto.BOOL, [2], [False, True]),
]
nodes = [
    helper.make_node("LeakyRelu", ["x4"], ["a"], name="leaky", alpha=0.25),
    helper.make_node("DepthToSpace", ["a"], ["b"], name="d2s", blocksize=2, mode="CRD"),
    helper.make_node("Transpose", ["b"], ["y4"], name="t", perm=[0, 1, 3, 2]),
    helper.make_node("Constant", [], ["shape"], name="const_shape",
                     value=helper.make_tensor("", TensorProto.INT64, [2], [1, -1])),
    helper.make_node("Constant", [], ["cf16"], value=raw("", TensorProto.FLOAT16, np.array([[0.5, 2.0]], np.float16))),
    helper.make_node("Constant", [], ["cfloats"], name="const_floats", value_floats=[0.5, -1.5]),
    helper.make_node("Constant", [], ["cfloat"], name="const_float", value_float=3.0),
    helper.make_node("Reshape", ["y4", "shape"], ["flat"], name="reshape"),
]
m = model(nodes, [vi("x4", ["batch", 4, 2, 2])], [vi("flat", [None, None])], inits)
onnx.checker.check_model(m)
save("all_types.onnx", m)
expected["all_types.onnx"] = {"read_graph": "ok"}

# ---------------------------------------------------------------- hostile files
def relu(i, o, name=None):
    return helper.make_node("Relu", [i], [o], name=name or o)

y = vi("y", ["N", 3, 5, 5])
bad("cycle.onnx", "cycle",
    model([helper.make_node("Add", ["x", "b"], ["a"], name="add"), relu("a", "b"), relu("a", "y")], [x], [y]))
bad("missing_initializer.onnx", "reads 'W', which no earlier node, input or initializer makes",
    model([helper.make_node("Conv", ["x", "W"], ["y"], name="conv")], [x], [y]))
planner("conv_weight_from_node.onnx", "the Conv's weight is made at run time (Identity of an initializer)",
        model([helper.make_node("Identity", ["W0"], ["W"], name="weight_copy"),
               helper.make_node("Conv", ["x", "W"], ["y"], name="conv", pads=[1, 1, 1, 1])], [x], [y],
              [f32("W0", W)]))
planner("unsupported_op.onnx", "NonMaxSuppression is standard ONNX, but no operator ndlab runs",
        model([helper.make_node("NonMaxSuppression", ["boxes", "scores"], ["sel"], name="nms")],
              [vi("boxes", [1, 4, 4]), vi("scores", [1, 1, 4])], [vi("sel", [None, 3], TensorProto.INT64)]))
bad("duplicate_output.onnx", "the value 'y' is made by two nodes",
    model([relu("x", "y", "first"), relu("x", "y", "second")], [x], [y]))
bad("duplicate_initializer.onnx", "the initializer 'W' is given twice",
    model([helper.make_node("Conv", ["x", "W"], ["y"], name="conv")], [x], [y], [f32("W", W), f32("W", W)]))
t = f32("W", np.zeros((2, 3)), raw=False)
del t.float_data[-1]
bad("dims_mismatch.onnx", "initializer 'W' holds 5 values but its dims [2, 3] need 6",
    model([helper.make_node("Add", ["x", "W"], ["y"], name="add")], [x], [y], [t]))
t = f32("W", np.zeros((2, 3)))
t.raw_data = t.raw_data[:-4]
bad("dims_mismatch_raw.onnx", "initializer 'W' has 20 bytes of raw_data but its dims [2, 3] need 24",
    model([helper.make_node("Add", ["x", "W"], ["y"], name="add")], [x], [y], [t]))
bad("unsupported_dtype.onnx", "initializer 'names' has data type STRING (8), which ndlab does not read",
    model([relu("x", "y")], [x], [y], [helper.make_tensor("names", TensorProto.STRING, [1], [b"a"])]))
bad("unsupported_dtype_complex.onnx", "has data type COMPLEX64 (14)",
    model([relu("x", "y")], [x], [y], [helper.make_tensor("z", TensorProto.COMPLEX64, [1], [1 + 2j])]))
m = model([helper.make_node("FusedConv", ["x", "W"], ["y"], name="fused", domain="com.microsoft")], [x], [y],
          [f32("W", W)])
m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
bad("unknown_domain.onnx", "operator 'FusedConv' of domain 'com.microsoft'", m)
t = TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[2 ** 40, 1])
bad("huge_dim.onnx", "initializer 'huge' has a dimension of 1099511627776, more than 16777216",
    model([helper.make_node("Add", ["x", "huge"], ["y"], name="add")], [x], [y], [t]))
bad("huge_input_dim.onnx", "graph input 'x' has a dimension of 1099511627776, more than 16777216",
    model([relu("x", "y")], [vi("x", [1, 2 ** 40])], [y]))
t = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[3, 2, 3, 3], data_location=TensorProto.EXTERNAL)
e = t.external_data.add(); e.key, e.value = "location", "weights.bin"
e = t.external_data.add(); e.key, e.value = "length", "216"
bad("external_data.onnx", "initializer 'W': external data ('weights.bin') is not supported: save the model with its weights inside",
    model([helper.make_node("Conv", ["x", "W"], ["y"], name="conv")], [x], [y], [t]))
bad("subgraph.onnx", "If 'if': attribute 'else_branch' is of type GRAPH, which ndlab does not read",
    model([helper.make_node("If", ["cond"], ["y"], name="if",
                            then_branch=helper.make_graph([relu("x", "t")], "then", [], [vi("t", [1])]),
                            else_branch=helper.make_graph([relu("x", "e")], "else", [], [vi("e", [1])]))],
          [x, vi("cond", [], TensorProto.BOOL)], [y]))
m = model([relu("x", "y")], [x], [y])
m.ClearField("opset_import")
bad("no_opset.onnx", "imports no version of the default ONNX opset", m)
m = helper.make_model(helper.make_graph([], "g", [], []), opset_imports=[helper.make_opsetid("", 13)])
m.ClearField("graph")
bad("no_graph.onnx", "the ONNX model has no graph", m)
good = open(os.path.join(HERE, "ir3_conv.onnx"), "rb").read()
bad("truncated.onnx", "the file is truncated", good[: len(good) // 2])
bad("empty.onnx", "the file is empty", b"")
# Random bytes that the protobuf package refuses too.
for seed in range(100):
    junk = np.random.default_rng(seed).integers(0, 256, 300, dtype=np.uint8).tobytes()
    try:
        onnx.load_from_string(junk)
    except Exception:
        break
bad("random.onnx", "not a valid ONNX model", junk)

# ---------------------------------------------------------------- what the onnx package reads
def dims_of(v):
    t = v.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def tensor_desc(t):
    a = numpy_helper.to_array(t)
    is_float = t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.DOUBLE)
    v = (a.astype(np.float32).astype(np.float64) if is_float else a.astype(np.int64)).flatten()
    return {"dims": list(t.dims), "kind": "f32" if is_float else "i64", "count": int(v.size),
            "first": v[:8].tolist(), "sum": float(v.astype(np.float64).sum()),
            "sumsq": float((v.astype(np.float64) ** 2).sum())}


def attr_desc(a):
    v = helper.get_attribute_value(a)
    if a.type == AttributeProto.TENSOR:
        return {"tensor": tensor_desc(v)}
    if a.type == AttributeProto.STRING:
        return {"str": v.decode()}
    if a.type == AttributeProto.FLOAT:
        return {"float": v}
    if a.type == AttributeProto.INT:
        return {"int": v}
    if a.type == AttributeProto.FLOATS:
        return {"floats": list(v)}
    if a.type == AttributeProto.INTS:
        return {"ints": list(v)}
    raise ValueError(a)


def describe(path):
    m = onnx.load(path)
    g = m.graph
    init = {t.name for t in g.initializer}
    return {
        "ir_version": m.ir_version,
        "producer": m.producer_name,
        "opset": [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")][0],
        "inputs": [{"name": i.name, "dims": dims_of(i)} for i in g.input if i.name not in init],
        "outputs": [{"name": o.name, "dims": dims_of(o)} for o in g.output],
        "nodes": [{"op": n.op_type, "name": n.name, "inputs": list(n.input), "outputs": list(n.output),
                   "attrs": {a.name: attr_desc(a) for a in n.attribute}} for n in g.node],
        "initializers": {t.name: tensor_desc(t) for t in g.initializer},
    }


for rel in ["tests/data/mtcnn_pnet.onnx", "tests/corpus/graphs/ir3_conv.onnx", "tests/corpus/graphs/all_types.onnx",
            "tests/corpus/graphs/conv_weight_from_node.onnx", "tests/corpus/graphs/unsupported_op.onnx"]:
    described[rel] = describe(os.path.join(ROOT, rel))

with open(os.path.join(HERE, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1, sort_keys=True)
    f.write("\n")
with open(os.path.join(HERE, "described.json"), "w") as f:
    json.dump(described, f, indent=1, sort_keys=True)
    f.write("\n")
print(f"{len(expected)} files, {len(described)} described")
