#!/bin/sh
# The CUDA run that produces the shipped default model and its EdgeInfinite adapter (models/README.md).
# Expects the corpus in models/work/corpus (models/corpus/build.py) and the tokenizer in models/work/tokenizer.model.
# On one H100: ~5 min of pretraining, ~1 min of export, ~6 min of adapter training, then the adapter's virtual-length
# fine-tune (--dilute; it ran 40 min on 2 CPU threads for the shipped file). Minutes can be changed:
#   BASE_MIN=5 ADAPTER_MIN=3.2 ADAPTER_MORE_MIN=2.3 DILUTE_MIN=40 sh models/tools/train_gpu.sh
set -eu
PY=${PY:-python3}
BASE_MIN=${BASE_MIN:-5}
ADAPTER_MIN=${ADAPTER_MIN:-3.2}
ADAPTER_MORE_MIN=${ADAPTER_MORE_MIN:-2.3}
DILUTE_MIN=${DILUTE_MIN:-40}
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
    --out models/work/adapter-b.gguf --max-len 8192 --distill-weight 3 --distill-frac 0.5 --lr 1e-2 \
    --batch 24 --val-lengths 1000,4096 --val-rows 30 --val-docs 4 --eval-every 0.5 \
    --time-budget "$ADAPTER_MORE_MIN" --device cuda --threads "$THREADS"
echo "== adapter: virtual length ($DILUTE_MIN min)"
# Rows of 1-2K tokens whose filler segments weigh up to 2048 in memory (as if ~1-4M tokens long): without it the
# adapter answered 5/10 passkeys at 1M tokens (docs/eval-long.md). The shipped file: this command on 2 CPU threads
# (--device cpu --threads 2, 398 steps).
$PY models/train_adapter.py --model models/edgeinf-default-q8_0.gguf --init models/work/adapter-b.gguf \
    --out models/edgeinf-default-adapter.gguf --time-budget "$DILUTE_MIN" --eval-every 5 --min-len 1024 \
    --max-len 2048 --batch 4 --val-rows 24 --val-docs 4 --val-lengths 1024,2048 --dilute 2048 --val-dilute 1024 \
    --lr 3e-3 --gate-lr 3e-3 --threads "$THREADS"
echo "== done"
