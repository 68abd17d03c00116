#!/usr/bin/env python3
"""Inputs for the browser benchmark (scripts/bench-browser.sh): ONNX graphs, the input and numpy's
native decoupling times, written to OUT_DIR (default target/bench-web/data).

- x.npy: the 1x256x56x56 input (float32, fixed seed).
- regular.onnx: the VGG16-BN conv3_2 layer (assets/, 256->256 3x3, padding 1) as one Conv node.
- dw-pw_T{1,2,4}.onnx: Conv(C -> C*T, group C) then 1x1 Conv(C*T -> N); pw-dw_T{1,2,4}.onnx:
  1x1 Conv(C -> N*T) then Conv(N*T -> N, group N). The factors come from numpy's SVD of the
  slices (METHOD.md), independently of ndlab: both compute conv(x, W_T), so their outputs must agree.
- w512.npy: a 512x512x3x3 He-scaled Gaussian kernel for the decoupling timings.
- numpy.json: numpy's median (and min) time of np.linalg.svd on the stacked slices (float64,
  factors requested, one thread) for the 256 and 512 layers in both orders (svd_ms, svd_min_ms),
  and of the like-for-like Gram route ndlab takes (eigh_ms, eigh_min_ms): G = M^T M (batched
  matmul), np.linalg.eigh(G), P = M V (pointwise rows s_k u_k), sigma_k = ||p_k||; its sigmas are
  checked against svd's.
- tfjs/: the same input and weights in TensorFlow.js's NHWC layouts (transposed here, once, never
  in the timed region): x.npy (1x56x56x256), regular_k.npy (HWIO 3x3x256x256), for DW->PW
  dw-pw_T{t}_dw.npy (3x3xCxT, depthwiseConv2d with channel multiplier T: output channel c*T+i,
  as in the ONNX group-C conv) and dw-pw_T{t}_pw.npy (1x1x(C*T)xN), for PW->DW pw-dw_T{t}_pw.npy
  (1x1xCx(N*T), output channel n*T+i) and pw-dw_T{t}_dw.npy (3x3x(N*T)x1): the float32 values of the
  ONNX graphs' initializers, nothing recomputed.
- ref/: numpy's output (float64 arithmetic on those float32 inputs and weights, NCHW 256x56x56 as
  float32) of every graph: {regular,dw-pw_T{t},pw-dw_T{t}}.npy, the oracle every runtime's output
  is checked against.

Weights are graph initializers (so onnxruntime can pre-pack them, as in real use).
Usage: python3 bench/web/make_graphs.py [OUT_DIR]
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
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAYER = os.path.join(ROOT, "assets/layers/craft_vgg16bn_conv3_2_256x256x3x3.npy")
H = W = 56
TS = (1, 2, 4)


def conv(name, x, w, out, group=1, pad=0):
    return helper.make_node("Conv", [x, w], [out], name=name, group=group, pads=[pad] * 4,
                            strides=[1, 1], dilations=[1, 1])


def save(path, nodes, inits, c, n):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, H, W])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n, H, W])],
        [numpy_helper.from_array(a.astype(np.float32), k) for k, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def dwpw_factors(k, t):
    """DW->PW: slice c is W[:, c] as N x K^2; dw row c*T+i = v_i, pw[n, c*T+i] = s_i u_i[n]."""
    n, c, kh, kw = k.shape
    m = np.transpose(k.astype(np.float64), (1, 0, 2, 3)).reshape(c, n, kh * kw)
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    dw = vt[:, :t, :].reshape(c * t, 1, kh, kw)
    pw = (u[:, :, :t] * s[:, None, :t]).transpose(1, 0, 2).reshape(n, c * t, 1, 1)
    return dw, pw


def pwdw_factors(k, t):
    """PW->DW: slice n is W[n] as C x K^2; pw row n*T+i = s_i u_i, dw filter (n, i) = v_i."""
    n, c, kh, kw = k.shape
    m = k.astype(np.float64).reshape(n, c, kh * kw)
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    pw = (u[:, :, :t] * s[:, None, :t]).transpose(0, 2, 1).reshape(n * t, c, 1, 1)
    dw = vt[:, :t, :].reshape(n, t, kh, kw)
    return dw, pw


def pad1(a):
    """Zero padding of 1 on both spatial sides of a CHW array."""
    return np.pad(a, ((0, 0), (1, 1), (1, 1)))


def windows(a):
    """3x3 windows of a padded CHW array: shape C x H x W x 3 x 3 (a view)."""
    return np.lib.stride_tricks.sliding_window_view(a, (3, 3), axis=(1, 2))


def ref_regular(x, k):
    """conv(x, k), padding 1, in float64 (x: CHW, k: OIHW)."""
    return np.tensordot(k.astype(np.float64), windows(pad1(x.astype(np.float64))), axes=([1, 2, 3], [0, 3, 4]))


def ref_dwpw(x, dw, pw, t):
    """Depthwise (C -> C*T, channel c*T+i from input channel c) then 1x1 (C*T -> N), float64."""
    c = x.shape[0]
    win = windows(pad1(x.astype(np.float64)))
    mid = np.einsum("ctij,chwij->cthw", dw.astype(np.float64).reshape(c, t, 3, 3), win)
    mid = mid.reshape(c * t, -1)
    return (pw.astype(np.float64).reshape(pw.shape[0], -1) @ mid).reshape(-1, *x.shape[1:])


def ref_pwdw(x, dw, pw, t):
    """1x1 (C -> N*T, channel n*T+i) then grouped 3x3 (N*T -> N, group N), float64."""
    c, h, w = x.shape
    mid = pw.astype(np.float64).reshape(-1, c) @ x.astype(np.float64).reshape(c, -1)
    n = mid.shape[0] // t
    win = windows(pad1(mid.reshape(n * t, h, w))).reshape(n, t, h, w, 3, 3)
    return np.einsum("ntij,nthwij->nhw", dw.astype(np.float64).reshape(n, t, 3, 3), win)


def times_ms(fn, repeat=9):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, min(times) * 1e3


def svd_times(k):
    """(median, min) ms of np.linalg.svd on the stacked slices, per order."""
    k64 = k.astype(np.float64)
    n, c = k.shape[:2]
    dwpw = lambda: np.linalg.svd(np.transpose(k64, (1, 0, 2, 3)).reshape(c, n, 9), full_matrices=False)
    pwdw = lambda: np.linalg.svd(k64.reshape(n, c, 9), full_matrices=False)
    return {"dw-pw": times_ms(dwpw), "pw-dw": times_ms(pwdw)}


def stacked(k64, order):
    """The slices of a float64 OIHW kernel as a stack of rows x K^2 matrices (DW->PW: a copy)."""
    n, c = k64.shape[:2]
    if order == "dw-pw":
        return np.transpose(k64, (1, 0, 2, 3)).reshape(c, n, 9)
    return k64.reshape(n, c, 9)


def gram_route(m):
    """numpy's version of ndlab's decoupling route: Gram matrices, eigh, P = M V, sigma = ||p_k||,
    largest first."""
    g = np.matmul(m.transpose(0, 2, 1), m)
    _, v = np.linalg.eigh(g)
    p = np.matmul(m, v[:, :, ::-1])
    return p, np.sqrt(np.einsum("bij,bij->bj", p, p))


def eigh_times(k):
    """(median, min) ms of gram_route on the stacked slices, per order; its sigmas are checked
    against np.linalg.svd's first (the two peers compute the same thing)."""
    k64 = k.astype(np.float64)
    out = {}
    for order in ("dw-pw", "pw-dw"):
        s = np.linalg.svd(stacked(k64, order), compute_uv=False)
        _, sg = gram_route(stacked(k64, order))
        err = np.max(np.abs(np.sort(sg, axis=1)[:, ::-1] - s)) / np.max(s)
        assert err < 1e-6, f"Gram route's sigmas differ from svd's ({order}): {err}"
        out[order] = times_ms(lambda: gram_route(stacked(k64, order)))
    return out


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target/bench-web/data")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    k = np.load(LAYER).astype(np.float32)
    n, c = k.shape[:2]
    x = rng.standard_normal((1, c, H, W)).astype(np.float32)
    np.save(os.path.join(out, "x.npy"), x[0])
    tfjs, ref = os.path.join(out, "tfjs"), os.path.join(out, "ref")
    os.makedirs(tfjs, exist_ok=True)
    os.makedirs(ref, exist_ok=True)
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)
    np.save(os.path.join(tfjs, "x.npy"), f32(x.transpose(0, 2, 3, 1)))
    save(os.path.join(out, "regular.onnx"), [conv("conv", "x", "k", "y", pad=1)], {"k": k}, c, n)
    np.save(os.path.join(tfjs, "regular_k.npy"), f32(k.transpose(2, 3, 1, 0)))
    np.save(os.path.join(ref, "regular.npy"), f32(ref_regular(x[0], k)))
    for t in TS:
        dw, pw = (f32(a) for a in dwpw_factors(k, t))
        save(os.path.join(out, f"dw-pw_T{t}.onnx"),
             [conv("dw", "x", "dw_w", "mid", group=c, pad=1), conv("pw", "mid", "pw_w", "y")],
             {"dw_w": dw, "pw_w": pw}, c, n)
        np.save(os.path.join(tfjs, f"dw-pw_T{t}_dw.npy"), f32(dw.reshape(c, t, 3, 3).transpose(2, 3, 0, 1)))
        np.save(os.path.join(tfjs, f"dw-pw_T{t}_pw.npy"), f32(pw.reshape(n, c * t).T.reshape(1, 1, c * t, n)))
        np.save(os.path.join(ref, f"dw-pw_T{t}.npy"), f32(ref_dwpw(x[0], dw, pw, t)))
        dw, pw = (f32(a) for a in pwdw_factors(k, t))
        save(os.path.join(out, f"pw-dw_T{t}.onnx"),
             [conv("pw", "x", "pw_w", "mid"), conv("dw", "mid", "dw_w", "y", group=n, pad=1)],
             {"dw_w": dw, "pw_w": pw}, c, n)
        np.save(os.path.join(tfjs, f"pw-dw_T{t}_pw.npy"), f32(pw.reshape(n * t, c).T.reshape(1, 1, c, n * t)))
        np.save(os.path.join(tfjs, f"pw-dw_T{t}_dw.npy"), f32(dw.reshape(n * t, 3, 3).transpose(1, 2, 0)[..., None]))
        np.save(os.path.join(ref, f"pw-dw_T{t}.npy"), f32(ref_pwdw(x[0], dw, pw, t)))
    w512 = (rng.standard_normal((512, 512, 3, 3)) * np.sqrt(2 / (512 * 9))).astype(np.float32)
    np.save(os.path.join(out, "w512.npy"), w512)
    t256, t512 = svd_times(k), svd_times(w512)
    e256, e512 = eigh_times(k), eigh_times(w512)
    pick = lambda t, i: {o: v[i] for o, v in t.items()}
    info = {"numpy": np.__version__, "onnx": onnx.__version__,
            "svd_ms": {"256": pick(t256, 0), "512": pick(t512, 0)},
            "svd_min_ms": {"256": pick(t256, 1), "512": pick(t512, 1)},
            "eigh_ms": {"256": pick(e256, 0), "512": pick(e512, 0)},
            "eigh_min_ms": {"256": pick(e256, 1), "512": pick(e512, 1)}}
    with open(os.path.join(out, "numpy.json"), "w") as f:
        json.dump(info, f, indent=2)
    print(json.dumps(info))


if __name__ == "__main__":
    main()
