#!/usr/bin/env python3
"""Independent oracle for ndlab's iterative relatives (CP-ALS and Tucker-2 HOOI) with TensorLy.

Usage: python3 tests/tensorly_check.py [PATH/TO/relatives-example]
(default: builds and runs `cargo run --release -p ndlab-core --example relatives`).

On small real layers it compares ndlab's relative weight errors ‖W − Ŵ‖_F / ‖W‖_F with TensorLy's
(float64 numpy backend):
  * Tucker-2 (modes N and C, ranks [R4, R3]): tensorly.decomposition.partial_tucker (HOSVD start +
    HOOI). Both run HOOI from the same HOSVD start to convergence, so they must agree closely:
    |e_ndlab − e_tl| ≤ 1e-4 + 1e-3·e_tl.
  * CP, four factors (N × C × Kh × Kw) and MobileNet-style (N × C × K²): tensorly parafac. ALS
    finds local minima that depend on the start, so both sides take the best of a few starts
    (ndlab: SVD start + random seeds; TensorLy: init='svd' + init='random' seeds) and must agree
    within a margin: |e_ndlab − e_tl| ≤ 0.005 + 0.10·min(e_ndlab, e_tl). A larger gap in either
    direction means one ALS is broken (or stuck far worse), which is what this oracle is for.
    This two-sided check is on ndlab's plain ALS (`cp`, `cp_mobilenet`), the algorithm parafac runs.
  * The page's ALS adds extrapolated sweeps (`cp_accel`, `cp_mobilenet_accel`), which often end in
    a lower minimum than plain ALS within the same sweep cap, so a two-sided gap to plain parafac is
    no test of it. Instead: its factors are read back and its error is recomputed here with numpy
    (it must equal the reported one: |Δ| ≤ 1e-7 + 1e-5·e), and it must not be worse than TensorLy's
    beyond the same margin: e_ndlab − e_tl ≤ 0.005 + 0.10·min(e_ndlab, e_tl).
Prints "N passed, M failed" and exits 1 on any failure.
"""
import json
import pathlib
import subprocess
import sys

import numpy as np
import tensorly as tl
from tensorly.decomposition import parafac, partial_tucker

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAYERS = ROOT / "assets" / "layers"
RESTARTS = 2
# (file, CP rank, R3, R4): two small real layers (MTCNN ONet conv1, VGG16-BN conv1_1), a few ranks, so
# the whole check takes well under a minute on an idle machine (TensorLy's ALS dominates).
CASES = [
    ("mtcnn_onet_conv1_32x3x3x3.npy", 8, 2, 8),
    ("mtcnn_onet_conv1_32x3x3x3.npy", 16, 3, 16),
    ("craft_vgg16bn_conv1_1_64x3x3x3.npy", 12, 3, 12),
]


def rel(w, approx):
    return float(np.linalg.norm(w - approx) / np.linalg.norm(w))


def tl_cp(x, rank):
    best = np.inf
    for s in range(RESTARTS):
        init = "svd" if s == 0 else "random"
        cp = parafac(tl.tensor(x), rank, n_iter_max=300, init=init, tol=1e-9, random_state=s)
        best = min(best, rel(x, tl.cp_to_tensor(cp)))
    return best


def tl_tucker(w, r3, r4):
    (core, factors), _ = partial_tucker(tl.tensor(w), rank=[r4, r3], modes=[0, 1], n_iter_max=100, tol=1e-10)
    approx = tl.tenalg.multi_mode_dot(core, factors, modes=[0, 1])
    return rel(w, approx)


def ndlab_errors(cmd, path, rcp, r3, r4):
    out = subprocess.run(cmd + ["errors", str(path), str(rcp), str(r3), str(r4), str(RESTARTS)],
                         check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    tl.set_backend("numpy")
    if len(sys.argv) > 1:
        cmd = [sys.argv[1]]
    else:
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "ndlab-core", "--example", "relatives"], check=True, cwd=ROOT)
        cmd = [str(ROOT / "target" / "release" / "examples" / "relatives")]
    passed = failed = 0

    def check(name, ok, detail):
        nonlocal passed, failed
        passed += ok
        failed += not ok
        print(("ok   " if ok else "FAIL ") + name + ": " + detail)

    for fname, rcp, r3, r4 in CASES:
        w = np.load(LAYERS / fname).astype(np.float64)
        nd = ndlab_errors(cmd, LAYERS / fname, rcp, r3, r4)
        n, c, kh, kw = w.shape
        e = tl_tucker(w, r3, r4)
        check(f"{fname} tucker2 [{r3},{r4}]", abs(nd["tucker2"] - e) <= 1e-4 + 1e-3 * e,
              f"ndlab {nd['tucker2']:.6f} tensorly {e:.6f} (ndlab HOSVD {nd['tucker2_hosvd']:.6f})")
        for key, x in (("cp", w), ("cp_mobilenet", w.reshape(n, c, kh * kw))):
            e = tl_cp(x, rcp)
            a = nd[key]
            check(f"{fname} {key} R={rcp}", abs(a - e) <= 0.005 + 0.10 * min(a, e),
                  f"ndlab {a:.6f} tensorly {e:.6f} (best of {RESTARTS}, plain ALS, {nd[key + '_sweeps']} sweeps)")
            f = {k: np.array(v) for k, v in nd[key + "_accel_factors"].items()}
            if key == "cp":
                approx = np.einsum("nr,cr,ir,jr->ncij", f["a"], f["b"], f["ky"], f["kx"])
            else:
                approx = np.einsum("nr,cr,kr->nck", f["a"], f["b"], f["d"])
            mine = rel(x, approx)
            b = nd[key + "_accel"]
            check(f"{fname} {key} R={rcp} extrapolated, error of its factors",
                  abs(b - mine) <= 1e-7 + 1e-5 * mine, f"reported {b:.8f} numpy {mine:.8f}")
            check(f"{fname} {key} R={rcp} extrapolated, not worse than tensorly", b - e <= 0.005 + 0.10 * min(b, e),
                  f"ndlab {b:.6f} tensorly {e:.6f} ({nd[key + '_accel_sweeps']} sweeps)")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
