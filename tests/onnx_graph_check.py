"""Checks a model that ndlab_io::onnx_graph::rewrite wrote against the original, with the onnx package and
onnxruntime as the oracles (needs tests/requirements.txt). Called by crates/ndlab-io/tests/onnx_graph.rs;
by hand:

  python3 tests/onnx_graph_check.py ORIGINAL REWRITTEN --shape input_1=2,31,29,3 \
      --replace conv2d_1=conv2d_1/dw,conv2d_1/pw --remove conv2d_1/kernel:0 --add dw_w --add pw_w

It checks that
  1. onnx.checker.check_model(full_check=True) passes on the rewritten model;
  2. everything outside the graph is the same (serialized with the graph cleared: opset imports, metadata,
     doc strings, unknown fields...), and so is every graph field but node, initializer and input;
  3. the nodes are the original ones (each serialized the same) with each --replace OLD=NEW1,NEW2 node
     replaced, in place, by nodes with those names;
  4. the initializers are the original ones (each the same) less --remove, then the --add ones in order;
     the inputs are the original ones, less removed initializers and plus added ones for IR version <= 3;
  5. onnxruntime gives the same outputs for both models on a random input (--shape NAME=d0,d1,..., one per
     graph input), to 1e-5.
Prints one line "ok: ..." and exits 0, or names the first difference and exits 1.
"""
import argparse, sys

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
except ImportError as e:  # the test must fail, not skip
    sys.exit(f"onnx_graph_check.py needs numpy, onnx and onnxruntime: pip install -r tests/requirements.txt ({e})")


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def ser(msg):
    return msg.SerializeToString(deterministic=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("original")
    ap.add_argument("rewritten")
    ap.add_argument("--shape", action="append", default=[], help="NAME=d0,d1,... for each graph input")
    ap.add_argument("--replace", action="append", default=[], help="OLD=NEW1,NEW2 (node names)")
    ap.add_argument("--remove", action="append", default=[], help="a removed initializer")
    ap.add_argument("--add", action="append", default=[], help="an added initializer, in order")
    a = ap.parse_args()
    orig, new = onnx.load(a.original), onnx.load(a.rewritten)

    onnx.checker.check_model(new, full_check=True)

    # 2. everything outside the graph, and the graph's other fields.
    o, n = onnx.ModelProto(), onnx.ModelProto()
    o.CopyFrom(orig)
    n.CopyFrom(new)
    o.ClearField("graph")
    n.ClearField("graph")
    if ser(o) != ser(n):
        fail("the model outside its graph changed")
    go, gn = onnx.GraphProto(), onnx.GraphProto()
    go.CopyFrom(orig.graph)
    gn.CopyFrom(new.graph)
    for f in ("node", "initializer", "input"):
        go.ClearField(f)
        gn.ClearField(f)
    if ser(go) != ser(gn):
        fail("the graph's other fields (name, outputs, value_info, doc string...) changed")

    # 3. nodes.
    replace = {k: v.split(",") for k, v in (r.split("=", 1) for r in a.replace)}
    want = []
    for node in orig.graph.node:
        if node.name in replace:
            want.extend(("new", name) for name in replace.pop(node.name))
        else:
            want.append(("same", node))
    if replace:
        fail(f"no node named {sorted(replace)} in the original")
    got = list(new.graph.node)
    if len(got) != len(want):
        fail(f"{len(got)} nodes, expected {len(want)}")
    for i, ((kind, w), g) in enumerate(zip(want, got)):
        if kind == "same" and ser(w) != ser(g):
            fail(f"node #{i} ({w.name}) changed")
        if kind == "new" and g.name != w:
            fail(f"node #{i} is '{g.name}', expected the new node '{w}'")

    # 4. initializers and inputs.
    removed = set(a.remove)
    kept = [t for t in orig.graph.initializer if t.name not in removed]
    got = list(new.graph.initializer)
    if [t.name for t in got] != [t.name for t in kept] + a.add:
        fail(f"initializers {[t.name for t in got]}, expected {[t.name for t in kept] + a.add}")
    for t, g in zip(kept, got):
        if ser(t) != ser(g):
            fail(f"initializer {t.name} changed")
    kept_inputs = [i for i in orig.graph.input if i.name not in removed]
    want_inputs = [i.name for i in kept_inputs] + (a.add if orig.ir_version <= 3 else [])
    if [i.name for i in new.graph.input] != want_inputs:
        fail(f"inputs {[i.name for i in new.graph.input]}, expected {want_inputs}")
    for i, g in zip(kept_inputs, new.graph.input):
        if ser(i) != ser(g):
            fail(f"input {i.name} changed")

    # 5. onnxruntime.
    rng = np.random.default_rng(5)
    feeds = {}
    for s in a.shape:
        name, dims = s.split("=", 1)
        feeds[name] = rng.standard_normal([int(d) for d in dims.split(",")]).astype(np.float32)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    run = lambda m: ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)
    ref, out = run(orig), run(new)
    worst = 0.0
    for r, y in zip(ref, out):
        if r.shape != y.shape:
            fail(f"an output of shape {y.shape}, expected {r.shape}")
        worst = max(worst, float(np.max(np.abs(r - y), initial=0.0)))
        np.testing.assert_allclose(y, r, rtol=1e-5, atol=1e-5)
    print(f"ok: full check passed, {len(new.graph.node)} nodes, {len(ref)} outputs equal "
          f"(largest difference {worst:.2e})")


main()
