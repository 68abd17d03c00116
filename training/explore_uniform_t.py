#!/usr/bin/env python3
"""What to expect from whole-network decoupling of the Fashion-MNIST CNN at one T for every layer (numpy + onnx +
onnxruntime only; no torch).

Every 3x3 conv of assets/networks/fmnist_vgg.onnx gets numpy's rank-T rebuild of its BN-folded kernel, un-scaled back
(the reference of tests/network_check.py: data-free ND, METHOD.md's slices, T capped at each layer's full rank), for
T = 1..9 and both orders; top-1 on the full 10k test set and on assets/networks/fmnist_test_1000.npz; conv MACs per
METHOD.md. Variant "conv1 kept": the first layer (1 -> 32) stays regular. Then single-layer sensitivity: one layer
at a time at T = 1..8, the others regular, top-1 on the 1000-image subset (cheap; what a MAC-budget allocator needs).
Last, a greedy per-layer allocation for a MAC budget (conv MACs / X, X = 1.5 and 2), driven only by the 256
training images of fmnist_calib_256.npz (label-free: relative logit error against the original), then scored on
the test set: what `--speedup X` can be expected to reach without fine-tuning. Writes a Markdown report.

Usage (repo root): python3 training/explore_uniform_t.py [--data DIR] [--out training/EXPLORATION.md]
"""
import argparse
import gzip
import pathlib
import sys
import time

import numpy as np
import onnx

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import network_check as nc  # noqa: E402  (conv_layers, rank_t, reference, expected_macs, run)


def read_idx(path):
    """A gzipped MNIST IDX ubyte file as a numpy array."""
    data = gzip.open(path, "rb").read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def logits(model, x):
    """First output of the model on x, in batches of 1000."""
    return nc.run(model, x)[0]


_rank_cache = {}


def cached_rank_t(layer, order, t):
    """nc.rank_t memoised on (layer name, order, t): the greedy search asks for the same rebuilds many times."""
    key = (layer["name"], order, t)
    if key not in _rank_cache:
        _rank_cache[key] = _rank_t(layer, order, t)
    return _rank_cache[key]


_rank_t, nc.rank_t = nc.rank_t, cached_rank_t


def greedy(model, order, layers, calib, budget):
    """METHOD.md's MAC-budget allocation: start with every layer regular; at each step try every lower T of every
    layer that is cheaper than now, and take the one with the smallest increase of the calibration logits' relative
    error (against the original's logits, no labels) per conv MAC saved; stop when conv MACs <= budget.
    Returns ({name: t}, conv MACs, calibration error)."""
    z0 = logits(model, calib)
    macs_of = lambda tm: sum(v[1] for v in nc.expected_macs(model, order, tm, (1, 1, 28, 28)).values())  # noqa: E731
    err_of = lambda tm: float(np.linalg.norm(logits(nc.reference(model, order, tm), calib) - z0) / np.linalg.norm(z0))  # noqa: E731
    tmap, err, macs = {}, 0.0, macs_of({})
    while macs > budget:
        best = None
        for layer in layers:
            name, full = layer["name"], nc.rank_t(layer, order, 1)[3]
            for t in range(min(tmap.get(name, full + 1) - 1, full), 0, -1):
                cand = {**tmap, name: t}
                m = macs_of(cand)
                if m >= macs:
                    continue
                e = err_of(cand)
                score = max(e - err, 0.0) / (macs - m)
                if best is None or score < best[0]:
                    best = (score, cand, m, e)
        if best is None:
            break
        _, tmap, macs, err = best
    return tmap, macs, err


def main():
    """Evaluate every (order, T, variant), print and write the tables."""
    deb = pathlib.Path("/usr/share/datasets/fashion-mnist")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=pathlib.Path, default=deb if deb.is_dir() else ROOT.parent / "shared/data/datasets/fashion-mnist")
    ap.add_argument("--model", type=pathlib.Path, default=nc.CNN)
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "training" / "EXPLORATION.md")
    args = ap.parse_args()
    model = onnx.load(str(args.model))
    xte = (read_idx(args.data / "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0)[:, None]
    yte = read_idx(args.data / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    sub = np.load(nc.CNN_DATA)
    assert np.array_equal(sub["x"], xte[sub["idx"]]) and np.array_equal(sub["y"], yte[sub["idx"]]), "subset != test[idx]"
    layers = nc.conv_layers(model)
    names = [layer["name"] for layer in layers]

    def evaluate(m):
        lg = logits(m, xte)
        ls = logits(m, sub["x"])
        assert np.allclose(ls, lg[sub["idx"]], rtol=1e-4, atol=1e-4), "subset logits differ from the full run's"
        return float((lg.argmax(1) == yte).mean()), float((ls.argmax(1) == sub["y"]).mean())

    t0 = time.time()
    base = evaluate(model)
    base_macs = sum(v[0] for v in nc.expected_macs(model, "dw-pw", {}, (1, 1, 28, 28)).values())
    print(f"original: top-1 10k {base[0]:.4f}, 1000 {base[1]:.4f}, conv MACs {base_macs:,}", flush=True)
    rows, errs = [], {}
    for variant, skip in (("all 3x3 convs", ()), ("conv1 kept", ("conv1",))):
        for order in nc.ORDERS:
            for t in range(1, 10):
                tmap = {n: min(t, nc.rank_t(layer, order, 1)[3]) for n, layer in zip(names, layers) if n not in skip}
                macs = sum(v[1] for v in nc.expected_macs(model, order, tmap, (1, 1, 28, 28)).values())
                acc = evaluate(nc.reference(model, order, tmap))
                if variant == "all 3x3 convs":
                    errs[(order, t)] = [nc.rank_t(layer, order, t)[1] for layer in layers]
                rows.append((variant, order, t, macs, acc))
                print(f"{variant:13s} {order} T={t}: conv MACs {macs:,} ({base_macs / macs:.2f}x), "
                      f"top-1 10k {acc[0]:.4f}, 1000 {acc[1]:.4f}  [{time.time() - t0:.0f} s]", flush=True)

    md = ["# Uniform-T decoupling of the Fashion-MNIST CNN: what to expect", "",
          f"Made by `python3 training/explore_uniform_t.py` (numpy {np.__version__}, onnx {onnx.__version__}, "
          f"onnxruntime {nc.ort.__version__}) on `{args.model.relative_to(ROOT)}`.", "",
          "Every 3x3 conv gets numpy's rank-T rebuild of its BN-folded kernel `W_eff = diag(g/sqrt(v+eps)) W`, un-scaled "
          "back so the BatchNormalization node stays (data-free ND, no fine-tuning; the reference of "
          "`tests/network_check.py`). T is capped at each layer's full rank (`min(N, 9)` DW->PW, `min(C, 9)` PW->DW). "
          "MACs: conv MACs per image (batch 1) by METHOD.md's formulas with **every** listed layer decoupled, even where "
          "that costs more than the regular conv (break-even); the two linear layers (148,736 MACs) are not included.", "",
          f"Original: top-1 **{base[0] * 100:.2f} %** on the 10,000 test images, **{base[1] * 100:.1f} %** on the "
          f"1000-image subset; conv MACs **{base_macs:,}**.", ""]
    for variant in ("all 3x3 convs", "conv1 kept"):
        md += [f"## {variant}" + (" (conv1, 1 -> 32, stays regular)" if variant == "conv1 kept" else ""), "",
               "| T | DW->PW conv MACs | speed-up | top-1 10k | top-1 1000 | PW->DW conv MACs | speed-up | top-1 10k | top-1 1000 |",
               "|---|---|---|---|---|---|---|---|---|"]
        for t in range(1, 10):
            cells = []
            for order in nc.ORDERS:
                (_, _, _, macs, acc), = [r for r in rows if r[0] == variant and r[1] == order and r[2] == t]
                cells += [f"{macs:,}", f"{base_macs / macs:.2f}x", f"{acc[0] * 100:.2f} %", f"{acc[1] * 100:.1f} %"]
            md.append(f"| {t} | " + " | ".join(cells) + " |")
        md.append("")
    md += ["## Single-layer sensitivity (top-1 % on the 1000-image subset; only that layer decoupled at T, others regular)", "",
           f"Original on the subset: {base[1] * 100:.1f} %. MACs saved: that layer's regular MACs minus its decoupled MACs "
           "(negative = the decoupled layer costs more).", "",
           "| order | layer | regular MACs | " + " | ".join(f"T={t}" for t in range(1, 9)) + " | saved at T=1 / 2 / 4 |",
           "|---|---|---|" + "---|" * 9]
    for order in nc.ORDERS:
        for name, layer in zip(names, layers):
            accs, saved = [], {}
            for t in range(1, 9):
                tmap = {name: min(t, nc.rank_t(layer, order, 1)[3])}
                reg, dec = nc.expected_macs(model, order, tmap, (1, 1, 28, 28))[name]
                saved[t] = reg - dec
                ls = logits(nc.reference(model, order, tmap), sub["x"])
                accs.append(float((ls.argmax(1) == sub["y"]).mean()))
            print(f"sensitivity {order} {name}: " + " ".join(f"{a:.3f}" for a in accs), flush=True)
            md.append(f"| {order} | {name} | {reg:,} | " + " | ".join(f"{a * 100:.1f}" for a in accs)
                      + f" | {saved[1]:,} / {saved[2]:,} / {saved[4]:,} |")
    md.append("")
    calib = np.load(nc.ROOT / "assets" / "networks" / "fmnist_calib_256.npz")["x"]
    md += ["## MAC budget: greedy per-layer T from 256 calibration (training) images, scored on the test set", "",
           "Each step lowers one layer's T by the smallest increase in calibration logit error (relative to the "
           "original's logits, no labels) per conv MAC saved, until conv MACs <= original / X. `-` = layer kept regular.", "",
           "| order | X | conv MACs | speed-up | calib. logit error | " + " | ".join(f"T {n}" for n in names)
           + " | top-1 10k | top-1 1000 |", "|---|---|---|---|---|" + "---|" * (len(names) + 2)]
    for order in nc.ORDERS:
        for x in (1.5, 2.0):
            tmap, macs, err = greedy(model, order, layers, calib, base_macs / x)
            acc = evaluate(nc.reference(model, order, tmap))
            print(f"greedy {order} {x}x: {tmap} MACs {macs:,} calib err {err:.3f} top-1 {acc[0]:.4f} {acc[1]:.4f}", flush=True)
            md.append(f"| {order} | {x} | {macs:,} | {base_macs / macs:.2f}x | {err:.3f} | "
                      + " | ".join(str(tmap.get(n, "-")) for n in names) + f" | {acc[0] * 100:.2f} % | {acc[1] * 100:.1f} % |")
    md.append("")
    md += ["## Relative weight error per layer (BN-folded kernel), `||W_eff - W_T|| / ||W_eff||`", "",
           "| order | T | " + " | ".join(f"{n} {tuple(l['W'].shape)}" for n, l in zip(names, layers)) + " |",
           "|---|---|" + "---|" * len(names)]
    for order in nc.ORDERS:
        for t in range(1, 10):
            md.append(f"| {order} | {t} | " + " | ".join(f"{e:.3f}" for e in errs[(order, t)]) + " |")
    args.out.write_text("\n".join(md) + "\n")
    print(f"wrote {args.out} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
