# mk/wllama.mk — cross-check with llama.cpp: the same GGUF through npm @wllama/wllama (llama.cpp in wasm, headless
# Chromium) and through our engine (natively). Included by the Makefile.
#   make test-wllama                          every tiny fixture + models/edgeinf-default-q8_0.gguf when present
#   make test-wllama WLLAMA_MODELS="a.gguf b.gguf"   any GGUF list
#   make test-wllama WLLAMA_ARGS="--threads 2"       wllama's multi-thread build (the page is cross-origin isolated)
# Report: build/wllama-report.json. Needs node_modules (npm ci: @wllama/wllama, playwright-core) and Debian chromium.

WLLAMA_MODELS ?= $(wildcard tests/fixtures/tiny/*.gguf) $(wildcard models/edgeinf-default-q8_0.gguf)
WLLAMA_ARGS ?=

# Optimised (not sanitized) build of the parity tool: the real model is too slow under ASan.
$(BUILD)/wllama/logits_dump: tests/tools/logits_dump.c $(BUILD)/libedgeinf.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $< $(BUILD)/libedgeinf.a $(LDLIBS)

.PHONY: test-wllama
test-wllama: $(BUILD)/wllama/logits_dump $(BUILD)/edgeinf
	node tests/wllama/run.mjs --dump $(BUILD)/wllama/logits_dump --cli $(BUILD)/edgeinf \
	  --report $(BUILD)/wllama-report.json $(WLLAMA_ARGS) $(WLLAMA_MODELS)
