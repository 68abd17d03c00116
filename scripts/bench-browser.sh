#!/usr/bin/env bash
# The browser benchmark in one command: ndlab (wasm32 + SIMD128, one thread; and its relaxed-SIMD
# FMA build, interleaved, where Chromium has relaxed SIMD) against two peers, onnxruntime-web (npm,
# wasm backend, SIMD, numThreads = 1) and TensorFlow.js (npm, tfjs-backend-wasm: XNNPACK, SIMD, one
# thread), in headless Chromium, on the same layer, input and graphs, with this machine's wasm
# SIMD128 and FMA peaks, and ndlab's decoupling time against numpy's (svd, and the Gram + eigh route);
# prints JSON (also written to target/bench-web/result.json). Every runtime's output is checked against
# numpy's: a disagreement (or any failure) ends it with exit code 1 and no JSON.
#   bash scripts/bench-browser.sh [--repeat N] [--only regular,dw-pw:2,decouple,peak,…]   (--only: a
#   subset of the graphs and/or the decouplings; `peak` alone: only the peaks)
# On a fresh machine it installs what it needs: the npm packages (npm ci, from package-lock.json)
# and the Python packages of tests/requirements.txt (numpy, onnx, … for make_graphs.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh >&2          # wasm target, wasm-bindgen-cli, npm packages
bash scripts/python-deps.sh >&2    # numpy, onnx, onnxruntime (the graphs and numpy's timings)
for pkg in onnxruntime-web @tensorflow/tfjs-core @tensorflow/tfjs-backend-wasm playwright-core; do
  if [ ! -f "node_modules/$pkg/package.json" ]; then
    npm ci --no-audit --no-fund >&2
    break
  fi
done
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi
OUT=target/bench-web
# cargo's target dir (CARGO_TARGET_DIR when set: the .wasm is not under ./target then)
WASM="${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/examples/bench_web.wasm"
echo "==> ONNX graphs, input and numpy timings (bench/web/make_graphs.py)" >&2
python3 bench/web/make_graphs.py "$OUT/data" >&2
echo "==> ndlab benchmark module (crates/ndlab-core/examples/bench_web.rs, wasm32 release)" >&2
cargo build --release --target wasm32-unknown-unknown -p ndlab-core --example bench_web >&2
wasm-bindgen --target web --no-typescript --out-dir "$OUT/pkg" \
  "$WASM" >&2
echo "==> the same with relaxed SIMD (--features relaxed-simd: FMA micro-kernel; timed where the browser has it)" >&2
# (same target dir: cargo keeps both feature sets' artifacts; the .wasm is bound before the next build)
cargo build --release --target wasm32-unknown-unknown -p ndlab-core --example bench_web --features ndlab-core/relaxed-simd >&2
wasm-bindgen --target web --no-typescript --out-dir "$OUT/pkg-fma" \
  "$WASM" >&2
echo "==> running in headless Chromium" >&2
node bench/web/run.mjs --out "$OUT/result.json" "$@"
