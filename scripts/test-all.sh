#!/usr/bin/env bash
# Installs what the tests need and runs every test: formatting, clippy (native and wasm), the
# native tests, the NumPy and TensorLy cross-checks, the wasm tests in headless Chromium, the release build
# under a sub-path, and the end-to-end tests. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  step "installing chromium and chromium-driver"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi

if [ -f tests/requirements.txt ]; then
  step "python test requirements"
  bash scripts/python-deps.sh
fi

step "cargo fmt --check"
cargo fmt --check

step "clippy (native)"
cargo clippy --workspace --all-targets -- -D warnings
step "clippy (wasm32)"
cargo clippy --target wasm32-unknown-unknown --workspace --lib --bins -- -D warnings

step "native tests"
cargo test --workspace

step "fuzz every file reader for a few seconds (scripts/fuzz.sh; longer runs: scripts/fuzz.sh 600)"
bash scripts/fuzz.sh 5

step "release binaries"
cargo build --release -p ndlab-cli --bin ndlab
cargo build --release -p ndlab-lab --example expected_errors
cargo build --release -p ndlab-core --example relatives
cargo build --release -p ndlab-core --example data_aware
if [ -f tests/numpy_check.py ]; then
  step "NumPy cross-check"
  python3 tests/numpy_check.py target/release/ndlab
fi
step "data-aware decoupling against NumPy's closed forms"
python3 tests/data_aware_check.py target/release/examples/data_aware
step "whole networks: decouple-model and evaluate against numpy and onnxruntime (two real models)"
python3 tests/network_check.py target/release/ndlab
if [ -f tests/tensorly_check.py ]; then
  step "TensorLy cross-check (CP-ALS, Tucker-2)"
  python3 tests/tensorly_check.py target/release/examples/relatives
fi

step "wasm tests in headless Chromium"
WB_VERSION=$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if ! wasm-bindgen-test-runner --version 2>/dev/null | grep -q "$WB_VERSION"; then
  echo "wasm-bindgen-test-runner $WB_VERSION missing (it comes with wasm-bindgen-cli)" >&2; exit 1
fi
CHROMEDRIVER=$(command -v chromedriver) \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test --target wasm32-unknown-unknown -p ndlab-web --test wasm
step "wasm tests again with the relaxed-SIMD (FMA) GEMM kernel (the ndlab-worker-fma build)"
CHROMEDRIVER=$(command -v chromedriver) \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test --target wasm32-unknown-unknown -p ndlab-web --test wasm --features relaxed-simd

step "release build under /ndlab/"
trunk build --release --public-url /ndlab/
step "only the FMA worker has relaxed-SIMD opcodes (the others must load where relaxed SIMD does not validate)"
RELAXED_OP='(f32x4|f64x2|i8x16|i16x8|i32x4)\.relaxed_'
for w in ndlab-worker ndlab-worker-fma ndlab-app; do
  wasm-dis --all-features "dist/${w}_bg.wasm" -o "target/${w}.wat"
done
if grep -qE "$RELAXED_OP" target/ndlab-worker.wat target/ndlab-app.wat; then
  echo "relaxed-SIMD opcodes in the SIMD128 worker or the app" >&2; exit 1
fi
grep -q 'f32x4.relaxed_madd' target/ndlab-worker-fma.wat || { echo "no f32x4.relaxed_madd in the FMA worker" >&2; exit 1; }

step "end-to-end tests"
node --test tests/e2e/
