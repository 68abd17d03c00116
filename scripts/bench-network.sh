#!/usr/bin/env bash
# The whole-network results of the README in one command: the built-in Fashion-MNIST CNN's top-1
# accuracy on the 10,000 test images against its conv MACs for every strategy, both orderings,
# data-free and data-aware, at 1.5×, 2×, 3× and 4× fewer conv MACs, and its measured time natively
# (crates/ndlab-cli/examples/network_results.rs). Prints JSON (also written to
# target/bench-network/results.json) and a Markdown table.   bash scripts/bench-network.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
DATA=/usr/share/datasets/fashion-mnist
if [ ! -f "$DATA/t10k-images-idx3-ubyte.gz" ]; then
  echo "==> installing the Fashion-MNIST test set (apt: dataset-fashion-mnist)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >&2
fi
mkdir -p target/bench-network
cargo build --release -p ndlab-cli --example network_results >&2
target/release/examples/network_results assets/networks/fmnist_vgg.onnx assets/networks/fmnist_calib_256.npz \
  "$DATA/t10k-images-idx3-ubyte.gz" target/bench-network/results.json > /dev/null
python3 bench/network_table.py target/bench-network/results.json
