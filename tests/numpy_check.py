#!/usr/bin/env python3
"""Independent oracle for `ndlab report --json`: per-slice SVDs with numpy.

Usage: python3 tests/numpy_check.py PATH/TO/ndlab [LAYER.npy ...]
Without layers, checks every .npy in assets/layers. For each layer and both orders it compares
singular values, energy kept and relative weight error with numpy (np.linalg.svd, float64),
and the threshold rules at tau = 0.9; re-saves one layer as >f8 Fortran and <f2; runs
`ndlab apply` against a numpy conv of the numpy-truncated kernel. Exits 1 on any mismatch; prints "N passed, M failed".
"""
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np

TOL = 1e-5
ROOT = pathlib.Path(__file__).resolve().parent.parent


def slices(w, order):
    """DW->PW: one N x K^2 matrix per input channel; PW->DW: one C x K^2 matrix per output channel."""
    n, c, kh, kw = w.shape
    if order == "dw-pw":
        return np.transpose(w, (1, 0, 2, 3)).reshape(c, n, kh * kw)
    return w.reshape(n, c, kh * kw)


def expected(w, order, tau):
    m = slices(w.astype(np.float64), order)
    sv = np.linalg.svd(m, compute_uv=False)  # batched, descending
    sq = sv ** 2
    total = sq.sum()
    full = sv.shape[1]
    tail = np.array([sq[:, t:].sum() for t in range(1, full + 1)])
    err = np.sqrt(tail / total)
    per = sq.sum(axis=1)
    frac = np.cumsum(sq[per > 0], axis=1) / per[per > 0, None]
    mean_t = int(np.argmax(frac.mean(axis=0) >= tau - 1e-12)) + 1
    max_t = int(max(np.argmax(f >= tau - 1e-12) + 1 for f in frac))
    return {"sv": sv, "err": err, "energy": 1 - err ** 2, "mean": mean_t, "max": max_t, "full": full}


def compare(name, got, want, scale=1.0):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"{name}: shape {got.shape} != {want.shape}"
    dev = np.max(np.abs(got - want)) / scale if got.size else 0.0
    return None if dev <= TOL else f"{name}: max deviation {dev:.3e} > {TOL}"


def check(binary, path, order, tau=0.9):
    w = np.load(path)
    out = subprocess.run([binary, "report", str(path), "--json", "--order", order, "--threshold", str(tau)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return [f"ndlab exited {out.returncode}: {out.stderr.strip()}"]
    r = json.loads(out.stdout)
    e = expected(w, order, tau)
    problems = []
    if list(r["shape"]) != list(w.shape):
        problems.append(f"shape {r['shape']} != {list(w.shape)}")
    if r["full_rank"] != e["full"]:
        problems.append(f"full_rank {r['full_rank']} != {e['full']}")
    smax = float(e["sv"].max())
    for p in (compare("singular_values", r["singular_values"], e["sv"], smax),
              compare("energy_kept", r["energy_kept"], e["energy"]),
              compare("rel_weight_error", r["rel_weight_error"], e["err"])):
        if p:
            problems.append(p)
    th = r.get("threshold_t", {})
    if (th.get("mean_rule"), th.get("max_rule")) != (e["mean"], e["max"]):
        problems.append(f"threshold T {th} != mean {e['mean']}, max {e['max']}")
    return problems


def truncate(w, order, t):
    """W_T: every slice replaced by its best rank-t approximation (numpy SVD, float64)."""
    n, c, kh, kw = w.shape
    m = slices(w.astype(np.float64), order)
    u, sv, vt = np.linalg.svd(m, full_matrices=False)
    mt = np.einsum("bik,bk,bkj->bij", u[:, :, :t], sv[:, :t], vt[:, :t, :])
    if order == "dw-pw":
        return np.transpose(mt.reshape(c, n, kh, kw), (1, 0, 2, 3))
    return mt.reshape(n, c, kh, kw)


def conv(x, w, b, stride, pad):
    """Direct cross-correlation, float64: x C x H x W, w N x C x Kh x Kw."""
    xp = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad)))
    win = np.lib.stride_tricks.sliding_window_view(xp, w.shape[2:], axis=(1, 2))[:, ::stride, ::stride]
    return np.einsum("chwij,ncij->nhw", win, w) + b[:, None, None]


def check_apply(binary, path, order, t, stride, pad, tmp):
    """`ndlab apply` against numpy: conv(x, W_T) + b."""
    rng = np.random.default_rng(1)
    w = np.load(path)
    x = rng.standard_normal((w.shape[1], 13, 11)).astype(np.float32)
    b = rng.standard_normal(w.shape[0]).astype(np.float32)
    xp, bp, yp = (str(pathlib.Path(tmp) / f) for f in ("x.npy", "b.npy", "y.npy"))
    np.save(xp, x)
    np.save(bp, b)
    out = subprocess.run([binary, "apply", str(path), "--input", xp, "--bias", bp, "--order", order,
                          "--t", str(t), "--stride", str(stride), "--padding", str(pad), "--out", yp],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return [f"ndlab apply exited {out.returncode}: {out.stderr.strip()}"]
    want = conv(x, truncate(w, order, t), b.astype(np.float64), stride, pad)
    got = np.load(yp)
    if got.shape != want.shape:
        return [f"apply output shape {got.shape} != {want.shape}"]
    rel = np.linalg.norm(got - want) / np.linalg.norm(want)
    return [] if rel < 1e-4 else [f"apply output relative deviation {rel:.3e} >= 1e-4"]


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    binary = sys.argv[1]
    layers = [pathlib.Path(p) for p in sys.argv[2:]] or sorted((ROOT / "assets" / "layers").glob("*.npy"))
    passed = failed = 0
    for path in layers:
        for order in ("dw-pw", "pw-dw"):
            problems = check(binary, path, order)
            if problems:
                failed += 1
                print(f"FAIL {path.name} {order}: " + "; ".join(problems))
            else:
                passed += 1
                print(f"ok   {path.name} {order}")
    # The same layer re-saved by numpy as big-endian Fortran-order float64 and as float16.
    with tempfile.TemporaryDirectory() as tmp:
        w = np.load(layers[0])
        variants = {"f8-big-fortran": np.asfortranarray(w.astype(">f8")), "f2": w.astype("<f2")}
        for name, arr in variants.items():
            path = pathlib.Path(tmp) / f"{layers[0].stem}-{name}.npy"
            np.save(path, arr)
            for order in ("dw-pw", "pw-dw"):
                problems = check(binary, path, order)
                if problems:
                    failed += 1
                    print(f"FAIL {path.name} {order}: " + "; ".join(problems))
                else:
                    passed += 1
                    print(f"ok   {path.name} {order}")
        # `apply` end to end against a numpy conv of the numpy-truncated kernel.
        layer = next((p for p in layers if "64x64" in p.name), layers[0])
        for order, t, stride, pad in (("dw-pw", 2, 1, 1), ("pw-dw", 3, 2, 0), ("dw-pw", 9, 1, 2)):
            problems = check_apply(binary, layer, order, t, stride, pad, tmp)
            label = f"apply {layer.name} {order} T={t} s={stride} p={pad}"
            if problems:
                failed += 1
                print(f"FAIL {label}: " + "; ".join(problems))
            else:
                passed += 1
                print(f"ok   {label}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
