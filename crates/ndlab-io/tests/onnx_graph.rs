//! `ndlab_io::onnx_graph` against independent oracles:
//! - what the `onnx` Python package reads in the same files (tests/corpus/graphs/described.json, written
//!   by make_graphs.py): opset, inputs with symbolic dims, nodes in file order with their attributes,
//!   initializers with their dims and values;
//! - the hostile corpus (tests/corpus/graphs/expected.json): each file refused with its message;
//! - `onnx.checker` (full check) and onnxruntime on rewritten models (tests/onnx_graph_check.py): a P-Net
//!   conv replaced by a depthwise and a pointwise conv computes the same outputs.
//!
//! Plus the writer's own laws: no edits gives the same bytes, re-encoding every node reads back the
//! same graph, and edits that name nothing are refused.

use ndlab_core::graph::{Attr, Graph, Node, Tensor, TensorData};
use ndlab_core::random::Rng;
use ndlab_io::onnx_graph::{opset, read_graph, read_model, rewrite, GraphEdit, NodeRef, OnnxModel};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn file(rel: &str) -> Vec<u8> {
    let p = root().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn json(rel: &str) -> serde_json::Map<String, Value> {
    let v: Value = serde_json::from_slice(&file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    v.as_object().unwrap().clone()
}

const PNET: &str = "tests/data/mtcnn_pnet.onnx";
const GRAPHS: &str = "tests/corpus/graphs";

fn read(rel: &str) -> (Vec<u8>, OnnxModel) {
    let b = file(rel);
    let m = read_model(&b).unwrap_or_else(|e| panic!("{rel}: {e}"));
    (b, m)
}

fn dims_json(v: &Value) -> Vec<Option<usize>> {
    v.as_array().unwrap().iter().map(|d| d.as_u64().map(|d| d as usize)).collect()
}

/// A tensor against the onnx package's description: dims, kind, count, first values exactly,
/// sums to rounding.
fn check_tensor(what: &str, t: &Tensor, want: &Value) {
    let dims: Vec<usize> =
        want["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    assert_eq!(t.dims, dims, "{what}: dims");
    let first = want["first"].as_array().unwrap();
    // (serde_json's float parsing can be one f64 ulp off: the f32 values are compared as f32.)
    let values: Vec<f64> = match (&t.data, want["kind"].as_str().unwrap()) {
        (TensorData::F32(v), "f32") => {
            let w: Vec<f32> = first.iter().map(|x| x.as_f64().unwrap() as f32).collect();
            assert_eq!(v[..w.len().min(v.len())], w[..], "{what}: first values");
            v.iter().map(|&x| x as f64).collect()
        }
        (TensorData::I64(v), "i64") => {
            let w: Vec<i64> = first.iter().map(|x| x.as_i64().unwrap()).collect();
            assert_eq!(v[..w.len().min(v.len())], w[..], "{what}: first values");
            v.iter().map(|&x| x as f64).collect()
        }
        (d, k) => panic!("{what}: read as {d:?}, the onnx package reads {k}"),
    };
    assert_eq!(values.len() as u64, want["count"].as_u64().unwrap(), "{what}: count");
    let (sum, sumsq) = (values.iter().sum::<f64>(), values.iter().map(|v| v * v).sum::<f64>());
    let (wsum, wsumsq) = (want["sum"].as_f64().unwrap(), want["sumsq"].as_f64().unwrap());
    let tol = 1e-9 * (1.0 + wsumsq);
    assert!((sum - wsum).abs() <= tol.max(1e-9 * wsum.abs()), "{what}: sum {sum} vs {wsum}");
    assert!((sumsq - wsumsq).abs() <= 1e-9 * (1.0 + wsumsq), "{what}: sum of squares {sumsq} vs {wsumsq}");
}

fn check_attr(what: &str, a: &Attr, want: &Value) {
    let (kind, w) = want.as_object().unwrap().iter().next().unwrap();
    match (a, kind.as_str()) {
        (Attr::Int(v), "int") => assert_eq!(*v, w.as_i64().unwrap(), "{what}"),
        (Attr::Float(v), "float") => assert_eq!(*v as f64, w.as_f64().unwrap(), "{what}"),
        (Attr::Str(v), "str") => assert_eq!(v, w.as_str().unwrap(), "{what}"),
        (Attr::Ints(v), "ints") => {
            assert_eq!(
                *v,
                w.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect::<Vec<_>>(),
                "{what}"
            )
        }
        (Attr::Floats(v), "floats") => assert_eq!(
            v.iter().map(|&x| x as f64).collect::<Vec<_>>(),
            w.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>(),
            "{what}"
        ),
        (Attr::Tensor(t), "tensor") => check_tensor(what, t, w),
        (a, k) => panic!("{what}: read {a:?}, the onnx package reads a {k}"),
    }
}

/// The model against what the onnx package reads in the same file.
fn check_described(rel: &str, m: &OnnxModel, want: &Value) {
    assert_eq!(m.opset, want["opset"].as_i64().unwrap(), "{rel}: opset");
    assert_eq!(m.ir_version, want["ir_version"].as_i64().unwrap(), "{rel}: IR version");
    assert_eq!(m.producer, want["producer"].as_str().unwrap(), "{rel}: producer");
    for (key, got) in [("inputs", &m.graph.inputs), ("outputs", &m.graph.outputs)] {
        let w = want[key].as_array().unwrap();
        assert_eq!(got.len(), w.len(), "{rel}: {key}");
        for (g, w) in got.iter().zip(w) {
            assert_eq!(g.name, w["name"].as_str().unwrap(), "{rel}: {key}");
            assert_eq!(g.dims, dims_json(&w["dims"]), "{rel}: {key} '{}'", g.name);
        }
    }
    // The nodes, in the file's order (file_index), against the file's node list.
    let nodes = want["nodes"].as_array().unwrap();
    assert_eq!(m.graph.nodes.len(), nodes.len(), "{rel}: node count");
    let mut order = m.file_index.clone();
    order.sort_unstable();
    assert_eq!(order, (0..nodes.len()).collect::<Vec<_>>(), "{rel}: file_index is a permutation");
    for (n, &i) in m.graph.nodes.iter().zip(&m.file_index) {
        let w = &nodes[i];
        let what = format!("{rel}: node #{i} '{}'", n.label());
        let strs = |v: &Value| {
            v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect::<Vec<_>>()
        };
        assert_eq!(n.op, w["op"].as_str().unwrap(), "{what}");
        assert_eq!(n.name, w["name"].as_str().unwrap(), "{what}");
        assert_eq!(n.inputs, strs(&w["inputs"]), "{what}");
        assert_eq!(n.outputs, strs(&w["outputs"]), "{what}");
        let attrs = w["attrs"].as_object().unwrap();
        assert_eq!(
            n.attrs.keys().collect::<Vec<_>>(),
            attrs.keys().collect::<Vec<_>>(),
            "{what}: attribute names"
        );
        for (k, a) in &n.attrs {
            check_attr(&format!("{what} attribute '{k}'"), a, &attrs[k]);
        }
    }
    let inits = want["initializers"].as_object().unwrap();
    assert_eq!(
        m.graph.initializers.keys().collect::<Vec<_>>(),
        inits.keys().collect::<Vec<_>>(),
        "{rel}: initializer names"
    );
    for (k, t) in &m.graph.initializers {
        check_tensor(&format!("{rel}: initializer '{k}'"), t, &inits[k]);
    }
}

#[test]
fn models_read_as_the_onnx_package_reads_them() {
    let described = json(&format!("{GRAPHS}/described.json"));
    assert!(described.contains_key(PNET) && described.len() >= 5, "{:?}", described.keys());
    for (rel, want) in &described {
        let (b, m) = read(rel);
        check_described(rel, &m, want);
        assert_eq!(opset(&b).unwrap(), m.opset, "{rel}");
    }
}

#[test]
fn pnet_is_the_network_we_know() {
    let (_, m) = read(PNET);
    let g = &m.graph;
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.as_str()).collect();
    assert_eq!(
        ops,
        [
            "Transpose",
            "Conv",
            "PRelu",
            "MaxPool",
            "Conv",
            "PRelu",
            "Conv",
            "PRelu",
            "Conv",
            "Conv",
            "Transpose",
            "Transpose",
            "Softmax"
        ]
    );
    assert_eq!(m.file_index, (0..13).collect::<Vec<_>>(), "the file's order is topological");
    assert_eq!(g.inputs.len(), 1);
    assert_eq!(g.inputs[0].dims, [None, None, None, Some(3)], "NHWC with a symbolic batch and size");
    let conv = &g.nodes[1];
    assert_eq!(conv.string("auto_pad").unwrap(), Some("VALID"));
    assert_eq!(conv.ints("kernel_shape").unwrap(), Some(&[3i64, 3][..]));
    assert_eq!(g.initializers[&conv.inputs[1]].dims, [10, 3, 3, 3]);
    assert_eq!(m.opset, 12);
    assert_eq!(m.producer, "keras2onnx");
}

/// Files of the corpus that read, and P-Net.
fn good_files() -> Vec<String> {
    let mut v = vec![PNET.to_string()];
    for (name, spec) in json(&format!("{GRAPHS}/expected.json")) {
        if spec.get("read_graph").and_then(Value::as_str) == Some("ok") {
            v.push(format!("{GRAPHS}/{name}"));
        }
    }
    assert!(v.len() >= 5, "{v:?}");
    v
}

#[test]
fn no_edits_give_the_same_bytes_and_the_same_bytes_again() {
    for rel in good_files() {
        let b = file(&rel);
        assert!(rewrite(&b, &GraphEdit::default()).unwrap() == b, "{rel}: not the same bytes");
    }
}

/// Every node replaced by itself: the file changes (nodes re-encoded) but reads back the same graph.
fn re_encode_every_node(b: &[u8], m: &OnnxModel) -> Vec<u8> {
    let replace =
        m.graph.nodes.iter().zip(&m.file_index).map(|(n, &i)| (NodeRef::Index(i), vec![n.clone()])).collect();
    rewrite(b, &GraphEdit { replace, ..Default::default() }).unwrap()
}

#[test]
fn re_encoded_nodes_read_back_the_same() {
    for rel in good_files() {
        let (b, m) = read(&rel);
        let out = re_encode_every_node(&b, &m);
        let again = read_model(&out).unwrap_or_else(|e| panic!("{rel} re-encoded: {e}"));
        assert_eq!(again, m, "{rel}");
        assert_eq!(re_encode_every_node(&b, &m), out, "{rel}: deterministic");
    }
}

#[test]
fn the_hostile_corpus_gives_the_expected_messages() {
    let exp = json(&format!("{GRAPHS}/expected.json"));
    let mut on_disk: Vec<String> = std::fs::read_dir(root().join(GRAPHS))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".onnx"))
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, exp.keys().cloned().collect::<Vec<_>>(), "every corpus file in expected.json");
    assert!(exp.len() >= 20);
    for (name, spec) in &exp {
        let b = file(&format!("{GRAPHS}/{name}"));
        let got = read_graph(&b);
        match (spec.get("error").and_then(Value::as_str), &got) {
            (Some(want), Err(e)) => {
                assert!(e.to_string().contains(want), "{name}: '{e}' lacks '{want}'");
                println!("{name}: {e}");
            }
            (Some(want), Ok(_)) => panic!("{name}: read, expected '{want}'"),
            (None, Err(e)) => panic!("{name}: {e}"),
            (None, Ok(_)) => assert_eq!(spec["read_graph"], "ok", "{name}"),
        }
        // The other entry points answer too, without panicking.
        let _ = opset(&b);
        let r = rewrite(&b, &GraphEdit::default());
        if got.is_ok() {
            assert!(r.unwrap() == b, "{name}: not the same bytes");
        }
    }
}

fn conv_node(name: &str, inputs: &[&str], output: &str, attrs: &[(&str, Attr)]) -> Node {
    Node {
        name: name.into(),
        op: "Conv".into(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output.into()],
        attrs: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    }
}

fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Runs tests/onnx_graph_check.py (onnx's full check and onnxruntime); fails when Python or its
/// packages are missing: `pip install -r tests/requirements.txt`.
fn python_check(original: &Path, rewritten: &Path, args: &[String]) {
    let out = Command::new("python3")
        .arg(root().join("tests/onnx_graph_check.py"))
        .arg(original)
        .arg(rewritten)
        .args(args)
        .output()
        .expect("python3 is needed for this test (with tests/requirements.txt installed)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "onnx_graph_check.py failed:\n{stdout}\n{stderr}");
    assert!(stdout.starts_with("ok:"), "{stdout}");
    println!("{stdout}");
}

/// P-Net's second conv (3×3, 10 → 16 channels, VALID) as a depthwise conv that copies each of the
/// 9 taps of each channel (group 10, 90 outputs) and a 1×1 conv that weighs them with the original
/// weights: the same convolution, as the two convolutions a decoupled layer is made of.
#[test]
fn a_pnet_conv_becomes_depthwise_and_pointwise_and_computes_the_same() {
    let (b, m) = read(PNET);
    let g = &m.graph;
    let k = g.nodes.iter().position(|n| n.name == "conv2d_1").unwrap();
    let conv = &g.nodes[k];
    let w = &g.initializers[&conv.inputs[1]];
    let [n, c, kh, kw] = w.dims[..] else { panic!("{:?}", w.dims) };
    let taps = kh * kw;
    let wv = w.as_f32("w").unwrap();
    let mut dw = vec![0f32; c * taps * taps];
    for ch in 0..c {
        for j in 0..taps {
            dw[(ch * taps + j) * taps + j] = 1.0;
        }
    }
    let pw: Vec<f32> = (0..n).flat_map(|o| (0..c * taps).map(move |i| wv[o * c * taps + i])).collect();
    let mut dw_attrs = conv.attrs.clone();
    dw_attrs.insert("group".into(), Attr::Int(c as i64));
    let dw_node = Node {
        name: "conv2d_1/dw".into(),
        inputs: vec![conv.inputs[0].clone(), "conv2d_1/dw_weight".into()],
        outputs: vec!["conv2d_1/dw_out".into()],
        attrs: dw_attrs,
        ..conv.clone()
    };
    let pw_node = conv_node(
        "conv2d_1/pw",
        &["conv2d_1/dw_out", "conv2d_1/pw_weight", &conv.inputs[2]],
        &conv.outputs[0],
        &[("kernel_shape", Attr::Ints(vec![1, 1])), ("strides", Attr::Ints(vec![1, 1]))],
    );
    let edit = GraphEdit {
        replace: vec![(NodeRef::Output(conv.outputs[0].clone()), vec![dw_node, pw_node])],
        add_initializers: vec![
            ("conv2d_1/dw_weight".into(), Tensor::f32(vec![c * taps, 1, kh, kw], dw).unwrap()),
            ("conv2d_1/pw_weight".into(), Tensor::f32(vec![n, c * taps, 1, 1], pw).unwrap()),
        ],
        remove_initializers: vec![conv.inputs[1].clone()],
    };
    let out = rewrite(&b, &edit).unwrap();
    assert_eq!(rewrite(&b, &edit).unwrap(), out, "deterministic");
    // The same edit by file index.
    let by_index = GraphEdit {
        replace: vec![(NodeRef::Index(m.file_index[k]), edit.replace[0].1.clone())],
        ..edit.clone()
    };
    assert_eq!(rewrite(&b, &by_index).unwrap(), out);

    let m2 = read_model(&out).unwrap();
    assert_eq!(m2.graph.nodes.len(), g.nodes.len() + 1);
    assert_eq!(m2.graph.nodes[k].name, "conv2d_1/dw");
    assert_eq!(m2.graph.nodes[k + 1].name, "conv2d_1/pw");
    assert!(!m2.graph.initializers.contains_key("conv2d_1/kernel:0"));
    assert_eq!(m2.graph.initializers["conv2d_1/pw_weight"], edit.add_initializers[1].1);
    assert_eq!((m2.opset, &m2.producer, m2.ir_version), (m.opset, &m.producer, m.ir_version));

    let args: Vec<String> = [
        "--shape=input_1=2,31,29,3",
        "--replace=conv2d_1=conv2d_1/dw,conv2d_1/pw",
        "--remove=conv2d_1/kernel:0",
        "--add=conv2d_1/dw_weight",
        "--add=conv2d_1/pw_weight",
    ]
    .map(String::from)
    .to_vec();
    python_check(&root().join(PNET), &tmp("pnet_decoupled.onnx", &out), &args);
}

/// IR version 3 (initializers are graph inputs), unknown fields, metadata: the conv's weight is
/// renamed (removed and added again) and an Identity follows the conv.
#[test]
fn an_ir3_conv_with_a_renamed_weight_keeps_the_rest_of_the_file() {
    let rel = format!("{GRAPHS}/ir3_conv.onnx");
    let (b, m) = read(&rel);
    assert_eq!(m.ir_version, 3);
    assert_eq!(m.graph.inputs.len(), 1, "the initializers listed as inputs are not inputs");
    let conv = m.graph.nodes.iter().find(|n| n.op == "Conv").unwrap();
    let mut renamed = conv.clone();
    renamed.inputs[1] = "W_renamed".into();
    renamed.outputs[0] = "c_before_identity".into();
    let identity = Node {
        name: "identity".into(),
        op: "Identity".into(),
        inputs: vec!["c_before_identity".into()],
        outputs: conv.outputs.clone(),
        attrs: BTreeMap::new(),
    };
    let edit = GraphEdit {
        replace: vec![(NodeRef::Output("c".into()), vec![renamed, identity])],
        add_initializers: vec![("W_renamed".into(), m.graph.initializers["W"].clone())],
        remove_initializers: vec!["W".into()],
    };
    let out = rewrite(&b, &edit).unwrap();
    // The unknown fields (98 at the top, 99 in the graph) are still there, byte for byte.
    let top_unknown = [&[0x92u8, 0x06, 23][..], b"unknown top-level bytes"].concat();
    assert!(out.windows(top_unknown.len()).any(|w| w == top_unknown), "field 98 lost");
    assert!(out.windows(3).any(|w| w == [0x98, 0x06, 7]), "field 99 lost");
    let m2 = read_model(&out).unwrap();
    assert_eq!(m2.graph.inputs, m.graph.inputs);
    let args: Vec<String> =
        ["--shape=x=2,2,5,5", "--replace=conv=conv,identity", "--remove=W", "--add=W_renamed"]
            .map(String::from)
            .to_vec();
    python_check(&root().join(&rel), &tmp("ir3_renamed.onnx", &out), &args);
}

#[test]
fn edits_that_name_nothing_or_break_the_graph_are_refused() {
    let (b, m) = read(PNET);
    let relu = |o: &str| Node {
        name: "r".into(),
        op: "Relu".into(),
        inputs: vec!["input_1".into()],
        outputs: vec![o.into()],
        attrs: BTreeMap::new(),
    };
    let refused = |edit: GraphEdit, want: &str| {
        let e = rewrite(&b, &edit).unwrap_err().to_string();
        assert!(e.contains(want), "'{e}' lacks '{want}'");
    };
    let replace =
        |r: NodeRef, nodes: Vec<Node>| GraphEdit { replace: vec![(r, nodes)], ..Default::default() };
    refused(replace(NodeRef::Index(13), vec![]), "there is no node #13: the file has 13 nodes");
    refused(replace(NodeRef::Output("nothing".into()), vec![]), "no node makes the value 'nothing'");
    refused(
        GraphEdit { remove_initializers: vec!["conv2d/kernel".into()], ..Default::default() },
        "there is no initializer 'conv2d/kernel' to remove",
    );
    let t = Tensor::f32(vec![1], vec![1.0]).unwrap();
    refused(
        GraphEdit { add_initializers: vec![("conv2d/bias:0".into(), t.clone())], ..Default::default() },
        "the initializer 'conv2d/bias:0' exists already",
    );
    refused(
        GraphEdit {
            add_initializers: vec![("a".into(), t.clone()), ("a".into(), t.clone())],
            ..Default::default()
        },
        "the initializer 'a' is added twice",
    );
    refused(
        GraphEdit { remove_initializers: vec!["conv2d/kernel:0".into()], ..Default::default() },
        "the edited graph is not valid: Conv 'conv2d' reads 'conv2d/kernel:0', which no earlier node",
    );
    refused(
        GraphEdit {
            replace: vec![(NodeRef::Index(0), vec![]), (NodeRef::Output("adjusted_input4".into()), vec![])],
            ..Default::default()
        },
        "Transpose 'Transpose9' is replaced twice",
    );
    refused(replace(NodeRef::Index(0), vec![relu("softmax")]), "made by two nodes");
    refused(
        GraphEdit { add_initializers: vec![("input_1".into(), t.clone())], ..Default::default() },
        "the new initializer 'input_1' is the name of a graph input",
    );
    refused(replace(NodeRef::Index(12), vec![]), "the graph output 'softmax' is made by no node");
    let mut no_op = relu("x");
    no_op.op.clear();
    refused(replace(NodeRef::Index(0), vec![no_op]), "has no op");
    // A replacement may be read later in the file order (the graph is sorted), and may remove.
    let mut edit = replace(NodeRef::Index(0), vec![relu("adjusted_input4")]);
    let out = rewrite(&b, &edit).unwrap();
    assert_eq!(read_graph(&out).unwrap().nodes[0].op, "Relu");
    // Replacing a value of an initializer: remove and add the same name.
    edit = GraphEdit {
        remove_initializers: vec!["conv2d/bias:0".into()],
        add_initializers: vec![("conv2d/bias:0".into(), Tensor::f32(vec![10], vec![0.5; 10]).unwrap())],
        ..Default::default()
    };
    let g: Graph = read_graph(&rewrite(&b, &edit).unwrap()).unwrap();
    assert_eq!(g.initializers["conv2d/bias:0"].as_f32("b").unwrap(), [0.5; 10]);
    assert_eq!(g.nodes, m.graph.nodes);
}

/// Random byte flips, truncations and insertions of the good files: an answer, never a panic; what
/// reads is written back unchanged.
#[test]
fn mutated_files_never_panic() {
    let mut rng = Rng::new(2024);
    for rel in good_files() {
        let b = file(&rel);
        for _ in 0..300 {
            let mut m = b.clone();
            for _ in 0..1 + rng.next_u64() % 4 {
                let at = (rng.next_u64() % m.len() as u64) as usize;
                match rng.next_u64() % 4 {
                    0 => m[at] ^= 1 << (rng.next_u64() % 8),
                    1 => m[at] = rng.next_u64() as u8,
                    2 => m.truncate(at.max(1)),
                    _ => m.insert(at, rng.next_u64() as u8),
                }
            }
            if let Ok(model) = read_model(&m) {
                assert!(
                    rewrite(&m, &GraphEdit::default()).unwrap() == m,
                    "{rel}: mutated, not the same bytes"
                );
                let again = read_model(&re_encode_every_node(&m, &model)).unwrap();
                assert_eq!(format!("{again:?}"), format!("{model:?}"), "{rel}: mutated, re-encoded");
            }
        }
    }
}
