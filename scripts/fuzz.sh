#!/usr/bin/env bash
# Fuzzes every file reader (cargo-fuzz / libFuzzer) for SECONDS each (default 60), seeded with
# the bad-input corpus of tests/corpus/ and the real example layers. A crash, panic, timeout or
# out-of-memory stops the script with the reproducer path; new interesting inputs are kept in
# target/fuzz-corpus/<target>/ (not committed).
#   scripts/fuzz.sh            # a minute per target
#   scripts/fuzz.sh 5          # a few seconds each (what scripts/test-all.sh runs)
#   FUZZ_TARGETS="onnx_graph" scripts/fuzz.sh 60   # only some targets
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}
export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.12.0 --locked
fi
# cargo-fuzz passes a few unstable flags to rustc; there is no nightly toolchain here (only the
# package registries are reachable), so the stable compiler is asked to accept them. The address
# sanitizer needs nightly's std, so targets run without it: Rust's own checks still catch
# out-of-bounds access, overflow (debug assertions on) and panics.
export RUSTC_BOOTSTRAP=1
read -ra TARGETS <<<"${FUZZ_TARGETS:-npy npz safetensors onnx torch pickle onnx_graph}"
ext_of() {
  case "$1" in
    torch) echo "pth pt" ;;
    onnx_graph) echo "onnx" ;;
    pickle) echo "pkl" ;;
    *) echo "$1" ;;
  esac
}
# Short runs (the test command's) build unoptimised, which compiles several times faster; long
# runs build optimised with debug assertions kept.
if [ "$SECS" -le 30 ]; then PROFILE=(--dev); else PROFILE=(-O --debug-assertions); fi
cargo fuzz build -s none "${PROFILE[@]}"
for t in "${TARGETS[@]}"; do
  seeds="target/fuzz-seeds/$t"
  work="target/fuzz-corpus/$t"
  rm -rf "$seeds" && mkdir -p "$seeds" "$work"
  for e in $(ext_of "$t"); do
    find tests/corpus assets/layers -maxdepth 1 -name "*.$e" -size -2M -exec cp {} "$seeds/" \; || true
  done
  if [ "$t" = pickle ]; then
    # The pickles inside the PyTorch files of the corpus.
    python3 - "$seeds" tests/corpus/*.pth <<'PY' || true
import sys, zipfile
out = sys.argv[1]
for i, path in enumerate(sys.argv[2:]):
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if name.endswith(".pkl"):
                    open(f"{out}/{i}_{name.replace('/', '_')}", "wb").write(z.read(name))
    except zipfile.BadZipFile:
        pass
PY
  fi
  if [ "$t" = onnx_graph ]; then
    # The graph corpus (good and hostile models) and the real P-Net.
    cp tests/corpus/graphs/*.onnx tests/data/mtcnn_pnet.onnx "$seeds/" 2>/dev/null || true
  fi
  # Any corpus file is a useful seed for the format-sniffing front end too.
  cp tests/corpus/wrong_magic.bin "$seeds/" 2>/dev/null || true
  echo "==> fuzz $t for ${SECS}s ($(ls "$seeds" | wc -l) seeds)"
  log="target/fuzz-$t.log"
  if ! cargo fuzz run -s none "${PROFILE[@]}" "$t" "$work" "$seeds" -- \
    -max_total_time="$SECS" -rss_limit_mb=3072 -timeout=20 -max_len=1048576 -print_final_stats=1 >"$log" 2>&1; then
    grep -E "panicked|==[0-9]+==|SUMMARY|Test unit written|error" "$log" | tail -20 >&2 || tail -20 "$log" >&2
    echo "fuzz target $t failed: see $log and fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$log" | tr '\n' ' '; echo
done
echo "fuzzing done: ${#TARGETS[@]} targets, ${SECS}s each"
