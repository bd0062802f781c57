# EdgeInfinite adapter (models/train_adapter.py) and the tiny-ei parity fixtures (models/tools/make_tiny_ei.py).
PY ?= /usr/bin/python3
ADAPTER_MINUTES ?= 60
ADAPTER_ARGS ?=

.PHONY: adapter adapter-smoke tiny-ei-fixtures

# Train the memory-gating adapter of any llama GGUF: make adapter MODEL=base.gguf OUT=adapter.gguf
# (CUDA when available, else CPU; ADAPTER_ARGS for more options, see --help). Writes OUT and OUT's .json summary.
adapter:
	@test -n "$(MODEL)" -a -n "$(OUT)" || { echo "usage: make adapter MODEL=base.gguf OUT=adapter.gguf [ADAPTER_MINUTES=$(ADAPTER_MINUTES)] [ADAPTER_ARGS='...']"; exit 2; }
	$(PY) models/train_adapter.py --model $(MODEL) --out $(OUT) --time-budget $(ADAPTER_MINUTES) $(ADAPTER_ARGS)

# A few steps on the tiny fixture model: the loss must be finite, the written GGUF must re-load in the reference, and
# the C engine must load it and run edgeinfinite past several compressions.
adapter-smoke: $(BUILD)/edgeinf
	$(PY) models/train_adapter.py --model tests/fixtures/tiny/tiny-f32.gguf --out build/adapter-smoke/adapter.gguf \
	  --corpus tests/fixtures/tiny/corpus.txt --n-sink 4 --window 16 --seg 8 --min-len 40 --max-len 80 --steps 6 \
	  --batch 2 --val-rows 6 --val-docs 2 --eval-every 3 --rank 2 --max-params-frac 0.05 --threads 1 --smoke \
	  --distill-weight 1 --distill-frac 0.5 --dilute 64 --dilute-frac 1
	@$(BUILD)/edgeinf generate -m tests/fixtures/tiny/tiny-f32.gguf --adapter build/adapter-smoke/adapter.gguf \
	  --policy edgeinfinite -p "The robot said" -n 60 --temp 0 --stats 2>$(BUILD)/adapter-smoke/stats.txt >/dev/null \
	  && grep -q '"compressions":[1-9]' $(BUILD)/adapter-smoke/stats.txt \
	  && echo "adapter-smoke: 2 passed, 0 failed" || { echo "adapter-smoke: 1 passed, 1 failed (the engine did not run the adapter)"; cat $(BUILD)/adapter-smoke/stats.txt; exit 1; }

# Deterministic: re-running leaves tests/fixtures/tiny-ei byte-identical (checked by test-python).
tiny-ei-fixtures:
	$(PY) models/tools/make_tiny_ei.py tests/fixtures/tiny-ei
