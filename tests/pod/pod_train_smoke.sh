#!/usr/bin/env bash
# `make pod-train-smoke`: models/train_pod.py on the tiny fixture model (a few CPU steps) with the tiny pod adapter of
# `make pod-calibrate-smoke`. Checks: the run succeeds with finite losses (full fine-tune and LoRA), its summary is
# sane, the written GGUF and adapter load in the C engine (perplexity with pod and with full attention), the engine
# sees the trained weights (not the base's) when a trained step was kept, and bad input is refused with exit 2 and
# a message, no traceback. Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/../.."
PY=${PY:-/usr/bin/python3}
EI=${EI:-build/edgeinf}
D=build/pod-train-smoke
TINY=tests/fixtures/tiny/tiny-f32.gguf
TEXT=tests/fixtures/tiny/corpus.txt
AD=build/pod-smoke/pod-delta0.5.gguf
pass=0; fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

rm -rf "$D"; mkdir -p "$D"
if [ ! -f "$AD" ]; then echo "FAIL no tiny pod adapter at $AD (make pod-calibrate-smoke)"; echo "0 passed, 1 failed"; exit 1; fi

# 1. full fine-tune, a few steps; --smoke makes the script itself fail on a non-finite loss or a bad re-load
"$PY" models/train_pod.py --model "$TINY" --adapter "$AD" --corpus "$TEXT" --out "$D/tiny-pod-f32.gguf" \
  --steps 6 --eval-every 3 --eval-rows 2 --lr 1e-3 --threads 1 --device cpu --smoke >"$D/full.log" 2>&1
check "train_pod --method full runs (finite loss, output re-loads in the reference)" [ $? -eq 0 ]
check "summary: 6 steps, finite losses, reload ok" "$PY" - "$D/tiny-pod-f32.json" <<'EOF'
import json, math, sys
s = json.load(open(sys.argv[1]))
ok = s["steps"] == 6 and len(s["history"]) == 6 and all(math.isfinite(h["loss"]) for h in s["history"])
ok = ok and s["reload"]["ok"] and s["reload"]["tokenizer_keys_equal"] and len(s["evals"]) >= 3
ok = ok and all(math.isfinite(e["val_ppl_pod"]) and math.isfinite(e["val_ppl_full"]) for e in s["evals"])
ok = ok and {"pod", "full"} >= {h["attention"] for h in s["history"]}
sys.exit(0 if ok else 1)
EOF

# 2. the C engine loads the output and the adapter copy
engine_ppl() { "$EI" perplexity -m "$1" -f "$TEXT" --ctx 256 "${@:2}" 2>/dev/null | sed -nE 's/^ppl=([0-9.eE+-]+) .*/\1/p'; }
p_pod=$(engine_ppl "$D/tiny-pod-f32.gguf" --policy pod --adapter "$D/tiny-pod-f32-pod.gguf")
p_full=$(engine_ppl "$D/tiny-pod-f32.gguf")
p_base=$(engine_ppl "$TINY" --policy pod --adapter "$D/tiny-pod-f32-pod.gguf")
echo "     engine perplexity: post-trained pod $p_pod, post-trained full $p_full, base pod $p_base"
finite() { "$PY" -c "import math, sys; sys.exit(0 if math.isfinite(float(sys.argv[1])) else 1)" "${1:-nan}" 2>/dev/null; }
check "engine: perplexity --policy pod --adapter OUT-pod.gguf on the output" finite "$p_pod"
check "engine: perplexity (full) on the output" finite "$p_full"
kept=$("$PY" -c "import json; print(json.load(open('$D/tiny-pod-f32.json'))['kept']['step'])")
if [ "$kept" != "0" ]; then
  check "engine: the output's weights are the trained ones (pod ppl differs from the base's)" [ "$p_pod" != "$p_base" ]
else
  check "engine: nothing improved, the base weights were written back (pod ppl equals the base's)" [ "$p_pod" = "$p_base" ]
fi

# 3. LoRA, merged at export
"$PY" models/train_pod.py --model "$TINY" --adapter "$AD" --corpus "$TEXT" --out "$D/tiny-lora-f32.gguf" \
  --method lora --rank 2 --steps 2 --eval-rows 1 --threads 1 --device cpu --smoke >"$D/lora.log" 2>&1
check "train_pod --method lora runs and its merged output re-loads" [ $? -eq 0 ]
check "engine: loads the LoRA-merged output" finite "$(engine_ppl "$D/tiny-lora-f32.gguf" --policy pod --adapter "$D/tiny-lora-f32-pod.gguf")"

# 4. bad input: exit 2 with a message, no traceback
refused() {   # refused NAME EXPECTED-TEXT ARGS...
  local name=$1 want=$2; shift 2
  "$PY" models/train_pod.py "$@" >"$D/refused.log" 2>&1
  local rc=$?
  if [ $rc -eq 2 ] && grep -q "$want" "$D/refused.log" && ! grep -q Traceback "$D/refused.log"; then ok "$name"
  else bad "$name (exit $rc)"; cat "$D/refused.log"; fi
}
refused "refuses sequences without distant tokens" "no query would have distant" --model "$TINY" --adapter "$AD" \
  --corpus "$TEXT" --out "$D/x.gguf" --steps 1 --seq-len 16
refused "refuses an adapter made for another model" "adapter was made for another model" \
  --model models/edgeinf-default-q8_0.gguf --adapter "$AD" --corpus "$TEXT" --out "$D/x.gguf" --steps 1
refused "refuses a model as adapter" "adapter" --model "$TINY" --adapter "$TINY" --corpus "$TEXT" \
  --out "$D/x.gguf" --steps 1
refused "refuses a missing adapter" "no such file" --model "$TINY" --adapter "$D/none.gguf" --corpus "$TEXT" \
  --out "$D/x.gguf" --steps 1
refused "refuses a run without a budget" "give --time-budget" --model "$TINY" --adapter "$AD" --corpus "$TEXT" \
  --out "$D/x.gguf"

echo "pod-train-smoke: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
