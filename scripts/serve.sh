#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), then serves the app at http://127.0.0.1:8080/
# with live rebuilds. Extra arguments go to `trunk serve` (e.g. --release, --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/node_modules/.bin:$HOME/.cargo/bin:$PATH"
exec trunk serve --address 127.0.0.1 --port 8080 "$@"
