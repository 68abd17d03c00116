#!/usr/bin/env python3
"""Train ndlab's built-in network: a small VGG-style CNN on the full Fashion-MNIST training set.

Stages (all by default):
  1. train   : 60,000 training images, random crop (pad 2) + horizontal flip, SGD + Nesterov, one-cycle LR,
               fixed seed and data order; the test set is not looked at here. Saves a checkpoint (.pt).
  2. export  : ONNX (opset 17, legacy TorchScript exporter, BatchNormalization kept as separate nodes,
               normalisation inside the graph, dynamic batch), node names conv1.., bn1.., fc1, fc2.
  3. verify  : onnx.checker (full_check) + shape inference; PyTorch and onnxruntime accuracy on the 10k
               test images; max |logit difference|.
  4. subsets : assets/networks/fmnist_test_1000.npz (first 100 test images of each class, test-set order)
               and assets/networks/fmnist_calib_256.npz (256 training images, fixed-seed uniform random
               choice without replacement, NOT stratified); their onnxruntime accuracy.

Usage (from the repo root):
  python3 training/train_fmnist.py                     # everything, 10 epochs (~1 h on 2 shared cores)
  python3 training/train_fmnist.py --skip-train        # re-export / re-verify from training/fmnist_vgg.pt
  python3 training/train_fmnist.py --time-batches 50   # measure the speed of training only, then stop
"""
import argparse
import gzip
import logging
import pathlib
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
# Normalisation constants, baked into the graph. Mean / std of the 60,000 training images' pixels in [0,1]
# (computed by this script and checked at start: 0.28604, 0.35302).
MEAN, STD = 0.2860, 0.3530
log = logging.getLogger("train")


def default_data_dir():
    """Debian's dataset-fashion-mnist if installed, else the project's shared copy beside the repo."""
    deb = pathlib.Path("/usr/share/datasets/fashion-mnist")
    return deb if deb.is_dir() else (ROOT / ".." / "shared" / "data" / "datasets" / "fashion-mnist").resolve()


def read_idx(path):
    """Read a gzipped MNIST IDX file (ubyte images [n,28,28] or labels [n])."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    assert magic >> 8 == 0x08, f"{path}: not ubyte IDX"
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()


def load_split(data_dir, split):
    """(images uint8 [n,28,28], labels int64 [n]) for split 'train' or 't10k'."""
    x = read_idx(pathlib.Path(data_dir) / f"{split}-images-idx3-ubyte.gz")
    y = read_idx(pathlib.Path(data_dir) / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
    return x, y


class VGGish(nn.Module):
    """3x3 conv + BN + ReLU blocks (32,32 | 64,64 | 128,128), 2x2 max-pools, 1152 -> 128 -> 10 head.
    Input: [N,1,28,28] pixels in [0,1]; the normalisation is the first op of the forward."""

    def __init__(self):
        super().__init__()
        chans = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
        for i, (c, n) in enumerate(chans, 1):
            setattr(self, f"conv{i}", nn.Conv2d(c, n, 3, padding=1, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(n))
        self.fc1 = nn.Linear(128 * 3 * 3, 128)
        self.drop = nn.Dropout(0.3)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = (x - MEAN) / STD
        for i in range(1, 7):
            x = F.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
            if i % 2 == 0:
                x = F.max_pool2d(x, 2)
        x = torch.flatten(x, 1)
        return self.fc2(self.drop(F.relu(self.fc1(x))))


def count_macs(model):
    """Exact MACs per image of every Conv2d and Linear (batch 1), as a list of (name, in, out, macs)."""
    rows, hooks = [], []

    def hook(name):
        def f(m, inp, out):
            if isinstance(m, nn.Conv2d):
                k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                macs = out[0].numel() * k
            else:
                macs = m.in_features * m.out_features
            rows.append((name, tuple(inp[0].shape[1:]), tuple(out.shape[1:]), macs))
        return f

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return rows


def augment(xb_padded, gen):
    """Random 28x28 crop of the zero-padded (32x32) uint8 batch and a random horizontal flip; float in [0,1]."""
    b = xb_padded.shape[0]
    dy = torch.randint(0, 5, (b,), generator=gen)
    dx = torch.randint(0, 5, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    ar = torch.arange(28)
    rows = (dy[:, None] + ar)[:, :, None]
    cols = (dx[:, None] + ar)[:, None, :]
    cols = torch.where(flip[:, None, None], dx[:, None, None] + 27 - ar[None, None, :], cols)
    out = xb_padded[torch.arange(b)[:, None, None], rows, cols]
    return (out.float() / 255.0).unsqueeze(1)


@torch.no_grad()
def predict(model, x_u8, batch=1000):
    """Logits (float32 numpy) of the model in eval mode on uint8 images [n,28,28]."""
    model.eval()
    outs = [model(torch.from_numpy(x_u8[i:i + batch]).float().div(255.0).unsqueeze(1)) for i in range(0, len(x_u8), batch)]
    return torch.cat(outs).numpy()


def train(args, model, xtr, ytr):
    """SGD + Nesterov, one-cycle LR, weight decay on conv/linear weights only; returns the trained model."""
    gen = torch.Generator().manual_seed(args.seed)
    xpad = torch.from_numpy(np.pad(xtr, ((0, 0), (2, 2), (2, 2))))
    model.to(memory_format=torch.channels_last)  # ~1.3x faster oneDNN convs on this CPU
    ytr_t = torch.from_numpy(ytr)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=args.lr, momentum=0.9, nesterov=True)
    steps_per_epoch = len(xtr) // args.batch  # drop the last incomplete batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch,
                                                pct_start=0.25, div_factor=20.0, final_div_factor=200.0)
    log.info(f"training: {args.epochs} epochs x {steps_per_epoch} steps, batch {args.batch}, max lr {args.lr}, wd {args.wd}")
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.time()
        perm = torch.randperm(len(xtr), generator=gen)
        tot_loss, tot_ok, seen = 0.0, 0, 0
        for step in range(steps_per_epoch):
            idx = perm[step * args.batch:(step + 1) * args.batch]
            xb, yb = augment(xpad[idx], gen).contiguous(memory_format=torch.channels_last), ytr_t[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot_loss += loss.item() * len(yb)
            tot_ok += (logits.argmax(1) == yb).sum().item()
            seen += len(yb)
            if args.time_batches and step + 1 == args.time_batches:
                dt = time.time() - t0
                log.info(f"timing: {args.time_batches} batches of {args.batch} in {dt:.1f} s -> "
                         f"{dt / args.time_batches * steps_per_epoch:.0f} s per epoch (estimate)")
                return None
        log.info(f"epoch {epoch:2d}/{args.epochs}  train loss {tot_loss / seen:.4f}  train acc {tot_ok / seen:.4f}  "
                 f"lr(end) {sched.get_last_lr()[0]:.5f}  time {time.time() - t0:.1f} s")
    return model.to(memory_format=torch.contiguous_format)


def rename_nodes(model_proto):
    """Give the exported nodes meaningful names: normalize_sub/div, conv1.., bn1.., relu1.., pool1.., flatten, fc1, fc2."""
    counters = {}
    prefix = {"Conv": "conv", "BatchNormalization": "bn", "Relu": "relu", "MaxPool": "pool", "Gemm": "fc",
              "Flatten": "flatten", "Sub": "normalize_sub", "Div": "normalize_div"}
    for node in model_proto.graph.node:
        p = prefix.get(node.op_type, node.op_type.lower())
        counters[p] = counters.get(p, 0) + 1
        node.name = p if p in ("flatten", "normalize_sub", "normalize_div") else f"{p}{counters[p]}"
    relu_ct = counters.get("relu", 0)
    assert relu_ct == 7, f"expected 7 Relu nodes, got {relu_ct}"
    # the 7th Relu is after fc1
    for node in model_proto.graph.node:
        if node.name == "relu7":
            node.name = "relu_fc1"


def tidy_graph(model_proto):
    """Turn the exporter's Constant nodes into named initializers (normalize_mean/std) and undo its initializer
    de-duplication (Identity nodes reading an initializer, e.g. for equal BN vectors): every layer keeps its own
    tensors, so that the graph is only the layers."""
    from onnx import numpy_helper
    g = model_proto.graph
    inits = {t.name: t for t in g.initializer}
    keep, const_names = [], iter(["normalize_mean", "normalize_std"])
    renames = {}
    for node in g.node:
        if node.op_type == "Constant":
            arr = numpy_helper.to_array(node.attribute[0].t)
            name = next(const_names)
            g.initializer.append(numpy_helper.from_array(arr, name))
            renames[node.output[0]] = name
        elif node.op_type == "Identity" and node.input[0] in inits:
            g.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[node.input[0]]), node.output[0]))
        else:
            keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)
    del g.node[:]
    g.node.extend(keep)


def export_onnx(model, path, opset):
    """Legacy exporter, PRESERVE (model in eval mode) and no constant folding so BN stays a separate node."""
    import onnx
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (torch.zeros(1, 1, 28, 28),), str(path), dynamo=False, opset_version=opset,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False, export_params=True)
    m = onnx.load(str(path))
    tidy_graph(m)
    rename_nodes(m)
    m.producer_name = "ndlab training/train_fmnist.py"
    m.doc_string = ("Fashion-MNIST VGG-style CNN trained by ndlab (MIT). Input 'input' float32 [N,1,28,28], "
                    "pixels in [0,1]; normalisation (x-0.2860)/0.3530 inside; output 'logits' [N,10].")
    onnx.save(m, str(path))
    return m


def verify_onnx(path, model, xte, yte, tlog):
    """checker (full), shape inference, graph listing, onnxruntime vs PyTorch accuracy and logits."""
    import onnx
    import onnxruntime as ort
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    tlog.info(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}: checker(full_check=True) OK, shape inference OK; "
              f"opset {[(o.domain or 'ai.onnx', o.version) for o in m.opset_import]}, ir_version {m.ir_version}, "
              f"{path.stat().st_size} bytes, {len(m.graph.initializer)} initializers")
    shapes = {vi.name: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)}
    for node in m.graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        tlog.info(f"  node {node.name:14s} {node.op_type:19s} in={list(node.input)} out={list(node.output)} "
                  f"shape={shapes.get(node.output[0])} {attrs}")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xin = (xte.astype(np.float32) / 255.0)[:, None]
    ort_logits = np.concatenate([sess.run(["logits"], {"input": xin[i:i + 1000]})[0] for i in range(0, len(xin), 1000)])
    pt_logits = predict(model, xte)
    acc_pt = float((pt_logits.argmax(1) == yte).mean())
    acc_ort = float((ort_logits.argmax(1) == yte).mean())
    diff = float(np.abs(ort_logits - pt_logits).max())
    rel = float(np.linalg.norm(ort_logits - pt_logits) / np.linalg.norm(pt_logits))
    tlog.info(f"TEST (10,000 images): PyTorch top-1 {acc_pt:.4f} ({int(round(acc_pt * len(yte)))}/{len(yte)}); "
              f"onnxruntime top-1 {acc_ort:.4f} ({int(round(acc_ort * len(yte)))}/{len(yte)})")
    tlog.info(f"logits onnxruntime vs PyTorch: max |diff| {diff:.3e}, relative (Frobenius) {rel:.3e}; "
              f"argmax disagreements {(ort_logits.argmax(1) != pt_logits.argmax(1)).sum()}")
    per_class = [float((ort_logits.argmax(1)[yte == c] == c).mean()) for c in range(10)]
    tlog.info("per-class test accuracy (onnxruntime): " + ", ".join(f"{CLASSES[c]} {a:.3f}" for c, a in enumerate(per_class)))
    assert diff < 1e-3 and acc_pt == acc_ort, "onnxruntime and PyTorch disagree"
    return sess


def make_subsets(args, sess, xtr, ytr, xte, yte, tlog):
    """Stratified 1000-image test subset and 256 random training images for calibration; their ORT accuracy."""
    idx_test = np.concatenate([np.flatnonzero(yte == c)[:100] for c in range(10)])
    idx_test = np.sort(idx_test).astype(np.int64)  # keep test-set order
    rng = np.random.default_rng(args.seed)
    idx_cal = np.sort(rng.choice(len(xtr), size=256, replace=False)).astype(np.int64)
    for name, idx, x, y, desc in [("fmnist_test_1000.npz", idx_test, xte, yte, "test subset (first 100 per class)"),
                                  ("fmnist_calib_256.npz", idx_cal, xtr, ytr, "calibration (256 train images, uniform)")]:
        xs = (x[idx].astype(np.float32) / 255.0)[:, None]
        ys = y[idx].astype(np.int64)
        out = args.assets / name
        np.savez_compressed(out, x=xs, y=ys, idx=idx)
        logits = sess.run(["logits"], {"input": xs})[0]
        acc = float((logits.argmax(1) == ys).mean())
        tlog.info(f"{name}: {desc}; x {xs.shape} {xs.dtype} in [{xs.min():.1f},{xs.max():.1f}], y {ys.shape} {ys.dtype}, "
                  f"class counts {np.bincount(ys, minlength=10).tolist()}, idx[:5] {idx[:5].tolist()}; "
                  f"onnxruntime top-1 {acc:.4f} ({int((logits.argmax(1) == ys).sum())}/{len(ys)}); {out.stat().st_size} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=pathlib.Path, default=default_data_dir(), help="dir with the four *-ubyte.gz files")
    ap.add_argument("--checkpoint", type=pathlib.Path, default=ROOT / "training" / "fmnist_vgg.pt")
    ap.add_argument("--onnx", type=pathlib.Path, default=ROOT / "assets" / "networks" / "fmnist_vgg.onnx")
    ap.add_argument("--assets", type=pathlib.Path, default=ROOT / "assets" / "networks", help="where the .npz subsets go")
    ap.add_argument("--log", type=pathlib.Path, default=ROOT / "training" / "train_fmnist.log")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--wd", type=float, default=5e-4)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--skip-train", action="store_true", help="load --checkpoint instead of training")
    ap.add_argument("--time-batches", type=int, default=0, help="only time this many training batches, then exit")
    args = ap.parse_args()

    handlers = [logging.StreamHandler(sys.stdout)]
    if not args.time_batches:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(args.log, mode="a" if args.skip_train else "w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S", handlers=handlers)
    log.info("command: " + " ".join(sys.argv))
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    log.info(f"python {sys.version.split()[0]}, torch {torch.__version__}, numpy {np.__version__}, threads {torch.get_num_threads()}, "
             f"seed {args.seed}, data {args.data}")

    xtr, ytr = load_split(args.data, "train")
    xte, yte = load_split(args.data, "t10k")
    log.info(f"train {xtr.shape}, test {xte.shape}; train pixel mean {xtr.mean() / 255:.5f} std {(xtr / 255.0).std():.5f} "
             f"(graph uses {MEAN}, {STD})")

    model = VGGish()
    rows = count_macs(model)
    log.info("layer       input          output         MACs")
    for name, i, o, macs in rows:
        log.info(f"  {name:6s} {str(i):14s} {str(o):14s} {macs:>11,d}")
    conv_macs = sum(r[3] for r in rows if r[0].startswith("conv"))
    lin_macs = sum(r[3] for r in rows if r[0].startswith("fc"))
    log.info(f"MACs per image: conv {conv_macs:,d} + linear {lin_macs:,d} = {conv_macs + lin_macs:,d}; "
             f"params {sum(p.numel() for p in model.parameters()):,d}")
    assert conv_macs + lin_macs <= 50_000_000

    if args.skip_train:
        model.load_state_dict(torch.load(args.checkpoint, map_location="cpu"))
        log.info(f"loaded {args.checkpoint}")
    else:
        t0 = time.time()
        if train(args, model, xtr, ytr) is None:
            return
        log.info(f"training time {time.time() - t0:.0f} s")
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), args.checkpoint)
        log.info(f"saved {args.checkpoint}")

    export_onnx(model, args.onnx, args.opset)
    sess = verify_onnx(args.onnx, model, xte, yte, log)
    make_subsets(args, sess, xtr, ytr, xte, yte, log)


if __name__ == "__main__":
    main()
