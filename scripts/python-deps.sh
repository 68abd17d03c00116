#!/usr/bin/env bash
# Installs the Python packages the tests and benchmarks use (tests/requirements.txt: numpy, onnx,
# onnxruntime, TensorLy, ...) from PyPI; on Debian's externally managed Python, system-wide.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r tests/requirements.txt 2>/dev/null \
  || python3 -m pip install -q --break-system-packages -r tests/requirements.txt
