#!/usr/bin/env python3
"""Make tests/data/pnet_astronaut_64x48.npy: a real NHWC input for the MTCNN P-Net oracle checks.

Source: assets/images/astronaut_256.png (public domain, NASA; via scikit-image 0.26.0, see ATTRIBUTION.md).
Crop rows 0..255, columns 32..223 (256 x 192, the astronaut's head and shoulders), 4x4 box average in float64
(exact, no resampling library involved) -> 64 x 48 RGB, then P-Net's preprocessing (pixel - 127.5) * 0.0078125.
Non-square on purpose (catches H/W mix-ups). Output float32 [1, 64, 48, 3].
Usage: python3 tests/data/make_pnet_input.py   (needs numpy and Pillow, only to decode the PNG)
"""
import pathlib

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
img = np.asarray(Image.open(ROOT / "assets" / "images" / "astronaut_256.png").convert("RGB"), dtype=np.float64)
crop = img[0:256, 32:224]
small = crop.reshape(64, 4, 48, 4, 3).mean(axis=(1, 3))
x = ((small - 127.5) * 0.0078125).astype(np.float32)[None]
out = ROOT / "tests" / "data" / "pnet_astronaut_64x48.npy"
np.save(out, x)
print(out, x.shape, x.dtype, float(x.min()), float(x.max()))
