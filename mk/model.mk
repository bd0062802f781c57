# Default model pipeline (models/): corpus -> tokenizer -> pretraining -> GGUF export + samples.
#   make model          the whole pipeline (hours on CPU; MODEL_MINUTES of training, CUDA when present)
#   make model-smoke    the same pipeline at toy scale (~2 min on 2 cores), into build/model-smoke/
PY ?= /usr/bin/python3
MODEL_MINUTES ?= 85
MODEL_VOCAB ?= 4096
MODEL_TRAIN_FLAGS ?= --short-seq 256 --short-frac 0.8
SMOKE := build/model-smoke

.PHONY: model model-corpus model-tokenizer model-train model-export model-smoke

model: model-corpus model-tokenizer model-train model-export

model-corpus:
	$(PY) models/corpus/build.py

model-tokenizer:
	$(PY) models/train_tokenizer.py --vocab $(MODEL_VOCAB)

model-train:
	$(PY) models/train.py --time-budget $(MODEL_MINUTES) $(MODEL_TRAIN_FLAGS)

model-export:
	$(PY) models/export_default.py

# Toy scale, independent of the big corpus: two small Debian sources, a 512-piece tokenizer, a
# 2-layer model, 60 steps. Fails unless the loss fell, every export loads back with matching logits in the reference,
# and the C engine's logits and perplexity on the exports match the reference's (tests/parity/check_gguf.py).
model-smoke: $(BUILD)/tests/logits_dump $(BUILD)/edgeinf
	@rm -rf $(SMOKE) && mkdir -p $(SMOKE)
	$(PY) models/corpus/build.py --out $(SMOKE)/corpus --sources bible,wordnet \
	    --max-chars-per-source 300000 --val-frac 0.2 --heldout-frac 0.2 --min-chars 100000
	$(PY) models/train_tokenizer.py --corpus $(SMOKE)/corpus --vocab 512 --out $(SMOKE)/tokenizer --sentences 100000
	$(PY) models/train.py --device cpu --size tiny --tokenizer $(SMOKE)/tokenizer.model --corpus $(SMOKE)/corpus \
	    --seq-len 256 --batch-size 8 --max-steps 60 --lr 3e-3 --warmup 0.1 --eval-every 30 --eval-rows 4 \
	    --final-eval-rows 8 --ckpt $(SMOKE)/ckpt.pt --log-csv $(SMOKE)/train-log.csv --plot $(SMOKE)/loss.png \
	    --summary $(SMOKE)/train-summary.json --assert-loss-falls
	$(PY) models/export_default.py --ckpt $(SMOKE)/ckpt.pt --corpus $(SMOKE)/corpus --out-dir $(SMOKE) \
	    --ship-dir '' --name smoke --samples 2 --new-tokens 16 --eval-rows 2
	@echo "model-smoke: GGUF at $(SMOKE)/smoke-q8_0.gguf (also $(SMOKE)/smoke-f32.gguf, $(SMOKE)/smoke-q4_0.gguf)"
	$(PY) -c 'import json,sys; [sys.stdout.write(json.loads(l)["text"] + "\n\n") for l in open(sys.argv[1])]' \
	    $(SMOKE)/corpus/val.jsonl > $(SMOKE)/val.txt
	$(PY) tests/parity/check_gguf.py $(BUILD)/tests/logits_dump $(SMOKE)/smoke-f32.gguf $(SMOKE)/smoke-q8_0.gguf \
	    $(SMOKE)/smoke-q4_0.gguf --ppl-file $(SMOKE)/val.txt --ppl-tokens 1500
