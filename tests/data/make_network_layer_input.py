"""Writes fmnist_conv4_input_item7.npy: what feeds conv4 of the built-in Fashion-MNIST network on
item 7 of its test subset, computed by onnxruntime (the graph's intermediate value exposed as an
output). The oracle of crates/ndlab-lab/tests/network.rs's lab-layer test.

    python3 tests/data/make_network_layer_input.py
"""
import pathlib

import numpy as np
import onnx
import onnxruntime as ort

root = pathlib.Path(__file__).resolve().parents[2]
model = onnx.load(root / "assets/networks/fmnist_vgg.onnx")
value = "/Relu_2_output_0"  # conv4's input
model.graph.output.append(onnx.helper.make_empty_tensor_value_info(value))
sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
x = np.load(root / "assets/networks/fmnist_test_1000.npz")["x"][7:8].astype(np.float32)
out = sess.run([value], {"input": x})[0]
np.save(pathlib.Path(__file__).with_name("fmnist_conv4_input_item7.npy"), out[0].astype(np.float32))
print(out.shape, float(np.abs(out).mean()))
