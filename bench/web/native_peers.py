#!/usr/bin/env python3
"""Native peers for scripts/bench-native.sh: onnxruntime (CPU, one thread) on the graphs that
bench/web/make_graphs.py wrote, on the same input. Writes DATA_DIR/ort-native.json (median ms per
graph) and each graph's output as DATA_DIR/y_<graph>.npy (the ndlab side compares against them).
Usage: python3 bench/web/native_peers.py DATA_DIR [REPEAT]
"""
import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[var] = "1"

import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

GRAPHS = ["regular"] + [f"{o}_T{t}" for t in (1, 2, 4) for o in ("dw-pw", "pw-dw")]


def main():
    data = sys.argv[1]
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    x = np.load(os.path.join(data, "x.npy"))[None]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    out = {"onnxruntime": ort.__version__, "numpy": np.__version__, "ms": {}, "min_ms": {}}
    for g in GRAPHS:
        s = ort.InferenceSession(os.path.join(data, f"{g}.onnx"), so, providers=["CPUExecutionProvider"])
        y = s.run(None, {"x": x})[0]
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            s.run(None, {"x": x})
            times.append(time.perf_counter() - t0)
        out["ms"][g] = statistics.median(times) * 1e3
        out["min_ms"][g] = min(times) * 1e3
        np.save(os.path.join(data, f"y_{g}.npy"), y[0])
    with open(os.path.join(data, "ort-native.json"), "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
