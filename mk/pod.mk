# PoD (docs/pod.md): layer-block calibration (models/pod_calibrate.py) and the tiny-pod parity fixtures
# (models/tools/make_tiny_pod.py).
PY ?= /usr/bin/python3
POD_MODEL ?= models/edgeinf-default-q8_0.gguf
POD_DELTAS ?= 0.45 0.46 0.5 0.55 0.6 0.7
POD_ARGS ?= --windows 16 --eval-windows 16 --n-recent 64 --share scores --show-delta 0.46 --threads 1

POD_TRAIN_MINUTES ?= 10
POD_TRAIN_ARGS ?=

.PHONY: pod-calibrate pod-calibrate-smoke tiny-pod-fixtures pod-train pod-train-smoke

# Measure the layer similarity of POD_MODEL on held-out corpus text (models/work/corpus) and write, per δ, the blocks,
# KV saving, perplexity and KL to full (build/pod/pod-calib.json), a PoD adapter GGUF (build/pod/pod-delta<δ>.gguf),
# and the heat map docs/pod-similarity.png. The defaults reproduce docs/pod.md's table and, as
# build/pod/pod-delta0.46.gguf, the shipped models/edgeinf-default-pod.gguf (~7 min on 1 CPU thread).
pod-calibrate:
	$(PY) models/pod_calibrate.py --model $(POD_MODEL) --delta $(POD_DELTAS) --out-dir build/pod $(POD_ARGS)

# Seconds on the tiny fixture model: writes build/pod-smoke/, re-reads the adapter, and checks that δ outside (0, 1]
# is refused.
pod-calibrate-smoke:
	$(PY) models/pod_calibrate.py --model tests/fixtures/tiny/tiny-f32.gguf --corpus tests/fixtures/tiny/corpus.txt \
	  --n-sink 4 --n-recent 16 --seq-len 128 --windows 4 --queries 32 --min-distant 16 --eval-windows 4 \
	  --delta 0.5 1 --out-dir build/pod-smoke --png build/pod-smoke/pod-similarity.png --threads 1
	$(PY) -c "import sys; sys.path.insert(0, 'models'); from edgeinf_ref.pod import load_pod_gguf; \
	  from edgeinf_ref.export import load_gguf; cfg = load_gguf('tests/fixtures/tiny/tiny-f32.gguf')[1]; \
	  pc, _ = load_pod_gguf('build/pod-smoke/pod-delta0.5.gguf', cfg); print('adapter blocks', pc.blocks)"
	@for d in 0 1.5 -0.5 nan; do \
	  if $(PY) models/pod_calibrate.py --model tests/fixtures/tiny/tiny-f32.gguf --corpus tests/fixtures/tiny/corpus.txt \
	    --delta $$d --out-dir build/pod-smoke --png '' 2>/dev/null; then echo "delta $$d was accepted"; exit 1; fi; \
	done; echo "pod-calibrate-smoke: ok (delta outside (0, 1] refused)"

# Deterministic: re-running leaves tests/fixtures/tiny-pod byte-identical.
tiny-pod-fixtures:
	$(PY) models/tools/make_tiny_pod.py tests/fixtures/tiny-pod

# Post-train a llama GGUF to PoD attention with a PoD adapter's blocks (models/train_pod.py; CUDA when available, else
# CPU): make pod-train MODEL=base.gguf ADAPTER=pod-adapter.gguf OUT=post-trained.gguf [POD_TRAIN_MINUTES=10]
# [POD_TRAIN_ARGS='--steps N ...' etc., see --help]. Writes OUT (same type as MODEL), OUT-pod.gguf (the adapter for it)
# and OUT.json (the summary: validation perplexity with pod and with full attention before and after).
pod-train:
	@test -n "$(MODEL)" -a -n "$(ADAPTER)" -a -n "$(OUT)" || { echo "usage: make pod-train MODEL=base.gguf ADAPTER=pod-adapter.gguf OUT=out.gguf [POD_TRAIN_MINUTES=$(POD_TRAIN_MINUTES)] [POD_TRAIN_ARGS='...']"; exit 2; }
	$(PY) models/train_pod.py --model $(MODEL) --adapter $(ADAPTER) --out $(OUT) --time-budget $(POD_TRAIN_MINUTES) $(POD_TRAIN_ARGS)

# A few CPU steps on the tiny fixture model with pod-calibrate-smoke's adapter (tests/pod/pod_train_smoke.sh): finite
# losses, output re-loads in the reference and in the C engine, bad input refused. Ends with "N passed, N failed".
pod-train-smoke: $(BUILD)/edgeinf pod-calibrate-smoke
	@PY=$(PY) EI=$(BUILD)/edgeinf tests/pod/pod_train_smoke.sh
