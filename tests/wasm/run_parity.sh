#!/usr/bin/env bash
# `make test-wasm-parity`: the PyTorch-reference parity checkers (tests/parity/check_*.py) against both wasm builds in
# Node through tests/wasm/logits_dump.mjs, then the threaded build's pool (tests/wasm/threads.mjs). Every runner runs
# even if one fails; ends with one line "wasm parity: N passed, N failed" (exit 1 if any failed).
#   tests/wasm/run_parity.sh [RANDOM_MODEL.gguf]     (the model for threads.mjs's timing; skipped without one)
# Logs: build/wasm-parity/<build>-<fixture>.log, build/wasm-parity/threads.log
set -u
cd "$(dirname "$0")/../.."
MODEL=${1-}
PY=${PY:-/usr/bin/python3}
NODE=${NODE:-node}
LOGS=build/wasm-parity
mkdir -p "$LOGS"
rm -f "$LOGS"/*.log
# simd ignores --threads (its pool is always 1): one thread count; simd-mt: 1 and 2, as the native test-parity.
for spec in "simd 1" "simd-mt 1 2"; do
  set -- $spec
  build=$1; shift
  tool="$NODE tests/wasm/logits_dump.mjs --build $build"
  echo "=== $build: tiny (every file type)"
  $PY tests/parity/check_parity.py "$tool" tests/fixtures/tiny "$@" | tee "$LOGS/$build-tiny.log"
  for fx in tiny-ei tiny-pod; do
    echo "=== $build: $fx"
    $PY tests/parity/check_policies.py "$tool" tests/fixtures/$fx "$@" | tee "$LOGS/$build-$fx.log"
  done
done
echo "=== simd-mt: thread pool"
$NODE tests/wasm/threads.mjs $MODEL | tee "$LOGS/threads.log"
cat "$LOGS"/*.log | $PY tests/sum_results.py "wasm parity"
