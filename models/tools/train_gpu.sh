#!/bin/sh
# The CUDA run that produces the shipped default model and its EdgeInfinite adapter (models/README.md).
# Expects the corpus in models/work/corpus (models/corpus/build.py) and the tokenizer in models/work/tokenizer.model.
# On one H100: ~5 min of pretraining, ~1 min of export, ~6 min of adapter training. Minutes can be changed:
#   BASE_MIN=5 ADAPTER_MIN=3.2 ADAPTER_MORE_MIN=2.3 sh models/tools/train_gpu.sh
set -eu
PY=${PY:-python3}
BASE_MIN=${BASE_MIN:-5}
ADAPTER_MIN=${ADAPTER_MIN:-3.2}
ADAPTER_MORE_MIN=${ADAPTER_MORE_MIN:-2.3}
THREADS=${THREADS:-8}

echo "== pretraining ($BASE_MIN min)"
$PY models/train.py --device cuda --size gpu --time-budget "$BASE_MIN" --batch-size 64 --lr 1.5e-3 \
    --eval-every 0.5 --eval-rows 32 --ckpt-minutes 60 --threads "$THREADS"
echo "== export"
$PY models/export_default.py --threads "$THREADS"
echo "== adapter (${ADAPTER_MIN} + ${ADAPTER_MORE_MIN} min)"
# The shipped adapter came from these two runs (models/README.md): 3.2 min from scratch at batch 16, then 2.3 min
# more from that checkpoint at batch 24 (the first, a 9-minute run without distillation, learned nothing).
$PY models/train_adapter.py --model models/edgeinf-default-q8_0.gguf --out models/work/adapter-a.gguf \
    --n-sink 16 --window 256 --seg 64 --max-len 8192 --distill-weight 3 --distill-frac 0.5 --lr 1e-2 \
    --val-lengths 1000,4096,16384 --val-rows 36 --val-docs 6 --eval-every 0.8 \
    --time-budget "$ADAPTER_MIN" --device cuda --threads "$THREADS"
$PY models/train_adapter.py --model models/edgeinf-default-q8_0.gguf --init models/work/adapter-a.gguf \
    --out models/edgeinf-default-adapter.gguf --max-len 8192 --distill-weight 3 --distill-frac 0.5 --lr 1e-2 \
    --batch 24 --val-lengths 1000,4096 --val-rows 30 --val-docs 4 --eval-every 0.5 \
    --time-budget "$ADAPTER_MORE_MIN" --device cuda --threads "$THREADS"
echo "== done"
