# mk/wasm.mk — the two browser builds of the engine (included by the Makefile).
#   make wasm       -> dist/edgeinf-simd.{js,wasm}            SIMD, single thread (any page)
#                      dist/edgeinf-simd-mt.{js,wasm,worker.js} SIMD + pthreads (cross-origin isolated pages)
#   make wasm-node  -> build/wasm-node/edgeinf-simd-mt.*       the pthreads build for Node (tests only, not shipped)
# Emscripten is Debian's (3.1.6); its tools are Node scripts that need Debian's node modules.

EMCC ?= emcc
EMCC_ENV := NODE_PATH=/usr/share/nodejs
DIST := dist

# The engine library for wasm: every src/*.c but the native kernel files (kernels_wasm.c is the ISA file).
WASM_LIB_SRC := $(filter-out src/kernels_x86.c src/kernels_generic.c,$(wildcard src/*.c))
WASM_SRC := $(WASM_LIB_SRC) $(wildcard wasm/*.c)
WASM_HDR := $(wildcard src/*.h wasm/*.h)

# Release flags. No ASSERTIONS. ABORTING_MALLOC=0: a failed malloc returns NULL so the C code reports
# EI_ERR_NOMEM instead of emscripten aborting the whole module. FILESYSTEM=0: the engine gets its bytes
# from JS (ei_model_load_from_buffer). Exported names are kept by EMSCRIPTEN_KEEPALIVE in wasm/shim.c.
WASM_CFLAGS := -std=c11 -D_GNU_SOURCE -DNDEBUG -Isrc -O3 -msimd128
WASM_LDFLAGS_COMMON := -O3 -sMODULARIZE=1 -sEXPORT_NAME=createEdgeinf \
  -sALLOW_MEMORY_GROWTH=1 -sMAXIMUM_MEMORY=4GB -sINITIAL_MEMORY=32MB -sABORTING_MALLOC=0 \
  -sFILESYSTEM=0 -sEXPORTED_FUNCTIONS=_malloc,_free \
  -sEXPORTED_RUNTIME_METHODS=UTF8ToString,stringToUTF8,lengthBytesUTF8 \
  -sINCOMING_MODULE_JS_API=wasmBinary,locateFile,mainScriptUrlOrBlob,instantiateWasm,print,printErr,edgeinfPool
WASM_LDFLAGS := $(WASM_LDFLAGS_COMMON) -sEXPORT_ES6=1
# Single thread. Built for web,worker only, yet it also runs in Node: the glue then takes no environment
# branch at all, and web/engine-core.js hands over wasmBinary (read with fs) so nothing is fetched.
WASM_ST_FLAGS := -DEI_NO_THREADS -sENVIRONMENT=web,worker
# Threads: the pool is created before the module resolves (a pthread started later could not run while
# the engine's thread blocks on it). web/engine-core.js sets Module.edgeinfPool = threads - 1.
WASM_MT_COMMON := -pthread -sPTHREAD_POOL_SIZE='Module.edgeinfPool||1'
WASM_MT_FLAGS := $(WASM_MT_COMMON) -sENVIRONMENT=web,worker

.PHONY: wasm
wasm: $(DIST)/edgeinf-simd.js $(DIST)/edgeinf-simd-mt.js

$(DIST)/edgeinf-simd.js: $(WASM_SRC) $(WASM_HDR) mk/wasm.mk
	@mkdir -p $(DIST)
	$(EMCC_ENV) $(EMCC) $(WASM_CFLAGS) $(WASM_ST_FLAGS) $(WASM_LDFLAGS) $(WASM_SRC) -o $@

$(DIST)/edgeinf-simd-mt.js: $(WASM_SRC) $(WASM_HDR) mk/wasm.mk
	@mkdir -p $(DIST)
	$(EMCC_ENV) $(EMCC) $(WASM_CFLAGS) $(WASM_MT_FLAGS) $(WASM_LDFLAGS) $(WASM_SRC) -o $@

# The threaded build for Node only (tests, not shipped): same sources, C flags and pthread settings, but
# -sENVIRONMENT=node and CommonJS. Why not dist/edgeinf-simd-mt.js: it is web,worker only, so in Node it has no
# Worker to start its pthreads with; and emscripten 3.1.6's Node code (glue and worker file) calls require(),
# which an ES module (EXPORT_ES6) does not have. The package.json beside it makes Node read these .js files as
# CommonJS although the repo's package.json says "type": "module". Used by tests/wasm/logits_dump.mjs.
WASM_NODE := $(BUILD)/wasm-node
.PHONY: wasm-node
wasm-node: $(WASM_NODE)/edgeinf-simd-mt.js

$(WASM_NODE)/edgeinf-simd-mt.js: $(WASM_SRC) $(WASM_HDR) mk/wasm.mk
	@mkdir -p $(WASM_NODE)
	echo '{ "type": "commonjs" }' > $(WASM_NODE)/package.json
	$(EMCC_ENV) $(EMCC) $(WASM_CFLAGS) $(WASM_MT_COMMON) -sENVIRONMENT=node $(WASM_LDFLAGS_COMMON) $(WASM_SRC) -o $@
