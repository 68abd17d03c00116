#!/usr/bin/env python3
"""What to expect from whole-network decoupling of the Fashion-MNIST CNN at one T for every layer (numpy + onnx +
onnxruntime only; no torch).

Every 3x3 conv of assets/networks/fmnist_vgg.onnx gets numpy's rank-T rebuild of its BN-folded kernel, un-scaled back
(the reference of tests/network_check.py: data-free ND, METHOD.md's slices, T capped at each layer's full rank), for
T = 1..9 and both orders; top-1 on the full 10k test set and on assets/networks/fmnist_test_1000.npz; conv MACs per
METHOD.md. Variant "conv1 kept": the first layer (1 -> 32) stays regular. Writes a Markdown report.

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
    return np.concatenate([nc.run(model, x[i:i + 1000])[0] for i in range(0, len(x), 1000)])


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
