#!/usr/bin/env bash
# The page benchmark of the equal-cost comparison (bench/page/compare.mjs): time to the seven rows
# and to the Pareto plot on the default 256→256 layer in headless Chromium, with the pool of
# comparison workers against one worker, interleaved, and T changes while it computes. Builds the
# page first. Prints JSON (also target/bench-page/compare.json).
# With --network, the whole-network view instead (bench/page/network.mjs): first accuracy, one
# accuracy point, one layer's T edited, the curve and the main thread's longest task while it computes.
#   bash scripts/bench-page.sh [--network] [--repeat N]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
bash scripts/setup.sh >&2
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi
trunk build --release --public-url /ndlab/ >&2
if [ "${1:-}" = "--network" ]; then
  shift
  node bench/page/network.mjs "$@"
else
  node bench/page/compare.mjs "$@"
fi
