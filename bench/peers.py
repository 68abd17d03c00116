#!/usr/bin/env python3
"""Peer figures for BENCHMARKS.md: the operations of benches/core.rs with numpy and onnxruntime,
on one thread.

- decoupling a 512->512 3x3 layer: np.linalg.svd on the stacked 512 slices (batched, float64
  like ndlab, factors requested), for both orders;
- forwards of a 256->256 3x3 layer (padding 1) on a 1x256x56x56 input with onnxruntime
  (intra-op threads 1): the regular Conv, DW->PW at T=2 (grouped Conv 256->512, groups 256, then
  a 1x1 Conv 512->256 with bias) and PW->DW at T=2 (1x1 Conv 256->512, then Conv 512->256,
  groups 256, with bias).

Usage: python3 bench/peers.py [--json OUT.json]. Prints a table (median of repeated runs).
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[var] = "1"

import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def median_time(fn, repeat, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def svd_bench(rng):
    w = rng.standard_normal((512, 512, 3, 3)).astype(np.float32) * np.sqrt(2 / (512 * 9))
    w64 = w.astype(np.float64)
    out = {}
    dwpw = lambda: np.linalg.svd(np.transpose(w64, (1, 0, 2, 3)).reshape(512, 512, 9), full_matrices=False)
    pwdw = lambda: np.linalg.svd(w64.reshape(512, 512, 9), full_matrices=False)
    out["decouple_512 dw-pw"] = median_time(dwpw, 7)
    out["decouple_512 pw-dw"] = median_time(pwdw, 7)
    return out


def conv_node(name, x, w, out, group=1, pads=(0, 0, 0, 0), bias=None):
    inputs = [x, w] + ([bias] if bias else [])
    return helper.make_node("Conv", inputs, [out], name=name, group=group, pads=list(pads),
                            strides=[1, 1], dilations=[1, 1])


def session(nodes, inits, c, h, w, n):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, w])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n, h, w])],
        [numpy_helper.from_array(a, name) for name, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def conv_bench(rng):
    n = c = 256
    h = w = 56
    t = 2
    f32 = np.float32
    x = rng.standard_normal((1, c, h, w)).astype(f32)
    k = (rng.standard_normal((n, c, 3, 3)) * np.sqrt(2 / (c * 9))).astype(f32)
    b = rng.standard_normal(n).astype(f32)
    p1 = (1, 1, 1, 1)
    graphs = {
        "regular": ([conv_node("conv", "x", "k", "y", pads=p1, bias="b")], {"k": k, "b": b}),
        "dw-pw_T2": ([conv_node("dw", "x", "dw_w", "mid", group=c, pads=p1),
                      conv_node("pw", "mid", "pw_w", "y", bias="b")],
                     {"dw_w": rng.standard_normal((c * t, 1, 3, 3)).astype(f32),
                      "pw_w": rng.standard_normal((n, c * t, 1, 1)).astype(f32), "b": b}),
        "pw-dw_T2": ([conv_node("pw", "x", "pw_w", "mid"),
                      conv_node("dw", "mid", "dw_w", "y", group=n, pads=p1, bias="b")],
                     {"pw_w": rng.standard_normal((n * t, c, 1, 1)).astype(f32),
                      "dw_w": rng.standard_normal((n, t, 3, 3)).astype(f32), "b": b}),
    }
    macs = {"regular": n * c * 9 * h * w,
            "dw-pw_T2": c * t * 9 * h * w + c * t * n * h * w,
            "pw-dw_T2": n * t * c * h * w + n * t * 9 * h * w}
    out = {}
    for name, (nodes, inits) in graphs.items():
        s = session(nodes, inits, c, h, w, n)
        sec = median_time(lambda: s.run(None, {"x": x}), 15, warmup=3)
        out[f"forward {name}"] = sec
        out[f"forward {name} GFLOP/s"] = 2 * macs[name] / sec / 1e9
    return out


def main():
    rng = np.random.default_rng(0)
    res = {"numpy": np.__version__, "onnxruntime": ort.__version__, "threads": 1}
    res.update(svd_bench(rng))
    res.update(conv_bench(rng))
    for key, val in res.items():
        if isinstance(val, float):
            unit = "" if "GFLOP" in key else " ms"
            val = f"{val:.2f}" if "GFLOP" in key else f"{val * 1e3:.2f}"
            print(f"{key:<32} {val}{unit}")
        else:
            print(f"{key:<32} {val}")
    if "--json" in sys.argv:
        path = sys.argv[sys.argv.index("--json") + 1]
        with open(path, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
