# mk/tokenizer.mk — tokenizer extras (included by the Makefile). Neither target runs in `make test`;
# the unit test tests/unit/test_tokenizer.c is picked up by test-unit like every other.
#   make tok-fixtures   retrain the sentencepiece models and regenerate tests/fixtures/tok/ with the real
#                       library (Debian: sentencepiece, python3-sentencepiece). The fixtures are committed.
#   make tok-bench      encode ~1 MiB of text as one prompt with the BPE and unigram models, report tokens/s.
TOK_PY ?= /usr/bin/python3
TOK_BENCH_SRC := tests/tokenizer/bench_tokenizer.c src/tokenizer.c src/spm_model.c src/error.c

.PHONY: tok-fixtures tok-bench
tok-fixtures:
	$(TOK_PY) tests/tokenizer/gen_fixtures.py

$(BUILD)/tok-bench: $(TOK_BENCH_SRC) src/tokenizer.h src/edgeinf.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -O2 -o $@ $(TOK_BENCH_SRC) $(LDLIBS)

tok-bench: $(BUILD)/tok-bench
	$(BUILD)/tok-bench tests/tokenizer/corpus.txt tests/fixtures/tok/bpe_bf.model tests/fixtures/tok/uni_bf.model \
	  tests/fixtures/tok/bpe_keepws.model
