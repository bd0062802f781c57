# edgeinf — every entry point. `make` builds the native library + CLI; `make test` runs every test.
SHELL := /bin/bash
CC ?= gcc
PY := /usr/bin/python3
ARCH := $(shell uname -m)

CFLAGS_BASE := -std=c11 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -Isrc
CFLAGS ?= -O2 -g
LDLIBS := -lm -lpthread

# One kernel file per ISA: exactly one is linked.
ifeq ($(ARCH),x86_64)
  KERNEL_ISA_SRC := src/kernels_x86.c
  KERNEL_ISA_FLAGS := -mavx2 -mfma -mf16c
else
  KERNEL_ISA_SRC := src/kernels_generic.c
  KERNEL_ISA_FLAGS :=
endif

CORE_SRC := $(filter-out src/kernels_x86.c src/kernels_wasm.c src/kernels_generic.c,$(wildcard src/*.c))
LIB_SRC := $(CORE_SRC) $(KERNEL_ISA_SRC)
CLI_SRC := $(wildcard src/cli/*.c)

BUILD := build
OBJ := $(patsubst src/%.c,$(BUILD)/obj/%.o,$(LIB_SRC))
ASAN_OBJ := $(patsubst src/%.c,$(BUILD)/asan/%.o,$(LIB_SRC))
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all native test test-unit deps clean wasm
all: native
native: $(BUILD)/libedgeinf.a $(BUILD)/edgeinf

$(BUILD)/obj/kernels_x86.o: src/kernels_x86.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) $(KERNEL_ISA_FLAGS) -MMD -c $< -o $@
$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -MMD -c $< -o $@
$(BUILD)/asan/kernels_x86.o: src/kernels_x86.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(ASAN_FLAGS) $(KERNEL_ISA_FLAGS) -MMD -c $< -o $@
$(BUILD)/asan/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(ASAN_FLAGS) -MMD -c $< -o $@

$(BUILD)/libedgeinf.a: $(OBJ)
	ar rcs $@ $^
$(BUILD)/libedgeinf-asan.a: $(ASAN_OBJ)
	ar rcs $@ $^

$(BUILD)/edgeinf: $(CLI_SRC) $(BUILD)/libedgeinf.a
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $(CLI_SRC) $(BUILD)/libedgeinf.a $(LDLIBS)
# Sanitized CLI for the CLI/bad-input tests.
$(BUILD)/edgeinf-asan: $(CLI_SRC) $(BUILD)/libedgeinf-asan.a
	$(CC) $(CFLAGS_BASE) $(ASAN_FLAGS) -o $@ $(CLI_SRC) $(BUILD)/libedgeinf-asan.a $(LDLIBS)

# Native unit tests: each tests/unit/test_*.c is a program linked against the sanitized library.
$(BUILD)/tests/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(BUILD)/libedgeinf-asan.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(ASAN_FLAGS) $(KERNEL_ISA_FLAGS) -Itests/unit -o $@ $< $(BUILD)/libedgeinf-asan.a $(LDLIBS)

test-unit: $(UNIT_BIN) $(BUILD)/edgeinf-asan
	@tests/run_unit.sh $(UNIT_BIN)

-include $(OBJ:.o=.d) $(ASAN_OBJ:.o=.d)
-include mk/*.mk

clean:
	rm -rf $(BUILD) dist

# ------------------------------------------------------------------ parity, CLI and the whole suite
$(BUILD)/tests/logits_dump: tests/tools/logits_dump.c $(BUILD)/libedgeinf-asan.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(ASAN_FLAGS) -o $@ $< $(BUILD)/libedgeinf-asan.a $(LDLIBS)

.PHONY: test-parity test-cli deps
# C engine vs the PyTorch reference on the tiny fixtures (1 and 2 threads): full on every file type, then
# full / streaming / edgeinfinite across 12 evictions, then pod and edgeinfinite+pod (share=scores and share=keys).
test-parity: $(BUILD)/tests/logits_dump
	set -o pipefail; $(PY) tests/parity/check_parity.py $(BUILD)/tests/logits_dump tests/fixtures/tiny 1 2 | tee $(BUILD)/parity-full.log
	set -o pipefail; $(PY) tests/parity/check_policies.py $(BUILD)/tests/logits_dump tests/fixtures/tiny-ei 1 2 | tee $(BUILD)/parity-policies.log
	set -o pipefail; $(PY) tests/parity/check_policies.py $(BUILD)/tests/logits_dump tests/fixtures/tiny-pod 1 2 | tee $(BUILD)/parity-pod.log
	@cat $(BUILD)/parity-full.log $(BUILD)/parity-policies.log $(BUILD)/parity-pod.log | $(PY) tests/sum_results.py parity

test-cli: $(BUILD)/edgeinf-asan
	tests/cli/run.sh $(BUILD)/edgeinf-asan

deps:
	scripts/install-deps.sh

TEST_STAGES ?= test-unit test-parity test-long-positions test-cli test-checkpoint-cli test-python model-smoke adapter-smoke pod-train-smoke test-wasm-kernels test-wasm-node test-wasm-parity test-wllama test-browser
test: deps
	@tests/run_all.sh $(TEST_STAGES)

.PHONY: bench
# Benchmarks (not tests): native + wasm-in-Node tokens/s on random-weight Q8_0 models; writes docs/bench.{json,md}.
bench: native
	$(PY) tests/bench/run_bench.py

.PHONY: eval-long
# Long-context evaluation by the C engine (passkey, long-document perplexity, cost curves): docs/eval-long.{md,json,png}.
# Hours at full scale; EVAL_LENGTHS=8192 EVAL_KEYS=1 ... for a quick look (see tests/eval/eval_long.py).
eval-long: native
	$(PY) tests/eval/eval_long.py
$(BUILD)/logits_dump-O2: tests/tools/logits_dump.c $(BUILD)/libedgeinf.a
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $< $(BUILD)/libedgeinf.a $(LDLIBS)

.PHONY: test-long-positions
# RoPE precision at 1M tokens (optimised build; ~20 s): see tests/parity/check_long_positions.py.
test-long-positions: $(BUILD)/logits_dump-O2
	$(PY) tests/parity/check_long_positions.py $(BUILD)/logits_dump-O2 tests/fixtures/tiny/tiny-f32.gguf

.PHONY: eval-pod
# PoD evaluation by the C engine (KV bytes vs full, perplexity, passkey; the post-trained variant; streaming /
# edgeinfinite / edgeinfinite+pod beyond the context): docs/eval-pod.{md,json,png}. Defaults: the shipped models and
# adapters (POD_ADAPTER, POD_MODEL, EI_ADAPTER, EIPOD_ADAPTER override them; see tests/eval/eval_pod.py). ~10 min.
eval-pod: native
	$(PY) tests/eval/eval_pod.py
