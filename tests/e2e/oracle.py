"""onnxruntime's verdict on a model and labelled data, for the network end-to-end tests.

    python3 tests/e2e/oracle.py MODEL.onnx DATA.npz [FIRST]        -> {"correct": k, "n": n}
    python3 tests/e2e/oracle.py --idx NPZ OUTDIR                     writes an IDX pair of NPZ

The items from FIRST on are counted (the page takes the first 128 of a user's data as
calibration items; pass 128 then).
"""
import json
import pathlib
import sys

import numpy as np


def accuracy(model, data, first):
    import onnxruntime as ort

    d = np.load(data)
    x, y = d["x"][first:].astype(np.float32), d["y"][first:]
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    correct = 0
    for a in range(0, len(x), 100):
        logits = sess.run(None, {name: x[a : a + 100]})[0]
        correct += int((logits.argmax(1) == y[a : a + 100]).sum())
    return {"correct": correct, "n": int(len(x))}


def write_idx(npz, out):
    d = np.load(npz)
    x = np.rint(d["x"][:, 0] * 255).astype(np.uint8)
    y = d["y"].astype(np.uint8)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n, h, w = x.shape
    (out / "t10k-images-idx3-ubyte").write_bytes(
        bytes([0, 0, 8, 3]) + np.array([n, h, w], ">u4").tobytes() + x.tobytes()
    )
    (out / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + np.array([n], ">u4").tobytes() + y.tobytes())
    print(json.dumps({"images": str(out / "t10k-images-idx3-ubyte"), "labels": str(out / "t10k-labels-idx1-ubyte")}))


if __name__ == "__main__":
    if sys.argv[1] == "--idx":
        write_idx(sys.argv[2], sys.argv[3])
    else:
        print(json.dumps(accuracy(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 0)))
