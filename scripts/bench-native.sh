#!/usr/bin/env bash
# The native benchmark in one command: ndlab (release, one thread) against onnxruntime (PyPI, CPU,
# one thread) and numpy on the layer, input and graphs of the browser benchmark; prints JSON (also
# written to target/bench-web/native.json).   bash scripts/bench-native.sh [REPEAT]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/python-deps.sh >&2    # numpy, onnx, onnxruntime
DATA=target/bench-web/data
REPEAT="${1:-9}"
echo "==> ONNX graphs, input and numpy timings" >&2
python3 bench/web/make_graphs.py "$DATA" >&2
echo "==> onnxruntime (native)" >&2
python3 bench/web/native_peers.py "$DATA" "$REPEAT"
echo "==> ndlab (native)" >&2
cargo build --release -p ndlab-core --example bench_native >&2
target/release/examples/bench_native "$DATA" "$REPEAT" | tee target/bench-web/native.json
