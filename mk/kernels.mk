# mk/kernels.mk — the kernel unit test under Node against a SIMD wasm build (included by the Makefile).
#   make test-wasm-kernels   builds build/wasm-tests/test_kernels.js and runs it; the last line it prints is
#                            "N passed, N failed". `node build/wasm-tests/test_kernels.js --bench` also
#                            prints wasm-SIMD vs scalar timings.
# Debian's emcc (3.1.6) is a set of Node scripts that need Debian's node modules, hence NODE_PATH.
# WASM_ASYNC_COMPILATION=0: emscripten 3.1.6's async instantiation calls fetch() whenever it exists, and
# Node 20 has fetch but cannot fetch a file path; the synchronous path reads the .wasm with fs instead.
# ENVIRONMENT=node + NODERAWFS: Node-only glue that sees the real file system.
# The glue is CommonJS while the repository's package.json says "type": "module", so the build folder gets
# its own package.json saying commonjs.

KERNELS_WASM_TEST_SRC := tests/unit/test_kernels.c src/quant.c src/kernels_ref.c src/kernels_wasm.c \
  src/matmul.c src/threadpool.c src/error.c
KERNELS_WASM_TEST_JS := build/wasm-tests/test_kernels.js

# Target-specific: only this build sees these flags.
$(KERNELS_WASM_TEST_JS): KERNELS_WASM_TEST_FLAGS := -std=c11 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE \
  -DEI_NO_THREADS -Isrc -Itests/unit -O2 -msimd128 -sALLOW_MEMORY_GROWTH=1 -sENVIRONMENT=node -sNODERAWFS=1 \
  -sWASM_ASYNC_COMPILATION=0

.PHONY: test-wasm-kernels
test-wasm-kernels: $(KERNELS_WASM_TEST_JS)
	@echo '{"type": "commonjs"}' > $(dir $(KERNELS_WASM_TEST_JS))package.json
	node $(KERNELS_WASM_TEST_JS)

$(KERNELS_WASM_TEST_JS): $(KERNELS_WASM_TEST_SRC) tests/unit/test.h src/kernels.h src/quant.h src/threadpool.h mk/kernels.mk
	@mkdir -p $(dir $@)
	NODE_PATH=/usr/share/nodejs emcc $(KERNELS_WASM_TEST_FLAGS) $(KERNELS_WASM_TEST_SRC) -o $@
