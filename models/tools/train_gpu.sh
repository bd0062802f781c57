#!/bin/sh
# The CUDA run that produces the shipped default model and its EdgeInfinite adapter (models/README.md).
# Expects the corpus in models/work/corpus (models/corpus/build.py) and the tokenizer in models/work/tokenizer.model.
# On one H100: ~5 min of pretraining, ~1 min of export, ~9 min of adapter training. Minutes can be changed:
#   BASE_MIN=5 ADAPTER_MIN=9 sh models/tools/train_gpu.sh
set -eu
PY=${PY:-python3}
BASE_MIN=${BASE_MIN:-5}
ADAPTER_MIN=${ADAPTER_MIN:-9}
THREADS=${THREADS:-8}

echo "== pretraining ($BASE_MIN min)"
$PY models/train.py --device cuda --size gpu --time-budget "$BASE_MIN" --batch-size 64 --lr 1.5e-3 \
    --eval-every 0.5 --eval-rows 32 --ckpt-minutes 60 --threads "$THREADS"
echo "== export"
$PY models/export_default.py --threads "$THREADS"
echo "== adapter ($ADAPTER_MIN min)"
$PY models/train_adapter.py --model models/edgeinf-default-q8_0.gguf --out models/edgeinf-default-adapter.gguf \
    --n-sink 16 --window 768 --seg 128 --max-len 8192 --time-budget "$ADAPTER_MIN" --device cuda --threads "$THREADS"
echo "== done"
