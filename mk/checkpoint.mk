# Session checkpoints (docs/checkpoint.md): CLI --save / --restore tests on the tiny fixtures, with the sanitized CLI.
# The unit tests (tests/unit/test_checkpoint.c) run with `make test-unit`.
.PHONY: test-checkpoint-cli
test-checkpoint-cli: $(BUILD)/edgeinf-asan
	tests/cli/checkpoint.sh $(BUILD)/edgeinf-asan
