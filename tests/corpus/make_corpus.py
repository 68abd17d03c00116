"""Generates the small model-file corpus of tests/corpus (run from anywhere: python3 make_corpus.py).

Good files (one per format) and bad files (one clear message each); tests/corpus/expected.json lists what each
must give. Needs numpy and onnx (PyPI). The PyTorch file is an exact re-creation of torch.save's zip layout
(archive/data.pkl, protocol-2 pickle with persistent ids, archive/data/<key>, archive/version), built with
stand-in `torch` modules so that torch itself is not needed.
"""
import collections, io, json, os, pickle, struct, sys, types, zipfile
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)


def out(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def npy_bytes(a):
    b = io.BytesIO(); np.save(b, a); return b.getvalue()


def safetensors_bytes(tensors, header_extra=None):
    dt = {np.float32: "F32", np.float16: "F16", np.float64: "F64", np.int8: "I8"}
    header, blobs, off = {}, [], 0
    for k, (a, d) in tensors.items():
        raw = a.tobytes() if d != "BF16" else (a.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
        header[k] = {"dtype": d or dt[a.dtype.type], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw); off += len(raw)
    if header_extra: header.update(header_extra)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


# ---- stand-in torch modules so pickle writes the same globals torch.save does ----
torch = types.ModuleType("torch"); utils = types.ModuleType("torch._utils")
class FloatStorage: pass
class LongStorage: pass
FloatStorage.__module__ = LongStorage.__module__ = "torch"
torch.FloatStorage, torch.LongStorage = FloatStorage, LongStorage
def _rebuild_tensor_v2(*a): pass
def _rebuild_parameter(*a): pass
_rebuild_tensor_v2.__module__ = _rebuild_parameter.__module__ = "torch._utils"
utils._rebuild_tensor_v2, utils._rebuild_parameter = _rebuild_tensor_v2, _rebuild_parameter
torch._utils = utils
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils


class Storage:
    def __init__(self, key, kind, arr): self.key, self.kind, self.arr = key, kind, arr


class Tensor:
    def __init__(self, storage, offset, size, stride, param=False):
        self.s, self.o, self.size, self.stride, self.param = storage, offset, size, stride, param
    def __reduce__(self):
        t = (_rebuild_tensor_v2, (self.s, self.o, tuple(self.size), tuple(self.stride), False, collections.OrderedDict()))
        if self.param:
            return (_rebuild_parameter, (Rebuilt(t), False, collections.OrderedDict()))
        return t


class Rebuilt:
    def __init__(self, t): self.t = t
    def __reduce__(self): return self.t


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.kind, obj.key, "cpu", obj.arr.size)
        return None


def contiguous(shape):
    st, acc = [], 1
    for d in reversed(shape): st.insert(0, acc); acc *= d
    return st


def torch_zip(state, storages, extra_files=None, evil=None):
    b = io.BytesIO(); TorchPickler(b, protocol=2).dump(state)
    pkl = evil if evil is not None else b.getvalue()
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as f:
        fixed = lambda n: zipfile.ZipInfo(n, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
        f.writestr(fixed("archive/data.pkl"), pkl)
        for s in storages: f.writestr(fixed(f"archive/data/{s.key}"), s.arr.tobytes())
        f.writestr(fixed("archive/version"), "3\n")
    return z.getvalue()


files = {}

# 1. npz: a conv, its bias, a 3-D array (skipped), a Keras-style HWIO kernel under the same file
w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
b = rng.standard_normal(8).astype(np.float32)
z = io.BytesIO(); np.savez_compressed(z, **{"conv1.weight": w, "conv1.bias": b, "emb": np.ones((2, 3, 4), np.float32)})
out("good.npz", z.getvalue())
files["good.npz"] = {"layers": [{"name": "conv1.weight", "shape": [8, 3, 3, 3], "bias": True}],
                      "check": {"layer": "conv1.weight", "index": [1, 2, 0, 1], "value": float(w[1, 2, 0, 1])}}

# 2. Keras HWIO safetensors (bf16 + f16 + f64 conversions), with kernel:0/bias:0 names
k = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)  # kh, kw, in, out
out("keras_hwio.safetensors", safetensors_bytes({
    "conv2d/kernel:0": (k, None), "conv2d/bias:0": (np.arange(6, dtype=np.float32), None),
    "half/kernel:0": (k.astype(np.float16), None), "bf/kernel:0": (np.array([1.5, -2.0], np.float32).reshape(1, 1, 1, 2), "BF16"),
    "dbl": (k.astype(np.float64), None)}))
files["keras_hwio.safetensors"] = {"layout": "hwio", "layers": [
    {"name": "conv2d/kernel:0", "shape": [6, 4, 3, 5], "bias": True},
    {"name": "half/kernel:0", "shape": [6, 4, 3, 5], "bias": False},
    {"name": "bf/kernel:0", "shape": [2, 1, 1, 1], "bias": False},
    {"name": "dbl", "shape": [6, 4, 3, 5], "bias": False}],
    "check": {"layer": "conv2d/kernel:0", "index": [5, 2, 1, 4], "value": float(k[1, 4, 2, 5])}}

# 3. PyTorch zip state_dict: conv + BN (features.0 / features.1), a Parameter, a transposed (strided) view, a LongStorage
wt = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
bt = rng.standard_normal(4).astype(np.float32)
gam, bet = rng.uniform(0.5, 2, 4).astype(np.float32), rng.standard_normal(4).astype(np.float32)
mean, var = rng.standard_normal(4).astype(np.float32), rng.uniform(0.5, 2, 4).astype(np.float32)
big = np.concatenate([np.zeros(5, np.float32), wt.ravel(), bt, gam, bet, mean, var])
s0 = Storage("0", FloatStorage, big)
tview = rng.standard_normal((3, 2, 1, 1)).astype(np.float32)  # stored as its transpose (2,3,1,1) contiguous
s1 = Storage("1", FloatStorage, np.ascontiguousarray(tview.transpose(1, 0, 2, 3)).ravel())
s2 = Storage("2", LongStorage, np.array([7], np.int64))
o = 5
sd = collections.OrderedDict()
sd["features.0.weight"] = Tensor(s0, o, [4, 2, 3, 3], contiguous([4, 2, 3, 3]), param=True); o += wt.size
for nm, arr in [("features.0.bias", bt), ("features.1.weight", gam), ("features.1.bias", bet),
                ("features.1.running_mean", mean), ("features.1.running_var", var)]:
    sd[nm] = Tensor(s0, o, [4], [1]); o += 4
sd["features.1.num_batches_tracked"] = Tensor(s2, 0, [], [])
sd["head.weight"] = Tensor(s1, 0, [3, 2, 1, 1], [1, 3, 1, 1])
out("state_dict.pth", torch_zip({"model": sd, "epoch": 3}, [s0, s1, s2]))
sc = gam / np.sqrt(var.astype(np.float64) + 1e-5)
files["state_dict.pth"] = {"layers": [
    {"name": "model.features.0.weight", "shape": [4, 2, 3, 3], "bias": True, "bn": "model.features.1"},
    {"name": "model.head.weight", "shape": [3, 2, 1, 1], "bias": False}],
    "check": {"layer": "model.features.0.weight", "index": [2, 1, 0, 2], "value": float(wt[2, 1, 0, 2])},
    "check_folded": {"layer": "model.features.0.weight", "index": [2, 1, 0, 2], "value": float(wt[2, 1, 0, 2] * sc[2]),
                     "bias2": float(sc[2] * (bt[2] - mean[2]) + bet[2])},
    "check2": {"layer": "model.head.weight", "index": [2, 1, 0, 0], "value": float(tview[2, 1, 0, 0])}}

# 4. ONNX with raw_data, asymmetric pads, stride 2, dilation, groups, a BatchNormalization, SAME_UPPER, external data
w1 = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
w2 = rng.standard_normal((6, 6, 3, 3)).astype(np.float32)
inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.ones(6, np.float32), "b1"),
         numpy_helper.from_array(w2, "w2")]
for nm, v in [("g", gam), ("be", bet), ("m", mean), ("v", var)]:
    inits.append(numpy_helper.from_array(np.resize(v, 6).astype(np.float32), nm))
ext = numpy_helper.from_array(w2, "w3"); ext.ClearField("raw_data"); ext.data_location = TensorProto.EXTERNAL
e = ext.external_data.add(); e.key = "location"; e.value = "weights.bin"
inits.append(ext)
nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["y1"], name="<b>conv_a</b>", strides=[2, 2], pads=[0, 1, 2, 1],
                          dilations=[1, 2], group=2),
         helper.make_node("BatchNormalization", ["y1", "g", "be", "m", "v"], ["y2"], epsilon=1e-3),
         helper.make_node("Conv", ["y2", "w2"], ["y3"], name="conv_same", auto_pad="SAME_UPPER"),
         helper.make_node("Conv", ["y3", "w3"], ["y4"], name="conv_ext")]
g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16])],
                      [helper.make_tensor_value_info("y4", TensorProto.FLOAT, None)], inits)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
out("raw_pads.onnx", m.SerializeToString())
g6, be6, m6, v6 = (np.resize(x, 6).astype(np.float64) for x in (gam, bet, mean, var))
sc6 = g6 / np.sqrt(v6 + 1e-3)  # the node's epsilon, not the default
files["raw_pads.onnx"] = {"layers": [
    {"name": "<b>conv_a</b>", "shape": [6, 2, 3, 3], "bias": True, "bn": "y2", "stride": [2, 2], "padding": [0, 1, 2, 1],
     "dilation": [1, 2], "groups": 2},
    {"name": "conv_same", "shape": [6, 6, 3, 3], "bias": False, "stride": [1, 1], "padding": [1, 1, 1, 1],
     "dilation": [1, 1], "groups": 1}],
    "check": {"layer": "<b>conv_a</b>", "index": [4, 1, 2, 0], "value": float(w1[4, 1, 2, 0])},
    "check_folded": {"layer": "<b>conv_a</b>", "index": [4, 1, 2, 0], "value": float(w1[4, 1, 2, 0] * sc6[4]),
                     "bias2": float(sc6[2] * (1.0 - m6[2]) + be6[2])},
    "load_error": {"layer": "conv_ext", "error": "external data file ('weights.bin')"}}

# ---- bad files ----
good_st = safetensors_bytes({"w": (w, None)})
bad = {
    "empty.npy": (b"", "is empty"),
    "camera_renamed.npy": (b"\x89PNG\r\n\x1a\n" + bytes(64), "is a PNG image, not a weights file"),
    "photo_renamed.safetensors": (b"\xff\xd8\xff\xe0" + bytes(64), "is a JPEG image, not a weights file"),
    "wrong_magic.bin": (b"HELLO WORLD, not weights", "not a known weights file"),
    "truncated.npy": (npy_bytes(w)[:200], "truncated .npy"),
    "truncated.safetensors": (good_st[:len(good_st) - 10], "tensor offsets do not match the file size"),
    "header_too_long.safetensors": (struct.pack("<Q", 5000) + b'{"w":' + bytes(20), "runs past the end of the file"),
    "header_huge.safetensors": (struct.pack("<Q", 10**12) + b"{" + bytes(20), "over the 100000000-byte limit"),
    "garbage_json.safetensors": (struct.pack("<Q", 16) + b"{not json!!!!!!}", "not valid JSON"),
    "offset_past_end.safetensors": (safetensors_bytes({"w": (w, None)}, None)[:8] + b"", None),
    "int8.safetensors": (safetensors_bytes({"q": (np.ones((2, 2, 3, 3), np.int8), None)}), "unsupported dtype I8"),
    "only_3d.safetensors": (safetensors_bytes({"t": (np.ones((2, 3, 4), np.float32), None)}), "3-D tensor"),
    "zero_size.npy": (npy_bytes(np.zeros((0, 3, 3, 3), np.float32)), "zero-size tensor"),
    "nan.npy": (npy_bytes(np.where(np.arange(27).reshape(1, 3, 3, 3) == 4, np.nan, 1.0).astype(np.float32)), "non-finite values"),
    "inf.safetensors": (safetensors_bytes({"w": (np.full((1, 1, 3, 3), np.inf, np.float32), None)}), "non-finite values"),
    "huge_shape.npy": (b"\x93NUMPY\x01\x00v\x00" + b"{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 3, 3), }".ljust(117) + b"\n", "too large"),
    "legacy.pth": (b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.", "legacy PyTorch format"),
    "bool.npz": (None, "no conv layer"),
    "script_names.safetensors": (safetensors_bytes({"<script>alert(1)</script>": (w, None)}), None),
    "evil_global.pth": (torch_zip({}, [], evil=b"\x80\x02cos\nsystem\nq\x00X\x06\x00\x00\x00echo hq\x01\x85q\x02Rq\x03."),
                        "refused global 'os.system'"),
    "evil_opcode.pth": (torch_zip({}, [], evil=b"\x80\x02cposix\nsystem\n."), "refused global 'posix.system'"),
    "bad_stride.pth": (None, "runs past its storage"),
    "truncated.onnx": (m.SerializeToString()[:300], "not a valid ONNX model"),
    "truncated.npz": (open(os.path.join(HERE, "good.npz"), "rb").read()[:100], "broken or truncated zip archive"),
}
zb = io.BytesIO(); np.savez(zb, flags=np.ones((2, 2), bool), ids=np.arange(4)); bad["bool.npz"] = (zb.getvalue(), "no conv layer")
s9 = Storage("0", FloatStorage, np.ones(10, np.float32))
sd9 = collections.OrderedDict(w=Tensor(s9, 2, [2, 1, 2, 2], [8, 4, 2, 1]))
bad["bad_stride.pth"] = (torch_zip(sd9, [s9]), "runs past its storage")
del bad["offset_past_end.safetensors"]
hdr = json.dumps({"w": {"dtype": "F32", "shape": [8, 3, 3, 3], "data_offsets": [0, 99999]}}).encode()
bad["offset_past_end.safetensors"] = (struct.pack("<Q", len(hdr)) + hdr + bytes(64), "byte range does not match its shape")

for name, (data, msg) in bad.items():
    out(name, data)
    if name == "script_names.safetensors":
        files[name] = {"layers": [{"name": "<script>alert(1)</script>", "shape": [8, 3, 3, 3], "bias": False}]}
    elif name in ("nan.npy", "inf.safetensors", "bad_stride.pth"):
        files[name] = {"load_error": {"layer": "nan" if name == "nan.npy" else "w", "error": msg}}
    else:
        files[name] = {"error": msg}

with open(os.path.join(HERE, "expected.json"), "w") as f:
    json.dump(files, f, indent=1, sort_keys=True)
print(len(files), "files")
