#!/usr/bin/env python3
"""Independent oracle for whole-network decoupling: `ndlab decouple-model` and `ndlab evaluate` (numpy + onnx + onnxruntime).

Usage: python3 tests/network_check.py PATH/TO/ndlab      # check the CLI
       python3 tests/network_check.py --self-test        # check this oracle against a numpy/onnx mock of the CLI

Models: assets/networks/fmnist_vgg.onnx (Conv+BN+ReLU, inputs from assets/networks/fmnist_test_1000.npz) and the MTCNN
P-Net tests/data/mtcnn_pnet.onnx (NHWC + Transpose, PRelu, VALID 3x3 and 1x1 convs, Softmax, two outputs; input
tests/data/pnet_astronaut_64x48.npy). P-Net's H and W are symbolic, so MACs are only defined for a given size: it is
checked as a static-shape copy ([1,64,48,3], the image's size) and as the dynamic original, whose size comes from
`--calibration` data of that image (the CLI refuses symbolic dims without data: also checked); strict MAC checks on
both. For each model, order (dw-pw, pw-dw) and T in (1, 2, 9):
  1. `ndlab decouple-model M --out O --order X --t T --json`; onnx.checker.check_model(O, full_check=True);
  2. reference = the original graph, each Conv the JSON reports as decoupled given numpy's rank-T rebuild of its weight
     (METHOD.md slices; a Conv whose only consumer is a BatchNormalization is rebuilt on the BN-folded kernel
     W_eff = diag(g/sqrt(v+eps)) W and un-scaled back, BN node kept); 1x1 and not-decoupled convs keep W;
  3. onnxruntime: exported vs reference outputs, ||a-b||/||b|| <= 1e-4; at full rank exported vs original too;
  4. JSON: t == min(T, full rank), rel_weight_error vs numpy, per-layer and total MACs vs METHOD.md's formulas;
  5. `ndlab evaluate` (CNN, test subset; original and one decoupled file): n and accuracy vs onnxruntime's top-1,
     exactly as a count, except that a logit near-tie (top-2 gap < 1e-5) may flip between two engines' summation orders.
Exits 1 on any mismatch, 2 if the binary or a file is missing; last line "N passed, M failed".
"""
import copy
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

ROOT = pathlib.Path(__file__).resolve().parent.parent
CNN = ROOT / "assets" / "networks" / "fmnist_vgg.onnx"
CNN_DATA = ROOT / "assets" / "networks" / "fmnist_test_1000.npz"
PNET = ROOT / "tests" / "data" / "mtcnn_pnet.onnx"
PNET_X = ROOT / "tests" / "data" / "pnet_astronaut_64x48.npy"
TS, ORDERS, TOL, TIE = (1, 2, 9), ("dw-pw", "pw-dw"), 1e-4, 1e-5
RESULTS = {"passed": 0, "failed": 0}


class CliError(Exception):
    """ndlab exited non-zero."""


def check(ok, what):
    """Count one check; print it if it failed."""
    RESULTS["passed" if ok else "failed"] += 1
    if not ok:
        print(f"FAIL: {what}", flush=True)
    return ok


def conv_layers(model):
    """Every Conv node as a dict: name (node name or first output), node, W (float64), group, and the BN scale
    s = gamma/sqrt(var+eps) when the Conv's only consumer is a BatchNormalization (else None)."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    consumers = {}
    for node in model.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    outputs = {o.name for o in model.graph.output}
    layers = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        if node.input[1] not in inits:
            raise SystemExit(f"oracle: Conv {node.name} weight {node.input[1]} is not an initializer")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        cons = consumers.get(node.output[0], [])
        scale = None
        if len(cons) == 1 and cons[0].op_type == "BatchNormalization" and node.output[0] not in outputs:
            bn = cons[0]
            eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
            gamma, var = inits[bn.input[1]].astype(np.float64), inits[bn.input[4]].astype(np.float64)
            scale = gamma / np.sqrt(var + eps)
            assert np.all(scale != 0), f"{node.name}: BN scale 0 cannot be un-scaled"
        layers.append({"name": node.name or node.output[0], "node": node, "W": inits[node.input[1]].astype(np.float64),
                       "group": int(attrs.get("group", 1)), "scale": scale})
    return layers


def slices(w, order, group):
    """The matrices METHOD.md decomposes: DW->PW one N/g x K^2 per input channel (within its group),
    PW->DW one C/g x K^2 per output channel. Returns [num_slices, rows, K^2]."""
    n, cg, kh, kw = w.shape
    if order == "dw-pw":
        wg = w.reshape(group, n // group, cg, kh * kw)  # [g, N/g, C/g, K2]
        return wg.transpose(0, 2, 1, 3).reshape(group * cg, n // group, kh * kw)
    return w.reshape(n, cg, kh * kw)


def unslice(m, order, shape, group):
    """Inverse of slices()."""
    n, cg, kh, kw = shape
    if order == "dw-pw":
        return m.reshape(group, cg, n // group, kh * kw).transpose(0, 2, 1, 3).reshape(shape)
    return m.reshape(shape)


def rank_t(layer, order, t):
    """numpy's rank-t rebuild of a layer: (W_ref to put in the graph, rel. error on W_eff, sigma tail formula, full rank)."""
    w, s = layer["W"], layer["scale"]
    w_eff = w if s is None else w * s[:, None, None, None]
    m = slices(w_eff, order, layer["group"])
    full = min(m.shape[1], m.shape[2])
    t = min(t, full)
    u, sig, vt = np.linalg.svd(m, full_matrices=False)
    mt = np.einsum("sik,sk,skj->sij", u[:, :, :t], sig[:, :t], vt[:, :t, :])
    w_t = unslice(mt, order, w.shape, layer["group"])
    err = np.linalg.norm(w_eff - w_t) / np.linalg.norm(w_eff)
    tail = np.sqrt(np.sum(sig[:, t:] ** 2) / np.sum(sig ** 2))
    w_ref = w_t if s is None else w_t / s[:, None, None, None]
    return w_ref, err, tail, full


def with_weights(model, new_w):
    """Copy of the model whose Conv nodes named in new_w read a fresh float32 initializer holding that weight."""
    m = copy.deepcopy(model)
    for node in m.graph.node:
        name = node.name or node.output[0]
        if node.op_type == "Conv" and name in new_w:
            tname = f"{node.input[1]}__rank_ref"
            m.graph.initializer.append(numpy_helper.from_array(new_w[name].astype(np.float32), tname))
            node.input[1] = tname
    return m


def reference(model, order, decoupled_t):
    """The reference graph: every Conv in decoupled_t (name -> t) with K^2 > 1 gets its rank-t rebuild."""
    new_w = {}
    for layer in conv_layers(model):
        if layer["name"] in decoupled_t and layer["W"].shape[2] * layer["W"].shape[3] > 1:
            new_w[layer["name"]] = rank_t(layer, order, decoupled_t[layer["name"]])[0]
    return with_weights(model, new_w)


def run(model, x, batch=1000):
    """All outputs of the model (ModelProto or path) on x, with onnxruntime (CPU), in batches along axis 0."""
    src = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # no warnings about initializers the rank-T copies left unused
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    parts = [sess.run(None, {sess.get_inputs()[0].name: x[i:i + batch]}) for i in range(0, len(x), batch)]
    return [np.concatenate(outs) for outs in zip(*parts)]


def rel(a, b):
    """max over outputs of ||a - b|| / ||b|| (float64)."""
    return max(float(np.linalg.norm(x.astype(np.float64) - y) / np.linalg.norm(y.astype(np.float64))) for x, y in zip(a, b))


def static_copy(model, shape):
    """The model with its (first) input's shape fixed, e.g. [1,64,48,3]."""
    m = copy.deepcopy(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, shape):
        d.Clear()
        d.dim_value = int(v)
    return m


def expected_macs(model, order, decoupled_t, in_shape):
    """METHOD.md's MACs per Conv at batch 1 for input shape in_shape: {name: (regular, after)} from onnx shape inference.
    regular N*C/g*K2*Ho*Wo; DW->PW C*T*K2*Ho*Wo + C*T*N/g*Ho*Wo; PW->DW N*T*C/g*H*W + N*T*K2*Ho*Wo."""
    inferred = onnx.shape_inference.infer_shapes(static_copy(model, [1, *in_shape[1:]]), strict_mode=True)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    out = {}
    for layer in conv_layers(model):
        node, (n, cg, kh, kw), g = layer["node"], layer["W"].shape, layer["group"]
        (_, c, h, w), (_, _, ho, wo) = dims[node.input[0]], dims[node.output[0]]
        k2, regular = kh * kw, n * cg * kh * kw * ho * wo
        t = decoupled_t.get(layer["name"])
        if t is None or k2 == 1:
            out[layer["name"]] = (regular, regular)
        elif order == "dw-pw":
            out[layer["name"]] = (regular, c * t * k2 * ho * wo + c * t * (n // g) * ho * wo)
        else:
            out[layer["name"]] = (regular, n * t * cg * h * w + n * t * k2 * ho * wo)
    return out


def check_decoupling(tag, model_path, x, order, t_req, decouple, strict_macs=True):
    """Steps 1-4 for one model / order / T. decouple(model_path, out_path, order, t) -> parsed JSON."""
    model = onnx.load(str(model_path))
    with tempfile.TemporaryDirectory() as tmp:
        out_path = pathlib.Path(tmp) / "decoupled.onnx"
        rep = decouple(model_path, out_path, order, t_req)
        if not check(out_path.is_file(), f"{tag}: no exported file"):
            return
        try:
            onnx.checker.check_model(str(out_path), full_check=True)
            check(True, "")
        except Exception as e:  # noqa: BLE001 - report any checker error as a failure
            check(False, f"{tag}: onnx.checker: {e}")
        exported = onnx.load(str(out_path))
    io = [[v.name for v in m.graph.input if v.name not in {t.name for t in m.graph.initializer}] + [v.name for v in m.graph.output]
          for m in (model, exported)]
    check(io[0] == io[1], f"{tag}: exported inputs/outputs {io[1]} != original {io[0]}")
    by_name = {layer["name"]: layer for layer in conv_layers(model)}
    jl = {entry["name"]: entry for entry in rep["layers"]}
    check(set(jl) <= set(by_name), f"{tag}: JSON names {sorted(set(jl) - set(by_name))} are not Conv nodes")
    dec_t = {}
    for name, e in jl.items():
        layer = by_name.get(name)
        if layer is None:
            continue
        w, k2 = layer["W"], layer["W"].shape[2] * layer["W"].shape[3]
        _, err, tail, full = rank_t(layer, order, t_req)
        check(list(e["shape"]) == list(w.shape) and e["group"] == layer["group"], f"{tag} {name}: shape/group {e['shape']} {e['group']}")
        check(e["t"] <= full, f"{tag} {name}: t {e['t']} > full rank {full}")
        if e["decoupled"]:
            check(k2 > 1, f"{tag} {name}: a 1x1 conv reported as decoupled")
            check(e["t"] == min(t_req, full), f"{tag} {name}: t {e['t']} != min(T={t_req}, full rank {full})")
            check(abs(err - tail) <= 1e-9 + 1e-9 * tail, f"{tag} {name}: oracle error {err} != tail {tail}")
            check(abs(e["rel_weight_error"] - err) <= 1e-5 + 1e-4 * err,
                  f"{tag} {name}: rel_weight_error {e['rel_weight_error']:.8g}, numpy {err:.8g}")
            dec_t[name] = e["t"]
    macs = expected_macs(model, order, dec_t, x.shape)
    totals = (sum(v[0] for v in macs.values()), sum(v[1] for v in macs.values()))
    got = (rep["macs"], rep["macs_decoupled"])
    if strict_macs:
        for name, e in jl.items():
            if name in macs:
                check((e["macs"], e["macs_decoupled"]) == macs[name], f"{tag} {name}: MACs {(e['macs'], e['macs_decoupled'])}, METHOD.md {macs[name]}")
        check(got == totals, f"{tag}: total MACs {got}, METHOD.md {totals}")
    ref = reference(model, order, dec_t)
    y_exp, y_ref = run(exported, x), run(ref, x)
    err_ref = rel(y_exp, y_ref)
    check(err_ref <= TOL, f"{tag}: exported vs reference rel. error {err_ref:.3e} > {TOL}")
    line = f"{tag}: {len(dec_t)} decoupled, MACs {got[0]:,} -> {got[1]:,} (oracle {totals[1]:,}), vs reference {err_ref:.1e}"
    if t_req >= max(rank_t(layer, order, 1)[3] for layer in by_name.values()):  # every layer at full rank
        err_orig = rel(y_exp, run(model, x))
        check(err_orig <= TOL, f"{tag}: full rank, exported vs original rel. error {err_orig:.3e} > {TOL}")
        line += f", vs original {err_orig:.1e}"
    print(line, flush=True)


def ort_accuracy(model_path, data):
    """(n, correct count, near-tie count) of onnxruntime's top-1 on an .npz with x, y."""
    logits = run(model_path, data["x"])[0]
    top2 = np.sort(logits, axis=1)[:, -2:]
    return len(logits), int((logits.argmax(1) == data["y"]).sum()), int((top2[:, 1] - top2[:, 0] < TIE).sum())


def check_evaluate(tag, model_path, data_path, evaluate):
    """Step 5: the CLI's n and accuracy against onnxruntime's on the same file and data."""
    rep = evaluate(model_path, data_path)
    n, correct, ties = ort_accuracy(model_path, np.load(data_path))
    check(rep["n"] == n, f"{tag}: n {rep['n']} != {n}")
    diff = abs(round(rep["accuracy"] * n) - correct)
    check(abs(rep["accuracy"] * n - round(rep["accuracy"] * n)) < 1e-6, f"{tag}: accuracy {rep['accuracy']} is not k/{n}")
    check(diff <= ties, f"{tag}: accuracy {rep['accuracy']} vs onnxruntime {correct}/{n} ({ties} near-ties)")
    print(f"{tag}: ndlab {rep['accuracy']:.4f}, onnxruntime {correct / n:.4f} (n {n}, near-ties {ties})", flush=True)


def cli_backend(binary):
    """decouple / evaluate callables running the ndlab binary."""
    def call(args):
        p = subprocess.run([str(binary), *map(str, args), "--json"], capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise CliError(f"`ndlab {' '.join(map(str, args))}` exited {p.returncode}: {p.stderr.strip()[:500]}")
        return json.loads(p.stdout)
    def decouple(m, o, order, t, calibration=None):
        # --data-free: the calibration data only sizes the symbolic input (with it alone, decoupling is data-aware).
        extra = ["--calibration", calibration, "--data-free"] if calibration else []
        return call(["decouple-model", m, "--out", o, "--order", order, "--t", t, *extra])
    return decouple, lambda m, d: call(["evaluate", m, "--data", d])


def mock_decouple(model_path, out_path, order, t_req, force=False):
    """A numpy/onnx stand-in for `ndlab decouple-model --t`: METHOD.md's merged forms (DW->PW: DW C->C*T groups C,
    then PW C*T->N; PW->DW: PW C->N*T, then Conv N*T->N groups N; channel order c*T+t / n*T+t), BN folded into the
    factors and un-scaled on the PW (DW->PW) or DW (PW->DW) side; a layer stays regular if it would not be cheaper
    (unless force: then every K > 1 conv is decoupled, e.g. to test exact decoupling at full rank)."""
    model = onnx.load(str(model_path))
    layers, replaced = [], {}
    shape = [d.dim_value or (1 if i == 0 else 64) for i, d in enumerate(model.graph.input[0].type.tensor_type.shape.dim)]
    dec = {layer["name"]: min(t_req, rank_t(layer, order, 1)[3]) for layer in conv_layers(model)}
    macs = expected_macs(model, order, dec, shape)
    for layer in conv_layers(model):
        name, (n, cg, kh, kw), g = layer["name"], layer["W"].shape, layer["group"]
        t, err = dec[name], rank_t(layer, order, dec[name])[1]
        ok = kh * kw > 1 and (force or macs[name][1] < macs[name][0])
        layers.append({"name": name, "shape": [n, cg, kh, kw], "group": g, "t": t, "decoupled": bool(ok),
                       "macs": macs[name][0], "macs_decoupled": macs[name][1] if ok else macs[name][0],
                       "rel_weight_error": err if ok else 0.0})
        if not ok:
            continue
        s = layer["scale"] if layer["scale"] is not None else np.ones(n)
        m = slices(layer["W"] * s[:, None, None, None], order, g)
        u, sig, vt = np.linalg.svd(m, full_matrices=False)
        node = layer["node"]
        attrs = [a for a in node.attribute if a.name not in ("group", "kernel_shape")]
        mid = f"{node.output[0]}__mid"
        if order == "dw-pw":  # m: [C, N/g, K2]; D[c*T+k] = v_{c,k}; P[n, c*T+k] = sigma u[n] / s_n
            dw = vt[:, :t, :].reshape(g * cg * t, 1, kh, kw)
            pw = (u[:, :, :t] * sig[:, None, :t]).reshape(g, cg, n // g, t).transpose(0, 2, 1, 3).reshape(n, cg * t, 1, 1)
            pw = pw / s[:, None, None, None]
            w1, w2, g1, g2 = dw, pw, g * cg, g
        else:  # m: [N, C/g, K2]; P[n*T+k, c] = sigma u[c]; D[n, k] = v_{n,k} / s_n
            pw = (u[:, :, :t] * sig[:, None, :t]).transpose(0, 2, 1).reshape(n * t, cg, 1, 1)
            dw = vt[:, :t, :].reshape(n, t, kh, kw) / s[:, None, None, None]
            w1, w2, g1, g2 = pw, dw, g, n
        for nm, arr in ((f"{name}__w1", w1), (f"{name}__w2", w2)):
            model.graph.initializer.append(numpy_helper.from_array(arr.astype(np.float32), nm))
        first = onnx.helper.make_node("Conv", [node.input[0], f"{name}__w1"], [mid], name=f"{name}_a", group=g1,
                                      kernel_shape=list(w1.shape[2:]))
        if order == "dw-pw":
            first.attribute.extend(attrs)
        second = onnx.helper.make_node("Conv", [mid, f"{name}__w2", *node.input[2:]], list(node.output), name=f"{name}_b",
                                       group=g2, kernel_shape=list(w2.shape[2:]))
        if order == "pw-dw":
            second.attribute.extend(attrs)
        replaced[name] = [first, second]
    nodes = [new for node in model.graph.node for new in replaced.get(node.name or node.output[0], [node])]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, str(out_path))
    return {"layers": layers, "macs": sum(e["macs"] for e in layers), "macs_decoupled": sum(e["macs_decoupled"] for e in layers)}


def mock_evaluate(model_path, data_path):
    """onnxruntime stand-in for `ndlab evaluate --json`."""
    n, correct, _ = ort_accuracy(model_path, np.load(data_path))
    return {"n": n, "accuracy": correct / n}


def self_test(models):
    """The oracle's own parts: full-rank reference == original; rebuild error == sigma tail; then the whole pipeline
    against the mock CLI (which builds real DW/PW graphs, so reference == decoupled network is checked too)."""
    for tag, path, x, _ in models:
        model = onnx.load(str(path))
        y0 = run(model, x)
        for order in ORDERS:
            full = {layer["name"]: 9 for layer in conv_layers(model)}
            e = rel(run(reference(model, order, full), x), y0)
            check(e <= 1e-5, f"{tag} {order}: full-rank reference vs original {e:.2e}")
            worst = max(abs(err - tail) for layer in conv_layers(model) for t in range(1, 10)
                        for _, err, tail, _ in [rank_t(layer, order, t)])
            check(worst <= 1e-12, f"{tag} {order}: rebuild error vs sigma tail, worst {worst:.2e}")
            print(f"self-test {tag} {order}: full-rank reference vs original {e:.1e}; rebuild error vs tail formula {worst:.1e}")
    for tag, path, x, _ in models:  # decoupled at full rank even past break-even: must equal the original
        for order in ORDERS:
            check_decoupling(f"{tag} {order} T=9 forced", path, x, order, 9, lambda *a: mock_decouple(*a, force=True))
    macs = expected_macs(onnx.load(str(CNN)), "dw-pw", {}, (1, 1, 28, 28))
    check(sum(v[0] for v in macs.values()) == 29_127_168, "CNN conv MACs != 29,127,168 (training log)")


def main():
    """Parse the arguments, insist that every file is there, run the checks, print the summary."""
    self_mode = sys.argv[1:] == ["--self-test"]
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    binary = None if self_mode else pathlib.Path(sys.argv[1]).resolve()
    missing = [p for p in (CNN, CNN_DATA, PNET, PNET_X) + (() if self_mode else (binary,)) if not p.is_file()]
    if missing:
        print(f"FAIL: missing file(s): {', '.join(map(str, missing))}", file=sys.stderr)
        sys.exit(2)
    data = np.load(CNN_DATA)
    pnet_x = np.load(PNET_X)
    tmp = tempfile.TemporaryDirectory()
    pnet_static = pathlib.Path(tmp.name) / "mtcnn_pnet_1x64x48x3.onnx"
    onnx.save(static_copy(onnx.load(str(PNET)), pnet_x.shape), str(pnet_static))
    models = [("fmnist_vgg", CNN, data["x"], True), ("pnet[1,64,48,3]", pnet_static, pnet_x, True)]
    decouple, evaluate = (mock_decouple, mock_evaluate) if self_mode else cli_backend(binary)
    if self_mode:
        self_test(models)
    else:
        # The dynamic original: its size from calibration data of the image (and none: a clear refusal).
        calib = pathlib.Path(tmp.name) / "pnet_calibration.npz"
        np.savez(calib, x=pnet_x)
        models.append(("pnet(dynamic, sized by --calibration)", PNET, pnet_x, True))
        p = subprocess.run([str(binary), "decouple-model", str(PNET), "--out", str(pathlib.Path(tmp.name) / "x.onnx"), "--t", "2"],
                           capture_output=True, text=True, timeout=600)
        check(p.returncode != 0 and "symbolic" in p.stderr and len(p.stderr.strip().splitlines()) == 1,
              f"pnet(dynamic) without data: exit {p.returncode}, stderr {p.stderr.strip()!r}")
    for tag, path, x, strict in models:
        sized = "calibration" in tag
        run_one = (lambda m, o, order, t: decouple(m, o, order, t, str(calib))) if sized else decouple
        for order in ORDERS:
            for t in (TS if strict else (2,)):
                try:
                    check_decoupling(f"{tag} {order} T={t}", path, x, order, t, run_one, strict)
                except (CliError, KeyError, TypeError, ValueError) as e:  # CLI failed, malformed JSON or output
                    check(False, f"{tag} {order} T={t}: {type(e).__name__}: {e}")
    try:
        check_evaluate("evaluate fmnist_vgg", CNN, CNN_DATA, evaluate)
        with tempfile.TemporaryDirectory() as t2:
            out = pathlib.Path(t2) / "dec.onnx"
            decouple(CNN, out, "dw-pw", 2)
            check_evaluate("evaluate fmnist_vgg dw-pw T=2", out, CNN_DATA, evaluate)
    except (CliError, KeyError, TypeError, ValueError) as e:
        check(False, f"evaluate: {type(e).__name__}: {e}")
    print(f"{RESULTS['passed']} passed, {RESULTS['failed']} failed")
    sys.exit(1 if RESULTS["failed"] else 0)


if __name__ == "__main__":
    main()
